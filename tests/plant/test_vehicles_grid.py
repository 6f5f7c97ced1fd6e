"""Arrivals follow the demand profile, deterministically; the grid model's prices and outage."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from host.plant.charging import Plant
from host.plant.grid import Grid, TouBand
from host.plant.vehicles import PARTNER_MODELS, ArrivalProcess, hourly_rates

DAYS = 200


def test_same_seed_same_sequence_other_seed_other_sequence():
    def first(seed):
        arrivals = ArrivalProcess(seed).until(86400)
        return [(a.t_s, a.model.name, a.pack_type, a.pack.soc, a.patience_s) for a in arrivals]

    assert first(7) == first(7)
    assert first(7) != first(8)


def test_counts_per_hour_follow_the_profile():
    rates = hourly_rates(480.0)
    counts = np.zeros(24)
    for a in ArrivalProcess(seed=11).until(DAYS * 86400.0):
        counts[int(a.t_s // 3600) % 24] += 1
    expected = np.array(rates) * DAYS
    # each hour within 4 standard deviations of its Poisson mean ...
    assert np.all(np.abs(counts - expected) < 4.0 * np.sqrt(expected)), (counts, expected)
    # ... and the whole profile passes a chi-square test (23 dof: 99.9 % quantile is 49.7)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 49.7
    assert counts.sum() == pytest.approx(480 * DAYS, rel=4 / math.sqrt(480 * DAYS))


def test_weekly_profile_and_expected_count():
    weekly = hourly_rates(480.0) * 5 + hourly_rates(240.0) * 2  # quiet weekend
    proc = ArrivalProcess(seed=3, rates_per_hour=weekly)
    assert proc.expected_count(0, 7 * 86400.0) == pytest.approx(5 * 480 + 2 * 240)
    n_weekend = sum(1 for a in proc.until(20 * 7 * 86400.0) if (a.t_s // 86400) % 7 >= 5)
    assert n_weekend == pytest.approx(20 * 2 * 240, rel=0.1)


def test_arrival_attributes_mix_and_ranges():
    proc = ArrivalProcess(seed=5, fleet=PARTNER_MODELS)
    arrivals = proc.until(20 * 86400.0)
    assert {a.pack_type for a in arrivals} == {"STD-A-60"}
    nio = ArrivalProcess(seed=5).until(20 * 86400.0)
    share = {t: sum(a.pack_type == t for a in nio) / len(nio) for t in ("NIO-75", "NIO-100", "NIO-150")}
    assert share["NIO-75"] > share["NIO-150"] and share["NIO-100"] > share["NIO-150"] > 0.02
    socs = np.array([a.pack.soc for a in nio])
    assert socs.min() >= 0.05 and socs.max() <= 0.70
    assert socs.mean() == pytest.approx(0.05 + 0.65 * 2 / 7, abs=0.01)  # Beta(2, 5) mean
    assert np.mean([a.patience_s for a in nio]) == pytest.approx(1200.0, rel=0.05)
    assert len({a.vehicle_id for a in nio}) == len(nio) == len({a.pack.pack_id for a in nio})


def test_balking_grows_with_the_queue():
    proc = ArrivalProcess(seed=1)
    assert [proc.balk_probability(q) for q in (0, 2, 3, 5, 8, 12)] == pytest.approx(
        [0.0, 0.0, 1 / 6, 3 / 6, 1.0, 1.0]
    )
    arrivals = proc.until(30 * 86400.0)
    assert not any(proc.balks(a, 0) for a in arrivals)
    assert all(proc.balks(a, 8) for a in arrivals)
    assert sum(proc.balks(a, 5) for a in arrivals) / len(arrivals) == pytest.approx(0.5, abs=0.03)


def test_until_does_not_lose_the_arrival_past_its_end():
    whole = [a.vehicle_id for a in ArrivalProcess(seed=2).until(2 * 86400.0)]
    proc = ArrivalProcess(seed=2)
    halves = [a.vehicle_id for a in proc.until(86400.0)] + [a.vehicle_id for a in proc.until(2 * 86400.0)]
    assert halves == whole


def test_grid_from_station_config_prices_and_outage():
    cfg = json.loads((Path(__file__).resolve().parents[2] / "firmware" / "station.json").read_text())
    grid = Grid.from_station_config(cfg, outage=(3600.0, 7200.0))
    assert grid.limit_kw == cfg["limits"]["grid_kw"]
    assert grid.price_at(60.0) == 0.31
    assert grid.price_at(86400.0 + 11 * 3600.0) == 1.05
    assert grid.next_change_after(0.0) == 3600.0  # the outage starts
    assert grid.next_change_after(7200.0) == 480 * 60.0
    assert not grid.is_up(5000.0) and grid.is_up(7200.0)
    plant = Plant(1, 1)
    grid.apply(plant, 0, 5000.0)
    assert plant.grid_up[0] == 0 and plant.grid_limit[0] == cfg["limits"]["grid_kw"] * 1000.0
    assert grid.cost(3.6e6, 11 * 3600.0) == pytest.approx(1.05)
    assert Grid(100.0, (TouBand(0, 60, 1.0),)).price_at(2 * 3600.0) == 0.0  # a gap is free
