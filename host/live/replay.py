"""``swapstation replay DIR``: the live page over a finished run's view frames, with a
scrubber over time (DIR is a ``swapstation sim --out`` report folder).

It serves until Ctrl-C. The frames are ``frames.jsonl.gz`` (host.live.record); a folder
without them, or with a damaged file, is refused with the reason before anything starts.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from host import cli_args

EXIT_OK = 0
EXIT_USAGE = 2
DEFAULT_LISTEN = "127.0.0.1:8765"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("replay", help="show a finished simulation's report folder in the live page",
                              description=__doc__)
    p.add_argument("report", type=Path, help="report folder of `swapstation sim --out`")
    p.add_argument("--live", type=cli_args.listen, default=cli_args.listen(DEFAULT_LISTEN),
                   metavar="[HOST:]PORT", help=f"where to serve the page (default {DEFAULT_LISTEN})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    from host.live.record import FramesError, load
    from host.live.server import LiveError, LiveServer

    try:
        frames = load(args.report)
    except FramesError as e:
        print(f"swapstation replay: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        server = LiveServer(args.live[0], args.live[1], title=f"swapstation replay {args.report}",
                            frames=frames)
    except LiveError as e:
        print(f"swapstation replay: --live: {e}", file=sys.stderr)
        return EXIT_USAGE
    with server:
        print(f"replay of {args.report} ({len(frames)} frames): {server.url}   Ctrl-C ends it",
              file=sys.stderr)
        try:
            (stop or threading.Event()).wait()
        except KeyboardInterrupt:
            pass
    return EXIT_OK
