"""Simulation scenarios: TOML or JSON files describing a station, its demand and what goes wrong.

``load(name_or_path) -> Scenario`` reads a file (or a built-in scenario by name, see
``builtin_names()``) and validates every field; a problem raises ``ScenarioError`` whose
message names the file and the field path, e.g.
``highway.toml: demand.rate_per_hour[3]: must be >= 0 (got -2)``. The schema is in
docs/scenarios.md; the firmware's own station config is referenced by the scenario and
validated by ``firmware.core.config`` after the scenario's overrides are merged in.
"""

from __future__ import annotations

import copy
import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from firmware.core import config as fwconfig

BUILTIN_DIR = Path(__file__).resolve().parent / "scenarios"
DEFAULT_SCENARIO = "pss4-urban-day"
MODES = ("direct", "wire")
FAULT_KINDS = ("charger_dropout", "charger_stuck", "charger_pump", "bms_comm", "jammed_bolt", "thermal_event",
               "grid_outage", "smoke", "estop", "power_cut", "line_noise")
SLOT_FAULTS = ("charger_dropout", "charger_stuck", "charger_pump", "bms_comm", "thermal_event")
ONE_OFF_FAULTS = ("jammed_bolt", "thermal_event")  # no duration: they happen once
ESTOP_INPUTS = ("bay", "controller")  # the bay's e-stop chain (bay I/O module), the controller's own input
POWER_CUTS = ("kill", "torn_write")  # the controller loses power at once, or in the middle of a flash write
LINES = ("chargers", "bay_io")
# Faults that may wait for the bay to enter a swap step (``step``): they act inside the controller.
STEP_FAULTS = ("power_cut", "estop")

# What the simulator cannot run, and why: ``check_sim`` names the field. The HIL rig's own
# table is ``hil.scenario.ACTIONS``; tests hold both to FAULT_KINDS.
SIM_UNSUPPORTED = {
    "power_cut": "the simulator runs the firmware in process and never restarts it from its flash "
                 "(power cuts run on the HIL rig: swapstation hil)",
    "line_noise": "the simulator's lines deliver every frame intact, in direct and wire mode "
                  "(line noise runs on the HIL rig's paced lines: swapstation hil)",
}


class ScenarioError(ValueError):
    """A scenario that cannot be run; ``path`` is the field (dotted, with [i] for list items)."""

    def __init__(self, path: str, reason: str, source: str = "") -> None:
        self.path = path
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path}: {reason}" if path else f"{where}{reason}")


# --- value parsers -------------------------------------------------------------------------

# A run's independent random streams: child k of SeedSequence(seed) for name k. Append only:
# a new name at the end leaves every existing stream, and so every result, unchanged.
RANDOM_STREAMS = ("arrivals", "stock", "bay", "charge", "line")


def random_streams(seed: int) -> dict[str, np.random.SeedSequence]:
    """The run's random streams by name (:data:`RANDOM_STREAMS`), spawned from one
    ``SeedSequence(seed)``: no two draw alike, and seed s shares none with seed s + 1."""
    import numpy as np  # here, so that `sim --list` and `--help` do not load it

    return dict(zip(RANDOM_STREAMS, np.random.SeedSequence(seed).spawn(len(RANDOM_STREAMS)), strict=True))


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_CLOCK = re.compile(r"^(\d{1,3}):([0-5]\d)(?::([0-5]\d))?$")


def parse_duration(v: object) -> float:
    """Seconds from ``90`` (s), ``"1d"``, ``"2h30m"``, ``"144s"``, ``"250ms"`` or ``"14:30"`` (h:m[:s])."""
    if isinstance(v, bool):
        raise ValueError("expected a duration such as 90, \"30m\", \"1d\"")
    if isinstance(v, int | float):
        if not math.isfinite(v):
            raise ValueError("must be finite")
        return float(v)
    if not isinstance(v, str):
        raise ValueError("expected a duration such as 90, \"30m\", \"1d\"")
    s = v.strip().lower()
    # A sign is read (callers then say "must be positive", not "cannot read"); "90" is 90 s, as in a file.
    sign = -1.0 if s.startswith("-") else 1.0
    body = s[1:].lstrip() if sign < 0 else s
    if _NUMBER.match(body):
        return sign * float(body)
    m = _CLOCK.match(body)
    if m:
        return sign * (int(m.group(1)) * 3600.0 + int(m.group(2)) * 60.0 + int(m.group(3) or 0))
    pos, total = 0, 0.0
    for part in _DURATION_PART.finditer(body):
        if part.start() != pos:
            break
        total += float(part.group(1)) * _UNIT_S[part.group(2)]
        pos = part.end()
    if pos != len(body) or not body:
        raise ValueError(f"cannot read {v!r} as a duration (use e.g. 90, 144s, 30m, 1d, 1h30m, 14:00)")
    return sign * total


# --- schema machinery ------------------------------------------------------------------------


class _Reader:
    """Walks one table, checks types and bounds, and reports leftovers as unknown fields."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(path or "scenario", "expected a table")
        self.data: dict[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def table(self, key: str) -> _Reader:
        self.used.add(key)
        return _Reader(self.data.get(key, {}), self.sub(key))

    def num(self, key: str, default: float | None = None, lo: float | None = None, hi: float | None = None,
            positive: bool = False) -> float:
        return _number(self._get(key, default), self.sub(key), lo, hi, positive)

    def integer(self, key: str, default: int | None = None, lo: int | None = None,
                hi: int | None = None) -> int:
        v = self._get(key, default)
        p = self.sub(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ScenarioError(p, f"expected an integer (got {_show(v)})")
        _bounds(v, p, lo, hi, False)
        return v

    def text(self, key: str, default: str | None = None, choices: tuple[str, ...] | None = None) -> str:
        v = self._get(key, default)
        p = self.sub(key)
        if not isinstance(v, str):
            raise ScenarioError(p, f"expected a string (got {_show(v)})")
        if choices is not None and v not in choices:
            raise ScenarioError(p, f"must be one of {', '.join(choices)} (got {v!r})")
        return v

    def flag(self, key: str, default: bool) -> bool:
        v = self._get(key, default)
        if not isinstance(v, bool):
            raise ScenarioError(self.sub(key), f"expected true or false (got {_show(v)})")
        return v

    def duration(self, key: str, default: object = None, positive: bool = False) -> float:
        v = self._get(key, default)
        p = self.sub(key)
        try:
            s = parse_duration(v)
        except ValueError as e:
            raise ScenarioError(p, str(e)) from None
        _bounds(s, p, 0.0, None, positive)
        return s

    def num_range(self, key: str, default: tuple[float, float], lo: float, hi: float) -> tuple[float, float]:
        v = self._get(key, list(default))
        p = self.sub(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            x = _number(v, p, lo, hi, False)
            return (x, x)
        if not isinstance(v, list) or len(v) != 2:
            raise ScenarioError(p, f"expected [min, max] or a number (got {_show(v)})")
        a = _number(v[0], p + "[0]", lo, hi, False)
        b = _number(v[1], p + "[1]", lo, hi, False)
        if a > b:
            raise ScenarioError(p, f"min {a:g} is above max {b:g}")
        return (a, b)

    def list_of_tables(self, key: str) -> list[_Reader]:
        self.used.add(key)
        v = self.data.get(key, [])
        p = self.sub(key)
        if not isinstance(v, list):
            raise ScenarioError(p, f"expected a list of tables (got {_show(v)})")
        return [_Reader(item, f"{p}[{i}]") for i, item in enumerate(v)]

    def _get(self, key: str, default: object) -> Any:
        self.used.add(key)
        if key in self.data:
            return self.data[key]
        if default is None:
            raise ScenarioError(self.sub(key), "missing")
        return default

    def done(self) -> None:
        for key in self.data:
            if key not in self.used:
                raise ScenarioError(self.sub(str(key)), "unknown field")


def _show(v: object) -> str:
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return "a list"
    return repr(v)


def _bounds(v: float, path: str, lo: float | None, hi: float | None, positive: bool) -> None:
    if positive and not v > 0:
        raise ScenarioError(path, f"must be positive (got {v:g})")
    if lo is not None and v < lo:
        raise ScenarioError(path, f"must be >= {lo:g} (got {v:g})")
    if hi is not None and v > hi:
        raise ScenarioError(path, f"must be <= {hi:g} (got {v:g})")


def _number(v: object, path: str, lo: float | None, hi: float | None, positive: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ScenarioError(path, f"expected a number (got {_show(v)})")
    if not math.isfinite(v):
        raise ScenarioError(path, "must be finite")
    _bounds(float(v), path, lo, hi, positive)
    return float(v)


def _weights(r: _Reader, key: str, allowed: Mapping[str, object], what: str) -> dict[str, float]:
    """A table name -> weight (>= 0, not all zero), names checked against ``allowed``."""
    t = r.table(key)
    out: dict[str, float] = {}
    for name in t.data:
        if name not in allowed:
            raise ScenarioError(t.sub(name), f"unknown {what} {name!r} (known: {', '.join(sorted(allowed))})")
        out[name] = t.num(name, lo=0.0)
    if out and sum(out.values()) <= 0:
        raise ScenarioError(t.path, "weights must not all be zero")
    return out


# --- the scenario ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RackPacks:
    """``count`` packs of ``pack_type`` in the rack at the start, SoC uniform in ``soc`` (%)."""

    pack_type: str
    count: int
    soc: tuple[float, float]


@dataclass(frozen=True)
class Demand:
    rate_per_hour: tuple[float, ...]  # one value (constant) or 24 hourly values, repeated each day
    scale: float
    models: dict[str, float]  # vehicle model -> weight
    arrival_soc: tuple[float, float]  # % SoC range of the pack a vehicle brings (Beta(2, 5) inside)
    balk_from: int  # a driver who finds this many waiting may balk (0: nobody balks) ...
    balk_all: int  # ... and one who finds this many always does (linear in between)
    patience_s: float  # mean (exponential) patience while waiting; 0: waits for ever

    def rate_at(self, t_s: float) -> float:
        """Vehicles per second at virtual time ``t_s`` (seconds from midnight of day 0)."""
        r = self.rate_per_hour
        per_h = r[0] if len(r) == 1 else r[int(t_s // 3600.0) % 24]
        return per_h * self.scale / 3600.0

    @property
    def max_rate(self) -> float:
        return max(self.rate_per_hour) * self.scale / 3600.0


@dataclass(frozen=True)
class Fault:
    """Something that goes wrong at ``at_s`` for ``duration_s`` (0: for the rest of the run)."""

    kind: str
    at_s: float
    duration_s: float
    target: str  # slot id for charger/thermal faults, "" otherwise
    bolt: int  # for jammed_bolt
    step: str = ""  # power_cut, controller estop: at the bay's next entry into this swap step after at_s
    input: str = "bay"  # estop: which e-stop input opens (ESTOP_INPUTS)
    cut: str = "kill"  # power_cut: POWER_CUTS
    rate: float = 0.0  # line_noise: share of frames with a flipped bit, both directions
    line: str = "chargers"  # line_noise: which line
    where: str = ""  # its place in the file ("faults[2]"), for messages

    def describe(self) -> str:
        on = f" on {self.target}" if self.target else ""
        if self.kind == "line_noise":
            on = f" on the {self.line} line"
        when = f" in step {self.step} after {clock(self.at_s)}" if self.step else f" at {clock(self.at_s)}"
        return f"{self.kind}{on}{when}"


@dataclass(frozen=True)
class VehicleArrival:
    """A vehicle the scenario sends at ``at_s`` (``[[arrivals]]``), besides the demand's."""

    at_s: float
    model: str
    pack_type: str  # the pack it brings
    soc: float  # % SoC of that pack
    where: str = ""  # "arrivals[0]"


@dataclass(frozen=True)
class Queueing:
    """Queueing-validation mode: exponential charge work, zero-time swaps, patient vehicles."""

    chargers: int  # C: the firmware's grid limit is set to C chargers' power
    packs: int  # N: packs in the rack (the rest of the slots stay empty)
    mu_per_hour: float  # each charger finishes a pack at this exponential rate


@dataclass
class Scenario:
    name: str
    description: str
    source: str  # file it came from ("" when built in code)
    duration_s: float
    seed: int
    mode: str
    sample_period_s: float
    station: dict[str, Any]  # validated firmware config (after overrides)
    rack: list[RackPacks]
    demand: Demand
    swap_time_scale: float  # 1.0: mechanics calibrated to PSS 4.0 (144 s); 0: instantaneous
    ambient_c: float
    operator_response_s: float  # an operator confirms a latched stop this long after its cause is gone
    grid_capacity_kw: float  # the connection's physical limit (plant); the firmware's is limits.grid_kw
    outages: list[tuple[float, float]] = field(default_factory=list)  # (at_s, duration_s)
    faults: list[Fault] = field(default_factory=list)
    arrivals: list[VehicleArrival] = field(default_factory=list)  # one per vehicle, in time order
    queueing: Queueing | None = None
    currency: str = "CNY"  # of the config's time-of-use prices, for the reported cost
    config_warnings: list[str] = field(default_factory=list)  # the firmware validator's, on the station
    station_raw: dict[str, Any] = field(default_factory=dict)  # the config as merged, before validation

    @property
    def slot_ids(self) -> list[str]:
        return [s["id"] for s in self.station["slots"]]

    def price_at(self, t_s: float) -> float:
        """Energy price at virtual time ``t_s`` from the station's TOU bands (0 without bands)."""
        p = fwconfig.tou_price(self.station, int(t_s // 60.0) % 1440)
        return 0.0 if p is None else p


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


MAX_SLOTS = 64  # the firmware config's limit
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def _slot_list(slots: object, n: int, path: str) -> list[Any]:
    """The config's slot list cut or grown to ``n``. New slots copy the last one, with the id
    numbered on (S23 -> S24, same width) and the next free charger address."""
    if not isinstance(slots, list) or not slots or not all(isinstance(x, dict) for x in slots):
        raise ScenarioError(path, "the station config has no slot list to take slots from")
    out = [dict(x) for x in slots[:n]]
    if n <= len(slots):
        return out
    last = slots[-1]
    m = _NUMBERED.match(str(last.get("id", "")))
    units = [x["charger_unit"] for x in slots if isinstance(x.get("charger_unit"), int)]
    if m is None or not units:
        raise ScenarioError(path, f"cannot number slots after {last.get('id')!r}: list all {n} in "
                                  "[station.overrides] slots instead")
    prefix, digits = m.group(1), m.group(2)
    unit = max(units)
    for k in range(1, n - len(slots) + 1):
        new = dict(last)
        new["id"] = f"{prefix}{int(digits) + k:0{len(digits)}d}"
        new["charger_unit"] = unit + k
        out.append(new)
    return out


def _station(r: _Reader, base_dir: Path, warnings: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The validated station config, and the merged config it was validated from."""
    cfg_name = r.text("config", "") if r.has("config") else ""
    cfg_path = (base_dir / cfg_name) if cfg_name else Path(fwconfig.default_path())
    try:
        raw = json.loads(cfg_path.read_text())
    except OSError as e:
        raise ScenarioError(r.sub("config"), f"cannot read station config {cfg_path} ({e.strerror})") \
            from None
    except ValueError as e:
        raise ScenarioError(r.sub("config"), f"station config {cfg_path} is not valid JSON ({e})") from None
    over = r.raw("overrides")
    if over is not None:
        if not isinstance(over, dict):
            raise ScenarioError(r.sub("overrides"), "expected a table")
        raw = _deep_merge(raw, over)
    slots = r.raw("slots")
    if slots is not None:
        if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= MAX_SLOTS:
            raise ScenarioError(r.sub("slots"), f"expected an integer 1..{MAX_SLOTS} (got {_show(slots)}): "
                                                "fewer keeps the first slots of the config, more adds slots "
                                                "numbered on from its last")
        raw["slots"] = _slot_list(raw.get("slots"), slots, r.sub("slots"))
    r.done()
    def warn(path: str, reason: str) -> None:
        warnings.append(f"station ({cfg_path.name}) {path}: {reason}")

    try:
        return dict(fwconfig.validate(copy.deepcopy(raw), warn)), raw
    except fwconfig.ConfigError as e:
        raise ScenarioError(f"station ({cfg_path.name}) {e.path}", e.reason) from None


def _rack(r: _Reader, station: dict[str, Any]) -> list[RackPacks]:
    items = r.list_of_tables("packs")
    r.done()
    out = []
    for t in items:
        ptype = t.text("type")
        if ptype not in station["pack_types"]:
            known = ", ".join(sorted(station["pack_types"]))
            raise ScenarioError(t.sub("type"), f"unknown pack type {ptype!r} (known: {known})")
        out.append(RackPacks(ptype, t.integer("count", lo=0), t.num_range("soc", (100.0, 100.0), 0.0, 100.0)))
        t.done()
    total = sum(p.count for p in out)
    if total > len(station["slots"]):
        more = f"set [station] slots = {total + 1} for more" if total < MAX_SLOTS else f"{MAX_SLOTS} at most"
        n = len(station["slots"])
        raise ScenarioError(r.sub("packs"), f"{total} packs do not fit in {n} slots ({more})")
    return out


def _demand(r: _Reader, station: dict[str, Any], listed: bool) -> Demand:
    """``listed``: the scenario lists its own [[arrivals]]; the rate then defaults to 0."""
    rate = r.raw("rate_per_hour")
    p = r.sub("rate_per_hour")
    if rate is None:
        if not listed:
            raise ScenarioError(p, "missing (or list the vehicles in [[arrivals]])")
        rate = 0
    rates = rate if isinstance(rate, list) else [rate]
    if len(rates) not in (1, 24):
        raise ScenarioError(p, f"expected one number or 24 hourly numbers (got {len(rates)})")
    values = tuple(_number(v, f"{p}[{i}]" if isinstance(rate, list) else p, 0.0, None, False)
                   for i, v in enumerate(rates))
    models = _weights(r, "models", station["compatibility"], "vehicle model")
    if not models:
        models = {m: 1.0 for m in station["compatibility"]}
    d = Demand(
        rate_per_hour=values,
        scale=r.num("scale", 1.0, lo=0.0),
        models=models,
        arrival_soc=r.num_range("arrival_soc", (10.0, 40.0), 0.0, 100.0),
        balk_from=r.integer("balk_from", 0, lo=0),
        balk_all=r.integer("balk_all", 0, lo=0),
        patience_s=r.duration("patience", 0),
    )
    r.done()
    if d.balk_from and d.balk_all < d.balk_from:
        raise ScenarioError(r.sub("balk_all"), f"must be >= balk_from ({d.balk_from})")
    return d


def _faults(items: list[_Reader], station: dict[str, Any]) -> list[Fault]:
    slots = {s["id"] for s in station["slots"]}
    out = []
    for t in items:
        kind = t.text("kind", choices=FAULT_KINDS)
        target = ""
        if kind in SLOT_FAULTS:
            target = t.text("slot")
            if target not in slots:
                raise ScenarioError(t.sub("slot"), f"unknown slot {target!r}")
        bolt = t.integer("bolt", 0, lo=0, hi=15) if kind == "jammed_bolt" else 0
        default_len: object = 0 if kind in ONE_OFF_FAULTS else "10s" if kind in STEP_FAULTS else "10m"
        extra: dict[str, Any] = {}
        if kind in STEP_FAULTS and t.has("step"):
            extra["step"] = t.text("step", choices=fwconfig.SWAP_STEPS)
        if kind == "estop":
            extra["input"] = t.text("input", "bay", choices=ESTOP_INPUTS)
            if extra.get("step") and extra["input"] != "controller":
                raise ScenarioError(t.sub("step"), "an e-stop that waits for a swap step opens the "
                                                   "controller's own input: set input = \"controller\"")
        if kind == "power_cut":
            extra["cut"] = t.text("cut", "kill", choices=POWER_CUTS)
        if kind == "line_noise":
            extra["rate"] = t.num("rate", 0.01, lo=0.0, hi=1.0)
            extra["line"] = t.text("line", "chargers", choices=LINES)
        at = t.duration("at")
        dur = t.duration("duration", default_len, positive=kind == "power_cut")
        out.append(Fault(kind, at, dur, target, bolt, where=t.path, **extra))
        t.done()
    return sorted(out, key=lambda f: f.at_s)


def _arrivals(items: list[_Reader], station: dict[str, Any], demand: Demand) -> list[VehicleArrival]:
    out = []
    compat = station["compatibility"]
    for t in items:
        model = t.text("model", next(iter(demand.models)))
        if model not in compat:
            raise ScenarioError(t.sub("model"), f"unknown vehicle model {model!r} "
                                                f"(known: {', '.join(sorted(compat))})")
        ptype = t.text("pack", compat[model][0])
        if ptype not in compat[model]:
            raise ScenarioError(t.sub("pack"), f"{model} does not take a {ptype} pack "
                                               f"(it takes {', '.join(compat[model])})")
        at = t.duration("at")
        soc = t.num("soc", 20.0, lo=0.0, hi=100.0)
        count = t.integer("count", 1, lo=1, hi=1000)
        every = t.duration("every", 0)
        t.done()
        out += [VehicleArrival(at + k * every, model, ptype, soc, t.path) for k in range(count)]
    return sorted(out, key=lambda v: v.at_s)


def _queueing(r: _Reader, station: dict[str, Any]) -> Queueing:
    q = Queueing(
        chargers=r.integer("chargers", lo=1),
        packs=r.integer("packs", lo=1, hi=MAX_SLOTS - 1),
        mu_per_hour=r.num("mu_per_hour", positive=True),
    )
    r.done()
    n = len(station["slots"])
    if q.packs + 1 > n:
        raise ScenarioError(r.sub("packs"), f"{q.packs} packs need {q.packs + 1} slots (one free for the "
                                            f"returned pack), the station has {n}: set [station] slots = "
                                            f"{q.packs + 1}")
    if q.packs < q.chargers:
        raise ScenarioError(r.sub("packs"), f"must be >= chargers ({q.chargers})")
    return q


def from_dict(data: Mapping[str, Any], source: str = "", base_dir: Path | None = None) -> Scenario:
    """Validate a parsed scenario; ``base_dir`` resolves ``station.config``."""
    try:
        return _from_dict(dict(data), source, base_dir or BUILTIN_DIR)
    except ScenarioError as e:
        if e.source or not source:
            raise
        raise ScenarioError(e.path, e.reason, source) from None


def _from_dict(data: dict[str, Any], source: str, base_dir: Path) -> Scenario:
    top = _Reader(data, "")
    run = top.table("run")
    warnings: list[str] = []
    station, station_raw = _station(top.table("station"), base_dir, warnings)
    rack = _rack(top.table("rack"), station)
    listed = top.list_of_tables("arrivals")
    demand = _demand(top.table("demand"), station, bool(listed))
    mech = top.table("mechanics")
    oper = top.table("operator")
    grid = top.table("grid")
    outages = []
    for t in grid.list_of_tables("outages"):
        outages.append((t.duration("at"), t.duration("duration", positive=True)))
        t.done()
    qtable = top.table("queueing") if top.has("queueing") else None
    sc = Scenario(
        name=top.text("name", Path(source).stem if source else "scenario"),
        description=top.text("description", ""),
        source=source,
        duration_s=run.duration("duration", "1d", positive=True),
        seed=run.integer("seed", 1, lo=0, hi=2**63 - 1),
        mode=run.text("mode", "direct", choices=MODES),
        sample_period_s=run.duration("sample_period", "1m", positive=True),
        station=station,
        rack=rack,
        demand=demand,
        swap_time_scale=mech.num("swap_time_scale", 1.0, lo=0.0, hi=100.0),
        ambient_c=mech.num("ambient_c", 25.0, lo=-40.0, hi=60.0),
        operator_response_s=oper.duration("response", "3m"),
        grid_capacity_kw=grid.num("capacity_kw", station["limits"]["grid_kw"], positive=True),
        outages=outages,
        faults=_faults(top.list_of_tables("faults"), station),
        arrivals=_arrivals(listed, station, demand),
        queueing=_queueing(qtable, station) if qtable is not None else None,
        currency=grid.text("currency", "CNY"),
        config_warnings=warnings,
        station_raw=station_raw,
    )
    if not sc.currency.strip():
        raise ScenarioError("grid.currency", "must not be empty")
    for r in (run, mech, oper, grid, top):
        r.done()
    if sc.queueing is not None:
        _queueing_setup(sc, sc.queueing)
    if not sc.rack:
        raise ScenarioError("rack.packs", "no packs in the rack: nothing to swap")
    check_schedule(sc)
    return sc


def clock(t_s: float) -> str:
    """``t_s`` as the virtual time of day a scenario file uses: "14:30", "d2 07:05" after day 0."""
    m = int(t_s // 60)
    day, m = divmod(m, 1440)
    hm = f"{m // 60:02d}:{m % 60:02d}"
    return f"d{day} {hm}" if day else hm


def check_schedule(sc: Scenario) -> None:
    """Every outage and fault starts inside the run: one that never happens is a mistake (usually a
    run shortened with --duration), not something to drop silently. Raises ScenarioError naming it."""
    end = sc.duration_s
    span = f"the run ends at {clock(end)} (duration {end:g} s)"
    for i, (at_s, _) in enumerate(sc.outages):
        if at_s >= end:
            raise ScenarioError(f"grid.outages[{i}]",
                                f"the outage at {clock(at_s)} is outside the run: {span}", sc.source)
    for f in sc.faults:
        if f.at_s >= end:
            raise ScenarioError(f.where or "faults", f"{f.describe()} is outside the run: {span}", sc.source)
    for v in sc.arrivals:
        if v.at_s >= end:
            raise ScenarioError(v.where or "arrivals",
                                f"the vehicle at {clock(v.at_s)} is outside the run: {span}", sc.source)


def check_sim(sc: Scenario) -> None:
    """Raise ScenarioError naming the first fault (its kind or field) the simulator cannot run."""
    for f in sc.faults:
        why = SIM_UNSUPPORTED.get(f.kind)
        if why is not None:
            raise ScenarioError(f"{f.where}.kind" if f.where else "faults",
                                f"{f.kind} cannot run in the simulator: {why}", sc.source)
        if f.step:
            raise ScenarioError(f"{f.where}.step" if f.where else "faults",
                                f"{f.kind} waiting for swap step {f.step!r} cannot run in the simulator: "
                                "the step trigger acts inside the HIL target (give a time, at, instead)",
                                sc.source)


QUEUEING_SOC = 80.0  # % hand-over = full SoC in the queueing-validation mode


def _queueing_setup(sc: Scenario, q: Queueing) -> None:
    """The validation set-up (docs/scenarios.md): N full packs of one type in N + 1 slots
    (one free for the returned pack), grid limit = C chargers' power so dispatch charges at
    most C packs, no time-of-use slowdown, hand-over at full, patient vehicles of one model."""
    st = sc.station
    if q.packs + 1 > len(st["slots"]):
        raise ScenarioError("queueing.packs", f"needs {q.packs + 1} slots, the station has "
                                              f"{len(st['slots'])}")
    st["slots"] = st["slots"][: q.packs + 1]
    kw = {s["charger_kw"] for s in st["slots"]}
    if len(kw) != 1:
        raise ScenarioError("queueing", "the slots' chargers must all have the same power")
    st["limits"]["grid_kw"] = q.chargers * kw.pop()
    st["limits"]["handover_soc"] = st["limits"]["full_soc"] = QUEUEING_SOC
    st["tou"] = None
    model = next(iter(sc.demand.models))
    ptype = st["compatibility"][model][0]
    d = sc.demand
    sc.demand = Demand(d.rate_per_hour, d.scale, {model: 1.0}, d.arrival_soc, 0, 0, 0.0)
    sc.rack = [RackPacks(ptype, q.packs, (QUEUEING_SOC, QUEUEING_SOC))]
    sc.faults = []
    sc.outages = []
    sc.arrivals = []
    sc.swap_time_scale = 0.0


def _parse_text(text: str, source: str, suffix: str) -> dict[str, Any]:
    if suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ScenarioError("", f"invalid JSON ({e})", source) from None
        if not isinstance(data, dict):
            raise ScenarioError("", "the top level must be an object", source)
        return data
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError("", f"TOML syntax error ({e})", source) from None


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def resolve(name_or_path: str) -> Path:
    """A built-in scenario name or a file path -> the file; ScenarioError when neither exists."""
    p = Path(name_or_path)
    if p.suffix in (".toml", ".json") or p.exists() or "/" in name_or_path:
        if not p.is_file():
            raise ScenarioError("", f"no such scenario file: {name_or_path}")
        return p
    builtin = BUILTIN_DIR / f"{name_or_path}.toml"
    if builtin.is_file():
        return builtin
    raise ScenarioError("", f"no built-in scenario {name_or_path!r} and no such file "
                            f"(built-ins: {', '.join(builtin_names())})")


def read(name_or_path: str) -> tuple[dict[str, Any], str, Path]:
    """A scenario file or built-in, parsed but not validated: (data, file name, its folder)."""
    path = resolve(name_or_path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ScenarioError("", f"cannot read {path} ({e.strerror})") from None
    return _parse_text(text, path.name, path.suffix), path.name, path.parent


def load(name_or_path: str = DEFAULT_SCENARIO,
         edit: Callable[[dict[str, Any]], None] | None = None) -> Scenario:
    """Read and validate a scenario file or built-in; raises ScenarioError. ``edit`` may change
    the parsed data first (a command line's overrides), so they are validated as the file is."""
    data, source, base_dir = read(name_or_path)
    if edit is not None:
        try:
            edit(data)
        except ScenarioError as e:
            raise ScenarioError(e.path, e.reason, e.source or source) from None
    return from_dict(data, source, base_dir)


def describe(sc: Scenario) -> str:
    """One line for ``--list``; the default scenario says so."""
    mark = " (default)" if sc.name == DEFAULT_SCENARIO else ""
    return f"{sc.name + mark:<26} {sc.description}"

