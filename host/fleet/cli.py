"""``swapstation fleet``: every station of a swap network on the plant-only path, on Dask."""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from host import cli_args
from host.sim import scenario as scn

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

HELP = """\
Run every station of a battery-swap network for a stretch of virtual time on the plant-only
path (packs, chargers, grid and vehicles; a simple built-in dispatcher, not the firmware),
and report network KPIs: swaps, vehicles turned away, P(wait) and the wait distribution,
grid energy, the network's peak 15-minute demand, energy cost; per-station KPIs go to a
Parquet (or CSV) table, with plots (stations ranked by service, P(wait) across stations, a
map coloured by P(wait), the network's demand).

NETWORK is a .toml or .json network file (schema: docs/fleet.md). --generate OUT writes a
synthetic one instead (default: NIO scale, 2,855 stations, 923 on highways, about 80,000
vehicles a day) and exits.

Stations run as tasks on Dask: an embedded LocalCluster with one worker process per core
(--workers N to choose), an existing cluster (--scheduler ADDRESS), or none (--serial).
Station i draws from child i of numpy.random.SeedSequence(seed): the same seed gives the
same results to the last digit, serially or on any number of workers.

--packs tracks every pack across the network (the file's [packs] settings): vehicles carry
the packs they received to their next swap, possibly at another station; the run goes a day at
a time; the report adds the packs' state of health, those due for retirement, each station's
stock against the mix of its arriving vehicles and the pack transfers that would restore it.

exit codes: 0 ok, 1 the run failed, 2 bad arguments or network file (or an --out folder that
cannot be written), 130 interrupted (the first Ctrl-C keeps the stations finished so far:
the report is written, marked partial; a second one stops at once).
"""


def _at_least(lo: float, conv: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type: ``conv(text)``, at least ``lo``."""

    def parse(text: str) -> Any:
        try:
            v = conv(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if conv is int else 'a number'}: {text!r}") \
                from None
        if not v >= lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo:g}")
        return v

    return parse


_positive_int = _at_least(1, int)


def _fraction(text: str) -> float:
    v = _at_least(0.0, float)(text)
    if v > 1.0:
        raise argparse.ArgumentTypeError("must be <= 1")
    return float(v)



_count = _at_least(0, int)
_volume = _at_least(0.0, float)


def register(subparsers: Any) -> None:
    from host.fleet import generate as gen

    p = subparsers.add_parser(
        "fleet", help="simulate a whole swap network (plant-only stations, on Dask)", description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("network", nargs="?", help="network file (.toml or .json)")
    p.add_argument("--duration", type=cli_args.duration, default=None,
                   help="virtual time, e.g. 6h, 1d (default: the file's)")
    p.add_argument("--seed", type=cli_args.seed, default=None, help="run seed (default: the file's)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--serial", action="store_true", help="run the stations in this process, no Dask")
    where.add_argument("--workers", type=_positive_int, default=None,
                       help="worker processes of the embedded LocalCluster (default: one per core)")
    where.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="use the Dask cluster at ADDRESS (e.g. tcp://10.0.0.5:8786); its workers need "
                            "this project installed")
    p.add_argument("--sample", type=_positive_int, default=None, metavar="N",
                   help="run only N stations spread evenly through the file (each with the seed it has in "
                        "the full run): a quick estimate")
    p.add_argument("--substep", type=cli_args.duration, default=5.0,
                   help="plant sub-step (default 5 s; 30 s is about 3x faster, KPIs within about 0.1 %%)")
    p.add_argument("--packs", action="store_true",
                   help="track every pack across stations and days (the file's [packs] settings): SoH, "
                        "retirement, stock imbalance and rebalancing moves; runs a day at a time")
    p.add_argument("--retire-soh", type=_fraction, default=None, metavar="SOH",
                   help="with --packs: a pack below this state of health (0-1) is due for retirement "
                        "(default: the file's, else 0.8)")
    p.add_argument("--out", type=Path, default=None,
                   help="write summary.json, run.json, stations.parquet (or .csv) and PNG plots here")
    p.add_argument("--table", choices=("parquet", "csv"), default="parquet", help="per-station table format")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--json", action="store_true", help="print the JSON summary instead of the table")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no table")
    g = p.add_argument_group("synthetic networks (--generate)")
    g.add_argument("--generate", type=Path, metavar="OUT", default=None,
                   help="write a synthetic network file (.toml or .json) and exit")
    g.add_argument("--stations", type=_positive_int, default=gen.NIO_STATIONS,
                   help=f"stations (default {gen.NIO_STATIONS:,})")
    g.add_argument("--highway", type=_count, default=None,
                   help=f"of which on highways (default {gen.NIO_HIGHWAY:,}, or that share of --stations)")
    g.add_argument("--swaps-per-day", type=_volume, default=None,
                   help=f"network arrivals a day (default {gen.NIO_SWAPS_PER_DAY:,.0f}, or as many per "
                        "station)")
    g.add_argument("--generator-seed", type=cli_args.seed, default=2024,
                   help="the generator's seed (default 2024)")
    p.set_defaults(func=run)


def _generate(args: argparse.Namespace) -> int:
    from host.fleet import generate as gen

    n = args.stations
    highway = args.highway if args.highway is not None else round(gen.NIO_HIGHWAY * n / gen.NIO_STATIONS)
    volume = (args.swaps_per_day if args.swaps_per_day is not None
              else gen.NIO_SWAPS_PER_DAY * n / gen.NIO_STATIONS)
    if highway > n:
        print(f"swapstation fleet: --highway {highway} is more than --stations {n}", file=sys.stderr)
        return EXIT_USAGE
    if args.generate.suffix not in (".toml", ".json"):
        print(f"swapstation fleet: --generate {args.generate}: write a .toml or .json file", file=sys.stderr)
        return EXIT_USAGE
    try:
        data = gen.network(n, highway, volume, seed=args.generator_seed)
    except ValueError as e:
        print(f"swapstation fleet: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        gen.write(data, args.generate)
    except OSError as e:
        print(f"swapstation fleet: cannot write {args.generate}: {e.strerror or e}", file=sys.stderr)
        return EXIT_FAILURE
    if not args.quiet:
        print(f"{args.generate}: {n:,} stations ({highway:,} highway), {volume:,.0f} vehicles a day",
              file=sys.stderr)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:  # the second Ctrl-C, or one outside the run: nothing kept
        print("swapstation fleet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    if args.generate is not None:
        if args.network:
            print("swapstation fleet: give a NETWORK to run or --generate OUT, not both", file=sys.stderr)
            return EXIT_USAGE
        return _generate(args)
    if not args.network:
        print("swapstation fleet: a NETWORK file is needed (or --generate OUT to write one)", file=sys.stderr)
        return EXIT_USAGE
    from host.fleet import network as nw

    try:
        net = nw.load(args.network)
    except scn.ScenarioError as e:
        print(f"swapstation fleet: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.sample is not None and args.sample < len(net.stations):
        step = len(net.stations) / args.sample
        net.stations = [net.stations[int(k * step)] for k in range(args.sample)]
    if args.out is not None:
        why = cli_args.check_out(args.out)
        if why is not None:
            print(f"swapstation fleet: --out {args.out}: cannot write the report there ({why})",
                  file=sys.stderr)
            return EXIT_USAGE

    from host.fleet import report, runner
    from host.sim.report import Progress, span

    duration = args.duration if args.duration is not None else net.duration_s
    if args.retire_soh is not None and not args.packs:
        print("swapstation fleet: --retire-soh needs --packs", file=sys.stderr)
        return EXIT_USAGE
    if args.retire_soh is not None:
        import dataclasses

        net.packs = dataclasses.replace(net.packs, retire_soh=args.retire_soh)
    from host.fleet.packs import PackLedgerError, PackSupplyError, epochs

    days = len(epochs(duration)) if args.packs else 1
    n = len(net.stations)
    backend = "serial" if args.serial else "local"
    if not args.quiet:
        where = "in this process" if args.serial else (
            f"on the Dask cluster at {args.scheduler}" if args.scheduler else
            f"on a local Dask cluster of {args.workers or runner.default_workers()} worker processes")
        tracked = f", packs tracked over {days} day{'s' if days > 1 else ''}" if args.packs else ""
        print(f"{net.name}: {n:,} stations, {span(duration)} each, {where}{tracked}", file=sys.stderr)
    progress = Progress(n * days, enabled=not args.quiet, unit="stations" if days == 1 else "station-days",
                        per_unit=1.0, what="done", digits=0, every_pct=10.0)
    done = [0]
    stopping = _Stop()

    def seen(_: Any) -> None:
        done[0] += 1
        progress.update(done[0])

    previous = cli_args.stop_on_sigint(stopping)
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.perf_counter()
    try:
        result = runner.run_network(net, duration_s=duration, seed=args.seed, backend=backend,
                                    workers=args.workers, scheduler=args.scheduler, substep_s=args.substep,
                                    progress=seen, stop=lambda: stopping.requested,
                                    packs=True if args.packs else None)
    except PackSupplyError as e:  # the [packs] settings cannot carry the demand: the file's to change
        progress.close()
        print(f"swapstation fleet: {net.source or args.network}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except PackLedgerError as e:  # a bug, never bad input: say so plainly
        progress.close()
        print(f"swapstation fleet: pack ledger: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except (OSError, TimeoutError) as e:  # a scheduler that cannot be reached, a cluster that did not start
        progress.close()
        print(f"swapstation fleet: the Dask cluster failed: {e}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        cli_args.restore_sigint(previous)
    progress.close()
    wall = time.perf_counter() - t0
    facts = {
        "started_utc": started.isoformat(timespec="seconds"),
        "backend": "serial" if args.serial else "dask",
        "scheduler": args.scheduler,
        "workers": result.workers,
        "substep_s": args.substep,
        "wall_s": round(wall, 3),
        "cpu_s": round(runner.cpu_s(result), 3),
        "station_s_per_wall_s": round(result.station_seconds / wall, 1) if wall > 0 else None,
        "partial": result.partial,
    }
    if result.partial and args.packs:
        print(f"swapstation fleet: interrupted after {result.epochs_done} of {days} days: the report covers "
              "those and is marked partial", file=sys.stderr)
    elif result.partial:
        print(f"swapstation fleet: interrupted after {len(result.results):,} of {n:,} stations: the report "
              "covers those and is marked partial", file=sys.stderr)
    if args.out is not None:
        try:
            summary, written = report.write_report(args.out, result, table_format=args.table,
                                                   plots=not args.no_plots, run_facts=facts)
        except OSError as e:
            print(f"swapstation fleet: cannot write the report to {args.out}: {e}", file=sys.stderr)
            return EXIT_FAILURE
        if not args.quiet:
            print(f"report: {', '.join(str(p) for p in written)}", file=sys.stderr)
    else:
        summary = report.summary(result)
    if args.json:
        import json

        from host.sim.report import json_safe

        print(json.dumps(json_safe(summary), indent=2))
    elif not args.quiet:
        print(report.format_table(summary, facts))
    return EXIT_INTERRUPTED if result.partial else EXIT_OK


class _Stop:
    """What the first Ctrl-C sets (host.sim.cli's handler): the run ends after the stations under
    way, keeping their results; a second Ctrl-C stops at once."""

    requested = False

    def request_stop(self) -> None:
        self.requested = True
