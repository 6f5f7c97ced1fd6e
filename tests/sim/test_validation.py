"""The simulator against queueing theory, with the real firmware in the loop, and the
calibrated default against the published PSS 4.0 anchor.

The firmware turns a vehicle away when no charged pack turns up within its authorise
timeout (docs/scenarios.md, "Queueing validation"), so the closed form that applies with
the firmware in the loop is the loss variant: the share of vehicles turned away is the
M/M/C/N blocking probability, Erlang B(N, a) for C = N. Independent replications with
fixed seeds; the test checks a 99 % t-interval of the replication means.
"""

from concurrent.futures import ProcessPoolExecutor

import pytest

from host import engine, queueing, scenario

REPLICATIONS = 8
WARMUP_S = 3600.0  # every run starts with all packs full


def blocking(seed: int) -> tuple[float, int]:
    sc = scenario.load("queueing-check")
    sc.seed = seed
    e = engine.Engine(sc)
    e.run()
    visits = [v for v in e.visits if v.arrival.t_s >= WARMUP_S and v.outcome != "waiting"]
    turned_away = sum(1 for v in visits if v.outcome == "not_swapped")
    return turned_away / len(visits), len(visits)


@pytest.fixture(scope="module")
def replications():
    with ProcessPoolExecutor(max_workers=2) as pool:
        return list(pool.map(blocking, range(1, REPLICATIONS + 1)))


def test_turned_away_share_is_erlang_b(replications):
    sc = scenario.load("queueing-check")
    q = sc.queueing
    lam = sc.demand.rate_per_hour[0]
    expected = queueing.swap_blocking_probability(q.chargers, q.packs, lam, q.mu_per_hour)
    assert expected == pytest.approx(queueing.erlang_b(q.packs, lam / q.mu_per_hour))
    ci = queueing.t_interval([b for b, _ in replications], 0.99)
    assert sum(n for _, n in replications) > 2000
    assert ci.contains(expected), f"simulated {ci}, closed form {expected:.4f}"
    # The check has power: one pack more (B(3, a)) or one fewer (B(1, a)) lies outside.
    assert not ci.contains(queueing.erlang_b(q.packs + 1, lam / q.mu_per_hour))
    assert not ci.contains(queueing.erlang_b(q.packs - 1, lam / q.mu_per_hour))


def test_queueing_mode_set_up():
    sc = scenario.load("queueing-check")
    assert sc.station["limits"]["grid_kw"] == 2 * 62.5
    assert len(sc.station["slots"]) == sc.queueing.packs + 1
    assert sc.station["tou"] is None
    assert sc.demand.patience_s == 0 and sc.demand.balk_from == 0
    assert sc.swap_time_scale == 0


SATURATED = """
name = "pss4-saturated"
# The anchor is about throughput, not a weak connection: the grid carries every charger at
# full power at once (23 slots x 62.5 kW = 1437.5 kW) instead of the default 1000 kW.
[station.overrides.limits]
grid_kw = 1437.5
[rack]
packs = [
    { type = "NIO-75", count = 12, soc = [85, 100] },
    { type = "NIO-100", count = 10, soc = [85, 100] },
]
[demand]
rate_per_hour = 40
models = { "NIO-ES6" = 3, "NIO-ET5" = 4, "NIO-ET7" = 2, "NIO-ES8" = 1 }
arrival_soc = [5, 70]
patience = "30m"
"""


@pytest.mark.xfail(strict=True, reason=(
    "charge supply, measured: the bay turns round in about 174 s (171 s drive-in to drive-off "
    "plus the entry door; about 495 a day if a charged pack were always there), but 22 packs on "
    "62.5 kW chargers, coming back at 5-70 % SoC (mean 24 %) and charged to the 90 % hand-over, "
    "supply about 450 packs a day even with the grid carrying every charger: 447 swaps, "
    "197 vehicles turned away at authorise for want of a charged pack"))
def test_pss4_anchor_480_swaps_a_day_under_saturating_demand(tmp_path):
    p = tmp_path / "saturated.toml"
    p.write_text(SATURATED)
    sc = scenario.load(str(p))
    sc.duration_s = 86400.0
    s = engine.run(sc).summary
    assert s["swaps"] >= 480, f"{s['swaps']} swaps in a day"
