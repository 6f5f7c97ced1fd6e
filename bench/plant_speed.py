"""Plant speed: simulated seconds per wall-clock second. Measures and prints; asserts nothing.

    .venv/bin/python bench/plant_speed.py            # full run (about a minute)
    .venv/bin/python bench/plant_speed.py --quick    # shorter spans

1. Kernel stepping: every charger charging, step(3600 s) in 5 s sub-steps, one station
   (23 packs) and 100 stations; the same station on the pure-Python reference kernel,
   and the Cython speed-up over it.
2. Plant-only stations (host.plant.standalone: arrivals, queue, bay, grid, event jumps):
   one station for a year (the goal: 10 s or less on one core), 100 stations, and the
   speed-up over the same run on the pure-Python kernel.
"""

from __future__ import annotations

import argparse
import time

from host.plant.charging import PackRecord, Plant
from host.plant.standalone import PlantOnlyRun, StationKpis

YEAR_S = 365 * 86400.0


def charging_rack(n_stations: int, backend: str, substep_s: float) -> Plant:
    plant = Plant(n_stations, 23, backend=backend, max_substep_s=substep_s, watchdog=False, grid_limit_kw=1e6)
    for slot in range(plant.n_slots):
        plant.put_pack(
            slot, PackRecord(slot, ("NIO-75", "NIO-100", "NIO-150")[slot % 3], 0.1 + 0.03 * (slot % 23))
        )
        plant.set_enable(slot, True)
    return plant


def kernel_rate(n_stations: int, backend: str, sim_s: float, substep_s: float = 5.0) -> tuple[float, float]:
    """(simulated s per wall s, ns per pack sub-step) stepping a rack kept charging."""
    plant = charging_rack(n_stations, backend, substep_s)
    chunk = min(3600.0, sim_s)
    wall = 0.0
    t = 0.0
    while t < sim_s:
        t0 = time.perf_counter()
        plant.step(chunk)
        wall += time.perf_counter() - t0
        t += chunk
        plant.arrays["soc"][plant.arrays["soc"] > 0.95] = 0.1  # keep every charger busy (not timed)
    substeps = (sim_s / substep_s) * plant.n_slots
    return sim_s / wall, wall / substeps * 1e9


def station_run(
    n_stations: int, backend: str, sim_s: float, substep_s: float = 5.0
) -> tuple[float, PlantOnlyRun]:
    wall, _, run = station_run_cpu(n_stations, backend, sim_s, substep_s)
    return wall, run


def station_run_cpu(
    n_stations: int, backend: str, sim_s: float, substep_s: float = 5.0, seed: int = 1
) -> tuple[float, float, PlantOnlyRun]:
    """(wall s, CPU s of this process, the run): on a shared machine the CPU time is the steadier figure."""
    run = PlantOnlyRun(n_stations, seed=seed, backend=backend, max_substep_s=substep_s)
    t0, c0 = time.perf_counter(), time.process_time()
    run.run(sim_s)
    return time.perf_counter() - t0, time.process_time() - c0, run


def kpi_change(base: StationKpis, other: StationKpis) -> str:
    def rel(a: float, b: float) -> str:
        return f"{100.0 * (b - a) / a:+5.1f} %" if a else "   n/a"

    return ", ".join((
        rel(base.swaps, other.swaps),
        rel(base.balked + base.reneged, other.balked + other.reneged),
        rel(base.grid_kwh, other.grid_kwh),
        rel(base.mean_wait_s, other.mean_wait_s),
    ))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter spans")
    args = ap.parse_args()
    q = args.quick

    print("== kernel stepping (every charger charging, 5 s sub-steps) ==")
    one, ns1 = kernel_rate(1, "cython", (7 if q else 60) * 86400.0)
    print(f"cython   1 station  (23 packs):   {one:14,.0f} sim-s/wall-s   {ns1:6.1f} ns per pack-sub-step")
    hundred, ns100 = kernel_rate(100, "cython", (0.5 if q else 3) * 86400.0)
    print(
        f"cython 100 stations (2300 packs): {hundred:14,.0f} sim-s/wall-s   {ns100:6.1f} ns per pack-sub-step"
    )
    ref, nsr = kernel_rate(1, "python", (0.1 if q else 0.5) * 86400.0)
    print(f"python   1 station  (23 packs):   {ref:14,.0f} sim-s/wall-s   {nsr:6.0f} ns per pack-sub-step")
    print(f"cython speed-up over pure Python (kernel): {one / ref:,.0f}x")

    print("\n== plant-only stations (arrivals, queue, bay, grid; event jumps) ==")
    days = 30 if q else 365
    wall, cpu, run = station_run_cpu(1, "cython", days * 86400.0)
    k = run.stations[0].kpi
    print(
        f"cython   1 station, {days} days: {wall:6.2f} s wall -> "
        f"{days * 86400.0 / wall:12,.0f} sim-s/wall-s; "
        f"one station-year in {wall * 365 / days:.2f} s ({cpu * 365 / days:.2f} s CPU)"
    )
    print(
        f"    arrivals {k.arrivals}, swaps {k.swaps}, balked {k.balked}, reneged {k.reneged}, "
        f"mean wait {k.mean_wait_s:.0f} s, grid {k.grid_kwh:,.0f} kWh"
    )
    # Coarser sub-steps: faster, and how far the KPIs move from the 5 s run, next to how far
    # another seed moves them (the run-to-run noise a planner sees anyway).
    _, _, other = station_run_cpu(1, "cython", days * 86400.0, seed=2)
    print("    KPI change from the 5 s run (swaps, turned away = balked + reneged, grid kWh, mean wait):")
    print(f"      seed 2 instead of 1, 5 s:  {kpi_change(k, other.stations[0].kpi)}")
    for sub in (10.0, 20.0, 30.0):
        w, c, r = station_run_cpu(1, "cython", days * 86400.0, substep_s=sub)
        print(
            f"      seed 1, {sub:2.0f} s sub-steps:    {kpi_change(k, r.stations[0].kpi)}; "
            f"one station-year in {w * 365 / days:.2f} s ({c * 365 / days:.2f} s CPU)"
        )
    d100 = 1 if q else 5
    w100, _ = station_run(100, "cython", d100 * 86400.0)
    print(
        f"cython 100 stations, {d100} days: {w100:6.2f} s wall -> "
        f"{d100 * 86400.0 / w100:10,.0f} sim-s/wall-s "
        f"({100 * d100 * 86400.0 / w100:,.0f} station-s/wall-s)"
    )
    dpy = 0.5 if q else 2
    wpy, _ = station_run(1, "python", dpy * 86400.0)
    wcy, _ = station_run(1, "cython", dpy * 86400.0)
    print(f"python   1 station, {dpy} days: {wpy:6.2f} s wall -> {dpy * 86400.0 / wpy:10,.0f} sim-s/wall-s")
    print(f"cython speed-up over pure Python (plant-only station, same {dpy} days): {wpy / wcy:,.1f}x")


if __name__ == "__main__":
    main()
