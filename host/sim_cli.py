"""``swapstation sim``: run a station scenario in virtual time with the real firmware in the loop."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from host import scenario as scn

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

HELP = """\
Run the station firmware (the same modules the controller runs) against simulated
chargers, packs, bay mechanics, vehicles and grid, in virtual time, and report KPIs:
swaps served, balking and reneging vehicles, waits, swap durations, SoC handed over,
grid energy, peak power and cost, charger utilisation, alarms and faults.

SCENARIO is a built-in name (see --list) or a .toml/.json file (schema: docs/scenarios.md).
The same scenario, duration, seed and mode give the same KPIs to the last digit.

exit codes: 0 ok, 1 the simulation failed, 2 bad arguments or scenario file.
"""


def _duration(text: str) -> float:
    try:
        s = scn.parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if s <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return s


def _seed(text: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sim",
        help="simulate a station scenario with the real firmware in the loop",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", nargs="?", default=scn.DEFAULT_SCENARIO,
                   help=f"built-in scenario name or scenario file (default: {scn.DEFAULT_SCENARIO})")
    p.add_argument("--duration", type=_duration, default=None,
                   help="virtual time to simulate, e.g. 6h, 1d, 3d (default: the scenario's, usually 1d)")
    p.add_argument("--seed", type=_seed, default=None, help="random seed (default: the scenario's)")
    p.add_argument("--mode", choices=scn.MODES, default=None,
                   help="direct: plant registers called in process (fast); wire: complete Modbus RTU frames "
                        "between the firmware's master and simulated slaves (default: the scenario's)")
    p.add_argument("--plant", choices=("fast", "python"), default="fast",
                   help="plant models: compiled Cython kernels (fast) or the pure-Python reference")
    p.add_argument("--out", type=Path, default=None,
                   help="write summary.json, timeseries.csv, swaps.csv and PNG plots into this folder")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--json", action="store_true", help="print the JSON summary instead of the table")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no table")
    p.add_argument("--list", action="store_true", help="list the built-in scenarios and exit")
    p.set_defaults(func=run)


def _list() -> int:
    for name in scn.builtin_names():
        try:
            print(scn.describe(scn.load(name)))
        except scn.ScenarioError as e:
            print(f"{name:<22} (broken: {e})")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list()
    try:
        sc = scn.load(args.scenario)
    except scn.ScenarioError as e:
        print(f"swapstation sim: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.duration is not None:
        sc.duration_s = args.duration
    if args.seed is not None:
        sc.seed = args.seed
    if args.mode is not None:
        sc.mode = args.mode

    import host.engine as engine
    import host.report as report

    progress = report.Progress(sc.duration_s, enabled=not args.quiet)
    t0 = time.perf_counter()
    try:
        result = engine.run(sc, plant=args.plant, progress=progress.update)
    except engine.SimulationError as e:
        progress.close()
        print(f"swapstation sim: simulation failed: {e}", file=sys.stderr)
        return EXIT_FAILURE
    progress.close()
    summary = result.summary
    summary["wall_s"] = time.perf_counter() - t0

    if args.out is not None:
        try:
            written = report.write_report(args.out, summary, result.series, result.swaps, result.swap_columns,
                                          plots=not args.no_plots)
        except OSError as e:
            print(f"swapstation sim: cannot write the report to {args.out}: {e}", file=sys.stderr)
            return EXIT_FAILURE
        if not args.quiet:
            print(f"report: {', '.join(str(p) for p in written)}", file=sys.stderr)
    if args.json:
        import json

        print(json.dumps(report.json_safe(summary), indent=2))
    elif not args.quiet:
        print(report.format_table(summary))
    return EXIT_OK
