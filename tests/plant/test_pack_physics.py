"""Physically sensible behaviour of the pack model under a 62.5 kW charger."""

import numpy as np
import pytest

from host.plant import params as P
from host.plant.charging import PackRecord, Plant

from .helpers import charging_plant, run_until


def test_100kwh_pack_from_20_to_80_percent_at_62_5_kw_takes_about_an_hour():
    plant = charging_plant("NIO-100", 0.2)
    minutes = run_until(plant, lambda p: p.soc[0] >= 0.8, dt=5.0) / 60.0
    # 60 % of 100 kWh plus ~2 % pack losses at 62.5 kW: about 59 min
    assert 55.0 <= minutes <= 65.0
    assert plant.p_out[0] == pytest.approx(62.5e3, rel=1e-3)  # power-limited all the way


def test_bigger_packs_take_proportionally_longer():
    times = {}
    for name in ("NIO-75", "NIO-100", "NIO-150"):
        plant = charging_plant(name, 0.2)
        times[name] = run_until(plant, lambda p: p.soc[0] >= 0.8, dt=10.0)
    assert times["NIO-75"] < times["NIO-100"] < times["NIO-150"]
    assert times["NIO-150"] / times["NIO-75"] == pytest.approx(2.0, rel=0.05)


def test_current_tapers_above_the_80_percent_knee():
    plant = charging_plant("NIO-100", 0.5)
    run_until(plant, lambda p: p.soc[0] >= 0.70)
    i_cc = float(plant.i_out[0])
    assert plant.phase[0] == P.PHASE_CC
    run_until(plant, lambda p: p.soc[0] >= 0.90)
    i_90 = float(plant.i_out[0])
    assert plant.phase[0] == P.PHASE_TAPER
    run_until(plant, lambda p: p.soc[0] >= 0.95)
    i_95 = float(plant.i_out[0])
    assert i_90 < 0.6 * i_cc  # taper: (1 - 0.9) / (1 - 0.8) of the 180 A CC current
    assert i_95 < i_90
    assert plant.status[0] == 4  # DERATED: below the limits because of the taper


def test_charge_ends_full_with_voltage_at_the_cv_limit():
    plant = charging_plant("NIO-100", 0.85)
    run_until(plant, lambda p: p.phase[0] == P.PHASE_FULL)
    assert plant.soc[0] > 0.99
    assert plant.i_out[0] == 0.0
    assert plant.status[0] == 3  # FULL
    assert plant.v_term[0] <= P.PACK_TYPES["NIO-100"].v_max + 1e-6


def test_temperature_rises_under_load_and_relaxes_to_ambient():
    plant = charging_plant("NIO-100", 0.1)
    t_amb = plant.rack.t_amb_c
    run_until(plant, lambda p: p.soc[0] >= 0.7)
    t_hot = float(plant.temp[0])
    assert t_hot > t_amb + 4.0  # ~1.5 kW of I^2R heat into 0.45 MJ/K
    assert t_hot < plant.rack.cool_set_c + 10.0  # the rack's liquid cooling holds it
    plant.set_enable(0, False)
    plant.step(24 * 3600.0)
    assert plant.temp[0] == pytest.approx(t_amb, abs=0.3)


def test_no_charge_outside_the_pack_temperature_window():
    plant = charging_plant("NIO-100", 0.3)
    plant.arrays["temp"][0] = 59.0  # above the pack's 58 degC limit
    plant.arrays["t_amb"][0] = 59.0
    plant.step(60.0)
    assert plant.i_out[0] == 0.0
    plant.arrays["temp"][0] = plant.arrays["t_amb"][0] = 5.0  # cold: half acceptance
    plant.step(60.0)
    assert plant.i_out[0] == pytest.approx(0.5 * 180.0, rel=1e-6)


def _chemical_energy_j(pt: P.PackType, soh: float, soc0: float, soc1: float) -> float:
    """Cap * integral of OCV over SoC, by an independent fine quadrature of params.cell_ocv."""
    n = 20000
    ds = (soc1 - soc0) / n
    total = sum(P.cell_ocv(soc0 + (k + 0.5) * ds) for k in range(n)) * ds
    return pt.cap_ah * soh * 3600.0 * pt.n_series * total


@pytest.mark.parametrize("type_name", ["NIO-75", "NIO-150"])
def test_energy_balance_grid_equals_stored_plus_losses(type_name):
    plant = charging_plant(type_name, 0.15)
    run_until(plant, lambda p: p.phase[0] == P.PHASE_FULL, dt=5.0)
    soc1 = float(plant.soc[0])
    soh = 0.5 * (1.0 + float(plant.soh[0]))
    stored = _chemical_energy_j(P.PACK_TYPES[type_name], soh, 0.15, soc1)
    e_in, e_out = float(plant.e_in[0]), float(plant.e_out[0])
    pack_heat, charger_loss = float(plant.e_pack_heat[0]), float(plant.e_ch_loss[0])
    assert e_in == pytest.approx(e_out + charger_loss, rel=1e-12)
    assert e_out == pytest.approx(stored + pack_heat, rel=3e-3)
    # grid -> stored: about 98 % in the charger times about 97 % in the pack
    assert 0.92 < stored / e_in < 0.97
    assert float(plant.station_energy_j(0)) == pytest.approx(e_in, rel=1e-9)


def test_soh_fades_with_throughput_and_resistance_grows():
    plant = charging_plant("NIO-100", 0.0)
    run_until(plant, lambda p: p.phase[0] == P.PHASE_FULL)
    efc = float(plant.efc[0])
    assert efc == pytest.approx(1.0, abs=0.02)  # one full charge is one full-equivalent cycle
    fade = 1.0 - float(plant.soh[0])
    per_cycle = P.PACK_TYPES["NIO-100"].fade_per_efc
    assert per_cycle <= fade / efc < 2.0 * per_cycle  # warmer than 25 degC fades a little faster
    # an aged pack: lower capacity, higher resistance -> fills in less time, hotter
    young = charging_plant("NIO-100", 0.2)
    old = Plant(1, 1, watchdog=False)
    old.put_pack(0, PackRecord(7, "NIO-100", 0.2, soh=0.8))
    old.set_enable(0, True)
    t_young = run_until(young, lambda p: p.soc[0] >= 0.6)
    t_old = run_until(old, lambda p: p.soc[0] >= 0.6)
    assert t_old == pytest.approx(0.8 * t_young, rel=0.03)
    # R0 grows by half at SoH 0.8: about 30 % more heat per second at the same power
    assert old.e_pack_heat[0] / t_old > 1.2 * young.e_pack_heat[0] / t_young


def test_pack_record_round_trip_keeps_state():
    plant = charging_plant("NIO-150", 0.4)
    plant.step(1800.0)
    rec = plant.take_pack(0)
    assert plant.present[0] == 0 and plant.status[0] == 0  # STANDBY
    plant.step(600.0)  # an empty slot does nothing
    assert rec.type_name == "NIO-150" and rec.pack_id == 100
    assert rec.soc > 0.4 and rec.temp_c > 25.0
    plant.put_pack(0, rec)
    assert plant.soc[0] == rec.soc and plant.temp[0] == rec.temp_c
    with pytest.raises(ValueError):
        plant.put_pack(0, rec)


@pytest.mark.parametrize("grid_kw, soc_tol", [(1e6, 0.003), (600.0, 0.015)])
def test_coarse_sub_steps_track_the_5_s_default(grid_kw, soc_tol):
    # Year-long plant-only runs may use 20-30 s sub-steps (bench/plant_speed.py): every
    # pack's SoC and temperature must stay close to the 5 s run, with and without the
    # grid limit binding (where the power split follows each pack's terminal voltage).
    def run(substep_s):
        p = Plant(1, 23, max_substep_s=substep_s, watchdog=False, grid_limit_kw=grid_kw)
        for s in range(23):
            p.put_pack(s, PackRecord(s, ("NIO-75", "NIO-100", "NIO-150")[s % 3], 0.05 + 0.03 * (s % 10)))
            p.set_enable(s, True)
        rows = []
        for _ in range(24):  # two hours, sampled every 5 min (each step in sub-steps)
            p.step(300.0)
            rows.append((p.arrays["soc"].copy(), p.arrays["temp"].copy()))
        return rows

    fine, coarse = run(5.0), run(30.0)
    assert fine[-1][0].mean() > 0.5  # the packs did charge
    d_soc = max(float(np.abs(a[0] - b[0]).max()) for a, b in zip(fine, coarse, strict=True))
    d_temp = max(float(np.abs(a[1] - b[1]).max()) for a, b in zip(fine, coarse, strict=True))
    assert d_soc < soc_tol and d_temp < 0.2, (d_soc, d_temp)
