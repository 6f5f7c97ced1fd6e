"""Fidelity check of the network twin: plant-only stations against the firmware in the loop.

``swapstation fleet`` runs every station on the plant-only path (host.plant.standalone: the
plant models with a stand-in dispatcher). ``scenario_for(spec)`` turns a network station into a
simulator scenario, so the same station runs with the real firmware (host.sim.engine);
``compare(specs, reps)`` runs both paths ``reps`` times per station and sets each KPI's mean and
95 % Student-t interval side by side (bench/fleet_fidelity.py prints it, docs/fleet.md
"Fidelity" has the figures).

The mapping, field by field (``StationSpec`` -> scenario):

- ``chargers`` -> ``[station] slots`` (the slot list of firmware/station.json cut or grown);
  ``charger_kw`` -> ``limits.charger_kw`` (every slot's charger); ``grid_kw`` ->
  ``limits.grid_kw`` and the plant's connection ``[grid] capacity_kw``.
- ``packs`` -> ``[rack] packs``, full (SoC 100 %, as the runner's ``INITIAL_SOC``), in the
  first slots, in the spec's type order.
- ``tariff`` -> ``tou.bands`` (a tariff without bands -> no ``tou``).
- ``profile`` x ``swaps_per_day`` -> ``[demand] rate_per_hour`` (24 hourly rates, the
  same ``rates_per_hour()`` the runner uses).
- ``pack_mix`` -> ``[demand] models``: one vehicle model per pack type (``FID-<type>``),
  compatible with that type only, weighted by its share: the firmware then hands over the type
  the vehicle brought, as the stand-in dispatcher does.
- ``patience`` (mean, exponential on both) -> ``[demand] patience`` (inf -> 0: for ever);
  ``balk_from`` / ``balk_all`` -> the same fields; arrival SoC 5..70 % (the runner's).

Differences the mapping cannot remove (the reasons KPIs may differ):

1. **Dispatch.** The firmware charges within ``limits.grid_kw`` by priority groups, first in
   first charged, and in an expensive tariff band (price above ``tou.expensive_above``, 1.0
   in station.json) with ``tou.min_ready`` packs ready it caps every charger at
   ``tou.expensive_pct`` (30 %). The stand-in charges every pack at full power whenever the
   grid allows. Energy in expensive hours, and so the peak, differ.
2. **Pack choice.** The firmware picks a charged pack by health, temperature and cycles before
   SoC; the stand-in takes the fullest. Same type, same hand-over SoC threshold (90 %).
3. **No pack.** With no charged pack, the firmware lets the first vehicle drive into the bay
   and wait there up to ``bay.pack_wait_ms`` (10 min), then turns it away ("not swapped");
   the stand-in keeps it in the queue until its patience runs out (reneged).
4. **Swap time.** The firmware drives the bay model's coils step by step (driving in,
   identification and authorisation included); the stand-in draws the whole sequence's
   duration from the same distributions (``BayModel.sample_swap_s``), positioning to
   positioner open: the doors and driving in and out (about 26 s a vehicle) keep the bay
   busy with the firmware only. The wait ends when the swap begins on both, but the
   firmware's includes the door, driving in, identification and authorisation.
5. **Balking.** The engine lets a driver balk whatever the bay is doing, and a
   ``balk_all`` equal to ``balk_from`` becomes ``balk_from + 1``; the stand-in lets a driver
   balk only when the bay is busy or someone waits.
6. **P(wait).** Both count a served vehicle that queued 1 s or more; the firmware's path also
   counts one that waited 5 s or more in the bay for a pack (host.sim.kpi).
7. **Random streams.** The engine draws arrivals, the rack's SoC and the bay from its own
   named streams of one integer seed; the runner from a SeedSequence's two words. The same
   replication seed gives each path different vehicles: the paths are compared in
   distribution (intervals), not draw by draw.
8. **Peak grid power.** Both are the highest 15-minute mean (a demand meter): the plant-only
   path reads the station's energy at every 15 minutes; here the engine's cumulative energy
   is interpolated at each 15-minute mark between the engine's steps (a second or less apart
   while chargers run).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from host.fleet.network import StationSpec
from host.fleet.runner import INITIAL_SOC, METER_PERIOD_S, StationTask, run_station
from host.sim.engine import Engine
from host.sim.kpi import KpiRecorder
from host.sim.scenario import Scenario, from_dict

MODEL_CODE_BASE = 201  # FID-<type> vehicle models: codes clear of station.json's (1..12)
ARRIVAL_SOC_PCT = (5.0, 70.0)  # host.plant.vehicles.ArrivalProcess's soc_lo, soc_hi
KPIS = ("swaps", "turned_away", "p_wait", "mean_wait_s", "energy_kwh", "peak_kw")
KPI_LABELS = {"swaps": "swaps", "turned_away": "turned away", "p_wait": "P(wait)",
              "mean_wait_s": "mean wait s", "energy_kwh": "energy kWh", "peak_kw": "peak kW (15 min)"}
# The difference of the means that counts as agreement even when the intervals do not say so:
# (relative to the plant-only mean, absolute floor). Stated in docs/fleet.md.
TOLERANCE: dict[str, tuple[float, float]] = {
    "swaps": (0.05, 2.0), "turned_away": (0.25, 3.0), "p_wait": (0.0, 0.05),
    "mean_wait_s": (0.25, 30.0), "energy_kwh": (0.05, 10.0), "peak_kw": (0.10, 20.0),
}
# Student t, two-sided 95 %, by degrees of freedom (1..30; 1.96 beyond)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)


def model_name(pack_type: str) -> str:
    return f"FID-{pack_type}"


def scenario_data(spec: StationSpec, duration_s: float, seed: int) -> dict[str, Any]:
    """The scenario file's structure (as parsed TOML) for ``spec``: see the module docstring."""
    mix = dict(spec.pack_mix)
    types = [t for t, w in mix.items() if w > 0]
    overrides: dict[str, Any] = {
        "limits": {"grid_kw": spec.grid_kw, "charger_kw": spec.charger_kw},
        "compatibility": {model_name(t): [t] for t in types},
        "model_codes": {model_name(t): MODEL_CODE_BASE + k for k, t in enumerate(types)},
        "tou": {"bands": [{"start_min": b.start_min, "end_min": b.end_min, "price": b.price}
                          for b in spec.tariff]} if spec.tariff else None,
    }
    patience: Any = 0 if math.isinf(spec.patience_s) else spec.patience_s
    return {
        "name": f"fidelity-{spec.id}",
        "description": f"network station {spec.id} ({spec.station_class or 'no class'}) with the firmware",
        "run": {"duration": duration_s, "seed": seed, "mode": "direct", "sample_period": "15m"},
        "station": {"slots": spec.chargers, "overrides": overrides},
        "rack": {"packs": [{"type": t, "count": n, "soc": [100.0 * INITIAL_SOC] * 2} for t, n in spec.packs]},
        "demand": {
            "rate_per_hour": spec.rates_per_hour(),
            "models": {model_name(t): mix[t] for t in types},
            "arrival_soc": list(ARRIVAL_SOC_PCT),
            "balk_from": spec.balk_from,
            "balk_all": spec.balk_all,
            "patience": patience,
        },
        "grid": {"capacity_kw": spec.grid_kw},
    }


def scenario_for(spec: StationSpec, duration_s: float = 86400.0, seed: int = 1) -> Scenario:
    """A validated simulator scenario for network station ``spec`` (host.sim.scenario.from_dict)."""
    return from_dict(scenario_data(spec, duration_s, seed), f"fidelity-{spec.id}")


# --- one replication on each path ------------------------------------------------------------


class MeterKpi(KpiRecorder):
    """The engine's KPI recorder, also reading a demand meter: the cumulative energy at every
    multiple of ``period_s``, interpolated between the engine's steps."""

    def __init__(self, *args: Any, period_s: float = METER_PERIOD_S, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.period_s = period_s
        self.marks_kwh: list[float] = []  # cumulative energy at period_s, 2 * period_s, ...
        self._last = (0.0, 0.0)  # (t, cumulative kWh) at the previous step

    def advance(self, t_s: float, meter_kwh: float | None = None) -> None:
        super().advance(t_s, meter_kwh)
        t0, e0 = self._last
        if t_s <= t0:
            return
        e1 = self.grid_kwh
        nxt = (len(self.marks_kwh) + 1) * self.period_s
        while nxt <= t_s:
            self.marks_kwh.append(e0 + (e1 - e0) * (nxt - t0) / (t_s - t0))
            nxt += self.period_s
        self._last = (t_s, e1)

    def peak_kw(self, end_s: float) -> float:
        """The highest period's mean power, the last (partial) period included."""
        marks = [*self.marks_kwh]
        if end_s > len(marks) * self.period_s:
            marks.append(self.grid_kwh)
        prev, best = 0.0, 0.0
        for k, e in enumerate(marks):
            span = min(self.period_s, end_s - k * self.period_s)
            best = max(best, (e - prev) * 3600.0 / span)
            prev = e
        return best


def plant_only_kpis(spec: StationSpec, seed: np.random.SeedSequence, duration_s: float) -> dict[str, float]:
    """One replication on the network twin's path (host.fleet.runner.run_station)."""
    r = run_station(StationTask(spec, seed, duration_s))
    k = r.kpi
    started = len(k.waits_s)
    return {
        "swaps": float(k.swaps),
        "turned_away": float(k.balked + k.reneged + k.failed),
        "p_wait": k.waited / started if started else math.nan,
        "mean_wait_s": math.fsum(k.waits_s) / started if started else math.nan,
        "energy_kwh": k.grid_kwh,
        "peak_kw": r.peak_kw,
    }


def engine_seed(seed: np.random.SeedSequence) -> int:
    """The scenario's integer seed (< 2**63) from a replication's SeedSequence."""
    return int(seed.generate_state(1, np.uint64)[0] >> np.uint64(1))


def firmware_kpis(spec: StationSpec, seed: np.random.SeedSequence, duration_s: float) -> dict[str, float]:
    """One replication with the firmware in the loop (host.sim.engine, plant "fast")."""
    sc = scenario_for(spec, duration_s, engine_seed(seed))
    eng = Engine(sc)
    eng.kpi = meter = MeterKpi(chargers_total=eng.n_slots, price_at=sc.price_at)
    s = eng.run().summary
    v = s["vehicles"]
    return {
        "swaps": float(s["swaps"]),
        "turned_away": float(v["balked"] + v["reneged"] + v["not_swapped"]),
        "p_wait": float(s["wait_probability"]),
        "mean_wait_s": float(s["wait_s"]["mean"]),
        "energy_kwh": float(s["energy"]["grid_kwh"]),
        "peak_kw": meter.peak_kw(s["duration_s"]),
    }


# --- statistics ------------------------------------------------------------------------------


def t975(df: int) -> float:
    return _T975[df - 1] if 1 <= df <= len(_T975) else 1.96


@dataclass(frozen=True)
class Interval:
    mean: float
    half: float  # half-width of the 95 % interval; nan with one value
    n: int

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half


def interval(values: Sequence[float]) -> Interval:
    """Mean and 95 % Student-t interval of ``values`` (NaNs left out)."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if x.size == 0:
        return Interval(math.nan, math.nan, 0)
    if x.size == 1:
        return Interval(float(x[0]), math.nan, 1)
    return Interval(float(x.mean()), t975(x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size), int(x.size))


def tolerance(kpi: str, reference: float) -> float:
    rel, floor = TOLERANCE[kpi]
    return max(rel * abs(reference), floor)


@dataclass(frozen=True)
class Verdict:
    kpi: str
    plant: Interval
    firmware: Interval
    overlap: bool  # the two 95 % intervals overlap
    within: bool  # |difference of the means| <= tolerance(kpi, plant mean)

    @property
    def diff(self) -> float:
        return self.firmware.mean - self.plant.mean

    @property
    def agree(self) -> bool:
        return self.overlap or self.within


def verdict(kpi: str, plant: Sequence[float], firmware: Sequence[float]) -> Verdict:
    a, b = interval(plant), interval(firmware)
    if a.n == 0 or b.n == 0:
        return Verdict(kpi, a, b, False, False)
    ha = 0.0 if math.isnan(a.half) else a.half
    hb = 0.0 if math.isnan(b.half) else b.half
    overlap = a.mean - ha <= b.mean + hb and b.mean - hb <= a.mean + ha
    return Verdict(kpi, a, b, overlap, abs(b.mean - a.mean) <= tolerance(kpi, a.mean))


# --- the comparison --------------------------------------------------------------------------


@dataclass
class StationComparison:
    spec: StationSpec
    plant: list[dict[str, float]] = field(default_factory=list)  # one per replication
    firmware: list[dict[str, float]] = field(default_factory=list)
    plant_wall_s: float = 0.0
    firmware_wall_s: float = 0.0

    def verdicts(self) -> list[Verdict]:
        return [verdict(k, [r[k] for r in self.plant], [r[k] for r in self.firmware]) for k in KPIS]


def replication_seeds(seed: int, spec: StationSpec, reps: int) -> list[np.random.SeedSequence]:
    """Replication ``r`` of station ``spec``: child ``r`` of child ``spec.index`` of
    ``SeedSequence(seed)`` (both paths get the same one)."""
    station = np.random.SeedSequence(seed).spawn(spec.index + 1)[spec.index]
    return station.spawn(reps)


def compare(specs: Sequence[StationSpec], reps: int, duration_s: float = 86400.0, seed: int = 1,
            progress: Callable[[str], None] | None = None) -> list[StationComparison]:
    """Each station ``reps`` times on both paths, for ``duration_s``."""
    if reps < 1:
        raise ValueError("reps must be >= 1")
    out = []
    for spec in specs:
        c = StationComparison(spec)
        for r, ss in enumerate(replication_seeds(seed, spec, reps)):
            t0 = time.perf_counter()
            c.plant.append(plant_only_kpis(spec, ss, duration_s))
            t1 = time.perf_counter()
            c.firmware.append(firmware_kpis(spec, ss, duration_s))
            t2 = time.perf_counter()
            c.plant_wall_s += t1 - t0
            c.firmware_wall_s += t2 - t1
            if progress is not None:
                progress(f"{spec.id} rep {r + 1}/{reps}: plant-only {t1 - t0:.2f} s, "
                         f"firmware {t2 - t1:.1f} s")
        out.append(c)
    return out


def _fmt(iv: Interval, kpi: str) -> str:
    digits = 3 if kpi == "p_wait" else 1
    if math.isnan(iv.mean):
        return "-"
    half = "" if math.isnan(iv.half) else f" ± {iv.half:.{digits}f}"
    return f"{iv.mean:.{digits}f}{half}"


def table(results: Sequence[StationComparison]) -> str:
    """A plain-text table: per station and KPI, both paths' mean ± 95 % half-width, the
    difference, and whether they agree (intervals overlap, or within the tolerance)."""
    head = ("station", "KPI", "plant-only", "firmware", "diff", "tol", "agree")
    rows: list[tuple[str, ...]] = []
    for c in results:
        s = c.spec
        name = f"{s.id} {s.station_class} {s.n_packs}p {s.swaps_per_day:g}/d"
        for v in c.verdicts():
            why = "overlap" if v.overlap else "within tol" if v.within else "NO"
            digits = 3 if v.kpi == "p_wait" else 1
            rows.append((name, KPI_LABELS[v.kpi], _fmt(v.plant, v.kpi), _fmt(v.firmware, v.kpi),
                         f"{v.diff:+.{digits}f}", f"{tolerance(v.kpi, v.plant.mean):.{digits}f}",
                         why))
            name = ""
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


SAMPLE_QUANTILES = (0.9, 0.5, 0.99, 0.25)  # of a class's daily volumes: busy stations first


def sample_stations(stations: Sequence[StationSpec], n: int) -> list[StationSpec]:
    """Up to ``n`` stations of different classes and sizes: round ``k`` takes from each class the
    station whose daily volume is nearest the class's ``SAMPLE_QUANTILES[k]`` quantile (a busy
    one first: queues and grid limits show there), then the rest by file order. Classes of
    different profiles take turns (urban, highway, urban ...)."""
    by_class: dict[str, list[StationSpec]] = {}
    for s in stations:
        by_class.setdefault(s.station_class, []).append(s)
    # classes of different demand profiles (urban, highway) alternate: a short sample has both
    seen: dict[str, int] = {}
    rank = {}
    for name, members in by_class.items():
        prof = members[0].profile_name
        rank[name] = (seen.get(prof, 0), list(by_class).index(name))
        seen[prof] = seen.get(prof, 0) + 1
    groups = [by_class[name] for name in sorted(by_class, key=rank.__getitem__)]
    out: list[StationSpec] = []
    for q in SAMPLE_QUANTILES:
        for members in groups:
            left = [s for s in members if s not in out]
            if len(out) < n and left:
                target = float(np.quantile([s.swaps_per_day for s in members], q))
                out.append(min(left, key=lambda s: (abs(s.swaps_per_day - target), s.index)))
    out += [s for s in stations if s not in out][: max(0, n - len(out))]
    return out
