from fwtest import raises
from jtest import rmtree, tempdir
from racktest import fill, info_regs, station_cfg, status_regs

from firmware.compat import ticks_add, ticks_max
from firmware.core.journal import Journal
from firmware.core.rack import CHARGING, EMPTY, FAULT, QUARANTINED, READY, RESERVED, STATE_NAMES, Rack
from firmware.core.thermal import OVER_TEMP, Thermal
from firmware.drivers.vfs_storage import VfsStorage
from firmware.proto import regmap as rm

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap

CFG = station_cfg()


def test_decodes_the_status_block_into_slot_state():
    r = Rack(CFG)
    st = r.update_from_charger(
        0,
        status_regs(0xA1B2C3D4, code=2, soc=55.5, soh=97.3, t_max=31.2, t_min=28.0, amps=-12.5, power=20.0),
        1000,
    )
    assert st == CHARGING and r.pack[0] == 0xA1B2C3D4 and r.ptype[0] == "NIO-100"
    assert (r.soc[0], r.soh[0], r.t_max[0], r.t_min[0], r.amps[0], r.power[0]) == (
        555,
        973,
        312,
        280,
        -125,
        200,
    )
    assert r.telemetry(0, 1000) == (55.5, 97.3, 31.2, 28.0)
    assert r.update_from_charger(0, status_regs(0xA1B2C3D4, code=2, soc=90.0), 2000) == READY
    assert r.update_from_charger(1, status_regs(), 2000) == EMPTY and r.telemetry(1, 2000) is None
    r.update_info(0, info_regs(321))
    assert r.assets[0xA1B2C3D4] == ["NIO-100", 321, 980, 0]
    neg = status_regs(7, t_max=-5.5)
    r.update_from_charger(2, neg, 2000)
    assert r.t_max[2] == -55


def test_a_bus_reply_decodes_as_the_checked_list_does():
    # raw16: the registers of a bus reply (an array('H')) are not checked one by one again;
    # what the slot reads must not differ, signed registers below zero included.
    from array import array

    checked, raw = Rack(CFG), Rack(CFG)
    blocks = [status_regs(0xA1B2C3D4, code=2, soc=55.5, t_max=-5.5, amps=-12.5, power=-3.0),
              status_regs(7, soc=95.0, t_max=41.0, amps=100.0, power=62.5), status_regs()]
    for k, regs in enumerate(blocks):
        st = raw.update_from_charger(k, array("H", regs), 1000, True)
        assert checked.update_from_charger(k, regs, 1000) == st
        for name in ("pack", "ptype", "status", "soc", "soh", "volt", "amps", "power", "t_max", "t_min",
                     "faults", "state"):
            assert getattr(checked, name)[k] == getattr(raw, name)[k], name
    assert (raw.t_max[0], raw.amps[0], raw.power[0]) == (-55, -125, -30)


def test_stale_or_offline_telemetry_is_never_current():
    r = Rack(CFG)  # telemetry_stale_ms 5000
    r.update_from_charger(0, status_regs(11, soc=95.0), 1000)
    assert r.available(0, 6000) and r.select("NIO-ES6", 6000) == 0
    assert not r.available(0, 6001) and r.telemetry(0, 6001) is None
    assert r.select("NIO-ES6", 6001) is None and "no charged" in r.why
    r.update_from_charger(0, status_regs(11, soc=95.0), 7000)
    assert r.available(0, 7000)
    r.charger_offline(0)
    assert not r.available(0, 7000) and r.telemetry(0, 7000) is None and not r.holds(0, 11)
    r.update_from_charger(0, status_regs(11, soc=95.0), 8000)
    assert r.available(0, 8000)


def test_freshness_across_ticks_wraparound():
    r = Rack(CFG)
    t0 = ticks_add(ticks_max(), -1000)
    r.update_from_charger(0, status_regs(11, soc=95.0), t0)
    assert r.fresh(0, ticks_add(t0, 4999)) and not r.fresh(0, ticks_add(t0, 5001))


def test_selection_is_compatible_charged_healthiest_coolest_least_worn():
    r = Rack(CFG)  # handover_soc 90
    fill(
        r,
        0,
        {
            0: dict(pack=100, code=1, soc=95.0, soh=90.0),  # charged but worn
            1: dict(pack=101, code=1, soc=85.0, soh=99.9),  # healthiest but below hand-over
            2: dict(pack=102, code=2, soc=92.0, soh=97.0, t_max=38.0),
            3: dict(pack=103, code=2, soc=96.0, soh=97.5, t_max=26.0),  # same SoH band, cooler
            4: dict(pack=104, code=5, soc=99.0, soh=100.0),  # STD-A-60: not for NIO cars
            5: dict(pack=105, code=3, soc=93.0, soh=97.1, t_max=27.0),  # same bands as 103, fewer cycles
        },
    )
    r.update_info(3, info_regs(900))
    r.update_info(5, info_regs(400))
    r.cycles[5] = 400
    assert r.select("NIO-ES6", 0) == 5  # 97 % band, 25-30 degC band, fewer cycles than slot 3
    r.update_info(5, info_regs(1200))
    assert r.select("NIO-ES6", 0) == 3
    assert r.select("PARTNER-A-SUV", 0) == 4
    assert r.select("TRACTOR", 0) is None and "unknown vehicle model" in r.why


def test_hot_or_unknown_packs_are_not_handed_out():
    r = Rack(CFG)
    fill(r, 0, {0: dict(pack=1, code=1, soc=95.0, t_max=58.5), 1: dict(pack=2, code=9, soc=95.0)})
    assert r.ptype[1] is None and r.select("NIO-ES6", 0) is None  # 58 degC cell limit; type code 9 unknown


def test_reservation_holds_one_pack_per_swap():
    r = Rack(CFG)
    fill(r, 0, {0: dict(pack=1, soc=95.0), 1: dict(pack=2, soc=94.0, soh=90.0)})
    assert r.reserve_for("NIO-ET5", 0) == 0 and r.state[0] == RESERVED
    assert r.reserve_for("NIO-ET5", 0) == 1  # the next vehicle gets the other
    assert r.reserve_for("NIO-ET5", 0) is None
    r.release(0)
    assert r.state[0] == READY
    assert r.reserve_slot(0) and r.state[0] == RESERVED
    r.update_from_charger(0, status_regs(1, soc=95.0, faults=rm.CHG_FAULT_ISOLATION), 100)
    assert r.state[0] == FAULT and not r.available(0, 100)
    assert not r.reserve_slot(0)


def test_pack_movements_and_assets():
    r = Rack(CFG)
    fill(r, 0, {0: dict(pack=500, soc=95.0)})
    assert r.holds(0, 500) and not r.holds(0, 501) and not r.holds(1, 500)
    assert r.free_slot() == 1
    r.insert_pack(1, 777)  # carrier stores the vehicle's pack in slot 1
    assert r.free_slot() == 2
    r.update_from_charger(1, status_regs(), 100)  # charger has not seen it yet: no fault
    assert r.state[1] == EMPTY and r.expect[1] == 777
    r.update_from_charger(1, status_regs(777, soc=20.0), 200)
    assert r.state[1] == CHARGING and r.expect[1] is None and r.free_slot() == 1 + 1
    r.reserve_for("NIO-ES6", 200)
    assert r.take(0, 300) == 500 and r.state[0] == EMPTY and r.assets[500][3] == 1
    r.insert_pack(2, 888)
    r.update_from_charger(2, status_regs(999, soc=20.0), 400)  # a different pack arrived
    assert r.state[2] == FAULT and r.reason[2] == "pack_mismatch"
    r.clear_fault(2)
    assert r.state[2] == CHARGING


def test_thermal_alarm_quarantines_at_once_and_isolation_follows():
    th = Thermal(CFG)
    r = Rack(CFG, thermal=th)
    fill(r, 0, {3: dict(pack=33, soc=95.0, t_max=40.0)})
    assert r.reserve_for("NIO-ES6", 0) == 3
    r.update_from_charger(3, status_regs(33, soc=95.0, t_max=66.0), 1000)
    assert r.state[3] == QUARANTINED and r.reserved_model[3] is None
    assert th.pop() == (3, OVER_TEMP, 660)
    assert r.needs_isolation() == 3 and r.select("NIO-ES6", 1000) is None
    r.to_isolation(33, 2000)
    assert r.isolation == [33] and r.needs_isolation() is None
    # the slot where it happened stays out of service until an operator clears it
    assert r.state[3] == FAULT and r.reason[3] == "thermal_event" and r.free_slot() != 3
    r.update_from_charger(3, status_regs(), 2500)
    assert r.state[3] == FAULT
    r.clear_fault(3)
    assert r.state[3] == EMPTY and not th.blocked(3)
    raises(ValueError, r.to_isolation, 33)
    raises(ValueError, r.to_isolation, 34)  # capacity 1
    r.leave_isolation(33)
    assert r.isolation == []
    raises(ValueError, r.leave_isolation, 33)
    r.update_from_charger(4, status_regs(44, faults=rm.CHG_FAULT_THERMAL_RUNAWAY), 3000)
    assert r.state[4] == QUARANTINED and th.pop()[0] == 4


def test_operator_quarantine_and_slot_fault():
    r = Rack(CFG)
    fill(r, 0, {0: dict(pack=1, soc=95.0)})
    r.quarantine(0, "swollen")
    assert r.state[0] == QUARANTINED and r.reason[0] == "swollen"
    r.set_fault(1, "fetch_failed")
    assert r.state[1] == FAULT and r.free_slot() == 2
    r.update_from_charger(1, status_regs(), 10)
    assert r.state[1] == FAULT  # sticky until an operator clears it
    r.clear_fault(1)
    assert r.state[1] == EMPTY


def test_journal_records_changes_and_boot_reconciles():
    path = tempdir("rack")
    st = VfsStorage(path)
    j = Journal(st, 8192, 500)
    j.open()
    r = Rack(CFG, thermal=Thermal(CFG), on_change=j.rack_change)
    fill(r, 0, {0: dict(pack=10, soc=95.0), 1: dict(pack=11, soc=40.0), 2: dict(pack=12, soc=95.0)})
    seq = j.state.seq
    fill(r, 1000, {0: dict(pack=10, soc=95.5), 1: dict(pack=11, soc=41.0), 2: dict(pack=12, soc=95.0)})
    assert j.state.seq == seq  # SoC drift alone is not journalled
    r.update_from_charger(2, status_regs(12, soc=95.0, t_max=70.0), 2000)
    assert j.state.slots[2]["st"] == "QUARANTINED"
    r.update_info(0, info_regs(250))
    r.reserve_for("NIO-ES6", 2000)
    assert j.state.slots[0]["st"] == "RESERVED"
    j.close()
    # reboot: the journal says 0 holds 10, 1 holds 11, 2 holds quarantined 12, 3 empty
    j = Journal(st, 8192, 500)
    j.open()
    r = Rack(CFG, thermal=Thermal(CFG), on_change=j.rack_change)
    r.restore(j.state)
    assert r.state[2] == QUARANTINED and not r.fresh(0, 0) and r.select("NIO-ES6", 0) is None
    assert r.assets[10][1] == 250
    r.update_from_charger(0, status_regs(10, soc=96.0), 5000)  # matches
    r.update_from_charger(1, status_regs(99, soc=40.0), 5000)  # another pack than recorded
    r.update_from_charger(2, status_regs(12, soc=95.0, t_max=30.0), 5000)  # still quarantined
    r.update_from_charger(3, status_regs(55, soc=60.0), 5000)  # a pack where the journal had none
    assert r.state[0] == READY and r.expect[0] is None
    assert r.state[1] == FAULT and r.reason[1] == "pack_mismatch"
    assert r.state[2] == QUARANTINED
    assert r.state[3] == FAULT
    r.update_from_charger(4, status_regs(), 5000)
    assert r.state[4] == EMPTY
    assert STATE_NAMES[r.state[1]] == j.state.slots[1]["st"] == "FAULT"
    j.close()
    rmtree(path)


def test_missing_pack_after_reboot_faults_the_slot():
    class JS:
        slots = {
            0: {"s": 0, "p": 10, "ty": "NIO-75", "st": "READY"},
            23: {"s": 23, "p": 66, "st": "QUARANTINED"},
        }
        packs = {10: ["NIO-75", 100, 97.0, 2]}

    r = Rack(CFG)
    r.restore(JS())
    assert r.isolation == [66] and r.assets[10] == ["NIO-75", 100, 970, 2]
    r.update_from_charger(0, status_regs(), 100)
    assert r.state[0] == FAULT and r.reason[0] == "pack_missing"


def test_bad_inputs_are_refused_and_change_nothing():
    r = Rack(CFG)
    fill(r, 0, {0: dict(pack=1, soc=95.0)})
    good = status_regs(2, soc=50.0)
    cases = [
        (r.update_from_charger, (23, good, 0)),
        (r.update_from_charger, (-1, good, 0)),
        (r.update_from_charger, ("1", good, 0)),
        (r.update_from_charger, (1, good[:10], 0)),
        (r.update_from_charger, (1, good[:5] + [70000] + good[6:], 0)),
        (r.update_from_charger, (1, good[:5] + [-1] + good[6:], 0)),
        (r.update_from_charger, (1, good[:5] + [5.0] + good[6:], 0)),
        (r.update_info, (1, [0] * 3)),
        (r.update_info, (1, [0] * 7 + [1.5, 0])),
        (r.take, (1,)),
        (r.insert_pack, (0, 9)),
        (r.charger_offline, (40,)),
        (r.reserve_slot, (99,)),
        (r.release, (-2,)),
        (r.set_fault, (23, "x")),
        (r.telemetry, (23, 0)),
    ]
    for fn, args in cases:
        e = raises(ValueError, fn, *args)
        assert str(e)
    assert r.pack[1] is None and r.state[1] == EMPTY and r.state[0] == READY and r.online[1] == 1


def test_steady_reads_do_not_allocate():
    from firmware.compat import micropython_heap

    r = Rack(CFG, thermal=Thermal(CFG))
    regs = [status_regs(1000 + i, soc=60.0 + i, t_max=30.0) for i in range(r.n)]
    fill(r, 0, {i: dict(pack=1000 + i, soc=60.0 + i) for i in range(r.n)})
    if micropython_heap() is None:  # CPython: behaviour only
        for k in range(50):
            for i in range(r.n):
                assert r.update_from_charger(i, regs[i], 1000 * k) in (CHARGING, READY)
        return
    import gc

    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for k in range(50):
            for i in range(r.n):
                r.update_from_charger(i, regs[i], 1000 * k)
        grew = gc.mem_alloc() - before
    finally:
        gc.enable()
    assert grew == 0, grew


def test_isolation_bay_is_journalled_and_restored():
    path = tempdir("iso")
    st = VfsStorage(path)
    j = Journal(st, 8192, 500)
    j.open()
    r = Rack(CFG, thermal=Thermal(CFG), on_change=j.rack_change)
    fill(r, 0, {5: dict(pack=55, soc=80.0, t_max=67.0)})
    assert r.needs_isolation() == 5
    r.to_isolation(55, 100)
    assert j.state.slots[23]["p"] == 55 and j.state.slots[5]["p"] is None
    j.close()
    j = Journal(st, 8192, 500)
    j.open()
    r = Rack(CFG, on_change=j.rack_change)
    r.restore(j.state)
    assert r.isolation == [55]
    r.leave_isolation(55)
    assert j.state.slots[23]["p"] is None and r.isolation == []
    j.close()
    rmtree(path)
