"""The fidelity check (host.fleet.fidelity): the StationSpec -> Scenario mapping, the statistics,
and one small station on both paths."""

from __future__ import annotations

import math
from typing import Any

import pytest

from host.fleet import fidelity, network
from host.fleet.network import StationSpec
from host.fleet.runner import METER_PERIOD_S


def spec(**station: Any) -> StationSpec:
    base: dict[str, Any] = {"id": "S1", "packs": {"NIO-75": 3, "NIO-100": 2}, "chargers": 7,
                            "charger_kw": 40.0, "grid_kw": 180.0, "swaps_per_day": 240.0,
                            "pack_mix": {"NIO-75": 3, "NIO-100": 2}, "profile": "flat", "patience": "15m",
                            "balk_from": 2, "balk_all": 5}
    base.update(station)
    return network.from_dict({"stations": [base]}, "test").stations[0]


def test_the_scenario_carries_every_field_of_the_station() -> None:
    s = spec()
    sc = fidelity.scenario_for(s, 7200.0, seed=9)
    assert sc.duration_s == 7200.0 and sc.seed == 9
    assert len(sc.station["slots"]) == 7
    assert {slot["charger_kw"] for slot in sc.station["slots"]} == {40.0}
    assert sc.station["limits"]["grid_kw"] == 180.0 and sc.grid_capacity_kw == 180.0
    assert [(r.pack_type, r.count) for r in sc.rack] == [("NIO-75", 3), ("NIO-100", 2)]
    assert all(r.soc == (100.0, 100.0) for r in sc.rack)
    assert len(sc.demand.rate_per_hour) == 24
    assert math.fsum(sc.demand.rate_per_hour) * sc.demand.scale == pytest.approx(240.0)
    assert sc.demand.rate_per_hour == tuple(s.rates_per_hour())
    # one model per pack type, compatible with that type only, weighted as the mix
    assert sc.demand.models == {"FID-NIO-75": 3.0, "FID-NIO-100": 2.0}
    assert sc.station["compatibility"]["FID-NIO-75"] == ("NIO-75",)
    assert sc.station["compatibility"]["FID-NIO-100"] == ("NIO-100",)
    assert set(sc.station["model_codes"]) >= {"FID-NIO-75", "FID-NIO-100"}
    assert sc.demand.patience_s == 900.0
    assert (sc.demand.balk_from, sc.demand.balk_all) == (2, 5)
    assert sc.demand.arrival_soc == fidelity.ARRIVAL_SOC_PCT
    bands = [(b["start_min"], b["end_min"], b["price"]) for b in sc.station["tou"]["bands"]]
    assert bands == [(b.start_min, b.end_min, b.price) for b in s.tariff]
    assert sc.price_at(9 * 3600.0) == s.tariff[1].price


def test_endless_patience_and_a_free_tariff_map_to_the_scenarios_own_words() -> None:
    sc = fidelity.scenario_for(spec(patience=0, tariff="free"), 3600.0)
    assert sc.demand.patience_s == 0.0  # the scenario's "waits for ever"
    assert sc.station["tou"] is None
    assert sc.price_at(12 * 3600.0) == 0.0


def test_pack_types_without_arrivals_get_no_model() -> None:
    sc = fidelity.scenario_for(spec(pack_mix={"NIO-75": 1, "NIO-100": 0}), 3600.0)
    assert sc.demand.models == {"FID-NIO-75": 1.0}


def test_interval_is_the_student_t_interval() -> None:
    iv = fidelity.interval([1.0, 2.0, 3.0])
    assert iv.mean == 2.0 and iv.n == 3
    assert iv.half == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    one = fidelity.interval([5.0, math.nan])
    assert one.n == 1 and math.isnan(one.half)


def test_verdict_overlap_and_tolerance() -> None:
    far = fidelity.verdict("swaps", [100.0, 101.0, 99.0], [150.0, 151.0, 149.0])
    assert not far.overlap and not far.within and not far.agree
    near = fidelity.verdict("swaps", [100.0, 100.0, 100.0], [104.0, 104.0, 104.0])
    assert not near.overlap and near.within and near.agree  # 4 <= 5 % of 100
    wide = fidelity.verdict("swaps", [90.0, 110.0], [120.0, 140.0])
    assert wide.overlap


def test_meter_peak_is_the_highest_period_mean() -> None:
    m = fidelity.MeterKpi(chargers_total=1)
    # 100 kW for the first period, 300 kW for half the second, then nothing
    m.advance(METER_PERIOD_S, meter_kwh=100.0 * METER_PERIOD_S / 3600.0)
    m.advance(1.5 * METER_PERIOD_S, meter_kwh=(100.0 + 150.0) * METER_PERIOD_S / 3600.0)
    m.advance(2.5 * METER_PERIOD_S, meter_kwh=(100.0 + 150.0) * METER_PERIOD_S / 3600.0)
    assert m.peak_kw(2.5 * METER_PERIOD_S) == pytest.approx(150.0)
    assert m.marks_kwh == pytest.approx([25.0, 62.5])


def test_sample_takes_each_class_first() -> None:
    cls = {"packs": {"NIO-75": 2}, "grid_kw": 100, "pack_mix": {"NIO-75": 1}}
    net = network.from_dict({"classes": {"a": cls, "b": cls},
                             "stations": [{"id": f"{c}{i}", "class": c, "swaps_per_day": 10.0 * (i + 1)}
                                          for c in "ab" for i in range(5)]}, "t")
    picked = fidelity.sample_stations(net.stations, 3)
    assert [s.station_class for s in picked[:2]] == ["a", "b"]
    assert len({s.id for s in picked}) == 3


@pytest.mark.slow
def test_served_swaps_agree_on_both_paths() -> None:
    """One small, busy station for two hours, three replications on each path: the firmware
    and the stand-in dispatcher serve the same number of vehicles within the stated interval
    or tolerance."""
    (c,) = fidelity.compare([spec()], reps=3, duration_s=7200.0, seed=3)
    assert len(c.plant) == len(c.firmware) == 3
    assert all(r["swaps"] > 5 for r in c.plant + c.firmware)  # enough traffic to compare
    v = {x.kpi: x for x in c.verdicts()}["swaps"]
    assert v.agree, fidelity.table([c])
