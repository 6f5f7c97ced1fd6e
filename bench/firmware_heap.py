"""Firmware heap and main-loop cost on the MicroPython unix port. Prints, never asserts.

    .venv/bin/python bench/firmware_heap.py [--swaps N] [--quick]

1. Import footprint: heap taken by the firmware modules once imported (from source
   and from the mpy-cross image, as a board loads them from its filesystem), and by
   the test plant that stands in for the station's hardware.
2. Smallest heap: bisects ``micropython -X heapsize=...`` over a short station run
   (boot, confirmation, N swaps of a 23-slot station against the test plant), with
   the firmware from source and from .mpy. The run needs the plant too: its own
   footprint (1.) is what a board does not carry.
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
import gc, sys, json
from firmware.compat import ticks_us, ticks_diff
mode = sys.argv[1]
if mode == "imports":
    gc.collect(); a0 = gc.mem_alloc()
    import firmware.core.supervisor
    gc.collect(); a1 = gc.mem_alloc()
    import plant, station
    gc.collect(); a2 = gc.mem_alloc()
    print(json.dumps({"firmware": a1 - a0, "plant": a2 - a1}))
    raise SystemExit
swaps = int(sys.argv[2])
import jtest, station
from firmware.drivers.vfs_storage import VfsStorage
path = jtest.tempdir("heap")
s = station.Station(storage=VfsStorage(path))  # journal on files: flash is not heap
s.start()
sup = s.sup
# Allocation-free statistics: count, sum, max, and a histogram of 100 us buckets.
from array import array
hist = (array("I", [0] * 101), array("I", [0] * 101))  # idle, busy
acc = [[0, 0, 0], [0, 0, 0]]  # count, sum, max
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
for i in range(swaps):
    s.vehicle(vid=7001 + i, pack_id=555 + i)
    b = sup.bay
    n = b.swaps_ok + b.swaps_other
    while b.swaps_ok + b.swaps_other == n and s.plant.now < 3600000:
        timed(1000)
ok = sup.bay.swaps_ok
jtest.rmtree(path)
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
    from host.build import MpyCross, firmware_sources, host_arch

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
        code = {}
        for label, paths in (("source", []), ("mpy", [mpy])):
            ok, out = _run(script, ["imports"], None, paths)
            f = json.loads(out.strip().splitlines()[-1]) if ok else None
            if f:
                code[label] = f["firmware"] + f["plant"]
                print(f"import footprint ({label}): firmware {f['firmware'] / 1024:.1f} KiB, "
                      f"test plant + harness {f['plant'] / 1024:.1f} KiB")
        variants = (("mpy", [mpy]),) if a.quick else (("mpy", [mpy]), ("source", []))
        for label, paths in variants:
            print(f"smallest heap, firmware from {label}, boot + {a.swaps} swap(s) of a 23-slot station:")
            k, figs = _bisect(script, a.swaps, paths)
            print(f"  -> {k} KiB (near the edge fragmentation decides: read it as +-16 KiB)")
            if figs and label in code:
                live, c = figs["alloc"] / 1024, code[label] / 1024
                print(f"     live after the run {live:.1f} KiB: code {c:.1f}, "
                      f"data (firmware state, normalised config, plant) {live - c:.1f}")
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
