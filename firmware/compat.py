"""The few MicroPython built-ins the firmware uses, with CPython stand-ins.

Firmware modules import ``const``, ``ticks_*`` and ``sleep_ms`` from here only,
so the same source runs on a board, on the unix port and on CPython.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


try:
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms, ticks_us

    MICROPYTHON = True
except ImportError:  # CPython: same semantics as the 32-bit ports (period 2**30)
    import time as _time

    MICROPYTHON = False
    TICKS_PERIOD = 1 << 30
    _TICKS_MASK = TICKS_PERIOD - 1
    _TICKS_HALF = TICKS_PERIOD >> 1

    def ticks_ms():
        return (_time.monotonic_ns() // 1000000) & _TICKS_MASK

    def ticks_us():
        return (_time.monotonic_ns() // 1000) & _TICKS_MASK

    def ticks_add(ticks, delta):
        return (ticks + delta) & _TICKS_MASK

    def ticks_diff(end, start):
        return ((end - start + _TICKS_HALF) & _TICKS_MASK) - _TICKS_HALF

    def sleep_ms(ms):
        if ms > 0:
            _time.sleep(ms / 1000)


def ticks_max():
    """Largest ticks value before wraparound on this interpreter (for tests)."""
    if MICROPYTHON:
        return ticks_add(0, -1)
    return TICKS_PERIOD - 1


def micropython_heap():
    """(free, allocated) bytes of the MicroPython heap, or None on CPython."""
    try:
        import gc

        return gc.mem_free(), gc.mem_alloc()
    except AttributeError:
        return None
