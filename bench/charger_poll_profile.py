"""Where the CPU of charger polling goes: the real firmware's charger path on MicroPython.

    .venv/bin/python bench/charger_poll_profile.py [--idle-s 20] [--swaps 1] [--cpython]
    .venv/bin/python bench/charger_poll_profile.py --only instructions [--pair master.poll,link.service]

A 23-slot station (the firmware's Supervisor, ChargerLink, rack and dispatch, against the
test plant of tests/firmware, used as files on the interpreter's path) talks to its 23
chargers through the real RTU master (firmware.proto.modbus_rtu) over an in-memory
serial port. Between two ticks the chargers answer what the master wrote, with CRC, as
they would on the wire; virtual time (ms and the master's us clock) moves by what each
tick asks, so only the firmware's CPU counts. The bay I/O stays on the test plant's
in-process bus.

The same scenario (boot and confirmation, then ``--idle-s`` seconds idle with every
charger online, then ``--swaps`` swaps), measured four ways:

1. flat: ``ticks_us`` around each ``Supervisor.tick`` (idle / in a swap), the charger
   master's ``poll`` and the charger link's ``service`` only, per virtual second.
2. detail: also around the functions below them (instance attributes wrapping the
   methods, inclusive times, so nested ones add up into their callers; the wrappers
   cost a little themselves): where a tick's charger work goes.
3. alloc: the same wrappers count bytes allocated (``gc.mem_alloc``, collector off
   around each tick) instead of us.
4. instructions (``--only instructions``, needs valgrind): the x86 instructions the unix
   port executes for the idle ticks, the swap ticks and, with ``--pair A,B``, two calls
   (keys: master, link, sup, rack, dispatch, baylink, bay_bus, thermal, port), counted by
   callgrind. On a shared, loaded machine ``ticks_us`` moves by tens of percent from run
   to run; the count does not, so this is the one to compare before/after a change.
   Garbage is collected outside the measured calls (allocation shows in 3.).

The chargers' own work (parsing requests, building replies) is timed apart and left
out. Runs on the MicroPython unix port (default) or CPython (``--cpython``; 1.-2. only).
Measures and prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs on the interpreter under test with ROOT and tests/firmware on its path.
PROBE = r"""
import sys, json, gc
from firmware.compat import ticks_us, ticks_diff
from firmware.hal import SerialPort
from firmware.proto import modbus_rtu as mb
from firmware.proto.crc16 import append_crc, check_crc
from plant import SlaveError, NoReply
from station import Station

mode = sys.argv[1]
idle_ms = int(sys.argv[2]) * 1000
n_swaps = int(sys.argv[3])
T = {}  # key -> [calls, us]


def acc(key):
    a = T.get(key)
    if a is None:
        a = T[key] = [0, 0]
    return a


ALLOC = mode == "alloc"


_N = object()  # no argument: fixed parameters, as *args would allocate a tuple per call


def wrap(obj, name, key):
    f = getattr(obj, name)
    a = acc(key)

    def w(x=_N, y=_N, z=_N, q=_N):
        t0 = gc.mem_alloc() if ALLOC else ticks_us()
        if x is _N:
            r = f()
        elif y is _N:
            r = f(x)
        elif z is _N:
            r = f(x, y)
        elif q is _N:
            r = f(x, y, z)
        else:
            r = f(x, y, z, q)
        a[0] += 1
        a[1] += (gc.mem_alloc() - t0) if ALLOC else ticks_diff(ticks_us(), t0)
        return r

    setattr(obj, name, w)


class Port(SerialPort):
    # The controller's end of the line: preallocated, as a UART's buffers are.
    def __init__(self, baud):
        self.baudrate = baud
        self.rx = bytearray(512)
        self.rxmv = memoryview(self.rx)
        self.rn = 0
        self.rpos = 0
        self.tx = bytearray(512)
        self.tn = 0

    def write(self, buf):
        n = len(buf)
        self.tx[self.tn:self.tn + n] = buf
        self.tn += n
        return n

    def tx_done(self):
        return True

    def readinto(self, buf):
        n = self.rn - self.rpos
        if n <= 0:
            return 0
        if n > len(buf):
            n = len(buf)
        buf[:n] = self.rxmv[self.rpos:self.rpos + n]
        self.rpos += n
        return n

    def flush_input(self):
        self.rn = self.rpos = 0


class Chargers:
    # The chargers' side: answers each whole request the master wrote.
    def __init__(self, port, devices):
        self.port = port
        self.devices = devices
        self.out = bytearray(260)
        self.requests = 0

    def step(self):
        p = self.port
        if not p.tn:
            return
        req = bytes(p.tx[:p.tn])
        p.tn = 0
        if len(req) < 8 or not check_crc(req, 0, len(req)):
            return
        self.requests += 1
        unit, fc = req[0], req[1]
        dev = self.devices.get(unit)
        if dev is None or dev.offline:
            return
        addr = (req[2] << 8) | req[3]
        o = self.out
        o[0] = unit
        o[1] = fc
        try:
            if fc < 5:
                cnt = (req[4] << 8) | req[5]
                regs = dev.read(fc, addr, cnt)
                o[2] = 2 * cnt
                for i in range(cnt):
                    o[3 + 2 * i] = regs[i] >> 8
                    o[4 + 2 * i] = regs[i] & 0xFF
                n = 3 + 2 * cnt
            elif fc == 6:
                dev.write(fc, addr, [(req[4] << 8) | req[5]])
                o[2:6] = req[2:6]
                n = 6
            else:
                cnt = (req[4] << 8) | req[5]
                dev.write(fc, addr, [(req[7 + 2 * i] << 8) | req[8 + 2 * i] for i in range(cnt)])
                o[2:6] = req[2:6]
                n = 6
        except SlaveError as e:
            o[1] = fc | 0x80
            o[2] = e.code
            n = 3
        except NoReply:
            return
        n = append_crc(o, n)
        if p.rpos >= p.rn:
            p.rn = p.rpos = 0
        p.rx[p.rn:p.rn + n] = o[:n]
        p.rn += n


class RtuStation(Station):
    def masters(self):
        c = self.cfg["buses"]["chargers"]
        self.port = Port(c.get("baudrate", 115200))
        devs = {}
        for k, s in enumerate(self.cfg["slots"]):
            devs[s["charger_unit"]] = self.plant.chargers[k]
        self.dev = Chargers(self.port, devs)
        plant = self.plant
        self.rtu = mb.ModbusMaster(self.port, c["timeout_ms"], c["retries"], c["offline_after"],
                                   c["probe_interval_ms"], queue_size=8,
                                   us_clock=lambda: (plant.now * 1000) & 0x3FFFFFFF)
        return {"chargers": self.rtu, "bay_io": self.bay_bus}

    def tick(self):
        if IR and self.measuring:
            # Garbage is collected here, outside the calls measured: a collection the
            # harness's own garbage would bring inside them is not the firmware's cost.
            self.n_ticks += 1
            if not self.n_ticks & 255:
                gc.collect()
        t0 = ticks_us()
        self.dev.step()
        a = T["chargers' side"]
        a[0] += 1
        a[1] += ticks_diff(ticks_us(), t0)
        if ALLOC:
            gc.collect()
            gc.disable()  # so mem_alloc differences are what a call allocated
        t0 = gc.mem_alloc() if ALLOC else ticks_us()
        w = self.sup.tick(self.now())
        dt = (gc.mem_alloc() - t0) if ALLOC else ticks_diff(ticks_us(), t0)
        if ALLOC:
            gc.enable()

        if self.measuring:
            a = T["tick, swap" if self.sup.bay.swap is not None else "tick, idle"]
            a[0] += 1
            a[1] += dt
            if dt > self.longest:
                self.longest = dt
        return w


acc("chargers' side")
acc("tick, idle")
acc("tick, swap")
st = RtuStation()
st.measuring = False
st.longest = 0
st.n_ticks = 0
st.swapping = False  # the swap phase has begun (a vehicle was sent)
sup = st.sup
link = sup.chargers
wrap(st.rtu, "poll", "master.poll")
wrap(link, "service", "link.service")
if mode in ("detail", "alloc"):
    m = st.rtu
    for name in ("_receive", "_scan", "_start_send", "_send_more", "_drain", "_decode", "_done_ok",
                 "_finish", "_next_tx", "read", "write", "release"):
        wrap(m, name, "master." + name)
    for name in ("readinto", "write", "flush_input", "settle"):
        wrap(st.port, name, "port." + name)
    for name in ("_done", "_start", "_write_due"):
        wrap(link, name, "link." + name)
    wrap(sup, "dispatch_update", "sup.dispatch_update")
    wrap(sup.dispatch, "control_regs", "dispatch.control_regs")
    wrap(sup.dispatch, "update", "dispatch.update")
    wrap(sup.dispatch, "rated", "dispatch.rated")
    wrap(sup.rack, "update_from_charger", "rack.update_from_charger")
    wrap(sup.rack, "update_info", "rack.update_info")
    wrap(sup.thermal, "expire", "thermal.expire")
    wrap(sup, "_thermal_events", "sup._thermal_events")
    wrap(sup.baylink, "service", "baylink.service")
    wrap(sup.bay_bus, "poll", "bay_bus.poll")
    if hasattr(sup, "_holds"):
        wrap(sup, "_holds", "sup._holds")
    wrap(sup, "_lines", "sup._lines")
    wrap(sup, "_isolation", "sup._isolation")
    wrap(sup, "_feed", "sup._feed")
IR = mode.startswith("ir")  # run under callgrind: trampolines make the costs C functions


def trampoline(obj, name, via):
    # The call runs inside a C builtin's iteration (filter/map), so callgrind's inclusive
    # cost of filter_iternext / map_iternext is that of the calls made through it.
    f = getattr(obj, name)
    box = [None]
    args = [_N, _N, _N, _N]

    def call(_):
        x, y, z, q = args
        if x is _N:
            box[0] = f()
        elif y is _N:
            box[0] = f(x)
        elif z is _N:
            box[0] = f(x, y)
        else:
            box[0] = f(x, y, z) if q is _N else f(x, y, z, q)
        return False

    def w(x=_N, y=_N, z=_N, q=_N):
        args[0] = x
        args[1] = y
        args[2] = z
        args[3] = q
        for _ in via(call, (0,)):
            pass
        return box[0]

    setattr(obj, name, w)


def ir_wrap():
    if mode == "ir-tick":
        f = sup.tick
        one = (0,)

        def t(now):
            box = []
            if not st.swapping:
                for _ in filter(lambda _: box.append(f(now)), one):
                    pass
            else:
                for _ in map(lambda _: box.append(f(now)), one):
                    pass
            return box[0]

        sup.tick = t
    else:
        # "ir=A,B": A through filter, B through map; each a key of TARGETS
        names = mode[3:].split(",")
        targets = {"master": st.rtu, "link": link, "sup": sup, "rack": sup.rack, "dispatch": sup.dispatch,
                   "baylink": sup.baylink, "bay_bus": sup.bay_bus, "thermal": sup.thermal, "port": st.port}
        for name, via in zip(names, (filter, map)):
            o, attr = name.split(".")
            trampoline(targets[o], attr, via)


st.start()
st.run(3000)  # settle after confirmation: every charger read and written
for a in T.values():
    a[0] = a[1] = 0
reads0, writes0, req0 = link.reads, link.writes, st.dev.requests
if IR:
    ir_wrap()
    gc.collect()
    gc.disable()
st.measuring = True
v0 = st.plant.now
st.run(idle_ms)
v_idle = st.plant.now - v0
idle = dict((k, list(a)) for k, a in T.items())
idle_counts = (link.reads - reads0, link.writes - writes0, st.dev.requests - req0)
swap_ms = 0
for i in range(n_swaps):
    st.swapping = True
    st.vehicle(vid=7001 + i, pack_id=555 + i)
    b = sup.bay
    n = b.swaps_ok + b.swaps_other
    t = st.plant.now
    st.run(600000, until=lambda s: b.swaps_ok + b.swaps_other > n)
    swap_ms += st.plant.now - t
    if b.swaps_ok + b.swaps_other == n:
        print("swap did not end:", sup.status())
print("@@" + json.dumps({
    "idle_virtual_ms": v_idle, "swap_virtual_ms": swap_ms, "swaps_ok": sup.bay.swaps_ok,
    "reads": idle_counts[0], "writes": idle_counts[1], "requests": idle_counts[2],
    "longest_tick_us": st.longest,
    "idle": idle, "all": T}))
"""


def _command(cpython: bool) -> list[str]:
    if cpython:
        return [sys.executable]
    here = Path(sys.executable).parent / "micropython"
    return [str(here) if here.exists() else "micropython"]


def _run(mode: str, idle_s: int, swaps: int, cpython: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "charger_probe.py"
        script.write_text(PROBE)
        env = dict(os.environ)
        paths = os.pathsep.join([str(ROOT), str(ROOT / "tests" / "firmware")])
        env["MICROPYPATH" if not cpython else "PYTHONPATH"] = paths
        p = subprocess.run([*_command(cpython), str(script), mode, str(idle_s), str(swaps)],
                           cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=3600)
    for line in p.stdout.splitlines():
        if line.startswith("@@"):
            return json.loads(line[2:])
    raise SystemExit(f"probe failed ({mode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")


def _report(f: dict, detail: bool, unit: str) -> None:
    idle_s = f["idle_virtual_ms"] / 1000
    swap_s = f["swap_virtual_ms"] / 1000
    idle = f["idle"]
    print(f"  idle {idle_s:.0f} s virtual: {f['reads']} charger reads, {f['writes']} writes, "
          f"{f['requests']} requests; then {f['swaps_ok']} swap(s) in {swap_s:.1f} s virtual")
    for key in ("tick, idle", "tick, swap"):
        n, us = f["all"][key]
        if n:
            print(f"  {key:12s} {n:6d} ticks, mean {us / n:8.1f} {unit}")
    print(f"  largest tick {f['longest_tick_us']} {unit}")
    per_s = "KB per s" if unit == "bytes" else "ms per s"
    print(f"  {'function':32s} {'calls/s':>9s} {unit + '/call':>9s} {per_s:>9s}   (idle phase)")
    rows = sorted(idle.items(), key=lambda kv: -kv[1][1])
    for key, (n, us) in rows:
        if not n or key.startswith("tick"):
            continue
        if not detail and key not in ("master.poll", "link.service", "chargers' side"):
            continue
        print(f"  {key:32s} {n / idle_s:9.1f} {us / n:9.1f} {us / idle_s / 1000:9.2f}")
    ti = idle["tick, idle"]
    if ti[0]:
        print(f"  {'tick, idle (all of it)':32s} {ti[0] / idle_s:9.1f} {ti[1] / ti[0]:9.1f} "
              f"{ti[1] / idle_s / 1000:9.2f}")


def _callgrind(mode: str, idle_s: int, swaps: int) -> dict[str, int]:
    """Inclusive instruction counts of filter_iternext / map_iternext: the calls the
    probe routed through them (see ``trampoline``)."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "charger_probe.py"
        script.write_text(PROBE)
        out = Path(tmp) / "callgrind.out"
        env = dict(os.environ)
        env["MICROPYPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests" / "firmware")])
        p = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *_command(False),
                            str(script), mode, str(idle_s), str(swaps)], cwd=str(ROOT), env=env,
                           capture_output=True, text=True, timeout=3600)
        if p.returncode != 0 or not out.exists():
            raise SystemExit(f"callgrind run failed ({mode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
        ann = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=yes", str(out)],
                             capture_output=True, text=True, check=True).stdout
        fig = json.loads(next(line[2:] for line in p.stdout.splitlines() if line.startswith("@@")))
    got: dict[str, int] = {k: fig[k] for k in ("idle_virtual_ms", "swap_virtual_ms")}
    for line in ann.splitlines():
        for via in ("filter", "map"):
            if line.rstrip().endswith(f":{via}_iternext [") or f"obj{via}.c:{via}_iternext " in line:
                got[via] = int(line.split()[0].replace(",", ""))
    return got


def _instructions(idle_s: int, swaps: int, pairs: list[str]) -> None:
    """x86 instructions the MicroPython unix port executes, counted by callgrind: unlike
    ticks_us on a loaded machine, the same code gives the same count, run after run, so a
    change of a few percent shows. Garbage is collected outside the measured calls."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    f = _callgrind("ir-tick", idle_s, swaps)
    idle_s_v = f["idle_virtual_ms"] / 1000
    print("instructions (MicroPython unix port under callgrind), per virtual second:")
    print(f"  ticks, idle ({idle_s_v:.0f} s): {f.get('filter', 0) / idle_s_v / 1e6:8.2f} M")
    if swaps and f["swap_virtual_ms"]:
        print(f"  ticks, in a swap ({f['swap_virtual_ms'] / 1000:.0f} s): "
              f"{f.get('map', 0) / f['swap_virtual_ms'] * 1000 / 1e6:8.2f} M")
    for pair in pairs:
        g = _callgrind("ir=" + pair, idle_s, 0)
        a, b = pair.split(",")
        # A call routed through the C iterator costs a few hundred instructions more.
        print(f"  idle: {a} {g.get('filter', 0) / idle_s_v / 1e6:8.2f} M, "
              f"{b} {g.get('map', 0) / idle_s_v / 1e6:8.2f} M (incl. routing)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idle-s", type=int, default=20, help="virtual seconds idle (default 20)")
    ap.add_argument("--swaps", type=int, default=1)
    ap.add_argument("--cpython", action="store_true", help="CPython instead of MicroPython's unix port")
    ap.add_argument("--only", choices=["flat", "detail", "alloc", "instructions"])
    ap.add_argument("--pair", action="append", default=[], metavar="A,B",
                    help="with --only instructions: also count two calls, e.g. master.poll,link.service")
    a = ap.parse_args()
    if a.only == "instructions":
        _instructions(a.idle_s, a.swaps, a.pair)
        return
    who = "CPython" if a.cpython else "MicroPython unix port"
    for mode in ("flat", "detail", "alloc"):
        if a.only and a.only != mode:
            continue
        f = _run(mode, a.idle_s, a.swaps, a.cpython)
        print(f"{mode} ({who}):")
        _report(f, mode != "flat", "bytes" if mode == "alloc" else "us")


if __name__ == "__main__":
    main()
