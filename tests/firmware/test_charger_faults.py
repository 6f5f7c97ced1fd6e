"""Latched charger faults (CHG_IR_FAULTS) against the supervisor and the test plant: what
the controller resets by itself once the cause may be gone, how often it tries, and the
alarms that tell an operator what is going on."""

from racktest import fill, station_cfg, status_regs
from station import Station

from firmware.core import rack as R
from firmware.core.chargers import RESET_RETRY_MS
from firmware.proto import regmap as rm

# The test station keeps its flash (the journal, up to 32 KB, and its compaction copy) in the
# heap, where a board's flash is not: in 128K the first test runs out (test_station_hour
# shows the station itself in 128K, its journal on LittleFS outside the heap).
QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints
QEMU_HEAPSIZE = "256K"


def _charging(n_slots=23):
    s = Station(n_slots=n_slots, soc=40.0)
    s.start()
    s.run(5000)
    return s


def _alarm_records(s, code):
    return [(a["s"], a["on"]) for a in s.storage.records("AL") if a["c"] == code]


def test_chargers_charge_again_when_grid_power_returns():
    s = _charging()
    chargers = s.plant.chargers
    assert all(c.power_kw > 0 for c in chargers[:5])
    for c in chargers:  # AC input lost: every charger latches GRID and stops ...
        c.read(4, 0, 1)
        c.faults |= rm.CHG_FAULT_GRID
        c.held = rm.CHG_FAULT_GRID
    s.run(3000)
    assert "-1:grid_lost" in s.sup.alarms
    assert all(c.power_kw == 0 for c in chargers)
    assert s.sup.dispatch.enable[0] == 0 and s.sup.rack.state[0] == R.FAULT
    resets = sum(c.resets for c in chargers)
    s.run(60000)  # ... for a minute: retried now and then, not on every read
    assert sum(c.resets for c in chargers) <= resets + len(chargers) * (60000 // 5000 + 1)
    for c in chargers:  # ... and it is back
        del c.held
    s.run(8000)
    assert all(c.faults == 0 for c in chargers)
    assert all(c.power_kw > 0 for c in chargers[:5])
    assert s.sup.rack.state[0] == R.CHARGING
    assert "-1:grid_lost" not in s.sup.alarms
    assert _alarm_records(s, "grid_lost") == [(-1, True), (-1, False)]  # one alarm, not one per charger


def test_a_fault_whose_cause_stays_is_an_alarm_retried_each_minute():
    s = _charging(8)  # within the grid budget: every pack charges
    c = s.plant.chargers[2]
    c.read(4, 0, 1)
    c.faults |= rm.CHG_FAULT_COOLANT  # its pump failed
    c.held = rm.CHG_FAULT_COOLANT
    s.run(3000)
    assert "coolant" in s.sup.alarms["2:charger_fault"]
    assert c.power_kw == 0 and s.sup.rack.state[2] == R.FAULT
    first = c.resets
    assert first == 1
    s.run(RESET_RETRY_MS * 3 - 1000)
    assert c.resets - first <= 3 and c.faults == rm.CHG_FAULT_COOLANT
    del c.held  # pump repaired
    s.run(RESET_RETRY_MS + 3000)
    assert c.faults == 0 and c.power_kw > 0
    assert "2:charger_fault" not in s.sup.alarms
    assert _alarm_records(s, "charger_fault") == [(2, True), (2, False)]


def test_a_fault_that_needs_service_is_not_reset():
    s = _charging(8)
    c = s.plant.chargers[4]
    c.read(4, 0, 1)
    c.faults |= rm.CHG_FAULT_ISOLATION  # HV insulation: a person must look first
    s.run(RESET_RETRY_MS * 2)
    assert c.resets == 0 and c.faults == rm.CHG_FAULT_ISOLATION
    assert "service" in s.sup.alarms["4:charger_fault"]
    assert s.sup.rack.state[4] == R.FAULT and c.power_kw == 0


def test_no_pack_is_stored_where_a_faulted_charger_reads_no_pack():
    # A charger that lost its BMS link reads "no pack" (BMS_COMM): the slot may well hold
    # one, so the carrier must not put the vehicle's pack there.
    r = R.Rack(station_cfg())
    fill(r, 0, {0: dict(pack=500, soc=95.0)})
    r.update_from_charger(1, status_regs(None, faults=rm.CHG_FAULT_BMS_COMM), 100)
    assert r.free_slot() == 2 and r.free_slot(100) == 2
    r.update_from_charger(1, status_regs(), 200)  # link back, and the slot is empty
    assert r.free_slot() == 1


def test_a_pack_may_go_where_the_charger_only_lost_its_heartbeat_or_grid():
    # HEARTBEAT (latched after a controller restart) and GRID (AC input lost) stop charging
    # but leave the BMS link up: the charger reads "no pack" because there is none.
    r = R.Rack(station_cfg())
    fill(r, 0, {0: dict(pack=500, soc=95.0)})
    r.update_from_charger(1, status_regs(None, faults=rm.CHG_FAULT_HEARTBEAT), 100)
    assert r.free_slot(100) == 1
    r.update_from_charger(1, status_regs(None, faults=rm.CHG_FAULT_GRID | rm.CHG_FAULT_HEARTBEAT), 200)
    assert r.free_slot(200) == 1
    r.update_from_charger(1, status_regs(None, faults=rm.CHG_FAULT_HEARTBEAT | rm.CHG_FAULT_BMS_COMM), 300)
    assert r.free_slot(300) == 2


def test_a_frozen_charger_is_out_of_service_until_its_heartbeat_counts_again():
    s = _charging(8)
    c = s.plant.chargers[3]
    rk = s.sup.rack
    assert rk.telemetry(3, s.now()) is not None
    c.beat_stopped = 7  # still answers, but its own counter stopped: its values are not current
    s.run(8000)
    assert "3:charger_frozen" in s.sup.alarms
    assert rk.telemetry(3, s.now()) is None and not rk.available(3, s.now())
    s.run(30000)
    assert _alarm_records(s, "charger_frozen") == [(3, True)]  # one alarm, not one per read
    del c.beat_stopped
    s.run(3000)
    assert "3:charger_frozen" not in s.sup.alarms
    assert rk.telemetry(3, s.now()) is not None

