"""The station on the emulated Pico ([pico]): ``main.py`` starts it with the shipped board
driver and pico.json (plus ``channel: hil_target``), the rig's chargers and bay I/O module
answer on UART0/UART1 in emulated time (hil/targets/pico_field.py).

One booted station for the module: a power-on costs ~2 s of emulated time, ~40-80 s of wall
time here. Its tests run in order on it: boot and poll, a charger that vanishes, and last
a hung loop that the chip's watchdog resets (the one reboot). Every item is marked ``pico``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.core import config
from hil.emulators.field import default_packs
from hil.rig import ScenarioDriver
from hil.targets.pico_target import PicoTarget
from host.plant.charging import PackRecord
from tests.hil.pico_rig import figures, pico_station

pytestmark = [pytest.mark.pico, pytest.mark.slow]  # minutes of wall time: started first

PACKS = dict(default_packs(config.load()))
PACKS[0] = PackRecord(700_000, "NIO-100", 0.50)  # slots 0 and 1 charge from boot
PACKS[1] = PackRecord(700_001, "NIO-100", 0.50)
WDT_RESET = 3  # machine.reset_cause() on rp2 after a watchdog reset


@pytest.fixture(scope="module")
def pico_driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScenarioDriver]:
    with pico_station(Path(tmp_path_factory.mktemp("pico-rig")), packs=PACKS) as d:
        yield d


def test_main_py_boots_the_station_and_polls_the_chargers_and_the_bay(pico_driver: ScenarioDriver) -> None:
    d = pico_driver
    target = d.target
    boot = target.boots[0]  # type: ignore[attr-defined]
    assert boot["emulated_s"] < 3.0, boot  # main.py to the channel's boot line
    st = d.wait(lambda s: s["rack"]["ready"] >= 15, 120, "the chargers answering")
    assert st["alive"] and st["hold"] == ["confirm"]  # power-loss hold: confirm before motion
    assert st["rack"]["offline"] < 23
    slaves = d.field.slaves  # type: ignore[attr-defined]
    for name in ("chargers", "bay_io"):
        line = slaves[name]
        assert line.replies > 0 and line.bad_crc == 0 and line.foreign == 0, name
        assert line.de_low_bytes == 0, f"{name}: bytes sent with the driver disabled"
    reads = [r for r in d.field.rack() if r["reads"]]
    assert len(reads) >= 15


def test_the_driver_is_released_before_a_reply_starts(pico_driver: ScenarioDriver) -> None:
    d = pico_driver
    d.wait(lambda s: s["rack"]["ready"] >= 15, 120, "the chargers answering")
    slaves = d.field.slaves  # type: ignore[attr-defined]
    assert [slaves[n].de_high_replies for n in ("chargers", "bay_io")] == [0, 0]


def test_a_charger_that_vanishes_goes_offline_the_others_keep_charging_and_it_comes_back(
        pico_driver: ScenarioDriver) -> None:
    d = pico_driver
    d.boot(timeout=120)
    for k in (0, 1):
        d.wait_field(lambda k=k: d.charger(k)["status"] == "charging" and d.charger(k)["i"] > 5.0, 300,
                     f"slot {k} charging")
    t_wall, t_field = time.monotonic(), d.field.clock()
    d.field.inject(1, "dropout")
    st = d.wait(lambda s: "1:charger_offline" in s["alarms"], 300, "slot 1 offline")
    took = figures(d, t_wall, t_field)
    assert st["state"] == "run" and st["rack"]["offline"] == 1, st
    reads = {r["slot"]: r["reads"] for r in d.field.rack()}
    d.sleep_field(1.0)
    rack = d.field.rack()
    assert rack[0]["status"] == "charging" and rack[0]["i"] > 5.0, rack[0]
    polled = [r["slot"] for r in rack if r["reads"] > reads[r["slot"]]]
    assert 1 not in polled and len(polled) >= 15, polled  # every other charger is still read
    slots = d.rack_probe()["slots"]
    assert not slots[1]["online"] and slots[0]["online"] and slots[0]["state"] == "CHARGING", slots[:2]
    assert [s["slot"] for s in slots if not s["online"]] == [1]
    print(f"\n[pico] charger 1 silent -> offline alarm: {took}")

    # It comes back: the master's probe finds it, the alarm clears, and the firmware resets
    # the heartbeat fault the charger latched while no controller heartbeat reached it.
    t_wall, t_field = time.monotonic(), d.field.clock()
    d.field.clear(1, "dropout")
    st = d.wait(lambda s: "1:charger_offline" not in s["alarms"] and s["rack"]["offline"] == 0, 300,
                "slot 1 back online")
    back = figures(d, t_wall, t_field)
    d.wait_field(lambda: d.charger(1)["faults"] == 0 and d.charger(1)["status"] != "watchdog", 300,
                 "slot 1's heartbeat fault reset")
    # The rack takes the fault reset in at its next read of the charger.
    d.wait_field(lambda: d.rack_probe()["slots"][1]["state"] not in ("FAULT", "EMPTY"), 600,
                 "slot 1 out of FAULT in the rack")
    assert st["state"] == "run" and d.rack_probe()["slots"][1]["online"]
    print(f"[pico] charger 1 back -> online: {back}, rack state {d.rack_probe()['slots'][1]['state']}")


def test_a_hung_loop_is_reset_by_the_watchdog_into_the_power_loss_hold(pico_driver: ScenarioDriver) -> None:
    """The station's loop stops (the channel's ``hang``: a sleep in the loop, no tick, so
    the supervisor feeds nothing). The chip's watchdog (board.json ``watchdog_ms`` 5000)
    resets it; ``main.py`` starts the station again, which holds for confirmation."""
    d = pico_driver
    target = d.target
    assert isinstance(target, PicoTarget) and target.pico is not None
    pico = target.pico
    d.boot(timeout=120)
    assert "confirm" not in d.station()["hold"]
    boots, resets, journal = target.boot_events(), pico.resets, d.journal_probe()
    t_wall, t_field = time.monotonic(), d.field.clock()
    assert target.channel is not None
    target.channel.send("hang", ms=8000)
    assert pico.wait_resets(resets + 1, 120), "no watchdog reset"
    t_reset = d.field.clock() - t_field
    boot = target.wait_reboot(boots, 300)
    took = figures(d, t_wall, t_field)
    assert boot["reset_cause"] == WDT_RESET, boot
    st = d.wait(lambda s: s.get("state") not in (None, "boot"), 300, "the boot to finish")
    assert st["state"] == "hold" and "confirm" in st["hold"], st
    assert d.outputs().get("motion_enable", 0) == 0 and d.motion_coils() == []
    assert d.journal_probe()["boots"] == journal["boots"] + 1
    assert pico.resets == resets + 1
    d.boot(timeout=120)  # the operator confirms: the station runs again
    print(f"\n[pico] hang -> watchdog reset after {t_reset:.2f} s emulated; back in the hold: {took}")
