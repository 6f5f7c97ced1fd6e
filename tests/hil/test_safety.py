"""E-stop on the rig: the controller's own e-stop input in every swap step, and the bay's
e-stop chain (read through the bay I/O module) while something moves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from firmware.core.config import SWAP_STEPS
from firmware.proto import regmap as rm
from hil.rig import Rig, ScenarioDriver
from host.devices.bay import MOTION_COILS


def _coil_writes(d: ScenarioDriver, start: int, end: int) -> list[list[int]]:
    """Coil images the controller wrote to the bay line from byte ``start`` to ``end`` of
    what it wrote, in wire order (the line's own record: exact on a loaded host too)."""
    line = d.rig.lines["bay_io"]
    deadline = time.monotonic() + 2
    while sum(len(r) for _, r in line.requests_written()) < end:  # the last frame to close
        assert time.monotonic() < deadline, "the line never carried the bytes the target wrote"
        time.sleep(0.01)
    out = []
    for off, req in line.requests_written():
        if start <= off < end and req[1] == 15:
            n = (req[4] << 8) | req[5]
            out.append([(req[7 + (i >> 3)] >> (i & 7)) & 1 for i in range(n)])
    return out


@pytest.mark.hil_needs("pins", reason="the step trigger sets the controller's own e-stop input")
@pytest.mark.hil_rig(bay_scale=0.02)
def test_estop_in_each_swap_step(hil_driver: ScenarioDriver) -> None:
    d = hil_driver
    held_in = []
    for k, step in enumerate(SWAP_STEPS):
        d.trigger(step, "pin", plan="swap", name="estop_ok", value=0)
        if k == 0:
            v = d.arrive(soc=0.2)
        st = d.wait(lambda s: "estop" in s["hold"], 30, f"the e-stop in step {step}")
        held_in.append(st["step"])
        assert st["state"] == "hold"
        # The pin was set between two ticks, so the bytes written to the bay line by then
        # are what went out before the latch; everything after them, after it.
        latched_at = [e for e in d.triggered() if e["step"] == step][-1]["sent"]["bay_io"]
        d.wait_field(lambda: d.motion_coils() == [], 5, "every drive off")
        d.wait(lambda s: True, 1, "a status")  # the outputs of a later tick
        assert d.outputs()["motion_enable"] == 0
        assert not d.ack(), "ack accepted while the e-stop is still pressed"
        time.sleep(0.3)  # held: nothing may start meanwhile
        held_until = d.target.request("probe", what="sent")["bay_io"]
        d.controller_estop(False)
        images = _coil_writes(d, latched_at, held_until)
        assert images, f"no stop image on the bay line after the e-stop in step {step}"
        for img in images:  # in wire order: the first is the stop's own image
            assert [c for c in MOTION_COILS if img[c]] == [] and img[rm.BAY_CO_BEACON_RED], \
                f"step {step}: coils {img} written after the e-stop latched"
        d.ack_when_clear()  # accepted once a tick has read the input closed again
        d.wait(lambda s: s["hold"] == [], 5, "the hold released by the ack")
    assert held_in == list(SWAP_STEPS)
    st = d.wait_swaps(1, timeout=60)
    assert st["swaps_ok"] == 1 and st["swaps_other"] == 0
    assert [x["vehicle"] for x in d.departed()] == [v.vehicle_id]
    alarms = [f for _, f in d.swap_records()]
    assert [f["o"] for f in alarms] == ["ok"]
    assert d.field_errors() == []


@pytest.mark.hil_rig(bay_scale=0.05)
def test_bay_estop_chain_stops_the_lift(hil_driver: ScenarioDriver) -> None:
    d = hil_driver
    d.arrive(soc=0.3)
    d.wait_step("lift", 30)
    d.wait_field(lambda: d.motion_coils() != [], 5, "the lift running")
    d.estop(True)
    d.wait(lambda s: "estop" in s["hold"], 5, "the bay e-stop seen")
    d.wait_field(lambda: d.motion_coils() == [], 5, "every drive off")
    lift = d.field.call(lambda: d.field.bay.model.lift)
    pos = d.field.call(lambda: lift.at(d.field.bay.now()))
    time.sleep(0.3)
    assert d.field.call(lambda: lift.at(d.field.bay.now())) == pos, "the lift kept moving"
    assert not d.ack()
    d.estop(False)
    d.ack_when_clear()  # accepted once the station has read the chain closed again
    st = d.wait_swaps(1, timeout=60)
    assert st["swaps_ok"] == 1


@pytest.mark.hil_needs("lines", reason="the bay module is silenced on the line emulator")
def test_boot_confirms_once_the_station_can_see_its_bay(hil_rig_factory: Callable[..., Rig]) -> None:
    """A bay module that stops answering after the boot (as on a loaded host): the station
    rightly refuses a confirm until it reads the bay again; the driver, as an operator,
    confirms once it does, and nothing has moved."""
    rig = hil_rig_factory()
    d = rig.driver()
    d.boot(confirm=False)
    unit = d.cfg["buses"]["bay_io"]["unit"]
    rig.lines["bay_io"].silence(unit)
    d.wait(lambda s: "-1:bay_io_offline" in (s.get("alarms") or []), 30, "the bay module missed")
    assert not d.confirm()  # the station cannot see its bay: refused
    threading.Timer(1.0, rig.lines["bay_io"].restore, (unit,)).start()
    st = d.boot()
    assert "confirm" not in st["hold"], st
    assert d.motion_coils() == []
