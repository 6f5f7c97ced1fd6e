"""Charger module behaviour: efficiency, ramp, limits, watchdog, faults, grid, register map."""

import pytest

from firmware.proto import regmap as R
from host.devices.codes import ModbusError, NoReply
from host.plant import charger_regs
from host.plant.charging import PackRecord, Plant
from host.plant.params import ChargerParams

from .helpers import charging_plant, run_until


def test_efficiency_peaks_at_98_percent_and_falls_at_light_load():
    c = ChargerParams()
    curve = {frac: c.efficiency(frac * c.p_rated_w) for frac in (0.02, 0.1, 0.3, 0.5, 0.7, 1.0)}
    assert max(curve.values()) == pytest.approx(0.98, abs=0.001)
    assert curve[0.5] == max(curve.values())
    assert curve[0.02] < 0.90 < curve[0.1] < curve[0.3] < curve[0.5]
    assert curve[1.0] < curve[0.5]
    plant = charging_plant("NIO-100", 0.3)
    plant.step(60.0)
    assert plant.p_out[0] / plant.p_in[0] == pytest.approx(c.efficiency(62.5e3), rel=1e-9)


def test_output_ramps_up_at_the_ramp_rate_and_stops_at_once():
    plant = charging_plant("NIO-100", 0.3, max_substep_s=1.0)
    currents = []
    for _ in range(5):
        plant.step(1.0)
        currents.append(round(float(plant.i_out[0]), 6))
    assert currents[:4] == [20.0, 40.0, 60.0, 80.0]
    plant.set_enable(0, False)
    plant.step(1.0)
    assert plant.i_out[0] == 0.0 and plant.status[0] == R.CHG_ST_READY


def test_current_and_power_setpoints_limit_the_output():
    plant = charging_plant("NIO-100", 0.3, slots=2)
    plant.set_limits(0, current_a=50.0)
    plant.set_limits(1, power_w=20e3)
    plant.step(120.0)
    assert plant.i_out[0] == pytest.approx(50.0)
    assert plant.p_out[1] == pytest.approx(20e3, rel=1e-9)
    assert list(plant.status) == [R.CHG_ST_CHARGING, R.CHG_ST_CHARGING]


def _control(plant, slot, enable, beat, i_a=200.0, p_kw=62.5):
    regs = [enable, round(i_a * 10), 8000, round(p_kw * 10), 1000, beat]
    plant.write_charger_holding(slot, R.CHG_CONTROL_BASE, regs)


def test_watchdog_stops_output_and_needs_heartbeat_reset_and_enable():
    plant = Plant(1, 1)  # watchdog on, 5 s
    plant.put_pack(0, PackRecord(1, "NIO-100", 0.3))
    for beat in range(1, 31):
        _control(plant, 0, 1, beat)
        plant.step(1.0)
    assert plant.status[0] == R.CHG_ST_CHARGING
    assert plant.time_to_watchdog() == (pytest.approx(5.0 - 1.0), 0)
    plant.step(3.9)
    assert plant.i_out[0] > 0
    plant.step(0.2)  # 5.1 s without a new heartbeat value
    regs = plant.charger_input_registers(0)
    assert regs[R.CHG_IR_STATUS] == R.CHG_ST_WATCHDOG
    assert regs[R.CHG_IR_FAULTS] & R.CHG_FAULT_HEARTBEAT
    assert regs[R.CHG_IR_CURRENT] == 0
    assert plant.charger_holding_registers(0)[R.CHG_HR_ENABLE] == 0
    # enable alone does nothing; a reset without a new heartbeat value does nothing either
    _control(plant, 0, 1, 30)
    plant.write_charger_holding(0, R.CHG_HR_FAULT_RESET, [1])
    plant.step(1.0)
    assert plant.status[0] == R.CHG_ST_WATCHDOG
    # heartbeat again, reset: the output stays off until enable is written 1 again
    _control(plant, 0, 0, 31)
    plant.write_charger_holding(0, R.CHG_HR_FAULT_RESET, [1])
    plant.step(1.0)
    assert plant.status[0] == R.CHG_ST_READY and plant.faults[0] == 0
    _control(plant, 0, 1, 32)
    plant.step(1.0)
    assert plant.status[0] == R.CHG_ST_CHARGING and plant.i_out[0] > 0


def test_watchdog_timeout_register_changes_the_timeout():
    plant = Plant(1, 1)
    plant.put_pack(0, PackRecord(1, "NIO-100", 0.3))
    plant.write_charger_holding(0, R.CHG_HR_WATCHDOG_MS, [20000])
    _control(plant, 0, 1, 1)
    plant.step(19.0)
    assert plant.status[0] == R.CHG_ST_CHARGING
    plant.step(1.5)
    assert plant.status[0] == R.CHG_ST_WATCHDOG


def test_dropout_stops_answering_and_the_watchdog_then_stops_the_output():
    plant = Plant(1, 1)
    plant.put_pack(0, PackRecord(1, "NIO-100", 0.3))
    _control(plant, 0, 1, 1)
    plant.step(2.0)
    plant.inject(0, "dropout")
    with pytest.raises(NoReply):
        plant.charger_input_registers(0)
    with pytest.raises(NoReply):
        _control(plant, 0, 1, 2)
    plant.step(2.0)
    assert plant.i_out[0] > 0  # still charging on its own ...
    plant.step(2.0)
    assert plant.i_out[0] == 0  # ... until its watchdog expires
    plant.clear(0, "dropout")
    assert plant.charger_input_registers(0)[R.CHG_IR_STATUS] == R.CHG_ST_WATCHDOG


def test_stuck_charger_freezes_output_and_registers():
    plant = charging_plant("NIO-100", 0.3)
    plant.step(600.0)
    before = plant.charger_input_registers(0)
    i_frozen = float(plant.i_out[0])
    plant.inject(0, "stuck")
    plant.set_enable(0, False)
    _control(plant, 0, 0, 5)  # acknowledged, ignored
    plant.step(600.0)
    assert plant.i_out[0] == i_frozen  # still charging at the frozen current
    after = plant.charger_input_registers(0)
    assert after == before  # including the charger's own heartbeat counter
    assert plant.soc[0] * 1000 > after[R.CHG_IR_SOC] + 50  # the real pack moved on
    plant.clear(0, "stuck")
    live = plant.charger_input_registers(0)
    assert live[R.CHG_IR_HEARTBEAT] == (before[R.CHG_IR_HEARTBEAT] + 600) & 0xFFFF


def test_coolant_pump_failure_derates_then_trips_the_module():
    plant = charging_plant("NIO-100", 0.1)
    plant.inject(0, "pump")
    run_until(plant, lambda p: p.faults[0] != 0, dt=5.0, limit_s=3 * 3600.0)
    assert plant.faults[0] == R.CHG_FAULT_COOLANT
    assert plant.status[0] == R.CHG_ST_FAULT and plant.i_out[0] == 0.0
    assert plant.ch_temp[0] > plant.charger.coolant_trip_c - 0.5  # tripped at 75 degC, cooling since
    plant.clear(0, "pump")
    plant.fault_reset(0)
    assert plant.faults[0] == R.CHG_FAULT_COOLANT  # still hot: the cause is not gone
    plant.step(1800.0)
    plant.fault_reset(0)
    assert plant.faults[0] == 0
    plant.step(60.0)
    assert plant.status[0] == R.CHG_ST_CHARGING


def test_pump_failure_derating_shows_as_derated_before_the_trip():
    plant = charging_plant("NIO-100", 0.1)
    plant.inject(0, "pump")
    run_until(plant, lambda p: p.ch_temp[0] > p.charger.coolant_trip_c - 5.0, dt=5.0)
    assert plant.status[0] == R.CHG_ST_DERATED
    # halfway into the 10 K derating band: 1 - 0.7 / 2 of the power limit
    assert plant.p_out[0] == pytest.approx(0.65 * 62.5e3, rel=0.03)


def test_thermal_runaway_trips_the_charger_and_opens_the_pack():
    plant = charging_plant("NIO-100", 0.5)
    plant.step(60.0)
    plant.inject(0, "runaway")
    t = run_until(plant, lambda p: p.faults[0] & R.CHG_FAULT_OVER_TEMP, dt=1.0)
    assert t < 6 * 60  # about 8 K/min from ~26 degC to 60 degC
    assert plant.i_out[0] == 0.0
    run_until(plant, lambda p: p.faults[0] & R.CHG_FAULT_THERMAL_RUNAWAY, dt=1.0)
    assert plant.bms_open[0] == 1
    regs = plant.charger_input_registers(0)
    assert R.s16(regs[R.CHG_IR_TEMP_MAX]) >= 800


def test_grid_limit_curtails_every_charger_by_the_same_factor():
    plant = charging_plant("NIO-100", 0.3, slots=3, grid_limit_kw=100.0)
    plant.step(120.0)
    assert plant.station_power_w(0) == pytest.approx(100e3, rel=1e-9)
    assert plant.p_out[0] == pytest.approx(plant.p_out[1], rel=1e-3)
    assert all(plant.status == R.CHG_ST_DERATED)
    plant.set_grid(0, limit_kw=1000.0)
    plant.step(60.0)
    assert plant.p_out[0] == pytest.approx(62.5e3, rel=1e-9)


def test_grid_outage_stops_everything_and_latches_the_grid_fault():
    plant = charging_plant("NIO-100", 0.3, slots=2)
    plant.step(60.0)
    plant.set_grid(0, up=False)
    plant.step(60.0)
    assert plant.station_power_w(0) == 0.0 and plant.i_out.max() == 0.0
    assert all(plant.faults == R.CHG_FAULT_GRID)
    plant.set_grid(0, up=True)
    plant.step(60.0)
    assert plant.i_out.max() == 0.0  # latched until reset
    for slot in range(2):
        plant.write_charger_holding(slot, R.CHG_HR_FAULT_RESET, [1])
    plant.step(60.0)
    assert plant.i_out.min() > 0.0


def test_status_block_scaling():
    plant = charging_plant("NIO-150", 0.5)
    plant.pack_id[0] = 0x12345678
    plant.step(300.0)
    r = plant.charger_input_registers(0)
    assert len(r) == R.CHG_STATUS_COUNT
    assert r[R.CHG_IR_PACK_PRESENT] == 1
    assert R.u32(r[R.CHG_IR_PACK_ID_HI], r[R.CHG_IR_PACK_ID_LO]) == 0x12345678
    assert r[R.CHG_IR_PACK_TYPE] == R.PACK_150
    assert r[R.CHG_IR_SOC] == round(plant.soc[0] * 1000)
    assert r[R.CHG_IR_VOLTAGE] == round(plant.v_term[0] * 10)
    assert R.s16(r[R.CHG_IR_CURRENT]) == round(plant.i_out[0] * 10)
    assert R.s16(r[R.CHG_IR_POWER]) == 625
    assert R.s16(r[R.CHG_IR_TEMP_MIN]) < R.s16(r[R.CHG_IR_TEMP_MAX])
    energy_wh = R.u32(r[R.CHG_IR_ENERGY_HI], r[R.CHG_IR_ENERGY_LO])
    assert energy_wh == pytest.approx(62.5e3 * 300 / 3600, rel=0.02)
    assert r[R.CHG_IR_HEARTBEAT] == 300
    info = plant.charger_input_registers(0, R.CHG_INFO_BASE, R.CHG_INFO_COUNT)
    assert info[0] == R.CHG_MODEL_CODE
    assert info[R.CHG_IR_RATED_POWER - R.CHG_INFO_BASE] == R.CHG_RATED_POWER
    assert info[R.CHG_IR_RATED_I_MAX - R.CHG_INFO_BASE] == R.CHG_RATED_I_MAX
    assert info[R.CHG_IR_PACK_CAPACITY - R.CHG_INFO_BASE] == 1500


def test_empty_slot_reads_standby_with_no_pack():
    plant = Plant(1, 1)
    r = plant.charger_input_registers(0)
    assert r[R.CHG_IR_STATUS] == R.CHG_ST_STANDBY
    assert r[R.CHG_IR_PACK_PRESENT] == 0 and r[R.CHG_IR_PACK_TYPE] == R.PACK_NONE


def test_holding_registers_round_trip_and_validate_before_writing():
    plant = Plant(1, 1)
    plant.write_charger_holding(0, 0, [1, 1234, 4000, 300, 900, 7, 2000, 0])
    assert plant.charger_holding_registers(0) == [1, 1234, 4000, 300, 900, 7, 2000, 0]
    assert plant.arrays["set_i"][0] == pytest.approx(123.4)
    assert plant.arrays["set_p"][0] == pytest.approx(30e3)
    assert plant.arrays["target_soc"][0] == pytest.approx(0.9)
    with pytest.raises(ModbusError) as e:
        plant.write_charger_holding(0, R.CHG_HR_I_LIMIT, [1000, 9000])  # voltage above rated
    assert e.value.code == 3
    assert plant.arrays["set_i"][0] == pytest.approx(123.4)  # nothing written
    with pytest.raises(ModbusError) as e:
        plant.write_charger_holding(0, R.CHG_HR_WATCHDOG_MS, [100])
    assert e.value.code == 3
    with pytest.raises(ModbusError) as e:
        plant.write_charger_holding(0, 7, [1, 1])
    assert e.value.code == 2
    with pytest.raises(ModbusError) as e:
        plant.charger_input_registers(0, 14, 4)  # 16, 17 are unmapped
    assert e.value.code == 2


def _station(charger_kw=120.0, slot_kw=None):
    """The default station config with ``limits.charger_kw`` and one slot's own rating changed."""
    import json

    from firmware.core import config as fwconfig

    with open(fwconfig.default_path()) as f:
        raw = json.load(f)
    raw["limits"]["charger_kw"] = charger_kw
    if slot_kw is not None:
        raw["slots"][1]["charger_kw"] = slot_kw
    return fwconfig.validate(raw)


def _frame(enable=1, i=1800, v=4200, p=625, soc=1000, beat=1):
    out = bytearray()
    for r in (enable, i, v, p, soc, beat):
        out += bytes(((r >> 8) & 0xFF, r & 0xFF))
    return out


@pytest.mark.parametrize("backend", ["cython", "python"])
def test_charger_rating_comes_from_the_station_config(backend):
    cfg = _station(120.0, slot_kw=30.0)
    plant = Plant.for_station(cfg, backend=backend, watchdog=False)
    assert plant.n_slots == len(cfg["slots"])
    info = [plant.charger_input_registers(k, R.CHG_INFO_BASE, R.CHG_INFO_COUNT) for k in (0, 1, 2)]
    assert [x[R.CHG_IR_RATED_POWER - R.CHG_INFO_BASE] for x in info] == [1200, 300, 1200]
    # Its range checks are its own: a 120 kW setpoint is one a 120 kW charger takes ...
    charger_regs.write_control_frame(plant, 0, _frame(p=1200), 0)
    assert plant.charger_holding_registers(0)[R.CHG_HR_P_LIMIT] == 1200
    # ... and one a 30 kW charger refuses, changing nothing, by either path
    for write in (lambda: charger_regs.write_control_frame(plant, 1, _frame(p=301), 0),
                  lambda: plant.write_charger_holding(1, R.CHG_HR_P_LIMIT, [301])):
        with pytest.raises(ModbusError) as e:
            write()
        assert e.value.code == 3
    assert plant.charger_holding_registers(1)[R.CHG_HR_P_LIMIT] == 300  # its rating, as powered up
    charger_regs.write_control_frame(plant, 1, _frame(p=300), 0)
    # and the kernel holds each charger to its rating
    for slot in (0, 1):
        plant.put_pack(slot, PackRecord(slot + 1, "NIO-100", 0.3))
    plant.step(120.0)
    assert plant.p_out[1] == pytest.approx(30e3, rel=1e-6)
    assert plant.p_out[0] == pytest.approx(62.5e3, rel=1e-6)  # the pack's BMS limit, not the charger's


def test_a_plant_without_a_config_has_the_register_maps_charger():
    plant = Plant(1, 2)
    assert plant.charger_input_registers(1, R.CHG_IR_RATED_POWER, 1) == [R.CHG_RATED_POWER]
    assert Plant(1, 2, charger_kw=[50.0, 75.0]).charger_input_registers(1, R.CHG_IR_RATED_POWER, 1) == [750]
    with pytest.raises(ValueError, match="charger_kw"):
        Plant(1, 2, charger_kw=[50.0])
    with pytest.raises(ValueError, match="charger_kw"):
        Plant(1, 2, charger_kw=0.0)


def test_compiled_and_checked_control_writes_accept_and_refuse_alike():
    """The compiled control-block write and charger_regs' checked path draw the same line, at
    each charger's own rated current, voltage and power."""
    frames = [_frame(p=p) for p in (299, 300, 301, 625, 626, 1200, 1201)]
    frames += [_frame(i=i, p=300) for i in (2000, 2001)] + [_frame(v=v, p=300) for v in (8000, 8001)]
    seen = []
    for backend in ("cython", "python"):
        plant = Plant(1, 3, backend=backend, charger_kw=[30.0, 62.5, 120.0])
        assert (plant.control_write is None) == (backend == "python")
        got = []
        for slot in range(3):
            for f in frames:
                try:
                    charger_regs.write_control_frame(plant, slot, f, 0)
                    got.append(tuple(plant.charger_holding_registers(slot)))
                except ModbusError as e:
                    got.append(e.code)
        seen.append(got)
    assert seen[0] == seen[1]
    ok = [[not isinstance(x, int) for x in seen[0][k * len(frames):(k + 1) * len(frames)]] for k in range(3)]
    assert ok[0][:7] == [True, True, False, False, False, False, False]
    assert ok[1][:7] == [True, True, True, True, False, False, False]
    assert ok[2][:7] == [True, True, True, True, True, True, False]
    assert all(k[7:] == [True, False, True, False] for k in ok)
