"""Fidelity of the network twin: a sample of stations on the plant-only path and with the
firmware in the loop, R replications each; per KPI both paths' mean and 95 % interval, and
whether they agree (host.fleet.fidelity). Prints; asserts nothing.

    .venv/bin/python bench/fleet_fidelity.py                         # 4 stations x 5 reps, 1 day
    .venv/bin/python bench/fleet_fidelity.py --stations 3 --reps 3 --hours 10

The stations come from the generated network (host.fleet.generate; --network-stations of them,
the NIO-scale volume per station), one of each class first (each class's median-volume
station). A firmware-in-the-loop station-day costs a minute or more of CPU: keep the sample
small on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host.fleet import fidelity, generate, network  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stations", type=int, default=4, help="stations compared (default 4)")
    ap.add_argument("--reps", type=int, default=5, help="replications per station and path (default 5)")
    ap.add_argument("--hours", type=float, default=24.0, help="simulated hours from midnight (default 24)")
    ap.add_argument("--seed", type=int, default=1, help="run seed (default 1)")
    ap.add_argument("--network-stations", type=int, default=100,
                    help="stations of the generated network to pick from (default 100)")
    a = ap.parse_args(argv)
    if a.stations < 1 or a.reps < 2 or not a.hours > 0:
        ap.error("need --stations >= 1, --reps >= 2 (an interval needs two) and --hours > 0")
    n = a.network_stations
    highway = round(n * generate.NIO_HIGHWAY / generate.NIO_STATIONS)
    per_station = generate.NIO_SWAPS_PER_DAY / generate.NIO_STATIONS
    net = network.from_dict(generate.network(n, highway, per_station * n), "generated")
    specs = fidelity.sample_stations(net.stations, a.stations)
    cmd = "bench/fleet_fidelity.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"# {cmd}\n# {len(specs)} stations x {a.reps} replications x {a.hours:g} h, seed {a.seed}",
          flush=True)
    t0 = time.perf_counter()
    res = fidelity.compare(specs, a.reps, a.hours * 3600.0, a.seed,
                           progress=lambda m: print("  " + m, file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    print(fidelity.table(res))
    plant = sum(c.plant_wall_s for c in res)
    fw = sum(c.firmware_wall_s for c in res)
    runs = len(res) * a.reps
    agree = sum(v.agree for c in res for v in c.verdicts())
    total = len(res) * len(fidelity.KPIS)
    print(f"\nagree: {agree} of {total} station KPIs (95 % intervals overlap, or the difference is "
          f"within the tolerance)")
    print(f"wall time: plant-only {plant:.2f} s ({plant / runs * 1000:.0f} ms a run), firmware "
          f"{fw:.1f} s ({fw / runs:.1f} s a run), ratio {fw / plant:.0f}x; total {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
