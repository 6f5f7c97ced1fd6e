"""The HIL unix target (the firmware under MicroPython, real serial lines, emulated field)
with telemetry on, into a real Mosquitto and the backend's SQLite."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hil.rig import DEFAULT_CONFIG, Rig, ScenarioDriver
from host.backend.service import Backend, BrokerArgs
from host.backend.store import Store
from tests.telemetry.broker import Broker
from tests.telemetry.stationrun import KEY, SID, wait_for


@pytest.fixture
def backend_store(broker: Broker, tmp_path: Path) -> Iterator[Store]:
    store = Store(str(tmp_path / "backend.sqlite"))
    b = Backend(store, BrokerArgs("127.0.0.1", broker.port, "backend", "backend-pw"))
    b.start()
    assert b.connected.wait(30)
    yield store
    b.stop()
    store.close()


def _driver(broker: Broker, make: Callable[..., Rig], tmp_path: Path) -> ScenarioDriver:
    raw = json.loads(DEFAULT_CONFIG.read_text())
    assert raw["station_id"] == SID
    raw["mqtt"] = {"host": "127.0.0.1", "port": broker.port, "user": SID, "password": "station-pw",
                   "key": KEY, "keepalive_s": 10, "status_every_s": 5, "backoff_min_ms": 100,
                   "backoff_max_ms": 1000}
    cfg = tmp_path / "station-mqtt.json"
    cfg.write_text(json.dumps(raw))
    d = make(target_config=cfg).driver()
    d.boot()
    return d


def _stored(store: Store) -> list[tuple]:
    return store.rows("SELECT n, vehicle, model, outcome, pack_out, soc_out, pack_in, soc_in, energy_kwh, "
                      "t0, t1, copies FROM swaps WHERE station = ? ORDER BY n", (SID,))


def _journal(d: ScenarioDriver) -> list[tuple]:
    keys = ("n", "v", "m", "o", "po", "so", "pi", "si", "e", "t0", "t1")
    return [tuple(f[k] for k in keys) for _, f in d.swap_records()]


@pytest.mark.hil_unix_only("the broker listens on this machine's loopback")
def test_swaps_on_the_rig_arrive_in_sqlite_with_the_journals_values(
        broker: Broker, backend_store: Store, hil_rig_factory: Callable[..., Rig], tmp_path: Path) -> None:
    d = _driver(broker, hil_rig_factory, tmp_path)
    d.arrive(model="NIO-ES6", soc=0.2)
    d.arrive(model="NIO-ET5", soc=0.3)
    d.wait_swaps(2, timeout=120)
    rows = wait_for(lambda: len(_stored(backend_store)) == 2 and _stored(backend_store),
                    what="the rig's 2 swaps in SQLite")
    assert [r[:11] for r in rows] == _journal(d)
    assert [r[11] for r in rows] == [1, 1]

    def last_status() -> dict:
        got = backend_store.rows("SELECT doc FROM status WHERE station = ? ORDER BY id DESC LIMIT 1", (SID,))
        return json.loads(got[0][0]) if got else {}

    doc = wait_for(lambda: last_status().get("swaps_ok") == 2 and last_status(),
                   what="the status after 2 swaps")
    assert doc["state"] == "run" and doc["online"] is True


@pytest.mark.hil_unix_only("the broker listens on this machine's loopback; the cut is the unix target's")
def test_power_cut_while_the_records_go_out_loses_and_doubles_nothing(
        broker: Broker, backend_store: Store, hil_rig_factory: Callable[..., Rig], tmp_path: Path) -> None:
    d = _driver(broker, hil_rig_factory, tmp_path)
    broker.stop()
    for k in range(3):
        d.arrive(model="NIO-ES6", soc=0.2 + 0.05 * k)
    d.wait_swaps(3, timeout=180)
    # The first flash write once the broker is back is torn: at an idle station that is the
    # cursor's EX after the first record's PUBACK, a power cut mid-publish. LittleFS drops
    # the torn write whole, so after the reboot that record goes out a second time.
    d.target.arm_flash_cut(0)
    broker.start()
    assert d.target.wait_exit(60) is not None, "no flash write after the broker came back"
    d.power_on()
    d.boot()
    rows = wait_for(lambda: len(_stored(backend_store)) == 3 and _stored(backend_store),
                    what="3 swaps in SQLite after the cut")
    assert [r[:11] for r in rows] == _journal(d)  # none lost, each stored once
    assert [r[11] for r in rows] == [2, 1, 1]  # the first was delivered twice: the cut hit its EX
