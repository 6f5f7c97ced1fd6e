"""Plant-only station runs: the plant models with a minimal built-in dispatcher, no firmware.

Used by the benchmarks and as a sanity reference. Every charger charges whenever it
holds a pack (watchdog model off); a vehicle gets the fullest ready pack (SoC at least
``ready_soc``) of its type, first come first served; the bay's swap time comes from
:meth:`BayModel.sample_swap_s`. Time jumps from event to event (arrivals, swap ends,
the next pack becoming ready from :meth:`Plant.time_to_soc`, grid changes);
the plant is stepped per station up to each event.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from host.plant.bay import BayModel
from host.plant.charging import PackRecord, Plant
from host.plant.events import EventQueue
from host.plant.grid import Grid, TouBand
from host.plant.params import PACK_TYPE_NAMES
from host.plant.vehicles import WAITED_S, Arrival, ArrivalProcess, hourly_rates

# 22 packs and one empty slot for the incoming pack
DEFAULT_RACK = ("NIO-75",) * 10 + ("NIO-100",) * 9 + ("NIO-150",) * 3
DEFAULT_TOU = (TouBand(0, 480, 0.31), TouBand(480, 600, 0.62), TouBand(600, 900, 1.05),
               TouBand(900, 1080, 0.62), TouBand(1080, 1260, 1.05), TouBand(1260, 1440, 0.62))


@dataclass
class StationKpis:
    arrivals: int = 0
    swaps: int = 0
    balked: int = 0
    reneged: int = 0
    failed: int = 0
    wait_s: float = 0.0  # total wait of the served vehicles
    handover_soc: float = 0.0  # sum over swaps
    grid_kwh: float = 0.0
    cost: float = 0.0
    waited: int = 0  # served vehicles whose swap began WAITED_S or more after they arrived
    waits_s: list[float] = field(default_factory=list)  # each served vehicle's wait (record_waits)
    interval_kwh: list[float] = field(default_factory=list)  # grid energy per meter period (meter_period_s)

    @property
    def mean_wait_s(self) -> float:
        return self.wait_s / self.swaps if self.swaps else 0.0


@dataclass
class _Station:
    index: int
    arrivals: ArrivalProcess
    bay: BayModel
    lo: int = 0  # the station's slots are lo..hi-1
    hi: int = 0
    # (vehicle, arrival time, time its patience runs out)
    queue: deque[tuple[Arrival, float, float]] = field(default_factory=deque)
    busy: bool = False
    empty_slot: int = -1
    kpi: StationKpis = field(default_factory=StationKpis)
    last_energy_j: float = 0.0
    meter_energy_j: float = 0.0  # the station's energy at the last meter reading
    check_at: float = math.inf  # when the head of the queue may find a ready pack; inf: not known


class _PyReadySlots:
    """``_fastplant.ReadySlots`` for the pure-Python backend, which must run without the
    compiled extension: the same answers from the same bound arrays."""

    def __init__(self, soc: np.ndarray, type_idx: np.ndarray, reserved: np.ndarray) -> None:
        self.soc, self.type_idx, self.reserved = soc, type_idx, reserved

    def fullest(self, lo: int, hi: int, type_code: int, min_soc: float) -> int:
        best, best_soc = -1, 0.0
        for i in self.of_type(lo, hi, type_code):
            soc = float(self.soc[i])
            if soc >= min_soc and (best < 0 or soc > best_soc):
                best, best_soc = i, soc
        return best

    def of_type(self, lo: int, hi: int, type_code: int) -> list[int]:
        return [i for i in range(lo, hi) if self.type_idx[i] == type_code and not self.reserved[i]]


class PlantOnlyRun:
    """``n_stations`` identical stations in one :class:`Plant`, each with its own arrivals and bay.

    The defaults are a PSS-4.0-like station. For other stations: ``rates_per_hour`` (24 or 168
    arrivals per hour, instead of ``swaps_per_day`` on the default daily shape), ``arrivals``
    (further :class:`ArrivalProcess` fields: ``fleet``, ``patience_mean_s``, ``balk_from``...),
    ``slots`` (rack slots, each with its charger; at least ``len(rack) + 1``, the extra ones stay
    empty), ``charger_kw`` (every charger's power limit; the pack's BMS limit still applies).
    ``station_seeds``: one ``SeedSequence`` per station, whose two generated words seed its
    arrivals and its bay (instead of ``seed * 1000 + s``, which repeats streams past 1,000
    stations). ``record_waits`` keeps every served vehicle's wait in ``waits_s``;
    ``meter_period_s`` reads each station's grid energy at every multiple of that period
    (``interval_kwh``: what a demand meter sees; the extra plant steps move the last digits).
    ``initial_soc``: of every pack in the rack at the start. ``initial_packs``: instead of
    ``rack`` and ``initial_soc``, each station's packs (in slot order) with their identity and
    state. ``swap_hook(station, t, arrival, given)``: at each completed swap, returns the pack
    that goes into the rack (default: ``arrival.pack``); ``given`` is the pack the vehicle took
    (host.fleet.packs tracks packs across stations with it).
    """

    def __init__(
        self, n_stations: int = 1, *, seed: int = 1, swaps_per_day: float = 480.0, backend: str = "cython",
        max_substep_s: float = 5.0, ready_soc: float = 0.9, rack: tuple[str, ...] = DEFAULT_RACK,
        grid: Grid | None = None, rates_per_hour: Sequence[float] | None = None,
        arrivals: Mapping[str, Any] | None = None, slots: int | None = None, charger_kw: float | None = None,
        station_seeds: Sequence[np.random.SeedSequence] | None = None, record_waits: bool = False,
        meter_period_s: float | None = None, initial_soc: float = 0.95,
        initial_packs: Sequence[Sequence[PackRecord]] | None = None,
        swap_hook: Callable[[int, float, Arrival, PackRecord], PackRecord] | None = None,
    ) -> None:
        if initial_packs is not None:
            if len(initial_packs) != n_stations:
                raise ValueError(f"initial packs for {len(initial_packs)} stations, not {n_stations}")
            rack = tuple(p.type_name for p in max(initial_packs, key=len, default=()))
        if slots is None:
            slots = len(rack) + 1
        if slots < len(rack) + 1:
            raise ValueError(f"{len(rack)} packs need at least {len(rack) + 1} slots "
                             "(one for the returned pack)")
        if station_seeds is not None and len(station_seeds) != n_stations:
            raise ValueError(f"{len(station_seeds)} station seeds for {n_stations} stations")
        if meter_period_s is not None and not meter_period_s > 0.0:
            raise ValueError("meter_period_s must be positive")
        self.plant = Plant(n_stations, slots, backend=backend, max_substep_s=max_substep_s, watchdog=False)
        if charger_kw is not None:
            for name in ("p_rated", "set_p"):
                self.plant.arrays[name][:] = charger_kw * 1000.0
        self.grid = grid or Grid(1000.0, DEFAULT_TOU)
        self.record_waits = record_waits
        self.meter_period_s = meter_period_s
        self.ready_soc = ready_soc
        self.swap_hook = swap_hook
        # int32 / int8: the types ReadySlots binds
        self.type_idx = np.full(self.plant.n_slots, -1, dtype=np.int32)
        self.reserved = np.zeros(self.plant.n_slots, dtype=np.int8)
        self._slots: Any
        if backend == "cython":
            from host.plant._fastplant import ReadySlots

            self._slots = ReadySlots(self.plant.soc, self.type_idx, self.reserved)
        else:
            self._slots = _PyReadySlots(self.plant.soc, self.type_idx, self.reserved)
        self._min_soc = ready_soc if ready_soc > 0.0 else -math.inf  # ready_soc 0: any pack will do
        self._type_code = {name: k for k, name in enumerate(PACK_TYPE_NAMES)}
        self._e_sta = self.plant.arrays["e_sta"]
        self._t = self.plant.t
        self.stations: list[_Station] = []
        rates = list(rates_per_hour) if rates_per_hour is not None else hourly_rates(swaps_per_day)
        pack_id = itertools.count(1)
        for s in range(n_stations):
            if station_seeds is None:
                arrival_seed = bay_seed = seed * 1000 + s
            else:
                arrival_seed, bay_seed = (int(w) for w in station_seeds[s].generate_state(2, np.uint64))
            r = self.plant.slot_range(s)
            st = _Station(s, ArrivalProcess(arrival_seed, rates, **(arrivals or {})),
                          BayModel(self.plant, seed=bay_seed), r.start, r.stop)
            packs = (initial_packs[s] if initial_packs is not None
                     else [PackRecord(next(pack_id), name, initial_soc) for name in rack])
            for k, pack in enumerate(packs):
                self._put(r.start + k, pack)
            st.empty_slot = r.start + len(packs)
            for slot in r:
                self.plant.set_enable(slot, True)
            self.grid.apply(self.plant, s, 0.0)
            self.stations.append(st)
        self._events: EventQueue[tuple[int, str, object]] = EventQueue()
        self.now = 0.0

    # ---- helpers ------------------------------------------------------------------------
    def _put(self, slot: int, pack: PackRecord) -> None:
        self.plant.put_pack(slot, pack)
        self.type_idx[slot] = self._type_code[pack.type_name]

    def _take(self, slot: int) -> PackRecord:
        self.type_idx[slot] = -1
        return self.plant.take_pack(slot)

    def _push(self, t: float, station: int, kind: str, payload: object = None) -> None:
        self._events.push(t, (station, kind, payload))

    def _advance(self, st: _Station, t: float) -> None:
        dt = t - float(self._t[st.index])
        if dt > 0.0:
            self.plant.step(dt, st.index)
            e = float(self._e_sta[st.index])
            st.kpi.cost += self.grid.price_at(t - dt) * (e - st.last_energy_j) / 3.6e6
            st.last_energy_j = e

    # ---- the dispatcher -----------------------------------------------------------------------
    def _try_serve(self, st: _Station, t: float) -> None:
        """With the bay free and a vehicle waiting: start its swap if a pack is ready, else make
        sure a check is due when the first pack of its type will be."""
        arrival, t_arr, _ = st.queue[0]
        code = self._type_code[arrival.pack.type_name]
        fetch = self._slots.fullest(st.lo, st.hi, code, self._min_soc)
        if fetch < 0:
            if st.check_at == math.inf:
                idx = self._slots.of_type(st.lo, st.hi, code)
                dt, _ = self.plant.time_to_soc(self.ready_soc, idx, station=st.index, horizon_s=6 * 3600.0)
                st.check_at = t + (dt if math.isfinite(dt) else 600.0) + 1e-6
                self._push(st.check_at, st.index, "check")
            return
        st.queue.popleft()
        st.check_at = math.inf
        self.reserved[fetch] = 1
        st.busy = True
        duration, failure = st.bay.sample_swap_s(st.empty_slot - st.lo, fetch - st.lo)
        wait = t - t_arr
        st.kpi.wait_s += wait
        if wait >= WAITED_S:
            st.kpi.waited += 1
        if self.record_waits:
            st.kpi.waits_s.append(wait)
        self._push(t + duration, st.index, "done", (arrival, fetch, failure))

    def _renege(self, st: _Station, t: float) -> None:
        """Drop the waiting vehicles whose patience ran out before ``t``.

        Done lazily, before anything looks at the queue: the counts and every queue length a
        later driver sees are the same as with one event per departure, at a fraction of the cost.
        """
        for item in st.queue:
            if item[2] <= t:
                break
        else:
            return  # nobody leaves (also an empty queue): the common case, no new deque
        keep = deque(item for item in st.queue if item[2] > t)
        gone = len(st.queue) - len(keep)
        if gone:
            if not keep or keep[0] is not st.queue[0]:
                st.check_at = math.inf  # a new head of the queue
            st.kpi.reneged += gone
            st.queue = keep

    def _handle(self, st: _Station, t: float, kind: str, payload: object) -> None:
        k = st.kpi
        if st.queue:
            self._renege(st, t)
        if kind == "arrival":
            assert isinstance(payload, Arrival)
            k.arrivals += 1
            nxt = next(st.arrivals, None)  # None: a station without demand
            if nxt is not None:
                self._push(nxt.t_s, st.index, "arrival", nxt)
            if (st.busy or st.queue) and st.arrivals.balks(payload, len(st.queue)):
                k.balked += 1
            else:
                st.queue.append((payload, t, t + payload.patience_s))
        elif kind == "done":
            assert isinstance(payload, tuple)
            arrival, fetch, failure = payload
            self.reserved[fetch] = 0
            st.busy = False
            st.check_at = math.inf  # packs moved
            if failure is None:
                given = self._take(fetch)
                incoming = arrival.pack if self.swap_hook is None else \
                    self.swap_hook(st.index, t, arrival, given)
                self._put(st.empty_slot, incoming)
                self.plant.set_enable(st.empty_slot, True)
                st.empty_slot = fetch
                k.swaps += 1
                k.handover_soc += given.soc
            else:
                k.failed += 1
        elif kind == "check":
            if t >= st.check_at:
                st.check_at = math.inf
        elif kind == "grid":
            st.check_at = math.inf
            self.grid.apply(self.plant, st.index, t)
            if self.grid.is_up(t):
                for slot in self.plant.slot_range(st.index):
                    self.plant.fault_reset(slot)
            self._push(self.grid.next_change_after(t), st.index, "grid")
        elif kind == "meter":
            self._read_meter(st)
            assert self.meter_period_s is not None
            self._push(t + self.meter_period_s, st.index, "meter")
        if st.queue and not st.busy:
            self._try_serve(st, t)

    def _read_meter(self, st: _Station) -> None:
        e = float(self._e_sta[st.index])
        st.kpi.interval_kwh.append((e - st.meter_energy_j) / 3.6e6)
        st.meter_energy_j = e

    def run(self, until_s: float) -> list[StationKpis]:
        """Simulate every station up to ``until_s``; returns the KPIs so far."""
        if not self._events:
            for st in self.stations:
                first = next(st.arrivals, None)
                if first is not None:
                    self._push(first.t_s, st.index, "arrival", first)
                self._push(self.grid.next_change_after(0.0), st.index, "grid")
                if self.meter_period_s is not None:
                    self._push(self.meter_period_s, st.index, "meter")
        events, stations = self._events, self.stations
        while events.next_time() <= until_s:
            t, (s, kind, payload) = events.pop()
            st = stations[s]
            self._advance(st, t)
            self._handle(st, t, kind, payload)
        for st in self.stations:
            self._advance(st, until_s)
            self._renege(st, until_s)
            if self.meter_period_s is not None and until_s % self.meter_period_s:
                self._read_meter(st)  # the part of a period up to the end
            st.kpi.grid_kwh = self.plant.station_energy_j(st.index) / 3.6e6
        self.now = until_s
        return [st.kpi for st in self.stations]
