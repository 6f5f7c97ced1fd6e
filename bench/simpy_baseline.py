"""The same station in SimPy, as a baseline for host.plant.standalone. Measures and prints.

    .venv/bin/python bench/simpy_baseline.py [--days 2] [--tick 5]

Same arrivals (ArrivalProcess, same seed), same bay durations (BayModel.sample_swap_s),
same packs and chargers (the Plant with the same equations), same dispatcher rules
(first come first served, the fullest ready pack of the vehicle's type, balking,
reneging). The SimPy model is written the usual SimPy way: a process per vehicle, the
bay as a Resource, reneging as ``request | timeout(patience)``, and a charging process
that ticks the rack every ``--tick`` seconds. It runs once with the pure-Python plant
(an all-Python stack) and once with the compiled plant (SimPy's event structure alone);
both are compared with the event-jumping plant-only runner.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import simpy

from host.plant.bay import BayModel
from host.plant.charging import PackRecord, Plant
from host.plant.grid import Grid
from host.plant.params import PACK_TYPE_NAMES
from host.plant.standalone import DEFAULT_RACK, DEFAULT_TOU, PlantOnlyRun, StationKpis
from host.plant.vehicles import Arrival, ArrivalProcess, hourly_rates

SEED = 1


def simpy_station(days: float, backend: str, tick_s: float, ready_soc: float = 0.9) -> StationKpis:
    env = simpy.Environment()
    plant = Plant(1, len(DEFAULT_RACK) + 1, backend=backend, max_substep_s=tick_s, watchdog=False)
    grid = Grid(1000.0, DEFAULT_TOU)
    grid.apply(plant, 0, 0.0)
    type_idx = np.full(plant.n_slots, -1)
    reserved = np.zeros(plant.n_slots, dtype=bool)
    ids = itertools.count(1)
    for k, name in enumerate(DEFAULT_RACK):
        plant.put_pack(k, PackRecord(next(ids), name, 0.95))
        type_idx[k] = PACK_TYPE_NAMES.index(name)
    for slot in range(plant.n_slots):
        plant.set_enable(slot, True)
    state = {"empty": len(DEFAULT_RACK), "waiting": 0, "busy": False, "energy": 0.0}
    kpi = StationKpis()
    bay = simpy.Resource(env, capacity=1)
    bay_model = BayModel(plant, seed=SEED * 1000)
    arrivals = ArrivalProcess(SEED * 1000, hourly_rates(480.0))

    def ready_slot(type_name: str) -> int:
        mask = (type_idx == PACK_TYPE_NAMES.index(type_name)) & ~reserved & (plant.soc >= ready_soc)
        if not mask.any():
            return -1
        return int(np.argmax(np.where(mask, plant.soc, -1.0)))

    def charging():
        while True:
            yield env.timeout(tick_s)
            plant.step(tick_s)
            e = plant.station_energy_j(0)
            kpi.cost += grid.price_at(env.now - tick_s) * (e - state["energy"]) / 3.6e6
            state["energy"] = e

    def vehicle(a: Arrival):
        kpi.arrivals += 1
        if (state["busy"] or state["waiting"]) and arrivals.balks(a, state["waiting"]):
            kpi.balked += 1
            return
        state["waiting"] += 1
        deadline = env.now + a.patience_s
        with bay.request() as req:
            got = yield req | env.timeout(a.patience_s)
            if req not in got:
                state["waiting"] -= 1
                kpi.reneged += 1
                return
            slot = ready_slot(a.pack_type)
            while slot < 0:  # first in line: wait for a pack, polling at the charging tick
                if env.now + tick_s > deadline:
                    yield env.timeout(max(0.0, deadline - env.now))
                    state["waiting"] -= 1
                    kpi.reneged += 1
                    return
                yield env.timeout(tick_s)
                slot = ready_slot(a.pack_type)
            state["waiting"] -= 1
            state["busy"] = True
            reserved[slot] = True
            kpi.wait_s += env.now - a.t_s
            duration, failure = bay_model.sample_swap_s(state["empty"], slot)
            yield env.timeout(duration)
            reserved[slot] = False
            state["busy"] = False
            if failure is None:
                given = plant.take_pack(slot)
                type_idx[slot] = -1
                plant.put_pack(state["empty"], a.pack)
                type_idx[state["empty"]] = PACK_TYPE_NAMES.index(a.pack_type)
                plant.set_enable(state["empty"], True)
                state["empty"] = slot
                kpi.swaps += 1
                kpi.handover_soc += given.soc
            else:
                kpi.failed += 1

    def source():
        for a in arrivals:
            yield env.timeout(a.t_s - env.now)
            env.process(vehicle(a))

    env.process(charging())
    env.process(source())
    env.run(until=days * 86400.0)
    kpi.grid_kwh = plant.station_energy_j(0) / 3.6e6
    return kpi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--tick", type=float, default=5.0, help="charging tick = plant sub-step (s)")
    args = ap.parse_args()
    span = args.days * 86400.0

    t0 = time.perf_counter()
    run = PlantOnlyRun(1, seed=SEED, max_substep_s=args.tick)
    ours = run.run(span)[0]
    w_ours = time.perf_counter() - t0
    rows = [("plant-only runner, cython plant (event jumps)", w_ours, ours)]
    for backend in ("cython", "python"):
        t0 = time.perf_counter()
        k = simpy_station(args.days, backend, args.tick)
        rows.append((f"SimPy, {backend} plant ticked every {args.tick:g} s", time.perf_counter() - t0, k))

    print(f"one station, {args.days:g} days, {args.tick:g} s plant sub-steps")
    print(
        f"{'model':50s} {'wall s':>8s} {'sim-s/wall-s':>13s} {'ratio':>7s}  "
        "arrivals swaps balked reneged  kWh"
    )
    for name, wall, k in rows:
        print(
            f"{name:50s} {wall:8.2f} {span / wall:13,.0f} {wall / w_ours:6.1f}x  "
            f"{k.arrivals:8d} {k.swaps:5d} {k.balked:6d} {k.reneged:7d}  {k.grid_kwh:,.0f}"
        )
    print("ratio = wall time / plant-only runner's wall time (higher: the baseline is slower)")


if __name__ == "__main__":
    main()
