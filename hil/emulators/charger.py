"""Charger modules on the charger line, each one slot of the plant (``host.plant.rack.Plant``).

The register behaviour (map, ranges, exceptions, heartbeat watchdog, faults, dropout,
stuck) is the plant's own ``host.plant.charger_regs``; this adapter only routes the
Modbus function codes to it. SoC, current and temperatures come from the plant state,
which the field loop advances in real time while the firmware charges.
"""

from __future__ import annotations

from host import buses
from host.buses import (
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_WRITE_REGISTER,
    FC_WRITE_REGISTERS,
)
from host.plant import charger_regs
from host.plant.rack import Plant


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
            raise buses.SlaveError(buses.EX_ILLEGAL_FUNCTION)
        self.reads += 1
        return regs

    def write(self, fc: int, address: int, values: list[int]) -> None:
        if fc not in (FC_WRITE_REGISTER, FC_WRITE_REGISTERS):
            raise buses.SlaveError(buses.EX_ILLEGAL_FUNCTION)
        charger_regs.write_holding(self.plant, self.slot, address, values)
        self.writes += 1
