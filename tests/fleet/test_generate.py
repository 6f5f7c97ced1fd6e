"""The synthetic network generator: NIO's published network figures by default."""

import numpy as np
import pytest

from host.fleet import generate as gen
from host.fleet import network as nw

# shared/domain-notes.md: 2,855 stations, 923 on highways, about 80,000 swaps a day.
# The generator scales the arrivals to the total; rounding each station to 0.1 leaves < 0.1 %.
VOLUME_TOLERANCE = 0.001


@pytest.fixture(scope="module")
def nio():
    return gen.network()


def test_the_default_is_nio_scale(nio):
    net = nw.from_dict(nio, "nio")
    assert len(net.stations) == 2855
    highway = [s for s in net.stations if s.station_class.startswith("highway")]
    assert len(highway) == 923 and all(s.id.startswith("H") for s in highway)
    assert net.swaps_per_day == pytest.approx(80_000, rel=VOLUME_TOLERANCE)
    assert len({s.id for s in net.stations}) == 2855
    assert all(s.lat is not None and 18 < s.lat < 45 and 100 < s.lon < 126 for s in net.stations)


def test_sizes_and_demand_are_spread(nio):
    net = nw.from_dict(nio, "nio")
    v = np.array([s.swaps_per_day for s in net.stations])
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    assert p90 > 4 * p10 and v.max() <= gen.MAX_PER_STATION and v.min() > 0
    assert {s.n_packs for s in net.stations} == {13, 21, 22}
    h = np.mean([s.swaps_per_day for s in net.stations if s.station_class.startswith("highway")])
    u = np.mean([s.swaps_per_day for s in net.stations if s.station_class.startswith("urban")])
    assert h / u == pytest.approx(gen.HIGHWAY_LEVEL, rel=0.1)


def test_written_as_toml_or_json_it_loads_as_the_same_network(tmp_path):
    data = gen.network(60, 20, 1800.0, seed=3)
    direct = nw.from_dict(data, "x").stations
    for name in ("small.toml", "small.json"):
        gen.write(data, tmp_path / name)
        assert nw.load(tmp_path / name).stations == direct
    assert nw.load(tmp_path / "small.toml").name == "synthetic"


def test_same_seed_same_network_other_seed_another():
    assert gen.network(40, 10, 1000.0, seed=1) == gen.network(40, 10, 1000.0, seed=1)
    assert gen.network(40, 10, 1000.0, seed=1) != gen.network(40, 10, 1000.0, seed=2)


def test_impossible_volume_is_refused():
    with pytest.raises(ValueError, match="more than"):
        gen.network(2, 0, 1000.0)
