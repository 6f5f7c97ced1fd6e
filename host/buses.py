"""In-process field buses between the real firmware and the simulated plant.

Plant devices (chargers, the bay I/O module) are seen through one small interface,
``Device``: ``read(fc, address, count) -> list[int]`` and ``write(fc, address, values)``,
raising ``SlaveError(code)`` for a Modbus exception, or ``NoReply`` when the device is
off the bus (dropout). Two buses put those devices behind the firmware:

- ``wire``: ``RtuLine`` is the far end of the firmware master's in-memory serial port.
  It decodes the complete RTU request frames the master wrote (CRC, unit, function,
  PDU limits), calls the device, encodes the reply frame and hands it back after the
  time it takes on the wire at the line's baud rate, in virtual time. This module
  is the slave side only; the master is the firmware's own ``ModbusMaster``.
- ``direct``: ``DirectBus`` has the master's transaction API but calls the devices
  at once, without framing (see its docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from firmware.hal import char_time_us

# Function codes
FC_READ_COILS = 1
FC_READ_DISCRETE = 2
FC_READ_HOLDING = 3
FC_READ_INPUT = 4
FC_WRITE_COIL = 5
FC_WRITE_REGISTER = 6
FC_WRITE_COILS = 15
FC_WRITE_REGISTERS = 16

# Exception codes
EX_ILLEGAL_FUNCTION = 1
EX_ILLEGAL_ADDRESS = 2
EX_ILLEGAL_VALUE = 3
EX_DEVICE_FAILURE = 4

_READ_LIMITS = {FC_READ_COILS: 2000, FC_READ_DISCRETE: 2000, FC_READ_HOLDING: 125, FC_READ_INPUT: 125}
_WRITE_LIMITS = {FC_WRITE_COILS: 1968, FC_WRITE_REGISTERS: 123}


class SlaveError(Exception):
    """A Modbus exception reply with ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(f"modbus exception {code}")
        self.code = code


class NoReply(Exception):
    """The device is off the bus: the request goes unanswered (the master times out)."""


class Device(Protocol):
    def read(self, fc: int, address: int, count: int) -> list[int]: ...

    def write(self, fc: int, address: int, values: list[int]) -> None: ...


# --- CRC-16/MODBUS ---------------------------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    crc = 0xFFFF
    t = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ t[(crc ^ b) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    c = crc16(body)
    return body + bytes((c & 0xFF, c >> 8))


# --- slave-side PDU handling ---------------------------------------------------------------


def _pack_bits(bits: list[int]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def _unpack_bits(data: bytes, count: int) -> list[int]:
    return [(data[i >> 3] >> (i & 7)) & 1 for i in range(count)]


def _u16(data: bytes, i: int) -> int:
    return (data[i] << 8) | data[i + 1]


def handle_pdu(device: Device, pdu: bytes) -> bytes:
    """Answer one request PDU (function code + data) with the reply PDU, exceptions included."""
    fc = pdu[0]
    try:
        return bytes((fc,)) + _dispatch(device, fc, pdu)
    except SlaveError as e:
        return bytes((fc | 0x80, e.code))


def _dispatch(device: Device, fc: int, pdu: bytes) -> bytes:
    n = len(pdu)
    if fc in _READ_LIMITS:
        if n != 5:
            raise SlaveError(EX_ILLEGAL_VALUE)
        addr, count = _u16(pdu, 1), _u16(pdu, 3)
        if not 1 <= count <= _READ_LIMITS[fc]:
            raise SlaveError(EX_ILLEGAL_VALUE)
        values = device.read(fc, addr, count)
        if fc <= FC_READ_DISCRETE:
            data = _pack_bits(values)
        else:
            data = b"".join((v & 0xFFFF).to_bytes(2, "big") for v in values)
        return bytes((len(data),)) + data
    if fc == FC_WRITE_COIL:
        if n != 5:
            raise SlaveError(EX_ILLEGAL_VALUE)
        raw = _u16(pdu, 3)
        if raw not in (0x0000, 0xFF00):
            raise SlaveError(EX_ILLEGAL_VALUE)
        device.write(fc, _u16(pdu, 1), [1 if raw else 0])
        return pdu[1:5]
    if fc == FC_WRITE_REGISTER:
        if n != 5:
            raise SlaveError(EX_ILLEGAL_VALUE)
        device.write(fc, _u16(pdu, 1), [_u16(pdu, 3)])
        return pdu[1:5]
    if fc in _WRITE_LIMITS:
        if n < 6:
            raise SlaveError(EX_ILLEGAL_VALUE)
        addr, count, nbytes = _u16(pdu, 1), _u16(pdu, 3), pdu[5]
        want = (count + 7) // 8 if fc == FC_WRITE_COILS else 2 * count
        if not 1 <= count <= _WRITE_LIMITS[fc] or nbytes != want or n != 6 + nbytes:
            raise SlaveError(EX_ILLEGAL_VALUE)
        data = pdu[6:]
        if fc == FC_WRITE_COILS:
            values = _unpack_bits(data, count)
        else:
            values = [_u16(data, 2 * i) for i in range(count)]
        device.write(fc, addr, values)
        return pdu[1:5]
    raise SlaveError(EX_ILLEGAL_FUNCTION)


# --- wire mode -------------------------------------------------------------------------------


class RtuLine:
    """The slave side of one RS-485 line: every device on it, behind the master's MemSerialPort.

    ``take_request(now_us)`` collects what the master wrote; when that is a complete frame
    for a device on the line, the reply is computed at once (the plant is advanced to the
    request time by the caller) and becomes due at ``reply_due_us``: the request's and
    the reply's wire times plus a turnaround. ``deliver(now_us)`` then puts the reply
    bytes where the master's ``readinto`` finds them. Frames for absent units, with bad
    CRCs, or for devices raising ``NoReply``, get no reply, as on a real line.
    """

    def __init__(self, port: object, devices: Mapping[int, Device], turnaround_us: int = 500,
                 observe: Callable[[int, int], None] | None = None) -> None:
        self.port = port  # firmware.drivers.mem.MemSerialPort (master end)
        self.devices = dict(devices)
        baud = getattr(port, "baudrate", 115200)
        self.char_us = char_time_us(baud)
        self.gap_us = 1750 if baud > 19200 else (35 * self.char_us + 9) // 10
        self.turnaround_us = turnaround_us
        self.reply: bytes = b""
        self.reply_due_us = -1
        self.frames = 0
        self.bad_frames = 0
        self.unanswered = 0
        self.observe = observe

    def take_request(self, now_us: int) -> bool:
        """Consume a request the master wrote; True when a reply is now pending."""
        raw = self.port.take_written()  # type: ignore[attr-defined]
        if not raw:
            return False
        self.frames += 1
        if len(raw) < 4 or crc16(raw) != 0:
            self.bad_frames += 1
            return False
        unit = raw[0]
        if unit == 0:  # broadcast: every device acts on it, none answers
            for d in self.devices.values():
                try:
                    handle_pdu(d, raw[1:-2])
                except NoReply:
                    pass
            return False
        device = self.devices.get(unit)
        if device is None:
            self.unanswered += 1
            return False
        try:
            pdu = handle_pdu(device, raw[1:-2])
        except NoReply:
            self.unanswered += 1
            return False
        if self.observe is not None:
            self.observe(unit, raw[1])
        self.reply = with_crc(bytes((unit,)) + pdu)
        wire = (len(raw) + len(self.reply)) * self.char_us + 2 * self.gap_us
        self.reply_due_us = now_us + wire + self.turnaround_us
        return True

    def deliver(self) -> None:
        self.port.inject(self.reply)  # type: ignore[attr-defined]
        self.reply = b""
        self.reply_due_us = -1
