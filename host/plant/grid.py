"""The station's grid connection: a power limit, time-of-use prices and an optional outage."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from host.plant.charging import Plant

DAY_S = 86400.0


@dataclass(frozen=True)
class TouBand:
    start_min: int  # minute of the day, inclusive
    end_min: int  # exclusive
    price: float  # per kWh


@dataclass(frozen=True)
class Grid:
    """``limit_kw`` shared by a station's chargers; ``bands`` price the energy by time of day
    (gaps are free); ``outage`` is a ``(start_s, end_s)`` window with no power at all."""

    limit_kw: float
    bands: Sequence[TouBand] = ()
    outage: tuple[float, float] | None = None

    @classmethod
    def from_station_config(cls, cfg: Mapping[str, Any], outage: tuple[float, float] | None = None) -> Grid:
        """From a station.json dict (``limits.grid_kw``, ``tou.bands``)."""
        tou = cfg.get("tou") or {}
        bands = [TouBand(int(b["start_min"]), int(b["end_min"]), float(b["price"]))
                 for b in tou.get("bands", ())]
        return cls(float(cfg["limits"]["grid_kw"]), tuple(sorted(bands, key=lambda b: b.start_min)), outage)

    def is_up(self, t_s: float) -> bool:
        return self.outage is None or not (self.outage[0] <= t_s < self.outage[1])

    def price_at(self, t_s: float) -> float:
        minute = (t_s % DAY_S) / 60.0
        for b in self.bands:
            if b.start_min <= minute < b.end_min:
                return b.price
        return 0.0

    def next_change_after(self, t_s: float) -> float:
        """The next time after ``t_s`` at which the price or the availability changes."""
        day = math.floor(t_s / DAY_S) * DAY_S
        edges = [day + 60.0 * m for b in self.bands for m in (b.start_min, b.end_min)]
        edges += [e + DAY_S for e in edges]
        if self.outage is not None:
            edges += list(self.outage)
        later = [e for e in edges if e > t_s]
        return min(later) if later else math.inf

    def apply(self, plant: Plant, station: int, t_s: float) -> None:
        """Set the plant's limit and availability for ``station`` as they are at ``t_s``."""
        plant.set_grid(station, limit_kw=self.limit_kw, up=self.is_up(t_s))

    def cost(self, energy_j: float, t_s: float) -> float:
        """Price of ``energy_j`` drawn at ``t_s`` (within one band)."""
        return self.price_at(t_s) * energy_j / 3.6e6
