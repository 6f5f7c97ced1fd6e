from firmware.compat import const, ticks_add, ticks_diff, ticks_max
from firmware.drivers.mem import ManualClock, MemSerialPort, MemWatchdog

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap

_LIMIT = const(125)


def test_const_is_plain_int():
    assert _LIMIT == 125


def test_ticks_diff_across_wraparound():
    top = ticks_max()
    later = ticks_add(top, 10)
    assert later < top  # wrapped
    assert ticks_diff(later, top) == 10
    assert ticks_diff(top, later) == -10


def test_manual_clock_and_watchdog():
    clock = ManualClock(ticks_add(ticks_max(), -50))
    wdt = MemWatchdog(clock, 100)
    clock.advance(90)
    assert not wdt.expired()
    wdt.feed()
    clock.advance(101)
    assert wdt.expired()


def test_mem_serial_reads_in_order():
    port = MemSerialPort()
    port.inject(b"\x01\x03")
    port.inject(b"\x04")
    buf = bytearray(2)
    assert port.readinto(buf) == 2 and bytes(buf) == b"\x01\x03"
    assert port.readinto(buf) == 1 and buf[0] == 4
    assert port.readinto(buf) == 0
    port.write(b"xy")
    assert port.take_written() == b"xy"
