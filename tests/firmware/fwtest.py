"""Assertion helpers that work on MicroPython and CPython (no pytest there)."""


def raises(exc_type, fn, *args, **kwargs):
    """Call ``fn`` and return the ``exc_type`` it raised; fail if it raised none."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError("expected " + exc_type.__name__)


def approx(a, b, tol):
    return abs(a - b) <= tol


def random_tag():
    """8 hex digits for unique /tmp names: random where the port has os.urandom (unix
    port, CPython: runs share the host's /tmp); the qemu board has none, but its /tmp is
    a RAM disk of its own run, so the microsecond counter is unique enough there."""
    import os

    if hasattr(os, "urandom"):
        return "".join(f"{b:02x}" for b in os.urandom(4))
    from firmware.compat import ticks_us

    return f"{ticks_us() & 0xFFFFFFFF:08x}"
