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


def sized_dict(n):
    """An empty dict whose hash table already has room for ``n`` keys. MicroPython grows
    a table only when it is full, and the new table must be one free run of heap while
    the old one is still live: late in a long run that run may not exist any more.
    Keys are added and removed newest first (so no deleted markers are left behind)."""
    d = {}
    for i in range(n):
        d[i] = None
    for i in range(n - 1, -1, -1):
        del d[i]
    return d


def collect_every(nbytes=16384):
    """Collect garbage after every ``nbytes`` allocated, not only when the heap is full.
    Objects that live on (the normalised config, journal state, pack records, alarm
    keys) are then placed in the low holes instead of anywhere in a heap-wide spread of
    garbage, where they would cut the free space into runs too short for a 1 KiB buffer.
    Call it first thing at boot, before the config is parsed. A no-op on CPython."""
    import gc

    if hasattr(gc, "threshold"):
        gc.collect()
        gc.threshold(nbytes)


def forget(*names):
    """Drop boot-only modules (validators) from ``sys.modules`` and from their package,
    so their code becomes garbage once nothing else holds it; a later import loads them
    again. A no-op on CPython, where a second module object would bring second copies
    of its exception classes."""
    if not MICROPYTHON:
        return
    import sys

    for name in names:
        sys.modules.pop(name, None)
        i = name.rfind(".")
        pkg = sys.modules.get(name[:i]) if i > 0 else None
        if pkg is not None and name[i + 1:] in dir(pkg):
            try:
                delattr(pkg, name[i + 1:])
            except (AttributeError, TypeError):
                pass
