"""In-memory HAL for unit tests and the simulator: a manual clock, pins, a watchdog,
a serial line whose far end is driven by the test, and a flat file store."""

from firmware.compat import ticks_add, ticks_diff
from firmware.hal import Clock, DigitalIn, DigitalOut, SerialPort, Storage, Watchdog


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


_ENOENT = 2


class _MemFile:
    """An open file of MemStorage, binary only. Reading sees the file as it was when it
    was opened; writing appends to the file of that name."""

    def __init__(self, store, name, data):
        self._store = store
        self._name = name
        self._data = data  # bytes when opened for reading, else None
        self._pos = 0
        self.closed = False

    def _check(self):
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def readinto(self, buf):
        self._check()
        d = self._data
        n = min(len(buf), len(d) - self._pos)
        if n <= 0:
            return 0
        buf[:n] = d[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, n=-1):
        self._check()
        d = self._data
        end = len(d) if n < 0 else min(len(d), self._pos + n)
        out = d[self._pos : end]
        self._pos = max(self._pos, end)
        return out

    def seek(self, pos, whence=0):
        self._check()
        size = len(self._data) if self._data is not None else len(self._store.files[self._name])
        self._pos = pos if whence == 0 else (self._pos + pos if whence == 1 else size + pos)
        return self._pos

    def write(self, b):
        self._check()
        if self._data is not None:
            raise OSError(9, "not open for writing")  # EBADF
        self._store.files[self._name].extend(b)
        return len(b)

    def flush(self):
        self._check()

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MemStorage(Storage):
    """Flat in-memory files (name -> bytearray in ``files``): the journal's flash in
    virtual-time runs. Modes "rb", "wb" and "ab"."""

    def __init__(self):
        self.files = {}

    def open(self, name, mode):
        if "r" in mode:
            if name not in self.files:
                raise OSError(_ENOENT, "no such file")
            return _MemFile(self, name, bytes(self.files[name]))
        if "w" in mode or name not in self.files:
            self.files[name] = bytearray()
        return _MemFile(self, name, None)

    def exists(self, name):
        return name in self.files

    def size(self, name):
        if name not in self.files:
            raise OSError(_ENOENT, "no such file")
        return len(self.files[name])

    def remove(self, name):
        if name not in self.files:
            raise OSError(_ENOENT, "no such file")
        del self.files[name]

    def rename(self, old, new):
        if old not in self.files:
            raise OSError(_ENOENT, "no such file")
        self.files[new] = self.files.pop(old)
