"""A stand-in for MicroPython's ``machine`` module, enough for firmware/drivers/board.py.

Records what the driver asks of the hardware so tests can check it. ``install()``
puts it in ``sys.modules`` and imports the board driver against it.
"""

import sys

created = []  # every object the driver made, in order


def reset():
    created.clear()
    mem32.regs.clear()
    mem32.writes.clear()


class Mem:
    """``machine.mem32``: a register file (an unwritten register reads 0) and every write."""

    def __init__(self):
        self.regs = {}
        self.writes = []

    def __getitem__(self, addr):
        return self.regs.get(addr, 0)

    def __setitem__(self, addr, value):
        self.regs[addr] = value
        self.writes.append((addr, value))


mem32 = Mem()


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=None, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        self.level = 0 if value is None else value
        self.history = [self.level]  # the first levels written, for edge checks in short tests
        self.rises = 0  # every low-to-high edge, for long runs
        created.append(self)

    def value(self, v=None):
        if v is None:
            return self.level
        v = 1 if v else 0
        if v > self.level:
            self.rises += 1
        self.level = v
        if len(self.history) < 64:
            self.history.append(v)
        return None


class UARTNoTxdone:
    """A UART without txdone() (MicroPython before 1.20)."""

    def __init__(self, id, **kw):
        self.id = id
        self.kw = kw
        self.wire = bytearray()
        self.rx = bytearray()
        self.done = True  # what txdone() answers
        self.on_write = None  # called at each write, e.g. to sample the DE pin
        self.accept = None  # bytes taken per write; None: all
        created.append(self)

    def write(self, buf):
        if self.on_write is not None:
            self.on_write()
        n = len(buf) if self.accept is None else min(self.accept, len(buf))
        if n == 0:
            return None  # MicroPython's answer when nothing could be queued
        self.wire.extend(buf[:n])
        self.done = False
        return n

    def any(self):
        return len(self.rx)

    def readinto(self, buf, n=None):
        if n is None:
            n = len(buf)
        n = min(n, len(self.rx), len(buf))
        if n == 0:
            return None
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n

    def deinit(self):
        self.deinited = True


class UART(UARTNoTxdone):
    def txdone(self):
        return self.done


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0
        created.append(self)

    def feed(self):
        self.feeds += 1


def install():
    """Import firmware.drivers.board (and mps2, the qemu board's driver it hands over to)
    against this fake; the real ``machine`` (the unix port has one, whose mem32 is real
    memory) is restored in sys.modules afterwards, the drivers keep the fake."""
    me = sys.modules[__name__]
    old = sys.modules.get("machine")
    sys.modules["machine"] = me
    try:
        for name in ("firmware.drivers.board", "firmware.drivers.mps2"):
            if name in sys.modules:
                del sys.modules[name]
        # Not `from firmware.drivers import board`: MicroPython would hand back the package's
        # attribute, the module already imported against another machine.
        __import__("firmware.drivers.board")
        board = sys.modules["firmware.drivers.board"]
        __import__("firmware.drivers.mps2")
        mps2 = sys.modules["firmware.drivers.mps2"]

        if board.machine is not me or mps2.machine is not me:
            raise AssertionError("board drivers did not pick up the fake machine")
        return board
    finally:
        if old is None:
            del sys.modules["machine"]
        else:
            sys.modules["machine"] = old
