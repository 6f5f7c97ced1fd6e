"""Load, bounded in count and time: 100 emulated station clients, each with its own user under
the ACL, into one backend through a real Mosquitto; nothing lost or doubled. The rate is
printed, not asserted (bench/mqtt_heap.py measures it)."""

from __future__ import annotations

from pathlib import Path

from host.backend.loadgen import run_load
from host.backend.service import Backend, BrokerArgs
from host.backend.store import Store
from tests.telemetry.broker import Broker

STATIONS = [f"LOAD-{i:03d}" for i in range(100)]


def test_hundred_stations_into_one_backend_lose_nothing(mosquitto: str, tmp_path: Path) -> None:
    folder = tmp_path / "broker"
    folder.mkdir()
    users = {"backend": "backend-pw", **{s: "pw-" + s for s in STATIONS}}
    broker = Broker(folder, users)
    broker.start()
    store = Store(str(tmp_path / "backend.sqlite"))
    backend = Backend(store, BrokerArgs("127.0.0.1", broker.port, "backend", "backend-pw"))
    try:
        backend.start()
        assert backend.connected.wait(30)
        # 10 records each, one every 50 ms per station: 100 stations' swaps at a compressed pace
        r = run_load("127.0.0.1", broker.port, STATIONS, 10, store, lambda s: "pw-" + s, timeout_s=300,
                     every_s=0.05)
        print(f"\n100 stations x 10 records: {r['msgs_per_s']} msgs/s over {r['seconds']} s")
        assert r["sent"] == 1000 and r["lost"] == 0 and r["doubled"] == 0, r
        per_station = store.rows("SELECT station, COUNT(*), MIN(n), MAX(n) FROM swaps GROUP BY station")
        assert sorted(per_station) == [(s, 10, 1, 10) for s in STATIONS]
        online = store.rows("SELECT COUNT(DISTINCT station) FROM status WHERE online = 1")
        assert online == [(100,)]
    finally:
        backend.stop()
        store.close()
        broker.stop()
