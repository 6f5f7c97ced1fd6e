"""``swapstation sweep SWEEP.toml``: a grid over a station's parameters, with replications,
and the sizing answer (docs/fleet.md, "Sizing sweeps").

A sweep file names a base station (a ``[base]`` table: one station of a network file), the
values of each swept parameter (``[grid]``), the replications of each cell, and a service
target. Every cell x replication is one station on the plant-only path, run like a network
(serially or on Dask), each with its own child of one ``SeedSequence``.

Parameters: ``packs`` (the rack's packs, shared over the base's pack types in its
proportions), ``chargers`` (rack slots, default: packs + the base's spare slots),
``charger_kw``, ``grid_kw``, ``demand_scale`` (times the base's ``swaps_per_day``) and
``mix_share`` (the share of arriving vehicles of the ``partner`` pack type, whose packs are
then stocked in the same share). The first four are design: what a planner buys, smaller
is cheaper in that order. The last two are the demand the design must meet: the sizing
answer is given for each of their combinations.

The sizing answer is the smallest design whose 95 % interval for the target KPI lies at or
below the target (the upper bound: a design that meets it only on average is not enough).

``model = "theory"`` runs the validation model of ``host.sim.queueing`` instead (Poisson
arrivals, exponential charging of mean ``[theory] charge``, zero swap time), whose closed
form (``swap_wait_probability``) the sizing answer must then agree with.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from host.fleet import network as nw
from host.sim import queueing
from host.sim.kpi import WAITED_S, percentile
from host.sim.scenario import ScenarioError, _Reader

AXES = ("packs", "chargers", "charger_kw", "grid_kw", "demand_scale", "mix_share")
DESIGN = ("packs", "chargers", "charger_kw", "grid_kw")  # cheaper first, in this order
TARGETS = {"wait_probability": "P(wait)", "p95_wait_s": "p95 wait, s"}
MODELS = ("plant", "theory")
LEVEL = 0.95
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class SweepError(nw.NetworkError):
    """A sweep file that cannot be run; the message names the file and the field."""


@dataclass(frozen=True)
class Sweep:
    name: str
    source: str
    duration_s: float
    seed: int
    replications: int
    model: str
    target: tuple[str, float]  # (KPI, highest acceptable value)
    base: nw.StationSpec
    axes: dict[str, tuple[float, ...]]  # swept parameter -> its values, in the file's order
    partner: str | None = None
    charge_s: float = 3600.0  # theory: mean charging time

    def cells(self) -> list[dict[str, float]]:
        """Every combination of the axes' values, the first axis slowest."""
        names = list(self.axes)
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*self.axes.values())]


def _values(r: _Reader, name: str, integer: bool, lo: float, hi: float | None = None) -> tuple[float, ...]:
    raw = r.raw(name)
    path = r.sub(name)
    if not isinstance(raw, list) or not raw:
        raise ScenarioError(path, "expected a non-empty list of values")
    out = []
    for i, v in enumerate(raw):
        bad = isinstance(v, bool) or not isinstance(v, int | float) or (integer and not isinstance(v, int))
        if bad or not math.isfinite(v) or v < lo or (hi is not None and v > hi):
            want = "a whole number" if integer else "a number"
            bound = f" from {lo:g}" + (f" to {hi:g}" if hi is not None else "")
            raise ScenarioError(f"{path}[{i}]", f"expected {want}{bound} (got {v!r})")
        out.append(v)
    if len(set(out)) != len(out):
        raise ScenarioError(path, "a value is listed twice")
    return tuple(out)


def from_dict(data: dict[str, Any], source: str = "") -> Sweep:
    try:
        return _from_dict(data, source)
    except nw.NetworkError as e:
        raise SweepError(e.path.replace("stations[0]", "base"), e.reason, source) from None
    except ScenarioError as e:
        raise SweepError(e.path, e.reason, source) from None


def _from_dict(data: dict[str, Any], source: str) -> Sweep:
    top = _Reader(data, "")
    if "base" not in data:
        raise ScenarioError("base", "missing: the station the sweep varies (a station of a network file)")
    run = top.table("run")
    duration = run.duration("duration", "1d", positive=True)
    seed = run.integer("seed", 1, lo=0)
    reps = run.integer("replications", 5, lo=2, hi=1000)
    model = top.text("model", "plant")
    if model not in MODELS:
        raise ScenarioError("model", f"one of {', '.join(MODELS)} (got {model!r})")
    base_net = nw.from_dict({"run": {"duration": duration, "seed": seed}, "stations": [data["base"]]})
    top.used.add("base")
    base = base_net.stations[0]
    t = top.table("target")
    given = [k for k in TARGETS if t.has(k)]
    if len(given) != 1:
        raise ScenarioError("target", f"one of {', '.join(TARGETS)}, e.g. wait_probability = 0.05")
    if given[0] == "wait_probability":
        target = ("wait_probability", t.num("wait_probability", lo=0.0, hi=1.0))
    else:
        target = ("p95_wait_s", t.duration("p95_wait_s", None, positive=True))
    t.done()
    g = top.table("grid")
    axes: dict[str, tuple[float, ...]] = {}
    for name in AXES:
        if not g.has(name):
            continue
        if name in ("packs", "chargers"):
            axes[name] = _values(g, name, True, 1, nw.MAX_SLOTS)
        elif name == "mix_share":
            axes[name] = _values(g, name, False, 0.0, 1.0)
        else:
            axes[name] = _values(g, name, False, 1e-3)
        g.used.add(name)
    g.done()
    if not axes:
        raise ScenarioError("grid", f"no parameter to sweep: give one or more of {', '.join(AXES)}")
    partner = top.text("partner", "") or None
    if "mix_share" in axes and partner is None:
        raise ScenarioError("partner", "mix_share needs the partner pack type it is the share of")
    if partner is not None and partner not in nw.PACK_TYPE_NAMES:
        raise ScenarioError("partner", f"unknown pack type {partner!r}; "
                                       f"one of {', '.join(nw.PACK_TYPE_NAMES)}")
    th = top.table("theory")
    charge_s = th.duration("charge", "1h", positive=True)
    th.done()
    if model == "theory":
        for name in ("charger_kw", "grid_kw", "mix_share"):
            if name in axes:
                raise ScenarioError(f"grid.{name}", "has no part in the theory model (exponential "
                                                    "charging of mean [theory] charge, no grid cap, one "
                                                    "pack type)")
        if target[0] != "wait_probability":
            raise ScenarioError("target", "the theory model's closed form is P(wait): use wait_probability")
    sweep = Sweep(top.text("name", "sweep"), source, duration, seed, reps, model, target, base, axes,
                  partner, charge_s)
    for cell in sweep.cells():
        spec = station_for(sweep, cell, 0)
        if model == "plant" and spec.chargers < spec.n_packs + 1:
            raise ScenarioError("grid.chargers", f"{spec.chargers} slots cannot hold {spec.n_packs} packs "
                                                 f"and the one a vehicle brings (cell {cell})")
        if model == "theory" and spec.chargers > spec.n_packs:
            raise ScenarioError("grid.chargers", f"{spec.chargers} chargers for {spec.n_packs} packs: in the "
                                                 f"theory model a charger charges one of the station's packs "
                                                 f"(cell {cell})")
    run.done()
    top.done()
    return sweep


def load(path: str | Path) -> Sweep:
    p = Path(path)
    if p.suffix not in (".toml", ".json"):
        raise SweepError("", f"{p}: a sweep file is .toml or .json")
    try:
        text = p.read_text()
        data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except OSError as e:
        raise SweepError("", f"cannot read it ({e.strerror})", str(p)) from None
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise SweepError("", f"not valid {p.suffix[1:].upper()}: {e}", str(p)) from None
    if not isinstance(data, dict):
        raise SweepError("", "expected a table at the top", str(p))
    return from_dict(data, str(p))


def _share(total: int, weights: Sequence[tuple[str, float]]) -> tuple[tuple[str, int], ...]:
    """``total`` packs over pack types in proportion to ``weights`` (largest remainder)."""
    wsum = sum(w for _, w in weights)
    exact = [(name, total * w / wsum) for name, w in weights]
    counts = {name: int(x) for name, x in exact}
    left = total - sum(counts.values())
    for name, _ in sorted(exact, key=lambda e: e[1] - int(e[1]), reverse=True)[:left]:
        counts[name] += 1
    order = {name: i for i, name in enumerate(nw.PACK_TYPE_NAMES)}
    return tuple(sorted(((n, c) for n, c in counts.items() if c > 0), key=lambda e: order[e[0]]))


def station_for(sweep: Sweep, cell: dict[str, float], index: int) -> nw.StationSpec:
    """The base station with ``cell``'s values."""
    b = sweep.base
    spare = b.chargers - b.n_packs
    mix = b.pack_mix
    if "mix_share" in cell and sweep.partner is not None:
        s = cell["mix_share"]
        others = [(n, w) for n, w in mix if n != sweep.partner]
        osum = sum(w for _, w in others) or 1.0
        mix = tuple([(n, (1 - s) * w / osum) for n, w in others] + [(sweep.partner, s)])
        mix = tuple((n, w) for n, w in mix if w > 0)
    packs = int(cell.get("packs", b.n_packs))
    stock = _share(packs, mix if "mix_share" in cell else tuple((n, float(c)) for n, c in b.packs))
    # Unswept, a plant's rack keeps the base's spare slots; the theory's chargers stay the base's.
    chargers = cell.get("chargers", min(b.chargers, packs) if sweep.model == "theory" else packs + spare)
    return replace(
        b, index=index, id=f"{b.id}-{index}", packs=stock,
        chargers=int(chargers),
        charger_kw=float(cell.get("charger_kw", b.charger_kw)),
        grid_kw=float(cell.get("grid_kw", b.grid_kw)),
        swaps_per_day=b.swaps_per_day * float(cell.get("demand_scale", 1.0)),
        pack_mix=mix,
    )


# --- running -------------------------------------------------------------------------------------

@dataclass
class Replication:
    arrived: int
    served: int
    turned_away: int
    waits_s: list[float]
    grid_kwh: float = 0.0

    @property
    def wait_probability(self) -> float:
        return sum(1 for w in self.waits_s if w >= WAITED_S) / self.served if self.served else math.nan

    @property
    def p95_wait_s(self) -> float:
        return percentile(self.waits_s, 95)


def _theory(sweep: Sweep, cell: dict[str, float], seed: np.random.SeedSequence) -> Replication:
    spec = station_for(sweep, cell, 0)
    lam = spec.swaps_per_day / 86400.0
    vehicles = max(1, int(lam * sweep.duration_s))
    waits = queueing.simulate_swap_queue(spec.chargers, spec.n_packs, lam, 1.0 / sweep.charge_s, vehicles,
                                         int(seed.generate_state(1)[0]), warmup=vehicles // 10)
    return Replication(len(waits), len(waits), 0, waits)


def replications(sweep: Sweep, backend: str = "serial", workers: int | None = None,
                 progress: Callable[[int], None] | None = None) -> list[list[Replication]]:
    """[cell][replication] results, cells in ``sweep.cells()`` order."""
    cells = sweep.cells()
    reps = sweep.replications
    if sweep.model == "theory":
        seeds = np.random.SeedSequence(sweep.seed).spawn(len(cells) * reps)
        out = []
        for k, cell in enumerate(cells):
            out.append([_theory(sweep, cell, seeds[k * reps + r]) for r in range(reps)])
            if progress is not None:
                progress(reps)
        return out
    from host.fleet import runner

    specs = [station_for(sweep, cell, k * reps + r) for k, cell in enumerate(cells) for r in range(reps)]
    net = nw.Network(sweep.name, "", sweep.source, sweep.duration_s, sweep.seed, "CNY", specs, len(specs))
    res = runner.run_network(net, backend=backend, workers=workers,
                             progress=(lambda r: progress(1)) if progress else None)
    if res.partial:
        raise KeyboardInterrupt
    by = {r.index: r for r in res.results}
    return [[_plant_rep(by[k * reps + r]) for r in range(reps)] for k in range(len(cells))]


def _plant_rep(r: Any) -> Replication:
    k = r.kpi
    return Replication(k.arrivals, k.swaps, k.balked + k.reneged + k.failed, list(k.waits_s), k.grid_kwh)


# --- results -------------------------------------------------------------------------------------

def _interval(values: Sequence[float]) -> dict[str, float]:
    vals = [v for v in values if math.isfinite(v)]
    if len(vals) < 2:
        m = vals[0] if vals else math.nan
        return {"mean": m, "low": math.nan, "high": math.nan}
    iv = queueing.t_interval(vals, LEVEL)
    return {"mean": iv.mean, "low": iv.low, "high": iv.high}


def cell_rows(sweep: Sweep, reps: list[list[Replication]]) -> list[dict[str, Any]]:
    rows = []
    for cell, rs in zip(sweep.cells(), reps, strict=True):
        spec = station_for(sweep, cell, 0)
        row: dict[str, Any] = {"packs": spec.n_packs, "chargers": spec.chargers,
                               "charger_kw": spec.charger_kw, "grid_kw": spec.grid_kw,
                               "swaps_per_day": spec.swaps_per_day,
                               "demand_scale": cell.get("demand_scale", 1.0),
                               "mix_share": cell.get("mix_share", math.nan)}
        for kpi in ("wait_probability", "p95_wait_s"):
            iv = _interval([getattr(r, kpi) for r in rs])
            row.update({kpi: iv["mean"], f"{kpi}_low": iv["low"], f"{kpi}_high": iv["high"]})
        away = [r.turned_away / r.arrived if r.arrived else 0.0 for r in rs]
        row["turned_away_share"] = _interval(away)["mean"]
        row["grid_kwh_per_day"] = _interval([r.grid_kwh * 86400.0 / sweep.duration_s for r in rs])["mean"]
        if sweep.model == "theory":
            lam = spec.swaps_per_day / 86400.0
            row["closed_form_wait_probability"] = queueing.swap_wait_probability(
                spec.chargers, spec.n_packs, lam, 1.0 / sweep.charge_s) if spec.n_packs >= 1 else math.nan
        rows.append(row)
    return rows


def _design(row: dict[str, Any]) -> tuple[float, ...]:
    return tuple(row[k] for k in DESIGN)


def sizing(sweep: Sweep, rows: Sequence[dict[str, Any]],
           key: str | None = None) -> list[dict[str, Any]]:
    """For each demand (demand_scale, mix_share), the smallest design meeting the target.

    ``key``: the column judged (default the target's upper bound; the theory's closed form
    gives the closed-form answer)."""
    kpi, limit = sweep.target
    col = key or f"{kpi}_high"
    demands: dict[tuple[float, float], list[dict[str, Any]]] = {}
    for row in rows:
        demands.setdefault((row["demand_scale"], row["mix_share"]), []).append(row)
    out = []
    for (scale, share), group in demands.items():
        ok = [r for r in group if math.isfinite(r[col]) and r[col] <= limit]
        best = min(ok, key=_design) if ok else None
        out.append({"demand_scale": scale, "mix_share": None if math.isnan(share) else share,
                    "design": {k: best[k] for k in DESIGN} if best else None,
                    "value": (best[kpi] if key is None else best[key]) if best else None})
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.3g}"
    return str(v)


def table(sweep: Sweep, rows: Sequence[dict[str, Any]]) -> str:
    kpi, _ = sweep.target
    cols = [c for c in ("packs", "chargers", "charger_kw", "grid_kw", "demand_scale", "mix_share")
            if c in sweep.axes] + [kpi, f"{kpi}_low", f"{kpi}_high"]
    if sweep.model == "theory":
        cols.append("closed_form_wait_probability")
    cells = [[_fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(x.rjust(w) for x, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines)


def plot(sweep: Sweep, rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """The trade-off: the target KPI against the first design axis, a line per other cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kpi, limit = sweep.target
    xname = next((a for a in DESIGN if a in sweep.axes), next(iter(sweep.axes)))
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple((k, r[k]) for k in sweep.axes if k != xname), []).append(r)
    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: r[xname])
        xs = [r[xname] for r in rs]
        ys = [r[kpi] for r in rs]
        err = [[max(0.0, r[kpi] - r[f"{kpi}_low"]) if math.isfinite(r[f"{kpi}_low"]) else 0.0 for r in rs],
               [max(0.0, r[f"{kpi}_high"] - r[kpi]) if math.isfinite(r[f"{kpi}_high"]) else 0.0 for r in rs]]
        name = ", ".join(f"{k} {_fmt(v)}" for k, v in label) or sweep.name
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=name)
    ax.axhline(limit, color="black", linestyle="--", linewidth=0.9, label=f"target {limit:g}")
    ax.set_xlabel(xname)
    ax.set_ylabel(f"{TARGETS[kpi]} (mean, {LEVEL:.0%} interval)")
    ax.set_title(f"{sweep.name}: {sweep.replications} replications of {sweep.duration_s / 3600:g} h per cell")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# --- the command ---------------------------------------------------------------------------------

def register(subparsers: Any) -> None:
    p = subparsers.add_parser("sweep", help="size a station: a grid over its parameters, with replications",
                              description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("file", type=Path, help="sweep file (.toml/.json; docs/fleet.md)")
    p.add_argument("--workers", type=int, default=None, help="Dask workers (default: every core)")
    p.add_argument("--serial", action="store_true", help="run in this process, without Dask")
    p.add_argument("--out", type=Path, default=None,
                   help="write cells.csv, sizing.json and tradeoff.png here")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=run)


def _progress(total: int, quiet: bool) -> Iterator[Callable[[int], None]]:
    from tqdm import tqdm

    bar = tqdm(total=total, unit="run", disable=quiet, file=sys.stderr)

    def step(n: int) -> None:
        bar.update(n)

    try:
        yield step
    finally:
        bar.close()


def run(args: argparse.Namespace) -> int:
    import contextlib

    try:
        sweep = load(args.file)
    except SweepError as e:
        print(f"swapstation sweep: {e}", file=sys.stderr)
        return EXIT_USAGE
    n = len(sweep.cells()) * sweep.replications
    if not args.quiet:
        print(f"{sweep.name}: {len(sweep.cells())} cells x {sweep.replications} replications = {n} runs of "
              f"{sweep.duration_s / 3600:g} h ({sweep.model} model)", file=sys.stderr)
    try:
        with contextlib.contextmanager(_progress)(n, args.quiet) as bar:
            reps = replications(sweep, "serial" if args.serial else "local", args.workers, bar)
    except KeyboardInterrupt:
        print("swapstation sweep: interrupted; no answer from part of a grid", file=sys.stderr)
        return 130
    rows = cell_rows(sweep, reps)
    answers = sizing(sweep, rows)
    kpi, limit = sweep.target
    print(table(sweep, rows))
    print(f"\nsizing: the smallest design with {TARGETS[kpi]} <= {limit:g} at the {LEVEL:.0%} upper bound")
    for a in answers:
        demand = f"demand x{_fmt(a['demand_scale'])}" + (f", mix {_fmt(a['mix_share'])}" if a["mix_share"]
                                                         is not None else "")
        what = ", ".join(f"{k} {_fmt(v)}" for k, v in a["design"].items()) if a["design"] else \
            "none of the grid's designs"
        print(f"  {demand}: {what}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        import csv

        with open(args.out / "cells.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        doc: dict[str, Any] = {"sweep": sweep.name, "model": sweep.model, "target": {kpi: limit},
                               "level": LEVEL, "replications": sweep.replications, "sizing": answers}
        if sweep.model == "theory":
            doc["closed_form_sizing"] = sizing(sweep, rows, "closed_form_wait_probability")
        (args.out / "sizing.json").write_text(json.dumps(doc, indent=1) + "\n")
        plot(sweep, rows, args.out / "tradeoff.png")
    return EXIT_OK
