"""Emulated stations for load runs: N of the firmware's own MQTT clients (CPython), polled
round-robin in one thread, each on its own socket and session, each publishing swap records
at QoS 1 (up to the client's in-flight window) and a retained status. Used by
``bench/mqtt_heap.py`` and the bounded load test."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from firmware.compat import ticks_ms
from firmware.proto.mqtt import MQTTClient
from host.backend.store import Store


def record(station: str, n: int) -> str:
    """A swap transaction as a station sends it (docs/telemetry.md), about 250 bytes."""
    return json.dumps({"station": station, "seq": 100 + n, "n": n, "v": str(900000 + n), "m": "NIO-ES6",
                       "o": "ok", "po": 800000 + n, "so": 21.5, "pi": 500000 + n, "si": 95.0, "e": 73.5,
                       "t0": 1000 * n, "t1": 1000 * n + 160000, "b": 1, "w": None})


def run_load(host: str, port: int, names: list[str], records: int, store: Store,
             password: Callable[[str], str | None] = lambda name: None, timeout_s: float = 300.0,
             every_s: float = 0.0) -> dict[str, float]:
    """Every station in ``names`` sends ``records`` swap records (one each ``every_s``, or as fast
    as the window allows) and one status; waits until the backend's ``store`` holds them all or
    ``timeout_s`` passes. Returns the counts and messages/s (records stored / seconds)."""
    clients = [MQTTClient(n, host, port, n if password(n) is not None else None, password(n), 60,
                          f"swapstation/{n}/status", b'{"online":false}') for n in names]
    sent = [0] * len(names)
    due = [0.0] * len(names)
    status = [False] * len(names)
    want = len(names) * records
    t0 = time.monotonic()
    stored = 0
    while time.monotonic() - t0 < timeout_s:
        now = ticks_ms()
        t = time.monotonic()
        for i, c in enumerate(clients):
            c.poll(now)
            if not c.connected:
                continue
            if not status[i]:
                doc = '{"online":true,"state":"run"}'
                status[i] = bool(c.publish(f"swapstation/{c.client_id}/status", doc, 0, True))
            while sent[i] < records and c.room() and t >= due[i]:
                if not c.publish(f"swapstation/{c.client_id}/swaps", record(c.client_id, sent[i] + 1), 1):
                    break
                sent[i] += 1
                due[i] = t + every_s
            c.poll(now)
        if sum(sent) == want and not any(c.inflight for c in clients):
            stored = store.rows("SELECT COUNT(*) FROM swaps")[0][0]
            if stored >= want:
                break
        time.sleep(0.002)
    elapsed = time.monotonic() - t0
    stored, copies = store.rows("SELECT COUNT(*), COALESCE(SUM(copies), 0) FROM swaps")[0]
    for c in clients:
        c.disconnect()
    return {"stations": len(names), "records_each": records, "sent": sum(sent), "stored": stored,
            "lost": want - stored, "doubled": copies - stored, "seconds": round(elapsed, 2),
            "msgs_per_s": round(stored / elapsed, 1) if elapsed else 0.0,
            "drops": sum(c.drops for c in clients)}
