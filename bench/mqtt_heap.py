"""MQTT client heap on the MicroPython unix port, and messages/s of emulated stations into one
backend, against a real Mosquitto on loopback. Prints, never asserts.

    .venv/bin/python bench/mqtt_heap.py [--stations N] [--records M]

1. Heap (``gc.mem_alloc()`` after ``gc.collect()``): the client's and HMAC's code after
   import, the telemetry module's, one client object with its two ``max_packet`` buffers,
   and live data during a session that sends 200 QoS 1 records of about 300 bytes (each
   after the last one's PUBACK, as telemetry sends swaps); the peak is ``mem_alloc`` after
   every poll under ``gc.threshold(4096)``.
2. Load: N station clients (the firmware's MQTTClient under CPython, polled round-robin in
   one process, each with its own socket and session) publish M swap records each at QoS 1
   with up to 8 in flight; the backend (paho-mqtt, SQLite) stores them. Messages/s from
   the first publish until the database holds all N x M, and the count lost or doubled.

Mosquitto comes from Debian's ``mosquitto`` package (installed when root and missing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROBE = r"""
import gc, sys, json
port = int(sys.argv[1])
def alloc():
    gc.collect()
    return gc.mem_alloc()
a0 = alloc()
import firmware.proto.mqtt, firmware.proto.hmac256
a1 = alloc()
import firmware.core.telemetry
a2 = alloc()
from firmware.proto.mqtt import MQTTClient
from firmware.compat import ticks_ms, sleep_ms
c = MQTTClient("bench-station", "127.0.0.1", port, keepalive_s=60, max_packet=2048)
c.subscribe("swapstation/bench-station/cmd", 1)
a3 = alloc()
payload = ('{"station":"bench-station","seq":%d,"n":%d,"v":"7001","m":"NIO-ES6","o":"ok","po":555,'
           '"so":12.5,"pi":1000,"si":95.0,"e":82.5,"t0":123456,"t1":234567,"b":3,"w":null,"pad":"'
           + "x" * 120 + '"}')
gc.threshold(4096)
peak = 0
sent = 0
pid = 0
t0 = ticks_ms()
while sent < 200 and ticks_ms() - t0 < 60000:
    c.poll(ticks_ms())
    if c.connected and not pid:
        pid = c.publish("swapstation/bench-station/swaps", payload % (sent + 1, sent + 1), 1)
    elif pid and pid not in c.inflight:
        pid = 0
        sent += 1
    m = gc.mem_alloc()
    if m > peak:
        peak = m
    sleep_ms(0) if c.connected else sleep_ms(5)
a4 = alloc()
c.disconnect()
print("@@" + json.dumps({"base": a0, "client_code": a1 - a0, "telemetry_code": a2 - a1,
                         "client_object": a3 - a2, "after_session_live": a4 - a2,
                         "session_peak": peak - a2, "sent": sent, "free": gc.mem_free()}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    import pwd

    from host.deploy import debian

    debian.ensure({"mosquitto": "/usr/sbin/mosquitto"}, "bench/mqtt_heap.py")
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    f"user {pwd.getpwuid(os.getuid()).pw_name}\nmax_queued_messages 100000\n")
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("mosquitto did not start")


def heap(port: int) -> dict[str, int]:
    from host.deploy.tools import command

    env = dict(os.environ, MICROPYPATH=f"{ROOT}:.frozen")
    out = subprocess.run([*command("micropython"), "-c", PROBE, str(port)], env=env, capture_output=True,
                         text=True, timeout=300)
    line = [x for x in out.stdout.splitlines() if x.startswith("@@")]
    if not line:
        raise SystemExit("MicroPython probe failed:\n" + out.stdout + out.stderr)
    return dict(json.loads(line[-1][2:]))


def load(port: int, stations: int, records: int, folder: Path) -> dict[str, float]:
    from host.backend.loadgen import run_load
    from host.backend.service import Backend, BrokerArgs
    from host.backend.store import Store

    store = Store(str(folder / "bench.sqlite"))
    backend = Backend(store, BrokerArgs("127.0.0.1", port, None, None), "bench-backend")
    backend.start()
    backend.connected.wait(30)
    try:
        return run_load("127.0.0.1", port, [f"bench-{i:03d}" for i in range(stations)], records, store,
                        timeout_s=600)
    finally:
        backend.stop()
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stations", type=int, default=20)
    ap.add_argument("--records", type=int, default=50)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="swapstation-mqtt-bench-"))
    proc, port = start_broker(folder)
    try:
        h = heap(port)
        print("MicroPython unix port, MQTT client heap (bytes):")
        for k in ("client_code", "telemetry_code", "client_object", "after_session_live", "session_peak"):
            print(f"  {k:20s} {h[k]:8d}")
        print(f"  records sent         {h['sent']:8d}")
        r = load(port, args.stations, args.records, folder)
        print(f"load: {r['stations']} stations x {r['records_each']} QoS 1 records -> backend SQLite:")
        print(f"  stored {r['stored']}, lost {r['lost']}, doubled {r['doubled']}, reconnects {r['drops']}, "
              f"{r['seconds']} s, {r['msgs_per_s']} msgs/s")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
