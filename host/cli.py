"""``swapstation``: the project's one command line, with a subcommand per job.

Each subcommand lives in its own module exposing ``register(subparsers)``; that
function adds the parser and sets ``func`` to a callable taking the parsed
arguments and returning the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

# command -> the module that adds it. Only the chosen command's module is imported, so
# `--version` or `sim --list` do not load pymodbus or matplotlib, and one broken extra
# cannot block the rest; help and an unknown command load them all to list them.
SUBCOMMANDS: dict[str, str] = {
    "build": "host.deploy.build",
    "flash": "host.deploy.flash",
    "demo": "hil.demo",
    "sim": "host.sim.cli",
    "replay": "host.live.replay",
    "fleet": "host.fleet.cli",
    "sweep": "host.fleet.sweep",
    "hil": "hil.cli",
    "backend": "host.backend.cli",
    "ops": "host.backend.ops",
}
SUBCOMMAND_MODULES: list[str] = list(SUBCOMMANDS.values())

EXIT_OK = 0
EXIT_FAILURE = 1  # the job ran and found a problem (a failed check, a KPI out of range)
EXIT_USAGE = 2  # bad arguments, bad config or scenario file
EXIT_PIPE_CLOSED = 141  # the reader of stdout went away (`| head`): the shell's status for SIGPIPE


def version() -> str:
    """The checkout's version (pyproject.toml), else the installed package's."""
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        with open(pyproject, "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    from importlib.metadata import version as installed

    return installed("swapstation")


def _modules_for(argv: list[str]) -> list[str]:
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in SUBCOMMANDS:
        return [SUBCOMMANDS[command]]
    if command is None and "--version" in argv and not {"-h", "--help"} & set(argv):
        return []
    return SUBCOMMAND_MODULES


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the subcommands ``argv`` may need (all of them without ``argv``)."""
    parser = argparse.ArgumentParser(
        prog="swapstation",
        description=(
            "Battery-swap station tools: simulate a station, drive the HIL rig, build and flash firmware."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES if argv is None else _modules_for(argv):
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
        code = int(args.func(args))
        sys.stdout.flush()  # here, so a closed pipe is met inside the try, not at exit
        return code
    except BrokenPipeError:
        # Python's documented recipe: point stdout at /dev/null so the flush at exit is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE_CLOSED


if __name__ == "__main__":
    sys.exit(main())
