"""In-memory HAL for unit tests and the simulator: a manual clock, pins, a watchdog
and a serial line whose far end is driven by the test."""

from firmware.compat import ticks_add, ticks_diff
from firmware.hal import Clock, DigitalIn, DigitalOut, SerialPort, Watchdog


class ManualClock(Clock):
    """Virtual time: only ``advance``/``set`` move it. Starts near wraparound on purpose."""

    def __init__(self, start_ms=0):
        self._now = start_ms

    def now_ms(self):
        return self._now

    def set(self, now_ms):
        self._now = now_ms

    def advance(self, ms):
        self._now = ticks_add(self._now, ms)


class MemPin(DigitalIn, DigitalOut):
    def __init__(self, v=0):
        self._v = 1 if v else 0

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = 1 if v else 0
        return self._v


class MemWatchdog(Watchdog):
    """Records feeds; ``expired(now)`` tells whether a real WDT would have fired."""

    def __init__(self, clock, timeout_ms):
        self._clock = clock
        self.timeout_ms = timeout_ms
        self.last_feed = clock.now_ms()
        self.feeds = 0

    def feed(self):
        self.last_feed = self._clock.now_ms()
        self.feeds += 1

    def expired(self):
        return ticks_diff(self._clock.now_ms(), self.last_feed) > self.timeout_ms


class MemSerialPort(SerialPort):
    """One end of an in-memory line. ``peer_rx`` holds what this end wrote;
    ``inject`` puts bytes where ``readinto`` finds them."""

    def __init__(self, baudrate=115200):
        self.baudrate = baudrate
        self._rx = bytearray()
        self._pos = 0
        self.peer_rx = bytearray()

    def write(self, buf):
        self.peer_rx.extend(buf)
        return len(buf)

    def tx_done(self):
        return True

    def readinto(self, buf):
        # MicroPython bytearrays cannot delete slices: keep a read index instead.
        n = min(len(buf), len(self._rx) - self._pos)
        if n:
            buf[:n] = self._rx[self._pos : self._pos + n]
            self._pos += n
            if self._pos == len(self._rx):
                self._rx = bytearray()
                self._pos = 0
        return n

    def flush_input(self):
        self._rx = bytearray()
        self._pos = 0

    def inject(self, data):
        self._rx.extend(data)

    def take_written(self):
        out = bytes(self.peer_rx)
        self.peer_rx = bytearray()
        return out
