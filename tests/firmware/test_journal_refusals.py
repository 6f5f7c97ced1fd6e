"""A record the journal refuses is never lost without a word: an alarm's text longer
than the journal takes is shortened, not dropped, and any record the journal still
refuses raises the station alarm ``journal_refused`` naming what was refused."""

from station import Station

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap


def _alarms(s, code):
    return [a for a in s.storage.records("AL") if a["c"] == code]


def test_an_alarm_with_a_long_text_is_journalled_shortened():
    s = Station()
    s.start()
    why = "journal replay: swap of vehicle 7001 interrupted at unbolt, pack 555 in the bay, " * 2
    s.sup.bay.hold_fault(why)
    s.run(500)
    held = _alarms(s, "operator")
    assert held and held[-1]["on"]
    d = held[-1]["d"]
    assert len(d) <= 64 and d.endswith("...") and why.startswith(d[:-3])
    assert s.sup.journal_errors == 0
    assert "-1:journal_refused" not in s.sup.alarms


def test_a_refused_record_raises_a_station_alarm():
    s = Station()
    s.start()
    s.sup.rack_change(0, 555, None, None, None, None, "NOT_A_RACK_STATE")  # longer than a state
    assert s.sup.journal_errors == 1
    assert "state" in s.sup.alarms["-1:journal_refused"]
    refused = _alarms(s, "journal_refused")
    assert len(refused) == 1 and refused[0]["on"] and "state" in refused[0]["d"]
    s.sup.rack_change(0, 555, None, None, None, None, "NOT_A_RACK_STATE")
    assert s.sup.journal_errors == 2 and len(_alarms(s, "journal_refused")) == 1  # once, no log flood
    assert s.sup.ack()  # acknowledged by the operator, as a damaged journal is
    assert "-1:journal_refused" not in s.sup.alarms
    assert [a["on"] for a in _alarms(s, "journal_refused")] == [True, False]
