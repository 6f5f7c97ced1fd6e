"""Field faults on the rig: a charger dropping out, noise on the charger line,
thermal runaway in a slot, and a wrong station config."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware.core import config
from hil.emulators.field import default_packs
from hil.line import REPLY, REQUEST
from hil.rig import Rig
from hil.targets import TargetError
from host.plant.charging import PackRecord

CFG = config.load()
PACKS = dict(default_packs(CFG))
PACKS[0] = PackRecord(700_000, "NIO-100", 0.50)  # slot 0 charges from boot


def _config_with(tmp_path: Path, **limits: object) -> Path:
    raw = json.loads(Path(config.default_path()).read_text())
    raw["limits"].update(limits)
    p = tmp_path / "station-limits.json"
    p.write_text(json.dumps(raw))
    return p


def test_charger_drops_out_mid_charge(hil_rig_factory: Callable[..., Rig], tmp_path: Path) -> None:
    # While slot 0 is out its grid share goes to a topping-up pack, which then keeps it for
    # the minimum on-time (limits.charge_min_on_ms, 60 s by default: no charger chatter).
    # 5 s here, so slot 0 has its share back well within the 15 s the test waits.
    rig = hil_rig_factory(packs=PACKS, target_config=_config_with(tmp_path, charge_min_on_ms=5000))
    d = rig.driver()
    d.boot()
    d.wait_field(lambda: d.charger(0)["status"] == "charging" and d.charger(0)["i"] > 20.0, 15,
                 "slot 0 charging")
    d.field.inject(0, "dropout")
    st = d.wait(lambda s: "0:charger_offline" in s["alarms"] and s["rack"]["offline"] == 1, 10,
                "slot 0 offline")
    assert st["state"] == "run"
    # The charger's own heartbeat watchdog stops the output: no controller heartbeat reaches it.
    d.wait_field(lambda: d.charger(0)["status"] == "watchdog" and d.charger(0)["i"] == 0.0, 10,
                 "slot 0 stopped by its watchdog")
    assert d.rack_probe()["slots"][0]["state"] != "READY"
    d.field.clear(0, "dropout")
    d.wait(lambda s: "0:charger_offline" not in s["alarms"] and s["rack"]["offline"] == 0, 10,
           "slot 0 back online")
    # The firmware resets the heartbeat fault and charging resumes on its setpoints.
    d.wait_field(lambda: d.charger(0)["status"] == "charging" and d.charger(0)["faults"] == 0, 15,
                 "slot 0 charging again")
    assert d.rack_mismatches() == []


@pytest.mark.hil_needs("lines", reason="fault injection needs the paced pty line")
def test_one_percent_crc_noise_through_a_whole_swap(hil_rig: Rig) -> None:
    line = hil_rig.lines["chargers"]
    for direction in (REQUEST, REPLY):  # a bit flip in 1 % of the frames each way
        line.set_rate("bitflip", 0.01, direction=direction)
    d = hil_rig.driver()
    d.boot()
    v = d.arrive(soc=0.25)
    st = d.wait_swaps(1, timeout=60)
    assert st["swaps_ok"] == 1 and st["swaps_other"] == 0
    assert not [a for a in st["alarms"] if a.endswith(":charger_offline")], st["alarms"]
    assert [x["vehicle"] for x in d.departed()] == [v.vehicle_id]
    flipped = [f for f in line.frames if f.fault.startswith("bitflip")]
    assert len(flipped) >= 3, f"only {len(flipped)} of {len(line.frames)} frames were hit"
    assert d.rack_mismatches() == [] and d.swap_record_problems() == []


def _fast_runaway_config(tmp_path: Path) -> Path:
    runaway = json.loads(Path(config.default_path()).read_text())["limits"]["runaway"]
    runaway.update({"rise_window_ms": 5000, "rise_c_per_min": 4})
    return _config_with(tmp_path, runaway=runaway)


def test_thermal_runaway_in_one_slot(hil_rig_factory: Callable[..., Rig], tmp_path: Path) -> None:
    packs = dict(default_packs(CFG))
    packs[3] = PackRecord(733_333, "NIO-100", 0.95, temp_c=40.0)
    rig = hil_rig_factory(packs=packs, target_config=_fast_runaway_config(tmp_path))
    d = rig.driver()
    d.boot()
    d.field.inject(3, "runaway")  # about 8 K/min of internal heat
    st = d.wait(lambda s: "3:runaway" in s["alarms"], 30, "a runaway alarm on slot 3")
    assert st["rack"]["quarantined"] + st["rack"]["isolation"] >= 1
    d.wait_field(lambda: d.charger(3)["enable"] == 0, 2, "slot 3's charger told to stop")
    # The pack is carried to the isolation bay while the bay is free.
    d.wait_field(lambda: 733_333 in d.field.call(d.field.bay.snapshot)["isolated"], 30,
                 "the pack in the isolation bay")
    d.wait(lambda s: s["rack"]["isolation"] == 1 and s["step"] is None, 15, "the isolation move to end")
    assert 3 not in d.field.pack_ids()
    assert 733_333 in d.rack_probe()["isolation"]
    assert d.charger(3)["enable"] == 0 and d.field_errors() == []
    assert "3:runaway" in d.station()["alarms"]  # latched until an operator clears the slot


def test_wrong_config_keeps_the_station_safe(hil_rig_factory: Callable[..., Rig], tmp_path: Path) -> None:
    raw = json.loads(Path(config.default_path()).read_text())
    raw["slots"][3]["charger_unit"] = raw["slots"][0]["charger_unit"]  # two slots on one charger
    bad = tmp_path / "station-bad.json"
    bad.write_text(json.dumps(raw))
    rig = hil_rig_factory(target_config=bad, boot=False)
    assert rig.target is not None
    if rig.target.name == "qemu":
        # main.py checks the config before it opens anything: it refuses to start, names the
        # field and leaves the board as reset left it (no watchdog, no line driven).
        with pytest.raises(TargetError, match=r"not starting|did not start") as e:
            rig.target.start()
        assert "slots[3].charger_unit" in str(e.value)
        time.sleep(1.0)
        assert [f for ln in rig.lines.values() for f in ln.frames] == []
        assert rig.field is not None and rig.field.bay is not None and rig.field.bay.errors == []
        return
    rig.target.start()
    d = rig.driver()
    st = d.boot()
    assert st["state"] == "config_error"
    assert "slots[3].charger_unit" in st["error"], st["error"]
    assert d.outputs() == {"motion_enable": 0, "fault": 1}
    assert not d.confirm() and not d.ack()
    time.sleep(1.0)
    if rig.lines:  # nothing was sent on either line
        assert [f for ln in rig.lines.values() for f in ln.frames if f.direction == REQUEST] == []
    assert d.motion_coils() == []
