"""The engine's and the plant-only stations' event queue: time order, and the order of
scheduling among events at the same time (what makes a run repeat to the last digit)."""

from __future__ import annotations

import math

from host.plant.events import EventQueue


def test_events_come_out_in_time_order_and_ties_in_the_order_scheduled() -> None:
    q: EventQueue[str] = EventQueue()
    assert len(q) == 0 and q.next_time() == math.inf
    for t, item in [(5.0, "c"), (1.0, "a"), (5.0, "d"), (3.0, "b"), (5.0, "e")]:
        q.push(t, item)
    assert q.next_time() == 1.0 and len(q) == 5
    assert [q.pop() for _ in range(5)] == [(1.0, "a"), (3.0, "b"), (5.0, "c"), (5.0, "d"), (5.0, "e")]
    assert q.next_time() == math.inf


def test_items_that_cannot_be_compared_are_never_compared() -> None:
    q: EventQueue[dict[str, int]] = EventQueue()
    q.push(2, {"x": 1})
    q.push(2, {"y": 2})  # dicts have no order: a tie must not reach them
    assert [q.pop()[1] for _ in range(2)] == [{"x": 1}, {"y": 2}]
