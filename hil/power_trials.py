"""Power-cut trials on the rig: cut the power in a swap step, restore it after an
off-time, confirm, and follow the resumed swap to its end, watching for stalls.

A step that runs much longer than its mechanics need (``stall_s``) is a stall; the
field's sensors are read then and judged against the step's done condition
(:data:`DONE`). A stall whose condition the field shows true is *unexplained*: the
firmware does not see what the field shows (stale bookkeeping). A stall whose
condition is false is *explained* by the mechanics (something did not move).
Used by the HIL power tests and ``bench/power_cuts.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from firmware.core.config import SWAP_STEPS
from firmware.proto import regmap as rm
from hil.rig import ScenarioDriver, ScenarioError
from hil.targets import TargetError, UnixTarget
from hil.targets.qemu import QemuTarget


def _all_bolts(di: Sequence[int], base: int) -> bool:
    return all(di[base + i] for i in range(rm.BOLT_COUNT))


# A step's done condition on the field's discrete inputs (what the firmware waits for).
DONE: dict[str, Callable[[Sequence[int]], bool]] = {
    "position": lambda di: bool(di[rm.BAY_DI_VEHICLE_POSITIONED]),
    "lift": lambda di: bool(di[rm.BAY_DI_LIFT_UP]),
    "unbolt": lambda di: (not di[rm.BAY_DI_TOOL_BUSY] and bool(di[rm.BAY_DI_RGV_UP])
                          and _all_bolts(di, rm.BAY_DI_BOLT_RELEASED_BASE)),
    "remove": lambda di: (bool(di[rm.BAY_DI_RGV_DOWN] and di[rm.BAY_DI_PACK_ON_CARRIER])
                          and not di[rm.BAY_DI_PACK_SEATED]),
    "store": lambda di: bool(di[rm.BAY_DI_CARRIER_AT_RACK]) and not di[rm.BAY_DI_PACK_ON_CARRIER],
    "fetch": lambda di: bool(di[rm.BAY_DI_CARRIER_AT_BAY] and di[rm.BAY_DI_PACK_ON_CARRIER]),
    "install": lambda di: bool(di[rm.BAY_DI_RGV_UP] and di[rm.BAY_DI_PACK_SEATED]),
    "bolt": lambda di: not di[rm.BAY_DI_TOOL_BUSY] and _all_bolts(di, rm.BAY_DI_BOLT_TORQUE_OK_BASE),
    "verify": lambda di: bool(di[rm.BAY_DI_ELECTRICAL_OK]),
    "lower": lambda di: bool(di[rm.BAY_DI_LIFT_DOWN] and di[rm.BAY_DI_RGV_DOWN]),
    "release": lambda di: not di[rm.BAY_DI_VEHICLE_PRESENT],
}

DI_NAMES = {v: k[7:].lower() for k, v in vars(rm).items()
            if k.startswith("BAY_DI_") and isinstance(v, int) and not k.endswith(("_BASE", "_COUNT"))}


@dataclass
class Stall:
    step: str
    plan: str | None
    seconds: float  # how long the step had run when the field was read
    field_done: bool | None  # the step's done condition on the field (None: not a mechanical step)
    inputs: list[str]  # the field's inputs that were on
    coils: list[int]
    ended: str = ""  # "timeout" (the step ran into its timeout), "failed", "done" or "open"
    resumed: bool = True  # in the swap resumed after the cut (False: before the cut)

    @property
    def unexplained(self) -> bool:
        return bool(self.field_done)


@dataclass
class TrialResult:
    step: str
    delay_ms: int
    off_s: float
    kind: str
    cut_in: str | None = None  # the step the bay was in when the power went
    recovery: list[str] = field(default_factory=list)  # check_recovery violations
    outcome: str | None = None  # of the resumed swap: ok, aborted, ... (or "open" if it never ended)
    stalls: list[Stall] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # invariants: records, rack, field errors
    comms_holds: list[str] = field(default_factory=list)  # the bay module went silent mid-swap
    seconds: float = 0.0

    @property
    def unexplained(self) -> list[Stall]:
        return [s for s in self.stalls if s.unexplained]


class StepWatch:
    """Follows the station's step; reads the field once a step runs past ``stall_s``."""

    def __init__(self, d: ScenarioDriver, stall_s: float) -> None:
        self.d = d
        self.stall_s = stall_s
        self.key: tuple[Any, ...] | None = None
        self.since = time.monotonic()
        self.stalls: list[Stall] = []
        self._open: Stall | None = None

    def poll(self, st: dict[str, Any]) -> None:
        now = time.monotonic()
        key = (st.get("swap"), st.get("plan"), st.get("step"), st.get("state"))
        if key != self.key:
            if self._open is not None:
                s = self._open
                s.ended = ("timeout" if self._ran_out(s, now) else "failed") if st.get("plan") != s.plan \
                    or st.get("fault") else "done"
                self._open = None
            self.key, self.since = key, now
            return
        step = st.get("step")
        if (self._open is None and step is not None and st.get("state") == "run"
                and now - self.since > self.stall_s):
            snap = self.d.field.call(self.d._bay().snapshot)
            di = snap["inputs"]
            cond = DONE.get(step)
            self._open = Stall(step, st.get("plan"), round(now - self.since, 2),
                               None if cond is None else cond(di),
                               [DI_NAMES.get(k, str(k)) for k, v in enumerate(di) if v], list(snap["coils"]))
            self._open_at = self.since
            self.stalls.append(self._open)

    def _ran_out(self, s: Stall, now: float) -> bool:
        limit = self.d.cfg["timeouts_ms"][s.step] / 1000
        return now - self._open_at >= 0.9 * limit

    def close(self) -> None:
        if self._open is not None:
            self._open.ended = "open"
            self._open = None


def follow(d: ScenarioDriver, until: Callable[[dict[str, Any]], bool], timeout: float,
           watch: StepWatch, every: float = 0.05) -> dict[str, Any] | None:
    """Poll the station until ``until(status)``; None on timeout or a dead target."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not d.target.alive():
            return None
        st = d.station()
        watch.poll(st)
        if until(st):
            return st
        time.sleep(every)
    return None


def follow_swap(d: ScenarioDriver, ended: Callable[[dict[str, Any]], bool], timeout: float,
                watch: StepWatch, r: TrialResult) -> dict[str, Any] | None:
    """``follow`` until ``ended``, through holds on a silent bay module. Such a hold waits
    for the operator's confirm once the module answers again (docs/operations.md): that is
    the firmware right, so this confirms as the operator would and counts the hold in
    ``r.comms_holds``. A comms hold with no ``bay_io_offline`` alarm before it, or a fourth
    one, is a problem. None if the swap did not end, or the target died (a power cut may
    come at any moment, the confirm included)."""
    offline = {"seen": False}

    def ended_or_comms(s: dict[str, Any]) -> bool:
        gone = "-1:bay_io_offline" in (s.get("alarms") or [])
        offline["seen"] = offline["seen"] or gone
        return ended(s) or ("comms" in (s.get("hold") or []) and not gone)

    end = time.monotonic() + timeout
    while True:
        st = follow(d, ended_or_comms, max(0.0, end - time.monotonic()), watch)
        if st is None or ended(st):
            return st
        if not offline["seen"] or len(r.comms_holds) >= 3:
            r.problems.append(f"held on comms without the bay module going offline, or again and again: {st}")
            return None
        line = d.rig.lines.get("bay_io")
        worst = max((ms for _, ms in line.stalls), default=0.0) if line is not None else None
        r.comms_holds.append(f"in {st.get('step')}" + ("" if worst is None else
                             f" (bay line emulator's longest stall so far: {worst:.0f} ms)"))
        offline["seen"] = False
        try:
            if not d.confirm():
                raise ScenarioError(f"confirm refused after a comms hold: {d.station()}")
            # the status shows the confirm a poll or two later
            d.wait(lambda s: "comms" not in (s.get("hold") or []), 5.0, "the comms hold cleared by confirm")
        except (ScenarioError, TargetError) as e:
            if d.target.alive():
                r.problems.append(str(e))
            return None


def run_trial(d: ScenarioDriver, step: str, delay_ms: int = 40, off_s: float = 0.2, kind: str = "kill",
              soc: float = 0.95, stall_s: float = 4.0, swap_timeout: float = 150.0) -> TrialResult:
    """One vehicle; the power goes ``delay_ms`` into ``step`` (``kind`` "kill") or at the
    step's journal write (``"torn_write"``), comes back after ``off_s``; the operator
    confirms once the station holds, and the swap is followed to its end. ``soc``: the
    arriving pack's charge (high, so long runs do not run out of charged packs)."""
    if kind not in ("kill", "torn_write"):
        raise ValueError(f"unknown cut kind {kind!r} (kill or torn_write)")
    if step not in SWAP_STEPS:
        raise ValueError(f"unknown step {step!r}")
    t0 = time.monotonic()
    r = TrialResult(step, delay_ms, off_s, kind)
    watch = StepWatch(d, stall_s)
    last: dict[str, Any] = {}

    def remember(msg: dict[str, Any]) -> None:
        if msg.get("k") == "status":
            st = msg.get("s") or {}
            last["step"] = st.get("step")
            last["seen"] = {k: st.get(k) for k in ("step", "hold", "fault", "alarms", "swaps_ok",
                                                   "swaps_other")}

    d.target.listeners.append(remember)
    try:
        if kind == "kill":
            d.trigger(step, "kill", plan="swap", delay_ms=delay_ms)
        else:
            d.trigger(step, "cut_write", plan="swap")
        d.arrive(soc=soc)
        # until the target dies, through comms holds on the way (confirmed as the operator)
        follow_swap(d, lambda s: False, swap_timeout, watch, r)
        if r.problems or d.target.alive():
            if not r.problems:
                r.problems.append(f"no cut: the swap never reached {step} (or the cut never came) in "
                                  f"{swap_timeout:.0f} s; last status: {last.get('seen')}")
            watch.close()
            r.stalls = watch.stalls
            for s in r.stalls:
                s.resumed = False
            return r
        r.cut_in = last.get("step")
    finally:
        d.target.listeners.remove(remember)
    if isinstance(d.target, (UnixTarget, QemuTarget)):
        d.target.wait_exit(5.0)
    d.power_on(off_s=off_s)
    r.recovery = d.check_recovery()
    after = d.station()  # the counts restart with the controller
    done0 = after.get("swaps_ok", 0) + after.get("swaps_other", 0)
    try:
        d.wait_bay_answers()  # the operator confirms once the station can see its bay
    except ScenarioError as e:
        r.problems.append(str(e))
    if not d.confirm():
        r.problems.append(f"confirm refused: {d.station()}")
    r.stalls = watch.stalls
    for s in r.stalls:
        s.resumed = False
    snap = d.field.call(d._bay().snapshot)
    if after.get("swap") is None and snap["vehicle"] is None and not snap["queue"]:
        r.outcome = "ended before the cut"  # the swap had finished: nothing to resume
        r.problems += d.swap_record_problems() + d.rack_mismatches()
        r.seconds = round(time.monotonic() - t0, 2)
        return r
    watch = StepWatch(d, stall_s)

    def ended(s: dict[str, Any]) -> bool:
        n = s.get("swaps_ok", 0) + s.get("swaps_other", 0)
        return bool(s.get("fault")) or (n > done0 and s.get("step") is None)

    st = follow_swap(d, ended, swap_timeout, watch, r)
    watch.close()
    r.stalls += watch.stalls
    if st is None:
        r.outcome = "open"
        if not r.problems:
            r.problems.append(f"the swap did not end within {swap_timeout} s: {d.station()}")
    else:
        recs = [f for _, f in d.swap_records()]
        r.outcome = recs[-1].get("o") if recs else None
        if st.get("fault"):
            r.outcome = "held"
            r.problems.append(f"held for an operator: {st.get('fault')}")
    try:
        r.problems += d.swap_record_problems() + d.rack_mismatches()
    except ScenarioError as e:
        r.problems.append(str(e))
    r.problems += [f"field: {e}" for e in d.field_errors()]
    r.seconds = round(time.monotonic() - t0, 2)
    return r


_SEEN: dict[int, set[int]] = {}  # driver id -> every pack it has seen in the field


def pack_places(d: ScenarioDriver) -> list[str]:
    """Every pack in exactly one place in the field: rack slots, the vehicle in the bay (or
    queued), the carrier, the isolation bay, the vehicles that left. Packs seen before
    (and the arriving vehicles') must still be somewhere."""
    bay = d._bay()

    def places() -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        m = bay.model
        for name, v in [("bay vehicle", m.vehicle)] + [("queued vehicle", q) for q in m.queue]:
            if v is not None and v.pack is not None:
                out.append((v.pack.pack_id, name))
        if m.carrier_pack is not None:
            out.append((m.carrier_pack.pack_id, "carrier"))
        out += [(p.pack_id, "isolation") for p in bay.rack.isolated]
        out += [(v.pack.pack_id, f"departed vehicle {v.vehicle_id}")
                for _, v in m.departed if v.pack is not None]
        return out

    got = [(p, f"slot {k}") for k, p in d.field.pack_ids().items()] + d.field.call(places)
    where: dict[int, list[str]] = {}
    for p, name in got:
        where.setdefault(p, []).append(name)
    seen = _SEEN.setdefault(id(d), set())
    seen |= set(where) | {v.pack_id for v in d.vehicles}
    problems = [f"pack {p} in {len(w)} places: {', '.join(w)}"
                for p, w in sorted(where.items()) if len(w) > 1]
    problems += [f"pack {p} is nowhere" for p in sorted(seen - set(where))]
    return problems
