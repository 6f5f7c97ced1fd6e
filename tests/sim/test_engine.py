"""The engine with the real firmware in the loop: reproducible, both plant paths, both buses, faults."""

import copy
import math

import pytest

from firmware.compat import TICKS_PERIOD
from host.sim import engine, scenario


def short(name="pss4-urban-day", hours=1.0, **kw):
    sc = scenario.load(name)
    sc.duration_s = hours * 3600
    for k, v in kw.items():
        setattr(sc, k, v)
    return sc


@pytest.fixture(scope="module")
def urban_2h():
    sc = short(hours=2.0)
    e = engine.Engine(sc)
    return e, e.run()


def test_same_seed_same_kpis_to_the_last_digit(urban_2h):
    _, first = urban_2h
    again = engine.run(short(hours=2.0))
    # repr: every float to its last digit, and a NaN (a vehicle that left unswapped has no
    # swap time) equal to a NaN
    assert repr(again.summary) == repr(first.summary)
    assert repr(again.series) == repr(first.series)
    assert repr(again.swaps) == repr(first.swaps)
    other = engine.run(short(hours=2.0, seed=99))
    assert repr(other.summary) != repr(first.summary)


def test_a_run_serves_vehicles_with_the_real_firmware(urban_2h):
    e, r = urban_2h
    s = r.summary
    assert s["vehicles"]["arrived"] > 0
    assert s["swaps"] > 0
    assert s["swaps"] == e.fw.sup.status()["swaps_ok"]  # plant and firmware agree on what happened
    assert s["soc_handed_over_pct"]["min"] >= e.sc.station["limits"]["handover_soc"]
    assert 60 < s["swap_duration_s"]["mean"] < 300  # GB/T 29772: 300 s or less
    assert s["energy"]["grid_kwh"] > 0 and s["energy"]["cost"] > 0
    assert s["energy"]["peak_grid_kw"] <= e.sc.station["limits"]["grid_kw"] + 1.0
    assert len(r.series) == 120  # one row a minute
    assert s["operator_actions"] == {"confirm": 1}  # the start-up confirmation


def test_a_vehicle_that_finds_the_bay_free_has_not_waited():
    # Light demand, charged packs: every wait is the bay's own approach (drive-in, door,
    # identification), which P(wait) must not count, while the wait itself includes it.
    # The second car arrives while the first is in the bay; the others find it free.
    sc = short(hours=3.0)
    sc.demand = scenario.Demand((0.0,), 1.0, sc.demand.models, (10.0, 40.0), 0, 0, 0.0)
    sc.arrivals = [scenario.VehicleArrival(t, "NIO-ES6", "NIO-100", 20.0)
                   for t in (600.0, 640.0, 3600.0, 7200.0)]
    e = engine.Engine(sc)
    s = e.run().summary
    assert s["wait_s"]["count"] == 4
    assert s["wait_s"]["min"] > 5.0  # arrival to swap start takes the approach
    queued = [v.entered_s - v.arrival.t_s >= 1.0 for v in e.visits if v.started_s >= 0]
    assert 0 < sum(queued) < len(queued)  # some found the bay taken, some did not
    # packs are charged, so nobody waits in the bay: the ones that queued are the ones that waited
    assert s["wait_probability"] == pytest.approx(sum(queued) / len(queued))


def test_virtual_ticks_wrap_during_a_run(urban_2h):
    e, _ = urban_2h
    assert e.ticks(0) > TICKS_PERIOD - 3_600_000  # starts just below the wrap ...
    assert e.ticks(e.t_ms) < e.ticks(0)  # ... and has wrapped by the end


def test_idle_station_is_not_busy_ticked():
    sc = short(hours=1.0)
    sc.demand = scenario.Demand((0.0,), 1.0, sc.demand.models, (10.0, 40.0), 0, 0, 0.0)
    e = engine.Engine(sc)
    e.run()
    # the firmware runs when it asks to (its bay and charger cycles), not every millisecond
    assert e.fw.sup.ticks < 3600 * 5


def test_python_and_cython_plants_agree():
    fast = engine.run(short(hours=1.0), plant="fast").summary
    ref = engine.run(short(hours=1.0), plant="python").summary
    assert ref["plant"] == "python" and fast["plant"] == "fast"  # named as --plant names them
    assert ref["swaps"] == fast["swaps"]
    assert ref["vehicles"] == fast["vehicles"]
    assert ref["energy"]["grid_kwh"] == pytest.approx(fast["energy"]["grid_kwh"], rel=1e-6)
    assert ref["energy"]["peak_grid_kw"] == pytest.approx(fast["energy"]["peak_grid_kw"], rel=1e-6)
    assert ref["wait_s"]["mean"] == pytest.approx(fast["wait_s"]["mean"], abs=1e-6)


def test_wire_mode_runs_the_same_station():
    direct = engine.run(short(hours=0.5)).summary
    e = engine.Engine(short(hours=0.5, mode="wire"))
    wire = e.run().summary
    assert wire["mode"] == "wire"
    assert all(link.line.frames > 1000 for link in e.fw.links)
    assert all(link.line.bad_frames == 0 for link in e.fw.links)
    assert wire["vehicles"]["arrived"] == direct["vehicles"]["arrived"]  # same arrivals
    assert wire["swaps"] == direct["swaps"]
    # the wire takes time, so the runs differ in detail but not in kind
    assert wire["energy"]["grid_kwh"] == pytest.approx(direct["energy"]["grid_kwh"], rel=0.05)
    # Direct mode answers at once, so a swap there is no slower than on the wire: the
    # firmware acts on a bay reading that finished in its tick's last poll straight away
    # (it used to sleep until the next charger poll, ~5 s a swap).
    assert direct["swaps"] >= 1
    assert direct["swap_duration_s"]["mean"] <= wire["swap_duration_s"]["mean"] + 0.5


@pytest.mark.slow
def test_fault_storm_faults_reach_the_firmware():
    sc = scenario.load("fault-storm")
    # Run until the last fault has ended and an hour more: every fault it schedules is
    # injected, and the station must serve again after the last one.
    ends = [at + dur for at, dur in sc.outages] + [f.at_s + f.duration_s for f in sc.faults]
    last = max(ends)
    sc.duration_s = last + 3600.0
    assert sc.duration_s <= 86400.0
    e = engine.Engine(sc)
    r = e.run()
    s = r.summary
    scheduled = {f.kind for f in sc.faults} | ({"grid_outage"} if sc.outages else set())
    assert set(s["faults"]) == scheduled
    assert sum(s["faults"].values()) == len(sc.faults) + len(sc.outages)
    alarms = set(s["alarms"])
    want = {"charger_offline", "runaway", "grid_lost", "smoke", "charger_fault", "charger_frozen"}
    assert want <= alarms, alarms
    assert not math.isnan(s["swap_duration_s"]["mean"])
    after = [x for x in r.swaps if x[2] >= last and x[3] == "served"]
    assert after, "no vehicle served after the last fault"
    assert e.fw.sup.state() == "run", e.fw.sup.status()


def test_firmware_exception_is_a_simulation_error(monkeypatch):
    e = engine.Engine(short(hours=0.1))
    e._start()

    def boom(now):
        raise RuntimeError("bug")

    monkeypatch.setattr(e.fw.sup, "tick", boom)
    e._start = lambda: None  # type: ignore[method-assign]
    with pytest.raises(engine.SimulationError, match="RuntimeError: bug"):
        e.run()


def test_scenarios_are_not_mutated_by_a_run():
    sc = short(hours=0.2)
    before = copy.deepcopy(sc.station)
    engine.run(sc)
    assert sc.station == before
