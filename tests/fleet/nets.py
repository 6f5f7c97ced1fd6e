"""Small network files for the fleet tests."""

from pathlib import Path

TINY = """\
name = "tiny"
description = "three stations, two classes"

[run]
duration = "4h"
seed = 5

[tariffs.two-rate]
bands = [ { from = "00:00", to = "08:00", price = 0.3 }, { from = "08:00", to = "24:00", price = 0.9 } ]

[profiles.busy]
hourly = [1, 1, 1, 1, 1, 1, 2, 3, 3, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 2, 2, 1, 1, 1]

[classes.urban]
packs = { "NIO-75" = 6, "NIO-100" = 6, "NIO-150" = 1 }
grid_kw = 630
swaps_per_day = 120
profile = "busy"

[classes.highway]
packs = { "NIO-75" = 4, "NIO-100" = 4 }
chargers = 10
charger_kw = 40
grid_kw = 400
swaps_per_day = 60
tariff = "two-rate"
profile = "highway"
pack_mix = { "NIO-75" = 1, "NIO-100" = 1 }
patience = "10m"

[[stations]]
id = "U1"
class = "urban"
lat = 31.2
lon = 121.5

[[stations]]
id = "U2"
class = "urban"
swaps_per_day = 200
lat = 31.3
lon = 121.4

[[stations]]
id = "H1"
class = "highway"
"""


def write(tmp_path: Path, text: str = TINY, name: str = "net.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p
