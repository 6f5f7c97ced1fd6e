"""Closed forms and statistics helpers against published values and brute force."""

import math
import random

import pytest

from host.sim import queueing as q


def test_erlang_b_matches_domain_notes():
    assert q.erlang_b(5, 3) == pytest.approx(0.1101, abs=5e-5)
    assert q.erlang_b(4, 2) == pytest.approx(0.0952, abs=5e-5)


def test_erlang_c_against_direct_formula():
    for c, a in [(1, 0.5), (2, 1.0), (4, 3.0), (10, 8.5)]:
        s = sum(a**k / math.factorial(k) for k in range(c))
        top = a**c / math.factorial(c) * c / (c - a)
        assert q.erlang_c(c, a) == pytest.approx(top / (s + top), rel=1e-12)
    assert q.erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho


def test_erlang_c_rejects_unstable_load():
    with pytest.raises(ValueError, match="unstable"):
        q.erlang_c(2, 2.0)


def test_swap_wait_from_mmc_stationary_distribution():
    # Brute force: stationary law of the M/M/C birth-death chain, P(k >= N) and E[max(k-N, 0)].
    c, n, lam, mu = 3, 5, 2.2, 1.0
    p = [1.0]
    for k in range(1, 4000):
        p.append(p[-1] * lam / (min(k, c) * mu))
    z = sum(p)
    p_wait = sum(p[n:]) / z
    mean_q = sum((k - n) * p[k] for k in range(n, len(p))) / z
    assert q.swap_wait_probability(c, n, lam, mu) == pytest.approx(p_wait, rel=1e-9)
    assert q.swap_mean_wait(c, n, lam, mu) == pytest.approx(mean_q / lam, rel=1e-9)
    assert q.swap_mean_queue(c, n, lam, mu) == pytest.approx(mean_q, rel=1e-9)


def test_swap_args_checked():
    with pytest.raises(ValueError, match="n \\(packs\\)"):
        q.swap_wait_probability(4, 3, 1.0, 1.0)
    with pytest.raises(ValueError, match="unstable"):
        q.swap_mean_wait(2, 4, 2.0, 1.0)


def test_poisson_tail():
    a, n = 3.0, 5
    direct = 1 - sum(math.exp(-a) * a**k / math.factorial(k) for k in range(n))
    assert q.poisson_tail(a, n) == pytest.approx(direct, rel=1e-12)
    assert q.poisson_tail(a, 0) == 1.0


def test_t_quantiles_match_tables():
    assert q.t_quantile(0.975, 10) == pytest.approx(2.228, abs=5e-4)
    assert q.t_quantile(0.995, 29) == pytest.approx(2.756, abs=5e-4)
    assert q.t_quantile(0.975, 1) == pytest.approx(12.706, abs=5e-3)
    assert q.t_quantile(0.975, 1e7) == pytest.approx(1.95996, abs=1e-4)
    assert q.t_quantile(0.025, 10) == pytest.approx(-2.228, abs=5e-4)


def test_t_interval_covers_true_mean_at_its_level():
    rng = random.Random(5)
    hits = 0
    trials = 400
    for _ in range(trials):
        xs = [rng.gauss(3.0, 2.0) for _ in range(8)]
        hits += q.t_interval(xs, 0.95).contains(3.0)
    # Binomial(400, 0.95): mean 380, sd 4.4; a z-interval here would cover only ~91 %.
    assert 366 <= hits <= 394


def test_batch_means():
    assert q.batch_means([1, 2, 3, 4, 5, 6, 7], 3) == [1.5, 3.5, 5.5]
    with pytest.raises(ValueError):
        q.batch_means([1.0], 2)


def test_reference_queue_reproduces_closed_form():
    # Independent replications of the firmware-free reference: a 99 % t-interval of the
    # replication means must contain the closed-form P(wait) and mean wait.
    c, n, lam, mu = 4, 6, 6.0, 2.0  # per hour: a = 3, rho = 0.75
    pw, mw = [], []
    for seed in range(20):
        w = q.simulate_swap_queue(c, n, lam, mu, vehicles=5000, seed=seed, warmup=500)
        pw.append(sum(1 for x in w if x > 0) / len(w))
        mw.append(sum(w) / len(w))
    p_ci, w_ci = q.t_interval(pw, 0.99), q.t_interval(mw, 0.99)
    assert p_ci.contains(q.swap_wait_probability(c, n, lam, mu)), p_ci
    assert w_ci.contains(q.swap_mean_wait(c, n, lam, mu)), w_ci
    # and the intervals are tight enough to mean something
    assert p_ci.half_width < 0.1 * p_ci.mean and w_ci.half_width < 0.2 * w_ci.mean


def test_reference_queue_detects_a_wrong_model():
    # The same check rejects a model with one pack fewer: the test has power.
    c, n, lam, mu = 4, 6, 6.0, 2.0
    mw = [
        sum(w) / len(w) for w in (q.simulate_swap_queue(c, n - 1, lam, mu, 5000, s, 500) for s in range(20))
    ]
    assert not q.t_interval(mw, 0.99).contains(q.swap_mean_wait(c, n, lam, mu))


def test_blocking_is_erlang_b_when_chargers_equal_packs():
    assert q.swap_blocking_probability(5, 5, 3.0, 1.0) == pytest.approx(q.erlang_b(5, 3.0), rel=1e-12)
    assert q.swap_blocking_probability(2, 2, 12.0, 6.0) == pytest.approx(0.4)
    # more packs than chargers: M/M/c/n by hand for c=1, n=2, a=1 -> p2 = 1/3
    assert q.swap_blocking_probability(1, 2, 1.0, 1.0) == pytest.approx(1 / 3)
