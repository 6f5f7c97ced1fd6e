"""Test rig for the RTU master, on MicroPython and CPython: in-memory slaves,
virtual ms/us clocks and ports that misbehave on purpose.

``MemSlaves(port)`` answers whole frames the master wrote to a MemSerialPort, so
in virtual time a reply is there as soon as ``step()`` runs.
"""

from firmware.compat import ticks_add
from firmware.drivers.mem import MemSerialPort
from firmware.hal import SerialPort
from firmware.proto import modbus_rtu as mb
from firmware.proto.crc16 import append_crc, check_crc


class Unit:
    def __init__(self, n=64, bits=None):
        self.coils = bytearray(bits or n)  # bytes: a 2000-bit table stays small
        self.inputs = bytearray(bits or n)
        self.holding = [0] * n
        self.input_regs = [0] * n
        self.exception = 0  # answer every request with this exception code
        self.silent = False


class MemSlaves:
    def __init__(self, port):
        self.port = port
        self.units = {}
        self.requests = []  # every frame received, as bytes
        self.out = bytearray(260)

    def add(self, unit, n=64, bits=None):
        u = self.units[unit] = Unit(n, bits)
        return u

    def step(self, reply=True):
        """Answer what the master wrote; returns the reply bytes (b"" if none)."""
        data = self.port.take_written()
        if not data:
            return b""
        self.requests.append(data)
        r = self.reply_for(data)
        if r and reply:
            self.port.inject(r)
        return r

    def reply_for(self, req):
        if len(req) < 8 or not check_crc(req, 0, len(req)):
            return b""
        unit, fc = req[0], req[1]
        addr = (req[2] << 8) | req[3]
        if unit == 0:
            for u in self.units.values():
                self._apply(u, fc, addr, req)
            return b""
        u = self.units.get(unit)
        if u is None or u.silent:
            return b""
        o = self.out
        o[0] = unit
        if u.exception:
            o[1] = fc | 0x80
            o[2] = u.exception
            return bytes(o[: append_crc(o, 3)])
        o[1] = fc
        qty = (req[4] << 8) | req[5]
        if fc in (1, 2):
            table = u.coils if fc == 1 else u.inputs
            nb = (qty + 7) // 8
            o[2] = nb
            for i in range(nb):
                o[3 + i] = 0
            for i in range(qty):
                if table[addr + i]:
                    o[3 + i // 8] |= 1 << (i % 8)
            return bytes(o[: append_crc(o, 3 + nb)])
        if fc in (3, 4):
            table = u.holding if fc == 3 else u.input_regs
            o[2] = 2 * qty
            for i in range(qty):
                o[3 + 2 * i] = table[addr + i] >> 8
                o[4 + 2 * i] = table[addr + i] & 0xFF
            return bytes(o[: append_crc(o, 3 + 2 * qty)])
        self._apply(u, fc, addr, req)
        for i in range(6):
            o[i] = req[i]
        return bytes(o[: append_crc(o, 6)])

    def _apply(self, u, fc, addr, req):
        if fc == 5:
            u.coils[addr] = 1 if req[4] else 0
        elif fc == 6:
            u.holding[addr] = (req[4] << 8) | req[5]
        elif fc == 15:
            qty = (req[4] << 8) | req[5]
            for i in range(qty):
                u.coils[addr + i] = (req[7 + i // 8] >> (i % 8)) & 1
        elif fc == 16:
            qty = (req[4] << 8) | req[5]
            for i in range(qty):
                u.holding[addr + i] = (req[7 + 2 * i] << 8) | req[8 + 2 * i]


class QuietPort(SerialPort):
    """A SerialPort that allocates nothing, so heap and CPU figures are the master's.

    ``answer(request)`` (memoryview of the written frame) returns the reply to
    queue, or None; replies are copied into a fixed buffer."""

    def __init__(self, answer=None, baudrate=115200):
        self.baudrate = baudrate
        self.answer = answer
        self.rx = bytearray(512)
        self.rlen = 0
        self.rpos = 0
        self.writes = 0

    def write(self, buf):
        self.writes += 1
        if self.answer is not None:
            r = self.answer(buf)
            if r is not None:
                self.load(r)
        return len(buf)

    def tx_done(self):
        return True

    def readinto(self, buf):
        n = self.rlen - self.rpos
        if n > len(buf):
            n = len(buf)
        rx = self.rx
        p = self.rpos
        for i in range(n):
            buf[i] = rx[p + i]
        self.rpos = p + n
        return n

    def flush_input(self):
        self.rpos = self.rlen

    def load(self, data):
        rx = self.rx
        for i in range(len(data)):
            rx[i] = data[i]
        self.rlen = len(data)
        self.rpos = 0

    def close(self):
        pass


class VTime:
    """Virtual ms and us clocks moving together, started near wraparound."""

    def __init__(self, start_ms=0, start_us=0):
        self.ms0 = start_ms
        self.us0 = start_us
        self.elapsed_us = 0

    def now_ms(self):
        return ticks_add(self.ms0, self.elapsed_us // 1000)

    def us(self):
        return ticks_add(self.us0, self.elapsed_us)

    def advance_us(self, us):
        self.elapsed_us += us

    def advance_ms(self, ms):
        self.elapsed_us += ms * 1000


def rig(baud=115200, start_ms=0, start_us=0, **kw):
    port = MemSerialPort(baud)
    vt = VTime(start_ms, start_us)
    logs = []
    kw.setdefault("log", logs.append)
    m = mb.ModbusMaster(port, us_clock=vt.us, **kw)
    slaves = MemSlaves(port)
    return m, port, vt, slaves, logs


def run(m, vt, slaves, tx, step_us=200, limit_ms=5000, reply=True):
    """Poll until ``tx`` is done, answering from ``slaves``; returns elapsed ms."""
    start = vt.elapsed_us
    while not tx.done:
        m.poll(vt.now_ms())
        slaves.step(reply)
        vt.advance_us(step_us)
        assert vt.elapsed_us - start < limit_ms * 1000, "transaction never ended"
    return (vt.elapsed_us - start) // 1000


def settle(m, vt, slaves, ms=5):
    for _ in range(ms * 5):
        m.poll(vt.now_ms())
        slaves.step()
        vt.advance_us(200)


def frame(*body):
    b = bytearray(len(body) + 2)
    for i, x in enumerate(body):
        b[i] = x
    append_crc(b, len(body))
    return bytes(b)


class StuckPort(MemSerialPort):
    """Takes two bytes per write and never reports the line released when stuck."""

    def __init__(self):
        MemSerialPort.__init__(self, 115200)
        self.stuck = False

    def write(self, buf):
        return MemSerialPort.write(self, bytes(buf[:2]))

    def tx_done(self):
        return not self.stuck


class StallingPort(MemSerialPort):
    """The main loop stalls right after a read that returned bytes (a GC pause, say)."""

    def __init__(self, vt, stall_us):
        MemSerialPort.__init__(self, 115200)
        self.vt = vt
        self.stall_us = stall_us

    def readinto(self, buf):
        n = MemSerialPort.readinto(self, buf)
        if n:
            self.vt.advance_us(self.stall_us)
        return n
