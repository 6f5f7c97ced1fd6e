"""Modbus function and exception codes as the firmware's master names them, the two ways
a device fails a request, and the interface every field device implements."""

from __future__ import annotations

from typing import Protocol

from firmware.proto import modbus_rtu as mb

FC_READ_COILS = mb.FC_READ_COILS
FC_READ_DISCRETE = mb.FC_READ_DISCRETE_INPUTS
FC_READ_HOLDING = mb.FC_READ_HOLDING_REGISTERS
FC_READ_INPUT = mb.FC_READ_INPUT_REGISTERS
FC_WRITE_COIL = mb.FC_WRITE_SINGLE_COIL
FC_WRITE_REGISTER = mb.FC_WRITE_SINGLE_REGISTER
FC_WRITE_COILS = mb.FC_WRITE_MULTIPLE_COILS
FC_WRITE_REGISTERS = mb.FC_WRITE_MULTIPLE_REGISTERS
READ_FCS = (FC_READ_COILS, FC_READ_DISCRETE, FC_READ_HOLDING, FC_READ_INPUT)
BIT_FCS = (FC_READ_COILS, FC_READ_DISCRETE, FC_WRITE_COIL, FC_WRITE_COILS)

EX_ILLEGAL_FUNCTION = mb.EXC_ILLEGAL_FUNCTION
EX_ILLEGAL_ADDRESS = mb.EXC_ILLEGAL_ADDRESS
EX_ILLEGAL_VALUE = mb.EXC_ILLEGAL_VALUE
EX_DEVICE_FAILURE = mb.EXC_DEVICE_FAILURE


class ModbusError(Exception):
    """The device answers with exception ``code`` (01 function, 02 address, 03 value,
    04 device failure)."""

    def __init__(self, code: int, message: str = "exception reply") -> None:
        super().__init__(f"exception {code:02d}: {message}")
        self.code = code


class NoReply(Exception):
    """The device does not answer (dropout): the master sees a timeout."""


class Device(Protocol):
    """A field device: values of ``count`` coils, inputs or registers from ``address``;
    raises :class:`ModbusError` or :class:`NoReply`."""

    def read(self, fc: int, address: int, count: int) -> list[int]: ...

    def write(self, fc: int, address: int, values: list[int]) -> None: ...
