"""The firmware tests' own plant (tests/firmware/plant.py, plain Python that MicroPython
runs) against the shared charger device (host.devices, on the real plant), register for
register: what one accepts or refuses the other does too, with the same exception code,
and the registers both model read the same for the same pack. A change to either side's
register behaviour that the other lacks fails here."""

from __future__ import annotations

import json

import pytest

from firmware.proto import regmap as rm
from host.devices.charger import ChargerDevice
from host.devices.codes import (
    FC_READ_COILS,
    FC_READ_DISCRETE,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_WRITE_COIL,
    FC_WRITE_REGISTER,
    FC_WRITE_REGISTERS,
    ModbusError,
)
from host.plant import charger_regs
from host.plant import params as P
from host.plant.charging import PackRecord, Plant
from tests.firmware import plant as test_plant
from tests.mpy_dual import ROOT

PACK_ID = 0x4E001234
TYPE_NAME = "NIO-100"
SOC = 0.43


def _pair(with_pack: bool = True) -> tuple[ChargerDevice, test_plant.Charger]:
    cfg = json.loads((ROOT / "firmware" / "station.json").read_text())
    cfg["slots"] = cfg["slots"][:1]
    real = Plant.for_station(cfg)
    small = test_plant.Plant(n_slots=1)
    if with_pack:
        real.put_pack(0, PackRecord(PACK_ID, TYPE_NAME, SOC))
        small.fill([test_plant.Pack(PACK_ID, P.PACK_TYPES[TYPE_NAME].code, soc=SOC * 100)])
    return ChargerDevice(real, 0), small.chargers[0]


def _outcome(fn, *args) -> object:
    """The registers read, None for a write taken, or ('exception', code)."""
    try:
        return fn(*args)
    except ModbusError as e:
        return ("exception", e.code)
    except test_plant.SlaveError as e:
        return ("exception", e.code)


def test_both_chargers_have_the_rating_the_map_names() -> None:
    real, small = _pair()
    for reg in (rm.CHG_HR_I_LIMIT, rm.CHG_HR_V_LIMIT, rm.CHG_HR_P_LIMIT):
        assert charger_regs.holding_range(real.plant, 0, reg)[1] == small._top(reg), reg


@pytest.mark.parametrize("address", range(rm.CHG_HOLDING_COUNT))
def test_every_holding_register_takes_and_refuses_the_same_values(address: int) -> None:
    real, _ = _pair()
    lo, hi = charger_regs.holding_range(real.plant, 0, address)
    for value in sorted({0, max(0, lo - 1), lo, (lo + hi) // 2, hi, min(0xFFFF, hi + 1), 0xFFFF}):
        for fc in (FC_WRITE_REGISTER, FC_WRITE_REGISTERS):
            real, small = _pair()  # fresh: a write taken must not colour the next
            got = (_outcome(real.write, fc, address, [value]), _outcome(small.write, fc, address, [value]))
            assert got[0] == got[1], (f"FC{fc:02d} register {address} = {value}: "
                                      f"device {got[0]}, test plant {got[1]}")
        real, small = _pair()
        real.write(FC_WRITE_REGISTER, address, [lo])
        small.write(FC_WRITE_REGISTER, address, [lo])
        if address != rm.CHG_HR_FAULT_RESET:  # reads 0 whatever was written
            assert real.read(FC_READ_HOLDING, address, 1) == small.read(FC_READ_HOLDING, address, 1) == [lo]


@pytest.mark.parametrize("request_", [
    ("read", FC_READ_COILS, 0, 1), ("read", FC_READ_DISCRETE, 0, 1),
    ("read", FC_READ_HOLDING, 0, rm.CHG_HOLDING_COUNT + 1),
    ("read", FC_READ_HOLDING, rm.CHG_HOLDING_COUNT, 1),
    ("write", FC_WRITE_COIL, 0, [1]), ("write", FC_WRITE_REGISTERS, rm.CHG_HOLDING_COUNT - 1, [0, 0]),
    ("read", FC_READ_INPUT, rm.CHG_STATUS_BASE, rm.CHG_STATUS_COUNT + 1),
    ("read", FC_READ_INPUT, rm.CHG_INFO_BASE, rm.CHG_INFO_COUNT + 1),
    ("read", FC_READ_INPUT, rm.CHG_INFO_BASE + rm.CHG_INFO_COUNT, 1),
], ids=lambda r: f"{r[0]}-fc{r[1]}-{r[2]}")
def test_requests_outside_the_map_get_the_same_exception(request_: tuple) -> None:
    kind, fc, address, arg = request_
    real, small = _pair()
    got = [_outcome(getattr(dev, kind), fc, address, arg) for dev in (real, small)]
    assert got[0] == got[1] and isinstance(got[0], tuple), got


# What the firmware acts on in each block. Not here: voltage, current, temperatures, SoH,
# energy and heartbeat, which the test plant models coarsely (a fixed 370 V, a lumped
# temperature), and the firmware version, which is each device's own.
MODELLED = (rm.CHG_IR_STATUS, rm.CHG_IR_PACK_PRESENT, rm.CHG_IR_PACK_ID_HI, rm.CHG_IR_PACK_ID_LO,
            rm.CHG_IR_PACK_TYPE, rm.CHG_IR_SOC, rm.CHG_IR_POWER, rm.CHG_IR_FAULTS,
            rm.CHG_IR_MODEL, rm.CHG_IR_RATED_POWER, rm.CHG_IR_RATED_V_MAX, rm.CHG_IR_RATED_V_MIN,
            rm.CHG_IR_RATED_I_MAX, rm.CHG_IR_PACK_CAPACITY)


def _blocks(dev) -> dict[int, int]:
    out = {}
    for base, count in ((rm.CHG_STATUS_BASE, rm.CHG_STATUS_COUNT), (rm.CHG_INFO_BASE, rm.CHG_INFO_COUNT)):
        regs = dev.read(FC_READ_INPUT, base, count)
        assert len(regs) == count
        out.update({base + k: v for k, v in enumerate(regs)})
    return out


@pytest.mark.parametrize("with_pack", [True, False], ids=["pack", "empty"])
def test_the_blocks_the_firmware_reads_agree_where_both_model_them(with_pack: bool) -> None:
    real, small = _pair(with_pack)
    a, b = _blocks(real), _blocks(small)
    differ = {k: (a[k], b[k]) for k in MODELLED if a[k] != b[k]}
    assert not differ, f"register -> (device, test plant): {differ}"
    if with_pack:
        assert a[rm.CHG_IR_PACK_PRESENT] == 1 and a[rm.CHG_IR_PACK_TYPE] == P.PACK_TYPES[TYPE_NAME].code
