"""Scenario files: built-ins load, bad files fail with errors that name the field."""

import json
from pathlib import Path

import pytest

from host.sim import scenario as sc

MINIMAL = """
[rack]
packs = [{ type = "NIO-75", count = 4 }]
[demand]
rate_per_hour = 10
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def error(tmp_path: Path, text: str, name: str = "s.toml") -> sc.ScenarioError:
    with pytest.raises(sc.ScenarioError) as e:
        sc.load(write(tmp_path, text, name))
    return e.value


def test_every_builtin_loads_and_default_is_pss4():
    names = sc.builtin_names()
    for want in ("pss4-urban-day", "highway-holiday", "grid-limited", "fault-storm", "queueing-check"):
        assert want in names
    for n in names:
        s = sc.load(n)
        assert s.name == n
        assert s.duration_s > 0
    d = sc.load()
    assert d.name == sc.DEFAULT_SCENARIO
    assert len(d.station["slots"]) == 23
    assert 0 < d.demand.balk_from < d.demand.balk_all


def test_fault_storm_has_every_fault_family():
    s = sc.load("fault-storm")
    kinds = {f.kind for f in s.faults}
    assert {"charger_dropout", "jammed_bolt", "thermal_event"} <= kinds
    assert s.outages == [(14 * 3600.0, 12 * 60.0)]
    assert [f.at_s for f in s.faults] == sorted(f.at_s for f in s.faults)


def test_minimal_file_gets_defaults(tmp_path):
    s = sc.load(write(tmp_path, MINIMAL))
    assert s.name == "s"
    assert s.duration_s == 86400.0
    assert s.mode == "direct"
    assert s.rack == [sc.RackPacks("NIO-75", 4, (100.0, 100.0))]
    assert s.demand.rate_at(5 * 3600) == pytest.approx(10 / 3600)
    assert set(s.demand.models) == set(s.station["compatibility"])


def test_json_scenario(tmp_path):
    data = {"rack": {"packs": [{"type": "NIO-100", "count": 2, "soc": [50, 60]}]},
            "demand": {"rate_per_hour": [1.0] * 24}, "run": {"duration": "2h", "seed": 9}}
    s = sc.load(write(tmp_path, json.dumps(data), "x.json"))
    assert (s.duration_s, s.seed, s.rack[0].soc) == (7200.0, 9, (50.0, 60.0))


def test_unknown_keys_are_named(tmp_path):
    e = error(tmp_path, MINIMAL + "[run]\nduraton = '1d'\n")
    assert e.path == "run.duraton" and "unknown field" in str(e) and "s.toml" in str(e)
    e = error(tmp_path, "colour = 'red'\n" + MINIMAL)
    assert e.path == "colour"
    e = error(tmp_path, MINIMAL.replace("count = 4", "count = 4, color = 1"))
    assert e.path == "rack.packs[0].color"


def test_wrong_types(tmp_path):
    assert error(tmp_path, MINIMAL.replace("count = 4", 'count = "4"')).path == "rack.packs[0].count"
    assert error(tmp_path, MINIMAL + "[run]\nseed = 1.5\n").path == "run.seed"
    assert error(tmp_path, MINIMAL + "[run]\nduration = 'forever'\n").path == "run.duration"
    assert error(tmp_path, MINIMAL + "[run]\nmode = 'fast'\n").path == "run.mode"
    e = error(tmp_path, MINIMAL.replace("rate_per_hour = 10", "rate_per_hour = true"))
    assert e.path == "demand.rate_per_hour" and "number" in e.reason


def test_negative_rates(tmp_path):
    rates = [5] * 24
    rates[3] = -2
    e = error(tmp_path, MINIMAL.replace("rate_per_hour = 10", f"rate_per_hour = {rates}"))
    assert e.path == "demand.rate_per_hour[3]" and ">= 0" in e.reason
    e = error(tmp_path, MINIMAL.replace("rate_per_hour = 10", "rate_per_hour = -1"))
    assert e.path == "demand.rate_per_hour"
    e = error(tmp_path, MINIMAL.replace("rate_per_hour = 10", "rate_per_hour = [1, 2]"))
    assert "24" in e.reason
    assert error(tmp_path, MINIMAL + "[queueing]\nchargers = 2\npacks = 3\nmu_per_hour = -1\n").path == \
        "queueing.mu_per_hour"


def test_unknown_pack_type_and_model(tmp_path):
    e = error(tmp_path, MINIMAL.replace("NIO-75", "NIO-80"))
    assert e.path == "rack.packs[0].type" and "NIO-80" in e.reason and "NIO-75" in e.reason
    e = error(tmp_path, MINIMAL + 'models = { "TESLA-3" = 1 }\n')
    assert e.path == "demand.models.TESLA-3"


def test_rack_must_fit(tmp_path):
    e = error(tmp_path, MINIMAL.replace("count = 4", "count = 40"))
    assert e.path == "rack.packs" and "23 slots" in e.reason


def test_station_overrides_validated_by_firmware_config(tmp_path):
    s = sc.load(write(tmp_path, MINIMAL + "[station.overrides.limits]\ngrid_kw = 250\n"))
    assert s.station["limits"]["grid_kw"] == 250.0
    assert s.grid_capacity_kw == 250.0
    e = error(tmp_path, MINIMAL + "[station.overrides.limits]\ngrid_kw = -5\n")
    assert "limits.grid_kw" in e.path and "> 0" in e.reason
    e = error(tmp_path, MINIMAL + "[station]\nconfig = 'nope.json'\n")
    assert e.path == "station.config" and "cannot read" in e.reason


def test_faults_checked(tmp_path):
    e = error(tmp_path, MINIMAL + "[[faults]]\nkind = 'meteor'\nat = '1h'\n")
    assert e.path == "faults[0].kind"
    e = error(tmp_path, MINIMAL + "[[faults]]\nkind = 'charger_dropout'\nslot = 'S99'\nat = '1h'\n")
    assert e.path == "faults[0].slot"
    e = error(tmp_path, MINIMAL + "[[faults]]\nkind = 'grid_outage'\n")
    assert e.path == "faults[0].at" and e.reason == "missing"


def test_queueing_needs_packs_at_least_chargers(tmp_path):
    e = error(tmp_path, MINIMAL + "[queueing]\nchargers = 4\npacks = 3\nmu_per_hour = 1\n")
    assert e.path == "queueing.packs"


def test_missing_file_and_unknown_builtin(tmp_path):
    with pytest.raises(sc.ScenarioError, match="no such scenario file"):
        sc.load(str(tmp_path / "absent.toml"))
    with pytest.raises(sc.ScenarioError, match="no built-in scenario 'rush-hour'"):
        sc.load("rush-hour")


def test_toml_syntax_error(tmp_path):
    e = error(tmp_path, "[demand\nrate_per_hour = 1\n")
    assert "TOML syntax error" in str(e) and "line 1" in str(e)


def test_json_syntax_error(tmp_path):
    e = error(tmp_path, "{\"demand\": ", "bad.json")
    assert "invalid JSON" in str(e) and "bad.json" in str(e)


def test_durations():
    assert sc.parse_duration("1d") == 86400
    assert sc.parse_duration("1h30m") == 5400
    assert sc.parse_duration("250ms") == 0.25
    assert sc.parse_duration("14:30") == 14.5 * 3600
    assert sc.parse_duration(90) == 90
    for bad in ("", "1x", "h", "1h 30m", True, None):
        with pytest.raises(ValueError):
            sc.parse_duration(bad)


def test_durations_read_a_sign_and_plain_seconds(tmp_path):
    assert sc.parse_duration("-2h") == -7200
    assert sc.parse_duration("90") == 90 and sc.parse_duration("0") == 0
    for text in ("-2h", "0", "'0'"):
        e = error(tmp_path, MINIMAL + f"[run]\nduration = {text if text[0] == chr(39) else repr(text)}\n")
        assert e.path == "run.duration" and e.reason.startswith("must be positive"), e
    assert "cannot read" in error(tmp_path, MINIMAL + "[run]\nduration = '--2h'\n").reason


def test_faults_outside_the_run_are_errors_naming_them(tmp_path):
    run = "[run]\nduration = '2h'\n"
    e = error(tmp_path, MINIMAL + run + "[[faults]]\nkind = 'charger_dropout'\nslot = 'S03'\nat = '07:30'\n")
    assert e.path == "faults[0]"  # the entry, as grid.outages[0]
    assert "charger_dropout on S03 at 07:30 is outside the run: the run ends at 02:00" in e.reason
    e = error(tmp_path, MINIMAL + run + "[[faults]]\nkind = 'jammed_bolt'\nat = '2h'\n")  # at the very end
    assert "jammed_bolt at 02:00 is outside the run" in e.reason
    e = error(tmp_path, MINIMAL + run + "[grid]\noutages = [{ at = '14:00', duration = '12m' }]\n")
    assert e.path == "grid.outages[0]" and "the outage at 14:00 is outside the run" in e.reason
    s = sc.load(write(tmp_path, MINIMAL + run + "[[faults]]\nkind = 'smoke'\nat = '1h59m'\n"))
    assert [f.kind for f in s.faults] == ["smoke"]
    s.duration_s = 3600.0  # shortened afterwards, as --duration does: the check says so again
    with pytest.raises(sc.ScenarioError, match="smoke at 01:59 is outside the run"):
        sc.check_schedule(s)


def test_currency_is_a_scenario_setting(tmp_path):
    assert sc.load(write(tmp_path, MINIMAL)).currency == "CNY"
    assert sc.load(write(tmp_path, MINIMAL + "[grid]\ncurrency = 'EUR'\n")).currency == "EUR"
    assert error(tmp_path, MINIMAL + "[grid]\ncurrency = ' '\n").path == "grid.currency"


def test_list_line_marks_the_default():
    assert sc.describe(sc.load()).startswith(f"{sc.DEFAULT_SCENARIO} (default) ")
    assert "(default)" not in sc.describe(sc.load("fault-storm"))


def test_station_slots_sets_the_slot_count_both_ways(tmp_path):
    s = sc.load(write(tmp_path, MINIMAL + "[station]\nslots = 12\n"))
    assert s.slot_ids == [f"S{i:02d}" for i in range(1, 13)]
    s = sc.load(write(tmp_path, MINIMAL + "[station]\nslots = 30\n"))
    slots = s.station["slots"]
    assert len(slots) == 30 and s.slot_ids == [f"S{i:02d}" for i in range(1, 31)]
    assert [x["charger_unit"] for x in slots] == list(range(1, 31))  # numbered on after S23 / unit 23
    assert {x["charger_kw"] for x in slots} == {62.5}
    e = error(tmp_path, MINIMAL + "[station]\nslots = 65\n")
    assert e.path == "station.slots" and "1..64" in e.reason, e


def test_queueing_with_more_packs_than_the_config_has_slots(tmp_path):
    q = "[queueing]\nchargers = 20\npacks = 30\nmu_per_hour = 1\n"
    e = error(tmp_path, MINIMAL + q)
    assert e.path == "queueing.packs", e
    assert "31 slots" in e.reason and "23" in e.reason and "[station] slots = 31" in e.reason, e
    s = sc.load(write(tmp_path, MINIMAL + "[station]\nslots = 31\n" + q))
    assert len(s.station["slots"]) == 31 and s.rack[0].count == 30
    assert s.station["limits"]["grid_kw"] == 20 * 62.5
