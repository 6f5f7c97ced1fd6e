"""Swap-bay sequence: one vehicle at a time through the 13 steps of
``config.SWAP_STEPS``, driven through the bay remote-I/O module (regmap ``BAY_*``).

The bay is pure logic. Each control cycle the supervisor hands it the module's
sensor image (``set_inputs``) and calls ``update(now_ms)``; the bay answers with
an output image (``coils``, ``hr``) and a generation number ``gen`` that changes
whenever that image changes. The supervisor writes the image and reports back
with the generation it wrote (``outputs_written``); a sensor image read after
that write carries that generation, so a step only judges sensors that saw its
own command (a nutrunner run that already ended is not mistaken for one that has
not started yet).

Plans. A swap runs ``P_SWAP``; a failure switches to a shorter plan that leaves
the vehicle safe (see ``_fail``):

- before any motion (identify, authorise): ``P_REJECT``, the vehicle drives off;
- positioning, lifting, platform raise: ``P_ABORT``, lower and release;
- unbolting (tool ran): ``P_REBOLT``, the vehicle's own pack is bolted back;
- bolting or verifying the new pack: ``P_RESWAP`` once, taking the new pack out
  again and reinstalling the vehicle's own pack (known to fit this car);
- anything else (the vehicle is on the lift without a secured pack): hold for
  an operator. The operator repairs in manual mode, then ``confirm`` retries the
  step, or ``abort_swap`` closes the swap record as failed.
``P_ISOLATE`` carries a quarantined pack to the isolation bay while the bay is empty.

Safety (``firmware.core.safety``): any latched stop turns the run outputs off in
the same ``update`` that sees it; positions (positioner, platform, grip) are held
because dropping those coils would itself move them. The step timer restarts
when the stop is cleared; the sub-phase is re-commanded from where it stopped.

Identity: primary path is the reader in the module's input registers
(``ID_STATUS`` valid with a new ``ID_SEQ``); ``offer_identity`` queues an identity
for scenario drivers whose plant has no reader. The register path decodes the
vehicle id as a decimal string and the model / pack type codes through
``model_codes`` / ``pack_codes`` (code -> config name; default: config names in
sorted order, code 1 first), because the config has no code fields yet.

Events go out through ``emit(kind, a, b)`` for the supervisor to journal:
``("begin", swap, None)`` once the vehicle is authorised and a charged pack reserved
(or an isolation move starts; the handler sets ``swap.n``), ``("step", swap, None)``
at the start of every later step (``bay.plan``/``bay.step`` name it, so a restart
resumes exactly there), ``("end", swap, outcome)`` with ``swap.ms`` and
``swap.step_ms``, ``("alarm", code, detail)``. Outcomes: ok, rejected (no motion),
aborted (the vehicle leaves with its own pack), failed (closed by an operator),
isolated.

The rack port (``rack``) answers: ``reserve_for(model, now)`` -> slot or None,
``reserve_slot(slot)``, ``release(slot)``, ``free_slot()`` -> slot or None,
``holds(slot, pack)`` (that slot's charger reports that pack), ``take(slot, now)``
-> serial of the pack the carrier took, ``set_fault(slot, why)``,
``to_isolation(pack, now)``.
"""

from firmware.compat import const, ticks_add, ticks_diff
from firmware.core import safety as sf
from firmware.core.config import SWAP_STEPS
from firmware.proto import regmap as rm

IDLE = const(-1)
IDENTIFY = const(0)
AUTHORISE = const(1)
POSITION = const(2)
LIFT = const(3)
UNBOLT = const(4)
REMOVE = const(5)
STORE = const(6)
FETCH = const(7)
INSTALL = const(8)
BOLT = const(9)
VERIFY = const(10)
LOWER = const(11)
RELEASE = const(12)
STEP_COUNT = const(13)

P_SWAP = const(0)
P_REJECT = const(1)
P_ABORT = const(2)
P_REBOLT = const(3)
P_RESWAP = const(4)
P_ISOLATE = const(5)
PLANS = (
    tuple(range(STEP_COUNT)),
    (RELEASE,),
    (LOWER, RELEASE),
    (BOLT, VERIFY, LOWER, RELEASE),
    (UNBOLT, REMOVE, STORE, FETCH, INSTALL, BOLT, VERIFY, LOWER, RELEASE),
    (FETCH, STORE),
)
PLAN_NAMES = ("swap", "reject", "abort", "rebolt", "reswap", "isolate")

# Coils that run a drive; a stop forces them to 0. The others (positioner, platform,
# grip, doors) command a position: 0 is itself a motion (retract, lower, close), so a
# stop holds them as they were and the bay's safety relay cuts their drives.
_RUN = (rm.BAY_CO_LIFT_UP, rm.BAY_CO_LIFT_DOWN, rm.BAY_CO_TOOL_UNBOLT, rm.BAY_CO_TOOL_BOLT,
        rm.BAY_CO_CARRIER_TO_RACK, rm.BAY_CO_CARRIER_TO_BAY)
_BEACONS = (rm.BAY_CO_BEACON_GREEN, rm.BAY_CO_BEACON_AMBER, rm.BAY_CO_BEACON_RED)

# Loosening window relative to the tightening torque window: a bolt that breaks away
# below half the minimum was loose; above 1.5x the maximum it is seized.
_BREAKAWAY_LO = 0.5
_BREAKAWAY_HI = 1.5
_RETRIES_BOLT = const(1)  # extra locking runs before bolting counts as failed


def _codes(names, given):
    if given:
        return given
    out = {}
    for i, n in enumerate(sorted(names)):
        out[i + 1] = n
    return out


class Swap:
    """One vehicle's pass through the bay (also one isolation move). ``n`` is the
    journal's swap number, set by whoever handles the ``begin`` event."""

    def __init__(self, t0):
        self.n = 0
        self.t0 = t0
        self.ms = 0  # whole swap, set at the end
        self.begun = False  # authorised with a reserved pack (or an isolation move)
        self.vehicle = None
        self.model = None
        self.pack = None  # serial of the pack the vehicle came with
        self.ptype = None
        self.soc = None
        self.subscribed = False
        self.why = None  # reason of a rejection
        self.fetch_slot = -1  # slot of the pack going into the vehicle
        self.store_slot = -1  # slot receiving the pack coming out
        self.own_slot = -1  # where the vehicle's own pack went
        self.new_pack = None
        self.reserved = False  # fetch_slot holds a reservation for this vehicle
        self.attempt = 1
        self.step_ms = [0] * STEP_COUNT


class Bay:
    """Swap-bay state machine. See the module docstring for the protocol."""

    def __init__(self, cfg, rack, emit, model_codes=None, pack_codes=None):
        self.cfg = cfg
        self.rack = rack
        self.emit = emit
        self.timeouts = tuple(cfg["timeouts_ms"][s] for s in SWAP_STEPS)
        bay = cfg["bay"]
        self.bolts = bay["bolt_count"]
        if self.bolts > rm.BOLT_MAX:
            raise ValueError("bay.bolt_count %d exceeds the I/O map's %d bolts" % (self.bolts, rm.BOLT_MAX))
        self.torque = bay["torque_nm"]
        self.angle = bay["angle_deg"]
        self.isolation_target = len(cfg["slots"])  # carrier target for the isolation bay
        self.model_codes = _codes(cfg["compatibility"], model_codes)
        self.pack_codes = _codes(cfg["pack_types"], pack_codes)
        auth = cfg["authorisation"]
        self.allow = auth["allow"]
        self.subscription = auth["subscription"]
        self.safety = sf.Safety(cfg["limits"]["runaway"]["smoke_latch"])
        # Inputs (from the supervisor)
        self.di = bytearray(rm.BAY_DI_COUNT)
        self.ir = [0] * rm.BAY_IR_COUNT
        self.di_gen = -1  # output generation those sensors saw
        self.ir_gen = -1
        self.online = True
        # Outputs
        self.coils = bytearray(rm.BAY_COIL_COUNT)
        self.hr = [0, int((self.torque[0] + self.torque[1]) * 5)]  # target slot, torque 0.1 N*m
        self._img = bytearray(rm.BAY_COIL_COUNT)
        self.jog = bytearray(rm.BAY_COIL_COUNT)  # manual-mode outputs set by the operator
        self.gen = 0
        self.written = -1  # generation the module has acknowledged
        self.need_ir = False  # ask the supervisor for the input registers this cycle
        # Sequence
        self.swap = None
        self.plan = P_SWAP
        self.pi = 0
        self.step = IDLE
        self.sub = 0
        self._t_step = 0
        self._deadline = 0
        self._held = True
        self._guard = False  # door seen closed in this plan
        self._rgv_hold = 0
        self._retry = 0
        self._angle = [0] * rm.BOLT_MAX  # locking angle per bolt, summed over re-runs
        self._cut = False  # a stop cut a tool run short: its angle is not judged
        self.fault = None
        self.last_id_seq = None
        self.queue = []  # identities offered by scenario drivers
        self.swaps_ok = 0
        self.swaps_other = 0
        self.last_swap_ms = 0
        self.last_step_ms = None

    # ---- supervisor side ------------------------------------------------------------
    def set_inputs(self, di, ir=None):
        """Sensor image just read (FC02 values, optionally FC04 values), sampled after
        the module acknowledged output generation ``self.written``."""
        for i in range(min(len(di), rm.BAY_DI_COUNT)):
            self.di[i] = 1 if di[i] else 0
        self.di_gen = self.written
        if ir is not None:
            for i in range(min(len(ir), rm.BAY_IR_COUNT)):
                self.ir[i] = ir[i]
            self.ir_gen = self.written

    def outputs_written(self, gen):
        self.written = gen

    def comms(self, online):
        self.online = online
        new = self.safety.comms(online, self._guarded())
        if new:
            self._alarm("bay_io_offline", None)

    def estop_pin(self, ok):
        """Controller's own e-stop input: checked every tick, acts at once."""
        if self.safety.pin(ok):
            self._alarm("estop", "controller input")
            self._stopped()
            self._outputs()

    def offer_identity(self, vehicle, model, pack, ptype, soc=None, subscribed=False):
        self.queue.append((vehicle, model, pack, ptype, soc, subscribed))

    def busy(self):
        return self.swap is not None

    def guarded_motion(self):
        return self._guarded()

    def restore(self, n, plan, step, t0, vehicle, model, pack, fetch_slot, store_slot, new_pack):
        """Take back the swap a power loss interrupted, from its last journal record
        (``plan``/``step`` names as journalled at the step's start). The bay stays held
        until an operator confirms; then that step runs again from its beginning, its
        sensors telling what is already done."""
        s = self.swap = Swap(t0)
        s.n = n
        s.begun = True
        s.vehicle, s.model, s.pack, s.new_pack = vehicle, model, pack, new_pack
        s.fetch_slot = -1 if fetch_slot is None else fetch_slot
        s.store_slot = -1 if store_slot is None else store_slot
        p = PLAN_NAMES.index(plan)
        st = SWAP_STEPS.index(step)
        if p == P_SWAP and st > STORE:
            s.own_slot = s.store_slot
        elif p == P_RESWAP:
            s.own_slot = s.fetch_slot
            s.attempt = 2
        if p in (P_SWAP, P_RESWAP) and st <= FETCH and s.fetch_slot >= 0:
            s.reserved = self.rack.reserve_slot(s.fetch_slot)
        self.plan = p
        self.pi = PLANS[p].index(st)
        self.step = st
        self.sub = 0
        self._t_step = t0
        self.safety.trip(sf.CONFIRM)
        self._held = True

    # ---- operator -------------------------------------------------------------------
    def ack(self):
        cleared = self.safety.ack()
        return cleared

    def confirm(self):
        if not self.safety.confirm():
            return False
        self.fault = None
        return True

    def set_manual(self, on):
        self.safety.set_manual(on)

    def abort_swap(self, now):
        """Operator took the vehicle out by hand: close the record as failed."""
        if self.swap is None or not (self.safety.hold & (sf.CONFIRM | sf.MANUAL)):
            return False
        self._end(now, "failed")
        return True

    # ---- sequence -------------------------------------------------------------------
    def _guarded(self):
        return self._guard and self.step != RELEASE and self.step != IDLE

    def _alarm(self, code, detail):
        self.emit("alarm", code, detail)

    def _fresh(self):
        return self.di_gen == self.gen and self.written == self.gen

    def _fresh_ir(self):
        self.need_ir = True
        return self.ir_gen == self.gen and self.written == self.gen

    def update(self, now):
        """Advance the sequence on the latest inputs and recompute the outputs."""
        di = self.di
        new = self.safety.sense(
            di[rm.BAY_DI_ESTOP_OK], di[rm.BAY_DI_DOOR_CLOSED], di[rm.BAY_DI_CURTAIN_CLEAR],
            di[rm.BAY_DI_SMOKE_CLEAR], di[rm.BAY_DI_MANUAL_MODE], self._guarded(),
        )
        if new:
            for b, n in sf.NAMES:
                if new & b:
                    self._alarm(n, None)
        self.need_ir = False
        if not self.safety.motion_allowed():
            self._stopped()
        else:
            if self._held:
                # Resume: send this step's outputs first; its sensors are judged only
                # once they have seen them.
                self._held = False
                self._restart_timer(now)
                self._outputs()
                return
            if self.swap is None:
                self._idle(now)
            else:
                self._run(now)
        self._outputs()

    def _stopped(self):
        if not self._held and self.coils[rm.BAY_CO_TOOL_BOLT] | self.coils[rm.BAY_CO_TOOL_UNBOLT]:
            self._cut = True  # the run's angle is incomplete
        self._held = True

    def _restart_timer(self, now):
        if self.step >= 0:
            self._deadline = ticks_add(now, self.timeouts[self.step])

    def _idle(self, now):
        if not self.di[rm.BAY_DI_VEHICLE_PRESENT] and not self.queue:
            return
        self.swap = Swap(now)
        self._start_plan(P_SWAP, now)

    def start_isolation(self, slot, now):
        """Carry the pack in ``slot`` to the isolation bay; only while the bay is empty."""
        if self.swap is not None or self.di[rm.BAY_DI_VEHICLE_PRESENT] or not self.safety.motion_allowed():
            return False
        s = self.swap = Swap(now)
        s.fetch_slot = slot
        s.store_slot = self.isolation_target
        self.plan = P_ISOLATE
        self._begin()
        self._start_plan(P_ISOLATE, now)
        return True

    def _begin(self):
        self.swap.begun = True
        self.emit("begin", self.swap, None)

    def _start_plan(self, plan, now):
        self.plan = plan
        self.pi = 0
        self._enter(PLANS[plan][0], now)

    def _enter(self, step, now):
        self.step = step
        self.sub = 0
        self._retry = 0
        self._cut = False
        for i in range(rm.BOLT_MAX):
            self._angle[i] = 0
        self._t_step = now
        self._deadline = ticks_add(now, self.timeouts[step])
        if step == LOWER:
            self._rgv_hold = 0 if self.di[rm.BAY_DI_RGV_DOWN] else 1
        elif step == RELEASE:
            self._guard = False
        if self.swap.begun:
            # Journalled at the start so a restart resumes exactly this step of this plan.
            self.emit("step", self.swap, None)

    def _run(self, now):
        step = self.step
        if self._needs_guard(step) and not self._guard:
            # Close the entry door before anything moves.
            if self._fresh() and self.di[rm.BAY_DI_DOOR_CLOSED]:
                self._guard = True
            elif ticks_diff(now, self._deadline) >= 0:
                self._fail(now, "door not closed")
            return
        r = _STEPS[step](self, now)
        if r is True:
            self._done(now)
        elif r is not None:
            self._fail(now, r)
        elif ticks_diff(now, self._deadline) >= 0:
            self._fail(now, "timeout")

    def _needs_guard(self, step):
        return (LIFT <= step <= LOWER) or self.plan == P_ISOLATE

    def _done(self, now):
        s = self.swap
        s.step_ms[self.step] = ticks_diff(now, self._t_step)
        if self.step == AUTHORISE and self.plan == P_SWAP:
            self._begin()  # a swap exists from here: vehicle admitted, charged pack reserved
        plan = PLANS[self.plan]
        self.pi += 1
        if self.pi >= len(plan):
            self._finish(now)
        else:
            self._enter(plan[self.pi], now)

    def _finish(self, now):
        if self.plan == P_ISOLATE:
            out = "isolated"
        elif self.plan == P_REJECT:
            out = "rejected"
        elif self.plan == P_SWAP:
            out = "ok"
        else:
            out = "aborted"
        self._end(now, out)

    def _end(self, now, outcome):
        s = self.swap
        s.ms = ticks_diff(now, s.t0)
        self._unreserve()
        self.emit("end", s, outcome)
        if outcome == "ok":
            self.swaps_ok += 1
            self.last_swap_ms = s.ms
            self.last_step_ms = s.step_ms
        elif self.plan != P_ISOLATE:
            self.swaps_other += 1
        self.swap = None
        self.step = IDLE
        self.plan = P_SWAP
        self._guard = False
        self.fault = None

    def _fail(self, now, why):
        s = self.swap
        step = self.step
        s.step_ms[step] = ticks_diff(now, self._t_step)
        self._alarm("step_failed", SWAP_STEPS[step] + ": " + why)
        plan = self.plan
        nxt = -1
        if plan == P_SWAP and step <= AUTHORISE:
            nxt = P_REJECT
            s.why = why
        elif plan == P_SWAP and (step <= LIFT or (step == UNBOLT and self.sub == 0)):
            nxt = P_ABORT
        elif plan == P_SWAP and step == UNBOLT:
            nxt = P_REBOLT  # bolts were turned: secure the vehicle's own pack again
        elif plan == P_SWAP and step in (BOLT, VERIFY) and s.own_slot >= 0:
            # The new pack does not work in this car: put it back into its slot, marked
            # faulty, and reinstall the vehicle's own pack (it drove in with it).
            self.rack.set_fault(s.fetch_slot, why)
            s.store_slot = s.fetch_slot
            s.fetch_slot = s.own_slot
            s.attempt += 1
            nxt = P_RESWAP
        if nxt >= 0:
            if nxt != P_RESWAP:
                self._unreserve()
            self._start_plan(nxt, now)
            return
        # No automatic way out: stop and wait for an operator.
        self.fault = SWAP_STEPS[step] + ": " + why
        self._alarm("operator", self.fault)
        self.safety.trip(sf.CONFIRM)
        self._held = True

    # ---- outputs --------------------------------------------------------------------
    def _outputs(self):
        img = self._img
        hold = self.safety.hold
        if hold == 0:
            self._image(img)
        elif hold & ~(sf.MANUAL | sf.CONFIRM) == 0 and hold & sf.MANUAL:
            img[:] = self.jog
        else:
            img[:] = self.coils
            for c in _RUN:
                img[c] = 0
            for c in _BEACONS:
                img[c] = 0
            img[rm.BAY_CO_BEACON_RED] = 1
        smoke = self.safety.smoke_live or (hold & sf.SMOKE)
        img[rm.BAY_CO_VENTILATION] = 1 if smoke else 0
        if img != self.coils:
            self.coils[:] = img
            self.gen += 1

    def _set_hr(self, i, v):
        if self.hr[i] != v:
            self.hr[i] = v
            self.gen += 1

    def _image(self, img):
        for i in range(len(img)):
            img[i] = 0
        step = self.step
        sub = self.sub
        if step == IDLE:
            img[rm.BAY_CO_DOOR_OPEN] = 1
            img[rm.BAY_CO_BEACON_GREEN] = 1
            return
        if step == RELEASE:
            if sub == 1:
                img[rm.BAY_CO_EXIT_OPEN] = 1
                img[rm.BAY_CO_BEACON_GREEN] = 1
            else:
                img[rm.BAY_CO_BEACON_AMBER] = 1
            return
        if step <= AUTHORISE:
            img[rm.BAY_CO_BEACON_AMBER] = 1
            return
        if step == POSITION and sub == 0:
            img[rm.BAY_CO_DOOR_OPEN] = 1
            img[rm.BAY_CO_BEACON_GREEN] = 1
            return
        img[rm.BAY_CO_BEACON_AMBER] = 1
        if self.plan == P_ISOLATE:
            img[rm.BAY_CO_PACK_GRIP] = 1
        elif step > POSITION or sub == 2:
            img[rm.BAY_CO_POSITIONER] = 1
        if step == LIFT:
            img[rm.BAY_CO_LIFT_UP] = 1
        elif step == UNBOLT:
            img[rm.BAY_CO_RGV_RAISE] = 1
            if sub == 1:
                img[rm.BAY_CO_TOOL_UNBOLT] = 1
        elif step == REMOVE:
            img[rm.BAY_CO_PACK_GRIP] = 1
            img[rm.BAY_CO_RGV_RAISE] = 1 if sub == 0 else 0
        elif step == STORE:
            img[rm.BAY_CO_PACK_GRIP] = 0 if sub == 2 else 1
            img[rm.BAY_CO_CARRIER_TO_RACK] = 1 if sub >= 1 else 0
        elif step == FETCH:
            img[rm.BAY_CO_PACK_GRIP] = 1
            img[rm.BAY_CO_CARRIER_TO_BAY] = 1 if sub >= 1 else 0
        elif step == INSTALL or step == VERIFY:
            img[rm.BAY_CO_PACK_GRIP] = 1
            img[rm.BAY_CO_RGV_RAISE] = 1
        elif step == BOLT:
            img[rm.BAY_CO_PACK_GRIP] = 1
            img[rm.BAY_CO_RGV_RAISE] = 1
            # sub 0 dock run, 1 tool off, 2 lock run
            img[rm.BAY_CO_TOOL_BOLT] = 1 if sub != 1 else 0
            img[rm.BAY_CO_TOOL_LOCK_SPEED] = 1 if sub >= 1 else 0
        elif step == LOWER:
            img[rm.BAY_CO_RGV_RAISE] = self._rgv_hold if sub == 0 else 0
            img[rm.BAY_CO_LIFT_DOWN] = 1 if sub == 2 else 0

    def _unreserve(self):
        s = self.swap
        if s.reserved:
            s.reserved = False
            self.rack.release(s.fetch_slot)


# ---- the steps: each returns None (running), True (done) or a failure reason ---------
def _identify(b, now):
    s = b.swap
    if b.queue:
        v = b.queue.pop(0)
        s.vehicle, s.model, s.pack, s.ptype, s.soc, s.subscribed = v
        return True
    if not b.di[rm.BAY_DI_VEHICLE_PRESENT]:
        return None
    if not b._fresh_ir():
        return None
    ir = b.ir
    st = ir[rm.BAY_IR_ID_STATUS]
    seq = ir[rm.BAY_IR_ID_SEQ]
    if st == rm.ID_UNKNOWN:
        return "unknown tag"
    if st != rm.ID_VALID or seq == b.last_id_seq:
        return None
    b.last_id_seq = seq
    s.vehicle = str(rm.u32(ir[rm.BAY_IR_VEHICLE_ID_HI], ir[rm.BAY_IR_VEHICLE_ID_LO]))
    s.model = b.model_codes.get(ir[rm.BAY_IR_VEHICLE_MODEL])
    s.pack = rm.u32(ir[rm.BAY_IR_PACK_ID_HI], ir[rm.BAY_IR_PACK_ID_LO])
    s.ptype = b.pack_codes.get(ir[rm.BAY_IR_PACK_TYPE])
    s.subscribed = True  # the reader reports VALID only for registered tags/plates
    return True


def _authorise(b, now):
    s = b.swap
    if s.vehicle not in b.allow and not (b.subscription and s.subscribed):
        return "not authorised"
    types = b.cfg["compatibility"].get(s.model)
    if types is None:
        return "unknown model"
    if s.ptype not in types:
        return "pack type not compatible"
    free = b.rack.free_slot()
    if free is None:
        return None  # the carrier needs an empty slot for the pack coming out
    if not s.reserved:
        slot = b.rack.reserve_for(s.model, now)
        if slot is None:
            return None  # wait for a charged pack until the step times out
        s.fetch_slot = slot
        s.reserved = True
    s.store_slot = free
    return True


def _position(b, now):
    di = b.di
    if not b._fresh():
        return None
    if b.sub == 0:  # entry open: a queued vehicle drives in now
        if di[rm.BAY_DI_VEHICLE_PRESENT]:
            b.sub = 1
        return None
    if b.sub == 1:  # entry closed behind it before anything moves
        if di[rm.BAY_DI_DOOR_CLOSED]:
            b._guard = True
            b.sub = 2
        return None
    if di[rm.BAY_DI_VEHICLE_POSITIONED]:
        return True
    return None


def _lift(b, now):
    if b._fresh() and b.di[rm.BAY_DI_LIFT_UP]:
        return True
    return None


def _bolt_window(b, i, torque_lo, torque_hi, angle):
    t = b.ir[rm.BAY_IR_TORQUE_BASE + i] / 10
    if not (torque_lo <= t <= torque_hi):
        return "bolt %d torque %.1f" % (i + 1, t)
    if angle is not None and not (b.angle[0] <= angle <= b.angle[1]):
        return "bolt %d angle %d" % (i + 1, angle)
    return None


def _unbolt(b, now):
    di = b.di
    if b.sub == 0:
        if b._fresh() and di[rm.BAY_DI_RGV_UP]:
            b.sub = 1
        return None
    if not b._fresh() or di[rm.BAY_DI_TOOL_BUSY]:
        return None
    for i in range(b.bolts):
        if not di[rm.BAY_DI_BOLT_RELEASED_BASE + i]:
            return "bolt %d not released" % (i + 1)
    if b.plan == P_RESWAP:
        return True  # taking out a pack that failed bolting: its bolts are in no known state
    if not b._fresh_ir():
        return None
    lo = b.torque[0] * _BREAKAWAY_LO
    hi = b.torque[1] * _BREAKAWAY_HI
    for i in range(b.bolts):
        why = _bolt_window(b, i, lo, hi, None if b._cut else b.ir[rm.BAY_IR_ANGLE_BASE + i])
        if why:
            return why
    return True


def _remove(b, now):
    di = b.di
    if not b._fresh():
        return None
    if b.sub == 0:
        if di[rm.BAY_DI_PACK_GRIPPED]:
            b.sub = 1
        return None
    if di[rm.BAY_DI_RGV_DOWN] and di[rm.BAY_DI_PACK_ON_CARRIER] and not di[rm.BAY_DI_PACK_SEATED]:
        return True
    return None


def _target(b, slot):
    """Set the carrier target register; True once the module has it."""
    b._set_hr(0, slot)
    return b._fresh()


def _store(b, now):
    s = b.swap
    di = b.di
    if b.sub == 0:
        if _target(b, s.store_slot):
            b.sub = 1
        return None
    if not b._fresh() or not di[rm.BAY_DI_CARRIER_AT_RACK]:
        return None
    if b.sub == 1:
        b.sub = 2  # at the slot: open the grip, the rack takes the pack
        return None
    if di[rm.BAY_DI_PACK_ON_CARRIER]:
        return None
    if b.plan == P_ISOLATE:
        b.rack.to_isolation(s.new_pack, now)
        return True
    if not b.rack.holds(s.store_slot, s.pack if b.plan == P_SWAP else s.new_pack):
        return None  # until that slot's charger reports the pack
    if b.plan == P_SWAP:
        s.own_slot = s.store_slot
    return True


def _fetch(b, now):
    s = b.swap
    di = b.di
    if b.sub == 0:
        if _target(b, s.fetch_slot):
            b.sub = 1
        return None
    if b._fresh() and di[rm.BAY_DI_CARRIER_AT_BAY] and di[rm.BAY_DI_PACK_ON_CARRIER]:
        s.new_pack = b.rack.take(s.fetch_slot, now)
        s.reserved = False
        return True
    return None


def _install(b, now):
    if b._fresh() and b.di[rm.BAY_DI_RGV_UP] and b.di[rm.BAY_DI_PACK_SEATED]:
        return True
    return None


def _bolt(b, now):
    di = b.di
    if not b._fresh() or di[rm.BAY_DI_TOOL_BUSY]:
        return None
    if b.sub == 0:  # run-down at docking speed ended at snug torque
        b.sub = 1
        return None
    if b.sub == 1:  # tool coil off so the locking run starts on a fresh edge
        b.sub = 2
        return None
    if not b._fresh_ir():
        return None
    # Torque control with angle monitoring: the angle is the one turned from snug to
    # final torque, summed over re-runs; unknown if a stop cut a run short, and
    # meaningless when re-securing the vehicle's own part-loosened pack.
    judge = not b._cut and b.plan != P_REBOLT
    why = None
    for i in range(b.bolts):
        b._angle[i] += b.ir[rm.BAY_IR_ANGLE_BASE + i]
        if why is None:
            if not di[rm.BAY_DI_BOLT_TORQUE_OK_BASE + i]:
                why = "bolt %d torque not ok" % (i + 1)
            else:
                why = _bolt_window(b, i, b.torque[0], b.torque[1], b._angle[i] if judge else None)
    if why is None:
        return True
    if b._retry < _RETRIES_BOLT:
        b._retry += 1
        b._alarm("bolt_retry", why)
        b.sub = 1
        return None
    return why


def _verify(b, now):
    if b._fresh() and b.di[rm.BAY_DI_ELECTRICAL_OK]:
        return True
    return None


def _lower(b, now):
    di = b.di
    if not b._fresh():
        return None
    if b.sub == 0:
        if not di[rm.BAY_DI_PACK_GRIPPED]:
            b.sub = 1
        return None
    if b.sub == 1:
        if di[rm.BAY_DI_RGV_DOWN]:
            if di[rm.BAY_DI_PACK_ON_CARRIER] and b.plan != P_ABORT:
                return "pack came down with the platform"
            b.sub = 2
        return None
    if di[rm.BAY_DI_LIFT_DOWN]:
        return True
    return None


def _release(b, now):
    di = b.di
    if not b._fresh():
        return None
    if b.sub == 0:
        if di[rm.BAY_DI_POSITIONER_OPEN]:
            b.sub = 1
        return None
    if not di[rm.BAY_DI_VEHICLE_PRESENT]:
        return True
    return None


_STEPS = (_identify, _authorise, _position, _lift, _unbolt, _remove, _store, _fetch, _install,
          _bolt, _verify, _lower, _release)
