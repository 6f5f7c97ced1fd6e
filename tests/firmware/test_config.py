import json

from fwtest import approx, raises

from firmware.core import config
from firmware.core.config import ConfigError
from firmware.proto import regmap as rm

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap

with open(config.default_path()) as _f:
    _TEXT = _f.read()


def _cfg():
    return json.loads(_TEXT)  # a fresh deep copy each time


def _bad(mutate, path, reason_part):
    cfg = _cfg()
    mutate(cfg)
    e = raises(ConfigError, config.validate, cfg)
    assert e.path == path, (e.path, str(e))
    assert reason_part in e.reason, str(e)
    assert str(e).startswith(path + ": "), str(e)
    return e


def test_station_json_is_valid():
    cfg = config.load()
    assert len(cfg["slots"]) == 23
    assert [s["charger_unit"] for s in cfg["slots"]] == list(range(1, 24))
    assert cfg["buses"]["bay_io"]["unit"] == 100
    assert cfg["slots"][0]["charger_kw"] == cfg["limits"]["charger_kw"]
    assert "NIO-100" in cfg["compatibility"]["NIO-ES6"]
    assert cfg["isolation_bay"]["id"] == "ISO"
    assert set(cfg["timeouts_ms"]) == set(config.SWAP_STEPS)
    assert type(cfg["limits"]["grid_kw"]) is float


def test_defaults_are_filled():
    cfg = _cfg()
    del cfg["journal"]
    del cfg["tou"]
    del cfg["buses"]["chargers"]["retries"]
    del cfg["limits"]["derate_min_pct"]
    out = config.validate(cfg)
    assert out["journal"] == {"max_bytes": 32768, "checkpoint_every": 200}
    assert out["tou"] is None
    assert out["buses"]["chargers"]["retries"] == 2
    assert out["limits"]["derate_min_pct"] == 25


def test_validated_config_validates_again_unchanged():
    # Tools hand config.load's output on (supervisor, simulator); it must not be refused.
    out = config.validate(_cfg())
    again = config.validate(out)
    assert again == out
    assert again["model_codes"]["NIO-ES6"] == 1 and again["model_by_code"][1] == "NIO-ES6"
    assert again["pack_type_by_code"] == out["pack_type_by_code"]
    # a derived table is recomputed, not trusted
    out["pack_type_by_code"] = {99: "NOPE"}
    assert config.validate(out)["pack_type_by_code"] == again["pack_type_by_code"]


def test_null_is_the_default_of_an_optional_field():
    cfg = _cfg()
    cfg["bay"]["breakaway_nm"] = None
    assert config.validate(cfg)["bay"]["breakaway_nm"] is None
    _bad(lambda c: c["bay"].__setitem__("torque_nm", None), "bay.torque_nm", "expected [min, max]")


def test_comments_are_dropped():
    cfg = _cfg()
    cfg["limits"]["_note"] = "why"
    out = config.validate(cfg)
    assert "_note" not in out["limits"] and "_comment" not in out


def test_wrong_types():
    _bad(lambda c: c.__setitem__("station_id", 7), "station_id", "expected a string")
    _bad(lambda c: c["limits"].__setitem__("grid_kw", "1000"), "limits.grid_kw", "expected a number")
    _bad(lambda c: c["limits"].__setitem__("grid_kw", True), "limits.grid_kw", "expected a number")
    _bad(lambda c: c["slots"][2].__setitem__("charger_unit", 3.0), "slots[2].charger_unit", "integer")
    _bad(lambda c: c.__setitem__("slots", {}), "slots", "expected a list")
    _bad(lambda c: c.__setitem__("limits", []), "limits", "expected an object")
    _bad(lambda c: c["bay"].__setitem__("torque_nm", 120), "bay.torque_nm", "[min, max]")
    _bad(
        lambda c: c["authorisation"].__setitem__("subscription", 1),
        "authorisation.subscription",
        "true or false",
    )
    _bad(lambda c: c["authorisation"].__setitem__("allow", ["A", 5]), "authorisation.allow[1]", "string")
    e = raises(ConfigError, config.validate, [])
    assert e.path == "config"


def test_missing_fields():
    _bad(lambda c: c.__delitem__("slots"), "slots", "missing")
    _bad(lambda c: c["buses"].__delitem__("bay_io"), "buses.bay_io", "missing")
    _bad(lambda c: c["buses"]["bay_io"].__delitem__("unit"), "buses.bay_io.unit", "missing")
    _bad(lambda c: c["slots"][5].__delitem__("charger_unit"), "slots[5].charger_unit", "missing")
    _bad(lambda c: c["limits"]["runaway"].__delitem__("over_temp_c"), "limits.runaway.over_temp_c", "missing")
    _bad(lambda c: c["timeouts_ms"].__delitem__("unbolt"), "timeouts_ms.unbolt", "missing")
    _bad(
        lambda c: c["pack_types"]["NIO-75"].__delitem__("capacity_kwh"),
        "pack_types.NIO-75.capacity_kwh",
        "missing",
    )


def test_unknown_fields_are_typos():
    _bad(lambda c: c["limits"].__setitem__("gird_kw", 5), "limits.gird_kw", "unknown field")
    _bad(lambda c: c.__setitem__("slot", []), "slot", "unknown field")
    _bad(lambda c: c["buses"].__setitem__("can", {}), "buses.can", "unknown field")


def test_duplicate_addresses_and_ids():
    _bad(
        lambda c: c["slots"][3].__setitem__("charger_unit", 4 - 3),
        "slots[3].charger_unit",
        "duplicate address 1 (also slots[0])",
    )
    _bad(lambda c: c["slots"][7].__setitem__("id", "S02"), "slots[7].id", "duplicate id")
    _bad(lambda c: c["isolation_bay"].__setitem__("id", "S05"), "isolation_bay.id", "slots[4]")
    _bad(lambda c: c["authorisation"].__setitem__("allow", ["A", "A"]), "authorisation.allow[1]", "duplicate")


def test_addresses_out_of_range():
    _bad(lambda c: c["slots"][0].__setitem__("charger_unit", 0), "slots[0].charger_unit", ">= 1")
    _bad(lambda c: c["slots"][0].__setitem__("charger_unit", 248), "slots[0].charger_unit", "<= 247")
    _bad(lambda c: c["buses"]["bay_io"].__setitem__("unit", 255), "buses.bay_io.unit", "<= 247")
    _bad(lambda c: c["buses"]["bay_io"].__setitem__("unit", -1), "buses.bay_io.unit", ">= 1")


def test_compatibility_table():
    _bad(
        lambda c: c["compatibility"]["NIO-ES6"].append("NIO-999"),
        "compatibility.NIO-ES6[3]",
        "unknown pack type 'NIO-999'",
    )
    _bad(lambda c: c["compatibility"].__setitem__("X", []), "compatibility.X", "non-empty")
    _bad(
        lambda c: c["compatibility"].__setitem__("X", ["NIO-75", "NIO-75"]), "compatibility.X[1]", "duplicate"
    )
    _bad(lambda c: c.__setitem__("compatibility", {}), "compatibility", "at least one")
    _bad(lambda c: c.__setitem__("pack_types", {}), "pack_types", "at least one")


def test_negative_and_zero_limits():
    _bad(lambda c: c["limits"].__setitem__("grid_kw", -5), "limits.grid_kw", "must be > 0")
    _bad(lambda c: c["limits"].__setitem__("charger_kw", 0), "limits.charger_kw", "must be > 0")
    _bad(
        lambda c: c["pack_types"]["NIO-75"].__setitem__("max_charge_a", -1),
        "pack_types.NIO-75.max_charge_a",
        "> 0",
    )
    _bad(lambda c: c["slots"][1].__setitem__("charger_kw", -20), "slots[1].charger_kw", "> 0")
    _bad(lambda c: c["timeouts_ms"].__setitem__("bolt", -1), "timeouts_ms.bolt", ">= 100")
    _bad(lambda c: c["buses"]["chargers"].__setitem__("retries", -1), "buses.chargers.retries", ">= 0")
    _bad(lambda c: c["journal"].__setitem__("max_bytes", 100), "journal.max_bytes", ">= 4096")


def test_handover_soc_range():
    _bad(lambda c: c["limits"].__setitem__("handover_soc", 0), "limits.handover_soc", "> 0")
    _bad(lambda c: c["limits"].__setitem__("handover_soc", 101), "limits.handover_soc", "<= 100")
    _bad(lambda c: c["limits"].__setitem__("full_soc", 80), "limits.handover_soc", "full_soc")


def test_charger_minimum_on_time():
    cfg = _cfg()
    assert "charge_min_on_ms" not in cfg["limits"]
    assert config.validate(cfg)["limits"]["charge_min_on_ms"] == 60000
    cfg["limits"]["charge_min_on_ms"] = 0  # hand a charger on at any dispatch
    assert config.validate(cfg)["limits"]["charge_min_on_ms"] == 0
    _bad(lambda c: c["limits"].__setitem__("charge_min_on_ms", -1), "limits.charge_min_on_ms", ">= 0")
    _bad(lambda c: c["limits"].__setitem__("charge_min_on_ms", 3600001), "limits.charge_min_on_ms", "<= 36")
    _bad(lambda c: c["limits"].__setitem__("charge_min_on_ms", 1.5), "limits.charge_min_on_ms", "integer")


def test_temperature_bands_must_be_ordered():
    _bad(lambda c: c["limits"].__setitem__("derate_from_c", 60), "limits.derate_from_c", "stop_above_c")
    _bad(lambda c: c["limits"].__setitem__("cold_full_c", -5), "limits.stop_below_c", "cold_full_c")
    _bad(
        lambda c: c["limits"]["runaway"].__setitem__("over_temp_c", 50),
        "limits.runaway.over_temp_c",
        "stop_above_c",
    )
    _bad(
        lambda c: c["pack_types"]["NIO-75"].update({"cell_temp_min_c": 30, "cell_temp_max_c": 25}),
        "pack_types.NIO-75.cell_temp_min_c",
        "below cell_temp_max_c",
    )
    _bad(lambda c: c["bay"].__setitem__("torque_nm", [130, 110]), "bay.torque_nm", "below max")
    _bad(lambda c: c["limits"].__setitem__("heartbeat_ms", 9000), "limits.heartbeat_ms", "telemetry_stale_ms")


def test_authorisation_must_admit_someone():
    def m(c):
        c["authorisation"] = {"subscription": False, "allow": []}

    _bad(m, "authorisation", "no vehicle")


def test_tou_bands():
    _bad(lambda c: c["tou"]["bands"][1].__setitem__("start_min", 400), "tou.bands", "overlap")
    _bad(lambda c: c["tou"]["bands"][0].__setitem__("end_min", 0), "tou.bands[0].end_min", ">= 1")
    cfg = config.validate(_cfg())
    assert config.tou_price(cfg, 0) == 0.31
    assert config.tou_price(cfg, 700) == 1.05
    assert config.tou_price(cfg, 1440 + 481) == 0.62


def test_slot_count_bounds():
    _bad(lambda c: c.__setitem__("slots", []), "slots", "1..64")


def test_json_syntax_error_is_config_error():
    e = raises(ConfigError, config.loads, '{"station_id": "x"')
    assert e.path == "<text>" and "invalid JSON" in e.reason
    e = raises(ConfigError, config.loads, "")
    assert "invalid JSON" in str(e)


def test_load_missing_file():
    e = raises(ConfigError, config.load, "/nonexistent/station.json")
    assert e.path == "/nonexistent/station.json" and "cannot read" in e.reason


def test_loads_round_trip():
    cfg = config.loads(_TEXT)
    assert cfg["station_id"] == "PSS4-DEMO-001"


def test_codes_map_register_values_to_names():
    cfg = config.load()
    assert cfg["pack_type_by_code"] == {1: "NIO-75", 2: "NIO-100", 3: "NIO-150", 5: "STD-A-60"}
    assert cfg["model_by_code"][1] == "NIO-ES6" and cfg["model_by_code"][11] == "PARTNER-A-SUV"
    assert cfg["pack_types"]["STD-A-60"]["code"] == rm.PACK_STD_60
    assert cfg["pack_types"]["NIO-75"]["max_charge_v"] == 420


def test_bad_codes():
    _bad(
        lambda c: c["pack_types"]["NIO-100"].__setitem__("code", 1),
        "pack_types.NIO-75.code",  # pack types are checked in sorted order
        "duplicate code 1 (also NIO-100)",
    )
    _bad(lambda c: c["pack_types"]["NIO-100"].__setitem__("code", 0), "pack_types.NIO-100.code", ">= 1")
    _bad(lambda c: c["model_codes"].__setitem__("NIO-XX", 9), "model_codes.NIO-XX", "unknown vehicle model")
    _bad(lambda c: c["model_codes"].__setitem__("NIO-ET7", 1), "model_codes.NIO-ET7", "duplicate code 1")
    _bad(lambda c: c["model_codes"].__setitem__("NIO-ET7", "4"), "model_codes.NIO-ET7", "integer")
    _bad(
        lambda c: c["pack_types"]["NIO-75"].__setitem__("max_charge_v", 300),
        "pack_types.NIO-75.max_charge_v",
        "nominal_v",
    )
    _bad(lambda c: c["bay"].__setitem__("bolt_count", 17), "bay.bolt_count", "<= 16")
    cfg = _cfg()
    del cfg["model_codes"]
    del cfg["pack_types"]["NIO-75"]["max_charge_v"]
    out = config.validate(cfg)
    assert out["model_by_code"] == {}
    assert approx(out["pack_types"]["NIO-75"]["max_charge_v"], 370 * 1.15, 1e-6)


def _warnings(cfg):
    got = []
    out = config.validate(cfg, lambda path, reason: got.append((path, reason)))
    return out, got


def test_setpoints_above_what_the_register_map_takes_are_warnings_not_errors():
    out, got = _warnings(_cfg())
    assert got == []  # station.json: every setpoint fits the register map's charger
    cfg = _cfg()
    cfg["limits"]["charger_kw"] = 120
    assert _warnings(cfg)[1] == []  # no pack takes over 62.5 kW: no setpoint goes above it
    for pt in cfg["pack_types"].values():
        pt["max_charge_kw"] = 120
    cfg["slots"][2]["charger_kw"] = 100
    cfg["slots"][3]["charger_kw"] = 50
    cfg["pack_types"]["NIO-150"]["max_charge_a"] = 250
    cfg["pack_types"]["STD-A-60"]["max_charge_v"] = 900
    out, got = _warnings(cfg)
    assert [p for p, _ in got] == ["limits.charger_kw", "slots[2].charger_kw",
                                   "pack_types.NIO-150.max_charge_a", "pack_types.STD-A-60.max_charge_v"], got
    why = got[0][1]
    assert "120 kW" in why and "62.5 kW" in why and "CHG_HR_P_LIMIT" in why, why
    assert "250 A" in got[2][1] and "200 A" in got[2][1], got[2]
    assert out["limits"]["charger_kw"] == 120  # still a valid config ...
    assert config.validate(out) == out  # ... and silent without a listener
    got = []
    config.loads(json.dumps(cfg), "x.json", lambda path, reason: got.append(path))
    assert len(got) == 4


def test_bus_timeout_must_cover_the_longest_reply_at_the_baud_rate():
    # The bay module's 48-register read (FC04) is 101 bytes: 58 ms on the wire at 19200
    # baud, and the module may answer only after t3.5 (2 ms) of silence. station.json's
    # 30 ms bay_io timeout is fine at its 115200 baud, never at 19200.
    slow = {"baudrate": 19200}
    e = _bad(lambda c: c["buses"]["bay_io"].update(slow), "buses.bay_io.timeout_ms", "101 bytes")
    for part in ("30 ms", "19200 baud", "58 ms", "at least 60"):
        assert part in e.reason, (part, str(e))
    _bad(lambda c: c["buses"]["bay_io"].update({"baudrate": 19200, "timeout_ms": 59}),
         "buses.bay_io.timeout_ms", "at least 60")
    cfg = _cfg()
    cfg["buses"]["bay_io"].update({"baudrate": 19200, "timeout_ms": 60})
    assert config.validate(cfg)["buses"]["bay_io"]["timeout_ms"] == 60
    # The charger line's longest read is the 16-register status block: 37 bytes, 340 ms
    # at 1200 baud, where t3.5 is 32 ms.
    e = _bad(lambda c: c["buses"]["chargers"].update({"baudrate": 1200}), "buses.chargers.timeout_ms",
             "37 bytes")
    assert "at least 372" in e.reason, str(e)
