"""Swaps on the emulated Pico ([pico]): the station as ``main.py`` starts it on the real
RPI_PICO image, the field answering on UART0/UART1 in emulated time.

One booted station for the module (a power-on costs a minute of wall time): a full swap,
then an e-stop pressed in the middle of the next one. The bay's mechanics run at
``bay_scale`` 0.005 (the 144 s swap's motions in 0.7 s), so what a swap costs here is the
controller's own pace: its ticks take 10-50 ms of a real Pico's time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.rig import ScenarioDriver
from host.devices.bay import MOTION_COILS
from tests.hil.pico_rig import figures, pico_station

pytestmark = [pytest.mark.pico, pytest.mark.slow]  # minutes of wall time: started first

BAY_SCALE = 0.005


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScenarioDriver]:
    with pico_station(Path(tmp_path_factory.mktemp("pico-swaps")), bay_scale=BAY_SCALE) as drv:
        drv.wait(lambda s: s["rack"]["ready"] >= 15, 300, "the chargers answering")
        drv.marks["heap_boot"] = drv.target.request("probe", what="mem")["free"]
        drv.boot(timeout=120)
        yield drv


def test_one_full_swap(d: ScenarioDriver) -> None:
    t_wall, t_field = time.monotonic(), d.field.clock()
    before = d.field.pack_ids()
    v = d.arrive(model="NIO-ES6", pack_type="NIO-75", soc=0.18)
    st = d.wait_swaps(1, timeout=600)
    took = figures(d, t_wall, t_field)
    assert st["swaps_ok"] == 1 and st["swaps_other"] == 0, st
    assert all(ms > 0 for ms in st["last_step_ms"]), st["last_step_ms"]
    left = d.departed()
    assert [x["vehicle"] for x in left] == [v.vehicle_id]
    new_pack = left[0]["pack"]
    assert new_pack != v.pack_id and new_pack in before.values()
    after = d.field.pack_ids()
    assert v.pack_id in after.values() and new_pack not in after.values()
    recs = d.swap_records()
    assert [(f["n"], f["o"], f["v"], f["po"], f["pi"]) for _, f in recs] == \
        [(1, "ok", str(v.vehicle_id), v.pack_id, new_pack)]
    assert d.rack_mismatches() == [] and d.field_errors() == []
    heap = d.target.request("probe", what="mem")
    tick_max = d.target.status().get("tick_us_max")
    print(f"\n[pico] full swap: {took}; steps (ms) {st['last_step_ms']}; swap {st['last_swap_ms']} ms; "
          f"heap free after boot {d.marks['heap_boot']} B, after the swap {heap['free']} B; "
          f"longest tick {tick_max} us")


def test_estop_mid_swap_drops_every_drive_within_a_few_ticks(d: ScenarioDriver) -> None:
    """The bay's e-stop chain opens while the lift runs. It is pressed from the console's
    callback on the emulator's thread, right after a status line, so the press is placed
    exactly between two of the controller's ticks (``ticks`` of that status)."""
    bay: Any = d.field.bay
    slaves = d.field.slaves  # type: ignore[attr-defined]
    press: dict[str, Any] = {}
    seen: list[tuple[float, int, list[str]]] = []  # (field s, ticks, holds) of every status after the press

    def on_status(msg: dict[str, Any]) -> None:  # on the emulator's thread, between instructions
        if msg.get("k") != "status":
            return
        s = msg.get("s") or {}
        if not press:
            if s.get("step") == "lift" and bay.motion_coils_on():
                bay.set_input("estop_ok", False)
                press.update(t=d.field.clock(), ticks=msg["ticks"], coils=bay.motion_coils_on())
            return
        seen.append((d.field.clock(), msg["ticks"], list(s.get("hold") or [])))

    d.target.listeners.append(on_status)
    try:
        t_wall, t_field = time.monotonic(), d.field.clock()
        d.arrive(soc=0.3)
        st = d.wait(lambda s: "estop" in s["hold"], 300, "the e-stop latched")
        assert st["state"] == "hold" and press, (st, press)
        d.wait_field(lambda: d.motion_coils() == [], 60, "every drive off")
        took = figures(d, t_wall, t_field)
    finally:
        d.target.listeners.remove(on_status)
    writes = d.field.call(lambda: list(bay.coil_writes))
    stop = [(t, img) for t, img in writes if t >= press["t"]]
    assert stop, "no coil write after the press"
    t_off, img = stop[0]  # the first write after the press is the stop image
    assert [c for c in MOTION_COILS if img[c]] == [], f"coils {img} written after the e-stop"
    latched = next(x for x in seen if "estop" in x[2])
    done = next(x for x in seen if x[0] >= t_off)  # the status of the tick that wrote it, or a later one
    reads = [r for r in slaves["bay_io"].log.snapshot(press["t"]) if r.fc == 2 and r.t <= t_off]
    latency_ms = (t_off - press["t"]) * 1000
    print(f"\n[pico] e-stop in lift (coils {press['coils']} on): drives off {latency_ms:.1f} ms emulated "
          f"after the press; latched in tick +{latched[1] - press['ticks']}, stop image by tick "
          f"+{done[1] - press['ticks']}; {len(reads)} bay sensor read(s) between; {took}")
    assert latency_ms < 250, latency_ms
    time.sleep(0.5)
    assert d.motion_coils() == [] and not d.ack(), "ack accepted while the e-stop is pressed"
    assert d.outputs().get("motion_enable", 0) == 0
    d.estop(False)
    d.ack_when_clear(timeout=120)
    d.wait(lambda s: s["hold"] == [], 120, "the hold released by the ack")
