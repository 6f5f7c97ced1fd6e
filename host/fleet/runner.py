"""Run every station of a network on the plant-only path, serially or on a Dask cluster.

Station ``i`` gets child ``i`` of ``numpy.random.SeedSequence(seed).spawn(n)``; its arrivals
and its bay draw from the two words that child generates. A station's run depends on
nothing else (not on the process, the worker or the order it runs in), and the network
figures are summed in station order, so one seed gives the same results to the last digit
serially and on a cluster of any size.

The Dask backend (``dask.distributed``, imported only there) submits the stations in
batches, about ``BATCHES_PER_WORKER`` per worker (a task costs the scheduler and the client
a few ms, a third of a station-day of its own: bench/fleet_speed.py), and takes the results
as batches finish (``as_completed``): the progress callback sees each station, and a stop
request (the first Ctrl-C) cancels the batches not finished and keeps what has.
"""

from __future__ import annotations

import math
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from host.fleet.network import Network, PackSettings, StationSpec
from host.fleet.packs import Ledger, PackOutcome, StationPacks, SwapRecorder, epochs
from host.plant.grid import Grid
from host.plant.standalone import PlantOnlyRun, StationKpis
from host.plant.vehicles import VehicleModel

METER_PERIOD_S = 900.0  # a utility's demand interval: peak power is the highest 15-minute mean
INITIAL_SOC = 1.0  # the rack is full at the start: no top-up of every pack at once on the first meter reading
BACKENDS = ("local", "serial")  # an embedded LocalCluster, or in this process
# Batches per worker: enough that a worker left with a slow batch at the end costs little,
# few enough that the per-task overhead does not count.
BATCHES_PER_WORKER = 8


@dataclass(frozen=True)
class StationTask:
    spec: StationSpec
    seed: np.random.SeedSequence
    duration_s: float
    substep_s: float = 5.0
    packs: StationPacks | None = None  # tracked packs: the rack and the inbound pool of this epoch


@dataclass
class StationResult:
    index: int
    id: str
    kpi: StationKpis
    packs: PackOutcome | None = None
    # where and how long it ran: differ from run to run, never compared
    cpu_s: float = field(default=0.0, compare=False)
    pid: int = field(default=0, compare=False)

    @property
    def peak_kw(self) -> float:
        return max(self.kpi.interval_kwh, default=0.0) * 3600.0 / METER_PERIOD_S


def station_seeds(seed: int, n: int) -> list[np.random.SeedSequence]:
    """One SeedSequence per station, spawned from one: station ``i`` gets child ``i``."""
    return np.random.SeedSequence(seed).spawn(n)


def tasks_for(net: Network, duration_s: float, seed: int, substep_s: float = 5.0) -> list[StationTask]:
    # spawn(n)[i] is the same child for any n >= i + 1: a sample of a network's stations keeps their seeds
    seeds = station_seeds(seed, max((s.index for s in net.stations), default=-1) + 1)
    return [StationTask(spec, seeds[spec.index], duration_s, substep_s) for spec in net.stations]


def epoch_seed(seed: np.random.SeedSequence, epoch: int) -> np.random.SeedSequence:
    """A station's seed for epoch ``epoch`` of a run with tracked packs: its own seed for the
    first (the day an untracked run has), then its children."""
    if epoch == 0:
        return seed
    return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, epoch))


def run_station(task: StationTask) -> StationResult:
    """One station for ``task.duration_s`` on the plant-only path (what a Dask task runs)."""
    c0 = time.process_time()
    s = task.spec
    fleet = (VehicleModel(f"{s.id}-arrivals", 0, 1.0, dict(s.pack_mix)),)
    recorder = SwapRecorder(task.packs) if task.packs is not None else None
    run = PlantOnlyRun(
        1, backend="cython", max_substep_s=task.substep_s, rack=s.rack, grid=Grid(s.grid_kw, s.tariff),
        rates_per_hour=s.rates_per_hour(), slots=s.chargers, charger_kw=s.charger_kw,
        arrivals={"fleet": fleet, "patience_mean_s": s.patience_s, "balk_from": s.balk_from,
                  "balk_all": s.balk_all},
        station_seeds=[task.seed], record_waits=True, meter_period_s=METER_PERIOD_S,
        initial_soc=INITIAL_SOC,
        initial_packs=[task.packs.rack] if task.packs is not None else None, swap_hook=recorder,
    )
    (kpi,) = run.run(task.duration_s)
    outcome = recorder.finish(run.plant, run.plant.slot_range(0)) if recorder is not None else None
    return StationResult(s.index, s.id, kpi, outcome, time.process_time() - c0, os.getpid())


@dataclass
class FleetResult:
    network: Network
    duration_s: float
    seed: int
    results: list[StationResult]  # in station order; fewer than the stations when partial
    partial: bool = False
    backend: str = "serial"
    workers: int = 1
    wall_s: float = 0.0
    ledger: Ledger | None = None  # tracked packs (run_network(packs=...)), at the last epoch finished
    epochs_done: int = 0

    @property
    def station_seconds(self) -> float:
        return self.duration_s * len(self.results)


def serial_results(tasks: Sequence[StationTask]) -> Iterator[StationResult]:
    for task in tasks:
        yield run_station(task)


def run_batch(tasks: Sequence[StationTask]) -> list[StationResult]:
    """Several stations in one Dask task, one after another."""
    return [run_station(t) for t in tasks]


def batches(tasks: Sequence[StationTask], workers: int,
            per_worker: int = BATCHES_PER_WORKER) -> list[list[StationTask]]:
    """``tasks`` cut into about ``per_worker`` runs of consecutive stations per worker (no
    fewer than one station each)."""
    n = len(tasks)
    size = max(1, math.ceil(n / max(1, workers * per_worker)))
    return [list(tasks[i:i + size]) for i in range(0, n, size)]


def dask_results(client: Any, tasks: Sequence[StationTask],
                 per_worker: int = BATCHES_PER_WORKER) -> Iterator[StationResult]:
    """Submit the stations to ``client`` in batches and yield the results as batches finish;
    closing the generator early (a stop) cancels the batches not yet finished."""
    from distributed import as_completed

    run_id = uuid.uuid4().hex[:8]
    futures = [client.submit(run_batch, b, key=f"stations-{b[0].spec.index}-{run_id}", pure=False)
               for b in batches(tasks, worker_count(client), per_worker)]
    try:
        for fut in as_completed(futures):
            yield from fut.result()
            fut.release()
    finally:
        client.cancel([f for f in futures if not f.done()])


def default_workers() -> int:
    """One worker process per core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A Client of the cluster at ``scheduler``, or of an embedded LocalCluster with ``workers``
    single-threaded worker processes (default: one per core), closed on exit."""
    import logging

    from distributed import Client, LocalCluster

    dask_log = logging.getLogger("distributed")
    level = dask_log.level
    try:
        if scheduler:
            with Client(scheduler) as client:
                try:
                    yield client
                finally:
                    _quiet(dask_log)
            return
        n = workers or default_workers()
        with _workers_ignore_ctrl_c():
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR)
        with cluster, Client(cluster) as client:
            try:
                yield client
            finally:
                _quiet(dask_log)
    finally:
        dask_log.setLevel(level)


def _quiet(log: Any) -> None:
    """Closing the client and cluster with stations cancelled (a stop, Ctrl-C) races the
    scheduler's reports against the closing client, which Dask logs as errors with a
    traceback that means nothing to the user. A station that failed reached us already as
    its task's exception, so nothing is hidden by muting the shutdown."""
    import logging

    log.setLevel(logging.CRITICAL)


@contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Processes started inside inherit SIGINT ignored: a terminal's Ctrl-C goes to the whole
    process group, and the workers should not die of it with a traceback each; this process
    decides (keeps the finished stations, cancels the rest, closes the cluster)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def worker_count(client: Any) -> int:
    return len(client.scheduler_info(n_workers=-1)["workers"])


def run_network(
    net: Network, *, duration_s: float | None = None, seed: int | None = None, backend: str = "local",
    workers: int | None = None, scheduler: str | None = None, substep_s: float = 5.0,
    progress: Callable[[StationResult], None] | None = None, stop: Callable[[], bool] | None = None,
    client: Any = None, packs: PackSettings | bool | None = None,
) -> FleetResult:
    """Every station of ``net`` for ``duration_s`` (default: the file's) from ``seed`` (likewise).

    ``backend``: "serial" (this process) or "local" (Dask: ``client`` if given, else the cluster at
    ``scheduler``, else an embedded LocalCluster of ``workers`` processes). ``progress`` sees each
    result as it arrives; ``stop()`` true ends the run early, keeping the finished stations
    (``partial``).

    ``packs`` (True: the file's ``[packs]`` settings) tracks every pack across the network
    (host.fleet.packs): the run goes a day at a time, the stations of a day as tasks, the ledger
    stepped between days; a stop keeps the days finished. ``progress`` then sees each station-day.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (use {' or '.join(BACKENDS)})")
    duration = net.duration_s if duration_s is None else duration_s
    sd = net.seed if seed is None else seed
    tasks = tasks_for(net, duration, sd, substep_s)
    t0 = time.perf_counter()
    out = FleetResult(net, duration, sd, [], backend="serial" if backend == "serial" else "dask")
    stopped = [False]

    def collect(results: Iterator[StationResult], into: list[StationResult]) -> None:
        try:
            for r in results:
                into.append(r)
                if progress is not None:
                    progress(r)
                if stop is not None and stop():
                    stopped[0] = True
                    break
        finally:
            if hasattr(results, "close"):
                results.close()

    def go(c: Any) -> None:
        def execute(ts: Sequence[StationTask], into: list[StationResult]) -> None:
            collect(serial_results(ts) if c is None else dask_results(c, ts), into)

        if packs is None or packs is False:
            execute(tasks, out.results)
        else:
            _run_tracked(net, tasks, sd, packs, execute, stopped, out)

    if backend == "serial":
        go(None)
    elif client is not None:
        out.workers = worker_count(client)
        go(client)
    else:
        with dask_client(workers, scheduler) as c:
            out.workers = worker_count(c)
            go(c)
    out.results.sort(key=lambda r: r.index)
    out.partial = out.partial or len(out.results) < len(tasks)
    out.wall_s = time.perf_counter() - t0
    return out


def _run_tracked(net: Network, tasks: Sequence[StationTask], seed: int, packs: PackSettings | bool,
                 execute: Callable[[Sequence[StationTask], list[StationResult]], None], stopped: list[bool],
                 out: FleetResult) -> None:
    """Day after day: the stations as tasks, then the ledger's step; the KPIs added up per station."""
    ledger = Ledger(net, seed, packs if isinstance(packs, PackSettings) else net.packs)
    out.ledger = ledger
    merged: list[StationResult] = []
    t0 = 0.0
    days = epochs(tasks[0].duration_s if tasks else 0.0)
    for e, length in enumerate(days):
        inputs = ledger.station_packs()
        day = [StationTask(t.spec, epoch_seed(t.seed, e), length, t.substep_s, inputs[k])
               for k, t in enumerate(tasks)]
        got: list[StationResult] = []
        execute(day, got)
        if len(got) < len(day):
            out.partial = True
            break  # the unfinished day counts for nothing: the ledger stays at the last day's end
        got.sort(key=lambda r: r.index)
        ledger.step(inputs, [r.packs for r in got if r.packs is not None], t0)
        merged = got if e == 0 else [_merge(a, b) for a, b in zip(merged, got, strict=True)]
        out.epochs_done = e + 1
        t0 += length
        if stopped[0]:  # a stop as the day's last station finished: that day counts
            out.partial = e + 1 < len(days)
            break
    for r in merged:
        r.packs = None  # the ledger has them
    out.results = merged
    out.duration_s = t0  # the days finished


def _merge(a: StationResult, b: StationResult) -> StationResult:
    """One station's KPIs over two consecutive epochs."""
    ka, kb = a.kpi, b.kpi
    k = StationKpis(
        arrivals=ka.arrivals + kb.arrivals, swaps=ka.swaps + kb.swaps, balked=ka.balked + kb.balked,
        reneged=ka.reneged + kb.reneged, failed=ka.failed + kb.failed, wait_s=ka.wait_s + kb.wait_s,
        handover_soc=ka.handover_soc + kb.handover_soc, grid_kwh=ka.grid_kwh + kb.grid_kwh,
        cost=ka.cost + kb.cost, waited=ka.waited + kb.waited, waits_s=ka.waits_s + kb.waits_s,
        interval_kwh=ka.interval_kwh + kb.interval_kwh,
    )
    return StationResult(a.index, a.id, k, None, a.cpu_s + b.cpu_s, a.pid)


def cpu_s(result: FleetResult) -> float:
    return math.fsum(r.cpu_s for r in result.results)
