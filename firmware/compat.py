"""The few MicroPython built-ins the firmware uses, with CPython stand-ins.

Firmware modules import ``const``, ``ticks_*`` and ``sleep_ms`` from here only,
so the same source runs on a board, on the unix port and on CPython.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


try:
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms, ticks_us

    MICROPYTHON = True
except ImportError:  # CPython, period 2**30 like the 32-bit ports; ignores are for the board stubs
    import time as _time

    MICROPYTHON = False
    TICKS_PERIOD = 1 << 30
    _TICKS_MASK = TICKS_PERIOD - 1
    _TICKS_HALF = TICKS_PERIOD >> 1

    def ticks_ms():
        return (_time.monotonic_ns() // 1000000) & _TICKS_MASK  # type: ignore[attr-defined]

    def ticks_us():  # type: ignore[misc]
        return (_time.monotonic_ns() // 1000) & _TICKS_MASK  # type: ignore[attr-defined]

    def ticks_add(ticks, delta):  # type: ignore[misc]
        return (ticks + delta) & _TICKS_MASK

    def ticks_diff(end, start):  # type: ignore[no-redef]
        return ((end - start + _TICKS_HALF) & _TICKS_MASK) - _TICKS_HALF

    def sleep_ms(ms):  # type: ignore[misc]
        if ms > 0:
            _time.sleep(ms / 1000)


def ticks_max():
    """Largest ticks value before wraparound on this interpreter (for tests)."""
    if MICROPYTHON:
        return ticks_add(0, -1)  # type: ignore[type-var]
    return TICKS_PERIOD - 1


def micropython_heap():
    """(free, allocated) bytes of the MicroPython heap, or None on CPython."""
    try:
        import gc

        return gc.mem_free(), gc.mem_alloc()
    except AttributeError:
        return None
