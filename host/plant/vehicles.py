"""Vehicle arrivals: a non-homogeneous Poisson process with a daily demand profile.

Arrivals are drawn by thinning (Lewis-Shedler): candidates at the peak rate, each kept
with probability rate(t) / peak. Everything comes from one explicit
``numpy.random.Generator`` seeded by the caller, so the same seed gives the same
sequence. Each arrival carries its own patience (reneging) and a uniform draw for the
balking decision, so queue behaviour elsewhere cannot shift later draws.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from host.plant.charging import PackRecord
from host.plant.params import PACK_TYPES

DAY_S = 86400.0
# A served vehicle "waited" when it could not drive in on arrival: it queued this long or
# longer. Here, under the plant, because the plant-only run counts waits too (host.sim.kpi
# adds the in-bay rule the firmware's runs need).
WAITED_S = 1.0

# Relative demand per hour of the day (commuter peaks), scaled to ``swaps_per_day``.
DEFAULT_DAILY_SHAPE: tuple[float, ...] = (
    0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.6, 2.6, 3.0, 2.4, 1.9, 1.8,
    1.9, 1.8, 1.8, 2.0, 2.5, 3.1, 3.2, 2.6, 2.0, 1.6, 1.2, 0.9,
)


def hourly_rates(swaps_per_day: float = 480.0, shape: Sequence[float] = DEFAULT_DAILY_SHAPE) -> list[float]:
    """Arrivals per hour for each hour of the day, summing to ``swaps_per_day``."""
    if len(shape) != 24:
        raise ValueError("a daily profile has 24 hourly values")
    total = float(sum(shape))
    return [swaps_per_day * s / total for s in shape]


def _cdf(weights: Sequence[float]) -> list[float]:
    total = float(sum(weights))
    return np.cumsum(np.asarray(weights, dtype=float) / total).tolist()


@dataclass(frozen=True)
class VehicleModel:
    name: str
    code: int  # BAY_IR_VEHICLE_MODEL
    weight: float  # share of arrivals
    packs: dict[str, float]  # pack type -> share among this model's vehicles


# Model names follow firmware/station.json's compatibility table.
NIO_FLEET: tuple[VehicleModel, ...] = (
    VehicleModel("NIO-ES6", 1, 0.30, {"NIO-75": 0.5, "NIO-100": 0.45, "NIO-150": 0.05}),
    VehicleModel("NIO-ES8", 2, 0.15, {"NIO-75": 0.3, "NIO-100": 0.6, "NIO-150": 0.1}),
    VehicleModel("NIO-ET5", 3, 0.40, {"NIO-75": 0.55, "NIO-100": 0.4, "NIO-150": 0.05}),
    VehicleModel("NIO-ET7", 4, 0.15, {"NIO-75": 0.3, "NIO-100": 0.55, "NIO-150": 0.15}),
)
PARTNER_MODELS: tuple[VehicleModel, ...] = (
    VehicleModel("PARTNER-A-SUV", 11, 0.06, {"STD-A-60": 1.0}),
    VehicleModel("PARTNER-B-SEDAN", 12, 0.04, {"STD-A-60": 1.0}),
)


@dataclass(frozen=True)
class Arrival:
    t_s: float
    vehicle_id: int
    model: VehicleModel
    pack: PackRecord
    patience_s: float  # leaves the queue (reneges) after waiting this long
    balk_u: float  # uniform(0, 1): balks when balk_u < balk_probability(queue length)

    @property
    def pack_type(self) -> str:
        return self.pack.type_name


@dataclass
class ArrivalProcess:
    """Arrivals at one station. Iterate it, or call :meth:`until`.

    ``rates_per_hour``: 24 values (a daily profile), or 24*7 (a weekly one).
    Arrival SoC is ``soc_lo + (soc_hi - soc_lo) * Beta(soc_a, soc_b)``; patience is
    exponential with mean ``patience_mean_s``. Balking: a driver who finds ``q`` vehicles
    waiting balks with probability ``min(1, max(0, q - balk_from + 1) / (balk_all - balk_from + 1))``.
    """

    seed: int | np.random.SeedSequence
    rates_per_hour: Sequence[float] = field(default_factory=hourly_rates)
    fleet: Sequence[VehicleModel] = NIO_FLEET
    soc_a: float = 2.0
    soc_b: float = 5.0
    soc_lo: float = 0.05
    soc_hi: float = 0.70
    patience_mean_s: float = 1200.0
    balk_from: int = 3
    balk_all: int = 8
    pack_temp_c: float = 30.0
    first_vehicle_id: int = 1
    first_pack_id: int = 1_000_000

    def __post_init__(self) -> None:
        if len(self.rates_per_hour) not in (24, 168):
            raise ValueError("rates_per_hour needs 24 (daily) or 168 (weekly) values")
        for m in self.fleet:
            for name in m.packs:
                if name not in PACK_TYPES:
                    raise ValueError(f"{m.name}: unknown pack type {name!r}")
        self._rng = np.random.Generator(np.random.PCG64(self.seed))
        self._buf: dict[str, list[float]] = {"u": [], "e": [], "b": []}
        self._rates = np.asarray(self.rates_per_hour, dtype=float) / 3600.0
        self._rate_list: list[float] = self._rates.tolist()  # the same values, without numpy indexing
        self._peak = float(self._rates.max())
        self._t = 0.0
        self._vid = self.first_vehicle_id
        self._pending: Arrival | None = None  # drawn by until() past its end, handed out next
        self._pid = self.first_pack_id
        self._model_cdf = _cdf([m.weight for m in self.fleet])
        self._pack_cdf = [(list(m.packs), _cdf(list(m.packs.values()))) for m in self.fleet]

    def rate_at(self, t_s: float) -> float:
        """Arrivals per second at time ``t_s``."""
        return self._rate_list[int(t_s // 3600.0) % len(self._rate_list)]

    def expected_count(self, t0_s: float, t1_s: float) -> float:
        """Integral of the rate over ``[t0, t1)`` (hour-aligned piecewise constant)."""
        total, t = 0.0, t0_s
        while t < t1_s:
            edge = min(t1_s, (math.floor(t / 3600.0) + 1) * 3600.0)
            total += self.rate_at(t) * (edge - t)
            t = edge
        return total

    def balk_probability(self, queue_len: int) -> float:
        return min(1.0, max(0, queue_len - self.balk_from + 1) / (self.balk_all - self.balk_from + 1))

    def balks(self, arrival: Arrival, queue_len: int) -> bool:
        return arrival.balk_u < self.balk_probability(queue_len)

    def __iter__(self) -> Iterator[Arrival]:
        return self

    def _draw(self, kind: str) -> float:
        """Next draw of a kind (u: uniform, e: standard exponential, b: the SoC beta), in blocks."""
        buf = self._buf[kind]  # __next__ keeps these very lists: refilled in place, never replaced
        if not buf:
            n = 4096
            if kind == "u":
                block = self._rng.random(n)
            elif kind == "e":
                block = self._rng.standard_exponential(n)
            else:
                block = self._rng.beta(self.soc_a, self.soc_b, n)
            buf.extend(reversed(block.tolist()))
        return buf.pop()

    def __next__(self) -> Arrival:
        if self._pending is not None:
            a, self._pending = self._pending, None
            return a
        peak = self._peak
        if peak <= 0.0:
            raise StopIteration
        # One call per vehicle of a year-long run: the buffers and rates are read inline
        # (``_draw`` only when a buffer needs its next block), in the same order as ever.
        u, e = self._buf["u"], self._buf["e"]
        rates = self._rate_list
        n_rates = len(rates)
        t = self._t
        while True:
            t += (e.pop() if e else self._draw("e")) / peak
            if (u.pop() if u else self._draw("u")) * peak < rates[int(t // 3600.0) % n_rates]:
                break
        self._t = t
        k = min(bisect.bisect_right(self._model_cdf, u.pop() if u else self._draw("u")), len(self.fleet) - 1)
        model = self.fleet[k]
        names, cdf = self._pack_cdf[k]
        j = min(bisect.bisect_right(cdf, u.pop() if u else self._draw("u")), len(names) - 1)
        soc = self.soc_lo + (self.soc_hi - self.soc_lo) * self._draw("b")
        patience = (e.pop() if e else self._draw("e")) * self.patience_mean_s
        balk_u = u.pop() if u else self._draw("u")
        pack = PackRecord(self._pid, names[j], soc, temp_c=self.pack_temp_c)
        arrival = Arrival(self._t, self._vid, model, pack, patience, balk_u)
        self._vid += 1
        self._pid += 1
        return arrival

    def until(self, t_end_s: float) -> list[Arrival]:
        """Every arrival before ``t_end_s`` (continuing from the last one drawn)."""
        out: list[Arrival] = []
        for a in self:
            if a.t_s >= t_end_s:
                self._pending = a
                break
            out.append(a)
        return out
