"""Network files: the stations of a swap network, as TOML or JSON, validated field by field.

``load(path) -> Network`` reads a file; ``from_dict(data, source)`` validates the parsed
structure. A problem raises :class:`NetworkError` whose message names the file and the field,
e.g. ``net.toml: stations[12].packs.NIO-75: must be >= 0 (got -1)``; a bad value a station
takes from its class names the class's field and the station. The schema is in docs/fleet.md.

A station is described by its own fields on top of its class's (``[classes.NAME]``, a
template: urban, highway ...): packs by type, chargers (rack slots, each with its own
charger) and their power, grid cap and tariff, a demand profile and daily volume, the
pack-type mix of the arriving vehicles, patience and balking, optional coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from host.plant.grid import TouBand
from host.plant.params import PACK_TYPE_NAMES, PACK_TYPES
from host.plant.standalone import DEFAULT_TOU
from host.plant.vehicles import DEFAULT_DAILY_SHAPE, NIO_FLEET, hourly_rates

# The scenario files' reader: the same type checks, bounds and unknown-field errors.
from host.sim.scenario import MAX_SLOTS, ScenarioError, _parse_text, _Reader, _show, _weights


class NetworkError(ScenarioError):
    """A network file that cannot be run; ``path`` names the field."""


# Relative arrivals per hour of the day. "commuter": the simulator's default (morning and evening
# peaks); "highway": travel through the day, a late-morning and a late-afternoon peak, quiet nights.
BUILTIN_PROFILES: dict[str, tuple[float, ...]] = {
    "commuter": DEFAULT_DAILY_SHAPE,
    "highway": (0.4, 0.3, 0.2, 0.2, 0.3, 0.5, 0.9, 1.4, 1.9, 2.3, 2.6, 2.6,
                2.4, 2.3, 2.4, 2.6, 2.6, 2.3, 1.9, 1.5, 1.2, 0.9, 0.7, 0.5),
    "flat": (1.0,) * 24,
}
BUILTIN_TARIFFS: dict[str, tuple[TouBand, ...]] = {"peak-valley": DEFAULT_TOU, "free": ()}


def nio_pack_mix() -> dict[str, float]:
    """Pack types of the NIO fleet's arrivals (host.plant.vehicles.NIO_FLEET), rounded to 0.001."""
    mix: dict[str, float] = {}
    for m in NIO_FLEET:
        for name, share in m.packs.items():
            mix[name] = mix.get(name, 0.0) + m.weight * share
    total = sum(mix.values())
    return {k: round(v / total, 3) for k, v in mix.items()}


DEFAULTS: dict[str, Any] = {
    "charger_kw": 62.5,  # PSS 3.0's module (shared/domain-notes.md)
    "tariff": "peak-valley",
    "profile": "commuter",
    "patience": 1200.0,
    "balk_from": 3,
    "balk_all": 8,
}
STATION_FIELDS = ("packs", "chargers", "charger_kw", "grid_kw", "tariff", "profile", "swaps_per_day",
                  "pack_mix", "patience", "balk_from", "balk_all")
REQUIRED = ("packs", "grid_kw", "swaps_per_day")


@dataclass(frozen=True)
class StationSpec:
    """One station, everything resolved (class fields, named tariff and profile, defaults)."""

    index: int  # position in the file: the station's seed is child ``index`` of the run's SeedSequence
    id: str
    station_class: str  # "" without a class
    packs: tuple[tuple[str, int], ...]  # (pack type, count), in host.plant.params order, counts > 0
    chargers: int  # rack slots, each with its charger (>= packs + 1)
    charger_kw: float
    grid_kw: float
    tariff_name: str  # "" when given inline
    tariff: tuple[TouBand, ...]
    profile_name: str  # "" when given inline
    profile: tuple[float, ...]  # 24 relative hourly values
    swaps_per_day: float  # vehicles arriving per day
    pack_mix: tuple[tuple[str, float], ...]  # pack type of the arriving vehicles -> weight
    patience_s: float  # mean; inf: waits for ever
    balk_from: int
    balk_all: int
    lat: float | None = None
    lon: float | None = None

    @property
    def n_packs(self) -> int:
        return sum(n for _, n in self.packs)

    @property
    def rack(self) -> tuple[str, ...]:
        return tuple(name for name, n in self.packs for _ in range(n))

    def rates_per_hour(self) -> list[float]:
        return hourly_rates(self.swaps_per_day, self.profile)


@dataclass(frozen=True)
class PackSettings:
    """The ``[packs]`` table: pack tracking across the network (host.fleet.packs, docs/fleet.md)."""

    retire_soh: float = 0.8  # a pack below this state of health is due for retirement
    initial_efc: tuple[float, float] = (0.0, 0.0)  # age at the start: full-equivalent cycles, uniform
    revisit_days: float = 3.0  # mean days between a vehicle's swaps: the packs out in vehicles
    same_station: float = 0.5  # share of vehicles whose next swap is at the station they left
    nearby: float = 0.4  # ... at one of the nearby_stations nearest (the rest: anywhere, by demand)
    nearby_stations: int = 5


def _pack_settings(r: _Reader) -> PackSettings:
    d = PackSettings()
    s = PackSettings(
        retire_soh=r.num("retire_soh", d.retire_soh, lo=0.0, hi=1.0),
        initial_efc=r.num_range("initial_efc", d.initial_efc, 0.0, 20_000.0),
        revisit_days=r.num("revisit_days", d.revisit_days, lo=0.1, hi=365.0),
        same_station=r.num("same_station", d.same_station, lo=0.0, hi=1.0),
        nearby=r.num("nearby", d.nearby, lo=0.0, hi=1.0),
        nearby_stations=r.integer("nearby_stations", d.nearby_stations, lo=1, hi=1000),
    )
    if s.same_station + s.nearby > 1.0:
        raise NetworkError(r.sub("nearby"), f"same_station + nearby must be <= 1 "
                                            f"(got {s.same_station:g} + {s.nearby:g})")
    r.done()
    return s


@dataclass
class Network:
    name: str
    description: str
    source: str
    duration_s: float
    seed: int
    currency: str
    stations: list[StationSpec]
    stations_in_file: int = 0  # more than len(stations) when a sample of them is run
    packs: PackSettings = PackSettings()  # the [packs] table: used when packs are tracked

    @property
    def swaps_per_day(self) -> float:
        return math.fsum(s.swaps_per_day for s in self.stations)


# --- fields ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Value:
    value: Any
    path: str  # where it was written


def _bands(v: object, path: str) -> tuple[TouBand, ...]:
    if not isinstance(v, list):
        raise NetworkError(path, f"expected a list of {{ from, to, price }} tables (got {_show(v)})")
    out = []
    for i, item in enumerate(v):
        r = _Reader(item, f"{path}[{i}]")
        start, end = r.duration("from"), r.duration("to")
        for key, s in (("from", start), ("to", end)):
            if s % 60.0 or s > 86400.0:
                raise NetworkError(r.sub(key), f"expected a whole minute of the day, 00:00 to 24:00 "
                                               f"(got {s:g} s)")
        if end <= start:
            raise NetworkError(r.sub("to"), "must be after from")
        out.append(TouBand(int(start // 60), int(end // 60), r.num("price", lo=0.0)))
        r.done()
    out.sort(key=lambda b: b.start_min)
    for a, b in zip(out, out[1:], strict=False):
        if b.start_min < a.end_min:
            raise NetworkError(path, f"bands overlap at minute {b.start_min} of the day")
    return tuple(out)


def _profile_values(v: object, path: str) -> tuple[float, ...]:
    if not isinstance(v, list) or len(v) != 24:
        raise NetworkError(path, f"expected 24 hourly values (got {_show(v)}"
                                 f"{f' of {len(v)}' if isinstance(v, list) else ''})")
    r = _Reader({str(i): x for i, x in enumerate(v)}, path)
    vals = tuple(r.num(str(i), lo=0.0) for i in range(24))
    if not sum(vals) > 0:
        raise NetworkError(path, "the hourly values must not all be zero")
    return vals


def _named(r: _Reader, key: str, known: Mapping[str, Any], what: str) -> None:
    v = r.data[key]
    if isinstance(v, str) and v not in known:
        raise NetworkError(r.sub(key), f"unknown {what} {v!r} (known: {', '.join(sorted(known))})")


def _fields(r: _Reader, tariffs: Mapping[str, tuple[TouBand, ...]],
            profiles: Mapping[str, tuple[float, ...]]) -> dict[str, _Value]:
    """The station fields present in table ``r``, parsed (cross-field checks come later)."""
    out: dict[str, _Value] = {}
    for key in STATION_FIELDS:
        if not r.has(key):
            continue
        p = r.sub(key)
        v: Any
        if key == "packs":
            t = r.table(key)
            counts = {}
            for name in t.data:
                if name not in PACK_TYPES:
                    raise NetworkError(t.sub(name), f"unknown pack type {name!r} "
                                                    f"(known: {', '.join(PACK_TYPE_NAMES)})")
                counts[name] = t.integer(name, lo=0, hi=MAX_SLOTS)
            if sum(counts.values()) < 1:
                raise NetworkError(p, "no packs: nothing to swap")
            v = tuple((name, counts[name]) for name in PACK_TYPE_NAMES if counts.get(name))
        elif key == "chargers":
            v = r.integer(key, lo=2, hi=MAX_SLOTS)
        elif key == "charger_kw":
            v = r.num(key, positive=True, hi=500.0)
        elif key == "grid_kw":
            v = r.num(key, positive=True, hi=100_000.0)
        elif key == "swaps_per_day":
            v = r.num(key, lo=0.0, hi=10_000.0)
        elif key == "pack_mix":
            v = _weights(r, key, PACK_TYPES, "pack type")
            if not v:
                raise NetworkError(p, "no pack types")
        elif key == "patience":
            s = r.duration(key)
            v = s if s > 0 else math.inf
        elif key in ("balk_from", "balk_all"):
            v = r.integer(key, lo=1, hi=1000)
        elif key == "tariff":
            raw = r.raw(key)
            if isinstance(raw, str):
                _named(r, key, tariffs, "tariff")
                v = (raw, tariffs[raw])
            else:
                v = ("", _bands(raw, p))
        else:  # profile
            raw = r.raw(key)
            if isinstance(raw, str):
                _named(r, key, profiles, "profile")
                v = (raw, profiles[raw])
            else:
                v = ("", _profile_values(raw, p))
        out[key] = _Value(v, p)
    return out


def _station(i: int, r: _Reader, classes: Mapping[str, dict[str, _Value]],
             tariffs: Mapping[str, tuple[TouBand, ...]],
             profiles: Mapping[str, tuple[float, ...]]) -> StationSpec:
    sid = r.text("id")
    if not sid.strip():
        raise NetworkError(r.sub("id"), "must not be empty")
    cls = r.text("class") if r.has("class") else ""
    if cls and cls not in classes:
        known = ", ".join(sorted(classes)) or "none defined"
        raise NetworkError(r.sub("class"), f"unknown class {cls!r} (known: {known})")
    own = _fields(r, tariffs, profiles)
    coords = [r.num(k, lo=-lim, hi=lim) if r.has(k) else None for k, lim in (("lat", 90.0), ("lon", 180.0))]
    r.done()
    if (coords[0] is None) != (coords[1] is None):
        missing = "lon" if coords[1] is None else "lat"
        raise NetworkError(r.sub(missing), "missing (coordinates need both lat and lon)")
    f = {**(classes[cls] if cls else {}), **own}
    where = f"stations[{i}] ({sid})"

    def fail(key: str, reason: str) -> NetworkError:
        p = f[key].path
        return NetworkError(p, reason if p.startswith("stations[") else f"{reason}, in {where}")

    for key in REQUIRED:
        if key not in f:
            why = f"neither the station nor its class {cls!r} sets it" if cls else \
                "the station does not set it and has no class"
            raise NetworkError(r.sub(key), f"missing: {why}")

    def get(key: str) -> Any:
        return f[key].value if key in f else DEFAULTS[key]

    packs: tuple[tuple[str, int], ...] = f["packs"].value
    n_packs = sum(n for _, n in packs)
    if "chargers" in f:
        chargers = int(f["chargers"].value)
        if chargers < n_packs + 1:
            raise fail("chargers", f"{n_packs} packs need at least {n_packs + 1} chargers: one slot takes "
                                   f"the returned pack (got {chargers})")
    else:
        chargers = n_packs + 1
        if chargers > MAX_SLOTS:
            raise fail("packs", f"{n_packs} packs need {chargers} slots, more than {MAX_SLOTS}")
    if "pack_mix" in f:
        mix: dict[str, float] = f["pack_mix"].value
    else:
        mix = nio_pack_mix()
    stocked = {name for name, _ in packs}
    for name, w in mix.items():
        if w > 0 and name not in stocked:
            why = (f"vehicles bring {name} packs but the station stocks none "
                   f"(packs: {', '.join(sorted(stocked))})")
            if "pack_mix" in f:
                raise fail("pack_mix", why)
            raise fail("packs", why + "; with the default NIO pack mix, set pack_mix")
    balk_from, balk_all = int(get("balk_from")), int(get("balk_all"))
    if balk_all < balk_from:
        key = "balk_all" if "balk_all" in f else "balk_from"
        raise fail(key, f"balk_all ({balk_all}) must be >= balk_from ({balk_from})")
    tariff_name, tariff = f["tariff"].value if "tariff" in f else (
        DEFAULTS["tariff"], tariffs[DEFAULTS["tariff"]])
    profile_name, profile = f["profile"].value if "profile" in f else (
        DEFAULTS["profile"], profiles[DEFAULTS["profile"]])
    return StationSpec(
        index=i, id=sid, station_class=cls, packs=packs, chargers=chargers,
        charger_kw=float(get("charger_kw")), grid_kw=float(f["grid_kw"].value),
        tariff_name=tariff_name, tariff=tariff, profile_name=profile_name, profile=profile,
        swaps_per_day=float(f["swaps_per_day"].value),
        pack_mix=tuple((name, float(w)) for name, w in mix.items()),
        patience_s=float(get("patience")), balk_from=balk_from, balk_all=balk_all,
        lat=coords[0], lon=coords[1],
    )


def _named_tables(top: _Reader, key: str, field: str, parse: Any) -> dict[str, Any]:
    """``[key.NAME]`` tables of one required ``field``, each parsed by ``parse(value, path)``."""
    t = top.table(key)
    out = {}
    for name in t.data:
        r = _Reader(t.data[name], t.sub(str(name)))
        if not r.has(field):
            raise NetworkError(r.sub(field), "missing")
        out[str(name)] = parse(r.raw(field), r.sub(field))
        r.done()
        t.used.add(name)
    return out


def from_dict(data: dict[str, Any], source: str = "") -> Network:
    """Validate a parsed network file; raises NetworkError naming the field (and ``source``)."""
    try:
        return _from_dict(data)
    except ScenarioError as e:
        raise NetworkError(e.path, e.reason, source) from None


def _from_dict(data: dict[str, Any]) -> Network:
    top = _Reader(data, "")
    run = top.table("run")
    tariffs = {**BUILTIN_TARIFFS, **_named_tables(top, "tariffs", "bands", _bands)}
    profiles = {**BUILTIN_PROFILES, **_named_tables(top, "profiles", "hourly", _profile_values)}
    classes: dict[str, dict[str, _Value]] = {}
    ct = top.table("classes")
    for name in ct.data:
        r = _Reader(ct.data[name], ct.sub(str(name)))
        classes[str(name)] = _fields(r, tariffs, profiles)
        r.done()
        ct.used.add(name)
    if "stations" not in data:
        raise NetworkError("stations", "missing: a network needs at least one station")
    items = top.list_of_tables("stations")
    if not items:
        raise NetworkError("stations", "empty: a network needs at least one station")
    stations: list[StationSpec] = []
    seen: dict[str, int] = {}
    for i, r in enumerate(items):
        st = _station(i, r, classes, tariffs, profiles)
        if st.id in seen:
            raise NetworkError(r.sub("id"), f"{st.id!r} is also the id of stations[{seen[st.id]}]")
        seen[st.id] = i
        stations.append(st)
    net = Network(
        name=top.text("name", "network"),
        description=top.text("description", ""),
        source="",
        duration_s=run.duration("duration", "1d", positive=True),
        seed=run.integer("seed", 1, lo=0),
        currency=top.text("currency", "CNY"),
        stations=stations,
        stations_in_file=len(stations),
        packs=_pack_settings(top.table("packs")),
    )
    run.done()
    top.done()
    return net


def load(path: str | Path) -> Network:
    """Read and validate a network file (.toml or .json); raises NetworkError."""
    p = Path(path)
    if p.suffix not in (".toml", ".json"):
        raise NetworkError("", f"{p}: a network file is .toml or .json")
    try:
        text = p.read_text()
    except OSError as e:
        raise NetworkError("", f"cannot read {p} ({e.strerror})") from None
    try:
        data = _parse_text(text, p.name, p.suffix)
    except ScenarioError as e:
        raise NetworkError(e.path, e.reason, p.name) from None
    net = from_dict(data, p.name)
    net.source = str(p)
    if not data.get("name"):
        net.name = p.stem
    return net
