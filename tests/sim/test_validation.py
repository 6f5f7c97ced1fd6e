"""The simulator against queueing theory, with the real firmware in the loop, and the
calibrated default against the published PSS 4.0 anchor (docs/scenarios.md, "Calibration
and the PSS 4.0 anchor", says what the anchor tests assume and what they measured).

The firmware turns a vehicle away when no charged pack turns up within its authorise
timeout (docs/scenarios.md, "Queueing validation"), so the closed form that applies with
the firmware in the loop is the loss variant: the share of vehicles turned away is the
M/M/C/N blocking probability, Erlang B(N, a) for C = N. Independent replications with
fixed seeds; the test checks a 99 % t-interval of the replication means.
"""

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from host.plant.charging import PackRecord, Plant
from host.plant.params import RackParams
from host.plant.vehicles import NIO_FLEET
from host.sim import engine, queueing, scenario

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


@pytest.mark.slow
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


# --- the PSS 4.0 anchor ----------------------------------------------------------------------
#
# NIO publishes 23 packs, 144 s a swap and "up to 480 swaps a day" for PSS 4.0; 480 a day is
# 86400 s / 180 s per car, the bay's own cycle. NIO does not publish the per-slot charger
# power of PSS 4.0 (62.5 kW is PSS 3.0's figure), so the anchor checks the mechanics, and the
# charge supply is checked against its own energy bound.

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
arrival_soc = [%d, %d]
patience = "30m"
"""
MODELS = {"NIO-ES6": 3, "NIO-ET5": 4, "NIO-ET7": 2, "NIO-ES8": 1}
PACKS = 22  # packs in the rack (23 slots: one is free for the returned pack)
DAY_S = 86400.0
HANDOVER = 0.90  # limits.handover_soc of station.json
# Arrival SoC of the charged-supply run: packs come back needing at most 10 points of charge.
EASY_SOC = (80, 89)
DEFAULT_SOC = (5, 70)


def anchor_day(soc: tuple[int, int], path: str) -> dict[str, Any]:
    """One day of the saturated default station; KPIs plus the mean time from a returned pack
    going into its slot to its first reading at hand-over SoC (the charge time in the loop)."""
    Path(path).write_text(SATURATED % soc)
    sc = scenario.load(path)
    sc.duration_s = DAY_S
    e = engine.Engine(sc)
    plant = e.plant
    stored: dict[int, float] = {}
    charged: list[float] = []
    put, take, advance = plant.put_pack, plant.take_pack, e._advance_to

    def put_pack(slot: int, pack: PackRecord) -> None:
        put(slot, pack)
        stored[slot] = e.t_s

    def take_pack(slot: int) -> PackRecord:
        stored.pop(slot, None)
        return take(slot)

    def advance_to(t_ms: int) -> None:
        advance(t_ms)
        soc_now = plant.arrays["soc"]
        for slot in [k for k, t0 in stored.items() if soc_now[k] >= HANDOVER]:
            charged.append(e.t_s - stored.pop(slot))

    plant.put_pack, plant.take_pack, e._advance_to = put_pack, take_pack, advance_to
    s = e.run().summary
    entries = sorted(v.entered_s for v in e.visits if v.outcome == "served")
    return {"swaps": s["swaps"], "vehicles": s["vehicles"], "charge_s": float(np.mean(charged)),
            "charged": len(charged), "bay_cycle_s": float(np.mean(np.diff(entries)))}


def plant_charge_time_s(soc: tuple[int, int], n: int = 400, seed: int = 7) -> float:
    """Mean time a returned pack needs from arrival SoC to hand-over on its own 62.5 kW charger,
    from the plant model alone (no firmware, no bay): pack types drawn from the vehicle mix of
    the scenario, arrival SoC lo + (hi - lo) * Beta(2, 5) as the arrival process draws it, packs
    at 30 degC in a 25 degC rack, the charger at its rated setpoints, no grid limit."""
    rng = np.random.Generator(np.random.PCG64(seed))
    mix: dict[str, float] = {}
    total = sum(MODELS.values())
    for m in NIO_FLEET:
        for pt, p in m.packs.items():
            mix[pt] = mix.get(pt, 0.0) + MODELS.get(m.name, 0) / total * p
    names = sorted(mix)
    probs = np.array([mix[k] for k in names])
    types = rng.choice(len(names), size=n, p=probs / probs.sum())
    socs = (soc[0] + (soc[1] - soc[0]) * rng.beta(2.0, 5.0, size=n)) / 100.0
    plant = Plant(1, n, grid_limit_kw=1e9, rack=RackParams(t_amb_c=25.0), watchdog=False)
    for i in range(n):
        plant.put_pack(i, PackRecord(i + 1, names[types[i]], float(socs[i]), temp_c=30.0))
        plant.set_enable(i, True)
    done = np.full(n, np.nan)
    t, h = 0.0, 1.0
    level = plant.arrays["soc"]
    while np.isnan(done).any() and t < 6 * 3600.0:
        plant.step(h)
        t += h
        done[np.isnan(done) & (level >= HANDOVER)] = t
    assert not np.isnan(done).any()
    return float(done.mean())


def supply_bound(charge_s: float, bay_cycle_s: float) -> float:
    """Swaps a day that the packs' charging alone allows: the 22 charged packs of the morning,
    then each of the 22 charging positions gives one pack every ``charge_s`` from the moment
    the swap that emptied it (one every ``bay_cycle_s`` while the morning stock lasts) put a
    returned pack in."""
    return PACKS + sum(DAY_S - i * bay_cycle_s for i in range(PACKS)) / charge_s


@pytest.fixture(scope="module")
def anchor(tmp_path_factory):
    d = tmp_path_factory.mktemp("anchor")
    with ProcessPoolExecutor(max_workers=2) as pool:
        easy = pool.submit(anchor_day, EASY_SOC, str(d / "easy.toml"))
        default = pool.submit(anchor_day, DEFAULT_SOC, str(d / "default.toml"))
        return easy.result(), default.result()


@pytest.mark.slow
def test_pss4_anchor_480_swaps_a_day_when_charged_packs_are_there(anchor):
    """The mechanical calibration against NIO's "up to 480 swaps a day" (86400 / 180 s).

    Condition, stated plainly: charged packs are always there. Demand saturates the bay
    (40 vehicles/h, 30 min patience) and the vehicles bring packs at 80-89 % SoC, so a returned
    pack is at hand-over (90 %) again in about ten minutes (the plant alone says so, below),
    far less than the ~62 min the other 21 packs take to be used. The grid carries every
    charger at once (1437.5 kW). What is left to limit the count is the bay: drive in, the
    firmware's 13 steps at the calibrated step times (144 s mean mechanics), drive out.
    Measured (seed 1, at 1724ef0): 508 swaps, a served car every 169.7 s.
    """
    easy, _ = anchor
    charge_s = plant_charge_time_s(EASY_SOC)
    # the condition: packs recharge far faster than they are used
    assert charge_s < 0.25 * (PACKS - 1) * 180.0
    assert easy["vehicles"]["not_swapped"] == 0  # nobody was turned away for want of a pack
    assert easy["swaps"] >= 480, f"{easy['swaps']} swaps in a day, a car every {easy['bay_cycle_s']:.1f} s"
    assert easy["bay_cycle_s"] <= 180.0


@pytest.mark.slow
def test_pss4_default_mix_charge_time_and_which_limit_binds(anchor):
    """With the sourced 62.5 kW per slot and the default arrival SoC (5-70 %, Beta(2, 5): mean
    about 23 %), where does the count come from?

    Computed independently of the firmware-in-the-loop run:
    - charge time: from the plant alone, 400 returned packs (the scenario's vehicle mix) charged
      from their arrival SoC to the 90 % hand-over on a 62.5 kW charger: about 3800 s;
    - the charge-supply bound from energy: 22 morning packs, then one pack per charging position
      every charge time (``supply_bound``): about 510 a day;
    - the bay bound: the charged-supply run's count (508: test above).

    Asserted:
    1. the firmware-in-the-loop charge time (a returned pack going into its slot until its first
       reading at 90 %) agrees with the plant-alone figure within 3 %: the firmware's polling,
       dispatch and JEITA limits cost the charging nothing measurable at this grid;
    2. the two bounds agree within 5 %: at 62.5 kW and this SoC mix the station is balanced,
       neither the chargers nor the bay alone sets the count;
    3. the served count lies below both bounds and within 15 % of the lower one. What the 15 %
       holds (measured 451, 0.89 of the bay bound) is their interplay, not energy: a pack that
       reaches hand-over while the bay is busy turning a car away waits for the next car (225
       were turned away at authorise for want of a charged pack), and in the dearest
       time-of-use hours the dispatch may slow charging to 30 % once 4 packs are ready.
       Measured (at 1724ef0): charge time 3837 s in the loop, 3804 s plant alone; bounds 511
       and 508.
    """
    easy, default = anchor
    charge_s = plant_charge_time_s(DEFAULT_SOC)
    assert default["charge_s"] == pytest.approx(charge_s, rel=0.03), (default["charge_s"], charge_s)
    bay = float(easy["swaps"])
    supply = supply_bound(charge_s, easy["bay_cycle_s"])
    assert supply == pytest.approx(bay, rel=0.05), (supply, bay)
    lower = min(supply, bay)
    assert 0.85 * lower <= default["swaps"] <= lower, (default["swaps"], supply, bay)
