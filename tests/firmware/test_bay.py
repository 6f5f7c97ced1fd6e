"""Swap-bay sequence against the plant's bay module (no bus): the normal swap, a
failure in every step and its way out, e-stop in every step, interlocks, manual mode."""

from bayrig import PARTNER_A_SUV, BayRig, station_cfg

from firmware.core import bay as B
from firmware.core import safety as sf
from firmware.proto import regmap as rm

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap

_LIMIT = 400000  # ms of virtual time any one scenario may take


def _rig(**kw):
    r = BayRig(**kw)
    r.confirm()  # boot holds until an operator confirms
    return r


def _until_step(r, step, sub=0):
    ok = r.run(_LIMIT, until=lambda r: r.bay.step == step and r.bay.sub >= sub)
    assert ok, ("never reached", B.SWAP_STEPS[step], r.bay.step, r.alarms())


def _until_end(r):
    n = len(r.outcomes())
    assert r.run(_LIMIT, until=lambda r: len(r.outcomes()) > n), (r.bay.step, r.bay.sub, r.alarms())
    r.cycle()
    return r.outcomes()[-1]


def _until_alarm(r, code):
    assert r.run(_LIMIT, until=lambda r: code in [a[0] for a in r.alarms()]), (code, r.alarms())


def _positions(dev):
    """Axes driven by run coils. Positioner, platform, grip and doors have one level coil
    each in the I/O map, with no stop state: only the safety relay stops them."""
    return (dev.lift.pos, dev.carrier_at, dev.move_ms, dev.tool, dev.tool_ms)


def _all_positions(dev):
    return _positions(dev) + (dev.rgv.pos, dev.positioner.pos, dev.door.pos, dev.grip.pos)


def test_normal_swap_records_every_step():
    r = _rig()
    v = r.vehicle(vid=7001, model=1, pack_id=555, soc=12.0)
    assert _until_end(r) == "ok"
    assert [s for p, s in r.steps()] == list(B.SWAP_STEPS[B.POSITION:])
    assert all(p == "swap" for p, s in r.steps())
    assert v in r.plant.departed and v.pack.id == 1000  # the charged pack of slot 0
    assert v.pack.tight()
    assert r.plant.slots[22].id == 555  # its own pack went to the free slot
    assert r.plant.slots[0] is None
    b = r.bay
    assert b.swaps_ok == 1 and b.swap is None and b.step == B.IDLE
    assert all(ms > 0 for ms in b.last_step_ms[B.POSITION:]), b.last_step_ms
    assert b.last_swap_ms >= sum(b.last_step_ms) - 200
    assert b.last_swap_ms < 300000  # GB/T 29772-2024: 300 s for a car
    ends = [e for e in r.events if e[0] == "end"]
    assert ends[0][2] == b.last_swap_ms


def test_nothing_moves_before_boot_confirmation():
    r = BayRig()
    r.vehicle()
    r.run(60000)
    assert r.bay.swap is None
    assert r.plant.bay.vehicle is None  # door never opened
    assert r.bay.coils[rm.BAY_CO_BEACON_RED] == 1
    assert not any(r.dev.coils[c] for c in B.RUN)
    r.confirm()
    assert _until_end(r) == "ok"


def test_identify_timeout_rejects_without_motion():
    r = _rig()
    r.plant.reader = False
    v = r.vehicle()
    assert _until_end(r) == "rejected"
    assert v in r.plant.departed and v.pack.id == 555
    assert r.dev.lift.low() and r.dev.positioner.low()
    assert ("step_failed", "identify: timeout") in r.alarms()
    assert not any(e[0] == "begin" for e in r.events)  # no swap transaction without a reservation


def test_unknown_tag_and_unauthorised_vehicle_are_rejected():
    r = _rig(cfg=None)
    r.bay.subscription = False
    r.vehicle(vid=0)  # reader: unknown tag
    assert _until_end(r) == "rejected"
    r.vehicle(vid=42)
    assert _until_end(r) == "rejected"
    assert ("step_failed", "authorise: not authorised") in r.alarms()


def test_subscription_comes_from_the_reader():
    r = _rig()
    assert r.bay.subscription and "43" not in r.bay.allow
    r.vehicle(vid=43, subscribed=False)  # identified, but no active battery subscription
    assert _until_end(r) == "rejected"
    assert ("step_failed", "authorise: not authorised") in r.alarms()
    assert r.dev.ir[rm.BAY_IR_ID_FLAGS] == 0
    r.vehicle(vid=44, subscribed=True)
    assert _until_end(r) == "ok"


def test_docking_and_locking_speeds_reach_the_nutrunners():
    r = _rig()
    r.vehicle()
    _until_step(r, B.BOLT)
    bay = r.cfg["bay"]
    assert r.dev.hr[rm.BAY_HR_DOCK_RPM] == round(bay["docking_rpm"]) > 0
    assert r.dev.hr[rm.BAY_HR_LOCK_RPM] == round(bay["locking_rpm"]) > 0
    assert r.dev.hr[rm.BAY_HR_DOCK_RPM] != r.dev.hr[rm.BAY_HR_LOCK_RPM]
    assert _until_end(r) == "ok"


def test_incompatible_pack_type_is_rejected():
    r = _rig()
    r.vehicle(model=PARTNER_A_SUV, ptype=rm.PACK_100)  # it takes STD-A-60 packs only
    assert _until_end(r) == "rejected"
    assert ("step_failed", "authorise: pack type not compatible") in r.alarms()


def test_authorise_waits_for_a_charged_pack_then_times_out():
    r = _rig(cfg=_pack_wait(0))  # no pack wait: only the authorise timeout
    for p in r.plant.slots:
        if p is not None:
            p.soc = 50.0
    v = r.vehicle()
    assert _until_end(r) == "rejected"
    assert ("step_failed", "authorise: no charged pack") in r.alarms()
    assert v.pack.id == 555 and r.dev.lift.low()
    assert not r.rack.reserved


def _pack_wait(ms):
    def mutate(raw):
        raw["bay"]["pack_wait_ms"] = ms
    return station_cfg(mutate)


def test_authorised_vehicle_waits_for_a_pack_to_charge_then_swaps():
    r = _rig(cfg=_pack_wait(600000))
    for p in r.plant.slots:
        if p is not None:
            p.soc = 50.0
    r.vehicle()
    t0 = r.plant.now
    _until_step(r, B.AUTHORISE)
    held = _positions(r.dev)
    assert not r.run(120000, until=lambda r: r.bay.step != B.AUTHORISE)
    assert not r.alarms() and not r.rack.reserved
    assert _positions(r.dev) == held and r.dev.lift.low()  # nothing moved while it waited
    r.plant.slots[7].soc = 92.0  # its charger brings one pack past the hand-over SoC
    assert _until_end(r) == "ok"
    sw = [e for e in r.events if e[0] == "end"][-1]
    assert sw[2] >= 120000 and r.plant.now - t0 < 400000


def test_pack_wait_ends_in_a_rejection_without_motion():
    r = _rig(cfg=_pack_wait(60000))
    for p in r.plant.slots:
        if p is not None:
            p.soc = 50.0
    v = r.vehicle()
    t0 = r.plant.now
    assert _until_end(r) == "rejected"
    waited = r.plant.now - t0
    timeout = r.cfg["timeouts_ms"]["authorise"]
    assert 60000 <= waited <= 60000 + timeout + 20000, waited
    assert ("step_failed", "authorise: no charged pack") in r.alarms()
    assert v.pack.id == 555 and r.dev.lift.low() and not r.rack.reserved


def test_authorise_needs_a_free_slot_for_the_depleted_pack():
    r = _rig()
    r.plant.slots[22] = r.plant.slots[0].__class__(2000, rm.PACK_100, soc=95.0, bolts=r.plant.bolts)
    r.vehicle()
    assert _until_end(r) == "rejected"
    assert not r.rack.reserved


def _fail_then(r, step, inject, fix, confirm):
    _until_step(r, step)
    inject(r)
    _until_alarm(r, "step_failed")
    fix(r)
    if confirm:
        _until_alarm(r, "operator")
        assert r.bay.safety.hold & sf.CONFIRM
        held = _positions(r.dev)
        r.run(5000)
        assert _positions(r.dev) == held  # nothing moves while waiting for the operator
        r.confirm()
    return _until_end(r)


def _stick(name):
    return lambda r: r.dev.stuck.add(name)


def _unstick(name):
    return lambda r: r.dev.stuck.discard(name)


def _dev_flag(name, value):
    return lambda r: setattr(r.dev, name, value)


def test_position_timeout_aborts_and_releases():
    r = _rig()
    v = r.vehicle()
    assert _fail_then(r, B.POSITION, _stick("positioner"), _unstick("positioner"), False) == "aborted"
    assert ("step_failed", "position: timeout") in r.alarms()
    assert ("abort", "lower") in r.steps()
    assert v in r.plant.departed and v.pack.id == 555 and v.pack.tight()
    assert not r.rack.reserved


def test_lift_timeout_lowers_and_releases():
    r = _rig()
    v = r.vehicle()
    assert _fail_then(r, B.LIFT, _stick("lift"), _unstick("lift"), False) == "aborted"
    assert v.pack.id == 555 and r.dev.lift.low()
    assert r.plant.slots[0].id == 1000  # reservation released, pack untouched


def test_unbolt_platform_timeout_aborts():
    r = _rig()
    v = r.vehicle()
    assert _fail_then(r, B.UNBOLT, _stick("rgv"), _unstick("rgv"), False) == "aborted"
    assert v.pack.id == 555 and v.pack.tight()


def test_stuck_bolt_rebolts_own_pack():
    r = _rig()
    v = r.vehicle()
    v.pack.stuck_bolt = 3
    assert _until_end(r) == "aborted"
    assert ("step_failed", "unbolt: bolt 4 not released") in r.alarms()
    assert [s for p, s in r.steps() if p == "rebolt"] == ["bolt", "verify", "lower", "release"]
    assert v in r.plant.departed and v.pack.id == 555 and v.pack.tight()


def test_breakaway_torque_outside_the_configured_window_rebolts_own_pack():
    def mutate(raw):
        raw["bay"]["breakaway_nm"] = [110, 150]  # this rig's bolts break away at 108 N*m

    r = _rig(cfg=station_cfg(mutate))
    assert r.bay.breakaway == (110.0, 150.0)
    v = r.vehicle()
    assert _until_end(r) == "aborted"
    assert ("step_failed", "unbolt: bolt 1 torque 108.0") in r.alarms()
    assert v in r.plant.departed and v.pack.id == 555 and v.pack.tight()
    assert _rig().bay.breakaway == (55.0, 195.0)  # default: 0.5x min .. 1.5x max of torque_nm


def test_unbolt_tool_timeout_rebolts():
    r = _rig()
    v = r.vehicle()
    _until_step(r, B.UNBOLT, 1)
    stall, unstall = _dev_flag("tool_stall", True), _dev_flag("tool_stall", False)
    assert _fail_then(r, B.UNBOLT, stall, unstall, False) == "aborted"
    assert v.pack.id == 555 and v.pack.tight()


def test_remove_timeout_holds_for_operator_then_resumes():
    r = _rig()
    v = r.vehicle()
    assert _fail_then(r, B.REMOVE, _stick("rgv"), _unstick("rgv"), True) == "ok"
    assert v.pack.id == 1000 and v.pack.tight()


def test_store_timeout_holds_for_operator():
    r = _rig()
    v = r.vehicle()
    assert _fail_then(r, B.STORE, _stick("carrier"), _unstick("carrier"), True) == "ok"
    assert v.pack.id == 1000 and r.plant.slots[22].id == 555


def test_fetch_timeout_holds_for_operator():
    r = _rig()
    v = r.vehicle()
    assert _fail_then(r, B.FETCH, _stick("carrier"), _unstick("carrier"), True) == "ok"
    assert v.pack.id == 1000


def test_install_timeout_holds_for_operator():
    r = _rig()
    r.vehicle()
    assert _fail_then(r, B.INSTALL, _stick("rgv"), _unstick("rgv"), True) == "ok"


def test_bolt_failure_reinstalls_the_vehicles_own_pack():
    r = _rig()
    v = r.vehicle()
    r.plant.slots[0].weak_bolt = 2  # the charged pack's bolt 3 never reaches torque
    assert _until_end(r) == "aborted"
    assert ("bolt_retry", "bolt 3 torque not ok") in r.alarms()
    assert [s for p, s in r.steps() if p == "reswap"] == list(B.SWAP_STEPS[B.UNBOLT:])
    assert v in r.plant.departed and v.pack.id == 555 and v.pack.tight()
    assert r.plant.slots[0].id == 1000  # the faulty pack went back to its own slot
    assert 0 in r.rack.faulty  # and is not offered again
    assert r.plant.slots[22] is None


def test_bolt_timeout_reinstalls_own_pack():
    r = _rig()
    v = r.vehicle()
    stall, unstall = _dev_flag("tool_stall", True), _dev_flag("tool_stall", False)
    assert _fail_then(r, B.BOLT, stall, unstall, False) == "aborted"
    assert v.pack.id == 555 and v.pack.tight()


def test_verify_timeout_reinstalls_own_pack():
    r = _rig()
    v = r.vehicle()
    r.plant.slots[0].no_contact = True
    assert _until_end(r) == "aborted"
    assert ("step_failed", "verify: timeout") in r.alarms()
    assert v.pack.id == 555 and v.pack.tight() and r.plant.slots[0].id == 1000


def test_second_failure_after_rollback_needs_operator():
    r = _rig()
    v = r.vehicle()
    v.pack.no_contact = True  # this vehicle fails its self-check whatever the pack
    r.plant.slots[0].no_contact = True
    _until_alarm(r, "operator")
    assert r.bay.plan == B.P_RESWAP and r.bay.step == B.VERIFY
    assert r.bay.fault == "verify: timeout"
    assert r.dev.vehicle is v and not r.dev.lift.low()  # still on the lift
    # The operator takes over by hand and closes the record.
    _manual_recovery(r)
    assert r.bay.abort_swap(r.plant.now)
    assert r.outcomes() == ["failed"]
    assert v in r.plant.departed and v.pack.id == 555 and v.pack.tight()
    r.dev.manual_key = False
    r.cycle()
    r.confirm()
    r.vehicle(vid=7002, pack_id=556)
    assert _until_end(r) == "ok"  # the bay swaps again


def _jog(r, coil, on, until=None):
    r.bay.set_jog(coil, on)
    r.cycle()
    if until is not None:
        assert r.run(60000, until=until), (coil, r.bay.not_clear())


def _manual_recovery(r, rebolt=False, repair=None):
    """The manual recovery of docs/operations.md, by jogs in manual mode: bolt a loosened
    pack back (platform at the pack, docking run, locking run), grip open, platform down,
    lift down, positioner open, exit open until the vehicle has left."""
    dev = r.dev
    dev.manual_key = True
    r.cycle()
    assert r.bay.safety.hold & sf.MANUAL
    if rebolt:
        _jog(r, rm.BAY_CO_RGV_RAISE, 1)
        _jog(r, rm.BAY_CO_PACK_GRIP, 1)
    if repair is not None:
        repair()
    if rebolt:
        r.run(6000)
        _jog(r, rm.BAY_CO_TOOL_BOLT, 1, lambda r: r.dev.tool == 0)
        _jog(r, rm.BAY_CO_TOOL_BOLT, 0)
        _jog(r, rm.BAY_CO_TOOL_LOCK_SPEED, 1)
        _jog(r, rm.BAY_CO_TOOL_BOLT, 1, lambda r: r.dev.tool == 0)
        _jog(r, rm.BAY_CO_TOOL_BOLT, 0)
        _jog(r, rm.BAY_CO_TOOL_LOCK_SPEED, 0)
        assert dev.vehicle.pack.tight()
    _jog(r, rm.BAY_CO_PACK_GRIP, 0, lambda r: r.dev.grip.low())
    _jog(r, rm.BAY_CO_RGV_RAISE, 0, lambda r: r.dev.rgv.low())
    _jog(r, rm.BAY_CO_LIFT_DOWN, 1, lambda r: r.dev.lift.low())
    _jog(r, rm.BAY_CO_LIFT_DOWN, 0)
    _jog(r, rm.BAY_CO_POSITIONER, 0, lambda r: r.dev.positioner.low())
    _jog(r, rm.BAY_CO_EXIT_OPEN, 1, lambda r: r.dev.vehicle is None)
    _jog(r, rm.BAY_CO_EXIT_OPEN, 0)
    r.run(500)
    assert r.bay.not_clear() == []


def test_abort_with_the_vehicle_in_the_bay_is_refused_and_the_bay_stays_held():
    r = _rig()
    v = r.vehicle()
    _until_step(r, B.REMOVE)
    r.dev.stuck.add("rgv")
    _until_alarm(r, "operator")  # remove: timeout, the pack unbolted in the vehicle on the lift
    door = r.dev.door.pos
    assert not r.bay.abort_swap(r.plant.now)
    assert r.bay.not_clear() == ["vehicle", "lift", "platform", "positioner"]
    r.run(5000)
    assert r.bay.swap is not None and r.outcomes() == []
    assert r.dev.coils[rm.BAY_CO_DOOR_OPEN] == 0 and r.dev.door.pos == door  # the entry stays shut
    assert r.dev.coils[rm.BAY_CO_BEACON_GREEN] == 0 and r.dev.coils[rm.BAY_CO_BEACON_RED] == 1
    r.dev.manual_key = True
    r.cycle()
    assert r.dev.coils[rm.BAY_CO_POSITIONER] == 1  # manual mode starts from the held outputs
    assert not r.bay.abort_swap(r.plant.now)  # manual mode alone does not clear the bay
    _manual_recovery(r, True, lambda: r.dev.stuck.discard("rgv"))
    assert r.bay.abort_swap(r.plant.now)
    assert r.outcomes() == ["failed"] and v in r.plant.departed and v.pack.id == 555 and v.pack.tight()
    assert r.dev.carrier_at == -1 and r.dev.carrier_pack is None
    r.dev.manual_key = False
    r.cycle()
    assert r.bay.swap is None and r.dev.coils[rm.BAY_CO_DOOR_OPEN] == 0  # still held...
    r.confirm()
    r.run(1000)
    assert r.dev.coils[rm.BAY_CO_DOOR_OPEN] == 1  # ...until the operator confirms


def test_lower_timeout_holds_then_completes():
    r = _rig()
    r.vehicle()
    assert _fail_then(r, B.LOWER, _stick("lift"), _unstick("lift"), True) == "ok"


def test_release_timeout_holds_then_completes():
    r = _rig()
    v = r.vehicle()
    block, unblock = _dev_flag("exit_blocked", True), _dev_flag("exit_blocked", False)
    assert _fail_then(r, B.RELEASE, block, unblock, True) == "ok"
    assert v in r.plant.departed


def _estop_in(step, sub):
    r = _rig()
    v = r.vehicle()
    _until_step(r, step, sub)
    r.run(700)  # part way into the step
    r.dev.estop = True
    r.cycle()  # the cycle that sees the input...
    assert not any(r.dev.coils[c] for c in B.RUN), (B.SWAP_STEPS[step], list(r.dev.coils))  # ...stops
    assert r.dev.coils[rm.BAY_CO_BEACON_RED] == 1
    assert r.bay.safety.hold & sf.ESTOP
    held = _all_positions(r.dev)
    r.run(5000)
    assert _all_positions(r.dev) == held  # the safety relay has cut every drive
    held = _positions(r.dev)
    r.dev.estop = False
    r.run(3000)
    assert r.bay.safety.hold & sf.ESTOP  # latched: released button is not enough
    assert _positions(r.dev) == held
    assert not r.bay.confirm()
    r.cycle()
    assert r.bay.ack() & sf.ESTOP
    out = _until_end(r)
    return out, v


def test_estop_in_every_step_stops_at_once_and_resumes_after_ack():
    for step in range(B.STEP_COUNT):
        out, v = _estop_in(step, 0)
        assert out == "ok", (B.SWAP_STEPS[step], out)
        assert v.pack.id == 1000 and v.pack.tight()


def test_estop_during_tool_runs():
    for step in (B.UNBOLT, B.BOLT):
        for sub in (1, 3) if step == B.BOLT else (1,):
            out, v = _estop_in(step, sub)
            assert out == "ok", (step, sub, out)
            assert v.pack.tight()


def test_estop_not_acknowledged_while_pressed():
    r = _rig()
    r.vehicle()
    _until_step(r, B.LIFT)
    r.dev.estop = True
    r.cycle()
    assert not r.bay.ack()
    assert r.bay.safety.hold & sf.ESTOP


def test_controller_estop_pin_acts_without_bus():
    r = _rig()
    r.vehicle()
    _until_step(r, B.LIFT)
    r.run(500)
    assert r.bay.coils[rm.BAY_CO_LIFT_UP] == 1
    r.bay.estop_pin(False)
    assert r.bay.coils[rm.BAY_CO_LIFT_UP] == 0  # image off before any bus traffic
    r.bay.estop_pin(True)
    assert r.bay.ack() & sf.ESTOP
    assert _until_end(r) == "ok"


def test_light_curtain_and_door_interlocks():
    r = _rig()
    r.vehicle()
    _until_step(r, B.IDENTIFY)
    r.dev.curtain_broken = True  # somebody walks past while the car is identified: fine
    r.run(1000)
    assert not r.bay.safety.hold
    r.dev.curtain_broken = False
    _until_step(r, B.LIFT)
    r.run(500)
    r.dev.curtain_broken = True
    r.cycle()
    assert r.bay.safety.hold & sf.INTERLOCK
    assert not any(r.dev.coils[c] for c in B.RUN)
    r.dev.curtain_broken = False
    r.cycle()
    assert r.bay.safety.hold & sf.INTERLOCK
    assert r.bay.ack() & sf.INTERLOCK
    _until_step(r, B.STORE)
    r.dev.door.pos = r.dev.door.travel_ms  # door forced open
    r.cycle()
    assert r.bay.safety.hold & sf.INTERLOCK
    r.dev.door.pos = 0
    r.cycle()
    r.bay.ack()
    assert _until_end(r) == "ok"


def test_manual_mode_pauses_and_needs_confirmation():
    r = _rig()
    r.vehicle()
    _until_step(r, B.LIFT)
    r.run(1000)
    r.dev.manual_key = True
    r.cycle()
    assert r.bay.safety.hold & sf.MANUAL
    assert r.dev.coils[rm.BAY_CO_LIFT_UP] == 0
    r.bay.jog[rm.BAY_CO_LIFT_UP] = 1  # operator jogs the lift
    r.run(1000)
    assert r.dev.coils[rm.BAY_CO_LIFT_UP] == 1
    r.bay.jog[rm.BAY_CO_LIFT_UP] = 0
    r.dev.manual_key = False
    r.run(1000)
    assert r.bay.safety.hold == sf.CONFIRM  # leaving manual mode needs a confirmation
    r.confirm()
    assert _until_end(r) == "ok"


def test_smoke_stops_and_ventilates():
    r = _rig()
    r.vehicle()
    _until_step(r, B.UNBOLT)
    r.dev.smoke = True
    r.cycle()
    assert r.bay.safety.hold & sf.SMOKE
    assert r.dev.coils[rm.BAY_CO_VENTILATION] == 1
    r.dev.smoke = False
    r.run(2000)
    assert r.dev.coils[rm.BAY_CO_VENTILATION] == 1  # latched until an operator clears it
    assert r.bay.ack() & sf.SMOKE
    assert _until_end(r) == "ok"
    assert r.dev.coils[rm.BAY_CO_VENTILATION] == 0


def test_a_confirm_after_the_door_closed_does_not_open_it_on_the_vehicle():
    # An operator clears a smoke stop with ack, then confirms, while the car stands in the
    # bay at "position": the step resumes from its start, whose first phase opens the entry
    # door for a car to drive in. Opening it on a guarded bay latched the interlock, which
    # the open door then kept from being acknowledged: the station held for ever.
    r = _rig()
    r.vehicle()
    _until_step(r, B.POSITION, sub=2)
    r.dev.smoke = True
    r.cycle()
    assert r.bay.safety.hold & sf.SMOKE
    r.dev.smoke = False
    r.run(2000)
    assert r.bay.ack() & sf.SMOKE
    assert r.bay.confirm()
    seen = {"interlock": 0, "door_open": 0}

    def watch(r):
        if r.bay.safety.hold & sf.INTERLOCK:
            seen["interlock"] += 1
        if r.dev.coils[rm.BAY_CO_DOOR_OPEN]:
            seen["door_open"] += 1
        return r.bay.step > B.POSITION

    assert r.run(_LIMIT, until=watch), (r.bay.step, r.bay.sub, r.bay.safety.hold, r.alarms())
    assert seen == {"interlock": 0, "door_open": 0}
    assert _until_end(r) == "ok"


def test_queued_identity_drives_in_after_authorisation():
    r = _rig()
    r.plant.reader = False
    v = r.vehicle(vid=9)
    r.bay.offer_identity("9", "NIO-ES6", 555, "NIO-100", 12.0, True)
    assert _until_end(r) == "ok"
    assert v.pack.id == 1000


def test_isolation_move_carries_pack_to_isolation_bay():
    r = _rig()
    r.cycle()
    assert r.bay.start_isolation(5, r.plant.now)
    assert _until_end(r) == "isolated"
    assert r.plant.slots[5] is None
    assert [p.id for p in r.plant.isolation] == [1005]
    assert r.rack.isolated == [1005]
    assert r.dev.carrier_at == -1 and r.dev.carrier_pack is None  # home again, empty
    r.vehicle()
    assert _until_end(r) == "ok"


def test_isolation_target_refused_leaves_the_pack_in_its_slot():
    r = _rig()
    r.dev.isolation_target = False  # a module that knows rack slots only
    r.cycle()
    assert r.bay.start_isolation(5, r.plant.now)
    assert _until_end(r) == "not_isolated"
    assert r.plant.slots[5].id == 1005 and r.dev.carrier_at == -1  # the carrier never left
    assert r.rack.isolated == []
    r.vehicle()
    assert _until_end(r) == "ok"  # the bay goes on swapping
