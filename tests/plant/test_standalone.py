"""The plant-only station runner: deterministic, and its numbers hang together."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from host.plant._fastplant import ReadySlots
from host.plant.grid import Grid
from host.plant.standalone import DEFAULT_TOU, PlantOnlyRun, _PyReadySlots


def test_same_seed_same_kpis_and_the_counts_add_up():
    a = PlantOnlyRun(2, seed=4).run(2 * 86400.0)
    b = PlantOnlyRun(2, seed=4).run(2 * 86400.0)
    assert a == b
    for k in a:
        assert k.swaps > 300
        waiting_at_end = k.arrivals - k.swaps - k.balked - k.reneged - k.failed
        assert 0 <= waiting_at_end <= 10
        assert k.handover_soc / k.swaps >= 0.9  # only ready packs are handed over
        # each swap refills about 0.9 - 0.28 of a ~90 kWh pack, plus losses
        assert k.grid_kwh / k.swaps == pytest.approx(60.0, rel=0.25)
    assert a[0] != a[1]  # each station has its own arrivals


# KPIs of the plant-only runs below as the dispatcher gave them before its speed-ups
# (numpy masks, one draw per call): a faster dispatcher must simulate the very same thing.
BASELINE_3_DAYS = dict(arrivals=1454, swaps=825, balked=238, reneged=388, failed=0, wait_s=319469.7311663381,
                       handover_soc=794.4509669473491, grid_kwh=57958.84531071343, cost=42551.83167367527)
BASELINE_FAILURES_OUTAGE = dict(arrivals=1410, swaps=197, balked=675, reneged=522, failed=11,
                                wait_s=225142.68908773747, handover_soc=186.17491576379965,
                                grid_kwh=12599.999999999847, cost=8945.999999999858)


def _check(kpi: object, expected: dict[str, float]) -> None:
    for name, value in expected.items():
        got = getattr(kpi, name)
        if isinstance(value, int):
            assert got == value, name
        else:  # the same sums; only a compiler's floating-point contraction may move the last bits
            assert got == pytest.approx(value, rel=1e-9), name


def test_kpis_are_those_of_the_baseline_dispatcher():
    (kpi,) = PlantOnlyRun(1, seed=1).run(3 * 86400.0)
    _check(kpi, BASELINE_3_DAYS)


def test_kpis_with_bay_failures_and_a_grid_outage_are_those_of_the_baseline_dispatcher():
    grid = Grid(300.0, DEFAULT_TOU, outage=(86400.0, 1.25 * 86400.0))
    run = PlantOnlyRun(1, seed=3, grid=grid, swaps_per_day=700.0)
    run.stations[0].bay.failure_rates = {"positioning": 0.03, "jammed_bolt": 0.03, "bolt_torque": 0.05}
    (kpi,) = run.run(2 * 86400.0)
    _check(kpi, BASELINE_FAILURES_OUTAGE)


def test_the_python_backend_runs_without_the_extension_and_agrees():
    # The pure-Python plant is the reference: its plant-only run must not need _fastplant,
    # so it runs in a fresh interpreter where importing the extension fails.
    code = (
        "import sys; sys.modules['host.plant._fastplant'] = None\n"
        "from host.plant.standalone import PlantOnlyRun\n"
        "(k,) = PlantOnlyRun(1, seed=1, backend='python').run(0.5 * 86400.0)\n"
        "print(k.arrivals, k.swaps, k.balked, k.reneged, repr(k.grid_kwh))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout.split()
    (cy,) = PlantOnlyRun(1, seed=1).run(0.5 * 86400.0)
    assert [int(x) for x in out[:4]] == [cy.arrivals, cy.swaps, cy.balked, cy.reneged]
    assert cy.swaps > 0 and float(out[4]) == pytest.approx(cy.grid_kwh, rel=1e-9)


@pytest.mark.parametrize("cls", [ReadySlots, _PyReadySlots])
def test_ready_slots_picks_the_first_fullest_ready_pack_of_the_type_as_argmax_does(cls):
    soc = np.array([0.95, 0.97, 0.97, 0.99, 0.5, 0.97])
    type_idx = np.array([0, 0, 0, 1, 0, 0], dtype=np.int32)
    reserved = np.zeros(6, dtype=np.int8)
    slots = cls(soc, type_idx, reserved)
    assert slots.fullest(0, 6, 0, 0.9) == 1  # 1, 2 and 5 tie: the first
    reserved[1] = 1
    assert slots.fullest(0, 6, 0, 0.9) == 2  # a reserved pack is not offered
    assert slots.fullest(0, 2, 0, 0.96) == -1  # slot 0 is below the SoC asked for, slot 1 reserved
    assert slots.fullest(0, 6, 2, 0.0) == -1  # no pack of that type
    assert slots.fullest(3, 6, 0, 0.98) == -1  # none ready in the range
    assert slots.of_type(0, 6, 0) == [0, 2, 4, 5]


def test_station_seeds_waits_and_the_demand_meter():
    seeds = np.random.SeedSequence(9).spawn(2)

    def run():
        return PlantOnlyRun(2, station_seeds=seeds, record_waits=True, meter_period_s=900.0,
                            swaps_per_day=700.0).run(6 * 3600.0 + 300.0)

    a = run()
    assert a == run() and a[0] != a[1]
    for k in a:
        assert len(k.interval_kwh) == 25  # 24 whole quarter-hours and the 5 minutes after
        assert math.fsum(k.interval_kwh) == pytest.approx(k.grid_kwh, rel=1e-12)
        assert k.swaps <= len(k.waits_s) <= k.swaps + 1 and math.fsum(k.waits_s) == pytest.approx(k.wait_s)
        assert k.waited == sum(w >= 1.0 for w in k.waits_s) > 0


def test_slots_charger_power_initial_soc_and_no_demand():
    def energy(**kw):
        grid = Grid(5000.0, DEFAULT_TOU)  # room for every charger at once
        (k,) = PlantOnlyRun(1, swaps_per_day=0.0, initial_soc=0.5, grid=grid, **kw).run(900.0)
        assert k.arrivals == 0
        return k.grid_kwh

    # 22 packs at half charge, a quarter of an hour at the chargers' power (and their losses)
    full = energy()
    assert full == pytest.approx(22 * 62.5 / 4, rel=0.05)
    assert energy(charger_kw=20.0) == pytest.approx(22 * 20.0 / 4, rel=0.05)
    assert energy(slots=30) == pytest.approx(full, rel=1e-3)  # the extra slots stay empty
    with pytest.raises(ValueError, match="at least 23 slots"):
        PlantOnlyRun(1, slots=22)
