"""Network KPIs add up; the per-station table round-trips through Parquet and CSV."""

import math

import pyarrow.parquet as pq
import pytest

from host.fleet import network as nw
from host.fleet import report, runner
from tests.fleet import nets


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    net = nw.load(nets.write(tmp_path_factory.mktemp("net")))
    return runner.run_network(net, duration_s=6 * 3600.0, seed=2, backend="serial")


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], float) and math.isnan(a[k]):
            assert isinstance(b[k], float) and math.isnan(b[k]), k
        else:
            assert a[k] == b[k] and type(a[k]) is type(b[k]), k


@pytest.mark.parametrize("fmt", report.TABLE_FORMATS)
def test_the_station_table_round_trips(tmp_path, result, fmt):
    rows = report.rows(result)
    assert [r["id"] for r in rows] == ["U1", "U2", "H1"]
    assert math.isnan(rows[2]["lat"])  # no coordinates
    path = tmp_path / f"stations.{fmt}"
    report.write_table(rows, path)
    back = report.read_table(path)
    assert len(back) == len(rows)
    for a, b in zip(rows, back, strict=True):
        _same(a, b)
    if fmt == "parquet":
        schema = pq.read_schema(path)
        assert schema.names == list(report.COLUMNS)
        assert str(schema.field("swaps").type) == "int64" and str(schema.field("peak_kw").type) == "double"


def test_network_figures_add_up(result):
    s = report.summary(result)
    rows = report.rows(result)
    assert s["swaps"] == sum(r["swaps"] for r in rows) > 0
    v = s["vehicles"]
    assert v["arrived"] == v["served"] + v["turned_away"] + v["waiting_at_end"]
    assert v["turned_away"] == sum(r["turned_away"] for r in rows)
    assert s["energy"]["grid_kwh"] == pytest.approx(sum(r["grid_kwh"] for r in rows))
    assert 0 < s["energy"]["peak_kw"] <= s["energy"]["sum_of_station_peaks_kw"] + 1e-9
    assert len(report.network_load_kw(result)) == 24  # 15-minute readings over 6 h
    assert sum(report.network_load_kw(result)) * 0.25 == pytest.approx(s["energy"]["grid_kwh"])
    assert 0.0 <= s["wait_probability"] <= 1.0 and s["wait_s"]["count"] >= s["swaps"]
    assert sum(s["wait_s"]["histogram"]["counts"]) == s["wait_s"]["count"]
    assert set(s["by_class"]) == {"urban", "highway"} and s["by_class"]["urban"]["stations"] == 2
    assert "P(wait)" in report.format_table(s)
