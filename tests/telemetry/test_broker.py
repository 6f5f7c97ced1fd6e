"""Station firmware, a real Mosquitto (passwords, ACL) and the backend's SQLite, end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from host import cli
from host.backend import ops
from host.backend.service import Backend, BrokerArgs
from host.backend.store import Store
from tests.telemetry.broker import Broker
from tests.telemetry.stationrun import KEY, SID, StationRun, wait_for


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(str(tmp_path / "backend.sqlite"))
    yield s
    s.close()


@pytest.fixture
def backend(broker: Broker, store: Store) -> Iterator[Backend]:
    b = Backend(store, BrokerArgs("127.0.0.1", broker.port, "backend", "backend-pw"))
    b.start()
    assert b.connected.wait(30)
    yield b
    b.stop()


@pytest.fixture
def station(broker: Broker, backend: Backend) -> Iterator[StationRun]:
    r = StationRun(broker.port)
    yield r
    r.stop()
    assert r.error is None, r.error


def _swaps(store: Store) -> list[tuple]:
    return store.rows("SELECT n, seq, vehicle, model, outcome, pack_out, soc_out, pack_in, soc_in, "
                      "energy_kwh, boot, t0, t1, copies FROM swaps WHERE station = ? ORDER BY n", (SID,))


def _journal_rows(run: StationRun) -> list[tuple]:
    keys = ("n", "v", "m", "o", "po", "so", "pi", "si", "e", "b", "t0", "t1")
    return [tuple(f[k] for k in keys) for f in run.journal("SW")]


def _start_online(run: StationRun, store: Store) -> None:
    """Start the station and wait for its first status in SQLite. Its client subscribes to
    ``cmd`` before it publishes a status on the same connection, so from here a command
    reaches it; one sent earlier is lost (clean session) and its sender gets no result."""
    run.start()
    wait_for(lambda: store.rows("SELECT 1 FROM status WHERE station = ? AND online = 1", (SID,)),
             what="the station online")


def _swap_until(run: StationRun, k: int) -> None:
    run.vehicle(k)
    wait_for(lambda: len(run.journal("SW")) >= k + 1, what=f"swap {k + 1} in the journal")


def test_swaps_arrive_in_sqlite_once_with_the_journals_values(station: StationRun, store: Store) -> None:
    station.start()
    for k in range(3):
        _swap_until(station, k)
    rows = wait_for(lambda: len(_swaps(store)) == 3 and _swaps(store), what="3 swaps in SQLite")
    assert [r[:1] + r[2:13] for r in rows] == _journal_rows(station)
    assert [r[0] for r in rows] == [1, 2, 3] and all(r[4] == "ok" for r in rows)
    sql = "SELECT state, online, doc FROM status WHERE station = ? AND state = 'run'"
    st = wait_for(lambda: store.rows(sql, (SID,)), what="a status row")
    doc = json.loads(st[-1][2])
    assert st[-1][1] == 1 and "grid_kw" in doc and set(doc["rack"]) >= {"ready", "charging", "empty"}


def test_broker_stopped_during_swaps_and_a_power_cut_every_record_arrives_once(
        broker: Broker, station: StationRun, store: Store) -> None:
    station.start()
    _swap_until(station, 0)
    wait_for(lambda: len(_swaps(store)) == 1, what="the first swap in SQLite")
    broker.stop()
    _swap_until(station, 1)
    _swap_until(station, 2)
    station.reboot()  # records made while the broker was away, then a power cut
    wait_for(lambda: station.state() == "hold", what="the station back, holding for a confirm")
    station.call(station.st.sup.confirm)
    _swap_until(station, 3)
    assert len(_swaps(store)) == 1
    broker.start()
    rows = wait_for(lambda: len(_swaps(store)) == 4 and _swaps(store), what="4 swaps in SQLite")
    assert [r[:1] + r[2:13] for r in rows] == _journal_rows(station)
    assert [r[1] for r in rows] == [f["seq"] for f in _seq_of(station)]
    ex = station.journal("EX")
    assert ex and ex[-1]["q"] == rows[-1][1]  # every record acknowledged, cursor on flash


def _seq_of(run: StationRun) -> list[dict]:
    # the journal's sequence numbers of the SW records, from the raw lines
    def lines() -> list[dict]:
        out = []
        for line in b"".join(run.st.storage.files["journal.log"]).split(b"\n"):
            parts = line.split(b" ", 2)
            if len(parts) == 3 and parts[1] == b"SW":
                out.append({"seq": int(parts[0])})
        return out
    return list(run.call(lines))


def _send(broker: Broker, ctr: int, cmd: str, key: str = KEY) -> dict:
    res = ops.send_command(BrokerArgs("127.0.0.1", broker.port, "backend", "backend-pw"), SID, cmd, ctr,
                           ops.sign(bytes.fromhex(key), SID, ctr, cmd), 60)
    assert res is not None, f"no result for {cmd!r}"
    return res


def _alarm_rows(store: Store, code: str) -> list[tuple]:
    return store.rows("SELECT active FROM alarms WHERE station = ? AND code = ?", (SID, code))


def test_forged_and_replayed_commands_do_nothing_and_raise_alarms(
        broker: Broker, station: StationRun, store: Store) -> None:
    _start_online(station, store)
    res = _send(broker, 5, "maintenance on", key="77" * 32)
    assert res["result"] == "rejected" and res["why"] == "bad MAC"
    assert station.state() == "run"
    wait_for(lambda: _alarm_rows(store, "cmd_bad_mac") == [(1,)], what="the bad-MAC alarm in SQLite")
    assert _send(broker, 5, "status")["result"] == "ok"
    res = _send(broker, 5, "maintenance on")  # a recorded good command, played again
    assert res["result"] == "rejected" and "not above 5" in res["why"]
    assert station.state() == "run"
    wait_for(lambda: _alarm_rows(store, "cmd_replay") == [(1,)], what="the replay alarm in SQLite")
    station.reboot()
    wait_for(lambda: station.state() == "hold", what="the station back after the power cut")
    res = _send(broker, 5, "maintenance on")
    assert res["result"] == "rejected" and "not above 5" in res["why"]
    assert station.state() == "hold"
    assert _send(broker, 6, "maintenance on")["result"] == "ok"
    assert station.state() == "manual"
    results = store.rows("SELECT ctr, result FROM command_results WHERE station = ? ORDER BY rowid", (SID,))
    assert results == [(5, "rejected"), (5, "ok"), (5, "rejected"), (5, "rejected"), (6, "ok")]


def test_command_from_a_client_the_acl_forbids_has_no_effect(broker: Broker, station: StationRun,
                                                             store: Store) -> None:
    _start_online(station, store)
    for user, pw in (("PSS-OTHER", "other-pw"), (SID, "station-pw")):  # another station, the station itself
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder-" + user)
        c.username_pw_set(user, pw)
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        cmd = "maintenance on"
        msg = c.publish(f"swapstation/{SID}/cmd", json.dumps(
            {"ctr": 1000, "cmd": cmd, "mac": ops.sign(bytes.fromhex(KEY), SID, 1000, cmd)}), qos=1)
        msg.wait_for_publish(30)
        c.disconnect()
        c.loop_stop()
    # Had either reached the station, counter 2 would now be a replay and it would be in manual.
    assert _send(broker, 2, "status")["result"] == "ok"
    assert station.state() == "run"
    assert station.call(station.st.sup.command_counter) == 2


def test_ops_command_line_signs_sends_and_exits_by_result(
        broker: Broker, station: StationRun, store: Store, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({SID: KEY}))
    monkeypatch.setenv("SWAPSTATION_MQTT_PASSWORD", "backend-pw")
    common = ["--broker", f"127.0.0.1:{broker.port}", "--keys", str(keys), "--db", store.path,
              "--timeout", "60"]
    _start_online(station, store)
    assert cli.main(["ops", SID, "status", *common]) == ops.EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["result"] == "ok" and out["ctr"] == 1 and out["status"]["state"] == "run"
    assert cli.main(["ops", SID, "grid_cap", "100000", *common]) == ops.EXIT_REFUSED
    out = json.loads(capsys.readouterr().out)
    assert out["result"] == "refused" and out["ctr"] == 2 and "limits.grid_kw" in out["why"]
    assert cli.main(["ops", SID, "maintenance", "on", *common]) == ops.EXIT_OK
    assert station.state() == "manual"
    assert store.rows("SELECT ctr, cmd FROM commands ORDER BY ctr") == [
        (1, "status"), (2, "grid_cap 100000"), (3, "maintenance on")]
