"""Setpoints a charger refuses: the controller keeps each charger's setpoints within the
rated output it reports (info block), and a control write answered with an exception is
one alarm per episode, naming the charger and the exception, until a write is accepted."""

from station import Station

from firmware.proto import regmap as rm

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap


def _fast_packs(raw):
    # Chargers and packs that would take 120 kW: the 62.5 kW modules must be the limit.
    raw["limits"]["charger_kw"] = 120
    for pt in raw["pack_types"].values():
        pt["max_charge_kw"] = 120


def _charging(n_slots=8, mutate=_fast_packs):
    s = Station(n_slots=n_slots, soc=40.0, mutate=mutate)  # within the grid budget: all charge
    s.start()
    s.run(5000)
    return s


def _refusals(s):
    return [(a["s"], a["on"], a["d"]) for a in s.storage.records("AL") if a["c"] == "charger_refused"]


def _exceptions(s):
    return sum(s.chg_bus.health(u["charger_unit"]).exceptions for u in s.cfg["slots"])


def test_setpoints_stay_within_the_rated_output_each_charger_reports():
    s = Station(n_slots=8, soc=40.0, mutate=_fast_packs)
    ch = s.plant.chargers
    ch[1].rated_da = 1500  # a 150 A module
    ch[2].rated_dkw = 300  # a 30 kW module
    ch[3].rated_dv = 4000  # a 400 V module (the pack's limit is 420 V)
    s.start()
    s.run(20000)
    hr = [c.hr for c in ch]
    assert hr[0][rm.CHG_HR_P_LIMIT] == rm.CHG_RATED_POWER  # not the 66.6 kW of 180 A at 370 V
    assert hr[1][rm.CHG_HR_I_LIMIT] == 1500 and hr[1][rm.CHG_HR_P_LIMIT] == 1500 * 3700 // 10000
    assert hr[2][rm.CHG_HR_P_LIMIT] == 300
    assert hr[3][rm.CHG_HR_V_LIMIT] == 4000
    assert all(c.hr[rm.CHG_HR_ENABLE] == 1 and c.power_kw > 0 for c in ch[:7])
    assert sum(c.refused for c in ch) == 0 and _exceptions(s) == 0
    assert _refusals(s) == []


def test_a_refused_control_write_is_one_alarm_naming_the_charger_until_one_is_accepted():
    s = _charging()
    c = s.plant.chargers[3]
    c.refuse = 4  # the module answers every write with exception 04 (device failure)
    s.run(20000)
    assert c.refused >= 5  # refused again and again ...
    got = _refusals(s)
    assert [(a, on) for a, on, _ in got] == [(3, True)]  # ... one alarm, journalled
    d = s.sup.alarms["3:charger_refused"]
    assert d == got[0][2]
    assert "S04" in d and "unit 4" in d and "exception 04" in d, d
    assert s.fault_pin.value() == 1  # the controller's fault output is on
    del c.refuse
    s.run(15000)
    assert "3:charger_refused" not in s.sup.alarms
    assert [(a, on) for a, on, _ in _refusals(s)] == [(3, True), (3, False)]
    assert c.hr[rm.CHG_HR_ENABLE] == 1 and c.power_kw > 0  # charging again
    c.refuse = 6  # a second episode (device busy) is a second alarm
    s.run(10000)
    assert "exception 06" in s.sup.alarms["3:charger_refused"]
    assert [(a, on) for a, on, _ in _refusals(s)] == [(3, True), (3, False), (3, True)]


def test_a_charger_whose_rating_dropped_is_read_again_and_capped_there():
    s = _charging()
    c = s.plant.chargers[5]
    assert c.hr[rm.CHG_HR_P_LIMIT] == rm.CHG_RATED_POWER
    c.rated_dkw = 400  # a 40 kW module now: the rating read with its pack is out of date
    s.run(10000)
    got = _refusals(s)
    assert [(a, on) for a, on, _ in got] == [(5, True), (5, False)]
    assert "exception 03" in got[0][2], got
    assert c.hr[rm.CHG_HR_P_LIMIT] == 400 and c.power_kw > 0
    assert "5:charger_refused" not in s.sup.alarms
