"""The queueing-validation plant's charger (host.plant.expcharge behind ExpChargerDevice)
against the plant's charger device, on what the map says a charger refuses: the same
requests off the map and the same out-of-range values get the same exception, so the
firmware meets one charger behaviour in both runs. Its readings are its own (exponential
charge work, no thermal model): the queueing validation compares waits, not registers."""

from __future__ import annotations

import json

import pytest

from firmware.proto import regmap as rm
from host.devices.charger import ChargerDevice, ExpChargerDevice
from host.devices.codes import (
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_WRITE_REGISTER,
    FC_WRITE_REGISTERS,
    ModbusError,
)
from host.plant import charger_regs
from host.plant.charging import PackRecord, Plant
from host.plant.expcharge import ExpChargeRack
from tests.mpy_dual import ROOT


def _pair() -> tuple[ChargerDevice, ExpChargerDevice]:
    cfg = json.loads((ROOT / "firmware" / "station.json").read_text())
    cfg["slots"] = cfg["slots"][:1]
    real = Plant.for_station(cfg)
    real.put_pack(0, PackRecord(0x4E001234, "NIO-100", 0.4))
    # the same rating as the plant's charger, so their limit registers range alike
    exp = ExpChargeRack(1, mean_s=600.0, full_soc=0.95, p_rated_w=float(real.arrays["p_rated"][0]), seed=1)
    return ChargerDevice(real, 0), ExpChargerDevice(exp, 0)


def _outcome(fn, *args) -> object:
    try:
        fn(*args)
        return "taken"
    except ModbusError as e:
        return ("exception", e.code)


@pytest.mark.parametrize("address", range(rm.CHG_HOLDING_COUNT))
def test_every_holding_register_takes_and_refuses_the_same_values(address: int) -> None:
    real, _ = _pair()
    lo, hi = charger_regs.holding_range(real.plant, 0, address)
    for value in sorted({0, max(0, lo - 1), lo, (lo + hi) // 2, hi, min(0xFFFF, hi + 1), 0xFFFF}):
        for fc in (FC_WRITE_REGISTER, FC_WRITE_REGISTERS):
            real, exp = _pair()
            got = (_outcome(real.write, fc, address, [value]), _outcome(exp.write, fc, address, [value]))
            assert got[0] == got[1], f"FC{fc:02d} register {address} = {value}: device {got[0]}, exp {got[1]}"


@pytest.mark.parametrize("request_", [
    ("write", FC_WRITE_REGISTERS, rm.CHG_HOLDING_COUNT - 1, [0, 0]),
    ("write", FC_WRITE_REGISTERS, 0, []),
    ("read", FC_READ_HOLDING, rm.CHG_HOLDING_COUNT, 1),
    ("read", FC_READ_INPUT, rm.CHG_INFO_BASE + rm.CHG_INFO_COUNT, 1),
], ids=lambda r: f"{r[0]}-fc{r[1]}-{r[2]}-{r[3]}")
def test_requests_off_the_map_get_the_same_exception(request_: tuple) -> None:
    kind, fc, address, arg = request_
    real, exp = _pair()
    got = [_outcome(getattr(dev, kind), fc, address, arg) for dev in (real, exp)]
    assert got[0] == got[1] and isinstance(got[0], tuple), got


def test_the_info_block_reports_the_ratings_its_limits_range_up_to() -> None:
    real, exp = _pair()
    info = {rm.CHG_IR_RATED_POWER: rm.CHG_HR_P_LIMIT, rm.CHG_IR_RATED_I_MAX: rm.CHG_HR_I_LIMIT,
            rm.CHG_IR_RATED_V_MAX: rm.CHG_HR_V_LIMIT}
    for ir, hr in info.items():
        top = exp.read(FC_READ_INPUT, ir, 1)[0]
        assert _outcome(exp.write, FC_WRITE_REGISTER, hr, [top]) == "taken"
        assert _outcome(exp.write, FC_WRITE_REGISTER, hr, [top + 1]) == ("exception", 3)
    rated_power = rm.CHG_IR_RATED_POWER
    assert exp.read(FC_READ_INPUT, rated_power, 1) == real.read(FC_READ_INPUT, rated_power, 1)
