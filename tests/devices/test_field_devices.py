"""The one field-device layer (``host.devices``) under the simulator and the HIL rig."""

from __future__ import annotations

import pytest

from firmware.core import bay_steps, config
from firmware.proto import regmap as rm
from hil.emulators.field import Field
from host.devices import codes, rtu
from host.devices.bay import MOTION_COILS, BayIODevice
from host.devices.charger import ChargerDevice
from host.plant.bay import BayTiming, bay_for_station, scaled_timing
from host.plant.charging import PackRecord, Plant
from host.sim import engine, scenario

CFG = config.load()


def _bay(stamp=None) -> BayIODevice:
    plant = Plant.for_station(CFG)
    t = {"now": 0.0}
    return BayIODevice(bay_for_station(CFG, plant, scaled_timing(0.01), seed=1), lambda: t["now"], stamp)


def test_the_simulator_and_the_rig_ask_the_same_devices() -> None:
    e = engine.Engine(scenario.load("pss4-urban-day"))
    f = Field(CFG, charger_port="/dev/null", bay_port="/dev/null")  # not started: no line opened
    assert type(e.bay_device) is type(f.bay) is BayIODevice
    assert {type(d) for d in e.devices.values()} == {type(d) for d in f.chargers.values()} == {ChargerDevice}


def test_the_field_and_the_firmware_stop_the_same_motion_coils() -> None:
    assert MOTION_COILS == bay_steps.RUN


def test_a_bay_request_outside_a_table_is_exception_02_and_a_foreign_function_01() -> None:
    bay = _bay()
    assert len(bay.read(codes.FC_READ_COILS, 0, rm.BAY_COIL_COUNT)) == rm.BAY_COIL_COUNT
    for fc, size in ((codes.FC_READ_COILS, rm.BAY_COIL_COUNT), (codes.FC_READ_DISCRETE, rm.BAY_DI_COUNT),
                     (codes.FC_READ_HOLDING, rm.BAY_HOLDING_COUNT), (codes.FC_READ_INPUT, rm.BAY_IR_COUNT)):
        with pytest.raises(codes.ModbusError) as e:
            bay.read(fc, size - 1, 2)
        assert e.value.code == codes.EX_ILLEGAL_ADDRESS
    with pytest.raises(codes.ModbusError) as e:
        bay.write(codes.FC_WRITE_COILS, rm.BAY_COIL_COUNT, [1])
    assert e.value.code == codes.EX_ILLEGAL_ADDRESS
    with pytest.raises(codes.ModbusError) as e:
        bay.read(0x2B, 0, 1)
    assert e.value.code == codes.EX_ILLEGAL_FUNCTION
    assert bay.errors == []  # the rig's requests were wrong, not the plant


def test_a_bay_stamps_inputs_and_coil_writes_only_when_given_a_clock() -> None:
    quiet, timed = _bay(), _bay(stamp=lambda: 42.0)
    for bay in (quiet, timed):
        bay.set_input("estop_ok", False)
        bay.write(codes.FC_WRITE_COIL, rm.BAY_CO_BEACON_RED, [1])
    assert quiet.input_changes == [] and quiet.coil_writes == []
    assert timed.input_changes == [(42.0, rm.BAY_DI_ESTOP_OK, 0)]
    assert timed.coil_writes[0][0] == 42.0 and timed.coil_writes[0][1][rm.BAY_CO_BEACON_RED] == 1


def test_a_charger_device_routes_functions_to_the_plant_register_table() -> None:
    plant = Plant.for_station(CFG)
    plant.put_pack(0, PackRecord(700_001, "NIO-100", 0.5))
    dev = ChargerDevice(plant, 0)
    regs = dev.read(codes.FC_READ_INPUT, rm.CHG_IR_PACK_ID_HI, 2)
    assert (regs[0] << 16) | regs[1] == 700_001
    with pytest.raises(codes.ModbusError) as e:
        dev.read(codes.FC_READ_COILS, 0, 1)
    assert e.value.code == codes.EX_ILLEGAL_FUNCTION
    with pytest.raises(codes.ModbusError) as e:
        dev.write(codes.FC_WRITE_REGISTER, rm.CHG_HR_ENABLE, [2])
    assert e.value.code == codes.EX_ILLEGAL_VALUE
    plant.inject(0, "dropout")
    with pytest.raises(codes.NoReply):
        dev.read(codes.FC_READ_INPUT, 0, 1)
    assert (dev.reads, dev.writes) == (1, 0)


@pytest.mark.parametrize(("frame", "length"), [
    (b"\x07", None),
    (b"\x07\x03\x00\x00\x00\x02", 8),
    (b"\x07\x05", 8),
    (b"\x07\x10\x00\x00\x00\x02", None),  # the byte count is not in yet
    (b"\x07\x10\x00\x00\x00\x02\x04", 13),
    (b"\x07\x0f\x00\x00\x00\x0a\x02", 11),
    (b"\x07\x2b\x0e", 0),  # a function no slave here can frame
])
def test_a_request_frame_length_follows_from_its_function(frame: bytes, length: int | None) -> None:
    assert rtu.request_length(frame) == length


def test_a_served_request_is_heard_with_its_values() -> None:
    bay, heard = _bay(), []
    pdu = rtu.handle_pdu(bay, bytes((codes.FC_WRITE_COIL, 0, rm.BAY_CO_BEACON_RED, 0xFF, 0)),
                         lambda fc, a, v: heard.append((fc, a, v)))
    assert pdu == bytes((codes.FC_WRITE_COIL, 0, rm.BAY_CO_BEACON_RED, 0xFF, 0))
    assert heard == [(codes.FC_WRITE_COIL, rm.BAY_CO_BEACON_RED, [1])]
    assert rtu.handle_pdu(bay, bytes((codes.FC_READ_COILS, 0, 200, 0, 1)), heard.append) == bytes((0x81, 2))
    assert len(heard) == 1  # an exception reply is not a served request


def test_scaled_timing_scales_every_duration_and_zero_drops_the_jitter() -> None:
    base = BayTiming()
    half = scaled_timing(0.5)
    assert half.lift_s == base.lift_s / 2 and half.jitter == base.jitter
    assert scaled_timing(0.0).jitter == 0.0 and scaled_timing(0.0).lift_s == 0.0
    assert scaled_timing(1.0) == base
    with pytest.raises(ValueError, match="scale"):
        scaled_timing(-1.0)
