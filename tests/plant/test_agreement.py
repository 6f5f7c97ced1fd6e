"""The compiled kernel and the pure-Python reference give the same results.

Stated tolerance: every state array agrees to 1e-9 relative (1e-6 absolute on
values near zero) after a four-hour run of two stations with mixed pack types and
charger ratings, grid curtailment, an outage, faults, setpoint changes and the watchdog.
Both evaluate the same expressions in the same order with IEEE doubles, so in
practice they agree to the last bit or nearly.
"""

import numpy as np
import pytest

from host.plant.charging import PackRecord, Plant

TYPES = ["NIO-75", "NIO-100", "NIO-150", "STD-A-60", "NIO-100", "NIO-75"]
RATINGS_KW = [62.5, 30.0, 62.5, 45.0, 120.0, 62.5]  # each station's chargers, slot by slot


def _scenario(backend: str) -> Plant:
    plant = Plant(2, 6, backend=backend, grid_limit_kw=250.0, charger_kw=RATINGS_KW)
    for slot in range(plant.n_slots):
        soc = 0.05 + 0.13 * (slot % 7)
        plant.put_pack(slot, PackRecord(slot + 1, TYPES[slot % 6], soc, temp_c=18.0 + slot))
        plant.set_enable(slot, True)
        plant.set_watchdog(slot, 60.0)  # heartbeats come every 45 s here
    plant.set_limits(3, current_a=90.0)
    plant.set_limits(8, power_w=30e3)
    plant.set_target_soc(5, 0.9)
    plant.inject(10, "pump")
    beat = 0
    for minute in range(320):  # 45 s per round: four hours
        beat += 1
        for slot in range(plant.n_slots):
            if slot != 2 or minute < 60:  # slot 2's controller heartbeat stops after an hour
                plant.heartbeat(slot, beat)
        if minute == 30:
            plant.inject(4, "stuck")
        if minute == 90:
            plant.set_grid(1, up=False)
        if minute == 100:
            plant.set_grid(1, up=True)
            for slot in plant.slot_range(1):
                plant.fault_reset(slot)
        if minute == 120:
            plant.take_pack(0)
            plant.inject(7, "runaway")
        plant.step(30.0)  # sub-steps of 5 s
        plant.step(15.0, station=0)
        plant.step(15.0, station=1)
    return plant


def test_compiled_and_reference_agree_over_four_hours():
    fast, ref = _scenario("cython"), _scenario("python")
    assert fast.time_s(0) == ref.time_s(0) == 4 * 3600.0
    for name, a in fast.arrays.items():
        if name.startswith("s_"):
            continue  # scratch
        b = ref.arrays[name]
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-6, err_msg=name)
    # the scenario really exercised the paths it claims to
    assert fast.faults[2] & 0x0200  # watchdog tripped
    assert fast.bms_open[4] == 1  # the stuck charger overcharged its pack until the BMS opened
    assert (fast.e_in[6:] > 0).all()
    assert fast.faults[7] & 0x0004  # runaway pack: over-temperature fault
    assert fast.p_sta.max() <= 250e3 * (1 + 1e-9)


@pytest.mark.parametrize("kind", ["soc", "cc_end"])
def test_event_queries_agree(kind):
    out = []
    for backend in ("cython", "python"):
        plant = Plant(1, 4, backend=backend, watchdog=False)
        for slot, soc in enumerate((0.1, 0.3, 0.5, 0.7)):
            plant.put_pack(slot, PackRecord(slot, "NIO-100", soc))
            plant.set_enable(slot, True)
        out.append(plant.time_to_soc(0.9) if kind == "soc" else plant.time_to_cc_end())
    assert out[0][1] == out[1][1]
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-9)
