"""Key performance indicators of a simulated station run.

The engine tells a ``KpiRecorder`` what happens (arrivals, balks, swaps, alarms) and
what the piecewise-constant levels are (grid power, queue length, busy chargers) each
time one may have changed; the recorder integrates the levels over virtual time and
keeps a sampled time series. ``summary()`` turns it all into a plain dict (the
``summary.json`` of a report). Every sum is taken in event order, so the same run
gives the same figures to the last digit.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from host.plant.vehicles import WAITED_S

# Time series columns, in CSV order.
SERIES_COLUMNS = (
    "t_s",
    "queue",
    "bay_busy",
    "packs_ready",
    "rack_soc_mean",
    "chargers_busy",
    "grid_kw",
    "price",
    "queue_max",  # the highest queue and grid power since the previous row: a 1-minute sample
    "grid_kw_max",  # of the level misses the short peaks the summary's maxima see
)

SWAP_HISTOGRAM_EDGES_S = (0, 60, 90, 120, 140, 150, 160, 180, 240, 300, 600)
# A served vehicle "waited" when it could not drive in on arrival (queued WAITED_S or
# longer) or, once identified in the bay, its swap began this much later (no charged pack
# yet: the controller reacts to an identification within a bay poll cycle, under 1 s).
WAITED_IN_BAY_S = 5.0


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated ``q``-th percentile (0..100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"count": 0, **{k: math.nan for k in ("mean", "min", "p50", "p95", "max")}}
    return {
        "count": len(values),
        "mean": math.fsum(values) / len(values),
        "min": min(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values),
    }


def histogram(values: Sequence[float], edges: Sequence[float]) -> dict[str, list[float]]:
    """Counts per [edges[i], edges[i+1]); the last bin also takes everything above."""
    counts = [0] * (len(edges) - 1)
    for v in values:
        for i in range(len(edges) - 2, -1, -1):
            if v >= edges[i]:
                counts[i] += 1
                break
    return {"edges": list(edges), "counts": [float(c) for c in counts]}


@dataclass
class KpiRecorder:
    """Accumulates one run's KPIs. Times are virtual seconds from the start of the run."""

    chargers_total: int
    price_at: Any = None  # callable t_s -> price per kWh, or None for no tariff
    warmup_s: float = 0.0  # waits of vehicles arriving before this are left out of the wait statistics

    arrived: int = 0
    balked: int = 0
    reneged: int = 0
    left_unswapped: int = 0  # left the bay with the pack they came with
    entered: int = 0
    waits_s: list[float] = field(default_factory=list)
    renege_waits_s: list[float] = field(default_factory=list)
    queue_waits_s: list[float] = field(default_factory=list)  # arrival until it could drive in
    waited: int = 0  # served vehicles that queued or waited in the bay for a pack
    swap_durations_s: list[float] = field(default_factory=list)
    soc_handed_pct: list[float] = field(default_factory=list)
    soc_returned_pct: list[float] = field(default_factory=list)
    swaps_by_type: Counter[str] = field(default_factory=Counter)  # handed over
    swaps_by_returned_type: Counter[str] = field(default_factory=Counter)
    alarms: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    series: list[tuple[float, ...]] = field(default_factory=list)

    # piecewise-constant levels and their integrals
    _t: float = 0.0
    _grid_kw: float = 0.0
    _queue: int = 0
    _busy: int = 0
    _meter_kwh: float = 0.0
    grid_kwh: float = 0.0
    cost: float = 0.0
    peak_grid_kw: float = 0.0
    queue_area: float = 0.0  # vehicle-seconds spent waiting
    busy_area: float = 0.0  # charger-seconds delivering power
    max_queue: int = 0
    _queue_hi: int = 0  # highest levels since the last sample
    _grid_hi: float = 0.0

    # --- events ---
    def arrival(self) -> None:
        self.arrived += 1

    def balk(self) -> None:
        self.balked += 1

    def renege(self, waited_s: float) -> None:
        self.reneged += 1
        self.renege_waits_s.append(waited_s)

    def served(self, arrived_s: float, wait_s: float, queued_s: float | None = None,
               in_bay_s: float = 0.0) -> None:
        """A vehicle's swap began ``wait_s`` after it arrived: ``queued_s`` of that before it
        could drive in (None: all of it), ``in_bay_s`` from its identification in the bay."""
        self.entered += 1
        if arrived_s >= self.warmup_s:
            q = wait_s if queued_s is None else queued_s
            self.waits_s.append(wait_s)
            self.queue_waits_s.append(q)
            self.waited += q >= WAITED_S or in_bay_s >= WAITED_IN_BAY_S

    def swap_done(self, duration_s: float, soc_handed_pct: float, soc_returned_pct: float,
                  pack_type: str, returned_type: str) -> None:
        """A swap: ``pack_type`` handed over, ``returned_type`` taken from the vehicle (a vehicle
        may get another compatible type than it brought)."""
        self.swap_durations_s.append(duration_s)
        self.soc_handed_pct.append(soc_handed_pct)
        self.soc_returned_pct.append(soc_returned_pct)
        self.swaps_by_type[pack_type] += 1
        self.swaps_by_returned_type[returned_type] += 1

    def not_swapped(self) -> None:
        """A vehicle left the bay with its own pack (e.g. turned away: no charged pack)."""
        self.left_unswapped += 1

    def alarm(self, code: str) -> None:
        self.alarms[code] += 1

    def fault(self, code: str) -> None:
        self.faults[code] += 1

    # --- levels ---
    def advance(self, t_s: float, meter_kwh: float | None = None) -> None:
        """Integrate the current levels up to ``t_s`` (monotonic). With ``meter_kwh`` (a
        cumulative energy meter) the energy is the meter's increase, not power times time."""
        dt = t_s - self._t
        if dt <= 0:
            return
        if meter_kwh is None:
            e = self._grid_kw * dt / 3600.0
        else:
            e = meter_kwh - self._meter_kwh
            self._meter_kwh = meter_kwh
        self.grid_kwh += e
        if self.price_at is not None and e:
            self.cost += e * self.price_at(self._t)
        self.queue_area += self._queue * dt
        self.busy_area += self._busy * dt
        self._t = t_s

    def levels(self, t_s: float, grid_kw: float, queue: int, chargers_busy: int,
               meter_kwh: float | None = None) -> None:
        """The levels from ``t_s`` on (integrates the old ones up to ``t_s`` first)."""
        self.advance(t_s, meter_kwh)
        self._grid_kw = grid_kw
        self._queue = queue
        self._busy = chargers_busy
        if grid_kw > self._grid_hi:
            self._grid_hi = grid_kw
            if grid_kw > self.peak_grid_kw:
                self.peak_grid_kw = grid_kw
        if queue > self._queue_hi:
            self._queue_hi = queue
            if queue > self.max_queue:
                self.max_queue = queue

    def sample(self, t_s: float, bay_busy: bool, packs_ready: int, rack_soc_mean: float) -> None:
        """One time-series row at ``t_s`` with the current levels."""
        price = self.price_at(t_s) if self.price_at is not None else 0.0
        self.series.append(
            (t_s, self._queue, int(bay_busy), packs_ready, rack_soc_mean, self._busy, self._grid_kw, price,
             self._queue_hi, self._grid_hi)
        )
        self._queue_hi = self._queue
        self._grid_hi = self._grid_kw

    # --- results ---
    @property
    def swaps(self) -> int:
        return len(self.swap_durations_s)

    def summary(self, end_s: float) -> dict[str, Any]:
        self.advance(end_s)
        days = end_s / 86400.0
        waits = self.waits_s
        return {
            "duration_s": end_s,
            "swaps": self.swaps,
            "swaps_per_hour": self.swaps / (end_s / 3600.0) if end_s else math.nan,
            # swaps / simulated days: an extrapolation when the run is shorter than a day
            "swaps_per_day": self.swaps / days if days else math.nan,
            "swaps_by_pack_type": {
                "handed_over": dict(sorted(self.swaps_by_type.items())),
                "returned": dict(sorted(self.swaps_by_returned_type.items())),
            },
            "vehicles": {
                "arrived": self.arrived,
                "served": self.entered,
                "balked": self.balked,
                "reneged": self.reneged,
                "not_swapped": self.left_unswapped,
            },
            "wait_s": _stats(waits),
            "queue_wait_s": _stats(self.queue_waits_s),
            "wait_probability": self.waited / len(waits) if waits else math.nan,
            "renege_wait_s": _stats(self.renege_waits_s),
            "swap_duration_s": {
                **_stats(self.swap_durations_s),
                "histogram": histogram(self.swap_durations_s, SWAP_HISTOGRAM_EDGES_S),
            },
            "soc_handed_over_pct": _stats(self.soc_handed_pct),
            "soc_returned_pct": _stats(self.soc_returned_pct),
            "queue": {"mean": self.queue_area / end_s if end_s else math.nan, "max": self.max_queue},
            "energy": {
                "grid_kwh": self.grid_kwh,
                "peak_grid_kw": self.peak_grid_kw,
                "cost": self.cost,
                "mean_price": self.cost / self.grid_kwh if self.grid_kwh else math.nan,
            },
            "chargers": {
                "count": self.chargers_total,
                "utilisation": self.busy_area / (end_s * self.chargers_total)
                if end_s and self.chargers_total else 0.0,
            },
            "alarms": dict(sorted(self.alarms.items())),
            "faults": dict(sorted(self.faults.items())),
        }
