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
