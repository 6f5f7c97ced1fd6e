"""Boot the emulated Pico (hil/targets/pico.py) N times and print the wall time of each boot
and of one raw-REPL round trip, with the GIL work-around (pico_rp2040py, work-around 3) and,
with --without-workaround, without it: the interpreter's default 5 ms switch interval, under
which the waiting thread can starve behind the engine's 5 ms batches. Measures and prints;
asserts nothing.

    .venv/bin/python bench/pico_boot.py --boots 5
    .venv/bin/python bench/pico_boot.py --boots 5 --without-workaround --give-up 30
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil.targets import pico_rp2040py  # noqa: E402
from hil.targets.pico import EmulatedPico  # noqa: E402


def one(give_up_s: float) -> tuple[float, float]:
    """(boot wall s, round-trip wall s); inf where it gave up."""
    t0 = time.perf_counter()
    p = EmulatedPico()
    try:
        try:
            p.boot(timeout=give_up_s)
        except Exception:
            return float("inf"), float("inf")
        boot = time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            out = p.exec("print(6 * 7)", timeout=give_up_s)
        except Exception:
            return boot, float("inf")
        assert out.strip() == "42"
        return boot, time.perf_counter() - t1
    finally:
        p.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boots", type=int, default=5)
    ap.add_argument("--give-up", type=float, default=30.0,
                    help="seconds before a boot or exec counts as stuck")
    ap.add_argument("--without-workaround", action="store_true",
                    help="keep the interpreter's default 5 ms GIL switch interval")
    a = ap.parse_args()
    if a.without_workaround:
        pico_rp2040py.shorten_switch_interval = lambda: None  # type: ignore[assignment]
    else:
        pico_rp2040py.shorten_switch_interval()
    print(f"GIL switch interval {sys.getswitchinterval() * 1000:.1f} ms")
    rows = []
    for k in range(a.boots):
        boot, rt = one(a.give_up)
        rows.append((boot, rt))
        print(f"boot {k + 1}: {boot:8.2f} s   round trip {rt:8.3f} s")
    finite = [b for b, _ in rows if b != float("inf")]
    stuck = sum(1 for b, r in rows if b == float("inf") or r == float("inf"))
    if finite:
        print(f"boot wall: median {statistics.median(finite):.2f} s, max {max(finite):.2f} s; "
              f"{stuck} of {a.boots} stuck past {a.give_up:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
