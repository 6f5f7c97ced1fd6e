"""Packs tracked across the network: identities conserved (serial and Dask give the same ledger:
tests/fleet/test_runner.py), state of health from the plant, retirement, rebalancing moves, bad
[packs] settings."""


import numpy as np
import pytest

from host.fleet import generate, packs, runner
from host.fleet import network as nw
from tests.fleet import nets

DAYS = 3


# Half a day of demand out in vehicles: the pools run dry, so packs come back within the run
# and vehicles bring stand-ins (resolved to packs from other stations' pools).
SHORT_POOLS = {"revisit_days": 0.5}


def small_net(**pack_settings):
    data = generate.network(stations=12, highway=4, swaps_per_day=600.0, seed=3)
    data["run"]["duration"] = "3d"
    if pack_settings:
        data["packs"] = pack_settings
    return nw.from_dict(data, "small")


@pytest.fixture(scope="module")
def tracked():
    return runner.run_network(small_net(**SHORT_POOLS), seed=9, backend="serial", packs=True)


def test_pack_identities_are_conserved_over_several_days(tracked):
    led = tracked.ledger
    assert tracked.epochs_done == DAYS and not tracked.partial and tracked.duration_s == DAYS * 86400.0
    start = packs.Ledger(small_net(**SHORT_POOLS), 9)
    # the same packs by type, each id once (ids are rows), each rack its configured stock
    assert np.array_equal(np.bincount(led.type), np.bincount(start.type))
    assert np.array_equal(led.stock(), start.stock())
    led.check()
    # every swap handed a pack to a vehicle, and it is out in a vehicle or back in a rack
    assert int(led.swaps.sum()) == sum(r.kpi.swaps for r in tracked.results) > 1000
    moved = (led.station != start.station) & led.in_vehicle
    assert moved.any()  # vehicles took packs to other stations
    assert (~led.in_vehicle & (led.swaps > 0)).any()  # and brought them back to racks
    assert (~led.in_vehicle & start.in_vehicle).any()
    assert led.borrowed > 0


def test_a_lost_or_duplicated_pack_is_an_error():
    net = small_net()
    led = packs.Ledger(net, 1)
    inputs = led.station_packs()
    outs = [packs.PackOutcome(rack=[(p.pack_id, p.soc, p.soh, p.efc) for p in inp.rack]) for inp in inputs]
    dropped = [o if i else packs.PackOutcome(rack=o.rack[1:]) for i, o in enumerate(outs)]
    with pytest.raises(packs.PackLedgerError, match="1 lost"):
        packs.Ledger(net, 1).step(inputs, dropped, 0.0)
    twice = [packs.PackOutcome(rack=o.rack, left=[(o.rack[0][0], 5.0, 1.0, 0.0)]) if i == 0 else o
             for i, o in enumerate(outs)]
    victim = packs.Ledger(net, 1)
    before = victim.arrays()
    with pytest.raises(packs.PackLedgerError, match="1 duplicated"):
        victim.step(inputs, twice, 0.0)
    after = victim.arrays()  # nothing written
    assert all(np.array_equal(before[k], after[k], equal_nan=True) for k in before) and victim.epoch == 0
    led.step(inputs, outs, 0.0)  # nothing happened: fine


def test_new_packs_leave_the_first_day_as_untracked(tmp_path):
    net = nw.load(nets.write(tmp_path))
    plain = runner.run_network(net, duration_s=6 * 3600.0, seed=4, backend="serial")
    with_packs = runner.run_network(net, duration_s=6 * 3600.0, seed=4, backend="serial", packs=True)
    assert with_packs.results == plain.results


def test_soh_falls_with_cycles_and_retirement_shows_with_a_higher_threshold(tracked):
    led = tracked.ledger
    cycled = led.efc > 0
    assert cycled.any()
    fade = 0.2 / 3000.0
    assert np.all(led.soh[cycled] < 1.0) and np.all(led.soh[~cycled] == 1.0)
    # the plant's fade: at least fade_per_efc per cycle (more when warm)
    assert np.all(1.0 - led.soh[cycled] >= fade * led.efc[cycled] * (1 - 1e-9))
    assert np.all(led.throughput_kwh[cycled] > 0)
    assert len(led.due()) == 0
    assert 0 < len(led.due(retire_soh=1.0)) == int(cycled.sum())
    aged = packs.Ledger(small_net(initial_efc=[2000, 4000], retire_soh=0.8), 1)
    # 0.2/3000 per cycle: 20 % gone after 3000 cycles, so about half are due
    share = len(aged.due()) / aged.n
    assert 0.35 < share < 0.65
    assert aged.soh.min() >= 1.0 - fade * 4000 - 1e-12


def three_stations(stock, mix, lon):
    rows = [{"id": f"S{i}", "packs": st, "pack_mix": m, "grid_kw": 500, "swaps_per_day": 10, "lat": 31.0,
             "lon": x} for i, (st, m, x) in enumerate(zip(stock, mix, lon, strict=True))]
    return nw.from_dict({"stations": rows}, "three")


def test_rebalancing_moves_restore_the_stock():
    # S0's vehicles bring few 100s; S1 stocks partner packs its vehicles do not bring; S2's
    # vehicles are half a partner's, with 60 kWh packs it stocks one of
    net = three_stations(
        [{"NIO-75": 4, "NIO-100": 4}, {"NIO-75": 4, "NIO-100": 2, "STD-A-60": 2},
         {"NIO-75": 6, "NIO-100": 1, "STD-A-60": 1}],
        [{"NIO-75": 7, "NIO-100": 1}, {"NIO-75": 1, "NIO-100": 1}, {"NIO-75": 1, "STD-A-60": 1}],
        [121.0, 121.1, 121.25])
    led = packs.Ledger(net, 1)
    healthy, target, moves, short = packs.rebalance(led)
    assert healthy.tolist() == [[4, 4, 0, 0], [4, 2, 0, 2], [6, 1, 0, 1]]
    assert target.tolist() == [[6, 2, 0, 0], [4, 4, 0, 0], [4, 0, 0, 4]]
    got = {(m.type_name, m.src, m.dst): m.count for m in moves}
    # S2's spare 100 stays: S0's are nearer to S1
    assert got == {("NIO-75", 2, 0): 2, ("NIO-100", 0, 1): 2, ("STD-A-60", 1, 2): 2}
    after = healthy.copy()
    for m in moves:
        k = packs.PACK_TYPE_NAMES.index(m.type_name)
        after[m.src, k] -= m.count
        after[m.dst, k] += m.count
    # every deficit filled but one partner pack the network does not have: it is to be bought
    assert short.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    assert np.array_equal(np.minimum(after + short, target), target)
    assert all(m.km > 0 for m in moves)
    km01 = float(packs.distance_km(net.stations, 0, np.array([1]))[0])
    assert 9.0 < km01 < 10.0 and got and min(m.km for m in moves) == pytest.approx(km01)


def test_retiring_packs_count_as_missing_stock():
    net = three_stations([{"NIO-75": 4}] * 3, [{"NIO-75": 1}] * 3, [121.0, 121.1, 121.2])
    led = packs.Ledger(net, 1)
    led.soh[(led.station == 1) & ~led.in_vehicle] = 0.7  # S1's rack is worn out
    _, _, moves, short = packs.rebalance(led)
    assert moves == [] and short[:, 0].tolist() == [0, 4, 0]


@pytest.mark.parametrize("settings, field", [
    ({"retire_soh": 1.5}, "packs.retire_soh: must be <= 1"),
    ({"same_station": 0.7, "nearby": 0.5}, "packs.nearby: same_station + nearby must be <= 1"),
    ({"initial_efc": [10, 5]}, "packs.initial_efc: min 10 is above max 5"),
    ({"nearby_stations": 0}, "packs.nearby_stations: must be >= 1"),
    ({"revisit": 3}, "packs.revisit: unknown field"),
])
def test_bad_pack_settings_name_the_field(settings, field):
    data = generate.network(stations=3, highway=1, swaps_per_day=60.0)
    data["packs"] = settings
    with pytest.raises(nw.NetworkError) as e:
        nw.from_dict(data, "net.toml")
    assert field in str(e.value)
    assert str(e.value).startswith("net.toml: ")


def test_a_stop_keeps_the_days_finished(tmp_path):
    net = nw.load(nets.write(tmp_path))
    seen = []
    r = runner.run_network(net, duration_s=3 * 86400.0, seed=2, backend="serial", packs=True,
                           progress=seen.append, stop=lambda: len(seen) >= 4)  # day 2's first station
    one = runner.run_network(net, duration_s=86400.0, seed=2, backend="serial", packs=True)
    assert r.partial and r.epochs_done == 1 and r.duration_s == 86400.0 and r.ledger is not None
    assert r.results == one.results
    a, b = r.ledger.arrays(), one.ledger.arrays()
    assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
