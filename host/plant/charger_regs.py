"""The charger register map (docs/register-map.md) over the plant's arrays.

``read_input`` / ``read_holding`` / ``write_holding`` behave as a charger module on the
bus: unmapped addresses raise :class:`ModbusError` with exception code 02, values out
of range code 03 (and nothing is written), a charger with an injected ``dropout``
raises :class:`NoReply`. A ``stuck`` charger answers with the registers it had when
it froze and ignores writes. Each charger's rated current, voltage and power are its
own (the plant's per-slot ``i_rated``, ``v_rated``, ``p_rated``): its info block reports
them and its current, voltage and power limits range up to them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from firmware.proto import regmap
from host.devices.codes import EX_ILLEGAL_ADDRESS, EX_ILLEGAL_VALUE, ModbusError, NoReply
from host.plant import params as P

if TYPE_CHECKING:
    from host.plant.charging import Plant

FW_VERSION = 0x0100


def _s16(value: float) -> int:
    return regmap.u16(max(-0x8000, min(0x7FFF, round(value))))


def _u16(value: float) -> int:
    return max(0, min(0xFFFF, round(value)))


def _pack(plant: Plant, slot: int) -> tuple[Any, bool, bool, P.PackType | None]:
    """(arrays, pack present, BMS link up, pack type or None) of charger ``slot``."""
    a = plant.arrays
    present = bool(a["present"][slot])
    bms_ok = present and not a["fault_inj"][slot] & P.INJ_BMS_COMM
    name = plant.pack_type_name[slot]
    pt = P.PACK_TYPES[name] if (present and name) else None
    return a, present, bool(bms_ok), pt


def _pid(plant: Plant, slot: int, bms_ok: bool) -> tuple[int, int]:
    return regmap.split32(int(plant.pack_id[slot]) & 0xFFFFFFFF) if bms_ok else (0, 0)


# A charger's rated values as its info block reports them (raw) and its limit registers take them.
def _rated_i(a: Any, slot: int) -> int:
    return _u16(a["i_rated"][slot] * 10.0)


def _rated_v(a: Any, slot: int) -> int:
    return _u16(a["v_rated"][slot] * 10.0)


def _rated_p(a: Any, slot: int) -> int:
    return _u16(a["p_rated"][slot] / 100.0)


def _energy(a: Any, slot: int) -> tuple[int, int]:
    return regmap.split32(int(a["e_out"][slot] / 3600.0) & 0xFFFFFFFF)


# One function per mapped input register: (plant, slot, arrays, present, bms_ok, pack type) -> raw.
# The plant is typed Any here: charging.py imports this module, so Plant's attributes are not yet known.
_IR: dict[int, Callable[[Any, int, Any, bool, bool, Any], int]] = {
    regmap.CHG_IR_STATUS: lambda pl, s, a, pr, ok, pt: int(a["status"][s]),
    regmap.CHG_IR_PACK_PRESENT: lambda pl, s, a, pr, ok, pt: 1 if ok else 0,
    regmap.CHG_IR_PACK_ID_HI: lambda pl, s, a, pr, ok, pt: _pid(pl, s, ok)[0],
    regmap.CHG_IR_PACK_ID_LO: lambda pl, s, a, pr, ok, pt: _pid(pl, s, ok)[1],
    regmap.CHG_IR_PACK_TYPE: lambda pl, s, a, pr, ok, pt: pt.code if (ok and pt) else regmap.PACK_NONE,
    regmap.CHG_IR_SOC: lambda pl, s, a, pr, ok, pt: min(1000, _u16(a["soc"][s] * 1000.0)) if ok else 0,
    regmap.CHG_IR_SOH: lambda pl, s, a, pr, ok, pt: min(1000, _u16(a["soh"][s] * 1000.0)) if ok else 0,
    regmap.CHG_IR_VOLTAGE: lambda pl, s, a, pr, ok, pt: _u16(a["v_term"][s] * 10.0) if pr else 0,
    regmap.CHG_IR_CURRENT: lambda pl, s, a, pr, ok, pt: _s16(a["i_out"][s] * 10.0),
    regmap.CHG_IR_POWER: lambda pl, s, a, pr, ok, pt: _s16(a["p_out"][s] / 100.0),
    regmap.CHG_IR_TEMP_MAX: lambda pl, s, a, pr, ok, pt: _s16(pl.cell_temp_max(s) * 10.0) if ok else 0,
    regmap.CHG_IR_TEMP_MIN: lambda pl, s, a, pr, ok, pt: _s16(pl.cell_temp_min(s) * 10.0) if ok else 0,
    regmap.CHG_IR_FAULTS: lambda pl, s, a, pr, ok, pt: int(a["faults"][s]),
    regmap.CHG_IR_ENERGY_HI: lambda pl, s, a, pr, ok, pt: _energy(a, s)[0],
    regmap.CHG_IR_ENERGY_LO: lambda pl, s, a, pr, ok, pt: _energy(a, s)[1],
    regmap.CHG_IR_HEARTBEAT: lambda pl, s, a, pr, ok, pt: int(pl.time_s(pl.station_of(s))) & 0xFFFF,
    regmap.CHG_IR_MODEL: lambda pl, s, a, pr, ok, pt: regmap.CHG_MODEL_CODE,
    regmap.CHG_IR_FW_VERSION: lambda pl, s, a, pr, ok, pt: FW_VERSION,
    regmap.CHG_IR_RATED_POWER: lambda pl, s, a, pr, ok, pt: _rated_p(a, s),
    regmap.CHG_IR_RATED_V_MAX: lambda pl, s, a, pr, ok, pt: _rated_v(a, s),
    regmap.CHG_IR_RATED_V_MIN: lambda pl, s, a, pr, ok, pt: _u16(pl.charger.v_rated_min * 10.0),
    regmap.CHG_IR_RATED_I_MAX: lambda pl, s, a, pr, ok, pt: _rated_i(a, s),
    regmap.CHG_IR_PACK_CAPACITY: lambda pl, s, a, pr, ok, pt: (
        _u16(pt.capacity_kwh * 10.0) if (ok and pt) else 0
    ),
    regmap.CHG_IR_PACK_CYCLES: lambda pl, s, a, pr, ok, pt: _u16(a["efc"][s]) if ok else 0,
    regmap.CHG_IR_COOLANT_TEMP: lambda pl, s, a, pr, ok, pt: _s16(a["ch_temp"][s] * 10.0),
}


def snapshot(plant: Plant, slot: int) -> dict[int, int]:
    """Every mapped input register of charger ``slot``, as it reads now."""
    a, present, bms_ok, pt = _pack(plant, slot)
    return {k: f(plant, slot, a, present, bms_ok, pt) for k, f in _IR.items()}


def _check_online(plant: Plant, slot: int) -> None:
    if plant.arrays["fault_inj"][slot] & P.INJ_DROPOUT:
        raise NoReply(f"charger in slot {slot} does not answer")


def read_input(plant: Plant, slot: int, address: int, count: int) -> list[int]:
    """FC04: ``count`` input registers from ``address``."""
    _check_online(plant, slot)
    if count < 1 or count > 125:
        raise ModbusError(EX_ILLEGAL_VALUE, f"count {count}")
    regs = plant.frozen_inputs.get(slot)
    if regs:
        try:
            return [regs[k] for k in range(address, address + count)]
        except KeyError as e:
            raise ModbusError(EX_ILLEGAL_ADDRESS, f"input register {e.args[0]} is not mapped") from None
    # Only the registers asked for: a poll reads a handful, and building all of them was a
    # fifth of a direct-mode run.
    for k in range(address, address + count):
        if k not in _IR:
            raise ModbusError(EX_ILLEGAL_ADDRESS, f"input register {k} is not mapped")
    a, present, bms_ok, pt = _pack(plant, slot)
    return [_IR[k](plant, slot, a, present, bms_ok, pt) for k in range(address, address + count)]


def read_input_into(plant: Plant, slot: int, address: int, count: int, out: Any) -> None:
    """FC04 like :func:`read_input`, the values put into ``out`` (``count`` slots, e.g. the
    master's ``array('H')``). A status-block read of a compiled plant is computed there."""
    fast = plant.status_regs
    if (fast is not None and 0 <= address and address + count <= regmap.CHG_STATUS_COUNT and count >= 1
            and not plant.arrays["fault_inj"][slot] & (P.INJ_DROPOUT | P.INJ_STUCK)):
        fast.read_into(slot, address, count, out)
        return
    got = read_input(plant, slot, address, count)
    for i in range(count):
        out[i] = got[i]


def write_control_frame(plant: Plant, slot: int, frame: Any, offset: int) -> None:
    """FC16 of the whole control block (registers 0..5) like :func:`write_holding`, the six
    values big-endian in ``frame[offset:offset + 12]`` (the request frame's data)."""
    fast = plant.control_write
    if (fast is not None and not plant.arrays["fault_inj"][slot] & (P.INJ_DROPOUT | P.INJ_STUCK)
            and fast.apply(slot, frame, offset)):
        return
    write_holding(plant, slot, regmap.CHG_CONTROL_BASE,
                  [(frame[offset + 2 * k] << 8) | frame[offset + 2 * k + 1] for k in range(6)])


# Holding registers: address -> (lowest, highest) of the accepted raw values ...
_HOLDING_RANGES = {
    regmap.CHG_HR_ENABLE: (0, 1),
    regmap.CHG_HR_TARGET_SOC: (0, 1000),
    regmap.CHG_HR_HEARTBEAT: (0, 0xFFFF),
    regmap.CHG_HR_WATCHDOG_MS: (regmap.CHG_WATCHDOG_MIN_MS, regmap.CHG_WATCHDOG_MAX_MS),
    regmap.CHG_HR_FAULT_RESET: (0, 1),
}
# ... and the limits, 0 up to the charger's own rating.
_RATED_LIMITS: dict[int, Callable[[Any, int], int]] = {
    regmap.CHG_HR_I_LIMIT: _rated_i,
    regmap.CHG_HR_V_LIMIT: _rated_v,
    regmap.CHG_HR_P_LIMIT: _rated_p,
}


def holding_range(plant: Plant, slot: int, address: int) -> tuple[int, int]:
    """(lowest, highest) raw value holding register ``address`` of charger ``slot`` accepts."""
    rated = _RATED_LIMITS.get(address)
    return (0, rated(plant.arrays, slot)) if rated is not None else _HOLDING_RANGES[address]


def _check_holding_span(address: int, count: int) -> None:
    if address < 0 or address + count > regmap.CHG_HOLDING_COUNT:
        raise ModbusError(EX_ILLEGAL_ADDRESS, f"holding registers {address}..{address + count - 1}")


def check_holding_write(address: int, values: Sequence[int], rated: tuple[int, int, int]) -> None:
    """What a charger refuses of an FC06/FC16 write, before it applies any value: an empty
    write, registers off the map (02), a value out of its range (03). ``rated``: the
    charger's raw current, voltage and power ratings, the tops of its limit registers.
    The plant's chargers and the queueing-validation plant's share it."""
    if not values:
        raise ModbusError(EX_ILLEGAL_VALUE, "no values")
    _check_holding_span(address, len(values))
    tops = {regmap.CHG_HR_I_LIMIT: rated[0], regmap.CHG_HR_V_LIMIT: rated[1], regmap.CHG_HR_P_LIMIT: rated[2]}
    for k, raw in enumerate(values):
        reg = address + k
        lo, hi = (0, tops[reg]) if reg in tops else _HOLDING_RANGES[reg]
        if not lo <= raw <= hi:
            raise ModbusError(EX_ILLEGAL_VALUE, f"holding register {reg}: {raw} outside {lo}..{hi}")


def read_holding(plant: Plant, slot: int, address: int, count: int) -> list[int]:
    """FC03: the setpoints as written (fault reset reads 0)."""
    _check_online(plant, slot)
    _check_holding_span(address, count)
    a = plant.arrays
    regs = [
        int(a["enable"][slot]),
        _u16(a["set_i"][slot] * 10.0),
        _u16(a["set_v"][slot] * 10.0),
        _u16(a["set_p"][slot] / 100.0),
        _u16(a["target_soc"][slot] * 1000.0),
        int(plant.heartbeat_value[slot]) & 0xFFFF,
        _u16(a["wd_timeout"][slot] * 1000.0),
        0,
    ]
    return regs[address:address + count]


def write_holding(plant: Plant, slot: int, address: int, values: Sequence[int]) -> None:
    """FC06/FC16: check every value, then apply them in address order."""
    _check_online(plant, slot)
    a = plant.arrays
    check_holding_write(address, values, (_rated_i(a, slot), _rated_v(a, slot), _rated_p(a, slot)))
    if plant.arrays["fault_inj"][slot] & P.INJ_STUCK:
        return  # a frozen charger acknowledges and does nothing
    for k, raw in enumerate(values):
        reg = address + k
        if reg == regmap.CHG_HR_ENABLE:
            plant.set_enable(slot, raw == 1)
        elif reg == regmap.CHG_HR_I_LIMIT:
            plant.set_limits(slot, current_a=raw * 0.1)
        elif reg == regmap.CHG_HR_V_LIMIT:
            plant.set_limits(slot, voltage_v=raw * 0.1)
        elif reg == regmap.CHG_HR_P_LIMIT:
            plant.set_limits(slot, power_w=raw * 100.0)
        elif reg == regmap.CHG_HR_TARGET_SOC:
            plant.set_target_soc(slot, raw / 1000.0)
        elif reg == regmap.CHG_HR_HEARTBEAT:
            plant.heartbeat(slot, raw)
        elif reg == regmap.CHG_HR_WATCHDOG_MS:
            plant.set_watchdog(slot, raw / 1000.0)
        elif reg == regmap.CHG_HR_FAULT_RESET and raw == 1:
            plant.fault_reset(slot)
