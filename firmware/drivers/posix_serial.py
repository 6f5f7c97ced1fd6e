"""SerialPort on a POSIX tty: pseudo-terminals and USB-RS485 adapters (Linux).

Runs on CPython and on the MicroPython unix port, whose ``termios`` has only
tcgetattr/tcsetattr/setraw and a few B* names and whose ``os`` cannot open
files: the port is opened with ``open()`` and set raw with VMIN=0/VTIME=0, so
``readinto`` returns at once with what is waiting (0 when nothing). ``write``
checks with ``select.poll`` that the tty can take bytes, so nothing blocks.

``tx_done`` cannot ask the kernel (no ioctl on MicroPython): it reports the
time the written bytes need on the wire at the configured baud rate, which is
what an RS-485 line takes (USB adapters switch the direction pin themselves).

RTU gap timing: a tty hands bytes over in bursts (USB frames, the 16 ms default
latency timer of FTDI adapters, pty writes, scheduler jitter), so gaps seen by the
reader say little about gaps on the wire. The port therefore tells the Modbus
master ``rtu_char_gap_us = 0`` (t1.5 check off) and ``rtu_frame_gap_us =
frame_gap_us`` (default 20 ms, at least t3.5), a silence long enough that a burst
split by the adapter or the OS is not taken for a frame end. Valid replies still
complete by their expected length without waiting for that silence; only a broken
reply is judged that much later. Pass ``char_gap_us``/``frame_gap_us`` to choose
otherwise (set the adapter's latency timer to 1 ms and 2-5 ms will do).
"""

import select
import termios

from firmware.compat import ticks_add, ticks_diff, ticks_us
from firmware.hal import SerialPort, char_time_us

# Linux termios values: MicroPython's termios module does not name them.
_CSIZE = 0o60
_CS8 = 0o60
_CSTOPB = 0o100
_CREAD = 0o200
_PARENB = 0o400
_PARODD = 0o1000
_HUPCL = 0o2000
_CLOCAL = 0o4000
_CRTSCTS = 0o20000000000
_VTIME = 5
_VMIN = 6
_BAUD = {
    1200: 0o11, 2400: 0o13, 4800: 0o14, 9600: 0o15, 19200: 0o16, 38400: 0o17,
    57600: 0o10001, 115200: 0o10002, 230400: 0o10003, 460800: 0o10004,
    500000: 0o10005, 576000: 0o10006, 921600: 0o10007, 1000000: 0o10010,
}
_POLLIN = 1
_POLLOUT = 4
DEFAULT_FRAME_GAP_US = 20000


def _open(path):
    try:
        import os

        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        return open(fd, "r+b", buffering=0)  # CPython: an unbuffered FileIO
    except AttributeError:  # MicroPython: no os.open
        return open(path, "r+b")


class PosixSerialPort(SerialPort):
    """``PosixSerialPort(path, baudrate=19200, parity="E", stopbits=1)``; see module doc."""

    def __init__(self, path, baudrate=19200, parity="E", stopbits=1, frame_gap_us=None, char_gap_us=0):
        if baudrate not in _BAUD:
            raise ValueError("unsupported baud rate %r (one of %s)" % (baudrate, sorted(_BAUD)))
        if parity not in ("N", "E", "O"):
            raise ValueError("parity %r is not one of N, E, O" % (parity,))
        if stopbits not in (1, 2):
            raise ValueError("stopbits %r is not 1 or 2" % (stopbits,))
        self.path = path
        self.baudrate = baudrate
        self.char_us = char_time_us(baudrate)
        t35 = (35 * self.char_us + 9) // 10 if baudrate <= 19200 else 1750
        self.rtu_char_gap_us = char_gap_us
        self.rtu_frame_gap_us = max(t35, DEFAULT_FRAME_GAP_US if frame_gap_us is None else frame_gap_us)
        try:
            self._f = _open(path)
        except OSError as e:
            raise OSError("cannot open serial port %s: %s" % (path, e)) from None
        try:
            self._setup(parity, stopbits)
        except Exception as e:
            self._f.close()
            raise OSError("cannot configure %s as a serial port (not a tty?): %r" % (path, e)) from None
        self._poll = select.poll()
        self._poll.register(self._f, _POLLOUT)
        self._poll_in = select.poll()
        self._poll_in.register(self._f, _POLLIN)
        self._tx_end = ticks_us()
        self._scratch = bytearray(64)
        self._closed = False

    def _setup(self, parity, stopbits):
        fd = self._f.fileno()
        setraw = getattr(termios, "setraw", None)  # MicroPython has it here
        if setraw is None:  # CPython keeps it in tty
            import tty

            setraw = tty.setraw
        setraw(fd)
        a = termios.tcgetattr(fd)
        cflag = a[2] & ~(_CSIZE | _CSTOPB | _PARENB | _PARODD | _CRTSCTS | _HUPCL)
        cflag |= _CS8 | _CREAD | _CLOCAL
        if parity != "N":
            cflag |= _PARENB
            if parity == "O":
                cflag |= _PARODD
        if stopbits == 2:
            cflag |= _CSTOPB
        a[2] = cflag
        speed = getattr(termios, "B%d" % self.baudrate, _BAUD[self.baudrate])
        a[4] = speed
        a[5] = speed
        cc = a[6]
        cc[_VMIN] = 0  # read returns at once with what is there
        cc[_VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, a)

    def fileno(self):
        return self._f.fileno()

    def wait_input(self, timeout_ms):
        """Sleep until input waits or ``timeout_ms`` passes; True if input waits.
        For host main loops on the unix port (a board's loop never sleeps here)."""
        for _, ev in self._poll_in.poll(max(0, timeout_ms)):
            if ev & _POLLIN:
                return True
        return False

    def write(self, buf):
        if self._closed:
            raise OSError("serial port %s is closed" % self.path)
        for _, ev in self._poll.poll(0):
            if ev & _POLLOUT:
                break
        else:
            return 0  # tty buffer full: try again on the next poll
        n = self._f.write(buf) or 0
        now = ticks_us()
        start = self._tx_end if ticks_diff(self._tx_end, now) > 0 else now
        self._tx_end = ticks_add(start, n * self.char_us)
        return n

    def tx_done(self):
        return ticks_diff(ticks_us(), self._tx_end) >= 0

    def readinto(self, buf):
        if self._closed:
            raise OSError("serial port %s is closed" % self.path)
        try:
            n = self._f.readinto(buf)
        except OSError as e:
            if e.args and e.args[0] == 11:  # EAGAIN: nothing waiting
                return 0
            raise
        return n or 0

    def flush_input(self):
        # termios.tcflush is missing on MicroPython: read the input away instead.
        while self.readinto(self._scratch):
            pass

    def close(self):
        if not self._closed:
            self._closed = True
            self._poll.unregister(self._f)
            self._poll_in.unregister(self._f)
            self._f.close()
