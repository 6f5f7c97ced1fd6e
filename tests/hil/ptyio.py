"""A bare RTU master on the master side of a pty, for testing the emulators frame by frame."""

from __future__ import annotations

import os
import select
import time
import tty

from firmware.proto.crc16 import crc16
from host.devices.rtu import with_crc


class PtyMaster:
    """Opens a pty; the emulator listens on ``path`` (the slave side), the test talks here."""

    def __init__(self) -> None:
        self.fd, self._slave = os.openpty()
        tty.setraw(self.fd)
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)

    def close(self) -> None:
        for fd in (self.fd, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def send_raw(self, data: bytes) -> None:
        os.write(self.fd, data)

    def recv(self, timeout: float = 0.5) -> bytes:
        """Bytes until a frame with a good CRC arrived, or ``timeout`` passed."""
        end = time.monotonic() + timeout
        out = b""
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return out
            r, _, _ = select.select([self.fd], [], [], min(left, 0.02))
            if r:
                out += os.read(self.fd, 512)
                if len(out) >= 5 and crc16(out) == 0:
                    return out

    def txn(self, pdu_with_unit: bytes, timeout: float = 0.5) -> bytes:
        """Send one request (unit + PDU, CRC added) and return the reply (b"" if none)."""
        self.drain()
        self.send_raw(with_crc(pdu_with_unit))
        return self.recv(timeout)

    def drain(self) -> None:
        while select.select([self.fd], [], [], 0)[0]:
            os.read(self.fd, 512)


def read_regs(m: PtyMaster, unit: int, fc: int, address: int, count: int) -> list[int]:
    r = m.txn(bytes([unit, fc]) + address.to_bytes(2, "big") + count.to_bytes(2, "big"))
    assert len(r) == 5 + 2 * count and r[1] == fc, f"bad reply {r.hex()}"
    return [int.from_bytes(r[3 + 2 * i: 5 + 2 * i], "big") for i in range(count)]


def read_bits(m: PtyMaster, unit: int, fc: int, address: int, count: int) -> list[int]:
    r = m.txn(bytes([unit, fc]) + address.to_bytes(2, "big") + count.to_bytes(2, "big"))
    assert r[1:2] == bytes([fc]) and r[2] == (count + 7) // 8, f"bad reply {r.hex()}"
    v = int.from_bytes(r[3:3 + r[2]], "little")
    return [(v >> i) & 1 for i in range(count)]


def write_regs(m: PtyMaster, unit: int, address: int, values: list[int]) -> bytes:
    head = address.to_bytes(2, "big") + len(values).to_bytes(2, "big")
    body = bytes([unit, 16]) + head + bytes([2 * len(values)])
    body += b"".join(v.to_bytes(2, "big") for v in values)
    return m.txn(body)


def write_coils(m: PtyMaster, unit: int, address: int, bits: list[int]) -> bytes:
    packed = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            packed[i >> 3] |= 1 << (i & 7)
    head = address.to_bytes(2, "big") + len(bits).to_bytes(2, "big")
    body = bytes([unit, 15]) + head + bytes([len(packed)])
    return m.txn(body + bytes(packed))
