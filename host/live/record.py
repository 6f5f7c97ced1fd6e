"""A run's view frames, kept with its report for the replay view (``swapstation replay``).

A frame is the live page's snapshot (``host.live.snapshot``), taken every ``FRAME_EVERY_S``
of virtual time from ``Engine.pace`` and once at the end. ``frames.jsonl.gz`` in the report
folder holds one JSON frame per line. The page replays them with a scrubber over time.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from host.live.snapshot import Snapshotter

FRAMES_FILE = "frames.jsonl.gz"
FRAME_EVERY_S = 30.0  # a day is 2,880 frames; each costs about 0.2 ms to take and encode
MAX_FRAMES = 200_000  # a replay larger than this is refused as damaged (about 70 days at 30 s)


class FramesError(ValueError):
    """No frames, or frames that cannot be read; the message says which file and why."""


def encode(snap: dict[str, Any]) -> bytes:
    return json.dumps(snap, separators=(",", ":"), allow_nan=False, default=str).encode()


class Recorder:
    """``Engine.pace`` hook: a frame whenever virtual time has moved ``every_s`` on."""

    def __init__(self, eng: Any, every_s: float = FRAME_EVERY_S) -> None:
        if not every_s > 0:
            raise ValueError(f"every_s must be > 0, not {every_s}")
        self.eng = eng
        self.snap = Snapshotter(eng)
        self.every_ms = int(round(every_s * 1000))
        self.next_ms = 0
        self.frames: list[bytes] = []

    def __call__(self, t_ms: int) -> None:
        now = self.eng.t_ms  # where the engine is: t_ms is where it goes next
        if now >= self.next_ms:
            self.frames.append(encode(self.snap(speed="replay", paused=False, finished=False)))
            self.next_ms = now - now % self.every_ms + self.every_ms

    def done(self) -> None:
        self.frames.append(encode(self.snap(speed="replay", paused=False, finished=True)))

    def write(self, folder: Path) -> Path:
        path = folder / FRAMES_FILE
        with gzip.open(path, "wb", compresslevel=6) as f:
            for frame in self.frames:
                f.write(frame + b"\n")
        return path


def both(*hooks: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """One ``Engine.pace`` from several (the recorder and the live pacer)."""
    live = [h for h in hooks if h is not None]
    if len(live) <= 1:
        return live[0] if live else None

    def pace(t_ms: int) -> None:
        for h in live:
            h(t_ms)

    return pace


def load(folder: Path) -> list[bytes]:
    """The frames of the report in ``folder``, in order; FramesError naming what is wrong."""
    path = folder / FRAMES_FILE
    if not folder.is_dir():
        raise FramesError(f"{folder}: no such report folder")
    if not path.is_file():
        raise FramesError(f"{path}: not there; `swapstation sim ... --out {folder}` writes it "
                          "(runs reported before the replay view have none)")
    frames: list[bytes] = []
    try:
        with gzip.open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip(b"\n")
                if not line:
                    continue
                snap = json.loads(line)
                if not isinstance(snap, dict) or not isinstance(snap.get("t_s"), (int, float)):
                    raise FramesError(f"{path}: line {n} is not a view frame")
                frames.append(line)
                if len(frames) > MAX_FRAMES:
                    raise FramesError(f"{path}: more than {MAX_FRAMES} frames")
    except (OSError, EOFError, gzip.BadGzipFile, ValueError) as e:
        if isinstance(e, FramesError):
            raise
        raise FramesError(f"{path}: cannot be read ({e})") from None
    if not frames:
        raise FramesError(f"{path}: holds no frames")
    return frames
