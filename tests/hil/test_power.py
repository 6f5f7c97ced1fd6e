"""Power cuts on the rig: the firmware process is killed in every swap step, or stopped
by a torn flash write (the write that records the step), then powered on again.

After each restart the station must hold safely and move nothing until the operator
confirms; its rack must match the packs the chargers report (or say where it does not);
no swap record may be lost or duplicated. The swap then resumes and completes.

Off-times: 0.2 s (the bay module still holds its outputs when the controller is back,
unless the boot outlasts its comm watchdog), 2.5 s (beyond the module's 1.5 s comm
watchdog: every coil has dropped, so the platform is down, the grip open, the positioner
retracted) and 6 s (beyond the chargers' 5 s heartbeat watchdog as well: charging stopped)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from firmware.core.config import SWAP_STEPS
from hil.power_trials import StepWatch, TrialResult, follow_swap, pack_places, run_trial
from hil.rig import Rig, ScenarioDriver

BAY_WATCHDOG_S = 1.5  # the comm watchdog the controller writes to the bay module
CHARGER_WATCHDOG_S = 5.0  # the chargers' heartbeat watchdog (default, left as it is)


TORN = pytest.mark.hil_needs("flash_cut", reason="a torn write needs the cut switch before the flash")


@pytest.mark.hil_needs("kill", reason="the cuts are timed by step triggers inside the target")
# On qemu all four run (a cut switch before its flash tears the write as on unix). Load 3-4, one
# process: kill 43 s and 75 s, torn write 43 s and 120 s; the 6 s item costs as much on unix (its
# five 6 s power-offs and the chargers' restart), and it is the one past the heartbeat watchdog.
@pytest.mark.hil_slow_on("qemu")
@pytest.mark.parametrize(("how", "off_s"), [
    ("kill", 0.2), pytest.param("torn_write", 0.2, marks=TORN),
    ("kill", BAY_WATCHDOG_S + 1.0),  # every bay coil has dropped
    pytest.param("torn_write", CHARGER_WATCHDOG_S + 1.0, marks=TORN),  # and the chargers have stopped
])
def test_power_cut_in_each_swap_step(hil_driver: ScenarioDriver, how: str, off_s: float) -> None:
    d = hil_driver
    cut_in = []
    # Identification writes nothing to flash (a swap is journalled once the vehicle is
    # admitted), so a torn write can first happen in "authorise": its swap-begin record.
    steps = SWAP_STEPS if how == "kill" else SWAP_STEPS[1:]
    for k, step in enumerate(steps):
        if how == "kill":
            d.trigger(step, "kill", plan="swap", delay_ms=40)
        else:
            d.trigger(step, "cut_write", plan="swap")
        if k == 0:
            v = d.arrive(soc=0.22)
        # Generous: a step's own time plus its wait for the field, on a starved host (load 6).
        assert d.target.wait_exit(180) is not None, f"no cut in step {step}; last status {d.station()}"
        if how == "torn_write":
            assert d.target.channel is not None and d.target.channel.event("powercut") is not None
        cut_in.append(step)
        d.marks["cut"] = d.marks.get("power_on", 0.0)
        d.power_on(off_s=off_s)
        problems = d.check_recovery()
        assert problems == [], f"after a cut in {step} off {off_s} s: {problems}"
        st = d.station()
        i = SWAP_STEPS.index(step)
        # The kill comes after the step's journal record: the swap resumes at that step. The
        # torn write is that record: the swap resumes at the step before, and a swap whose
        # first step record was torn had moved nothing, so it is closed as "power_loss".
        resume = step if how == "kill" else SWAP_STEPS[i - 1]
        if SWAP_STEPS.index(resume) > SWAP_STEPS.index("authorise"):  # journalled from here on
            assert st["swap"] is not None and st["step"] == resume, f"swap not restored at {resume}: {st}"
        d.wait_bay_answers()  # as the operator: confirm once the station sees its bay again
        assert d.confirm(), f"confirm refused after a cut in {step}: {d.station()}"
    assert cut_in == list(steps)
    st = d.wait_swaps(1, timeout=60)
    assert st["swaps_other"] == 0
    assert [x["vehicle"] for x in d.departed()] == [v.vehicle_id]
    recs = [f for _, f in d.swap_records()]
    assert [f["n"] for f in recs] == list(range(1, len(recs) + 1))
    assert [f["o"] for f in recs] == ["power_loss"] * (len(recs) - 1) + ["ok"], recs
    assert recs[-1]["po"] == v.pack_id and all(f["po"] is None for f in recs[:-1])
    assert d.swap_record_problems() == [] and d.rack_mismatches() == []
    assert d.field_errors() == []


@pytest.mark.slow
@pytest.mark.hil_needs("kill", reason="the cuts are timed by step triggers inside the target")
def test_power_cut_sweep_no_timeout_the_mechanics_do_not_explain(hil_rig_factory: Callable[..., Rig]) -> None:
    """Kills across every step at two offsets, with the power back before and after the bay
    module's watchdog: a resumed step that runs long must be waiting for something the
    field does not show yet. A step stalled while the field shows its done condition (the
    controller not seeing fresh sensors) is a failure, as is any broken invariant."""
    offs = (0.2, BAY_WATCHDOG_S + 1.0)
    rig = hil_rig_factory()
    d = rig.driver()
    d.boot()
    unexplained, broken, explained = [], [], []
    for i, step in enumerate(SWAP_STEPS):
        for k, off in enumerate(offs):
            delay = (40, 400)[(i + k) % 2]
            r = run_trial(d, step, delay, off)
            r.problems += pack_places(d)
            where = f"{step} +{delay} ms off {off} s (cut in {r.cut_in})"
            unexplained += [f"{where}: {s}" for s in r.unexplained]
            explained += [f"{where}: {s.step} {s.ended}" for s in r.stalls if not s.unexplained]
            explained += [f"{where}: comms hold {h}" for h in r.comms_holds]  # see follow_swap
            broken += [f"{where}: {p}" for p in r.recovery + r.problems]
            if r.problems or r.outcome != "ok":
                rig.stop()  # the bay is not clear: a new station for the next cut
                rig = hil_rig_factory()
                d = rig.driver()
                d.boot()
    assert unexplained == [], f"{unexplained}; explained by the mechanics: {explained}"
    assert broken == [], f"{broken}; stalls explained by the mechanics: {explained}"


@pytest.mark.hil_needs("lines", reason="the bay module is silenced on the line emulator")
def test_a_trial_confirms_a_comms_hold_as_the_operator_once_the_module_answers(
        hil_rig_factory: Callable[..., Rig]) -> None:
    """A bay module silent mid-swap holds the swap until the operator confirms (the module
    answering again); the trials do that and count it, and the swap then ends."""
    rig = hil_rig_factory()
    d = rig.driver()
    d.boot()
    d.arrive(soc=0.95)
    d.wait_step("store", timeout=60)
    unit = d.cfg["buses"]["bay_io"]["unit"]
    rig.lines["bay_io"].silence(unit)
    d.wait(lambda s: "comms" in (s.get("hold") or []), 10, "a comms hold")
    threading.Timer(0.5, rig.lines["bay_io"].restore, (unit,)).start()
    r = TrialResult("store", 0, 0.0, "silence")
    st = follow_swap(d, lambda s: s.get("swaps_ok", 0) >= 1 and s.get("step") is None, 90,
                     StepWatch(d, 4.0), r)
    assert st is not None and r.problems == [], (r.problems, d.station())
    assert [h.split(" (")[0] for h in r.comms_holds] == ["in store"]
    assert d.swap_record_problems() == [] and d.rack_mismatches() == []


@pytest.mark.hil_needs("lines", "kill", reason="the bay module is silenced on the line emulator")
def test_a_comms_hold_before_the_cut_is_confirmed_and_the_cut_still_comes(
        hil_rig_factory: Callable[..., Rig]) -> None:
    """A bay module silent before the step to cut holds the swap there; the trial confirms
    it as the operator once the module answers, so the swap goes on to the cut."""
    rig = hil_rig_factory()
    d = rig.driver()
    d.boot()
    unit = d.cfg["buses"]["bay_io"]["unit"]
    line = rig.lines["bay_io"]
    done = {"silenced": False, "restoring": False}

    def silence_in_unbolt(msg: dict) -> None:  # on the target's reader thread
        st = msg.get("s") or {} if msg.get("k") == "status" else {}
        if st.get("step") == "unbolt" and not done["silenced"]:
            done["silenced"] = True
            line.silence(unit)
        elif "comms" in (st.get("hold") or []) and not done["restoring"]:
            done["restoring"] = True
            threading.Timer(0.5, line.restore, (unit,)).start()

    d.target.listeners.append(silence_in_unbolt)
    try:
        r = run_trial(d, "install", 40, 0.2)
    finally:
        d.target.listeners.remove(silence_in_unbolt)
    assert done["restoring"], "the silence never held the swap"
    assert r.problems == [] and r.recovery == [], (r.problems, r.recovery)
    assert [h.split(" (")[0] for h in r.comms_holds] == ["in unbolt"]
    assert r.cut_in == "install" and r.outcome == "ok"
