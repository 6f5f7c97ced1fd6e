"""Simulator speed with the firmware in the loop: simulated seconds per wall-clock second.

Runs the default scenario (pss4-urban-day: 23 slots, real supervisor, Cython plant) for a
stretch of virtual time in each bus mode, prints the speed and the projected wall time of
one station-day, then where the time goes (cProfile, grouped by layer). Prints only; it
never asserts.

    .venv/bin/python bench/sim_speed.py                 # 6 h direct, 30 min wire
    .venv/bin/python bench/sim_speed.py --direct 24h --wire 2h --profile 2h
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host.sim import engine, scenario  # noqa: E402


def run(mode: str, duration_s: float, plant: str) -> tuple[float, engine.Engine, dict]:
    sc = scenario.load("pss4-urban-day")
    sc.duration_s = duration_s
    sc.mode = mode
    e = engine.Engine(sc, plant=plant)
    t0 = time.perf_counter()
    r = e.run()
    return time.perf_counter() - t0, e, r.summary


def layer(filename: str) -> str:
    groups = (("/firmware/", "firmware"), ("/host/plant/", "plant"), ("/hil/", "plant (hil adapters)"),
              ("/host/", "simulator (engine, buses, kpi)"))
    for part, name in groups:
        if part in filename:
            return name
    return "builtins / numpy"


def profile(mode: str, duration_s: float, plant: str) -> None:
    sc = scenario.load("pss4-urban-day")
    sc.duration_s = duration_s
    sc.mode = mode
    e = engine.Engine(sc, plant=plant)
    prof = cProfile.Profile()
    prof.enable()
    e.run()
    prof.disable()
    st = pstats.Stats(prof)
    by_layer: collections.Counter[str] = collections.Counter()
    by_file: collections.Counter[str] = collections.Counter()
    for (fname, _line, _fn), (_cc, _nc, tt, _ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        by_layer[layer(fname)] += tt
        short = fname.split("/work/main/")[-1] if "/work/main/" in fname else fname.rsplit("/", 1)[-1]
        by_file[short] += tt
    total = sum(by_layer.values())
    print(f"\nprofile, {mode} mode, {duration_s / 3600:.1f} h simulated ({total:.1f} s under cProfile):")
    for name, tt in by_layer.most_common():
        print(f"  {name:34s} {tt:7.2f} s  {100 * tt / total:5.1f} %")
    print("  top files:")
    for name, tt in by_file.most_common(10):
        print(f"    {name:52s} {tt:7.2f} s  {100 * tt / total:5.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--direct", type=scenario.parse_duration, default=6 * 3600.0)
    ap.add_argument("--wire", type=scenario.parse_duration, default=1800.0)
    ap.add_argument("--profile", type=scenario.parse_duration, default=3600.0, help="0: no profile")
    ap.add_argument("--plant", choices=("fast", "python"), default="fast")
    a = ap.parse_args()
    print(f"pss4-urban-day, firmware in the loop, plant {a.plant}")
    print(f"{'mode':6s} {'simulated':>10s} {'wall':>8s} {'sim s / wall s':>15s} {'one day takes':>14s} "
          f"{'fw ticks':>9s} {'swaps':>6s}")
    for mode, dur in (("direct", a.direct), ("wire", a.wire)):
        if dur <= 0:
            continue
        wall, e, s = run(mode, dur, a.plant)
        speed = dur / wall
        print(f"{mode:6s} {dur / 3600:8.1f} h {wall:7.1f}s {speed:15.0f} {86400 / speed:12.1f} s "
              f"{e.fw.sup.ticks:9d} {s['swaps']:6d}")
    if a.profile > 0:
        profile("direct", a.profile, a.plant)


if __name__ == "__main__":
    main()
