"""Rack and dispatch test helpers for both interpreters: a station config and charger
status blocks as a Modbus read returns them."""

import json

from firmware.core import config
from firmware.proto import regmap as rm


def station_cfg(mutate=None):
    """Validated default station config."""
    with open(config.default_path()) as f:
        raw = json.load(f)
    if mutate is not None:
        mutate(raw)
    return config.validate(raw)


def status_regs(
    pack=None,
    code=1,
    soc=50.0,
    soh=98.0,
    t_max=30.0,
    t_min=None,
    status=None,
    faults=0,
    volt=370.0,
    amps=0.0,
    power=0.0,
):
    """A CHG_STATUS_COUNT block. pack None: no pack present."""
    r = [0] * rm.CHG_STATUS_COUNT
    if pack is not None:
        r[rm.CHG_IR_PACK_PRESENT] = 1
        r[rm.CHG_IR_PACK_ID_HI], r[rm.CHG_IR_PACK_ID_LO] = rm.split32(pack)
        r[rm.CHG_IR_PACK_TYPE] = code
        r[rm.CHG_IR_SOC] = int(round(soc * 10))
        r[rm.CHG_IR_SOH] = int(round(soh * 10))
        r[rm.CHG_IR_VOLTAGE] = int(round(volt * 10))
        r[rm.CHG_IR_CURRENT] = rm.u16(int(round(amps * 10)))
        r[rm.CHG_IR_POWER] = rm.u16(int(round(power * 10)))
        r[rm.CHG_IR_TEMP_MAX] = rm.u16(int(round(t_max * 10)))
        r[rm.CHG_IR_TEMP_MIN] = rm.u16(int(round((t_max - 2 if t_min is None else t_min) * 10)))
        r[rm.CHG_IR_STATUS] = rm.CHG_ST_CHARGING if status is None else status
    else:
        r[rm.CHG_IR_STATUS] = rm.CHG_ST_STANDBY if status is None else status
    r[rm.CHG_IR_FAULTS] = faults
    return r


def info_regs(cycles):
    r = [0] * rm.CHG_INFO_COUNT
    r[rm.CHG_IR_PACK_CYCLES - rm.CHG_INFO_BASE] = cycles
    return r


def fill(rack, now, packs):
    """packs: {slot: kwargs for status_regs}; every other slot reads empty."""
    for i in range(rack.n):
        rack.update_from_charger(i, status_regs(**packs[i]) if i in packs else status_regs(), now)
