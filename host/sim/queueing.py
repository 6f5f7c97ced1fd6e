"""Queueing closed forms for a swap station, and the statistics to compare a simulation with them.

Model (see docs/scenarios.md, "Queueing validation"): Poisson arrivals at rate ``lam``,
``c`` chargers each finishing a pack at exponential rate ``mu``, ``n >= c`` packs, zero
swap time, vehicles that wait. The number of packs not yet full plus the waiting
vehicles is then an M/M/c queue with offered load ``a = lam / mu`` and utilisation
``rho = a / c``; a vehicle waits when that number is at least ``n``.

Everything here is pure Python (no SciPy): Erlang B by its stable recursion, Student-t
quantiles by bisection on the regularised incomplete beta function.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


def erlang_b(c: int, a: float) -> float:
    """Blocking probability of an M/M/c/c loss system with offered load ``a`` (Erlang B)."""
    if c < 0:
        raise ValueError("c must be >= 0")
    if a < 0:
        raise ValueError("offered load must be >= 0")
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in an M/M/c queue (Erlang C); needs ``a < c``."""
    if c < 1:
        raise ValueError("c must be >= 1")
    if not 0 <= a < c:
        raise ValueError(f"unstable queue: offered load {a} must be below c = {c}")
    b = erlang_b(c, a)
    rho = a / c
    return b / (1.0 - rho * (1.0 - b))


def swap_wait_probability(c: int, n: int, lam: float, mu: float) -> float:
    """P(vehicle waits) = ErlangC(c, a) * rho**(n - c) for ``n >= c`` packs."""
    _check_swap_args(c, n, lam, mu)
    a = lam / mu
    return erlang_c(c, a) * (a / c) ** (n - c)


def swap_mean_wait(c: int, n: int, lam: float, mu: float) -> float:
    """Mean wait (same time unit as ``1/lam``) = P(wait) / (c*mu - lam)."""
    return swap_wait_probability(c, n, lam, mu) / (c * mu - lam)


def swap_mean_queue(c: int, n: int, lam: float, mu: float) -> float:
    """Mean number of waiting vehicles (Little's law on :func:`swap_mean_wait`)."""
    return lam * swap_mean_wait(c, n, lam, mu)


def swap_blocking_probability(c: int, n: int, lam: float, mu: float) -> float:
    """P(a vehicle finds no charged pack) when such vehicles leave: the loss variant.

    Packs not yet full form an M/M/c/n queue (at most ``n``, all of them depleted); an
    arrival is lost in state ``n``. With ``c == n`` this is Erlang B(n, a)."""
    if c < 1 or n < c:
        raise ValueError("need 1 <= c <= n")
    a = lam / mu
    terms = [1.0]
    for k in range(1, n + 1):
        terms.append(terms[-1] * a / min(k, c))
    return terms[-1] / math.fsum(terms)


def poisson_tail(a: float, n: int) -> float:
    """P(Poisson(a) >= n): the wait probability with ample chargers (c >= n, M/M/inf packs)."""
    if n <= 0:
        return 1.0
    term = math.exp(-a)
    cdf = term
    for k in range(1, n):
        term *= a / k
        cdf += term
    return max(0.0, 1.0 - cdf)


def _check_swap_args(c: int, n: int, lam: float, mu: float) -> None:
    if c < 1:
        raise ValueError("c (chargers) must be >= 1")
    if n < c:
        raise ValueError(f"n (packs) = {n} must be >= c (chargers) = {c}")
    if lam <= 0 or mu <= 0:
        raise ValueError("rates must be positive")
    if lam >= c * mu:
        raise ValueError(f"unstable: lambda {lam} >= c*mu {c * mu}")


# --- statistics -------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lbeta + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """CDF of Student's t with ``df`` degrees of freedom."""
    x = df / (df + t * t)
    tail = 0.5 * betainc(df / 2.0, 0.5, x)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Inverse CDF of Student's t (bisection; accurate to ~1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if df <= 0:
        raise ValueError("df must be positive")
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Interval:
    """A t confidence interval for a mean from independent (or batch-mean) samples."""

    mean: float
    half_width: float
    n: int
    level: float

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def __str__(self) -> str:
        return f"{self.mean:.6g} ± {self.half_width:.3g} ({self.level:.0%}, n={self.n})"


def t_interval(samples: Sequence[float], level: float = 0.99) -> Interval:
    """Two-sided ``level`` t-interval for the mean of i.i.d. ``samples`` (at least 2)."""
    n = len(samples)
    if n < 2:
        raise ValueError("need at least two samples for an interval")
    mean = math.fsum(samples) / n
    var = math.fsum((x - mean) ** 2 for x in samples) / (n - 1)
    half = t_quantile(0.5 + level / 2.0, n - 1) * math.sqrt(var / n)
    return Interval(mean, half, n, level)


def batch_means(values: Sequence[float], batches: int) -> list[float]:
    """Means of ``batches`` consecutive equal batches of ``values`` (a tail that does not fit is dropped)."""
    if batches < 2:
        raise ValueError("need at least two batches")
    size = len(values) // batches
    if size < 1:
        raise ValueError(f"{len(values)} values cannot fill {batches} batches")
    return [math.fsum(values[i * size : (i + 1) * size]) / size for i in range(batches)]


def simulate_swap_queue(c: int, n: int, lam: float, mu: float, vehicles: int, seed: int,
                        warmup: int = 0) -> list[float]:
    """Firmware-free reference of the validation model: waits of ``vehicles`` arrivals.

    Event by event: Poisson arrivals at ``lam``; a vehicle takes a full pack if one is
    ready, else waits (FIFO) for the next one to finish; every depleted pack needs a
    charger, ``c`` of them, each finishing at exponential rate ``mu``. The first
    ``warmup`` waits are dropped. It checks the statistics of the validation test and
    is the baseline the firmware-in-the-loop run is compared with.
    """
    rng = random.Random(seed)
    full, busy, backlog = n, 0, 0
    done: list[float] = []  # completion times of the packs on chargers
    waiting: deque[float] = deque()  # arrival times of vehicles waiting for a pack
    waits: list[float] = []
    next_arrival = rng.expovariate(lam)

    def depleted(t: float) -> None:
        nonlocal busy, backlog
        if busy < c:
            busy += 1
            heapq.heappush(done, t + rng.expovariate(mu))
        else:
            backlog += 1

    while len(waits) < vehicles + warmup:
        if done and done[0] <= next_arrival:
            t = heapq.heappop(done)
            busy -= 1
            if backlog:
                backlog -= 1
                depleted(t)
            if waiting:
                waits.append(t - waiting.popleft())
                depleted(t)
            else:
                full += 1
        else:
            t = next_arrival
            next_arrival = t + rng.expovariate(lam)
            if full:
                full -= 1
                waits.append(0.0)
                depleted(t)
            else:
                waiting.append(t)
    return waits[warmup:]
