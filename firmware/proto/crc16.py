"""CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF), table-driven.

The 256-entry table is built once at import into an ``array('H')`` (512 bytes).
The functions work on a range of a caller's buffer, so no call allocates: the
loop runs over small ints only. On the wire the CRC goes low byte first.
"""

from array import array

_TABLE = array("H", bytes(512))


def _build():
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        _TABLE[i] = c


_build()


def crc16(buf, start=0, end=-1):
    """CRC of ``buf[start:end]`` (``end`` -1: to the end of ``buf``)."""
    if end < 0:
        end = len(buf)
    crc = 0xFFFF
    t = _TABLE
    for i in range(start, end):
        crc = (crc >> 8) ^ t[(crc ^ buf[i]) & 0xFF]
    return crc


def append_crc(buf, n):
    """Write the CRC of ``buf[0:n]`` into ``buf[n]``, ``buf[n+1]``; return ``n + 2``."""
    crc = crc16(buf, 0, n)
    buf[n] = crc & 0xFF
    buf[n + 1] = crc >> 8
    return n + 2


def check_crc(buf, start, length):
    """True when the ``length``-byte frame at ``buf[start]`` ends in its correct CRC."""
    if length < 3:
        return False
    end = start + length - 2
    crc = crc16(buf, start, end)
    return buf[end] == (crc & 0xFF) and buf[end + 1] == (crc >> 8)
