"""Pack identities across a network: a ledger of every pack, moved between stations by vehicles.

The run goes epoch by epoch (a day each; the last may be shorter). Within an epoch the stations
stay independent tasks (serial or on Dask): each starts from its rack as the ledger has it and
takes its arriving vehicles' packs from its **inbound pool**, the packs out in vehicles whose
next swap is at this station, oldest first. Between epochs :meth:`Ledger.step` (in this process,
numpy, in station order, so the same on any backend) writes back every station's rack and the
packs that left in vehicles, and draws each departed pack's next station from the movement
model (docs/fleet.md):

- with probability ``same_station`` the vehicle swaps again where it left;
- with ``nearby`` at one of the ``nearby_stations`` nearest stations (by coordinates; without
  coordinates, a station of the same class), weighted by their demand;
- otherwise at any station of the network, weighted by demand.

A vehicle whose station's pool has no pack of its type left (more arrivals than the pool held)
brings a stand-in during the epoch (state of health 1, no cycles); the step then gives it the
nearest unused pack of that type out in vehicles and adds the stand-in's cycles and fade to it.
Their number is reported (``borrowed``); it is zero while pools hold ``revisit_days`` of demand.

State of health is the plant's own (host.plant.charging: ``fade_per_efc`` per full-equivalent
cycle, charged in the rack, doubled every 10 K above 25 degC); ``initial_efc`` ages the packs
at the start on that model at 25 degC. A pack below ``retire_soh`` is due for retirement; it
stays in service (the report lists it).

Conservation: after every step each pack id is once in a rack or in a vehicle, each station
holds its configured stock by type, and each type's total is unchanged; anything else raises
:class:`PackLedgerError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from host.fleet.network import Network, PackSettings, StationSpec
from host.plant.charging import PackRecord
from host.plant.params import PACK_TYPE_NAMES, PACK_TYPES
from host.plant.vehicles import Arrival

EPOCH_S = 86400.0
PACKS_STREAM = 0x7061636B  # "pack": the ledger's random stream, apart from the stations' children
EARTH_KM = 6371.0


class PackLedgerError(RuntimeError):
    """Pack identities were not conserved (a pack lost or duplicated): a bug, never bad input."""


class PackSupplyError(PackLedgerError):
    """The packs out in vehicles ran out network-wide (``revisit_days`` too small for the demand)."""


def epochs(duration_s: float) -> list[float]:
    """The epochs' lengths: whole days, the last one shorter when the duration is not."""
    n = int(duration_s // EPOCH_S)
    out = [EPOCH_S] * n
    rest = duration_s - n * EPOCH_S
    if rest > 1e-9 * EPOCH_S:
        out.append(rest)
    return out


# --- what a station task gets and gives back ----------------------------------------------------


@dataclass(frozen=True)
class StationPacks:
    """A station's packs for one epoch: its rack in slot order, and its inbound pool by type."""

    rack: tuple[PackRecord, ...]
    inbound: dict[str, tuple[tuple[int, float, float], ...]]  # type -> (id, soh, efc), oldest first


@dataclass
class PackOutcome:
    """What happened to a station's packs in an epoch."""

    rack: list[tuple[int, float, float, float]] = field(default_factory=list)  # (id, soc, soh, efc) by slot
    left: list[tuple[int, float, float, float]] = field(default_factory=list)  # (id, t_s, soh, efc)
    used: dict[str, int] = field(default_factory=dict)  # inbound packs taken, by type
    borrowed: list[str] = field(default_factory=list)  # stand-in k (id -(k + 1)): its type


class SwapRecorder:
    """``PlantOnlyRun``'s swap hook: each vehicle brings the next pack of its station's inbound
    pool (a stand-in when the pool is empty) and leaves with the one it was given."""

    def __init__(self, packs: StationPacks) -> None:
        self.packs = packs
        self.out = PackOutcome()

    def __call__(self, station: int, t: float, arrival: Arrival, given: PackRecord) -> PackRecord:
        name = arrival.pack.type_name
        pool = self.packs.inbound.get(name, ())
        k = self.out.used.get(name, 0)
        self.out.left.append((given.pack_id, t, given.soh, given.efc))
        if k < len(pool):
            self.out.used[name] = k + 1
            pid, soh, efc = pool[k]
        else:
            self.out.borrowed.append(name)
            pid, soh, efc = -len(self.out.borrowed), 1.0, 0.0
        a = arrival.pack
        return PackRecord(pid, name, a.soc, a.temp_c, soh, efc)

    def finish(self, plant: Any, slots: range) -> PackOutcome:
        a = plant.arrays
        sl = slice(slots.start, slots.stop)
        here = np.asarray(a["present"][sl]).astype(bool)
        cols = [np.asarray(x[sl])[here].tolist() for x in (plant.pack_id, a["soc"], a["soh"], a["efc"])]
        self.out.rack = list(zip(*cols, strict=True))
        return self.out


# --- distances --------------------------------------------------------------------------------


class Geo:
    """Distances between a run's stations: great-circle km when every station has coordinates;
    otherwise 0 within a class and 1 between classes (a rank, not km)."""

    def __init__(self, specs: Sequence[StationSpec]) -> None:
        self.has_coords = bool(specs) and all(s.lat is not None and s.lon is not None for s in specs)
        self.rad = np.radians(np.array([[s.lat, s.lon] for s in specs], dtype=float)) if self.has_coords \
            else np.zeros((len(specs), 2))
        names = sorted({s.station_class for s in specs})
        self.cls = np.array([names.index(s.station_class) for s in specs], dtype=np.int64)

    def km(self, i: int, js: np.ndarray) -> np.ndarray:
        """From station ``i`` to stations ``js`` (positions in the run's station list)."""
        if not self.has_coords:
            return (self.cls[js] != self.cls[i]).astype(float)
        lat1, lon1 = self.rad[i]
        lat2, lon2 = self.rad[js, 0], self.rad[js, 1]
        h = np.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
        return 2 * EARTH_KM * np.arcsin(np.sqrt(np.minimum(h, 1.0)))

    def neighbours(self, k: int) -> list[np.ndarray]:
        """Each station's candidates for the "nearby" move: its ``k`` nearest others (without
        coordinates: the others of its class, or all others when it is alone in it)."""
        n = len(self.cls)
        everyone = np.arange(n)
        out = []
        for i in range(n):
            others = everyone[everyone != i] if n > 1 else everyone
            d = self.km(i, others)
            if not self.has_coords:
                near = others[d == 0.0]
                out.append(near if len(near) else others)
            else:
                kk = min(k, len(others))
                part = np.argpartition(d, kk - 1)[:kk] if kk < len(others) else np.arange(len(others))
                out.append(others[part[np.lexsort((others[part], d[part]))]])
        return out


def distance_km(specs: Sequence[StationSpec], i: int, js: np.ndarray) -> np.ndarray:
    """:meth:`Geo.km` for a one-off question."""
    return Geo(specs).km(i, js)


# --- the ledger -----------------------------------------------------------------------------------


class Ledger:
    """Every pack of the network, struct-of-arrays; pack id = row.

    ``station``: the station (position in the run's station list) whose rack holds it, or, with
    ``in_vehicle``, the station of the vehicle's next swap; ``since``: when it left in the vehicle
    (run time, s; the inbound pools are served oldest first); ``efc`` full-equivalent cycles,
    ``soh``, ``throughput_kwh`` (energy charged into it), ``swaps`` (times handed to a vehicle).
    """

    def __init__(self, net: Network, seed: int, settings: PackSettings | None = None) -> None:
        self.specs = list(net.stations)
        self.settings = s = settings or net.packs
        self.seed = seed
        self.epoch = 0
        self.borrowed = 0
        n_st = len(self.specs)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, PACKS_STREAM])))
        types: list[int] = []
        where: list[int] = []
        vehicle: list[bool] = []
        for i, spec in enumerate(self.specs):
            for name in spec.rack:
                types.append(PACK_TYPE_NAMES.index(name))
                where.append(i)
                vehicle.append(False)
            total = sum(w for _, w in spec.pack_mix)
            for name, w in spec.pack_mix:
                lam = spec.swaps_per_day * w / total if total > 0 else 0.0
                pool = math.ceil(s.revisit_days * lam + 3.0 * math.sqrt(lam)) if lam > 0 else 0
                types += [PACK_TYPE_NAMES.index(name)] * pool
                where += [i] * pool
                vehicle += [True] * pool
        n = len(types)
        self.type = np.array(types, dtype=np.int8)
        self.station = np.array(where, dtype=np.int32)
        self.in_vehicle = np.array(vehicle, dtype=bool)
        self.since = np.zeros(n)
        self.soc = np.where(self.in_vehicle, math.nan, 1.0)
        lo, hi = s.initial_efc
        self.efc = rng.uniform(lo, hi, n) if hi > lo else np.full(n, lo)
        fade = np.array([PACK_TYPES[t].fade_per_efc for t in PACK_TYPE_NAMES])
        self.soh = 1.0 - fade[self.type] * self.efc
        self.throughput_kwh = np.zeros(n)
        self.swaps = np.zeros(n, dtype=np.int64)
        self._kwh = np.array([PACK_TYPES[t].capacity_kwh for t in PACK_TYPE_NAMES])
        self._stock = np.zeros((n_st, len(PACK_TYPE_NAMES)), dtype=np.int64)
        for i, spec in enumerate(self.specs):
            for name, c in spec.packs:
                self._stock[i, PACK_TYPE_NAMES.index(name)] = c
        self._type_totals = np.bincount(self.type, minlength=len(PACK_TYPE_NAMES))
        self.geo = Geo(self.specs)
        self._near = self.geo.neighbours(s.nearby_stations)
        self._demand = np.array([sp.swaps_per_day for sp in self.specs], dtype=float)
        self._rack_order = np.zeros(n, dtype=np.int64)  # slot position in the rack
        for i in range(n_st):
            rows = np.flatnonzero((self.station == i) & ~self.in_vehicle)
            self._rack_order[rows] = np.arange(len(rows))
        self.check()

    @property
    def n(self) -> int:
        return len(self.type)

    # ---- inputs of an epoch -----------------------------------------------------------------------
    def station_packs(self) -> list[StationPacks]:
        """Each station's rack (slot order) and inbound pool (oldest first), in station order."""
        n_st = len(self.specs)
        rack = np.flatnonzero(~self.in_vehicle)
        rack = rack[np.lexsort((self._rack_order[rack], self.station[rack]))]
        veh = np.flatnonzero(self.in_vehicle)
        veh = veh[np.lexsort((veh, self.since[veh], self.type[veh], self.station[veh]))]
        r_cut = np.searchsorted(self.station[rack], np.arange(n_st + 1)).tolist()
        v_cut = np.searchsorted(self.station[veh], np.arange(n_st + 1)).tolist()
        names = [PACK_TYPE_NAMES[t] for t in self.type[rack].tolist()]
        r_cols = (rack.tolist(), self.soc[rack].tolist(), self.soh[rack].tolist(), self.efc[rack].tolist())
        vt = self.type[veh]
        v_entries = list(zip(veh.tolist(), self.soh[veh].tolist(), self.efc[veh].tolist(), strict=True))
        vs = self.station[veh]
        # where a (station, type) group starts within the sorted pools
        t_change = np.flatnonzero(np.r_[True, (vt[1:] != vt[:-1]) | (vs[1:] != vs[:-1])])
        t_change_l = t_change.tolist()
        t_of = vt[t_change].tolist() if len(veh) else []
        out = []
        g = 0  # index into the groups of (station, type)
        for i in range(n_st):
            lo, hi = r_cut[i], r_cut[i + 1]
            racked = tuple(PackRecord(p, names[j], soc, soh=soh, efc=efc) for j, p, soc, soh, efc in
                           zip(range(lo, hi), *(c[lo:hi] for c in r_cols), strict=True))
            inbound: dict[str, tuple[tuple[int, float, float], ...]] = {}
            end = v_cut[i + 1]
            while g < len(t_change_l) and t_change_l[g] < end:
                a = t_change_l[g]
                b = t_change_l[g + 1] if g + 1 < len(t_change_l) and t_change_l[g + 1] < end else end
                inbound[PACK_TYPE_NAMES[t_of[g]]] = tuple(v_entries[a:b])
                g += 1
            out.append(StationPacks(racked, inbound))
        return out

    # ---- the step between epochs ----------------------------------------------------------------
    def step(self, inputs: Sequence[StationPacks], outcomes: Sequence[PackOutcome], t0_s: float) -> None:
        """Write back one epoch (``outcomes`` in station order, epoch starting at run time ``t0_s``)
        and send the packs that left in vehicles to their next station. Conservation is checked
        before anything is written: a PackLedgerError leaves the ledger as it was."""
        if len(outcomes) != len(self.specs):
            raise PackLedgerError(f"{len(outcomes)} station outcomes for {len(self.specs)} stations")
        unused: list[int] = []  # inbound packs no vehicle brought: still out in vehicles, same station
        for inp, out in zip(inputs, outcomes, strict=True):
            for name, pool in inp.inbound.items():
                unused += [pid for pid, _, _ in pool[out.used.get(name, 0):]]
        free = np.zeros(self.n, dtype=bool)  # unused: candidates for the stand-ins
        free[np.array(unused, dtype=np.int64)] = True
        # every station's rack and departures, flattened (Python lists, then numpy once)
        r_id: list[int] = []
        r_st: list[int] = []
        r_k: list[int] = []
        r_soc: list[float] = []
        r_soh: list[float] = []
        r_efc: list[float] = []
        l_id: list[int] = []
        l_st: list[int] = []
        l_t: list[float] = []
        l_soh: list[float] = []
        l_efc: list[float] = []
        aliases: dict[int, dict[int, int]] = {}
        for i, out in enumerate(outcomes):
            if out.borrowed:
                aliases[i] = self._resolve(i, out, free)
            if out.rack:
                zid, zsoc, zsoh, zefc = zip(*out.rack, strict=True)
                r_id += zid
                r_st += [i] * len(zid)
                r_k += range(len(zid))
                r_soc += zsoc
                r_soh += zsoh
                r_efc += zefc
            if out.left:
                zid, zt, zsoh, zefc = zip(*out.left, strict=True)
                l_id += zid
                l_st += [i] * len(zid)
                l_t += zt
                l_soh += zsoh
                l_efc += zefc
        rid, rst = np.array(r_id, dtype=np.int64), np.array(r_st, dtype=np.int64)
        lid, lst = np.array(l_id, dtype=np.int64), np.array(l_st, dtype=np.int64)
        r_stand, l_stand = rid < 0, lid < 0  # stand-ins: their real packs
        for ids, st, stand in ((rid, rst, r_stand), (lid, lst, l_stand)):
            for j in np.flatnonzero(stand):
                ids[j] = aliases[int(st[j])][int(ids[j])]
        if (rid.size and (rid.min() < 0 or rid.max() >= self.n)) or \
                (lid.size and (lid.min() < 0 or lid.max() >= self.n)):
            raise PackLedgerError(f"epoch {self.epoch}: a pack id the ledger does not hold")
        seen = np.bincount(np.concatenate([rid, lid, np.flatnonzero(free)]), minlength=self.n)
        bad = np.flatnonzero(seen != 1)
        if len(bad):
            lost, dup = bad[seen[bad] == 0], bad[seen[bad] > 1]
            raise PackLedgerError(f"epoch {self.epoch}: pack identities not conserved: "
                                  f"{len(lost)} lost (ids {lost[:5].tolist()}), "
                                  f"{len(dup)} duplicated (ids {dup[:5].tolist()})")
        self.borrowed += int(r_stand.sum() + l_stand.sum())
        old_efc = self.efc.copy()
        for ids, stand, soh_, efc_ in ((rid, r_stand, r_soh, r_efc), (lid, l_stand, l_soh, l_efc)):
            soh_a, efc_a = np.array(soh_, dtype=float), np.array(efc_, dtype=float)
            own = ~stand
            self.soh[ids[own]], self.efc[ids[own]] = soh_a[own], efc_a[own]
            self.soh[ids[stand]] += soh_a[stand] - 1.0  # a stand-in started at SoH 1, no cycles
            self.efc[ids[stand]] += efc_a[stand]
        self.station[rid], self.in_vehicle[rid] = rst, False
        self.soc[rid], self._rack_order[rid] = np.array(r_soc, dtype=float), np.array(r_k, dtype=np.int64)
        self.in_vehicle[lid], self.soc[lid] = True, math.nan
        self.since[lid] = t0_s + np.array(l_t, dtype=float)
        self.swaps[lid] += 1
        self.throughput_kwh += np.maximum(self.efc - old_efc, 0.0) * self._kwh[self.type]
        self._move(lid, lst)
        self.epoch += 1
        self.check()

    def _resolve(self, i: int, out: PackOutcome, free: np.ndarray) -> dict[int, int]:
        """Each stand-in of station ``i`` -> the nearest unused pack of its type out in vehicles
        (the oldest, then the lowest id, among equals)."""
        alias: dict[int, int] = {}
        for k, name in enumerate(out.borrowed):
            cand = np.flatnonzero(free & (self.type == PACK_TYPE_NAMES.index(name)))
            if not len(cand):
                raise PackSupplyError(
                    f"day {self.epoch + 1}: more vehicles with {name} packs arrived at {self.specs[i].id} "
                    f"than its pool held, and no {name} pack is left out in vehicles anywhere in the "
                    f"network: raise [packs] revisit_days ({self.settings.revisit_days:g}), the days of "
                    "demand out in vehicles")
            d = self.geo.km(i, self.station[cand].astype(np.int64))
            p = int(cand[np.lexsort((cand, self.since[cand], d))[0]])
            free[p] = False
            alias[-(k + 1)] = p
        return alias

    def _move(self, ids: np.ndarray, origin: np.ndarray) -> None:
        """Draw the next station of every pack that left in a vehicle this epoch (the draws in the
        order of (origin, time left, id); a loop over origin stations, not over packs)."""
        if not len(ids):
            return
        order = np.lexsort((ids, self.since[ids], origin))
        ids, origin = ids[order], origin[order]
        rng = np.random.Generator(np.random.PCG64(
            np.random.SeedSequence([self.seed, PACKS_STREAM], spawn_key=(self.epoch,))))
        u = rng.random(len(ids))
        v = rng.random(len(ids))
        s = self.settings
        dest = origin.copy()
        w_all = np.cumsum(self._demand if self._demand.sum() > 0 else np.ones(len(self.specs)))
        far = u >= s.same_station + s.nearby
        dest[far] = np.minimum(np.searchsorted(w_all, v[far] * w_all[-1], side="right"), len(w_all) - 1)
        near = np.flatnonzero((u >= s.same_station) & ~far)  # grouped by origin: origin is sorted
        if len(near):
            o = origin[near]
            starts = np.flatnonzero(np.r_[True, o[1:] != o[:-1]])
            for a, b in zip(starts, np.r_[starts[1:], len(near)], strict=True):
                cand = self._near[o[a]]
                w = self._demand[cand]
                cw = np.cumsum(w if w.sum() > 0 else np.ones(len(cand)))
                pos = near[a:b]
                k = np.searchsorted(cw, v[pos] * cw[-1], side="right")
                dest[pos] = cand[np.minimum(k, len(cand) - 1)]
        self.station[ids] = dest

    # ---- checks and figures ------------------------------------------------------------------------
    def check(self) -> None:
        """Every pack once, each station's rack its configured stock by type, the type totals
        unchanged; raises PackLedgerError."""
        nt = len(PACK_TYPE_NAMES)
        totals = np.bincount(self.type, minlength=nt)
        if not np.array_equal(totals, self._type_totals):
            raise PackLedgerError(f"epoch {self.epoch}: packs by type {totals.tolist()}, "
                                  f"started with {self._type_totals.tolist()}")
        racked = ~self.in_vehicle
        stock = np.zeros_like(self._stock)
        np.add.at(stock, (self.station[racked], self.type[racked]), 1)
        if not np.array_equal(stock, self._stock):
            i = int(np.flatnonzero((stock != self._stock).any(axis=1))[0])
            raise PackLedgerError(f"epoch {self.epoch}: station {self.specs[i].id} holds {stock[i].tolist()} "
                                  f"packs by type, configured {self._stock[i].tolist()}")
        if np.any((self.station < 0) | (self.station >= len(self.specs))):
            raise PackLedgerError(f"epoch {self.epoch}: a pack at no station")

    def due(self, retire_soh: float | None = None) -> np.ndarray:
        """Ids of the packs due for retirement (state of health below the threshold)."""
        th = self.settings.retire_soh if retire_soh is None else retire_soh
        return np.flatnonzero(self.soh < th)

    def arrays(self) -> dict[str, np.ndarray]:
        """The ledger's columns (copies), for comparing and writing."""
        return {"id": np.arange(self.n), "type": self.type.copy(), "station": self.station.copy(),
                "in_vehicle": self.in_vehicle.copy(), "since": self.since.copy(), "soc": self.soc.copy(),
                "efc": self.efc.copy(), "soh": self.soh.copy(), "throughput_kwh": self.throughput_kwh.copy(),
                "swaps": self.swaps.copy()}

    def stock(self, healthy_only: bool = False) -> np.ndarray:
        """Packs in each station's rack by type (stations x PACK_TYPE_NAMES), optionally only those
        not due for retirement."""
        sel = ~self.in_vehicle
        if healthy_only:
            sel &= self.soh >= self.settings.retire_soh
        out = np.zeros_like(self._stock)
        np.add.at(out, (self.station[sel], self.type[sel]), 1)
        return out


# --- rebalancing ----------------------------------------------------------------------------------


def target_stock(spec: StationSpec) -> dict[str, int]:
    """The stock that matches a station's arrivals: its configured number of packs shared by the
    arriving vehicles' pack-type mix (largest remainder; one of each type with demand first)."""
    total = spec.n_packs
    mix = [(name, w) for name, w in spec.pack_mix if w > 0]
    wsum = math.fsum(w for _, w in mix)
    out = {name: 0 for name in PACK_TYPE_NAMES}
    if not mix or total < 1:
        return out
    base = {name: 1 for name, _ in mix[:total]}
    rest = total - sum(base.values())
    quota = {name: rest * w / wsum for name, w in mix}
    for name in quota:
        base[name] = base.get(name, 0) + math.floor(quota[name])
    short = total - sum(base.values())
    for name, _ in sorted(mix, key=lambda m: (-(quota[m[0]] - math.floor(quota[m[0]])),
                                               PACK_TYPE_NAMES.index(m[0])))[:short]:
        base[name] += 1
    out.update(base)
    return out


@dataclass(frozen=True)
class Move:
    type_name: str
    src: int  # station positions
    dst: int
    count: int
    km: float  # great-circle; NaN without coordinates


def rebalance(ledger: Ledger) -> tuple[np.ndarray, np.ndarray, list[Move], np.ndarray]:
    """Surplus and deficit of packs in service (not due for retirement) against each station's
    target stock, matched into transfers, nearest pairs first, per type.

    Returns (healthy stock, target, moves, still short after the moves), the arrays stations x
    PACK_TYPE_NAMES. What is still short needs new packs (a type the network lacks, or packs retired).
    """
    specs = ledger.specs
    healthy = ledger.stock(healthy_only=True)
    target = np.array([[target_stock(s)[t] for t in PACK_TYPE_NAMES] for s in specs], dtype=np.int64)
    surplus = np.maximum(healthy - target, 0)
    deficit = np.maximum(target - healthy, 0)
    geo = ledger.geo
    moves: list[Move] = []
    for k, name in enumerate(PACK_TYPE_NAMES):
        src = np.flatnonzero(surplus[:, k])
        dst = np.flatnonzero(deficit[:, k])
        if not len(src) or not len(dst):
            continue
        d = np.stack([geo.km(int(j), src) for j in dst])  # dst x src
        jj, ii = np.meshgrid(dst, src, indexing="ij")
        order = np.lexsort((ii.ravel(), jj.ravel(), d.ravel()))
        for f in order:
            j, i = int(jj.ravel()[f]), int(ii.ravel()[f])
            c = int(min(surplus[i, k], deficit[j, k]))
            if c:
                surplus[i, k] -= c
                deficit[j, k] -= c
                moves.append(Move(name, i, j, c, float(d.ravel()[f]) if geo.has_coords else math.nan))
    return healthy, target, moves, deficit
