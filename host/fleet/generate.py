"""Synthetic swap networks, written as network files (TOML or JSON).

The default is NIO's network at the end of 2024 (shared/domain-notes.md): 2,855 stations, 923
of them on highways, about 80,000 swaps a day. What the sources do not say is assumed, and
said here (and in docs/fleet.md):

- **Station classes.** Urban stations are PSS-2.0-like (13 packs, 630 kW grid), PSS-3.0-like
  (21 packs, 1 MW) or PSS-4.0-like (22 packs in 23 slots, 1 MW), 30 / 40 / 30 %; highway stations
  PSS-2.0-like or PSS-3.0-like, half each. Every slot has a 62.5 kW charger (PSS 3.0's module).
  Packs by type roughly follow the arrivals' mix: about 45 % 75 kWh, 45 % 100 kWh, 10 % 150 kWh.
- **Demand.** Each station's daily volume (vehicles a day) is lognormal (sigma 0.7): spread
  stations, a few busy ones; a highway station sees 0.75 of an urban one's on a weekday; no
  station above 400 a day (below the bay's 480). The volumes are then scaled so that the network
  total is ``swaps_per_day`` (80,000) to 0.1 %; the served swaps fall short of it by the
  vehicles turned away. Urban stations follow the commuter profile, highway ones the highway
  profile (host.fleet.network.BUILTIN_PROFILES).
- **Arrivals' packs.** The NIO fleet's mix (host.plant.vehicles.NIO_FLEET), every station alike.
- **Tariff.** One peak-valley time-of-use tariff for all (the plant-only runner's default).
- **Coordinates.** Urban stations scattered around 20 Chinese cities (weighted by size), highway
  stations along straight corridors between neighbouring cities: for the map, not geography.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from host.fleet.network import nio_pack_mix

NIO_STATIONS = 2855
NIO_HIGHWAY = 923
NIO_SWAPS_PER_DAY = 80_000.0
MAX_PER_STATION = 400.0
HIGHWAY_LEVEL = 0.75
SIGMA = 0.7

# (name, lat, lon, weight)
CITIES: tuple[tuple[str, float, float, float], ...] = (
    ("Shanghai", 31.23, 121.47, 10), ("Beijing", 39.90, 116.41, 9), ("Shenzhen", 22.54, 114.06, 7),
    ("Guangzhou", 23.13, 113.26, 7), ("Hangzhou", 30.27, 120.16, 6), ("Chengdu", 30.57, 104.07, 5),
    ("Suzhou", 31.30, 120.59, 4), ("Nanjing", 32.06, 118.80, 4), ("Wuhan", 30.59, 114.31, 4),
    ("Chongqing", 29.56, 106.55, 3), ("Xi'an", 34.34, 108.94, 3), ("Tianjin", 39.34, 117.36, 3),
    ("Hefei", 31.82, 117.23, 3), ("Changsha", 28.23, 112.94, 2), ("Zhengzhou", 34.75, 113.63, 2),
    ("Xiamen", 24.48, 118.09, 2), ("Qingdao", 36.07, 120.38, 2), ("Ningbo", 29.87, 121.54, 2),
    ("Jinan", 36.65, 117.12, 1), ("Shenyang", 41.81, 123.43, 1),
)

PSS2 = {"packs": {"NIO-75": 6, "NIO-100": 6, "NIO-150": 1}, "grid_kw": 630.0}
PSS3 = {"packs": {"NIO-75": 10, "NIO-100": 9, "NIO-150": 2}, "grid_kw": 1000.0}
PSS4 = {"packs": {"NIO-75": 10, "NIO-100": 9, "NIO-150": 3}, "grid_kw": 1000.0}
CLASSES: dict[str, dict[str, Any]] = {
    "urban-pss2": {**PSS2, "profile": "commuter"},
    "urban-pss3": {**PSS3, "profile": "commuter"},
    "urban-pss4": {**PSS4, "profile": "commuter"},
    "highway-pss2": {**PSS2, "profile": "highway"},
    "highway-pss3": {**PSS3, "profile": "highway"},
}
URBAN_SHARES = {"urban-pss2": 0.3, "urban-pss3": 0.4, "urban-pss4": 0.3}
HIGHWAY_SHARES = {"highway-pss2": 0.5, "highway-pss3": 0.5}


def _volumes(rng: np.random.Generator, level: np.ndarray, total: float) -> np.ndarray:
    """Lognormal volumes around ``level``, capped, scaled to ``total`` (re-capped until it holds)."""
    v = level * rng.lognormal(-0.5 * SIGMA * SIGMA, SIGMA, len(level))
    if total > MAX_PER_STATION * len(level):
        raise ValueError(f"{total:g} a day is more than {len(level)} stations' {MAX_PER_STATION:g} each")
    for _ in range(100):
        v = np.minimum(v * total / v.sum(), MAX_PER_STATION)
        if abs(v.sum() - total) <= 1e-9 * total:
            break
    return np.round(v, 1)


def _pick(rng: np.random.Generator, shares: dict[str, float], n: int) -> list[str]:
    names = list(shares)
    counts = [round(shares[k] * n) for k in names]
    counts[-1] = n - sum(counts[:-1])
    out = [k for k, c in zip(names, counts, strict=True) for _ in range(c)]
    return [out[i] for i in rng.permutation(n)]


def network(stations: int = NIO_STATIONS, highway: int = NIO_HIGHWAY,
            swaps_per_day: float = NIO_SWAPS_PER_DAY, seed: int = 2024, name: str = "") -> dict[str, Any]:
    """A network file's structure (see host.fleet.network): ``stations`` stations of which
    ``highway`` on highways, arrivals adding up to ``swaps_per_day``."""
    if stations < 1 or not 0 <= highway <= stations:
        raise ValueError("need at least one station, and 0 <= highway <= stations")
    rng = np.random.Generator(np.random.PCG64(seed))
    urban = stations - highway
    level = np.concatenate([np.ones(urban), np.full(highway, HIGHWAY_LEVEL)])
    volumes = _volumes(rng, level, swaps_per_day)
    classes = _pick(rng, URBAN_SHARES, urban) + _pick(rng, HIGHWAY_SHARES, highway)
    lat = np.array([c[1] for c in CITIES])
    lon = np.array([c[2] for c in CITIES])
    w = np.array([c[3] for c in CITIES], dtype=float)
    w /= w.sum()
    out: list[dict[str, Any]] = []
    for i in range(stations):
        k = int(rng.choice(len(CITIES), p=w))
        if i < urban:
            sid = f"U{i + 1:04d}"
            y, x = lat[k] + 0.12 * rng.standard_normal(), lon[k] + 0.12 * rng.standard_normal()
        else:
            sid = f"H{i - urban + 1:04d}"
            d = np.hypot(lat - lat[k], lon - lon[k])
            j = int(rng.choice(np.argsort(d)[1:4]))  # one of the three nearest cities
            f = rng.uniform(0.1, 0.9)
            y = lat[k] + f * (lat[j] - lat[k]) + 0.03 * rng.standard_normal()
            x = lon[k] + f * (lon[j] - lon[k]) + 0.03 * rng.standard_normal()
        out.append({"id": sid, "class": classes[i], "swaps_per_day": float(volumes[i]),
                    "lat": round(float(y), 4), "lon": round(float(x), 4)})
    mix = nio_pack_mix()
    return {
        "name": name or ("nio-scale" if (stations, highway) == (NIO_STATIONS, NIO_HIGHWAY) else "synthetic"),
        "description": (f"synthetic: {stations} stations ({highway} highway), {swaps_per_day:g} vehicles "
                        f"a day, generator seed {seed} (assumptions: docs/fleet.md)"),
        "currency": "CNY",
        "run": {"duration": "1d", "seed": 1},
        "classes": {k: {**v, "pack_mix": mix} for k, v in CLASSES.items()},
        "stations": out,
    }


# --- writing -------------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("TOML here takes finite numbers only")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string for the ASCII text written here
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def to_toml(data: dict[str, Any]) -> str:
    """The network structure as TOML: top-level fields and one station per line first (TOML
    wants them before any table), then [run], [tariffs.*], [profiles.*], [classes.*]."""
    tables = ("run", "tariffs", "profiles", "classes")
    lines = [f"# {data.get('description', '')}".rstrip(),
             "# Schema: docs/fleet.md. Station classes follow the list.", ""]
    for k, v in data.items():
        if k not in tables and k != "stations":
            lines.append(f"{k} = {_toml_value(v)}")
    lines.append("stations = [")
    lines += [f"  {_toml_value(s)}," for s in data.get("stations", [])]
    lines.append("]")
    for k in tables:
        v = data.get(k)
        if not v:
            continue
        if k == "run":
            lines += ["", "[run]"] + [f"{kk} = {_toml_value(x)}" for kk, x in v.items()]
            continue
        for name, table in v.items():
            lines += ["", f"[{k}.{json.dumps(name)}]"]
            lines += [f"{kk} = {_toml_value(x)}" for kk, x in table.items()]
    return "\n".join(lines) + "\n"


def write(data: dict[str, Any], path: Path) -> None:
    """Write ``data`` as TOML or JSON, by the file's suffix."""
    if path.suffix == ".json":
        path.write_text(json.dumps(data, indent=1) + "\n")
    elif path.suffix == ".toml":
        path.write_text(to_toml(data))
    else:
        raise ValueError(f"{path}: write a .toml or .json network file")
