"""Firmware heap and main-loop cost on the MicroPython unix port. Prints, never asserts.

    .venv/bin/python bench/firmware_heap.py [--swaps N] [--quick]

1. Heap breakdown of one station run (boot, confirmation, N swaps of a 23-slot station
   against the test plant), with ``gc.collect()`` between phases: the firmware's
   resident code (the config validator is dropped after boot, as a board does), the
   firmware's data after boot and after the swaps, the peak (``gc.mem_alloc()`` after
   every tick under ``gc.threshold(4096)``: live data plus at most a few KiB of
   garbage), and the test harness (plant code and data), which a board does not carry.
2. Smallest heap: bisects ``micropython -X heapsize=...`` over the same run, with the
   firmware from .mpy (as a board loads it from its filesystem) and from source.
3. Main-loop CPU: ``ticks_us`` around every ``Supervisor.tick`` of the same run on
   MicroPython, idle and during swaps (virtual time, so only CPU time counts).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Runs under MicroPython: one station run, then a JSON line of figures.
PROBE = r"""
import gc, sys, os, json
from firmware.compat import ticks_us, ticks_diff
mode = sys.argv[1]
path = "/tmp/swj-heapbench-" + "".join("%02x" % b for b in os.urandom(4))
os.mkdir(path)
def rmdir():
    for name in os.listdir(path):
        os.remove(path + "/" + name)
    os.rmdir(path)
def alloc():
    gc.collect()
    return gc.mem_alloc()
def swaps(s, k, run):
    # k vehicles one after the other, each until its swap ends; run(ms) advances the station
    b = s.sup.bay
    for i in range(k):
        s.vehicle(vid=7001 + i, pack_id=555 + i)
        n = b.swaps_ok + b.swaps_other
        while b.swaps_ok + b.swaps_other == n and s.plant.now < 3600000:
            run(1000)
if mode == "breakdown":
    # Phases in boot order, each in a function (no stale references on the VM stack);
    # gc.threshold keeps the garbage between collections small, so gc.mem_alloc() after
    # every tick bounds the peak (live + < threshold + one tick's allocations).
    a0 = alloc()
    def imports():
        import firmware.core.supervisor, firmware.drivers.mem, firmware.drivers.vfs_storage
    imports()
    a1 = alloc()
    import micropython
    micropython.qstr_info()  # "qstr pool: ..." lines, read by the bench
    def harness():
        import plant, station
    harness()
    a2 = alloc()
    micropython.qstr_info()
    def plant_alone():  # the plant by itself, to tell its data from the firmware's
        import plant
        from firmware.proto import regmap as rm
        p = plant.Plant(n_slots=23, bolts=8)
        p.fill([plant.Pack(1000 + k, rm.PACK_100, soc=95.0, bolts=8) for k in range(22)])
        return alloc()
    a3 = plant_alone()
    a4 = alloc()
    peak = [0]
    def sample():
        a = gc.mem_alloc()
        if a > peak[0]:
            peak[0] = a
    def boot():
        import station
        from firmware.drivers.vfs_storage import VfsStorage
        s = station.Station(storage=VfsStorage(path))
        gc.threshold(4096)  # after the station's own collect_every(): sample the peak finely
        sample()
        return s
    s = boot()
    sup = s.sup
    def run(ms):
        end = s.plant.now + ms
        while s.plant.now < end:
            w = sup.tick(s.now())
            sample()
            s.plant.advance(max(1, min(w, 1000, end - s.plant.now)))
    s.start()
    run(20000)
    a6 = alloc()
    swaps(s, int(sys.argv[2]), run)
    a7 = alloc()
    def validator():
        sys.modules.pop("firmware.core.config", None)
        import firmware.core.config
    validator()
    a8 = alloc()
    rmdir()
    print("@@" + json.dumps({
        "fw_code_boot": a1 - a0, "validator": a8 - a7, "harness_code": a2 - a1,
        "harness_data": a3 - a4, "live_boot": a6 - a0, "live_run": a7 - a0,
        "peak": peak[0] - a0, "ok": sup.bay.swaps_ok}))
    raise SystemExit
# Allocation-free statistics, made before the station: count, sum, max, and a histogram
# of 100 us buckets.
from array import array
hist = (array("I", bytearray(404)), array("I", bytearray(404)))  # idle, busy
acc = [[0, 0, 0], [0, 0, 0]]  # count, sum, max
import station
from firmware.drivers.vfs_storage import VfsStorage
s = station.Station(storage=VfsStorage(path))  # journal on files: flash is not heap
s.start()
sup = s.sup
def timed(n_ms):
    end = s.plant.now + n_ms
    while s.plant.now < end:
        t0 = ticks_us()
        w = sup.tick(s.now())
        dt = ticks_diff(ticks_us(), t0)
        k = 1 if sup.bay.swap is not None else 0
        a = acc[k]
        a[0] += 1
        a[1] += dt
        if dt > a[2]:
            a[2] = dt
        hist[k][min(100, dt // 100)] += 1
        s.plant.advance(max(1, min(w, 1000, end - s.plant.now)))
timed(20000)
swaps(s, int(sys.argv[2]), timed)
ok = sup.bay.swaps_ok
rmdir()
gc.collect()
def pct(h, n, q):
    c = 0
    for i in range(101):
        c += h[i]
        if c * 100 >= n * q:
            return (i + 1) * 100
    return None
def stats(k):
    a = acc[k]
    if not a[0]:
        return None
    return {"n": a[0], "mean_us": a[1] // a[0], "p50_us": pct(hist[k], a[0], 50),
            "p99_us": pct(hist[k], a[0], 99), "max_us": a[2]}
print("@@" + json.dumps({"ok": ok, "alloc": gc.mem_alloc(), "free": gc.mem_free(),
                         "idle": stats(0), "busy": stats(1), "virtual_ms": s.plant.now}))
"""


def _micropython() -> str:
    here = Path(sys.executable).parent / "micropython"
    return str(here) if here.exists() else "micropython"


def _mpy_image() -> Path:
    from host.deploy.build import MpyCross, firmware_sources, host_arch

    out = ROOT / "build" / "mpy-bench"
    compiler = MpyCross(None)
    for rel in firmware_sources(ROOT, host_only=True):
        target = (out / rel[:-3]).with_suffix(".mpy")
        target.parent.mkdir(parents=True, exist_ok=True)
        compiler.compile(ROOT / rel, rel, target, host_arch())
    return out


def _run(script: Path, args: list[str], heap: str | None, paths: list[Path],
         timeout: int = 1800) -> tuple[bool, str]:
    cmd = [_micropython()]
    if heap:
        cmd += ["-X", f"heapsize={heap}"]
    cmd += [str(script)] + args
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join(str(p) for p in paths + [ROOT, ROOT / "tests" / "firmware"])
    try:
        p = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "timeout"
    return p.returncode == 0, p.stdout + p.stderr


def _figures(out: str) -> dict | None:
    for line in out.splitlines():
        if line.startswith("@@"):
            return json.loads(line[2:])
    return None


def _bisect(script: Path, swaps: int, paths: list[Path], lo_k: int = 64,
            hi_k: int = 1024) -> tuple[int, dict | None]:
    """Smallest heap (KiB, 8 KiB steps) in which the run completes its swaps."""
    best = None
    figs = None
    while hi_k - lo_k > 8:
        mid = (lo_k + hi_k) // 2 // 8 * 8
        ok, out = _run(script, ["run", str(swaps)], f"{mid}K", paths)
        f = _figures(out) if ok else None
        good = f is not None and f["ok"] >= swaps
        print(f"    heapsize={mid}K: {'runs' if good else 'fails'}", flush=True)
        if good:
            hi_k, best, figs = mid, mid, f
        else:
            lo_k = mid
    return (best if best is not None else hi_k), figs


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def _breakdown(script: Path, swaps: int, paths: list[Path], label: str) -> None:
    ok, out = _run(script, ["breakdown", str(swaps)], None, paths)
    f = _figures(out) if ok else None
    if f is None:
        print(f"breakdown ({label}) failed:", out[-2000:])
        return
    pools = [line for line in out.splitlines() if line.startswith("qstr pool:")]
    qstr = [int(p.rsplit("n_total_bytes=", 1)[1]) for p in pools]
    code = f["fw_code_boot"] - f["validator"]
    hcode, hdata = f["harness_code"], f["harness_data"]
    print(f"heap breakdown, firmware from {label} (boot + {swaps} swap(s), gc.collect() between phases):")
    print(f"  firmware code, resident:      {_kib(code)}  (at boot {_kib(f['fw_code_boot'])}: "
          f"the config validator, {_kib(f['validator'])}, is dropped once the config is validated)")
    print(f"  firmware data after boot:     {_kib(f['live_boot'] - code - hcode - hdata)}  "
          f"(normalised config, rack/thermal/dispatch/journal state, bus masters' transaction pools)")
    print(f"  firmware data after the run:  {_kib(f['live_run'] - code - hcode - hdata)}")
    print(f"  test harness (no board carries it): code {_kib(hcode)}, plant data {_kib(hdata)}")
    if len(qstr) == 2:
        print(f"    (its code includes {_kib(qstr[1] - qstr[0])} of interned names: the qstr pool, "
              f"{_kib(qstr[1])} in all, grows by doubling, so whoever overflows it pays)")
    print(f"  live after boot {_kib(f['live_boot'])}, after the run {_kib(f['live_run'])}; "
          f"peak {_kib(f['peak'])} (live + garbage, sampled every tick under gc.threshold(4096))")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--swaps", type=int, default=1, help="swaps in the bisected run (default 1)")
    ap.add_argument("--cpu-swaps", type=int, default=5, help="swaps in the CPU-time run (default 5)")
    ap.add_argument("--quick", action="store_true", help="skip the bisection of the source build")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "probe.py"
        script.write_text(PROBE)
        mpy = _mpy_image()
        print("MicroPython unix port (64-bit): objects take about twice the room they take on rp2/esp32.")
        variants = (("mpy", [mpy]),) if a.quick else (("mpy", [mpy]), ("source", []))
        for label, paths in variants:
            _breakdown(script, a.swaps, paths, label)
        for label, paths in variants:
            print(f"smallest heap, firmware from {label}, boot + {a.swaps} swap(s) of a 23-slot station:")
            k, figs = _bisect(script, a.swaps, paths)
            print(f"  -> {k} KiB (near the edge fragmentation decides: read it as +-16 KiB)")
        ok, out = _run(script, ["run", str(a.cpu_swaps)], None, [mpy])
        f = _figures(out)
        if f is None:
            print("CPU run failed:", out[-2000:])
            return
        print(f"main loop CPU per tick on MicroPython (.mpy), {a.cpu_swaps} swaps, "
              f"{f['virtual_ms'] / 1000:.0f} s virtual:")
        for k in ("idle", "busy"):
            s = f[k]
            if s:
                print(f"  {k:5s}: {s['n']} ticks, mean {s['mean_us']} us, p50 <= {s['p50_us']} us, "
                      f"p99 <= {s['p99_us']} us, max {s['max_us']} us")
        ticks = f["idle"]["n"] + f["busy"]["n"]
        print(f"  ticks per virtual second: {ticks / (f['virtual_ms'] / 1000):.1f}")


if __name__ == "__main__":
    main()
