"""Network files: classes as templates, defaults, and errors that name the field."""

import json
import math
import tomllib

import pytest

from host.fleet import network as nw
from host.plant.standalone import DEFAULT_TOU
from tests.fleet import nets


def test_stations_take_their_class_then_their_own_fields(tmp_path):
    net = nw.load(nets.write(tmp_path))
    assert (net.name, net.duration_s, net.seed, net.currency) == ("tiny", 4 * 3600.0, 5, "CNY")
    u1, u2, h1 = net.stations
    assert [s.index for s in net.stations] == [0, 1, 2]
    assert u1.packs == (("NIO-75", 6), ("NIO-100", 6), ("NIO-150", 1)) and u1.n_packs == 13
    assert u1.chargers == 14  # default: one slot more than packs
    assert (u1.charger_kw, u1.grid_kw, u1.swaps_per_day) == (62.5, 630.0, 120.0)
    assert u1.tariff_name == "peak-valley" and u1.tariff == DEFAULT_TOU
    assert u1.profile_name == "busy" and len(u1.profile) == 24
    assert dict(u1.pack_mix) == nw.nio_pack_mix()
    assert (u1.patience_s, u1.balk_from, u1.balk_all) == (1200.0, 3, 8)
    assert (u1.lat, u1.lon) == (31.2, 121.5)
    assert u2.swaps_per_day == 200.0  # its own value over the class's
    assert math.fsum(u2.rates_per_hour()) == pytest.approx(200.0)
    assert (h1.chargers, h1.charger_kw, h1.patience_s, h1.lat) == (10, 40.0, 600.0, None)
    assert h1.tariff_name == "two-rate" and [b.price for b in h1.tariff] == [0.3, 0.9]
    assert h1.rack == ("NIO-75",) * 4 + ("NIO-100",) * 4
    assert net.swaps_per_day == 380.0


def test_json_with_the_same_structure_is_the_same_network(tmp_path):
    data = tomllib.loads(nets.TINY)
    j = nets.write(tmp_path, json.dumps(data), "net.json")
    assert nw.load(j).stations == nw.load(nets.write(tmp_path)).stations


def test_patience_zero_waits_for_ever(tmp_path):
    net = nw.load(nets.write(tmp_path, nets.TINY.replace('patience = "10m"', "patience = 0")))
    assert net.stations[2].patience_s == math.inf


BAD = [
    # (replace, with, message)
    ('"NIO-150" = 1 }', '"NIO-150" = 1, "NIO-80" = 2 }',
     "classes.urban.packs.NIO-80: unknown pack type 'NIO-80'"),
    ('"NIO-75" = 6,', '"NIO-75" = -1,', "classes.urban.packs.NIO-75: must be >= 0 (got -1)"),
    ('class = "highway"\n', 'class = "suburb"\n',
     "stations[2].class: unknown class 'suburb' (known: highway, urban)"),
    ("swaps_per_day = 60\n", "",
     "stations[2].swaps_per_day: missing: neither the station nor its class 'highway' sets it"),
    ('id = "U2"\nclass = "urban"\n', 'id = "U2"\nclass = "urban"\nchargers = 13\n',
     "stations[1].chargers: 13 packs need at least 14 chargers: one slot takes the returned pack"),
    ("chargers = 10\n", "chargers = 8\n",
     "classes.highway.chargers: 8 packs need at least 9 chargers: one slot takes the returned pack (got 8), "
     "in stations[2] (H1)"),
    ('pack_mix = { "NIO-75" = 1, "NIO-100" = 1 }', 'pack_mix = { "NIO-75" = 1, "STD-A-60" = 1 }',
     "classes.highway.pack_mix: vehicles bring STD-A-60 packs but the station stocks none"),
    ('pack_mix = { "NIO-75" = 1, "NIO-100" = 1 }\n', "",
     "classes.highway.packs: vehicles bring NIO-150 packs but the station stocks none "
     "(packs: NIO-100, NIO-75); with the default NIO pack mix, set pack_mix, in stations[2] (H1)"),
    ("hourly = [1, 1, 1, ", "hourly = [1, 1, ",
     "profiles.busy.hourly: expected 24 hourly values (got a list of 23)"),
    ('{ from = "08:00", to = "24:00"', '{ from = "07:00", to = "24:00"',
     "tariffs.two-rate.bands: bands overlap"),
    ('to = "08:00", price = 0.3', 'to = "08:00", price = -0.3',
     "tariffs.two-rate.bands[0].price: must be >= 0"),
    ('tariff = "two-rate"', 'tariff = "night"', "classes.highway.tariff: unknown tariff 'night'"),
    ("grid_kw = 400", "grid_kW = 400", "classes.highway.grid_kW: unknown field"),
    ('id = "U2"', 'id = "U1"', "stations[1].id: 'U1' is also the id of stations[0]"),
    ("lat = 31.2\nlon = 121.5\n", "lat = 31.2\n",
     "stations[0].lon: missing (coordinates need both lat and lon)"),
    ("lat = 31.3", "lat = 131.3", "stations[1].lat: must be <= 90 (got 131.3)"),
    ('duration = "4h"', 'duration = "-4h"', "run.duration: must be positive"),
    ('duration = "4h"', 'duration = "soon"', "run.duration: cannot read 'soon' as a duration"),
    ("swaps_per_day = 200", 'swaps_per_day = "lots"',
     "stations[1].swaps_per_day: expected a number (got 'lots')"),
    ("patience = \"10m\"", "patience = \"10m\"\nbalk_from = 5\nbalk_all = 4",
     "classes.highway.balk_all: balk_all (4) must be >= balk_from (5)"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD, ids=[m.split(":")[0] for *_, m in BAD])
def test_a_bad_network_file_names_the_file_and_the_field(tmp_path, old, new, message):
    assert old in nets.TINY
    with pytest.raises(nw.NetworkError) as e:
        nw.load(nets.write(tmp_path, nets.TINY.replace(old, new, 1), "bad.toml"))
    assert str(e.value).startswith("bad.toml: ")
    assert message in str(e.value)


@pytest.mark.parametrize(("text", "message"), [
    ('name = "x"\n', "stations: missing: a network needs at least one station"),
    ("stations = []\n", "stations: empty"),
    ('stations = [ { id = "A", packs = { "NIO-75" = 2 }, swaps_per_day = 10, '
     'pack_mix = { "NIO-75" = 1 } } ]\n',
     "stations[0].grid_kw: missing: the station does not set it and has no class"),
    ('stations = [ { id = "A", packs = { "NIO-75" = 0 }, grid_kw = 100, swaps_per_day = 1 } ]\n',
     "stations[0].packs: no packs: nothing to swap"),
    ("stations = [ 1 ]\n", "stations[0]: expected a table"),
    ("stations = [\n", "TOML syntax error"),
])
def test_structural_errors(tmp_path, text, message):
    with pytest.raises(nw.NetworkError) as e:
        nw.load(nets.write(tmp_path, text, "bad.toml"))
    assert message in str(e.value)


def test_other_files_are_refused(tmp_path):
    with pytest.raises(nw.NetworkError, match="a network file is .toml or .json"):
        nw.load(nets.write(tmp_path, nets.TINY, "net.yaml"))
    with pytest.raises(nw.NetworkError, match="cannot read"):
        nw.load(tmp_path / "none.toml")
