"""What the ``swapstation`` subcommands share: argument types, the --out check, Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import tempfile
from pathlib import Path
from typing import Any

from host.sim import scenario as scn


def duration(text: str) -> float:
    """An argparse type: a positive duration ("90s", "2h", "1d12h", "1:30")."""
    try:
        s = scn.parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if s <= 0:
        raise argparse.ArgumentTypeError(f"must be positive (got {text})")
    return s


def seed(text: str) -> int:
    """An argparse type: a seed, an integer >= 0 (0x.. accepted)."""
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def listen(text: str) -> tuple[str, int]:
    """An argparse type: ``[HOST:]PORT`` for a server (host default 127.0.0.1)."""
    from host.live import parse_listen

    try:
        return parse_listen(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def check_out(out: Path) -> str | None:
    """Why a report cannot go into ``out`` (created if missing), or None: found before the run."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return None


def stop_on_sigint(run: Any) -> Any:
    """The first Ctrl-C calls ``run.request_stop()`` (the run ends at its next event and the
    report so far is kept); a second one stops at once. Returns the handler to give back to
    :func:`restore_sigint`, or None off the main thread."""

    def stop(signum: int, frame: Any) -> None:
        run.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    try:
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            return None  # started with Ctrl-C ignored (a background job): keep it so
        return signal.signal(signal.SIGINT, stop)
    except ValueError:  # not the main thread: no handler, Ctrl-C is the caller's
        return None


def restore_sigint(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)
