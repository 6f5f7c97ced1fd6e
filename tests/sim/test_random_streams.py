"""A run's random draws come from independent streams, children of one
``numpy.random.SeedSequence(seed)``: the demand, the rack's stocking, the bay's motion
jitter and the queueing plant's charge work never draw alike, and seed s shares no
stream with seed s + 1 (a sweep over seeds 1..N would otherwise repeat itself)."""

from __future__ import annotations

import numpy as np

from host.sim import engine, scenario, scenario_plant


def _first_words(seq: np.random.SeedSequence | int, n: int = 4) -> tuple[int, ...]:
    return tuple(int(w) for w in np.random.PCG64(seq).random_raw(n))


def test_each_stream_of_a_run_and_of_the_next_seed_is_its_own() -> None:
    firsts = {}
    for seed in (1, 2, 3):
        for name, seq in scenario.random_streams(seed).items():
            firsts[(seed, name)] = _first_words(seq)
    assert set(scenario.RANDOM_STREAMS) <= {name for _, name in firsts}
    assert len(set(firsts.values())) == len(firsts)


def test_the_rack_stocking_does_not_replay_the_first_arrivals() -> None:
    sc = scenario.load("pss4-urban-day")
    sc.seed = 7
    packs = scenario_plant.stock_rack(sc)
    lo, hi = sc.rack[0].soc
    socs = [p.soc for _, p in sorted(packs.items())][: sc.rack[0].count]
    arrivals_stream = np.random.Generator(np.random.PCG64(scenario.random_streams(7)["arrivals"]))
    stock_stream = np.random.Generator(np.random.PCG64(scenario.random_streams(7)["stock"]))
    expected = [(lo + (hi - lo) * float(u)) / 100.0 for u in stock_stream.random(len(socs))]
    replayed = [(lo + (hi - lo) * float(u)) / 100.0 for u in arrivals_stream.random(len(socs))]
    assert socs == expected
    assert socs != replayed
    # and the demand draws from its own stream, not the integer seed every part once shared
    process = scenario_plant.arrival_process(sc)
    arrivals = scenario.random_streams(7)["arrivals"]
    assert _first_words(process._rng.bit_generator.seed_seq) == _first_words(arrivals)


def test_the_simulators_bay_and_charge_work_draw_from_their_own_streams() -> None:
    sc = scenario.load("pss4-urban-day")
    sc.seed = 11
    streams = scenario.random_streams(11)
    e = engine.Engine(sc)
    assert _first_words(e.bay.rng.bit_generator.seed_seq) == _first_words(streams["bay"])
