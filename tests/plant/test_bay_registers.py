"""Bay model registers added to the map: the reader's subscription flag and the
nutrunner speeds (docs/register-map.md, bay input register 8, holding registers 3-4)."""

import pytest

from firmware.proto import regmap as R
from host.plant.bay import BayTiming, BayVehicle
from host.plant.charging import PackRecord
from tests.plant.test_bay import FETCH, Driver, _arrive, _station


@pytest.mark.parametrize("subscribed", [True, False])
def test_reader_reports_the_subscription_flag(subscribed):
    plant, bay = _station(timing=BayTiming(jitter=0.0))
    Driver(bay).coils(DOOR_OPEN=1)
    bay.vehicle_arrives(BayVehicle(7, 3, PackRecord(907, "NIO-100", 0.2), subscribed=subscribed), 0.0)
    d = Driver(bay)
    d.wait(lambda i: bay.iregs[R.BAY_IR_ID_STATUS] == R.ID_VALID)
    assert bay.iregs[R.BAY_IR_ID_FLAGS] == (R.ID_FLAG_SUBSCRIBED if subscribed else 0)


def test_nutrunner_speeds_set_the_docking_and_locking_times():
    t = BayTiming(jitter=0.0)
    base = _swap_time(t, None)
    half = _swap_time(t, (int(t.dock_rpm / 2), int(t.lock_rpm / 2)))  # both runs take twice as long
    assert half - base == pytest.approx(t.dock_s + t.lock_s, abs=0.01)
    same = _swap_time(t, (int(t.dock_rpm), int(t.lock_rpm)))  # the calibrated speeds: no change
    assert same == pytest.approx(base, abs=0.01)


def _swap_time(timing, rpm):
    plant, bay = _station(timing=timing)
    assert plant.present[FETCH] == 1
    d = Driver(bay)
    if rpm is not None:
        bay.write_holding(R.BAY_HR_DOCK_RPM, list(rpm), 0.0)
    d.coils(DOOR_OPEN=1)
    _arrive(bay, 0.0)
    return d.swap()


def test_carrier_home_brings_the_empty_carrier_back_from_a_rack_slot():
    plant, bay = _station(timing=BayTiming(jitter=0.0))
    d = Driver(bay)
    bay.write_holding(R.BAY_HR_TARGET_SLOT, [20], 0.0)
    d.coils(CARRIER_TO_RACK=1)
    d.wait(lambda i: i[R.BAY_DI_CARRIER_AT_RACK])
    assert not bay.inputs[R.BAY_DI_CARRIER_AT_BAY]
    d.coils(CARRIER_TO_RACK=0, CARRIER_HOME=1)
    t0 = d.now
    d.wait(lambda i: i[R.BAY_DI_CARRIER_AT_BAY])
    assert not bay.inputs[R.BAY_DI_PACK_ON_CARRIER] and not bay.inputs[R.BAY_DI_CARRIER_AT_RACK]
    t = bay.timing
    assert d.now - t0 == pytest.approx(t.carrier_base_s + 21 * t.carrier_per_slot_s, abs=0.01)
    assert plant.present[FETCH] == 1  # nothing was taken from the rack
