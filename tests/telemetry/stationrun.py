"""The firmware's supervisor and telemetry on the test plant (tests/firmware/station.py), in
a thread of their own, talking to a real broker over loopback. Virtual time for the plant
and the supervisor (a swap takes a second or two), real time for the MQTT client."""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FW_TESTS = str(Path(__file__).resolve().parent.parent / "firmware")
if FW_TESTS not in sys.path:
    sys.path.insert(0, FW_TESTS)

from station import Station  # noqa: E402

from firmware.compat import ticks_ms  # noqa: E402
from firmware.core.telemetry import Telemetry  # noqa: E402

SID = "PSS4-DEMO-001"  # firmware/station.json
KEY = "5e" * 32


class StationRun:
    def __init__(self, port: int, password: str = "station-pw", key: str = KEY) -> None:
        def mqtt(raw: dict[str, Any]) -> None:
            raw["mqtt"] = {"host": "127.0.0.1", "port": port, "user": SID, "password": password, "key": key,
                           "keepalive_s": 10, "status_every_s": 5, "backoff_min_ms": 100,
                           "backoff_max_ms": 1000}

        self.st = Station(n_slots=6, mutate=mqtt)
        self.tel = Telemetry(self.st.cfg, self.st.sup, ticks_ms())
        self.calls: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]]] = queue.Queue()
        self.running = True
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        st = self.st
        try:
            while self.running:
                while not self.calls.empty():
                    fn, out = self.calls.get()
                    try:
                        out.put((True, fn()))
                    except BaseException as e:  # handed back to the caller
                        out.put((False, e))
                w = st.tick()
                self.tel.poll(ticks_ms())
                st.plant.advance(max(1, min(w, 200)))
                time.sleep(0.001)
        except BaseException as e:
            self.error = e
            raise

    def call(self, fn: Callable[[], Any], timeout: float = 120) -> Any:
        """Run ``fn`` in the station's thread, between two ticks; its result."""
        out: queue.Queue[Any] = queue.Queue()
        self.calls.put((fn, out))
        ok, value = out.get(timeout=timeout)
        if not ok:
            raise value
        return value

    def start(self) -> None:
        self.call(self.st.start)

    def vehicle(self, k: int) -> None:
        self.call(lambda: self.st.vehicle(vid=7001 + k, pack_id=555 + k, soc=12.0))

    def reboot(self) -> None:
        """Power cut of the controller: the socket goes with it (no DISCONNECT: the will)."""
        def cut() -> None:
            self.tel.client.abort()
            self.st.reboot()
            self.tel = Telemetry(self.st.cfg, self.st.sup, ticks_ms())
        self.call(cut)

    def journal(self, kind: str) -> list[dict[str, Any]]:
        return list(self.call(lambda: self.st.storage.records(kind)))

    def state(self) -> str:
        return str(self.call(self.st.sup.state))

    def stop(self) -> None:
        self.running = False
        self.thread.join(30)
        self.tel.client.disconnect()


def wait_for(cond: Callable[[], Any], timeout: float = 120, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
