"""The swap bay behind its remote-I/O module (docs/register-map.md, "Bay remote-I/O module").

Event-driven, not ticked: a coil write starts a motion whose end is scheduled; the
matching limit input changes when ``advance(now)`` passes that time. Each actuator is a
travel between two limits with a jittered duration; the nutrunners finish each bolt with
a torque and an angle in or out of the window; the reader identifies a vehicle some time
after it drives in. Failures are injected once (``inject``) or drawn per swap from
``failure_rates``.

The durations of :class:`BayTiming` are calibrated to NIO PSS 4.0: the register-map
sequence takes 144 s on average from positioning to the positioner open again.
:meth:`BayModel.sample_swap_s` draws that whole sequence's duration from the same
distributions without the coil traffic, for plant-only runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from firmware.proto import regmap as R
from host.plant.charging import PackRecord, Plant

FAILURES = (
    "positioning", "lift_stall", "jammed_bolt", "bolt_torque", "carrier_stall", "electrical", "id_unknown",
)


@dataclass(frozen=True)
class BayTiming:
    """Mean durations in seconds; every motion is scaled by ``max(0.5, 1 + jitter * N(0, 1))``.

    NIO quotes 144 s per swap and 480 swaps a day for PSS 4.0: 86400 / 480 = 180 s per
    vehicle, so the bay time outside the 144 s mechanical sequence (entry door, drive in,
    identify, door closed behind the car, drive out) must stay under 36 s. The automated
    drive in / out of one car length at crawl speed and the doors below give about 26 s, which
    leaves a few seconds for the controller's polling between steps.
    """

    door_s: float = 3.0
    drive_in_s: float = 10.0
    identify_s: float = 2.0
    position_s: float = 15.0  # positioner engage (retract: retract_s)
    retract_s: float = 6.0
    lift_s: float = 12.0  # each way
    rgv_s: float = 6.0  # platform up or down
    grip_s: float = 1.5
    unbolt_s: float = 11.0  # per bolt, all bolts run together
    dock_s: float = 7.0  # at dock_rpm ...
    lock_s: float = 8.0  # ... and lock_rpm; other speeds in BAY_HR_DOCK_RPM / LOCK_RPM scale them
    dock_rpm: float = 600.0  # the nutrunner controller's own speeds (register 0 selects them)
    lock_rpm: float = 60.0
    carrier_base_s: float = 6.0  # per carrier move, plus ...
    carrier_per_slot_s: float = 0.5  # ... per slot pitch travelled (the bay is at position -1)
    handover_s: float = 2.5  # rack shuttle takes (once the grip opens) or gives a pack
    verify_s: float = 4.0
    drive_out_s: float = 8.0
    jitter: float = 0.08
    tool_timeout_factor: float = 1.6  # a jammed bolt: the tool gives up after this times unbolt_s


def scaled_timing(scale: float, base: BayTiming | None = None, jitter: float | None = None) -> BayTiming:
    """``base`` (default: the PSS 4.0 calibration) with every duration times ``scale``
    (0: every motion instantaneous, and so without jitter)."""
    if not scale >= 0:
        raise ValueError(f"scale must be >= 0, not {scale}")
    b = base or BayTiming()
    changes: dict[str, float] = {f.name: getattr(b, f.name) * scale
                                 for f in dataclasses.fields(b) if f.name.endswith("_s")}
    if jitter is not None:
        changes["jitter"] = jitter
    elif scale == 0:
        changes["jitter"] = 0.0
    return dataclasses.replace(b, **changes)


class Rack(Protocol):
    def put_pack(self, slot: int, pack: PackRecord) -> None: ...

    def take_pack(self, slot: int) -> PackRecord: ...


@dataclass
class BayVehicle:
    vehicle_id: int
    model_code: int
    pack: PackRecord | None
    known: bool = True  # the reader can decode its tag
    subscribed: bool = True  # the back end reports an active battery subscription
    identified_s: float = -1.0  # when the reader reported it (-1: not yet)


@dataclass
class _Travel:
    """A motion between limits 0 and 1 with the full-travel time ``full_s``."""

    full_s: float
    pos: float = 0.0
    direction: int = 0
    t0: float = 0.0
    dur: float = 0.0  # full-travel time of the present move (jittered)

    def at(self, t: float) -> float:
        if self.direction == 0 or self.dur <= 0.0:
            return self.pos
        return min(1.0, max(0.0, self.pos + self.direction * (t - self.t0) / self.dur))

    def limits(self, t: float, reached: int) -> tuple[int, int]:
        """(at the 1 limit, at the 0 limit); ``reached`` is the limit just arrived at, or 0."""
        pos = self.at(t)
        still = self.direction == 0
        top = reached > 0 or (reached == 0 and still and pos >= 1.0)
        bottom = reached < 0 or (reached == 0 and still and pos <= 0.0)
        return int(top), int(bottom)


@dataclass
class BayModel:
    """One bay's remote-I/O module and the mechanics behind it."""

    rack: Rack
    seed: int | np.random.SeedSequence = 0
    timing: BayTiming = field(default_factory=BayTiming)
    bolt_count: int = R.BOLT_COUNT
    torque_window_nm: tuple[float, float] = (110.0, 130.0)
    angle_window_deg: tuple[float, float] = (30.0, 720.0)
    failure_rates: dict[str, float] = field(default_factory=dict)
    slot_offset: int = 0  # TARGET_SLOT + slot_offset is the rack's slot index

    def __post_init__(self) -> None:
        t = self.timing
        self.rng = np.random.Generator(np.random.PCG64(self.seed))
        self._normals: list[float] = []  # jitter draws, taken in blocks
        self.coils = [0] * R.BAY_COIL_COUNT
        self.holding = [0] * R.BAY_HOLDING_COUNT
        self.inputs = [0] * R.BAY_DI_COUNT
        self.iregs = [0] * R.BAY_IR_COUNT
        for di in (R.BAY_DI_LIFT_DOWN, R.BAY_DI_RGV_DOWN, R.BAY_DI_CARRIER_AT_BAY, R.BAY_DI_ESTOP_OK,
                   R.BAY_DI_DOOR_CLOSED, R.BAY_DI_CURTAIN_CLEAR, R.BAY_DI_SMOKE_CLEAR,
                   R.BAY_DI_POSITIONER_OPEN):
            self.inputs[di] = 1
        self.lift = _Travel(t.lift_s)
        self.positioner = _Travel(t.position_s)
        self.rgv = _Travel(t.rgv_s)
        self.door = _Travel(t.door_s)
        self.carrier_at: int = -1  # -1: bay; k: rack slot k (index from TARGET_SLOT); -2: moving
        self.carrier_pack: PackRecord | None = None
        self.vehicle: BayVehicle | None = None
        self.queue: list[BayVehicle] = []
        self.departed: list[tuple[float, BayVehicle]] = []
        # (time, vehicle) when the positioner first engaged on a vehicle: its swap began
        self.started: list[tuple[float, BayVehicle]] = []
        self._started_v: BayVehicle | None = None
        self.bolt_tight = [False] * self.bolt_count
        self.injected: dict[str, int | None] = {}
        self._events: dict[str, tuple[float, Callable[[float], None]]] = {}
        self._last_access = 0.0
        self.now = 0.0

    # ---- time ------------------------------------------------------------------------------
    def _dur(self, mean_s: float) -> float:
        # called ~26 times per swap: a plain comparison instead of max(), the list refilled in place
        normals = self._normals
        if not normals:
            normals.extend(self.rng.standard_normal(1024).tolist())
        f = 1.0 + self.timing.jitter * normals.pop()
        return mean_s * (f if f > 0.5 else 0.5)

    def _fails(self, kind: str) -> tuple[bool, int | None]:
        """Whether the step of ``kind`` fails this time (an injected failure is used up)."""
        if kind in self.injected:
            return True, self.injected.pop(kind)
        rate = self.failure_rates.get(kind, 0.0)
        return (rate > 0.0 and float(self.rng.random()) < rate), None

    def _at(self, name: str, t: float, fn: Callable[[float], None]) -> None:
        self._events[name] = (t, fn)

    def _cancel(self, name: str) -> None:
        self._events.pop(name, None)

    def next_event_s(self) -> float:
        """When an input will next change by itself (``inf`` if nothing is under way)."""
        return min((t for t, _ in self._events.values()), default=math.inf)

    def advance(self, now: float) -> None:
        """Apply every change due at or before ``now``, in time order."""
        while True:
            due = [(t, name) for name, (t, _) in self._events.items() if t <= now]
            if not due:
                break
            t, name = min(due)
            _, fn = self._events.pop(name)
            self.now = t
            fn(t)
        self.now = max(self.now, now)

    # ---- vehicles ----------------------------------------------------------------------------
    def vehicle_arrives(self, vehicle: BayVehicle, now: float) -> None:
        """A vehicle waits at the entry; it drives in when the door is open and the bay is empty."""
        self.advance(now)
        self.queue.append(vehicle)
        self._maybe_drive_in(now)

    def _maybe_drive_in(self, t: float) -> None:
        if self.vehicle is None and self.queue and self.door.at(t) >= 1.0 and "drive_in" not in self._events:
            self._at("drive_in", t + self._dur(self.timing.drive_in_s), self._drove_in)

    def _drove_in(self, t: float) -> None:
        if not self.queue or self.vehicle is not None:
            return
        self.vehicle = self.queue.pop(0)
        self.inputs[R.BAY_DI_VEHICLE_PRESENT] = 1
        self.inputs[R.BAY_DI_PACK_SEATED] = 1 if self.vehicle.pack else 0
        self.bolt_tight = [self.vehicle.pack is not None] * self.bolt_count
        self._set_bolt_inputs()
        self._at("identify", t + self._dur(self.timing.identify_s), self._identified)

    def _identified(self, t: float) -> None:
        v = self.vehicle
        if v is None:
            return
        v.identified_s = t
        unknown = not v.known or self._fails("id_unknown")[0]
        ir = self.iregs
        ir[R.BAY_IR_ID_STATUS] = R.ID_UNKNOWN if unknown else R.ID_VALID
        ir[R.BAY_IR_ID_SEQ] = (ir[R.BAY_IR_ID_SEQ] + 1) & 0xFFFF
        if not unknown:
            ir[R.BAY_IR_VEHICLE_ID_HI], ir[R.BAY_IR_VEHICLE_ID_LO] = R.split32(v.vehicle_id & 0xFFFFFFFF)
            ir[R.BAY_IR_VEHICLE_MODEL] = v.model_code
            if v.pack is not None:
                ir[R.BAY_IR_PACK_ID_HI], ir[R.BAY_IR_PACK_ID_LO] = R.split32(v.pack.pack_id & 0xFFFFFFFF)
                ir[R.BAY_IR_PACK_TYPE] = v.pack.pack_type.code
            ir[R.BAY_IR_ID_FLAGS] = R.ID_FLAG_SUBSCRIBED if v.subscribed else 0

    def _maybe_drive_out(self, t: float) -> None:
        ready = (
            self.vehicle is not None and self.coils[R.BAY_CO_EXIT_OPEN] and self.inputs[R.BAY_DI_LIFT_DOWN]
            and self.inputs[R.BAY_DI_POSITIONER_OPEN] and self.inputs[R.BAY_DI_RGV_DOWN]
        )
        if ready and "drive_out" not in self._events:
            self._at("drive_out", t + self._dur(self.timing.drive_out_s), self._drove_out)
        elif not ready:
            self._cancel("drive_out")

    def _drove_out(self, t: float) -> None:
        v = self.vehicle
        if v is None:
            return
        self.departed.append((t, v))
        self.vehicle = None
        self.inputs[R.BAY_DI_VEHICLE_PRESENT] = 0
        self.inputs[R.BAY_DI_VEHICLE_POSITIONED] = 0
        self.inputs[R.BAY_DI_PACK_SEATED] = 0
        self.inputs[R.BAY_DI_ELECTRICAL_OK] = 0
        for k in range(R.BAY_ID_COUNT):
            if k != R.BAY_IR_ID_SEQ:
                self.iregs[k] = 0
        self._maybe_drive_in(t)

    # ---- travels ----------------------------------------------------------------------------
    def _move(self, name: str, tr: _Travel, direction: int, t: float, at_end: Callable[[float, int], None],
              stall: bool = False) -> None:
        """(Re)start travel ``tr`` towards limit 1 (direction 1), 0 (-1) or stop it (0)."""
        tr.pos = tr.at(t)
        tr.t0 = t
        tr.direction = direction
        self._cancel(name)
        at_end(t, 0)  # left both limits (or stopped between them)
        if direction == 0:
            return
        target = 1.0 if direction > 0 else 0.0
        if tr.pos == target:
            tr.direction = 0
            at_end(t, direction)
            return
        tr.dur = self._dur(tr.full_s)
        if stall:
            return  # stops half-way and never reaches the limit
        done = t + abs(target - tr.pos) * tr.dur

        def arrive(te: float) -> None:
            tr.pos, tr.direction, tr.t0 = target, 0, te
            at_end(te, direction)

        self._at(name, done, arrive)

    def _lift_limits(self, t: float, reached: int) -> None:
        self.inputs[R.BAY_DI_LIFT_UP], self.inputs[R.BAY_DI_LIFT_DOWN] = self.lift.limits(t, reached)
        self._maybe_drive_out(t)

    def _positioner_limits(self, t: float, reached: int) -> None:
        closed, self.inputs[R.BAY_DI_POSITIONER_OPEN] = self.positioner.limits(t, reached)
        ok = closed and self.vehicle is not None and not self._positioning_failed
        self.inputs[R.BAY_DI_VEHICLE_POSITIONED] = 1 if ok else 0
        self._maybe_drive_out(t)

    def _door_limits(self, t: float, reached: int) -> None:
        self.inputs[R.BAY_DI_DOOR_CLOSED] = self.door.limits(t, reached)[1]
        if reached > 0:
            self._maybe_drive_in(t)

    def _rgv_limits(self, t: float, reached: int) -> None:
        v = self.vehicle
        if reached == 0 and self.rgv.direction < 0 and self.inputs[R.BAY_DI_RGV_UP]:
            # leaving the top: a gripped, fully released pack comes down with the platform
            if (v is not None and v.pack is not None and self.inputs[R.BAY_DI_PACK_GRIPPED]
                    and not any(self.bolt_tight) and self.carrier_pack is None):
                self.carrier_pack, v.pack = v.pack, None
                self.inputs[R.BAY_DI_PACK_SEATED] = 0
                self.inputs[R.BAY_DI_ELECTRICAL_OK] = 0
        if reached > 0 and v is not None and v.pack is None and self.carrier_pack is not None:
            v.pack, self.carrier_pack = self.carrier_pack, None  # docked, bolts still loose
            self.snug = False
            self.inputs[R.BAY_DI_PACK_SEATED] = 1
            self.bolt_tight = [False] * self.bolt_count
            self._set_bolt_inputs()
        self.inputs[R.BAY_DI_RGV_UP], self.inputs[R.BAY_DI_RGV_DOWN] = self.rgv.limits(t, reached)
        self.inputs[R.BAY_DI_PACK_ON_CARRIER] = 1 if self.carrier_pack is not None else 0
        self._maybe_drive_out(t)

    # ---- carrier ------------------------------------------------------------------------------
    def _carrier_time(self, a: int, b: int) -> float:
        t = self.timing
        return self._dur(t.carrier_base_s + t.carrier_per_slot_s * abs(a - b))

    def _start_carrier(self, t: float) -> None:
        c = self.coils
        moves = c[R.BAY_CO_CARRIER_TO_RACK] + c[R.BAY_CO_CARRIER_TO_BAY] + c[R.BAY_CO_CARRIER_HOME]
        to_rack = moves == 1 and c[R.BAY_CO_CARRIER_TO_RACK]  # interlocked: two at once is a stop
        to_bay = moves == 1 and c[R.BAY_CO_CARRIER_TO_BAY]
        home = moves == 1 and c[R.BAY_CO_CARRIER_HOME]
        self._cancel("carrier")
        origin = self.carrier_at if self.carrier_at != -2 else -1
        self.inputs[R.BAY_DI_CARRIER_AT_BAY] = 0
        self.inputs[R.BAY_DI_CARRIER_AT_RACK] = 0
        if home:
            self.carrier_at = -2
            if not self._fails("carrier_stall")[0]:
                self._at("carrier", t + self._carrier_time(origin, -1), self._carrier_home)
            return
        if not (to_rack or to_bay):
            if self.carrier_at == -2:
                return  # stopped between positions
            self.inputs[R.BAY_DI_CARRIER_AT_BAY] = 1 if self.carrier_at == -1 else 0
            at_target = self.carrier_at == self.holding[R.BAY_HR_TARGET_SLOT]
            self.inputs[R.BAY_DI_CARRIER_AT_RACK] = 1 if at_target else 0
            return
        slot = self.holding[R.BAY_HR_TARGET_SLOT]
        stalled = self._fails("carrier_stall")[0]
        self.carrier_at = -2
        if stalled:
            return
        if to_rack:
            dur = self._carrier_time(origin, slot)
            self._at("carrier", t + dur, lambda te: self._carrier_at_rack(te, slot))
        else:
            dur = self._carrier_time(origin, slot) + self.timing.handover_s + self._carrier_time(slot, -1)
            self._at("carrier", t + dur, lambda te: self._carrier_at_bay(te, slot))

    def _carrier_home(self, t: float) -> None:
        self.carrier_at = -1
        self.inputs[R.BAY_DI_CARRIER_AT_BAY] = 1
        self.inputs[R.BAY_DI_PACK_ON_CARRIER] = 1 if self.carrier_pack is not None else 0

    def _carrier_at_rack(self, t: float, slot: int) -> None:
        self.carrier_at = slot
        self.inputs[R.BAY_DI_CARRIER_AT_RACK] = 1
        self._maybe_hand_over(t)

    def _maybe_hand_over(self, t: float) -> None:
        """At a rack slot with the grip open, the rack's shuttle takes the carrier's pack."""
        if self.carrier_at >= 0 and self.carrier_pack is not None and not self.inputs[R.BAY_DI_PACK_GRIPPED]:
            slot = self.carrier_at

            def taken(te: float) -> None:
                if self.carrier_pack is not None and self.carrier_at == slot:
                    self.rack.put_pack(slot + self.slot_offset, self.carrier_pack)
                    self.carrier_pack = None
                    self.inputs[R.BAY_DI_PACK_ON_CARRIER] = 0

            self._at("handover", t + self._dur(self.timing.handover_s), taken)

    def _carrier_at_bay(self, t: float, slot: int) -> None:
        self.carrier_at = -1
        if self.carrier_pack is None:
            self.carrier_pack = self.rack.take_pack(slot + self.slot_offset)
        self.inputs[R.BAY_DI_CARRIER_AT_BAY] = 1
        self.inputs[R.BAY_DI_PACK_ON_CARRIER] = 1

    # ---- nutrunners --------------------------------------------------------------------------
    def _set_bolt_inputs(self) -> None:
        for b in range(R.BOLT_MAX):
            tight = b < self.bolt_count and self.bolt_tight[b]
            self.inputs[R.BAY_DI_BOLT_RELEASED_BASE + b] = 0 if (tight or b >= self.bolt_count) else 1

    def _start_tool(self, t: float) -> None:
        unbolt = self.coils[R.BAY_CO_TOOL_UNBOLT] and not self.coils[R.BAY_CO_TOOL_BOLT]
        bolt = self.coils[R.BAY_CO_TOOL_BOLT] and not self.coils[R.BAY_CO_TOOL_UNBOLT]
        for k in list(self._events):
            if k.startswith("tool"):
                self._cancel(k)
        self.inputs[R.BAY_DI_TOOL_BUSY] = 0
        at_pack = self.inputs[R.BAY_DI_RGV_UP] and self.vehicle is not None and self.vehicle.pack is not None
        if not (unbolt or bolt) or not at_pack:
            return
        self.inputs[R.BAY_DI_TOOL_BUSY] = 1
        for b in range(R.BOLT_MAX):
            self.iregs[R.BAY_IR_TORQUE_BASE + b] = 0
            self.iregs[R.BAY_IR_ANGLE_BASE + b] = 0
        if unbolt:
            self.snug = False
            self._unbolt(t)
        elif self.snug and self.coils[R.BAY_CO_TOOL_LOCK_SPEED]:
            self._start_lock(t)  # bolts already run down: straight to locking
        else:
            self._at("tool_dock", t + self._dur(self._at_speed(self.timing.dock_s, R.BAY_HR_DOCK_RPM,
                                                                 self.timing.dock_rpm)), self._docked)

    def _unbolt(self, t: float) -> None:
        failed, which = self._fails("jammed_bolt")
        jammed = (which if which is not None else int(self.rng.integers(self.bolt_count))) if failed else -1
        last = t
        for b in range(self.bolt_count):
            if b == jammed:
                continue
            done = t + self._dur(self.timing.unbolt_s)
            last = max(last, done)

            def release(te: float, b: int = b) -> None:
                self.bolt_tight[b] = False
                self.inputs[R.BAY_DI_BOLT_TORQUE_OK_BASE + b] = 0
                # Loosening torque of a bolt tightened to the window's middle: about 0.71x
                # (85 N*m at 120), 3.5 % scatter (an estimate). Relative scatter keeps a sound
                # bolt out of the controller's "loose" band (below half the window's minimum),
                # which the old 8 N*m absolute spread reached about once in 3 days of swaps.
                k = 0.71 + 0.035 * float(self.rng.standard_normal())
                breakaway = 0.5 * sum(self.torque_window_nm) * k
                self.iregs[R.BAY_IR_TORQUE_BASE + b] = round(10 * breakaway)
                self.iregs[R.BAY_IR_ANGLE_BASE + b] = round(540 + 40 * float(self.rng.standard_normal()))
                self._set_bolt_inputs()

            self._at(f"tool_b{b}", done, release)
        end = t + self.timing.unbolt_s * self.timing.tool_timeout_factor if jammed >= 0 else last

        def stop(te: float) -> None:
            if jammed >= 0:
                self.iregs[R.BAY_IR_TORQUE_BASE + jammed] = 2500  # tool's maximum: it did not break loose
                self.iregs[R.BAY_IR_ANGLE_BASE + jammed] = 3
            self.inputs[R.BAY_DI_TOOL_BUSY] = 0

        self._at("tool_end", end + 1e-6, stop)

    def _at_speed(self, base_s: float, register: int, base_rpm: float) -> float:
        rpm = self.holding[register]
        return base_s * base_rpm / rpm if rpm else base_s

    def _docked(self, t: float) -> None:
        self.snug = True
        if self.coils[R.BAY_CO_TOOL_LOCK_SPEED]:
            self._start_lock(t)
        else:
            self.inputs[R.BAY_DI_TOOL_BUSY] = 0  # snug; waits for locking speed
            self._docked_waiting = True

    def _start_lock(self, t: float) -> None:
        self._docked_waiting = False
        self.inputs[R.BAY_DI_TOOL_BUSY] = 1
        self._at("tool_lock", t + self._dur(self._at_speed(self.timing.lock_s, R.BAY_HR_LOCK_RPM,
                                                          self.timing.lock_rpm)), self._locked)

    def _locked(self, t: float) -> None:
        failed, which = self._fails("bolt_torque")
        bad = (which if which is not None else int(self.rng.integers(self.bolt_count))) if failed else -1
        # without a target the nutrunner controller uses its programmed one: mid-window
        target = self.holding[R.BAY_HR_TORQUE_TARGET] / 10.0 or 0.5 * sum(self.torque_window_nm)
        lo_t, hi_t = self.torque_window_nm
        lo_a, hi_a = self.angle_window_deg
        for b in range(self.bolt_count):
            torque = target + 1.5 * float(self.rng.standard_normal())
            angle = 200.0 + 25.0 * float(self.rng.standard_normal())
            if b == bad:
                torque, angle = 0.6 * target, 15.0  # cross-threaded: stalls early at low torque
            ok = lo_t <= torque <= hi_t and lo_a <= angle <= hi_a
            self.bolt_tight[b] = torque > 0.5 * lo_t
            self.inputs[R.BAY_DI_BOLT_TORQUE_OK_BASE + b] = 1 if ok else 0
            self.iregs[R.BAY_IR_TORQUE_BASE + b] = max(0, round(torque * 10))
            self.iregs[R.BAY_IR_ANGLE_BASE + b] = max(0, round(angle))
        self._set_bolt_inputs()
        self.inputs[R.BAY_DI_TOOL_BUSY] = 0
        all_ok = all(self.inputs[R.BAY_DI_BOLT_TORQUE_OK_BASE + b] for b in range(self.bolt_count))
        if all_ok and not self._fails("electrical")[0]:
            self._at("verify", t + self._dur(self.timing.verify_s), self._verified)

    def _verified(self, t: float) -> None:
        if self.vehicle is not None and self.vehicle.pack is not None and all(self.bolt_tight):
            self.inputs[R.BAY_DI_ELECTRICAL_OK] = 1

    # ---- the bus ------------------------------------------------------------------------------
    def _touch(self, now: float) -> None:
        self.advance(now)
        self._last_access = now
        wd = self.holding[R.BAY_HR_COMM_WATCHDOG_MS]
        if wd:
            self._at("comm_watchdog", now + wd / 1000.0, self._comm_lost)

    def _comm_lost(self, t: float) -> None:
        self._apply_coils(0, [0] * R.BAY_COIL_COUNT, t)

    def write_coils(self, address: int, values: Sequence[int], now: float) -> None:
        """FC05/FC15."""
        if address < 0 or address + len(values) > R.BAY_COIL_COUNT:
            raise ValueError(f"coils {address}..{address + len(values) - 1} are not mapped")
        self._touch(now)
        self._apply_coils(address, values, now)

    def _apply_coils(self, address: int, values: Sequence[int], t: float) -> None:
        old = list(self.coils)
        for k, v in enumerate(values):
            self.coils[address + k] = 1 if v else 0
        changed = {k for k in range(R.BAY_COIL_COUNT) if old[k] != self.coils[k]}
        c = self.coils
        if changed & {R.BAY_CO_LIFT_UP, R.BAY_CO_LIFT_DOWN}:
            d = (1 if c[R.BAY_CO_LIFT_UP] else 0) - (1 if c[R.BAY_CO_LIFT_DOWN] else 0)
            if c[R.BAY_CO_LIFT_UP] and c[R.BAY_CO_LIFT_DOWN]:
                d = 0
            stall = d > 0 and self._fails("lift_stall")[0]
            self._move("lift", self.lift, d, t, self._lift_limits, stall)
        if R.BAY_CO_POSITIONER in changed:
            if c[R.BAY_CO_POSITIONER]:
                car = self.vehicle
                if car is not None and self._started_v is not car:
                    self._started_v = car
                    self.started.append((t, car))
                self._positioning_failed = self._fails("positioning")[0]
                self.positioner.full_s = self.timing.position_s
            else:
                self.positioner.full_s = self.timing.retract_s
            self._move("positioner", self.positioner, 1 if c[R.BAY_CO_POSITIONER] else -1, t,
                       self._positioner_limits)
        if R.BAY_CO_RGV_RAISE in changed:
            self._move("rgv", self.rgv, 1 if c[R.BAY_CO_RGV_RAISE] else -1, t, self._rgv_limits)
        if R.BAY_CO_DOOR_OPEN in changed:
            self._move("door", self.door, 1 if c[R.BAY_CO_DOOR_OPEN] else -1, t, self._door_limits)
        if R.BAY_CO_PACK_GRIP in changed:
            closed = c[R.BAY_CO_PACK_GRIP]
            self.inputs[R.BAY_DI_PACK_GRIPPED] = 0

            def grip(te: float) -> None:
                self.inputs[R.BAY_DI_PACK_GRIPPED] = 1 if closed else 0
                self._maybe_hand_over(te)

            self._at("grip", t + self._dur(self.timing.grip_s), grip)
        if changed & {R.BAY_CO_TOOL_UNBOLT, R.BAY_CO_TOOL_BOLT}:
            self._docked_waiting = False
            self._start_tool(t)
        if R.BAY_CO_TOOL_LOCK_SPEED in changed and c[R.BAY_CO_TOOL_LOCK_SPEED] and self._docked_waiting:
            self._start_lock(t)
        if changed & {R.BAY_CO_CARRIER_TO_RACK, R.BAY_CO_CARRIER_TO_BAY, R.BAY_CO_CARRIER_HOME}:
            self._start_carrier(t)
        if R.BAY_CO_EXIT_OPEN in changed:
            self._maybe_drive_out(t)

    _positioning_failed = False
    _docked_waiting = False
    snug = False  # bolts run down at docking speed, not yet locked

    def read_coils(self, address: int, count: int, now: float) -> list[int]:
        self._touch(now)
        return list(self.coils[address:address + count])

    def read_discrete_inputs(self, address: int, count: int, now: float) -> list[int]:
        self._touch(now)
        return list(self.inputs[address:address + count])

    def read_input_registers(self, address: int, count: int, now: float) -> list[int]:
        self._touch(now)
        return list(self.iregs[address:address + count])

    def write_holding(self, address: int, values: Sequence[int], now: float) -> None:
        if address < 0 or address + len(values) > R.BAY_HOLDING_COUNT:
            raise ValueError(f"holding registers {address}..{address + len(values) - 1} are not mapped")
        self._touch(now)
        self.holding[address:address + len(values)] = [int(v) & 0xFFFF for v in values]
        self._touch(now)  # a new watchdog time applies at once

    def read_holding(self, address: int, count: int, now: float) -> list[int]:
        self._touch(now)
        return list(self.holding[address:address + count])

    # ---- environment and failures --------------------------------------------------------------
    def set_input(self, address: int, value: int, now: float) -> None:
        """Operator or environment inputs: e-stop, light curtain, smoke, manual mode."""
        self.advance(now)
        self.inputs[address] = 1 if value else 0

    def inject(self, failure: str, bolt: int | None = None) -> None:
        """Make the next step of this kind fail (``bolt`` picks the bolt for bolt failures)."""
        if failure not in FAILURES:
            raise ValueError(f"unknown failure {failure!r}; known: {', '.join(FAILURES)}")
        self.injected[failure] = bolt

    # ---- plant-only runs ----------------------------------------------------------------------
    def sample_swap_s(self, store_slot: int, fetch_slot: int) -> tuple[float, str | None]:
        """Duration of the register-map sequence, positioning to positioner open, and the failure
        that ended it early (``None`` for a completed swap). Same distributions as the coil path."""
        t = self.timing
        d = self._dur
        carrier = self._carrier_time
        total = d(t.position_s)
        if self._fails("positioning")[0]:
            return total + d(t.retract_s), "positioning"
        total += d(t.lift_s) + d(t.rgv_s)
        if self._fails("jammed_bolt")[0]:
            return total + t.unbolt_s * t.tool_timeout_factor + d(t.rgv_s) + d(t.lift_s) + d(t.retract_s), \
                "jammed_bolt"
        slowest = -math.inf  # the bolts run together: the slowest one counts (a loop: no generator)
        for _ in range(self.bolt_count):
            b = d(t.unbolt_s)
            if b > slowest:
                slowest = b
        total += slowest
        total += d(t.grip_s) + d(t.rgv_s)
        total += carrier(-1, store_slot) + d(t.grip_s) + d(t.handover_s)  # grip opens, rack takes
        total += carrier(store_slot, fetch_slot) + t.handover_s
        total += carrier(fetch_slot, -1)
        total += d(t.rgv_s) + d(t.dock_s) + d(t.lock_s)
        if self._fails("bolt_torque")[0]:
            total += d(t.lock_s)  # the bolt is re-run
        total += d(t.verify_s) + d(t.grip_s) + d(t.rgv_s) + d(t.lift_s) + d(t.retract_s)
        return total, None


class RackWithIsolation:
    """The carrier's view of the station: the plant's rack slots, and past the last slot the
    isolation bay (carrier target ``len(slots)``, as the firmware addresses it): packs put
    there leave the plant. Engine and HIL emulator both hand this to :class:`BayModel`."""

    def __init__(self, plant: Plant, capacity: int = 1) -> None:
        self.plant = plant
        self.capacity = capacity
        self.isolated: list[PackRecord] = []

    def put_pack(self, slot: int, pack: PackRecord) -> None:
        if slot < self.plant.n_slots:
            self.plant.put_pack(slot, pack)
        elif slot == self.plant.n_slots and len(self.isolated) < self.capacity:
            self.isolated.append(pack)
        else:
            raise ValueError(f"no rack position {slot} (isolation bay full or out of range)")

    def take_pack(self, slot: int) -> PackRecord:
        if slot < self.plant.n_slots:
            return self.plant.take_pack(slot)
        if slot == self.plant.n_slots and self.isolated:
            return self.isolated.pop(0)
        raise ValueError(f"no pack at rack position {slot}")

    def has_pack(self, slot: int) -> bool:
        if 0 <= slot < self.plant.n_slots:
            return bool(self.plant.arrays["present"][slot])
        return slot == self.plant.n_slots and bool(self.isolated)


def bay_for_station(cfg: Mapping[str, Any], plant: Plant, timing: BayTiming, seed: Any = 0) -> BayModel:
    """The bay of station config ``cfg`` over ``plant``'s rack and the isolation bay behind
    its last slot (the simulator and the HIL rig both build it so)."""
    b = cfg["bay"]
    rack = RackWithIsolation(plant, int(cfg["isolation_bay"]["capacity"]))
    return BayModel(rack, seed=seed, timing=timing, bolt_count=min(int(b["bolt_count"]), R.BOLT_MAX),
                    torque_window_nm=(float(b["torque_nm"][0]), float(b["torque_nm"][1])),
                    angle_window_deg=(float(b["angle_deg"][0]), float(b["angle_deg"][1])))
