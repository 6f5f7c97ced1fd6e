"""A charger module on the bus: one slot of the plant (``host.plant.charging.Plant``), or of
the queueing-validation plant (``host.plant.expcharge``).

The register behaviour (map, ranges, exceptions, heartbeat watchdog, faults, dropout,
stuck) is the plant's own :mod:`host.plant.charger_regs`; this device routes the Modbus
function codes to it, and offers the direct bus two copy-free paths.
"""

from __future__ import annotations

from typing import Any

from firmware.proto import regmap as R
from host.devices.codes import (
    EX_ILLEGAL_ADDRESS,
    EX_ILLEGAL_FUNCTION,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_WRITE_REGISTER,
    FC_WRITE_REGISTERS,
    ModbusError,
)
from host.plant import charger_regs
from host.plant.charging import Plant
from host.plant.expcharge import ExpChargeRack


class ChargerDevice:
    """Charger of ``slot`` as a Modbus device (FC03, FC04, FC06, FC16)."""

    def __init__(self, plant: Plant, slot: int) -> None:
        self.plant = plant
        self.slot = slot
        self.reads = 0
        self.writes = 0

    def read(self, fc: int, address: int, count: int) -> list[int]:
        if fc == FC_READ_INPUT:
            regs = charger_regs.read_input(self.plant, self.slot, address, count)
        elif fc == FC_READ_HOLDING:
            regs = charger_regs.read_holding(self.plant, self.slot, address, count)
        else:
            raise ModbusError(EX_ILLEGAL_FUNCTION)
        self.reads += 1
        return regs

    def read_into(self, fc: int, address: int, count: int, out: Any) -> None:
        """``read`` with the values put into ``out`` (the direct bus's transaction buffer)."""
        if fc == FC_READ_INPUT:
            charger_regs.read_input_into(self.plant, self.slot, address, count, out)
            self.reads += 1
            return
        got = self.read(fc, address, count)
        for i in range(count):
            out[i] = got[i]

    def write(self, fc: int, address: int, values: list[int]) -> None:
        if fc not in (FC_WRITE_REGISTER, FC_WRITE_REGISTERS):
            raise ModbusError(EX_ILLEGAL_FUNCTION)
        charger_regs.write_holding(self.plant, self.slot, address, values)
        self.writes += 1

    def write_frame(self, address: int, count: int, frame: Any, offset: int) -> None:
        """FC16 of ``count`` registers whose values are big-endian in ``frame`` from ``offset``
        (the direct bus hands over the request frame instead of a list)."""
        if address == R.CHG_CONTROL_BASE and count == R.CHG_CONTROL_COUNT:
            charger_regs.write_control_frame(self.plant, self.slot, frame, offset)
        else:
            charger_regs.write_holding(self.plant, self.slot, address,
                                       [(frame[offset + 2 * k] << 8) | frame[offset + 2 * k + 1]
                                        for k in range(count)])
        self.writes += 1


class ExpChargerDevice:
    """Charger ``slot`` of an ``ExpChargeRack`` on the bus."""

    def __init__(self, rack: ExpChargeRack, slot: int) -> None:
        self.rack = rack
        self.slot = slot

    def read(self, fc: int, address: int, count: int) -> list[int]:
        r, i = self.rack, self.slot
        if fc == FC_READ_INPUT:
            regs = r.input_registers(i)
            try:
                return [regs[k] for k in range(address, address + count)]
            except KeyError:
                raise ModbusError(EX_ILLEGAL_ADDRESS) from None
        if fc == FC_READ_HOLDING:
            if address + count > R.CHG_HOLDING_COUNT:
                raise ModbusError(EX_ILLEGAL_ADDRESS)
            hr = [r.enable[i], R.CHG_RATED_I_MAX, R.CHG_RATED_V_MAX, int(r.p_limit_w[i] / 100), r.target[i],
                  r.hb[i], R.CHG_WATCHDOG_DEFAULT_MS, 0]
            return hr[address:address + count]
        raise ModbusError(EX_ILLEGAL_FUNCTION)

    def write(self, fc: int, address: int, values: list[int]) -> None:
        if fc not in (FC_WRITE_REGISTER, FC_WRITE_REGISTERS):
            raise ModbusError(EX_ILLEGAL_FUNCTION)
        r, i = self.rack, self.slot
        charger_regs.check_holding_write(address, values, (R.CHG_RATED_I_MAX, R.CHG_RATED_V_MAX,
                                                           int(round(r.p_rated_w / 100.0))))
        for k, v in enumerate(values):
            reg = address + k
            if reg == R.CHG_HR_ENABLE:
                r.enable[i] = 1 if v == 1 else 0
            elif reg == R.CHG_HR_P_LIMIT:
                r.p_limit_w[i] = v * 100.0
            elif reg == R.CHG_HR_TARGET_SOC:
                r.target[i] = v
            elif reg == R.CHG_HR_HEARTBEAT:
                r.hb[i] = v
