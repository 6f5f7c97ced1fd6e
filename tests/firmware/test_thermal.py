import json

from fwtest import raises

from firmware.compat import micropython_heap, ticks_add, ticks_max
from firmware.core import config, thermal
from firmware.core.thermal import CHARGER, NONE, OVER_TEMP, RISE, SMOKE, STORE, Thermal

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap


def _cfg(**runaway):
    with open(config.default_path()) as f:
        raw = json.load(f)
    raw["limits"]["runaway"].update(runaway)
    return config.validate(raw)


def _feed(th, slot, start, temps_d, step_ms):
    """Readings every step_ms from start; returns (list of causes, time after)."""
    t = start
    out = []
    for v in temps_d:
        out.append(th.check(slot, v, t))
        t = ticks_add(t, step_ms)
    return out, t


def test_over_temperature_latches_once_and_reports_slot_and_value():
    th = Thermal(_cfg())  # over_temp_c 65
    assert th.check(3, 649, 1000) == NONE and not th.blocked(3)
    assert th.check(3, 650, 2000) == OVER_TEMP
    assert th.blocked(3) and not th.blocked(2)
    assert th.check(3, 700, 3000) == NONE  # already latched: no second event
    assert th.pop() == (3, OVER_TEMP, 650) and th.pop() is None
    assert th.clear(3) == OVER_TEMP and not th.blocked(3)
    assert th.check(3, 660, 4000) == OVER_TEMP  # still hot: latches again
    assert thermal.CAUSE_NAMES[th.cause[3]] == "over_temp"


def test_rate_of_rise_uses_reading_times_not_poll_counts():
    # the same ten readings rising 0.5 degC each: fast in one slot, slow in the other
    temps = [300 + 5 * i for i in range(10)]
    th = Thermal(_cfg(rise_c_per_min=6, rise_window_ms=30000))
    fast, _ = _feed(th, 0, 0, temps, 5000)  # 5 degC in 45 s: 6.7 degC/min
    slow, _ = _feed(th, 1, 0, temps, 10000)  # 5 degC in 90 s: 3.3 degC/min
    assert RISE in fast and th.cause[0] == RISE
    assert RISE not in slow and th.cause[1] == NONE
    slot, cause, rate = th.pop()
    assert (slot, cause) == (0, RISE) and 60 <= rate <= 70  # 0.1 degC per minute


def test_no_rate_before_a_window_of_history():
    th = Thermal(_cfg(rise_c_per_min=6, rise_window_ms=30000))
    # 3 degC within 20 s would be 9 degC/min, but there is not a window of history yet
    causes, _ = _feed(th, 2, 0, [300, 310, 320, 330], 6000)
    assert causes == [NONE] * 4


def test_normal_charging_heat_and_sensor_noise_do_not_alarm():
    th = Thermal(_cfg(rise_c_per_min=6, rise_window_ms=30000))
    t = 0
    for i in range(3600):  # one hour, a reading a second, 20 K/h plus +-0.3 degC noise
        v = 250 + (200 * i) // 3600 + (3 if i % 7 == 0 else 0) - (3 if i % 11 == 0 else 0)
        assert th.check(5, v, t) == NONE, i
        t += 1000
    assert th.cause[5] == NONE


def test_rate_across_ticks_wraparound():
    th = Thermal(_cfg(rise_c_per_min=6, rise_window_ms=30000))
    start = ticks_add(ticks_max(), -20000)  # wraps mid-sequence
    causes, _ = _feed(th, 4, start, [300 + 6 * i for i in range(12)], 5000)
    assert RISE in causes


def test_irregular_reading_times():
    th = Thermal(_cfg(rise_c_per_min=6, rise_window_ms=30000))
    th.check(6, 300, 0)
    th.check(6, 301, 2000)
    th.check(6, 302, 3000)
    # charger offline for two minutes, then 5 degC more: 2.5 degC/min over the gap
    assert th.check(6, 352, 123000) == NONE
    # 4 degC in the next 31 s: 7.7 degC/min
    assert th.check(6, 392, 154000) == RISE


def test_new_pack_does_not_inherit_the_old_history():
    th = Thermal(_cfg(rise_c_per_min=6, rise_window_ms=30000))
    _feed(th, 7, 0, [200] * 10, 5000)
    th.forget(7)  # cold pack taken, a warm one stored
    causes, _ = _feed(th, 7, 50000, [400, 401, 402, 403, 404, 405, 406, 407], 5000)
    assert causes == [NONE] * 8


def test_charger_runaway_bit_and_smoke():
    th = Thermal(_cfg(smoke_latch=True))
    assert th.charger_fault(9, 512) == CHARGER and th.blocked(9)
    assert th.charger_fault(9, 512) == NONE
    assert th.smoke(True, 10) == SMOKE and th.blocked(10)
    assert th.smoke(True) == SMOKE  # store-wide: every slot stops
    assert all(th.blocked(i) for i in range(th.n))
    assert th.smoke(False) == NONE and th.blocked(0)  # latched
    events = [th.pop(), th.pop(), th.pop(), th.pop()]
    assert events == [(9, CHARGER, 512), (10, SMOKE, 0), (STORE, SMOKE, 0), None]
    assert th.clear(STORE) == SMOKE and not th.blocked(0) and th.blocked(10)


def test_smoke_without_latch_follows_the_input():
    th = Thermal(_cfg(smoke_latch=False))
    th.smoke(True)
    th.smoke(True, 2)
    assert th.blocked(0) and th.blocked(2)
    th.smoke(False)
    th.smoke(False, 2)
    assert not th.blocked(0) and not th.blocked(2)


def test_bad_inputs_are_refused_and_change_nothing():
    th = Thermal(_cfg())
    th.check(0, 300, 10000)
    for args in (
        (23, 300, 0),
        (-1, 300, 0),
        ("0", 300, 0),
        (0, 30.0, 20000),
        (0, True, 20000),
        (0, -500, 20000),
        (0, 310, 9000),
    ):
        e = raises(ValueError, th.check, *args)
        assert str(e)
    raises(ValueError, th.smoke, 1)
    raises(ValueError, th.smoke, True, 23)
    raises(ValueError, th.charger_fault, -1)
    raises(ValueError, th.clear, 99)
    assert th.pop() is None and not any(th.cause) and not th.store_smoke
    assert th.check(0, 300, 10000) == NONE  # same time as the last reading is fine


def test_a_reading_off_the_sensor_scale_latches_over_temperature():
    # a pack in runaway passes 200 degC; that is an alarm, not a bad reading
    th = Thermal(_cfg())
    th.check(4, 300, 1000)
    assert th.check(4, 5000, 2000) == OVER_TEMP
    assert th.cause[4] == OVER_TEMP and th.value[4] == 5000 and th.blocked(4)
    assert th.pop() == (4, OVER_TEMP, 5000)
    assert th.check(4, 32767, 3000) == NONE  # latched once; still blocked
    assert th.blocked(4) and th.pop() is None


def test_event_queue_overflow_keeps_the_latched_causes():
    th = Thermal(_cfg())
    for s in range(20):
        th.check(s, 700, 1000)
    assert th.dropped == 4
    got = []
    while True:
        e = th.pop()
        if e is None:
            break
        got.append(e[0])
    assert got == list(range(16))
    assert all(th.cause[s] == OVER_TEMP for s in range(20))


def test_readings_do_not_allocate():
    th = Thermal(_cfg(rise_c_per_min=6, rise_window_ms=30000))
    _feed(th, 0, 0, [300] * 10, 5000)
    heap = micropython_heap()
    if heap is None:  # CPython: behaviour only
        causes, _ = _feed(th, 0, 50000, [300] * 200, 5000)
        assert causes == [NONE] * 200
        return
    import gc

    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        t = 50000
        for _ in range(500):
            th.check(0, 300, t)
            t += 1000
        grew = gc.mem_alloc() - before
    finally:
        gc.enable()
    assert grew == 0, grew
