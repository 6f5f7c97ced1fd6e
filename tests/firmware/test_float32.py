"""Long-running quantities on a single-precision, 31-bit-small-int board: a station's
energy total over a year of swaps stays exact to the Wh, and the per-tick and
per-transaction counters stay small ints (they wrap at 2**30, as ticks_ms does)
instead of turning into heap-allocated big ints after a few weeks."""

import json

from station import Station

from firmware.core.journal_state import JournalState

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap

_SMALL_MAX = (1 << 30) - 1  # the largest small int on a 32-bit MicroPython build


def _ck(e_kwh=0.0):
    return {"q": 1, "b": 1, "n": 0, "x": 0, "ls": 0, "ok": 0, "nf": 0, "e": e_kwh}


def _swaps(s, first, n, seq=10):
    """n swap records of 40.00 .. 53.32 kWh (0.01 kWh steps); their exact total in Wh."""
    wh = 0
    for i in range(n):
        e10 = 4000 + (i % 37) * 37  # 0.01 kWh
        s.apply(seq + i, "SW", {"n": first + i, "o": "ok", "e": e10 / 100})
        wh += e10 * 10
    return wh


def test_energy_total_of_a_year_of_swaps_is_exact():
    # 20000 swaps of ~47 kWh: ~0.94 GWh, a busy station's year. float32 (24-bit mantissa)
    # loses the 0.01 kWh digits once the total passes ~100 MWh and drifts by kWh.
    s = JournalState()
    want = _swaps(s, 1, 20000)
    assert s.energy_wh == want, (s.energy_wh, want)


def test_energy_total_continues_exactly_from_a_large_checkpoint():
    # A checkpoint written by an older firmware (total in float kWh), 5 GWh in, then 200
    # swaps; the new checkpoint (through JSON, as the journal writes it) keeps it exact.
    s = JournalState()
    s.apply(1, "CK", _ck(5000000.0))
    want = 5000000 * 1000 + _swaps(s, 1, 200)
    assert s.energy_wh == want, (s.energy_wh, want)
    kind, ck = next(s.snapshot())
    assert kind == "CK"
    t = JournalState()
    t.apply(1, "CK", json.loads(json.dumps(ck)))
    assert t.energy_wh == want, (t.energy_wh, want)


def _counters(sup):
    out = [("ticks", sup.ticks), ("feeds", sup.feeds), ("reads", sup.chargers.reads),
           ("writes", sup.chargers.writes)]
    for name, bus in (("chg", sup.chargers.bus), ("bay", sup.bay_bus)):
        for unit in bus.units():
            out.append((f"{name}{unit}.good", bus.health(unit).good))
    return out


def test_tick_and_transaction_counters_wrap_as_small_ints():
    # At a few hundred ticks and transactions a second these pass 2**30 within weeks;
    # past it every increment would allocate a big int in the main loop.
    st = Station(n_slots=4)
    st.start()
    sup = st.sup
    sup.ticks = sup.feeds = sup.chargers.reads = sup.chargers.writes = _SMALL_MAX
    for bus in (sup.chargers.bus, sup.bay_bus):
        for unit in bus.units():
            bus.health(unit).good = _SMALL_MAX
    st.run(3000)
    for name, v in _counters(sup):
        assert 0 <= v < 1000, (name, v)  # wrapped to 0 and counted on


def test_watchdog_gate_feeds_wrap():
    import fakemachine

    WatchdogGate = fakemachine.install().WatchdogGate

    class _Wdt:
        def feed(self):
            pass

    g = WatchdogGate()
    g.wdt = _Wdt()
    g.feeds = _SMALL_MAX
    g.feed()
    g.feed()
    assert g.feeds == 1, g.feeds


def test_swap_energy_rounds_the_same_on_every_interpreter():
    # SoC in 0.1 %, capacity in kWh: the energy is a whole number of Wh, here an odd
    # 5 Wh that rounds half up to the 0.01 kWh the record keeps. Rounding a float
    # product instead goes either way, differently in float32 and float64.
    from firmware.core.supervisor import swap_kwh

    got = [swap_kwh(50.0, 75, 0.7, 75), swap_kwh(50.0, 75, 6.3, 75), swap_kwh(95.3, 75, 0.0, 75)]
    assert got == [36.98, 32.78, 71.48], got
    assert swap_kwh(80.0, 62.5, 20.1, 100) == 29.9  # 50000 - 20100 Wh
    assert swap_kwh(10.0, 75, 12.0, 75) == 0.0


def _thermal_cfg():
    from firmware.core import config

    with open(config.default_path()) as f:
        return config.validate(json.load(f))


def test_thermal_history_survives_a_week_without_readings():
    # A pack stays in its slot while the charger is off the bus (or its readings are
    # refused) for a week: past 2**29 ms the ticks of its last reading look like the
    # future. The first reading after must still be judged (over-temperature latches),
    # not refused as "older than the last one" for up to six more days.
    from firmware.compat import ticks_add
    from firmware.core.thermal import NONE, OVER_TEMP, RISE, Thermal

    th = Thermal(_thermal_cfg())  # over_temp_c 65
    t = 5000
    for _ in range(40):
        assert th.check(0, 300, t) == NONE and th.check(2, 300, t) == NONE
        t = ticks_add(t, 1000)
    for _ in range(7 * 24 * 6):  # the supervisor ticks on meanwhile
        t = ticks_add(t, 600000)
        for _ in range(th.n):
            th.expire(t)
    assert th.check(0, 300, t) == NONE
    assert th.check(0, 660, ticks_add(t, 1000)) == OVER_TEMP
    got = []
    for v in range(300, 400, 5):  # and slot 2's history measures a rise again
        got.append(th.check(2, v, t))
        t = ticks_add(t, 5000)
    assert RISE in got, got


def test_rtu_master_idle_for_ten_minutes_sends_at_once():
    # ticks_us wraps at 2**30 us (~17.9 min) on a 32-bit board: after ~9 idle minutes
    # the end of the last frame looks like the future, and the next request would wait
    # up to another 9 minutes for a "bus free" that passed long ago.
    from rtu_slave import rig, run

    from firmware.compat import ticks_add

    m, port, vt, slaves, _ = rig()
    slaves.add(7)
    run(m, vt, slaves, m.read(7, 4, 0, 1))
    port.take_written()
    for _ in range(10):  # ten idle minutes (ticks_add takes at most half a period at once)
        vt.us0 = ticks_add(vt.us0, 60000000)
        vt.ms0 = ticks_add(vt.ms0, 60000)
    m.read(7, 4, 0, 1)
    now = vt.now_ms()
    m.poll(now)
    m.poll(now)
    assert port.take_written()[:2] == b"\x07\x04", m.next_poll_ms(now)


def test_a_charger_on_for_a_week_is_not_pinned_by_its_minimum_on_time():
    # A pack that never reaches full (a tired BMS stuck below it) keeps its charger on for
    # days. Past 2**29 ms its switch-on tick looks like the future: the minimum on-time
    # must not hold it against demand then (ticks period 2**30 ms on a 32-bit build).
    from racktest import station_cfg, status_regs

    from firmware.compat import ticks_add
    from firmware.core.dispatch import Dispatch
    from firmware.core.rack import Rack

    def mutate(raw):
        raw["slots"] = raw["slots"][:2]
        raw["limits"]["grid_kw"] = 62.5  # one charger's worth
        raw["tou"] = None

    cfg = station_cfg(mutate)
    r = Rack(cfg)
    d = Dispatch(cfg, r)
    now = 1000
    for day_h in range(7 * 24):
        r.update_from_charger(0, status_regs(1, code=1, soc=50.0, volt=400.0), now)
        r.update_from_charger(1, status_regs(2, code=2, soc=50.0, volt=400.0), now)
        d.update(now)
        if not day_h:
            assert d.enable[0] and not d.enable[1]  # nearer to hand-over (75 kWh)
        now = ticks_add(now, 3600000)
    r.update_from_charger(0, status_regs(1, code=1, soc=50.0, volt=400.0), now)
    r.update_from_charger(1, status_regs(2, code=2, soc=50.0, volt=400.0), now)
    d.update(now, demand={"NIO-100": 1})  # a car wants slot 1's type: slot 1 first
    assert d.enable[1] and not d.enable[0], (d.enable[0], d.enable[1])
