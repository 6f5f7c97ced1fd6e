"""Virtual-time simulator: the station firmware, unchanged, against the plant models.

One ``Engine`` runs one scenario. Virtual time is an integer count of milliseconds
from the start (midnight of day 0); the firmware sees it as board ticks
(``ticks_add(TICKS_START, t_ms)``, wrapping like a 30-bit port's ``ticks_ms``, ten
minutes into the run on purpose). The engine jumps from one moment that matters to
the next:

- the firmware's own deadline: ``Supervisor.tick(now)`` returns the milliseconds until
  it next needs to run, and is called then (and when a reply frame lands on its line,
  as a UART interrupt would wake the board's main loop);
- in ``wire`` mode, the moment a reply frame has crossed the line;
- the plant's events: the next vehicle arrival, a waiting driver's patience running
  out, the bay mechanics' next sensor change, scenario faults and outages, the
  time-series sample clock.

Nothing is ticked while nothing is due, so an idle station costs almost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from firmware.compat import ticks_add
from firmware.drivers.mem import MemPin
from firmware.proto import regmap as R
from host.devices.bay import BayIODevice
from host.devices.codes import Device
from host.plant.bay import BayVehicle, bay_for_station, scaled_timing
from host.plant.events import EventQueue
from host.plant.vehicles import Arrival
from host.sim.firmware import Firmware, SimulationError
from host.sim.kpi import KpiRecorder
from host.sim.operator import Operator
from host.sim.scenario import Scenario, check_sim, random_streams
from host.sim.scenario_plant import arrival_process, listed_arrivals, plant_for, stock_rack

TICKS_START = (1 << 30) - 600_000  # ticks wrap 10 minutes into every run
BAY_UNIT = R.BAY_IO_UNIT_FIRST

SWAP_COLUMNS = ("vehicle", "model", "arrived_s", "outcome", "wait_s", "in_bay_s", "soc_in_pct",
                "soc_out_pct", "pack_type_returned", "pack_type_handed_over")


@dataclass
class RunResult:
    summary: dict[str, Any]
    series: list[tuple[float, ...]]
    swaps: list[tuple[Any, ...]]
    swap_columns: tuple[str, ...] = SWAP_COLUMNS


# --- the engine ------------------------------------------------------------------------------


@dataclass
class _Visit:
    """One vehicle's visit, for swaps.csv and the KPIs."""

    arrival: Arrival
    entered_s: float = -1.0
    started_s: float = -1.0  # the swap began (positioner engaged): the wait ends here
    outcome: str = "waiting"
    left_s: float = -1.0
    soc_out: float = math.nan
    type_out: str = ""  # the pack handed over ("" when none was)


class Engine:
    """One scenario run. ``plant`` picks the plant kernels: "fast" (Cython) or "python"."""

    def __init__(self, sc: Scenario, plant: str = "fast",
                 progress: Callable[[float], None] | None = None) -> None:
        check_sim(sc)  # ScenarioError naming a fault the simulator cannot run
        self.sc = sc
        self.devices: dict[int, Device]
        self.progress = progress
        # Called with each next moment before the engine moves there (the live view's pacing
        # and snapshots); None costs one test per step.
        self.pace: Callable[[int], None] | None = None
        self._stop = False
        self.t_ms = 0
        self._events: EventQueue[Callable[[], None]] = EventQueue()
        self.end_ms = int(round(sc.duration_s * 1000))
        self.n_slots = len(sc.station["slots"])
        streams = random_streams(sc.seed)
        self.plant: Any
        self.plant, self.plant_name, self.devices = plant_for(sc, plant)
        self._stock_rack()
        # The isolation bay sits behind the last rack slot, where the firmware sends the carrier.
        self.bay = bay_for_station(sc.station, self.plant, scaled_timing(sc.swap_time_scale),
                                   seed=streams["bay"])
        self.arrivals = arrival_process(sc)
        self.estop_pin = MemPin(1)  # the controller's own e-stop input, wired when a fault opens it
        self.kpi = KpiRecorder(chargers_total=self.n_slots, price_at=sc.price_at)
        self.visits: list[_Visit] = []
        self._waiting: dict[int, _Visit] = {}  # vehicle id -> visit, while in the entry queue
        self._in_bay: _Visit | None = None
        self._departed_seen = 0
        self._started_seen = 0
        self.bay_device = BayIODevice(self.bay, lambda: self.t_ms / 1000.0)

    # --- set-up ---
    def _stock_rack(self) -> None:
        for slot, pack in stock_rack(self.sc).items():
            self.plant.put_pack(slot, pack)

    # --- scheduling ---
    def at(self, t_ms: int, fn: Callable[[], None]) -> None:
        self._events.push(t_ms, fn)

    def ticks(self, t_ms: int | None = None) -> int:
        return int(ticks_add(TICKS_START, self.t_ms if t_ms is None else t_ms))

    @property
    def t_s(self) -> float:
        return self.t_ms / 1000.0

    # --- vehicles ---
    def _schedule_arrival(self) -> None:
        a = next(self.arrivals, None)
        if a is None:
            return
        t = int(math.ceil(a.t_s * 1000.0))
        if t < self.end_ms:
            self.at(t, lambda: self._arrive(a))

    def _schedule_listed(self) -> None:
        for a in listed_arrivals(self.sc):
            t = int(math.ceil(a.t_s * 1000.0))
            if t < self.end_ms:
                self.at(t, partial(self._arrive, a, False))

    def _arrive(self, a: Arrival, demand: bool = True) -> None:
        if demand:
            self._schedule_arrival()
        self.kpi.arrival()
        visit = _Visit(a)
        self.visits.append(visit)
        queue_len = len(self.bay.queue)
        if self.arrivals.balks(a, queue_len):
            visit.outcome = "balked"
            visit.left_s = self.t_s
            self.kpi.balk()
            return
        self._waiting[a.vehicle_id] = visit
        self.bay.vehicle_arrives(BayVehicle(a.vehicle_id, a.model.code, a.pack), self.t_s)
        self._follow_bay()
        if math.isfinite(a.patience_s):
            self.at(self.t_ms + int(math.ceil(a.patience_s * 1000.0)), lambda: self._renege(a.vehicle_id))

    def _renege(self, vehicle_id: int) -> None:
        visit = self._waiting.pop(vehicle_id, None)
        if visit is None:
            return  # already driving in
        self.bay.queue[:] = [v for v in self.bay.queue if v.vehicle_id != vehicle_id]
        visit.outcome = "reneged"
        visit.left_s = self.t_s
        self.kpi.renege(self.t_s - visit.arrival.t_s)

    def _follow_bay(self) -> None:
        """Bookkeeping of the vehicles the bay model moves. A vehicle is in the bay from when it
        starts to drive in (first in the entry queue, bay empty, door open); its wait ends when
        its swap begins (the positioner engages), which may be later: an authorised vehicle
        can wait in the bay for a charged pack (``bay.pack_wait_ms``)."""
        bay = self.bay
        while self._started_seen < len(bay.started):
            t, sv = bay.started[self._started_seen]
            self._started_seen += 1
            if self._in_bay is None:
                self._enter(sv.vehicle_id, t)  # zero-time mechanics: in and started at once
            visit = self._in_bay
            if visit is None or visit.arrival.vehicle_id != sv.vehicle_id:
                raise SimulationError(f"vehicle {sv.vehicle_id} began a swap without entering the bay")
            visit.started_s = t
            arrived = visit.arrival.t_s
            in_bay = t - sv.identified_s if sv.identified_s >= 0 else 0.0
            self.kpi.served(arrived, t - arrived, visit.entered_s - arrived, in_bay)
        while self._departed_seen < len(bay.departed):
            t, dv = bay.departed[self._departed_seen]
            self._departed_seen += 1
            visit = self._in_bay
            if visit is None or visit.arrival.vehicle_id != dv.vehicle_id:
                raise SimulationError(f"vehicle {dv.vehicle_id} left the bay without entering it")
            self._in_bay = None
            visit.left_s = t
            a = visit.arrival
            if dv.pack is not None and dv.pack.pack_id != a.pack.pack_id:
                visit.outcome = "served"
                visit.soc_out = dv.pack.soc
                visit.type_out = dv.pack.type_name
                self.kpi.swap_done(t - visit.entered_s, 100.0 * dv.pack.soc, 100.0 * a.pack.soc,
                                   dv.pack.type_name, a.pack_type)
            else:
                visit.outcome = "not_swapped"
                self.kpi.not_swapped()
        if self._in_bay is None:
            # Driving in, or (zero-time mechanics) already in within this same instant.
            v = bay.vehicle
            if v is None and bay.queue and bay.door.at(bay.now) >= 1.0:
                v = bay.queue[0]
            if v is not None:
                self._enter(v.vehicle_id, bay.now)

    def waiting(self) -> list[tuple[int, float]]:
        """The vehicles in the entry queue, first first: (vehicle id, seconds waited so far)."""
        return [(vid, self.t_s - v.arrival.t_s) for vid, v in self._waiting.items()]

    def _enter(self, vehicle_id: int, t: float) -> None:
        visit = self._waiting.pop(vehicle_id)
        visit.entered_s = t
        self._in_bay = visit

    # --- scenario events ---
    def _schedule_scenario(self) -> None:
        sc = self.sc
        if not sc.outages and not sc.faults:
            return
        grid_down = partial(self.plant.set_grid, 0, up=False)
        grid_up = partial(self.plant.set_grid, 0, up=True)
        for at_s, dur_s in sc.outages:
            if self._window(at_s, dur_s, grid_down, grid_up):
                self.kpi.fault("grid_outage")
        slot_index = {sid: i for i, sid in enumerate(sc.slot_ids)}
        for f in sc.faults:
            if f.kind == "grid_outage":
                started = self._window(f.at_s, f.duration_s, grid_down, grid_up)
            elif f.kind == "smoke":
                started = self._window(f.at_s, f.duration_s,
                             lambda: self.bay.set_input(R.BAY_DI_SMOKE_CLEAR, 0, self.t_s),
                             lambda: self.bay.set_input(R.BAY_DI_SMOKE_CLEAR, 1, self.t_s))
            elif f.kind == "estop" and f.input == "bay":
                started = self._window(f.at_s, f.duration_s,
                             lambda: self.bay.set_input(R.BAY_DI_ESTOP_OK, 0, self.t_s),
                             lambda: self.bay.set_input(R.BAY_DI_ESTOP_OK, 1, self.t_s))
            elif f.kind == "estop":
                started = self._window(f.at_s, f.duration_s, partial(self.estop_pin.value, 0),
                                       partial(self.estop_pin.value, 1))
            elif f.kind == "jammed_bolt":
                started = self._window(f.at_s, 0, partial(self.bay.inject, "jammed_bolt", f.bolt), None)
            elif f.kind == "thermal_event":
                started = self._window(f.at_s, 0, partial(self._runaway, slot_index[f.target]), None)
            else:
                slot = slot_index[f.target]
                name = _PLANT_FAULT[f.kind]
                started = self._window(f.at_s, f.duration_s, partial(self.plant.inject, slot, name),
                                       partial(self.plant.clear, slot, name))
            if started:
                self.kpi.fault(f.kind)

    def _runaway(self, slot: int) -> None:
        """Thermal runaway of the pack in ``slot``; an empty slot is watched until a pack is back."""
        if self.plant.arrays["present"][slot]:
            self.plant.inject(slot, "runaway")
        else:
            self.at(self.t_ms + 60_000, partial(self._runaway, slot))

    def _window(self, at_s: float, dur_s: float, start: Callable[[], None],
                stop: Callable[[], None] | None) -> bool:
        """Schedule ``start`` at ``at_s`` and ``stop`` ``dur_s`` later; False if past the end."""
        t0 = int(round(at_s * 1000))
        if t0 >= self.end_ms:
            return False
        self.at(t0, start)
        if stop is not None and dur_s > 0:
            self.at(t0 + int(round(dur_s * 1000)), stop)
        return True

    def _sample(self) -> None:
        a = self.plant.arrays
        present = a["present"] > 0
        n = int(present.sum())
        soc = a["soc"][present]
        ready = int((soc >= self._ready_soc).sum()) if n else 0
        mean_soc = 100.0 * float(soc.mean()) if n else 0.0
        self.kpi.sample(self.t_s, self.bay.vehicle is not None, ready, mean_soc)
        nxt = self.t_ms + self._sample_ms
        if nxt < self.end_ms:
            self.at(nxt, self._sample)

    # --- the loop ---
    def _levels(self) -> None:
        a = self.plant.arrays
        self.kpi.levels(self.t_s, float(a["p_sta"][0]) / 1000.0, len(self.bay.queue),
                        int((a["p_out"] > 1.0).sum()), meter_kwh=float(a["e_sta"][0]) / 3.6e6)

    def _advance_to(self, t_ms: int) -> None:
        if t_ms < self.t_ms:
            raise SimulationError(f"time went backwards: {t_ms} < {self.t_ms}")
        if t_ms > self.t_ms:
            self.t_ms = t_ms
            self.plant.step_to(self.t_s)
        self.bay.advance(self.t_s)
        self._follow_bay()

    def _summary(self) -> dict[str, Any]:
        a = self.plant.arrays
        self.kpi.advance(self.t_s, meter_kwh=float(a["e_sta"][0]) / 3.6e6)
        sc = self.sc
        s: dict[str, Any] = {"scenario": sc.name, "seed": sc.seed, "mode": sc.mode,
                             "plant": self.plant_name, "partial": self.t_ms < self.end_ms}
        s.update(self.kpi.summary(self.t_s))
        s["energy"]["currency"] = sc.currency
        s["operator_actions"] = dict(sorted(self.operator.actions.items()))
        s["firmware_ticks"] = self.fw.sup.ticks
        return s

    def _swap_rows(self) -> list[tuple[Any, ...]]:
        rows = []
        for v in self.visits:
            a = v.arrival
            end = v.started_s if v.started_s >= 0 else v.left_s
            wait = round(end - a.t_s, 3) if end >= 0 else math.nan
            in_bay = round(v.left_s - v.entered_s, 3) if v.entered_s >= 0 and v.left_s >= 0 else math.nan
            rows.append((a.vehicle_id, a.model.name, round(a.t_s, 3), v.outcome, wait, in_bay,
                         round(100 * a.pack.soc, 2), round(100 * v.soc_out, 2), a.pack_type, v.type_out))
        return rows

    def _start(self) -> None:
        sc = self.sc
        self._ready_soc = sc.station["limits"]["handover_soc"] / 100.0
        self._sample_ms = max(1, int(round(sc.sample_period_s * 1000)))
        self._schedule_scenario()
        self._schedule_arrival()
        self._schedule_listed()
        self.at(0, self._sample)
        self.fw = Firmware(self)
        self.operator = Operator(self.fw.sup, self.at, lambda: self.t_ms,
                                 int(round(sc.operator_response_s * 1000)))

    @property
    def stopping(self) -> bool:
        """A stop was asked for (``request_stop``): the run ends at its next event."""
        return self._stop

    def request_stop(self) -> None:
        """End the run at the next event (safe from a signal handler); ``run`` then returns the
        result so far, its summary marked partial."""
        self._stop = True

    def result(self) -> RunResult:
        """KPIs, series and swap rows up to the current virtual time."""
        return RunResult(self._summary(), self.kpi.series, self._swap_rows())

    def run(self) -> RunResult:
        """Run to the scenario's end (or a ``request_stop``); raises SimulationError when the
        firmware or plant fails."""
        self._start()
        fw = self.fw
        operator = self.operator
        events = self._events
        end = self.end_ms
        fw_due = 0
        report_every = max(1, end // 200)
        next_report = 0
        try:
            while True:
                t = min(fw_due, fw.line_due_ms(), end)
                if events.next_time() < t:
                    t = int(events.next_time())
                bay_next = self.bay.next_event_s()
                if bay_next * 1000.0 < t:
                    t = max(self.t_ms, int(math.ceil(bay_next * 1000.0)))
                if self.pace is not None:
                    self.pace(t)
                self._advance_to(t)
                if t >= end or self._stop:
                    break
                while events.next_time() <= t:
                    events.pop()[1]()
                if fw.deliver(t):
                    fw_due = t  # a reply landed: the board wakes up
                if fw_due <= t:
                    fw_due = t + fw.tick(t)
                    fw.after_tick(t)
                    operator.watch(t)
                self._levels()
                if self.progress is not None and t >= next_report:
                    self.progress(self.t_s)
                    next_report = t + report_every
        except SimulationError:
            raise
        except Exception as e:  # firmware or plant raised: the run cannot go on
            raise SimulationError(f"at t={self.t_s:.3f} s: {type(e).__name__}: {e}") from e
        if self.progress is not None:
            self.progress(self.t_s)
        return self.result()


_PLANT_FAULT = {"charger_dropout": "dropout", "charger_stuck": "stuck", "charger_pump": "pump",
                "bms_comm": "bms_comm"}


def run(sc: Scenario, plant: str = "fast", progress: Callable[[float], None] | None = None) -> RunResult:
    """Run scenario ``sc`` (its duration, seed and mode) and return the KPIs and series."""
    return Engine(sc, plant=plant, progress=progress).run()
