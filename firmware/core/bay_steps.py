"""Swap-bay steps and plans (see bay.py). Each step function takes the ``Bay``
and ``now_ms`` and returns None (running), True (done) or a failure reason; it
judges only sensors that saw its own outputs (``Bay._fresh``). The bay's output
image for each step and sub-phase is ``image``."""

from firmware.compat import const, ticks_add, ticks_diff
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
    (FETCH, STORE, FETCH),  # the last "fetch" brings the empty carrier home (BAY_CO_CARRIER_HOME)
)
PLAN_NAMES = ("swap", "reject", "abort", "rebolt", "reswap", "isolate")

# Coils that run a drive; a stop forces them to 0. The others (positioner, platform,
# grip, doors) command a position: 0 is itself a motion (retract, lower, close), so a
# stop holds them as they were and the bay's safety relay cuts their drives.
RUN = (rm.BAY_CO_LIFT_UP, rm.BAY_CO_LIFT_DOWN, rm.BAY_CO_TOOL_UNBOLT, rm.BAY_CO_TOOL_BOLT,
        rm.BAY_CO_CARRIER_TO_RACK, rm.BAY_CO_CARRIER_TO_BAY, rm.BAY_CO_CARRIER_HOME)
BEACONS = (rm.BAY_CO_BEACON_GREEN, rm.BAY_CO_BEACON_AMBER, rm.BAY_CO_BEACON_RED)

RETRIES_BOLT = const(1)  # extra locking runs before bolting counts as failed


# Preconditions a step assumes of the machine: each a level output and the sensor that
# proves it. After a hold that may have let outputs drop (power loss: the module's comm
# watchdog drops every coil; lost module; manual mode; a fault) a step re-establishes
# them one at a time, in order, each checked by its sensor, before it runs (``resume``).
PRE_CLAMP = const(0)  # vehicle held by the positioner
PRE_LIFT = const(1)  # lift up
PRE_AT_PACK = const(2)  # platform up at the vehicle's pack
PRE_DOWN = const(3)  # platform down: the carrier moves only below it
PRE_GRIP = const(4)  # pack gripped
PRE_COIL = (rm.BAY_CO_POSITIONER, rm.BAY_CO_LIFT_UP, rm.BAY_CO_RGV_RAISE, rm.BAY_CO_RGV_RAISE,
            rm.BAY_CO_PACK_GRIP)
PRE_ON = (1, 1, 1, 0, 1)
PRE_DI = (rm.BAY_DI_VEHICLE_POSITIONED, rm.BAY_DI_LIFT_UP, rm.BAY_DI_RGV_UP, rm.BAY_DI_RGV_DOWN,
          rm.BAY_DI_PACK_GRIPPED)
PRE_NAMES = ("vehicle clamped", "lift up", "platform up", "platform down", "pack gripped")
_PRE_NONE = ()
_PRE_CLAMP = (PRE_CLAMP,)
_PRE_UNBOLT = (PRE_CLAMP, PRE_LIFT)
_PRE_REMOVE = (PRE_CLAMP, PRE_LIFT, PRE_AT_PACK)  # at the pack before the grip closes
_PRE_CARRY = (PRE_CLAMP, PRE_DOWN, PRE_GRIP)
_PRE_ISOLATE = (PRE_DOWN, PRE_GRIP)
_PRE_SEATED = (PRE_CLAMP, PRE_LIFT, PRE_AT_PACK, PRE_GRIP)  # pack in the vehicle: reach it, then grip
_PRE_ON_PLATFORM = (PRE_CLAMP, PRE_LIFT, PRE_GRIP, PRE_AT_PACK)  # pack on the platform: grip, then raise


def preconditions(b):
    """What ``b``'s step assumes, in the order a resume re-establishes it (``PRE_*``)."""
    step = b.step
    if b.plan == P_ISOLATE:
        return _PRE_ISOLATE
    if step <= POSITION or step == RELEASE:
        return _PRE_NONE
    if step == LIFT:
        return _PRE_CLAMP
    if step == LOWER:  # a vehicle already down needs no clamp (positioning may be what failed)
        return _PRE_NONE if b.di[rm.BAY_DI_LIFT_DOWN] else _PRE_CLAMP
    if step == UNBOLT:
        return _PRE_UNBOLT
    if step == REMOVE:
        return _PRE_REMOVE
    if step == STORE or step == FETCH:
        return _PRE_CARRY
    # install, bolt, verify: where the pack is decides whether the grip or the platform goes first
    return _PRE_SEATED if b.di[rm.BAY_DI_PACK_SEATED] else _PRE_ON_PLATFORM


def resume(b):
    """One cycle of re-establishing the step's preconditions: True once all hold (the
    step then runs from its beginning), else None. ``b._pre`` is the index of the first
    one not yet proven; ``image`` commands those up to it and holds the rest as they are."""
    if not b._fresh():
        return None
    pre = preconditions(b)
    di = b.di
    coils = b.coils
    for i in range(len(pre)):
        p = pre[i]
        done = di[PRE_DI[p]] == 1
        if p != PRE_LIFT:  # a level output counts once it is commanded too; the lift holds by itself
            done = done and coils[PRE_COIL[p]] == PRE_ON[p]
        if not done:
            b._pre = i
            return None
    return True


def held_image(b, img, beacon):
    """The outputs as they are, drives off, one beacon."""
    img[:] = b.coils
    for c in RUN:
        img[c] = 0
    for c in BEACONS:
        img[c] = 0
    img[beacon] = 1


def _resume_image(b, img):
    """Outputs while a step re-establishes its preconditions: what the module holds, drives
    off, plus the preconditions proven so far and the next one."""
    held_image(b, img, rm.BAY_CO_BEACON_AMBER)
    img[rm.BAY_CO_DOOR_OPEN] = 0
    img[rm.BAY_CO_EXIT_OPEN] = 0
    if b._pre < 0:
        return
    pre = preconditions(b)
    for i in range(min(b._pre + 1, len(pre))):
        p = pre[i]
        img[PRE_COIL[p]] = PRE_ON[p]


def _homing(b):
    """The isolation plan's last "fetch": the empty carrier goes home."""
    return b.plan == P_ISOLATE and b.pi == 2


def image(b, img):
    """The coils this step and sub-phase command (no stop applied)."""
    if b._resuming:
        _resume_image(b, img)
        return
    for i in range(len(img)):
        img[i] = 0
    step = b.step
    sub = b.sub
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
    if b.plan == P_ISOLATE:
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
        img[rm.BAY_CO_CARRIER_HOME if _homing(b) else rm.BAY_CO_CARRIER_TO_BAY] = 1 if sub >= 2 else 0
    elif step == INSTALL or step == VERIFY:
        img[rm.BAY_CO_PACK_GRIP] = 1
        img[rm.BAY_CO_RGV_RAISE] = 1
    elif step == BOLT:
        img[rm.BAY_CO_PACK_GRIP] = 1
        img[rm.BAY_CO_RGV_RAISE] = 1
        # sub 0 platform up, 1 dock run, 2 tool off, 3 lock run
        img[rm.BAY_CO_TOOL_BOLT] = 1 if sub == 1 or sub == 3 else 0
        img[rm.BAY_CO_TOOL_LOCK_SPEED] = 1 if sub >= 2 else 0
    elif step == LOWER:
        img[rm.BAY_CO_RGV_RAISE] = b._rgv_hold if sub == 0 else 0
        img[rm.BAY_CO_LIFT_DOWN] = 1 if sub == 2 else 0


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
    s.subscribed = bool(ir[rm.BAY_IR_ID_FLAGS] & rm.ID_FLAG_SUBSCRIBED)
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
    if not b.carrier_home():
        return None
    if not s.reserved:
        slot = b.rack.reserve_for(s.model, now)
        if slot is None:
            # The vehicle waits for a charged pack up to bay.pack_wait_ms (nothing moves
            # meanwhile), then for the step's own timeout.
            if ticks_diff(now, b._t_step) < b.pack_wait:
                b._deadline = ticks_add(now, b.timeouts[AUTHORISE])
                return None
            return "no charged pack" if ticks_diff(now, b._deadline) >= 0 else None
        s.fetch_slot = slot
        s.reserved = True
    s.store_slot = free
    s.new_pack = b.rack.pack[s.fetch_slot]
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
    if b.plan == P_RESWAP or b._cut:
        # A pack that failed bolting, or a run cut short: the bolts' state before this
        # run is unknown, so its breakaway torque and angle prove nothing.
        return True
    if not b._fresh_ir():
        return None
    lo, hi = b.breakaway
    for i in range(b.bolts):
        why = _bolt_window(b, i, lo, hi, b.ir[rm.BAY_IR_ANGLE_BASE + i])
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
    """Set the carrier target register: True once the module has it, a reason if it
    refused the value, else None."""
    b._set_hr(0, slot)
    if b.hr_refused == slot:
        return "carrier target %d refused" % slot
    return True if b._fresh() else None


def _store(b, now):
    s = b.swap
    di = b.di
    if b.sub == 0:
        r = _target(b, s.store_slot)
        if r is True:
            b.sub = 1
            return None
        return r
    if not b._fresh() or not di[rm.BAY_DI_CARRIER_AT_RACK]:
        return None
    if b.sub == 1:
        b.sub = 2  # at the slot: open the grip, the rack takes the pack
        if b.plan != P_ISOLATE:
            b.rack.insert_pack(s.store_slot, s.pack if b.plan == P_SWAP else s.new_pack)
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
    home = _homing(b)
    if b.sub == 0:
        # Before the carrier takes a runaway pack, the module must accept the isolation
        # bay as a target (the register map defines only rack slots): else leave it be.
        r = _target(b, s.store_slot) if b.plan == P_ISOLATE and b.pi == 0 else True
        if r is True:
            b.sub = 1
            return None
        return r
    if b.sub == 1:
        r = True if home else _target(b, s.fetch_slot)  # CARRIER_HOME needs no target
        if r is True:
            b.sub = 2
            return None
        return r
    if not b._fresh() or not di[rm.BAY_DI_CARRIER_AT_BAY]:
        return None
    if home:
        return None if di[rm.BAY_DI_PACK_ON_CARRIER] else True
    if di[rm.BAY_DI_PACK_ON_CARRIER]:
        if s.new_pack is None or b.rack.holds(s.fetch_slot, s.new_pack):
            # The rack may already know from the charger that the slot is empty.
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
    if b.sub == 0:  # platform (and its nutrunners) up at the seated pack
        if di[rm.BAY_DI_RGV_UP] and di[rm.BAY_DI_PACK_SEATED]:
            b.sub = 1
        return None
    if b.sub == 1:  # run-down at docking speed ended at snug torque
        b.sub = 2
        return None
    if b.sub == 2:  # tool coil off so the locking run starts on a fresh edge
        b.sub = 3
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
    if b._retry < RETRIES_BOLT:
        b._retry += 1
        b._alarm("bolt_retry", why)
        b.sub = 2
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


STEPS = (_identify, _authorise, _position, _lift, _unbolt, _remove, _store, _fetch, _install,
          _bolt, _verify, _lower, _release)
