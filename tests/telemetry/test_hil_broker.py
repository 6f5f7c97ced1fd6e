"""The HIL unix target (the firmware under MicroPython, real serial lines, emulated field)
with telemetry on, into a real Mosquitto and the backend's SQLite."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hil.rig import DEFAULT_CONFIG, Rig
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


@pytest.mark.hil_unix_only("the broker listens on this machine's loopback")
def test_swaps_on_the_rig_arrive_in_sqlite_with_the_journals_values(
        broker: Broker, backend_store: Store, hil_rig_factory: Callable[..., Rig], tmp_path: Path) -> None:
    raw = json.loads(DEFAULT_CONFIG.read_text())
    assert raw["station_id"] == SID
    raw["mqtt"] = {"host": "127.0.0.1", "port": broker.port, "user": SID, "password": "station-pw",
                   "key": KEY, "keepalive_s": 10, "status_every_s": 5, "backoff_min_ms": 100,
                   "backoff_max_ms": 1000}
    cfg = tmp_path / "station-mqtt.json"
    cfg.write_text(json.dumps(raw))
    d = hil_rig_factory(target_config=cfg).driver()
    d.boot()
    d.arrive(model="NIO-ES6", soc=0.2)
    d.arrive(model="NIO-ET5", soc=0.3)
    d.wait_swaps(2, timeout=120)
    journal = [f for _, f in d.swap_records()]

    def stored() -> list[tuple]:
        return backend_store.rows("SELECT n, vehicle, model, outcome, pack_out, soc_out, pack_in, "
                                  "soc_in, energy_kwh, t0, t1, copies FROM swaps WHERE station = ? "
                                  "ORDER BY n", (SID,))

    rows = wait_for(lambda: len(stored()) == 2 and stored(), what="the rig's 2 swaps in SQLite")
    assert [r[:11] for r in rows] == [(f["n"], f["v"], f["m"], f["o"], f["po"], f["so"], f["pi"], f["si"],
                                       f["e"], f["t0"], f["t1"]) for f in journal]
    assert [r[11] for r in rows] == [1, 1]

    def last_status() -> dict:
        got = backend_store.rows("SELECT doc FROM status WHERE station = ? ORDER BY id DESC LIMIT 1", (SID,))
        return json.loads(got[0][0]) if got else {}

    doc = wait_for(lambda: last_status().get("swaps_ok") == 2 and last_status(),
                   what="the status after 2 swaps")
    assert doc["state"] == "run" and doc["online"] is True
