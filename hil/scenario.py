"""Scenario files on the HIL rig: the simulator's scenario language (``host.sim.scenario``,
docs/scenarios.md) run against the real firmware in scaled real time.

The scenario's clock runs at the rig's time scale (``--bay-scale``): at 0.03 a scenario
minute takes 1.8 s of wall time, as the bay mechanics do. Vehicles come as the simulator
sends them (the same ``[demand]`` draws with the same seed, and the ``[[arrivals]]``), every
fault kind becomes a rig action (:data:`ACTIONS`), and an operator on the rig acknowledges
and confirms holds ``[operator] response`` after they start, as the simulator's does.

:func:`check_hil` finds, before anything starts, what the rig cannot run on a target
(raising ``host.sim.scenario.ScenarioError`` that names the field and says "HIL");
:class:`ScenarioRun` drives a started rig through the scenario and returns its findings.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from hil.rig import ScenarioError as RigError
from hil.targets import TargetError
from host.plant.vehicles import Arrival
from host.sim.operator import wants_ack
from host.sim.scenario import Fault, Scenario, ScenarioError, clock
from host.sim.scenario_plant import arrival_process, fleet_for, listed_arrivals

POLL_S = 0.02  # the run loop's period (wall)
WALL_GUARD = 100  # wall time a run waits at most, in multiples of its field-time budget (a hung emulator)
STEP_DELAY_MS = 40  # a step-triggered fault acts this long into the step (a 100 ms step is still hit)
COILS_OFF_S = 5.0  # after an e-stop every drive must be off within this (wall)
ALARM_CLEAR_S = 15.0  # a fault's alarm must go within this once the fault has ended (wall)
THERMAL_RETRY_S = 60.0  # a thermal event on an empty slot waits for a pack (scenario time)


# --- what each fault kind does on the rig -----------------------------------------------------


@dataclass(frozen=True)
class Action:
    """A fault kind on the rig: ``start`` when it begins, ``stop`` when its duration is over."""

    what: str  # the rig action (docs/hil.md's table)
    start: Callable[[ScenarioRun, Fault], None]
    stop: Callable[[ScenarioRun, Fault], None] | None = None
    clears: str = ""  # slot alarm that must go once the fault has ended ("charger_offline")


def _plant(name: str) -> tuple[Callable[[ScenarioRun, Fault], None], Callable[[ScenarioRun, Fault], None]]:
    return (lambda r, f: r.d.field.inject(r.slot(f), name)), (lambda r, f: r.d.field.clear(r.slot(f), name))


def _runaway(r: ScenarioRun, f: Fault) -> None:
    k = r.slot(f)
    if r.d.field.pack_ids().get(k) is None:  # an empty slot: watched until a pack is back
        r.at(r.now_s() + THERMAL_RETRY_S, f"{f.kind} retry", lambda: _runaway(r, f))
        return
    r.d.field.inject(k, "runaway")


def _estop(release: bool) -> Callable[[ScenarioRun, Fault], None]:
    def act(r: ScenarioRun, f: Fault) -> None:
        if release:
            r.coils_off(f)
        if f.input == "controller":
            if f.step and not release:
                r.arm_trigger(f, "pin", name="estop_ok", value=0)
            else:
                r.d.controller_estop(not release)
        else:
            r.d.estop(not release)
    return act


def _power_cut(r: ScenarioRun, f: Fault) -> None:
    if f.step:
        r.arm_trigger(f, "kill" if f.cut == "kill" else "cut_write")
    elif f.cut == "torn_write":
        r.d.target.arm_flash_cut(0)  # the next flash write is torn: the target stops there
        r.armed.append(f)
    else:
        r.armed.append(f)
        r.d.power_cut()


def _noise(rate_of: Callable[[Fault], float]) -> Callable[[ScenarioRun, Fault], None]:
    def act(r: ScenarioRun, f: Fault) -> None:
        line = r.rig.lines[f.line]
        for direction in ("request", "reply"):
            line.set_rate("bitflip", rate_of(f), direction=direction)
    return act


_dropout, _dropout_clear = _plant("dropout")
_stuck, _stuck_clear = _plant("stuck")
_pump, _pump_clear = _plant("pump")
_bms, _bms_clear = _plant("bms_comm")

# Every fault kind of the scenario schema: a rig action, or (a string) why the rig cannot run it.
# tests/hil/test_scenario_files.py holds this table to host.sim.scenario.FAULT_KINDS.
ACTIONS: dict[str, Action | str] = {
    "charger_dropout": Action("Field.inject(slot, 'dropout'): the charger stops answering; Field.clear at "
                              "the end",
                              _dropout, _dropout_clear, clears="charger_offline"),
    "charger_stuck": Action("Field.inject(slot, 'stuck'): frozen registers, heartbeat stopped; Field.clear",
                            _stuck, _stuck_clear),
    "charger_pump": Action("Field.inject(slot, 'pump'): coolant pump failed, COOLANT under load; Field.clear",
                           _pump, _pump_clear),
    "bms_comm": Action("Field.inject(slot, 'bms_comm'): BMS link lost; Field.clear", _bms, _bms_clear),
    "thermal_event": Action("Field.inject(slot, 'runaway'): the pack heats from inside (retried each "
                            "scenario minute while the slot is empty); no end", _runaway),
    "jammed_bolt": Action("ScenarioDriver.inject_bay('jammed_bolt', bolt): the next unbolt run jams; no end",
                          lambda r, f: r.d.inject_bay("jammed_bolt", f.bolt)),
    "grid_outage": Action("Field.set_grid(False): the chargers lose AC (the controller is on its UPS); "
                          "Field.set_grid(True)", lambda r, f: r.d.field.set_grid(False),
                          lambda r, f: r.d.field.set_grid(True)),
    "smoke": Action("ScenarioDriver.env('smoke_clear', False) on the bay I/O module; True at the end",
                    lambda r, f: r.d.env("smoke_clear", False), lambda r, f: r.d.env("smoke_clear", True)),
    "estop": Action("input bay: ScenarioDriver.estop() (the bay's chain); controller: controller_estop(), "
                    "or with step a target trigger 'pin' estop_ok=0; released at the end once every drive "
                    "is off", _estop(release=False), _estop(release=True)),
    "power_cut": Action("ScenarioDriver.power_cut() (kill), arm_flash_cut (torn_write), or with step a "
                        "target trigger 'kill'/'cut_write'; power back after duration, check_recovery()",
                        _power_cut),
    "line_noise": Action("PacedLine.set_rate('bitflip', rate) on the line, both directions; rate 0 at the "
                         "end",
                         _noise(lambda f: f.rate), _noise(lambda f: 0.0)),
}

# What needs the unix target's own probes: the paced lines and the triggers inside the target.
UNIX_ONLY = "the board's lines are real wires and it has no step triggers or flash cuts"


def _hil_error(path: str, reason: str, sc: Scenario) -> ScenarioError:
    return ScenarioError(path, f"{reason} on the HIL rig", sc.source)


def check_hil(sc: Scenario, target: str, reader_codes: Mapping[str, Any]) -> None:
    """Raise ScenarioError (field named, "on the HIL rig") for what the rig cannot run on
    ``target``; ``reader_codes``: model name -> code of the station the field is built from."""
    if sc.queueing is not None:
        raise _hil_error("queueing", "the M/M/C validation set-up (exponential charge work, a plant of "
                                     "the simulator's own) cannot run", sc)
    if sc.swap_time_scale <= 0:
        raise _hil_error("mechanics.swap_time_scale", "0 (mechanics that take no time) cannot run", sc)
    for f in sc.faults:
        act = ACTIONS.get(f.kind, f"{f.kind} has no rig action")
        if isinstance(act, str):
            raise _hil_error(f"{f.where}.kind", f"{f.kind} cannot run: {act};", sc)
        # qemu has the paced lines, the step triggers and a cut switch before its flash, as unix
        if target not in ("unix", "qemu"):
            if f.kind == "line_noise":
                raise _hil_error(f"{f.where}.kind", f"line_noise needs the unix target ({UNIX_ONLY}):", sc)
            if f.step:
                raise _hil_error(f"{f.where}.step", f"{f.kind} waiting for a swap step needs the unix "
                                                    f"target ({UNIX_ONLY}):", sc)
            if f.kind == "power_cut" and f.cut == "torn_write":
                raise _hil_error(f"{f.where}.cut", f"torn_write needs the unix target ({UNIX_ONLY}):", sc)
    models = {m.name: "demand.models" for m in fleet_for(sc)} if sc.demand.max_rate > 0 else {}
    models.update({v.model: f"{v.where}.model" for v in sc.arrivals})
    for name, path in models.items():
        if name not in reader_codes:
            raise _hil_error(path, f"{name} has no reader code in the station config (model_codes): the bay "
                                   "reader cannot report it", sc)


# --- the run ---------------------------------------------------------------------------------------


@dataclass(order=True)
class _Event:
    t_s: float
    seq: int
    label: str = field(compare=False)
    fn: Callable[[], None] = field(compare=False)
    restore: bool = field(default=False, compare=False)  # run even when the run ends before it


class ScenarioRun:
    """One scenario on a started, booted rig (``driver`` of ``rig``): ``run()`` returns findings.

    ``time_scale``: field seconds per scenario second; ``end_s``: scenario time to run;
    ``timeout``: field seconds the station gets per waiting vehicle once the run is over.
    Field seconds are the field's clock: wall time, except on the emulated Pico, whose
    field runs in its emulated time (25-40x slower than wall time)."""

    d: Any  # hil.rig.ScenarioDriver
    rig: Any  # hil.rig.Rig

    def __init__(self, sc: Scenario, driver: Any, rig: Any, *, time_scale: float, end_s: float,
                 timeout: float = 120.0, say: Callable[[str], None] | None = None) -> None:
        self.sc = sc
        self.d = driver
        self.rig = rig
        self.scale = time_scale
        self.end_s = end_s
        self.timeout = timeout
        self.say = say or (lambda s: None)
        self.problems: list[str] = []
        self.events: list[_Event] = []
        self._seq = 0
        self.clock: Callable[[], float] = rig.field.clock
        self.t0 = self.clock()
        self.armed: list[Fault] = []  # power cuts waiting for the target to stop
        self._triggers: list[tuple[Fault, int]] = []  # e-stops armed in the target: (fault, triggers before)
        self.down: Fault | None = None  # the power cut in progress
        self.faults: list[dict[str, Any]] = []
        self._fault_log: dict[str, dict[str, Any]] = {}
        self._visit_at: float | None = None
        self.operator_actions: dict[str, int] = {}
        self.vehicles: dict[int, dict[str, Any]] = {}
        self._clears: list[tuple[Fault, str]] = []  # (fault, slot alarm) that must go once it ended
        self.process = arrival_process(sc)
        self.ended = "end of the run"

    # ---- clock and events ----------------------------------------------------------------
    def now_s(self) -> float:
        return (self.clock() - self.t0) / self.scale

    def at(self, t_s: float, label: str, fn: Callable[[], None], restore: bool = False) -> None:
        self._seq += 1
        heapq.heappush(self.events, _Event(t_s, self._seq, label, fn, restore))

    def slot(self, f: Fault) -> int:
        return self.sc.slot_ids.index(f.target)

    def _note(self, text: str) -> None:
        self.say(f"{clock(self.now_s())} {text}")

    # ---- set-up --------------------------------------------------------------------------------
    def _schedule(self) -> None:
        for a in listed_arrivals(self.sc):
            self.at(a.t_s, f"vehicle {a.vehicle_id}", partial(self._arrive, a, False))
        for a in self.process.until(self.end_s):
            self.at(a.t_s, f"vehicle {a.vehicle_id}", partial(self._arrive, a, True))
        faults = list(self.sc.faults)
        for i, (at_s, dur_s) in enumerate(self.sc.outages):
            faults.append(Fault("grid_outage", at_s, dur_s, "", 0, where=f"grid.outages[{i}]"))
        for f in faults:
            act = ACTIONS[f.kind]
            assert isinstance(act, Action), f.kind  # check_hil refused the rest
            self.at(f.at_s, f.describe(), partial(self._start, f, act))

    def _start(self, f: Fault, act: Action) -> None:
        self._note(f"{f.describe()}: {'armed' if f.step else 'starts'}")
        entry: dict[str, Any] = {"fault": f.describe(), "where": f.where,
                                 "started_s": None if f.step else round(self.now_s(), 1)}
        self.faults.append(entry)
        self._fault_log[f.where] = entry
        act.start(self, f)
        if act.stop is not None and not f.step and f.kind != "power_cut":
            end = f.at_s + f.duration_s if f.duration_s > 0 else math.inf
            self.at(end, f"{f.describe()} ends", lambda: self._stop(f, act), restore=True)

    def _stop(self, f: Fault, act: Action) -> None:
        self._note(f"{f.describe()}: ends")
        assert act.stop is not None
        act.stop(self, f)
        self._fault_log[f.where]["ended_s"] = round(self.now_s(), 1)
        if act.clears and f.target:
            self._clears.append((f, f"{self.slot(f)}:{act.clears}"))

    def arm_trigger(self, f: Fault, do: str, **fields: Any) -> None:
        """Arm ``do`` inside the target for the bay's next entry into ``f.step`` of a swap."""
        self.d.trigger(f.step, do, plan="swap", delay_ms=STEP_DELAY_MS, **fields)
        if do == "pin":
            self._triggers.append((f, len(self.d.triggered())))
        else:
            self.armed.append(f)

    def coils_off(self, f: Fault) -> None:
        """Before an e-stop is released: every drive must be off."""
        try:
            self.d.wait_field(lambda: self.d.motion_coils() == [], COILS_OFF_S, "every drive off")
        except RigError as e:
            self.problems.append(f"{f.where} ({f.describe()}): {e}")

    # ---- vehicles ------------------------------------------------------------------------------
    def _arrive(self, a: Arrival, demand: bool) -> None:
        v = {"at_s": round(a.t_s, 1), "model": a.model.name, "pack": a.pack.pack_id, "listed": not demand,
             "outcome": "queued"}
        self.vehicles[a.vehicle_id] = v
        if demand and self.process.balks(a, len(self.d.queued())):
            v["outcome"] = "balked"
            return
        self.d.arrive(model=a.model.name, pack_type=a.pack.type_name, soc=a.pack.soc, vehicle_id=a.vehicle_id,
                      pack_id=a.pack.pack_id)
        self._note(f"vehicle {a.vehicle_id} ({a.model.name}, {a.pack.type_name} at {a.pack.soc:.0%}) arrives")
        if math.isfinite(a.patience_s):
            self.at(a.t_s + a.patience_s, f"vehicle {a.vehicle_id} gives up",
                    lambda: self._renege(a.vehicle_id))

    def _renege(self, vehicle_id: int) -> None:
        if self.d.leave_queue(vehicle_id):
            self.vehicles[vehicle_id]["outcome"] = "reneged"

    # ---- what happens by itself ----------------------------------------------------------------
    def _watch(self) -> None:
        """Power cuts that happened (the target stopped), e-stop triggers that fired."""
        target = self.d.target
        if self.down is None and not target.alive():
            if not self.armed:
                raise RigError(f"the target stopped with no power cut due{target.console_tail()}")
            f = self.armed.pop(0)
            self.down = f
            self.d.marks["cut"] = time.monotonic()
            entry = self._fault_log[f.where]
            entry["started_s"] = round(self.now_s(), 1)
            entry["step"] = (self.d.triggered() or [{}])[-1].get("step") if f.step else None
            self._note(f"{f.describe()}: power is off")
            self.at(self.now_s() + f.duration_s, "power back", lambda: self._power_on(f), restore=True)
        for f, before in list(self._triggers):
            fired = self.d.triggered()
            if len(fired) > before:
                self._triggers.remove((f, before))
                entry = self._fault_log[f.where]
                entry["started_s"] = round(self.now_s(), 1)
                entry["step"] = fired[-1].get("step")
                self._note(f"{f.describe()}: fired in {entry['step']}")
                act = ACTIONS[f.kind]
                assert isinstance(act, Action)
                end = self.now_s() + f.duration_s if f.duration_s > 0 else math.inf
                self.at(end, f"{f.describe()} ends", partial(self._stop, f, act), restore=True)

    def _power_on(self, f: Fault) -> None:
        self._fault_log[f.where]["ended_s"] = round(self.now_s(), 1)
        self.d.power_on(off_s=0.0)
        self._note("power is back")
        self.problems += [f"{f.where} ({f.describe()}): {p}" for p in self.d.check_recovery()]
        self.down = None
        self._visit_at = None

    def _operator(self) -> None:
        """Acknowledge and confirm a held station ``[operator] response`` after the hold began."""
        if self.down is not None or not self.d.target.alive():
            return
        try:
            st = self.d.station()
        except TargetError:  # stopped just now: _watch sees it next
            return
        if st.get("state") != "hold":
            self._visit_at = None
            return
        now = self.clock()
        wait = self.sc.operator_response_s * self.scale
        if self._visit_at is None:
            self._visit_at = now + wait
        if now < self._visit_at:
            return
        if wants_ack(st):
            self._act("ack", self.d.ack())
        self._act("confirm", self.d.confirm())
        self._visit_at = now + max(wait, 0.25)  # still held: back again

    def _act(self, name: str, ok: bool) -> None:
        if ok:
            self.operator_actions[name] = self.operator_actions.get(name, 0) + 1

    def _idle(self) -> bool:
        try:
            st = self.d.station()
        except TargetError:
            return False
        return (st.get("state") == "run" and st.get("step") is None and not self.d.queued()
                and self.d.in_bay() is None)

    # ---- the run ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self._clears = []
        self.t0 = self.clock()
        self._schedule()
        while True:
            now = self.now_s()
            if now >= self.end_s:
                break
            while self.events and self.events[0].t_s <= now:
                heapq.heappop(self.events).fn()
            self._watch()
            self._operator()
            pending = self.events or self.armed or self._triggers or self.down is not None
            if not pending and self._idle():
                self.ended = "nothing left to happen"
                break
            time.sleep(POLL_S)
        covered = min(self.now_s(), self.end_s)
        self._note(f"the run ends ({self.ended})")
        self._finish()
        return self._findings(covered)

    def _finish(self) -> None:
        """Faults still on end with the run, the power comes back, and the station gets
        ``timeout`` s per vehicle still waiting to serve them."""
        for e in sorted(self.events):
            if e.restore:
                e.fn()
        self.events.clear()
        for f in self.armed + [f for f, _ in self._triggers]:
            self.problems.append(f"{f.where} ({f.describe()}): never happened in the run (the bay did not "
                                 f"enter {f.step or 'a flash write'} after {clock(f.at_s)})")
        waiting = sum(1 for v in self.vehicles.values() if v["outcome"] == "queued")
        limit = self.clock() + self.timeout * max(1, waiting)
        # A field clock that stops (an emulator that hangs) must not hang the run.
        wall_limit = time.monotonic() + WALL_GUARD * self.timeout * max(1, waiting)
        while self.clock() < limit and time.monotonic() < wall_limit:
            self._watch()
            self._operator()
            now = self.now_s()  # a power cut or e-stop that fires late still ends (inf: at once)
            while self.events and (self.events[0].t_s <= now or math.isinf(self.events[0].t_s)):
                heapq.heappop(self.events).fn()
            if self.down is None and self._idle():
                break
            time.sleep(POLL_S)
        else:
            st = self.d.station()
            self.problems.append(f"after the run the station did not settle within "
                                 f"{self.timeout * max(1, waiting):g} s: "
                                 f"state {st.get('state')}, step {st.get('step')}, holds {st.get('hold')}, "
                                 f"{len(self.d.queued())} vehicle(s) waiting")
        for f, alarm in self._clears:
            try:
                self.d.wait(lambda s, a=alarm: a not in (s.get("alarms") or []), ALARM_CLEAR_S,
                            f"alarm {alarm} to clear")
            except RigError:
                self.problems.append(f"{f.where} ({f.describe()}): alarm {alarm} still up "
                                     f"{ALARM_CLEAR_S:g} s after the fault ended")

    def _findings(self, covered_s: float) -> dict[str, Any]:
        d = self.d
        left = {r["vehicle"]: r["pack"] for r in d.departed()}
        counts = {"arrived": len(self.vehicles), "balked": 0, "reneged": 0, "swapped": 0, "not_swapped": 0,
                  "waiting": 0}
        for vid, v in self.vehicles.items():
            if v["outcome"] == "queued":
                if vid in left:
                    v["outcome"] = "swapped" if left[vid] != v["pack"] else "not_swapped"
                else:
                    v["outcome"] = "waiting"
            counts[v["outcome"]] += 1
            if v["listed"] and v["outcome"] != "swapped":
                self.problems.append(f"vehicle {vid} of [[arrivals]] (at {clock(v['at_s'])}) was not "
                                     f"swapped: {v['outcome']}")
        self.problems += d.rack_mismatches()
        self.problems += d.swap_record_problems()
        self.problems += [f"field: {e}" for e in d.field_errors()]
        return {
            "problems": self.problems,
            "scenario_s": round(covered_s, 1),
            "ended": self.ended,
            "vehicles": counts,
            "faults": self.faults,
            "operator_actions": dict(sorted(self.operator_actions.items())),
            "station": d.station(),
        }

