"""The time-ordered event queue of the simulator's engine and the plant-only stations.

Events at the same time come out in the order they were scheduled, so a run is the same
whatever the items are. The bay model keeps its own named timers instead (``BayModel._at``):
a handful at a time, each replaced or cancelled by name as the coils change, which a queue
would only do by marking dead entries.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Generic, TypeVar

T = TypeVar("T")


class EventQueue(Generic[T]):
    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()

    def push(self, t: float, item: T) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), item))

    def next_time(self) -> float:
        """When the first event is due (``inf`` when there is none)."""
        return self._heap[0][0] if self._heap else math.inf

    def pop(self) -> tuple[float, T]:
        """The first event: (time, item)."""
        t, _, item = heapq.heappop(self._heap)
        return t, item

    def __len__(self) -> int:
        return len(self._heap)
