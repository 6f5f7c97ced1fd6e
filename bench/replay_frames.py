"""What recording the replay view's frames costs a simulation (host/live/record.py).

Runs pss4-urban-day for --hours with a frame every 30 s of virtual time taken from
Engine.pace, and prints the frames' share of the run's CPU time, their cost each and
their size. Measures and prints; asserts nothing.

    .venv/bin/python bench/replay_frames.py [--hours 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host.live.record import FRAME_EVERY_S, encode  # noqa: E402
from host.live.snapshot import Snapshotter  # noqa: E402
from host.sim import scenario as scn  # noqa: E402
from host.sim.engine import Engine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=3.0)
    args = ap.parse_args()
    sc = scn.load("pss4-urban-day")
    sc.duration_s = args.hours * 3600.0
    eng = Engine(sc)
    snap = Snapshotter(eng)
    took = {"snap": 0.0, "encode": 0.0}
    sizes: list[int] = []
    every_ms = int(FRAME_EVERY_S * 1000)
    due = [0]

    def pace(t_ms: int) -> None:
        if eng.t_ms >= due[0]:
            t0 = time.process_time()
            s = snap(speed="replay")
            t1 = time.process_time()
            sizes.append(len(encode(s)))
            took["snap"] += t1 - t0
            took["encode"] += time.process_time() - t1
            due[0] = eng.t_ms - eng.t_ms % every_ms + every_ms

    eng.pace = pace
    c0 = time.process_time()
    eng.run()
    total = time.process_time() - c0
    n = len(sizes)
    frames = took["snap"] + took["encode"]
    print(f"{args.hours:g} h of pss4-urban-day, a frame every {FRAME_EVERY_S:g} s: {n} frames")
    print(f"run CPU {total:.2f} s, of which frames {frames:.3f} s = {100 * frames / total:.1f} %")
    print(f"per frame: snapshot {1e3 * took['snap'] / n:.3f} ms, encode {1e3 * took['encode'] / n:.3f} ms, "
          f"{sum(sizes) / n / 1024:.1f} KiB of JSON (before gzip)")


if __name__ == "__main__":
    main()
