"""Benchmark: how close the firmware's RTU master gets to the wire when polling chargers.

    .venv/bin/python bench/modbus_poll.py [--cycles 30] [--units 20] [--baud 115200]

1. Poll cycle: pymodbus 3.16 serves 20 charger IDs behind the paced pty line
   (hil.line, 11-bit characters at the baud rate). The firmware master, run by each
   interpreter in its own process (this file, ``--master``), reads every charger's
   status block (FC04, 16 registers) once per cycle, all queued at the start of the
   cycle. Printed: cycle times, the wire-time lower bound
   sum of (13 + 2N) x 11/baud + 2 x t3.5 over the units, and their ratio (goal <= 1.15).
2. CPU: the master alone (``--cpu``), against an in-memory responder that answers at
   once, timed with ticks_us on MicroPython and on CPython; the responder's own
   copying is timed separately and taken off.

Measures and prints; asserts nothing. The file runs on CPython (host side) and,
for ``--master``/``--cpu``, on MicroPython's unix port.
"""

import json
import sys

from firmware.compat import ticks_diff, ticks_ms, ticks_us
from firmware.hal import SerialPort

try:
    from time import sleep_us
except ImportError:  # CPython
    from time import sleep as _sleep

    def sleep_us(us):
        _sleep(us / 1e6)

STATUS_COUNT = 16  # regmap.CHG_STATUS_COUNT, kept literal so --cpu imports nothing else


def _median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


# ---- firmware side (both interpreters) ------------------------------------------------
def run_master(path, baud, units, cycles, warmup):
    from firmware.drivers.posix_serial import PosixSerialPort
    from firmware.proto import modbus_rtu as mb

    port = PosixSerialPort(path, baud, "N", 1)
    m = mb.ModbusMaster(port, timeout_ms=100, retries=1, queue_size=units)
    times = []
    errors = 0
    for c in range(warmup + cycles):
        t0 = ticks_us()
        txs = [m.read(u, mb.FC_READ_INPUT_REGISTERS, 0, STATUS_COUNT) for u in range(1, units + 1)]
        last = txs[-1]
        while not last.done:
            now = ticks_ms()
            m.poll(now)
            if last.done:
                break
            # Sleep rather than spin: the line and the devices share the host's cores.
            wait = m.next_poll_us(now)
            if wait >= 1000:
                port.wait_input(wait // 1000)  # wakes at once when reply bytes come
            elif wait > 0:
                sleep_us(wait)  # the t3.5 before the next request
        dt = ticks_diff(ticks_us(), t0)
        for tx in txs:
            if not tx.ok:
                errors += 1
            tx.release()
        if c >= warmup:
            times.append(dt)
    port.close()
    print(json.dumps({"cycle_us": times, "errors": errors}))


class _InstantPort(SerialPort):
    """In-memory SerialPort whose device answers the moment a request is written."""

    def __init__(self, replies):
        self.baudrate = 115200
        self.replies = replies
        self.rx = bytearray(300)
        self.mv = memoryview(self.rx)
        self.n = 0
        self.pos = 0

    def write(self, buf):
        r = self.replies[buf[0]]
        self.rx[: len(r)] = r
        self.n = len(r)
        self.pos = 0
        return len(buf)

    def tx_done(self):
        return True

    def readinto(self, buf):
        k = self.n - self.pos
        if k > len(buf):
            k = len(buf)
        if k:
            buf[:k] = self.mv[self.pos : self.pos + k]
            self.pos += k
        return k

    def flush_input(self):
        self.pos = self.n

    def close(self):
        pass


def run_cpu(units, rounds):
    from firmware.proto import modbus_rtu as mb
    from firmware.proto.crc16 import append_crc

    replies = {}
    for u in range(1, units + 1):
        b = bytearray(5 + 2 * STATUS_COUNT)
        b[0] = u
        b[1] = 4
        b[2] = 2 * STATUS_COUNT
        for i in range(STATUS_COUNT):
            b[4 + 2 * i] = (u + i) & 0xFF
        append_crc(b, 3 + 2 * STATUS_COUNT)
        replies[u] = bytes(b)
    port = _InstantPort(replies)
    m = mb.ModbusMaster(port, timeout_ms=100, retries=0, send_gap_us=0, queue_size=units)

    def one_round():
        for u in range(1, units + 1):
            tx = m.read(u, 4, 0, STATUS_COUNT)
            now = ticks_ms()
            while not tx.done:
                m.poll(now)
            if not tx.ok:
                raise RuntimeError("in-memory read failed: " + repr(tx))
            tx.release()

    one_round()  # warm-up: pooled objects size their buffers once
    t0 = ticks_us()
    for _ in range(rounds):
        one_round()
    total = ticks_diff(ticks_us(), t0)
    # The responder's share: the same writes and reads without the master.
    chunk = bytearray(64)
    t0 = ticks_us()
    for _ in range(rounds):
        for u in range(1, units + 1):
            port.write(replies[u][:1])
            while port.readinto(chunk):
                pass
            port.flush_input()
    port_us = ticks_diff(ticks_us(), t0)
    n = rounds * units
    print(json.dumps({"per_tx_us": (total - port_us) / n, "with_port_us": total / n, "transactions": n}))


# ---- host side (CPython) -------------------------------------------------------------
def _line_gaps(frames, tc_s):
    """Median slave turnaround and master inter-frame gap (ms) from the line's frames."""
    slave, master = [], []
    for a, b in zip(frames, frames[1:], strict=False):
        gap = (b.t - tc_s) - (a.t - tc_s + len(a.data) * tc_s)  # b's first start bit - a's last stop bit
        if a.direction == "request" and b.direction == "reply":
            slave.append(gap)
        elif a.direction == "reply" and b.direction == "request":
            master.append(gap)
    nan = float("nan")
    return (_median(slave) * 1000 if slave else nan, _median(master) * 1000 if master else nan)


def _interpreters():
    from host.deploy import tools

    return {"micropython": tools.command("micropython"), "cpython": [sys.executable]}


def _run(cmd, timeout):
    import os
    import subprocess

    from host.deploy import tools

    # The firmware package from the checkout, as the unix target runs it.
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([str(tools.ROOT), ".frozen"]))
    p = subprocess.run(cmd, cwd=str(tools.ROOT), env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def host_main(argv):
    import argparse
    import platform
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root

    import pymodbus

    from hil.demo import demo_config
    from hil.emulators.field import Field
    from hil.line import PacedLine

    ap = argparse.ArgumentParser(description="Modbus RTU poll-cycle benchmark")
    ap.add_argument("--cycles", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--units", type=int, default=20)
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--cpu-rounds", type=int, default=200)
    ap.add_argument("--only", choices=["micropython", "cpython"], help="one interpreter only")
    args = ap.parse_args(argv)
    if not 1 <= args.units <= 247 or args.cycles < 1:
        ap.error("--units must be 1..247 and --cycles at least 1")

    tc_us = 11e6 / args.baud
    t35_us = 3.5 * tc_us if args.baud <= 19200 else 1750.0
    per_tx_us = (13 + 2 * STATUS_COUNT) * tc_us + 2 * t35_us
    bound_ms = args.units * per_tx_us / 1000
    interps = _interpreters()
    if args.only:
        interps = {args.only: interps[args.only]}

    print(f"Modbus RTU poll cycle: {args.units} chargers x FC04 {STATUS_COUNT} registers, {args.baud} baud, "
          f"paced pty line, pymodbus {pymodbus.__version__}, {platform.python_implementation()} "
          f"{platform.python_version()} host on {platform.machine()}")
    print(f"wire-time lower bound: {args.units} x ((13 + 2x{STATUS_COUNT}) x {tc_us:.1f} us + 2 x "
          f"{t35_us:.0f} us) = {args.units} x {per_tx_us / 1000:.3f} ms = {bound_ms:.1f} ms per cycle\n")
    print(f"{'master on':<12} {'cycles':>6} {'median ms':>10} {'mean ms':>8} {'min ms':>7} {'max ms':>7} "
          f"{'ratio':>6} {'errors':>6}")
    gaps = {}
    for name, cmd in interps.items():
        cfg = demo_config(list(range(1, args.units + 1)), args.baud)
        with PacedLine(args.baud) as line, Field(cfg, charger_port=line.slave_path):
            t0 = line.now()
            out = _run(cmd + [__file__, "--master", line.master_path, str(args.baud), str(args.units),
                              str(args.cycles), str(args.warmup)], timeout=600)
            gaps[name] = _line_gaps(line.frames_since(t0), tc_us / 1e6)
        ms = [t / 1000 for t in out["cycle_us"]]
        med = _median(ms)
        print(f"{name:<12} {len(ms):>6} {med:>10.1f} {sum(ms) / len(ms):>8.1f} {min(ms):>7.1f} "
              f"{max(ms):>7.1f} {med / bound_ms:>6.3f} {out['errors']:>6}")
    print("\nratio = median cycle / wire-time bound (goal <= 1.15). Where the time goes, from the line's")
    print("frame times (median per transaction):")
    for name, (slave, master) in gaps.items():
        print(f"  master on {name:<12} slave turnaround {slave:.2f} ms (the bound allows t3.5 = "
              f"{t35_us / 1000:.2f}), reply end to next request {master:.2f} ms (t3.5 + the master's delay)")
    print("The rig's line server waits t3.5 before it answers, as a real slave must.\n")
    print("master CPU per transaction (FC04 x16, in-memory responder, no line, no t3.5 wait):")
    for name, cmd in interps.items():
        out = _run(cmd + [__file__, "--cpu", str(args.units), str(args.cpu_rounds)], timeout=600)
        print(f"  {name:<12} {out['per_tx_us']:8.1f} us  ({out['with_port_us']:.1f} us with the responder's "
              f"copying, {out['transactions']} transactions)")
    return 0


def main():
    argv = sys.argv[1:]
    if argv and argv[0] == "--master":
        run_master(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), int(argv[5]))
    elif argv and argv[0] == "--cpu":
        run_cpu(int(argv[1]), int(argv[2]))
    else:
        sys.exit(host_main(argv))


main()
