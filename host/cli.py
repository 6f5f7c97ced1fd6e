"""``swapstation``: the project's one command line, with a subcommand per job.

Each subcommand lives in its own module exposing ``register(subparsers)``; that
function adds the parser and sets ``func`` to a callable taking the parsed
arguments and returning the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, what it adds). Modules are imported lazily so one broken extra cannot block the rest.
SUBCOMMAND_MODULES: list[str] = ["host.build", "host.flash", "host.demo", "host.sim_cli", "hil.cli"]

EXIT_OK = 0
EXIT_FAILURE = 1  # the job ran and found a problem (a failed check, a KPI out of range)
EXIT_USAGE = 2  # bad arguments, bad config or scenario file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swapstation",
        description=(
            "Battery-swap station tools: simulate a station, drive the HIL rig, build and flash firmware."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
