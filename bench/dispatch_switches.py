"""Charger switching and waits for a charger with the firmware's dispatch in the loop.

Runs the queueing set-up (docs/scenarios.md, "Queueing validation") with more packs than
chargers' worth of grid, vehicles that wait, every returned pack at the same SoC (so packs
tie on their readings), and watches the plant's chargers: how often a charger is switched
on per simulated day, how many times one was switched off again within 10 s while its pack
still needed charge (handed to another slot), and the longest time a returned pack waited
for its first charge. Prints only; it never asserts.

    .venv/bin/python bench/dispatch_switches.py                     # C = 14, N = 16, 13.5/h, 1 day, seed 1
    .venv/bin/python bench/dispatch_switches.py --chargers 2 --packs 5 --mu 2 --rate 3.5 --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host.plant.charging import PackRecord  # noqa: E402
from host.plant.expcharge import ExpChargeRack  # noqa: E402
from host.sim import engine, scenario  # noqa: E402

SCENARIO = """
name = "dispatch-switches"
[run]
duration = "{days}d"
seed = {seed}
[station]
slots = {slots}
[station.overrides.bay]
pack_wait_ms = 3600000
[queueing]
chargers = {chargers}
packs = {packs}
mu_per_hour = {mu}
[demand]
rate_per_hour = {rate}
models = {{ "NIO-ES6" = 1 }}
arrival_soc = 20
[mechanics]
swap_time_scale = 0
"""
HANDED_S = 10.0


def one_run(args: argparse.Namespace, seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.toml"
        path.write_text(SCENARIO.format(days=args.days, seed=seed, slots=args.packs + 1,
                                        chargers=args.chargers, packs=args.packs, mu=args.mu, rate=args.rate))
        sc = scenario.load(str(path))
    e = engine.Engine(sc)
    plant = e.plant
    assert isinstance(plant, ExpChargeRack)
    n = plant.n
    on = [False] * n
    on_at = [0.0] * n
    put_at: list[float | None] = [None] * n  # a returned pack waiting for its first charge
    stats = {"ons": 0, "handed": 0, "longest_wait_s": 0.0, "waits": 0}
    put, step = plant.put_pack, plant.step_to

    def put_pack(slot: int, pack: PackRecord) -> None:
        put(slot, pack)
        if plant.left_s[slot] > 0.0:
            put_at[slot] = e.t_s

    def step_to(t_s: float) -> None:
        now = plant.t
        for i in range(n):
            charging = plant._power_w(i) > 0.0
            if charging and not on[i]:
                stats["ons"] += 1
                on_at[i] = now
                w = put_at[i]
                if w is not None:
                    stats["waits"] += 1
                    stats["longest_wait_s"] = max(stats["longest_wait_s"], now - w)
                    put_at[i] = None
            elif on[i] and not charging and plant.pack[i] is not None and plant.left_s[i] > 0.0:
                if now - on_at[i] < HANDED_S:
                    stats["handed"] += 1
            on[i] = charging
        step(t_s)

    plant.put_pack, plant.step_to = put_pack, step_to  # type: ignore[method-assign]
    t0 = time.process_time()
    e.run()
    for i in range(n):  # packs still waiting at the end count with their wait so far
        w = put_at[i]
        if w is not None:
            stats["longest_wait_s"] = max(stats["longest_wait_s"], e.t_s - w)
    stats["cpu_s"] = time.process_time() - t0
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chargers", type=int, default=14)
    ap.add_argument("--packs", type=int, default=16)
    ap.add_argument("--mu", type=float, default=1.0, help="charges per charger-hour")
    ap.add_argument("--rate", type=float, default=13.5, help="vehicles per hour")
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    args = ap.parse_args()
    print(f"C = {args.chargers}, N = {args.packs}, mu = {args.mu:g}/h, lambda = {args.rate:g}/h, "
          f"{args.days:g} simulated day(s) a seed; returned packs all at 20 %")
    print(f"{'seed':>4} {'switch-ons/day':>15} {'handed on <10 s/day':>20} {'longest wait':>13} "
          f"{'charged':>8} {'cpu':>6}")
    for seed in args.seeds:
        s = one_run(args, seed)
        print(f"{seed:>4} {s['ons'] / args.days:>15.0f} {s['handed'] / args.days:>20.0f} "
              f"{s['longest_wait_s'] / 3600.0:>11.2f} h {s['waits']:>8d} {s['cpu_s']:>5.0f}s")


if __name__ == "__main__":
    main()
