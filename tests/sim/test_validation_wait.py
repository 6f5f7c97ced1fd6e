"""Vehicles that wait for a pack, with the firmware in the loop: the Erlang C closed form.

``queueing-wait`` (docs/scenarios.md, "Queueing validation") lets an authorised vehicle wait
in the bay for a charged pack (``bay.pack_wait_ms``), so with exponential charge work, C
chargers, N packs, zero-time mechanics and Poisson arrivals the wait follows the M/M/C law:
P(wait) = ErlangC(C, a) * rho^(N - C), mean wait = P(wait) / (C mu - lambda).

Independent replications of one simulated day (fixed seeds, first hour dropped: every run
starts with all packs full); the test checks 99 % t-intervals of the replication means.
What the firmware adds to the model, and how the check allows for it:

- every vehicle spends a moment being identified and authorised (the reader and the bay
  module are polled, ~1-2 s): a vehicle "waited" when its swap began 10 s or more after it
  arrived, and the closed form is thinned accordingly (the wait of a waiting vehicle is
  exponential at rate C mu - lambda, so P(W >= 10 s) = P(wait) exp(-(C mu - lambda) 10 s));
  the mean wait is compared with the closed form plus that fixed delay, measured as the
  median wait of the vehicles that did not wait for a pack;
- a pack's charge is seen complete at the next status read (1 s): small against 150 s.
"""

import math
import statistics
from concurrent.futures import ProcessPoolExecutor

import pytest

from host.sim import engine, queueing, scenario

REPLICATIONS = 8
WARMUP_S = 3600.0
WAITED_S = 10.0


def one_day(seed: int) -> tuple[float, float, float, int]:
    sc = scenario.load("queueing-wait")
    sc.seed = seed
    e = engine.Engine(sc)
    e.run()
    waits = [v.started_s - v.arrival.t_s for v in e.visits
             if v.arrival.t_s >= WARMUP_S and v.started_s >= 0]
    short = [w for w in waits if w < WAITED_S]
    waited = (len(waits) - len(short)) / len(waits)
    return waited, sum(waits) / len(waits), statistics.median(short), len(waits)


@pytest.fixture(scope="module")
def days():
    with ProcessPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one_day, range(1, REPLICATIONS + 1)))


def _closed_form(packs: int | None = None) -> tuple[float, float, float]:
    sc = scenario.load("queueing-wait")
    q = sc.queueing
    lam, mu = sc.demand.rate_per_hour[0], q.mu_per_hour
    n = q.packs if packs is None else packs
    p = queueing.swap_wait_probability(q.chargers, n, lam, mu)
    w = queueing.swap_mean_wait(q.chargers, n, lam, mu) * 3600.0
    rate_per_s = (q.chargers * mu - lam) / 3600.0
    return p, p * math.exp(-rate_per_s * WAITED_S), w


def test_scenario_is_the_erlang_c_set_up():
    sc = scenario.load("queueing-wait")
    assert sc.station["bay"]["pack_wait_ms"] >= 3600000  # waits are not cut short
    assert sc.swap_time_scale == 0 and sc.demand.patience_s == 0
    p, _, w = _closed_form()
    assert p == pytest.approx(1 / 6) and w == pytest.approx(25.0)


@pytest.mark.slow
def test_wait_probability_is_erlang_c(days):
    assert sum(n for *_, n in days) > 3000
    _, expected, _ = _closed_form()
    ci = queueing.t_interval([d[0] for d in days], 0.99)
    assert ci.contains(expected), f"simulated {ci}, closed form {expected:.4f}"
    # The check has power: with one pack fewer P(wait) is twice as large.
    assert not ci.contains(_closed_form(packs=2)[1])


@pytest.mark.slow
def test_mean_wait_is_erlang_c(days):
    delay = statistics.median(d[2] for d in days)
    assert 0.0 < delay < 5.0  # identification and authorisation, not a pack wait
    _, _, expected = _closed_form()
    ci = queueing.t_interval([d[1] for d in days], 0.99)
    assert ci.contains(expected + delay), f"simulated {ci}, closed form {expected:.1f} s + {delay:.1f} s"
    assert not ci.contains(_closed_form(packs=2)[2] + delay)
