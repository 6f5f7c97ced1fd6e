"""A power cut in the middle of a swap on the emulated Pico ([pico]).

The chip stops between two instructions while the carrier stores the vehicle's pack; the
flash (LittleFS, the journal on it) is taken as it is then and the next power-on boots
``main.py`` from it. The new boot takes ~2 s of emulated time, longer than the bay
module's 1.5 s comm watchdog, so every coil has dropped when the controller is back.
The recovery invariants are the unix target's (``ScenarioDriver.check_recovery``, see
hil/power_trials.py): the station holds for confirmation and moves nothing before it,
its rack matches the chargers, no swap record is lost or doubled; after the confirm the
swap resumes and ends, every pack in exactly one place.

Two power-ons in one module: about 3.5 minutes of wall time on an idle 2-core machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.core.config import SWAP_STEPS
from hil.power_trials import StepWatch, TrialResult, follow_swap, pack_places
from hil.rig import ScenarioDriver
from tests.hil.pico_rig import figures, pico_station

pytestmark = [pytest.mark.pico, pytest.mark.slow]  # minutes of wall time: started first

CUT_IN = "store"


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScenarioDriver]:
    with pico_station(Path(tmp_path_factory.mktemp("pico-power")), bay_scale=0.005) as drv:
        drv.boot(timeout=300)
        yield drv


def test_power_cut_mid_swap_recovers_and_the_swap_resumes(d: ScenarioDriver) -> None:
    v = d.arrive(soc=0.22)
    d.wait_step(CUT_IN, timeout=300, plan="swap")
    d.power_cut()
    cut_at = d.field.clock()
    before = d.station()  # the last status before the cut
    t_wall = time.monotonic()
    d.power_on(boot_timeout=300, off_s=0.2)
    problems = d.check_recovery(confirm_timeout=300)
    assert problems == [], f"after a cut in {before.get('step')}: {problems}"
    st = d.station()
    i = SWAP_STEPS.index(before["step"])
    assert st["swap"] is not None and st["step"] in SWAP_STEPS[i - 1: i + 1], (before, st)
    reboot = figures(d, t_wall, cut_at)
    assert d.confirm(), st
    r = TrialResult(CUT_IN, 0, 0.2, "power_cut")
    watch = StepWatch(d, 1e9)  # no stall verdicts: a step's wall time here is the CPU's, not the bay's
    t_wall, t_field = time.monotonic(), d.field.clock()
    def ended(s: dict[str, Any]) -> bool:
        return s.get("swaps_ok", 0) + s.get("swaps_other", 0) >= 1 and s.get("step") is None

    end = follow_swap(d, ended, 600, watch, r)
    assert end is not None and r.problems == [], (r.problems, d.station())
    resumed = figures(d, t_wall, t_field)
    recs = [f for _, f in d.swap_records()]
    assert [(f["n"], f["o"], f["po"]) for f in recs] == [(1, "ok", v.pack_id)], recs
    assert [x["vehicle"] for x in d.departed()] == [v.vehicle_id]
    assert d.swap_record_problems() == [] and d.rack_mismatches() == []
    assert pack_places(d) == [] and d.field_errors() == []
    print(f"\n[pico] cut in {before['step']} -> resumed at {st['step']}; power-on to the hold: {reboot}; "
          f"confirm to the swap's end: {resumed}; comms holds {r.comms_holds}")
