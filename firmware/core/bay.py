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
  step, or clears the bay by hand (manual recovery, docs/operations.md) and
  ``abort_swap`` closes the swap record as failed: refused until the sensors read
  the bay clear (``not_clear``).
``P_ISOLATE`` carries a quarantined pack to the isolation bay while the bay is empty.

Safety (``firmware.core.safety``): any latched stop turns the run outputs off in
the same ``update`` that sees it; positions (positioner, platform, grip) are held
because dropping those coils would itself move them. The step timer restarts
when the stop is cleared; the sub-phase is re-commanded from where it stopped.
After a hold that needs ``confirm`` (power loss, a silent module, manual mode, a
fault) nothing the outputs did meanwhile is assumed: the step first re-establishes
its preconditions in order, each proven by its sensor (``bay_steps.preconditions``),
then runs from its beginning. Manual mode starts from the held outputs, drives off.

Identity: primary path is the reader in the module's input registers
(``ID_STATUS`` valid with a new ``ID_SEQ``); ``offer_identity`` queues an identity
for scenario drivers whose plant has no reader. The register path decodes the
vehicle id as a decimal string and the model / pack type codes through
``model_codes`` / ``pack_codes`` (code -> config name; default: the config's
``model_by_code`` / ``pack_type_by_code``).

Events go out through ``emit(kind, a, b)`` for the supervisor to journal:
``("begin", swap, None)`` once the vehicle is authorised and a charged pack reserved
(or an isolation move starts; the handler sets ``swap.n``), ``("step", swap, None)``
at the start of every later step (``bay.plan``/``bay.step`` name it, so a restart
resumes exactly there), ``("end", swap, outcome)`` with ``swap.ms`` and
``swap.step_ms``, ``("alarm", code, detail)`` for events (a failed step, a bolt
re-run, an operator hold with its reason); hold reasons themselves are the bit set
``safety.hold``, for the supervisor to journal as they come and go. Outcomes: ok, rejected (no motion),
aborted (the vehicle leaves with its own pack), failed (closed by an operator),
isolated.

The rack port (``rack``) answers: ``reserve_for(model, now)`` -> slot or None,
``reserve_slot(slot)``, ``release(slot)``, ``free_slot()`` -> slot or None,
``holds(slot, pack)`` (that slot's charger reports that pack), ``insert_pack(slot,
pack)`` (the carrier is handing it over), ``take(slot, now)``
-> serial of the pack the carrier took, ``set_fault(slot, why)``,
``to_isolation(pack, now)``, and the array ``pack[slot]`` (serial or None).
"""

from firmware.compat import ticks_add, ticks_diff
from firmware.core import safety as sf
from firmware.core.bay_steps import (  # noqa: F401  (re-exported: the bay's step and plan names)
    AUTHORISE,
    BEACONS,
    BOLT,
    FETCH,
    IDENTIFY,
    IDLE,
    INSTALL,
    LIFT,
    LOWER,
    P_ABORT,
    P_ISOLATE,
    P_REBOLT,
    P_REJECT,
    P_RESWAP,
    P_SWAP,
    PLAN_NAMES,
    PLANS,
    POSITION,
    PRE_NAMES,
    RELEASE,
    REMOVE,
    RUN,
    STEP_COUNT,
    STEPS,
    STORE,
    UNBOLT,
    VERIFY,
    held_image,
    image,
    preconditions,
    resume,
)
from firmware.core.config import SWAP_STEPS  # noqa: F401  (re-exported)
from firmware.proto import regmap as rm


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
        self.soc = None  # of the vehicle's pack, if the identity carried it
        self.soc_new = None  # of the pack to install, when reserved
        self.soc_out = None  # of the vehicle's pack, first read in the rack (the supervisor's)
        self.kwh_new = 0  # capacity of that pack's type
        self.subscribed = False
        self.why = None  # reason of a rejection
        self.fetch_slot = -1  # slot of the pack going into the vehicle
        self.store_slot = -1  # slot receiving the pack coming out
        self.own_slot = -1  # where the vehicle's own pack went
        self.new_pack = None
        self.reserved = False  # fetch_slot holds a reservation for this vehicle
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
        bw = bay.get("breakaway_nm")  # loosening torque window: looser was loose, tighter is seized
        self.breakaway = bw if bw else (self.torque[0] * 0.5, self.torque[1] * 1.5)
        self.pack_wait = bay.get("pack_wait_ms", 0)
        self.isolation_target = len(cfg["slots"])  # carrier target for the isolation bay
        # code -> config name; a code the config does not know is no model / pack type.
        self.model_codes = model_codes or cfg.get("model_by_code") or {}
        self.pack_codes = pack_codes or cfg.get("pack_type_by_code") or {}
        auth = cfg["authorisation"]
        self.allow = auth["allow"]
        self.subscription = auth["subscription"]
        self.safety = sf.Safety(cfg["limits"]["runaway"]["smoke_latch"])
        # Inputs (from the supervisor)
        self.di = bytearray(rm.BAY_DI_COUNT)
        self.ir = [0] * rm.BAY_IR_COUNT
        self.di_gen = -1  # output generation those sensors saw
        self.ir_gen = -1
        # Outputs
        self.coils = bytearray(rm.BAY_COIL_COUNT)
        # target slot, torque 0.1 N*m, docking and locking rpm (BAY_HR_* order, watchdog aside)
        self.hr = [0, int((self.torque[0] + self.torque[1]) * 5), int(bay["docking_rpm"] + 0.5),
                   int(bay["locking_rpm"] + 0.5)]
        self._img = bytearray(rm.BAY_COIL_COUNT)
        self.jog = bytearray(rm.BAY_COIL_COUNT)  # manual-mode outputs set by the operator
        self.gen = 0
        self.written = -1  # generation the module has acknowledged
        self.hr_refused = None  # target slot value the module answered with an exception
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
        self._resuming = False  # re-establishing the step's preconditions (bay_steps.resume)
        self._pre = -1  # index of the first precondition not proven yet (-1: none commanded)
        self._jogging = False  # ``jog`` holds the manual-mode outputs
        self._retry = 0
        self._angle = [0] * rm.BOLT_MAX  # locking angle per bolt, summed over re-runs
        self._cut = False  # a stop cut a tool run short: its angle (unbolting: torque) tells nothing
        self.fault = None
        self.last_id_seq = None
        self.queue = []  # identities offered by scenario drivers
        self.swaps_ok = 0
        self.swaps_other = 0
        self.last_swap_ms = 0
        self.last_step_ms = None

    # ---- supervisor side ------------------------------------------------------------
    def set_inputs(self, di, ir=None):
        """Sensor image just read (FC02 values, optionally FC04 values). It counts as
        seen by output generation ``self.written``: report every acknowledged output
        write (``outputs_written``) before the reads that followed it on the bus."""
        for i in range(min(len(di), rm.BAY_DI_COUNT)):
            self.di[i] = 1 if di[i] else 0
        self.di_gen = self.written
        if ir is not None:
            for i in range(min(len(ir), rm.BAY_IR_COUNT)):
                self.ir[i] = ir[i]
            self.ir_gen = self.written

    def adopt(self, coils):
        """Boot: take the module's present coils as the held image, so nothing that is
        in position is commanded elsewhere; run coils drop."""
        for i in range(rm.BAY_COIL_COUNT):
            self.coils[i] = 1 if coils[i] else 0
        self._outputs()
        self.gen += 1  # write it back even if nothing changed

    def outputs_written(self, gen):
        self.written = gen

    def comms(self, online):
        if not online:
            # The module drops every coil once its comm watchdog runs out: that, not the
            # image last sent, is what it holds when it answers again.
            for i in range(rm.BAY_COIL_COUNT):
                self.coils[i] = 0
            self.gen += 1
        self.safety.comms(online, self._guarded())

    def estop_pin(self, ok):
        """Controller's own e-stop input: checked every tick, acts at once."""
        if self.safety.pin(ok):
            self._stopped()
            self._outputs()

    def offer_identity(self, vehicle, model, pack, ptype, soc=None, subscribed=False):
        self.queue.append((vehicle, model, pack, ptype, soc, subscribed))

    def carrier_home(self):
        """The carrier waits at the bay, empty: where a swap needs it."""
        return self.di[rm.BAY_DI_CARRIER_AT_BAY] and not self.di[rm.BAY_DI_PACK_ON_CARRIER]

    def restore(self, n, plan, step, t0, vehicle, model, pack, fetch_slot, store_slot, new_pack):
        """Take back the swap a power loss interrupted, from its last journal record
        (``plan``/``step`` names as journalled at the step's start). The bay stays held
        until an operator confirms; then that step re-establishes its preconditions and
        runs again from its beginning, its sensors telling what is already done."""
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
        if p in (P_SWAP, P_RESWAP) and st <= FETCH and s.fetch_slot >= 0:
            s.reserved = self.rack.reserve_slot(s.fetch_slot)
        self.plan = p
        self.pi = PLANS[p].index(st)
        self.step = st
        self.sub = 0
        self._cut = True  # a tool run the outage cut short tells nothing by its angle
        self._t_step = t0
        self.safety.trip(sf.CONFIRM)
        self._held = True

    def hold_fault(self, why):
        """Stop for an operator (a fault found outside the sequence, e.g. the journal)."""
        self.fault = why
        self._alarm("operator", why)
        self.safety.trip(sf.CONFIRM)
        self._stopped()

    # ---- operator -------------------------------------------------------------------
    def ack(self):
        return self.safety.ack()

    def confirm(self):
        """Operator confirms the bay's state. A held swap then resumes its step from the
        beginning, first re-establishing every precondition the step assumes (positions,
        grip) one at a time, each proven by its sensor: a power loss, a silent module
        (its comm watchdog drops every coil) or manual mode may have moved any of them."""
        if not self.safety.confirm():
            return False
        self.fault = None
        if self.swap is not None:
            self._resume_step()
        return True

    def _resume_step(self):
        self.sub = 0
        if self.step == POSITION:
            # Its first phase opens the entry for a car still outside. One already in keeps
            # the door closed behind it; opening it on the guarded bay would latch an
            # interlock that the open door then keeps from being acknowledged.
            if self.di[rm.BAY_DI_VEHICLE_PRESENT]:
                self.sub = 1
            else:
                self._guard = False
        self._retry = 0
        self._cut = True  # what a tool did before the hold is unknown
        for i in range(rm.BOLT_MAX):
            self._angle[i] = 0
        self._pre = -1
        self._resuming = len(preconditions(self)) > 0
        if self.step == LOWER:
            self._rgv_hold = 1 if self.di[rm.BAY_DI_RGV_UP] else 0

    def set_manual(self, on):
        self.safety.set_manual(on)

    def set_jog(self, coil, on):
        """Manual mode: set one output (jogs start from the outputs held when manual began)."""
        self._jog_start()
        self.jog[coil] = 1 if on else 0

    def _jog_start(self):
        if not self._jogging:
            self._jogging = True
            self.jog[:] = self.coils  # nothing moves on entering manual mode...
            for c in RUN:
                self.jog[c] = 0  # ...and no drive runs until jogged

    def in_step_ms(self, now):
        """How long the current step has run (ms), for a display; 0 outside a step."""
        return ticks_diff(now, self._t_step) if self.swap is not None and self.step >= 0 else 0

    def not_clear(self):
        """What the bay's sensors say is still in it (names; empty when the bay is clear):
        a vehicle, a raised lift or platform, a closed positioner, a running nutrunner."""
        di = self.di
        out = []
        if self.di_gen < 0 or self.safety.comms_lost:
            out.append("no sensor reading")
            return out
        if di[rm.BAY_DI_VEHICLE_PRESENT]:
            out.append("vehicle")
        if not di[rm.BAY_DI_LIFT_DOWN]:
            out.append("lift")
        if not di[rm.BAY_DI_RGV_DOWN]:
            out.append("platform")
        if not di[rm.BAY_DI_POSITIONER_OPEN]:
            out.append("positioner")
        if di[rm.BAY_DI_TOOL_BUSY]:
            out.append("nutrunners")
        return out

    def abort_swap(self, now):
        """Close a held swap as failed once the operator has cleared the bay by hand (manual
        recovery, docs/operations.md). Refused unless the bay holds for an operator and its
        sensors read clear (``not_clear``): a station never declares itself free with a
        vehicle or a raised platform in it. A carrier away from home keeps the bay held."""
        if self.swap is None or not (self.safety.hold & (sf.CONFIRM | sf.MANUAL)):
            return False
        if self.not_clear():
            return False
        self._end(now, "failed")
        if not self.carrier_home():
            self.hold_fault("carrier not home: bring it back in manual mode")
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
        self.safety.sense(
            di[rm.BAY_DI_ESTOP_OK], di[rm.BAY_DI_DOOR_CLOSED], di[rm.BAY_DI_CURTAIN_CLEAR],
            di[rm.BAY_DI_SMOKE_CLEAR], di[rm.BAY_DI_MANUAL_MODE], self._guarded(),
        )
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
        s.new_pack = self.rack.pack[slot]
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
        self._resuming = False
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
        if self._resuming:
            r = resume(self)
            if r is True:
                self._resuming = False
                self._restart_timer(now)  # the step's own time starts now
            elif ticks_diff(now, self._deadline) >= 0:
                p = preconditions(self)[max(self._pre, 0)]
                self._fail(now, "resume: " + PRE_NAMES[p] + " not reached")
            return
        r = STEPS[step](self, now)
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
        self._resuming = False
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
        elif plan == P_SWAP and (step <= LIFT or (step == UNBOLT and self.sub == 0 and not self._cut)):
            nxt = P_ABORT
        elif plan == P_SWAP and step == UNBOLT:
            nxt = P_REBOLT  # bolts were turned: secure the vehicle's own pack again
        elif plan == P_SWAP and step in (BOLT, VERIFY) and s.own_slot >= 0:
            # The new pack does not work in this car: put it back into its slot, marked
            # faulty, and reinstall the vehicle's own pack (it drove in with it).
            self.rack.set_fault(s.fetch_slot, why)
            s.store_slot = s.fetch_slot
            s.fetch_slot = s.own_slot
            nxt = P_RESWAP
        elif plan == P_ISOLATE and self.pi == 0 and self.sub <= 1 and not self._cut:
            self._end(now, "not_isolated")  # nothing moved: the pack stays quarantined in its slot
            return
        if nxt >= 0:
            if nxt != P_RESWAP:
                self._unreserve()
            self._start_plan(nxt, now)
            return
        # No automatic way out: stop and wait for an operator.
        self.hold_fault(SWAP_STEPS[step] + ": " + why)

    # ---- outputs --------------------------------------------------------------------
    def _outputs(self):
        img = self._img
        hold = self.safety.hold
        if hold & ~(sf.MANUAL | sf.CONFIRM) or not hold & sf.MANUAL:
            self._jogging = False
        if hold == 0:
            image(self, img)
        elif hold & ~(sf.MANUAL | sf.CONFIRM) == 0 and hold & sf.MANUAL:
            self._jog_start()
            img[:] = self.jog
        else:
            held_image(self, img, rm.BAY_CO_BEACON_RED)
        smoke = self.safety.smoke_live or (hold & sf.SMOKE)
        img[rm.BAY_CO_VENTILATION] = 1 if smoke else 0
        if img != self.coils:
            self.coils[:] = img
            self.gen += 1

    def _set_hr(self, i, v):
        if self.hr[i] != v:
            self.hr[i] = v
            self.gen += 1

    def _unreserve(self):
        s = self.swap
        if s.reserved:
            s.reserved = False
            self.rack.release(s.fetch_slot)


