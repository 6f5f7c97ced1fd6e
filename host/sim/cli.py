"""``swapstation sim``: run a station scenario in virtual time with the real firmware in the loop."""

from __future__ import annotations

import argparse
import datetime
import re
import sys
import time
from pathlib import Path
from typing import Any

from host import cli_args
from host.sim import scenario as scn

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C

# Simulated seconds per wall second for the estimate printed at the start: between the quiet
# and the busy figures of the shared 2-core box (docs/scenarios.md, "Speed"); the progress
# output's time left then follows the run's own pace.
SPEED = {"direct": 400.0, "wire": 30.0}
PYTHON_PLANT_SLOWDOWN = 3.0  # --plant python: CPU time of a 2 h run, 3x that of the Cython plant

HELP = """\
Run the station firmware (the same modules the controller runs) against simulated
chargers, packs, bay mechanics, vehicles and grid, in virtual time, and report KPIs:
swaps served, balking and reneging vehicles, waits, swap durations, SoC handed over,
grid energy, peak power and cost, charger utilisation, alarms and faults.

SCENARIO is a built-in name (see --list) or a .toml/.json file (schema: docs/scenarios.md).
The same scenario, duration, seed and mode give the same KPIs to the last digit.

exit codes: 0 ok, 1 the simulation failed, 2 bad arguments or scenario file (or an --out
folder that cannot be written), 130 interrupted (Ctrl-C: the report so far is written,
marked partial).
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sim",
        help="simulate a station scenario with the real firmware in the loop",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # argparse takes "-2h" for an option; read it as a (negative) duration so it gets "must be positive".
    p._negative_number_matcher = re.compile(r"^-\d")
    p.add_argument("scenario", nargs="?", default=scn.DEFAULT_SCENARIO,
                   help=f"built-in scenario name or scenario file (default: {scn.DEFAULT_SCENARIO})")
    p.add_argument("--duration", type=cli_args.duration, default=None,
                   help="virtual time to simulate, e.g. 6h, 1d, 3d (default: the scenario's, usually 1d)")
    p.add_argument("--seed", type=cli_args.seed, default=None, help="random seed (default: the scenario's)")
    p.add_argument("--mode", choices=scn.MODES, default=None,
                   help="direct: plant registers called in process (fast); wire: complete Modbus RTU frames "
                        "between the firmware's master and simulated slaves (default: the scenario's)")
    p.add_argument("--plant", choices=("fast", "python"), default="fast",
                   help="plant models: compiled Cython kernels (fast) or the pure-Python reference")
    p.add_argument("--out", type=Path, default=None,
                   help="write summary.json, timeseries.csv, swaps.csv and PNG plots into this folder")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-frames", action="store_true",
                   help="with --out: skip frames.jsonl.gz, the view frames `swapstation replay` shows")
    p.add_argument("--json", action="store_true", help="print the JSON summary instead of the table")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no table")
    p.add_argument("--list", action="store_true", help="list the built-in scenarios and exit")
    p.add_argument("--live", type=cli_args.listen, default=None, metavar="[HOST:]PORT",
                   help="serve a live view of the run on http://HOST:PORT/ (host default 127.0.0.1; "
                        "docs/live-view.md); virtual time then runs at --speed")
    p.add_argument("--speed", choices=("1", "10", "100", "max"), default="1",
                   help="with --live: virtual seconds per wall second at the start (the page changes it)")
    p.set_defaults(func=run)


def _list() -> int:
    for name in scn.builtin_names():
        try:
            print(scn.describe(scn.load(name)))
        except scn.ScenarioError as e:
            print(f"{name:<22} (broken: {e})")
    return EXIT_OK


def expected_wall_s(sc: scn.Scenario, plant: str) -> float:
    return sc.duration_s / SPEED[sc.mode] * (PYTHON_PLANT_SLOWDOWN if plant == "python" else 1.0)


def _minutes(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:  # before or after the simulation itself: nothing to keep
        print("swapstation sim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    if args.list:
        return _list()
    try:
        sc = scn.load(args.scenario)
        if args.duration is not None:
            sc.duration_s = args.duration
        if args.seed is not None:
            sc.seed = args.seed
        if args.mode is not None:
            sc.mode = args.mode
        scn.check_schedule(sc)
        scn.check_sim(sc)
    except scn.ScenarioError as e:
        print(f"swapstation sim: {e}", file=sys.stderr)
        return EXIT_USAGE
    for w in sc.config_warnings:
        print(f"swapstation sim: warning: {w}", file=sys.stderr)
    if args.out is not None:
        why = cli_args.check_out(args.out)
        if why is not None:
            print(f"swapstation sim: --out {args.out}: cannot write the report there ({why})",
                  file=sys.stderr)
            return EXIT_USAGE

    import host.sim.engine as engine
    import host.sim.report as report

    live = None
    if args.live is not None:
        from host.live.server import LiveError, LiveServer

        try:  # bound before the run: a port in use is a usage error, not a lost run
            live = LiveServer(args.live[0], args.live[1], title=f"swapstation sim {sc.name}")
        except LiveError as e:
            print(f"swapstation sim: --live: {e}", file=sys.stderr)
            return EXIT_USAGE
    try:
        return _simulate(args, sc, engine, report, live)
    finally:
        if live is not None:
            live.stop()


def _simulate(args: argparse.Namespace, sc: scn.Scenario, engine: Any, report: Any, live: Any) -> int:

    if not args.quiet:
        slow = "; wire mode models every frame, about 13x slower than direct" if sc.mode == "wire" else ""
        print(f"{sc.name}: {report.span(sc.duration_s)} simulated in {sc.mode} mode, "
              f"expected wall time about {_minutes(expected_wall_s(sc, args.plant))}{slow}", file=sys.stderr)
    progress = report.Progress(sc.duration_s, enabled=not args.quiet)
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.perf_counter()
    eng = engine.Engine(sc, plant=args.plant, progress=progress.update)
    pacer = recorder = None
    if args.out is not None and not args.no_frames:
        from host.live.record import Recorder

        recorder = Recorder(eng)
    if live is not None:
        from host.live.pacer import Pacer, controls

        pacer = Pacer(eng, live.publish, speed=args.speed)
        live.controls.update(controls(pacer))
        live.start()
        print(f"live view: {live.url}", file=sys.stderr)
    if pacer is not None or recorder is not None:
        from host.live.record import both

        eng.pace = both(recorder, pacer)
    previous = cli_args.stop_on_sigint(eng)
    try:
        result = eng.run()
    except engine.SimulationError as e:
        progress.close()
        print(f"swapstation sim: simulation failed: {e}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        cli_args.restore_sigint(previous)
        if pacer is not None:
            pacer.done()
        if recorder is not None:
            recorder.done()
    progress.close()
    wall_s = time.perf_counter() - t0
    summary = result.summary
    partial = bool(summary.get("partial"))
    facts = {
        "started_utc": started.isoformat(timespec="seconds"),
        "wall_s": round(wall_s, 3),
        "simulated_per_wall_s": round(summary["duration_s"] / wall_s, 1) if wall_s > 0 else None,
        "partial": partial,
    }
    if partial:
        print(f"swapstation sim: interrupted after {report.span(summary['duration_s'])} of "
              f"{report.span(sc.duration_s)}: "
              "the report covers the run so far and is marked partial", file=sys.stderr)

    if args.out is not None:
        try:
            written = report.write_report(args.out, summary, result.series, result.swaps, result.swap_columns,
                                          plots=not args.no_plots, run_facts=facts, scenario=sc)
            if recorder is not None:
                written.append(recorder.write(args.out))
        except OSError as e:
            print(f"swapstation sim: cannot write the report to {args.out}: {e}", file=sys.stderr)
            return EXIT_FAILURE
        if not args.quiet:
            print(f"report: {', '.join(str(p) for p in written)}", file=sys.stderr)
    if args.json:
        import json

        print(json.dumps(report.json_safe(summary), indent=2))
    elif not args.quiet:
        print(report.format_table(summary, facts))
    return EXIT_INTERRUPTED if partial else EXIT_OK
