"""KPI integration and report writers."""

import csv
import io
import json
import math

import pytest

from host.sim import report
from host.sim.kpi import SERIES_COLUMNS, KpiRecorder, histogram, percentile


def test_percentile_interpolates():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 95) == 5
    assert percentile([10, 0, 20], 100) == 20
    assert math.isnan(percentile([], 50))


def test_histogram_puts_overflow_in_last_bin():
    h = histogram([0, 59, 60, 144, 1000], [0, 60, 150, 300])
    assert h["counts"] == [2.0, 2.0, 1.0]


def recorder() -> KpiRecorder:
    price = lambda t: 1.0 if t < 3600 else 2.0  # noqa: E731
    k = KpiRecorder(chargers_total=4, price_at=price)
    k.levels(0.0, grid_kw=100.0, queue=0, chargers_busy=2)
    k.levels(1800.0, grid_kw=200.0, queue=3, chargers_busy=4)
    k.levels(3600.0, grid_kw=50.0, queue=1, chargers_busy=1)
    return k


def test_levels_integrate_piecewise_constant():
    k = recorder()
    s = k.summary(7200.0)
    # 100 kW * 0.5 h + 200 kW * 0.5 h + 50 kW * 1 h
    assert s["energy"]["grid_kwh"] == pytest.approx(200.0)
    assert s["energy"]["cost"] == pytest.approx(50 * 1 + 100 * 1 + 50 * 2)
    assert s["energy"]["peak_grid_kw"] == 200.0
    assert s["queue"]["mean"] == pytest.approx((3 * 1800 + 1 * 3600) / 7200)
    assert s["queue"]["max"] == 3
    assert s["chargers"]["utilisation"] == pytest.approx((2 * 1800 + 4 * 1800 + 1 * 3600) / (4 * 7200))


def test_metered_energy_replaces_power_times_time():
    k = KpiRecorder(chargers_total=1, price_at=lambda t: 2.0)
    k.levels(0.0, grid_kw=100.0, queue=0, chargers_busy=1, meter_kwh=0.0)
    k.levels(3600.0, grid_kw=50.0, queue=0, chargers_busy=1, meter_kwh=80.0)  # tapered: 80 kWh, not 100
    k.advance(7200.0, meter_kwh=120.0)
    s = k.summary(7200.0)
    assert s["energy"]["grid_kwh"] == pytest.approx(120.0)
    assert s["energy"]["cost"] == pytest.approx(240.0)


def test_vehicle_counts_and_waits():
    k = KpiRecorder(chargers_total=1, warmup_s=100.0)
    for _ in range(5):
        k.arrival()
    k.balk()
    k.renege(30.0)
    k.served(50.0, 10.0)  # before warm-up: counted as served, left out of wait statistics
    k.served(150.0, 0.0)
    k.served(200.0, 40.0)
    # drove in at once; 25 s of its 30 s wait was the bay's own approach and identification
    k.served(300.0, 30.0, queued_s=0.0, in_bay_s=3.0)
    k.served(400.0, 90.0, queued_s=0.0, in_bay_s=70.0)  # drove in, then waited for a pack
    k.swap_done(144.0, 95.0, 20.0, "NIO-75", "NIO-75")
    k.swap_done(150.0, 92.0, 30.0, "NIO-100", "NIO-100")
    k.not_swapped()
    k.alarm("smoke")
    k.alarm("smoke")
    s = k.summary(86400.0)
    assert s["vehicles"] == {"arrived": 5, "served": 5, "balked": 1, "reneged": 1, "not_swapped": 1}
    assert s["wait_s"]["count"] == 4 and s["wait_s"]["mean"] == 40.0
    assert s["queue_wait_s"]["mean"] == 10.0 and s["queue_wait_s"]["max"] == 40.0
    assert s["wait_probability"] == 0.5  # 40 s queued and 70 s for a pack waited; 0 s and 3 s did not
    assert s["swaps"] == 2 and s["swaps_per_day"] == 2.0
    assert s["swap_duration_s"]["p50"] == 147.0
    assert s["soc_handed_over_pct"]["min"] == 92.0
    assert s["alarms"] == {"smoke": 2}


def test_pack_types_counted_as_handed_over_and_as_returned():
    k = KpiRecorder(chargers_total=1)
    k.swap_done(144.0, 95.0, 20.0, "NIO-100", "NIO-75")  # brought a 75, left with a 100
    k.swap_done(150.0, 92.0, 30.0, "NIO-75", "NIO-75")
    s = k.summary(3600.0)
    assert s["swaps_by_pack_type"] == {"handed_over": {"NIO-100": 1, "NIO-75": 1}, "returned": {"NIO-75": 2}}


def test_vehicles_left_unswapped_have_one_name():
    k = KpiRecorder(chargers_total=1)
    k.not_swapped()
    s = k.summary(3600.0)
    assert s["vehicles"]["not_swapped"] == 1
    text = json.dumps(s)
    assert "failed" not in text and "swap_failures" not in text
    s.update(scenario="unit", seed=1, mode="direct")
    assert "1 not swapped" in report.format_table(s)


def test_series_keeps_the_peak_between_two_samples():
    k = KpiRecorder(chargers_total=2)
    k.levels(0.0, grid_kw=100.0, queue=0, chargers_busy=1)
    k.sample(0.0, False, 3, 90.0)
    k.levels(20.0, grid_kw=457.0, queue=4, chargers_busy=2)  # a 10 s spike inside the minute
    k.levels(30.0, grid_kw=120.0, queue=1, chargers_busy=2)
    k.sample(60.0, False, 3, 90.0)
    k.sample(120.0, False, 3, 90.0)
    col = {name: i for i, name in enumerate(SERIES_COLUMNS)}
    rows = k.series
    assert [r[col["grid_kw"]] for r in rows] == [100.0, 120.0, 120.0]  # the samples miss the spike
    assert [r[col["grid_kw_max"]] for r in rows] == [100.0, 457.0, 120.0]
    assert [r[col["queue_max"]] for r in rows] == [0, 4, 1]
    s = k.summary(120.0)
    assert max(r[col["grid_kw_max"]] for r in rows) == s["energy"]["peak_grid_kw"] == 457.0


def test_rates_per_hour_and_a_day_rate_labelled_for_short_runs():
    k = KpiRecorder(chargers_total=1)
    for _ in range(6):
        k.swap_done(144.0, 95.0, 20.0, "NIO-75", "NIO-75")
    short = k.summary(7200.0)
    assert short["swaps_per_hour"] == 3.0 and short["swaps_per_day"] == 72.0
    short.update(scenario="unit", seed=1, mode="direct")
    line = next(x for x in report.format_table(short).splitlines() if x.startswith("swaps served"))
    assert "3.0/h" in line and "72/day only if all day were like these 2 h" in line
    day = k.summary(86400.0)
    day.update(scenario="unit", seed=1, mode="direct")
    line = next(x for x in report.format_table(day).splitlines() if x.startswith("swaps served"))
    assert "6/day" in line and "only if" not in line


def test_table_names_the_currency_and_explains_the_power_up_hold():
    s = recorder().summary(7200.0)
    s.update(scenario="unit", seed=4, mode="wire")
    s["energy"]["currency"] = "EUR"
    s["alarms"] = {"boot": 1}
    text = report.format_table(s)
    assert "EUR/kWh" in text
    alarms = next(x for x in text.splitlines() if x.startswith("alarms"))
    assert "boot" not in alarms and alarms.split(None, 1)[1].startswith("none (besides the power-up hold")
    s["alarms"] = {"boot": 2, "smoke": 1}  # the controller booted again later: that one counts
    alarms = next(x for x in report.format_table(s).splitlines() if x.startswith("alarms"))
    assert "boot 1, smoke 1" in alarms


def test_report_files(tmp_path):
    k = recorder()
    k.sample(0.0, True, 10, 91.5)
    k.sample(60.0, False, 9, 90.0)
    s = k.summary(7200.0)
    s.update(scenario="unit", seed=1, mode="direct")
    written = report.write_report(tmp_path / "out", s, k.series, [(1, 2.5)], ("vehicle", "wait_s"),
                                  run_facts={"wall_s": 0.1, "partial": False})
    names = sorted(p.name for p in written)
    assert names == sorted([report.SUMMARY_FILE, report.SERIES_FILE, report.SWAPS_FILE, report.RUN_FILE,
                            *report.PLOT_FILES])
    assert json.loads((tmp_path / "out" / report.RUN_FILE).read_text()) == {"wall_s": 0.1, "partial": False}
    back = json.loads((tmp_path / "out" / report.SUMMARY_FILE).read_text())
    assert "wall_s" not in back
    assert back["energy"]["grid_kwh"] == pytest.approx(200.0)
    assert back["wait_s"]["mean"] is None  # NaN is written as null
    rows = list(csv.reader((tmp_path / "out" / report.SERIES_FILE).open()))
    assert rows[0] == list(SERIES_COLUMNS)
    assert len(rows) == 3 and rows[1][4] == "91.5"
    for p in report.PLOT_FILES:
        assert (tmp_path / "out" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_titles_and_time_axis_speak_of_the_run_and_the_time_of_day():
    s = {"scenario": "pss4-urban-day", "seed": 7, "duration_s": 86400.0, "mode": "direct"}
    want = "Grid power: pss4-urban-day, seed 7, 1 d from 00:00, direct mode"
    assert report.plot_title(s, "Grid power") == want
    s.update(duration_s=5400.0, partial=True)
    assert report.plot_title(s, "Rack").endswith("1.5 h from 00:00, direct mode  PARTIAL RUN")
    assert report.time_label(18.5, 24.0) == "18:30"
    assert report.time_label(30.0, 48.0) == "d1 06:00"


def test_table_mentions_every_kpi():
    s = recorder().summary(7200.0)
    s.update(scenario="unit", seed=4, mode="wire")
    text = report.format_table(s)
    for word in ("swaps served", "balked", "reneged", "p95", "swap duration", "SoC handed over",
                 "peak", "energy cost", "charger use", "alarms", "faults", "seed 4", "mode wire"):
        assert word in text, word


class FakeTty(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_piped_is_a_line_every_few_percent_with_the_time_left():
    piped = FakeTty(False)
    p = report.Progress(36000.0, stream=piped)
    for t in range(0, 36001, 360):  # 1 % steps
        p.update(float(t))
    p.close()
    lines = piped.getvalue().splitlines()
    assert len(lines) == 20  # 5 %, 10 %, ... 100 %
    assert lines[0].startswith("  5%  0.5/10.0 h simulated") and "left" in lines[0]
    assert lines[-1].startswith("100%  10.0/10.0 h simulated")
    assert "\r" not in piped.getvalue()


def test_progress_on_a_terminal_is_a_bar_with_the_time_left():
    tty = FakeTty(True)
    p = report.Progress(7200.0, stream=tty)
    p.update(3600.0)
    p.update(7200.0)
    p.close()
    out = tty.getvalue()
    assert "\r" in out and "2.0/2.0 h simulated" in out and "left]" in out
    off = FakeTty(True)
    p = report.Progress(100.0, enabled=False, stream=off)
    p.update(100.0)
    p.close()
    assert off.getvalue() == ""
