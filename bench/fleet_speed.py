"""Network twin speed: station-seconds simulated per wall-second, serially and on 1 and 2 Dask
workers. Measures and prints; asserts nothing.

    .venv/bin/python bench/fleet_speed.py                  # 10 % of the NIO-scale network, 1 day
    .venv/bin/python bench/fleet_speed.py --sample 2855    # all of it (the issue's goal: <= 60 s on 2 cores)
    .venv/bin/python bench/fleet_speed.py --substep 30     # the coarser plant sub-step
    .venv/bin/python bench/fleet_speed.py --packs --no-dask --sample 2855   # serial, packs tracked or not

The sample is every k-th station of the generated network (host.fleet.generate defaults), each
with the seed it has in the full run, so its cost per station extrapolates to the whole
network. Each line: wall time, station-s per wall-s, CPU-s per station-day summed over the
processes that ran stations, and the wall time projected for all 2,855 stations. The 2-worker
speed-up is over the 1-worker cluster (same overheads); the cluster's start-up is reported
apart and left out of the rates. On a shared machine the CPU figure is the steadier one.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host.fleet import generate, network, runner  # noqa: E402


def sample_network(n: int) -> network.Network:
    net = network.from_dict(generate.network(), "nio-scale")
    step = len(net.stations) / n
    net.stations = [net.stations[int(k * step)] for k in range(min(n, len(net.stations)))]
    return net


def own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def line(label: str, result: runner.FleetResult, wall: float, total_stations: int, here_cpu: float) -> str:
    """``here_cpu``: CPU of this process during the run (the stations themselves when serial;
    the scheduler and the client, the Dask overhead, on a cluster)."""
    n = len(result.results)
    days = result.duration_s / 86400.0
    rate = result.station_seconds / wall
    cpu = runner.cpu_s(result) / (n * days)
    return (f"{label:<18} {wall:6.2f} s wall  {rate / 1e6:5.2f} M station-s/wall-s  {cpu * 1000:5.1f} ms CPU "
            f"per station-day, {here_cpu * 1000 / n:5.1f} ms in this process  "
            f"-> {total_stations:,} stations: {wall * total_stations / n:6.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=int, default=285, help="stations to run (default 285, a tenth)")
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--substep", type=float, default=5.0, help="plant sub-step, s")
    ap.add_argument("--no-serial", action="store_true")
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--packs", action="store_true",
                    help="also serially with every pack tracked (host.fleet.packs), and the ratio")
    args = ap.parse_args()
    from distributed import Client, LocalCluster

    net = sample_network(args.sample)
    total = generate.NIO_STATIONS
    duration = args.days * 86400.0
    print(f"{len(net.stations)} of {total:,} NIO-scale stations, {args.days:g} d, "
          f"{args.substep:g} s sub-steps")
    walls: dict[int, float] = {}
    if not args.no_serial:
        t0, c0 = time.perf_counter(), own_cpu_s()
        r = runner.run_network(net, duration_s=duration, backend="serial", substep_s=args.substep)
        base_cpu = own_cpu_s() - c0
        print(line("serial (no Dask)", r, time.perf_counter() - t0, total, base_cpu))
        if args.packs:
            t0, c0 = time.perf_counter(), own_cpu_s()
            r = runner.run_network(net, duration_s=duration, backend="serial", substep_s=args.substep,
                                   packs=True)
            cpu = own_cpu_s() - c0
            assert r.ledger is not None
            print(line("serial, packs", r, time.perf_counter() - t0, total, cpu)
                  + f"  ({r.ledger.n:,} packs; {cpu / base_cpu:.2f}x the CPU untracked)")
    if args.no_dask:
        return
    for workers in (1, 2):
        t0 = time.perf_counter()
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster) as client:
            client.run(lambda: __import__("host.fleet.runner"))  # workers import the plant before the clock
            start = time.perf_counter() - t0
            t1, c1 = time.perf_counter(), own_cpu_s()
            r = runner.run_network(net, duration_s=duration, client=client, substep_s=args.substep)
            walls[workers] = time.perf_counter() - t1
            here = own_cpu_s() - c1
        print(line(f"dask, {workers} worker{'s' if workers > 1 else ''}", r, walls[workers], total, here)
              + f"  (cluster start {start:.1f} s)")
    print(f"speed-up of the 2nd worker: {walls[1] / walls[2]:.2f}x")


if __name__ == "__main__":
    main()
