"""Virtual time at a chosen ratio to wall time, pause and resume, and the snapshots, all
from the engine's own thread between two steps (``Engine.pace``).

The engine jumps from one moment that matters to the next; before each jump the pacer
sleeps until wall time has caught up with it at the chosen speed, in slices of at most
``SLICE_S`` so that the page keeps getting snapshots and controls take effect at once.
At "max" it never sleeps and only looks at the wall clock, which is what keeps a watched
run as fast as an unwatched one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from host.live.snapshot import Snapshotter

SPEEDS: dict[str, float] = {"1": 1.0, "10": 10.0, "100": 100.0, "max": 0.0}  # 0: no pacing
SNAPSHOT_EVERY_S = 0.2  # wall time between two snapshots: five a second
SLICE_S = 0.05  # longest sleep between two looks at the controls


class Pacer:
    """``Engine.pace`` for a live run; ``publish`` receives each snapshot (any thread-safe
    hand-over: the server's ``publish``). Controls (``pause``, ``resume``, ``set_speed``)
    may come from any thread."""

    def __init__(self, eng: Any, publish: Callable[[dict[str, Any]], None], speed: str = "1",
                 paused: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        if speed not in SPEEDS:
            raise ValueError(f"unknown speed {speed!r}; one of {', '.join(SPEEDS)}")
        self.eng = eng
        self.publish = publish
        self.snap = Snapshotter(eng)
        self.clock = clock
        self._lock = threading.Lock()
        self.speed = speed
        self.paused = paused
        self.finished = False
        self._anchor: tuple[float, int] | None = None  # (wall, virtual ms) the pace counts from
        self._next_snap = 0.0
        self._wake = threading.Event()
        self._free = speed == "max" and not paused  # nothing to wait for: only snapshots to take

    # --- controls (any thread) ---
    def pause(self) -> None:
        with self._lock:
            self.paused = True
            self._free = False
        self._wake.set()

    def resume(self) -> None:
        with self._lock:
            self.paused = False
            self._anchor = None  # count again from now: no rush to catch up the paused time
            self._free = self.speed == "max"
        self._wake.set()

    def set_speed(self, speed: str) -> None:
        if speed not in SPEEDS:
            raise ValueError(f"unknown speed {speed!r}; one of {', '.join(SPEEDS)}")
        with self._lock:
            self.speed = speed
            self._anchor = None
            self._free = speed == "max" and not self.paused
        self._wake.set()

    # --- the engine's thread ---
    def snapshot(self) -> dict[str, Any]:
        return self.snap(speed=self.speed, paused=self.paused, finished=self.finished)

    def _maybe_publish(self, now: float, force: bool = False) -> None:
        if force or now >= self._next_snap:
            self._next_snap = now + SNAPSHOT_EVERY_S
            self.publish(self.snapshot())

    def __call__(self, t_ms: int) -> None:
        # The common case at "max", once per engine step: one clock read and two tests.
        if self._free and self.clock() < self._next_snap:
            return
        eng = self.eng
        while True:
            now = self.clock()
            self._maybe_publish(now)
            if eng.stopping:
                return
            with self._lock:
                paused, ratio, anchor = self.paused, SPEEDS[self.speed], self._anchor
                if anchor is None and not paused:
                    anchor = self._anchor = (now, eng.t_ms)
            if paused:
                self._wake.wait(SLICE_S)
                self._wake.clear()
                continue
            if ratio <= 0.0:
                return
            assert anchor is not None
            due = anchor[0] + (t_ms - anchor[1]) / 1000.0 / ratio
            if due <= now:
                return
            self._wake.wait(min(SLICE_S, due - now, max(0.0, self._next_snap - now) + 1e-3))
            self._wake.clear()

    def done(self) -> None:
        """The run ended: a last snapshot, marked finished."""
        self.finished = True
        self._maybe_publish(self.clock(), force=True)


def controls(pacer: Pacer) -> dict[str, Callable[[dict[str, Any]], Any]]:
    """The page's controls of a simulation: pause, resume, speed (``{"speed": "10"}``)."""

    def speed(msg: dict[str, Any]) -> str:
        pacer.set_speed(str(msg.get("speed")))
        return pacer.speed

    return {"pause": lambda msg: pacer.pause(), "resume": lambda msg: pacer.resume(), "speed": speed}
