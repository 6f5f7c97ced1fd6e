"""Stations on the plant-only path: one SeedSequence, and the same results serially and on Dask."""

import math
import os
import time

import numpy as np
import pytest

from host.fleet import network as nw
from host.fleet import report, runner
from tests.fleet import nets

SHORT_S = 3 * 3600.0
TRACKED_S = 2 * 86400.0 + 4 * 3600.0


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return nw.load(nets.write(tmp_path_factory.mktemp("net")))


@pytest.fixture(scope="module")
def serial(net):
    return runner.run_network(net, duration_s=SHORT_S, seed=11, backend="serial")


def test_station_seeds_are_the_children_of_one_seed_sequence():
    seeds = runner.station_seeds(11, 3)
    assert [s.spawn_key for s in seeds] == [(0,), (1,), (2,)]
    assert all(s.entropy == np.random.SeedSequence(11).entropy for s in seeds)
    words = [tuple(s.generate_state(2, np.uint64)) for s in seeds]
    assert len(set(words)) == 3


def test_same_seed_reproduces_and_stations_differ(net, serial):
    again = runner.run_network(net, duration_s=SHORT_S, seed=11, backend="serial")
    assert again.results == serial.results
    assert [r.id for r in serial.results] == ["U1", "U2", "H1"]
    assert all(r.kpi.arrivals > 0 and r.kpi.swaps > 0 for r in serial.results)
    # two identical stations but their seeds: other arrivals
    twin = nw.StationSpec(**{**net.stations[0].__dict__, "index": 1, "id": "U1b"})
    twins = nw.Network("twins", "", "", SHORT_S, 11, "CNY", [net.stations[0], twin])
    a, b = runner.run_network(twins, backend="serial").results
    assert a.kpi.arrivals != b.kpi.arrivals or a.kpi.waits_s != b.kpi.waits_s
    other = runner.run_network(net, duration_s=SHORT_S, seed=12, backend="serial")
    assert other.results != serial.results


def test_a_sample_of_stations_keeps_their_seeds(net, serial):
    sample = nw.Network(net.name, "", "", net.duration_s, net.seed, "CNY", [net.stations[2]], 3)
    (only,) = runner.run_network(sample, duration_s=SHORT_S, seed=11, backend="serial").results
    assert only == serial.results[2]


def test_a_stop_keeps_the_finished_stations_in_order(net):
    seen = []
    r = runner.run_network(net, duration_s=SHORT_S, seed=11, backend="serial", progress=seen.append,
                           stop=lambda: len(seen) >= 2)
    assert r.partial and [x.index for x in r.results] == [0, 1]


def test_serial_and_a_two_worker_local_cluster_give_the_same_results(net, serial):
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        seen = []
        on_dask = runner.run_network(net, duration_s=SHORT_S, seed=11, client=client, progress=seen.append)
        assert on_dask.workers == 2
        # Batches of several stations (here 2 and 1) give the same results as one per task.
        tasks = runner.tasks_for(net, SHORT_S, 11)
        batched = sorted(runner.dask_results(client, tasks, per_worker=1), key=lambda r: r.index)
        # packs tracked over two days and a bit, pools short enough that stand-ins are resolved
        short_pools = nw.PackSettings(revisit_days=0.5)
        tracked_dask = runner.run_network(net, duration_s=TRACKED_S, seed=11, client=client,
                                          packs=short_pools)
    tracked = runner.run_network(net, duration_s=TRACKED_S, seed=11, backend="serial", packs=short_pools)
    assert tracked.epochs_done == tracked_dask.epochs_done == 3 and tracked.ledger and tracked_dask.ledger
    assert tracked.ledger.borrowed > 0 and tracked.ledger.swaps.sum() > 500
    a, b = tracked.ledger.arrays(), tracked_dask.ledger.arrays()
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True), k  # the ledger, to the last bit
    assert tracked_dask.results == tracked.results
    assert report.summary(tracked_dask) == report.summary(tracked)
    print(f"two-worker LocalCluster: {time.perf_counter() - t0:.1f} s")
    assert batched == serial.results
    assert len(seen) == 3 and not on_dask.partial
    assert on_dask.results == serial.results  # every KPI, every wait, every meter reading: exact
    pids = {r.pid for r in on_dask.results}
    assert os.getpid() not in pids and all(pids)
    assert report.summary(on_dask) == report.summary(serial)


def test_batches_cover_every_station_once_in_order(net):
    tasks = runner.tasks_for(nw.Network("n", "", "", 3600.0, 1, "CNY", [net.stations[0]] * 1), 3600.0, 1)
    many = tasks * 37  # stand-ins: only their order counts here
    for workers, per_worker in ((1, 8), (2, 8), (3, 1), (64, 8)):
        got = runner.batches(many, workers, per_worker)
        assert [t for b in got for t in b] == many and all(got)
        assert len(got) <= max(1, workers * per_worker)
        assert max(map(len, got)) - min(map(len, got)) <= max(map(len, got)) // 2 + 1
    assert runner.batches([], 2) == []


def test_a_station_without_demand_runs(net):
    idle = nw.StationSpec(**{**net.stations[2].__dict__, "index": 0, "swaps_per_day": 0.0})
    result = runner.run_network(nw.Network("idle", "", "", 3600.0, 1, "CNY", [idle]), backend="serial")
    (r,) = result.results
    assert r.kpi.arrivals == 0 and r.kpi.grid_kwh >= 0.0
    (row,) = report.rows(result)
    assert math.isnan(row["served_share"]) and math.isnan(row["wait_probability"])
