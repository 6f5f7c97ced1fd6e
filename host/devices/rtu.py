"""The slave side of Modbus RTU, for every line that puts the field devices behind the
firmware's master: where a request frame ends, and the reply PDU a device gives to a
request PDU (exception replies included). Framing of the reply: :func:`with_crc`."""

from __future__ import annotations

from collections.abc import Callable

from firmware.proto.crc16 import crc16
from host.devices.codes import (
    EX_ILLEGAL_FUNCTION,
    EX_ILLEGAL_VALUE,
    FC_READ_COILS,
    FC_READ_DISCRETE,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_WRITE_COIL,
    FC_WRITE_COILS,
    FC_WRITE_REGISTER,
    FC_WRITE_REGISTERS,
    Device,
    ModbusError,
)

READ_LIMITS = {FC_READ_COILS: 2000, FC_READ_DISCRETE: 2000, FC_READ_HOLDING: 125, FC_READ_INPUT: 125}
WRITE_LIMITS = {FC_WRITE_COILS: 1968, FC_WRITE_REGISTERS: 123}
_FIXED_LENGTH = (*READ_LIMITS, FC_WRITE_COIL, FC_WRITE_REGISTER)

# What a device was asked and answered: (function, address, values read or written).
Seen = Callable[[int, int, list[int]], None]


def with_crc(body: bytes) -> bytes:
    c = crc16(body)
    return body + bytes((c & 0xFF, c >> 8))


def request_length(buf: bytes | bytearray) -> int | None:
    """Length of the request frame at the start of ``buf``: None while it cannot be told
    yet, 0 for a function code a slave cannot frame (a line drops such bytes)."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if fc in _FIXED_LENGTH:
        return 8
    if fc in WRITE_LIMITS:
        return None if len(buf) < 7 else 9 + buf[6]
    return 0


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


def handle_pdu(device: Device, pdu: bytes, seen: Seen | None = None) -> bytes:
    """Answer one request PDU (function code + data) with the reply PDU, exceptions
    included; ``NoReply`` from the device passes through. ``seen`` hears every request
    the device served."""
    fc = pdu[0]
    try:
        return bytes((fc,)) + _dispatch(device, fc, pdu, seen)
    except ModbusError as e:
        return bytes((fc | 0x80, e.code))


def _dispatch(device: Device, fc: int, pdu: bytes, seen: Seen | None) -> bytes:
    n = len(pdu)
    if fc in READ_LIMITS:
        if n != 5:
            raise ModbusError(EX_ILLEGAL_VALUE)
        addr, count = _u16(pdu, 1), _u16(pdu, 3)
        if not 1 <= count <= READ_LIMITS[fc]:
            raise ModbusError(EX_ILLEGAL_VALUE)
        values = device.read(fc, addr, count)
        if seen is not None:
            seen(fc, addr, list(values))
        if fc <= FC_READ_DISCRETE:
            data = _pack_bits(values)
        else:
            data = b"".join((v & 0xFFFF).to_bytes(2, "big") for v in values)
        return bytes((len(data),)) + data
    if fc in (FC_WRITE_COIL, FC_WRITE_REGISTER):
        if n != 5:
            raise ModbusError(EX_ILLEGAL_VALUE)
        raw = _u16(pdu, 3)
        if fc == FC_WRITE_COIL:
            if raw not in (0x0000, 0xFF00):
                raise ModbusError(EX_ILLEGAL_VALUE)
            raw = 1 if raw else 0
        addr = _u16(pdu, 1)
        device.write(fc, addr, [raw])
        if seen is not None:
            seen(fc, addr, [raw])
        return pdu[1:5]
    if fc in WRITE_LIMITS:
        if n < 6:
            raise ModbusError(EX_ILLEGAL_VALUE)
        addr, count, nbytes = _u16(pdu, 1), _u16(pdu, 3), pdu[5]
        want = (count + 7) // 8 if fc == FC_WRITE_COILS else 2 * count
        if not 1 <= count <= WRITE_LIMITS[fc] or nbytes != want or n != 6 + nbytes:
            raise ModbusError(EX_ILLEGAL_VALUE)
        data = pdu[6:]
        if fc == FC_WRITE_COILS:
            values = _unpack_bits(data, count)
        else:
            values = [_u16(data, 2 * i) for i in range(count)]
        device.write(fc, addr, values)
        if seen is not None:
            seen(fc, addr, values)
        return pdu[1:5]
    raise ModbusError(EX_ILLEGAL_FUNCTION)
