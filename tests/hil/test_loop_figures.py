"""The target main loop's figures (probe ``ticks``, read by bench/pico_figures.py): the
fixed-bucket histograms and the host's mean/p99 from them, and the probe on a running station."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from hil.rig import ScenarioDriver
from hil.unix_target_main import Hist

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pico_figures", ROOT / "bench" / "pico_figures.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_histogram_buckets_sum_and_the_hosts_mean_and_p99() -> None:
    bench = _bench()
    h = Hist(1000)
    for _ in range(99):
        h.add(5_500)
    h.add(250_000)
    d = h.dump()
    assert d["counts"] == {"5": 99, "115": 1}  # 1 ms buckets below 100 ms, then 10 ms wide
    n, mean, p99 = bench.hist_stats(d)
    assert (n, mean, p99) == (100, (99 * 5_500 + 250_000) / 100, 6_000.0)  # p99: the 5-6 ms bucket's top
    for us in (100_000, 999_999, 5_000_000):  # first wide bucket, last wide bucket, overflow
        h.add(us)
    assert {k: h.dump()["counts"][k] for k in ("100", "189", "190")} == {"100": 1, "189": 1, "190": 1}
    assert h.dump()["sum_us"] == 99 * 5_500 + 250_000 + 100_000 + 999_999 + 5_000_000  # across the carry
    assert h.max_us == 5_000_000
    later = Hist(1000)
    later.counts, later.n, later.sum_s, later.sum_us = h.counts, h.n, h.sum_s, h.sum_us
    later.add(7_200)
    diff = bench.hist_diff(d, later.dump())
    assert diff["n"] == 4 and diff["counts"] == {"7": 1, "100": 1, "189": 1, "190": 1}
    assert bench.hist_stats({"unit_us": 1000, "n": 0, "sum_us": 0, "max_us": 0, "counts": {}})[0] == 0


@pytest.mark.hil_unix_only("the probe is the same code on every target; the pico bench reads it there")
def test_ticks_probe_splits_idle_and_swap_ticks_and_times_the_masters(hil_driver: ScenarioDriver) -> None:
    d = hil_driver
    d.wait(lambda s: s["rack"]["ready"] >= 15, 60, "the chargers answering")
    before = d.target.request("probe", what="ticks")
    d.arrive(soc=0.2)
    d.wait_step("lift", timeout=60)  # ticks in swap steps (a whole swap adds nothing here)
    after = d.target.request("probe", what="ticks")
    assert after["t"] > before["t"] and after["ticks"] > before["ticks"]
    for kind in ("idle", "swap"):
        h = after[kind]
        assert h["n"] > 0 and sum(h["counts"].values()) == h["n"], kind
        assert 0 < h["sum_us"] and h["max_us"] <= h["sum_us"], kind
    assert before["swap"]["n"] == 0  # no swap step before the arrival
    assert after["idle"]["n"] + after["swap"]["n"] == after["ticks"]
    cpu = after["cpu"]
    for name in ("chargers_master", "chargers_link", "bay_master"):
        assert cpu[name] > before["cpu"][name], name
    for bus in ("chargers", "bay_io"):
        tx = cpu["tx"][bus]
        assert tx["n"] > before["cpu"]["tx"][bus]["n"] and sum(tx["counts"].values()) == tx["n"], bus
    assert cpu["tx"]["chargers"]["n"] <= d.target.request("probe", what="buses")["chargers"]["good"]
    assert isinstance(after["mem_low"], int) and after["mem_low"] > 0  # the unix port has gc.mem_free
    assert "firmware.core.supervisor" in d.target.request("probe", what="modules")
