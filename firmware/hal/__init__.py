"""Hardware abstraction layer: the small interfaces the station logic talks to.

MicroPython has no ``abc``, so these are plain base classes whose methods raise
``NotImplementedError``. Drivers in ``firmware/drivers`` implement them:
``board`` (machine.UART/Pin/WDT), ``posix_serial`` (termios + select, for ptys
and USB-RS485 adapters) and ``mem`` (in-memory, for unit tests and the simulator).
"""

from firmware.compat import ticks_diff, ticks_ms


class Clock:
    """Monotonic millisecond clock. Values wrap: compare them with ticks_diff only."""

    def now_ms(self):
        return ticks_ms()

    def elapsed_ms(self, since):
        return ticks_diff(self.now_ms(), since)


class SerialPort:
    """Byte stream to one RS-485 line. Nothing here may block.

    ``write`` queues bytes and asserts the direction pin (if any); ``tx_done``
    reports when the last stop bit has left the UART, releasing the pin then.
    """

    baudrate = 0

    def write(self, buf):
        """Queue ``buf`` for sending; returns the number of bytes taken."""
        raise NotImplementedError

    def tx_done(self):
        """True once every written byte is on the wire and the line is released."""
        raise NotImplementedError

    def settle(self, max_us):
        """``tx_done``, waiting for it at most ``max_us`` where the port drives a line that
        must be let go before the reply starts (RS-485 DE). Ports without one never wait."""
        return self.tx_done()

    def readinto(self, buf):
        """Copy waiting bytes into ``buf``; returns how many (0 when none)."""
        raise NotImplementedError

    def flush_input(self):
        """Drop bytes received but not read."""
        raise NotImplementedError

    def close(self):
        pass


class DigitalOut:
    def value(self, v=None):
        raise NotImplementedError


class DigitalIn:
    def value(self):
        raise NotImplementedError


class Storage:
    """Persistent file storage (LittleFS on a board). Names are flat, no folders."""

    def open(self, name, mode):
        raise NotImplementedError

    def exists(self, name):
        raise NotImplementedError

    def size(self, name):
        raise NotImplementedError

    def remove(self, name):
        raise NotImplementedError

    def rename(self, old, new):
        raise NotImplementedError


class Watchdog:
    """Resets the controller unless fed in time. Feed only while every subsystem is alive."""

    def feed(self):
        raise NotImplementedError


def char_time_us(baudrate):
    """Time of one 11-bit RTU character (start, 8 data, parity or 2nd stop, stop)."""
    return (11 * 1000000 + baudrate - 1) // baudrate


def frame_bits(parity, stop_bits):
    """Bits in one character on the wire: start, 8 data, parity (unless "none"), stop(s)."""
    return 1 + 8 + (0 if parity == "none" else 1) + stop_bits


def frame_gap_us(baudrate):
    """RTU t3.5, the silence that ends a frame: 3.5 characters, a fixed 1750 us above
    19200 baud (Modbus over serial line, 2.5.1.1)."""
    return (35 * char_time_us(baudrate) + 9) // 10 if baudrate <= 19200 else 1750
