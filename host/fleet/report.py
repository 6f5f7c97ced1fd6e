"""Network KPIs of a fleet run: summary, per-station table (Parquet or CSV), plots, terminal table.

Every network figure is summed or sorted in station order, so it does not depend on the
order the stations finished in (serial, or any number of Dask workers).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from host.fleet.network import StationSpec
from host.fleet.runner import METER_PERIOD_S, FleetResult, StationResult
from host.sim.kpi import WAITED_S, histogram, percentile
from host.sim.report import json_safe, span, write_summary

SUMMARY_FILE = "summary.json"
RUN_FILE = "run.json"
TABLE_STEM = "stations"
TABLE_FORMATS = ("parquet", "csv")
PLOT_FILES = ("stations_ranked.png", "p_wait.png", "map.png", "network_load.png")
# With tracked packs (--packs): the ledger at the end, the stock against each station's target,
# the rebalancing moves, the SoH histogram.
PACK_TABLES = ("packs", "pack_stock", "pack_moves")
SOH_PLOT = "soh.png"
SOH_PERCENTILES = (1, 5, 50, 95)
WAIT_EDGES_S = (0.0, WAITED_S, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)

# The per-station table: column name -> type ("str", "int", "float"), in order.
COLUMNS: dict[str, str] = {
    "index": "int", "id": "str", "class": "str", "lat": "float", "lon": "float",
    "packs": "int", "chargers": "int", "charger_kw": "float", "grid_kw": "float", "demand_per_day": "float",
    "arrived": "int", "swaps": "int", "balked": "int", "reneged": "int", "failed": "int",
    "turned_away": "int", "served_share": "float", "wait_probability": "float", "mean_wait_s": "float",
    "p95_wait_s": "float", "max_wait_s": "float", "grid_kwh": "float", "cost": "float", "peak_kw": "float",
    "handover_soc_mean": "float",
}


PACK_COLUMNS: dict[str, dict[str, str]] = {
    "packs": {"id": "int", "type": "str", "station": "str", "in_vehicle": "int", "efc": "float",
              "soh": "float", "throughput_kwh": "float", "swaps": "int", "due": "int"},
    "pack_stock": {"station": "str", "type": "str", "stock": "int", "in_service": "int", "target": "int",
                   "imbalance": "int", "short_after_moves": "int"},
    "pack_moves": {"type": "str", "from": "str", "to": "str", "packs": "int", "km": "float"},
}


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def station_row(spec: StationSpec, r: StationResult) -> dict[str, Any]:
    k = r.kpi
    waits = k.waits_s
    nan = math.nan
    return {
        "index": spec.index, "id": spec.id, "class": spec.station_class,
        "lat": spec.lat if spec.lat is not None else nan, "lon": spec.lon if spec.lon is not None else nan,
        "packs": spec.n_packs, "chargers": spec.chargers, "charger_kw": spec.charger_kw,
        "grid_kw": spec.grid_kw, "demand_per_day": spec.swaps_per_day,
        "arrived": k.arrivals, "swaps": k.swaps, "balked": k.balked, "reneged": k.reneged, "failed": k.failed,
        "turned_away": k.balked + k.reneged + k.failed,
        "served_share": _ratio(k.swaps, k.arrivals),
        "wait_probability": _ratio(k.waited, len(waits)),
        "mean_wait_s": _ratio(math.fsum(waits), len(waits)),
        "p95_wait_s": percentile(waits, 95), "max_wait_s": max(waits, default=nan),
        "grid_kwh": k.grid_kwh, "cost": k.cost, "peak_kw": r.peak_kw,
        "handover_soc_mean": _ratio(k.handover_soc, k.swaps),
    }


def rows(result: FleetResult) -> list[dict[str, Any]]:
    specs = result.network.stations
    by_index = {s.index: s for s in specs}
    return [station_row(by_index[r.index], r) for r in result.results]


def _wait_stats(waits: Sequence[float]) -> dict[str, Any]:
    out: dict[str, Any] = {"count": len(waits), "mean": _ratio(math.fsum(waits), len(waits))}
    for q in (50, 90, 95, 99):
        out[f"p{q}"] = percentile(waits, q)
    out["max"] = max(waits, default=math.nan)
    out["histogram"] = histogram(waits, WAIT_EDGES_S)
    return out


def network_load_kw(result: FleetResult) -> list[float]:
    """The network's demand per meter period (kW), the stations' meters added in station order."""
    n = max((len(r.kpi.interval_kwh) for r in result.results), default=0)
    total = [0.0] * n
    for r in result.results:
        for i, e in enumerate(r.kpi.interval_kwh):
            total[i] += e
    return [e * 3600.0 / METER_PERIOD_S for e in total]


def summary(result: FleetResult, table: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The network KPIs (the ``summary.json`` of a fleet report); deterministic for a seed."""
    net = result.network
    rs = result.results
    table = rows(result) if table is None else table
    arrived = sum(r.kpi.arrivals for r in rs)
    swaps = sum(r.kpi.swaps for r in rs)
    balked, reneged, failed = (sum(getattr(r.kpi, k) for r in rs) for k in ("balked", "reneged", "failed"))
    waits = [w for r in rs for w in r.kpi.waits_s]
    waited = sum(r.kpi.waited for r in rs)
    kwh = math.fsum(r.kpi.grid_kwh for r in rs)
    cost = math.fsum(r.kpi.cost for r in rs)
    load = network_load_kw(result)
    peak = max(load, default=0.0)
    days = result.duration_s / 86400.0
    classes: dict[str, dict[str, Any]] = {}
    for row in table:
        c = classes.setdefault(row["class"] or "-", {"stations": 0, "arrived": 0, "swaps": 0,
                                                     "turned_away": 0, "_waited": 0, "_served": 0})
        c["stations"] += 1
        for key in ("arrived", "swaps", "turned_away"):
            c[key] += row[key]
    for r, row in zip(rs, table, strict=True):
        c = classes[row["class"] or "-"]
        c["_waited"] += r.kpi.waited
        c["_served"] += len(r.kpi.waits_s)
    for c in classes.values():
        c["wait_probability"] = _ratio(c.pop("_waited"), c.pop("_served"))
    p_waits = [row["wait_probability"] for row in table if not math.isnan(row["wait_probability"])]
    return {
        "network": net.name,
        "stations": max(net.stations_in_file, len(net.stations)),
        "stations_run": len(rs),
        "duration_s": result.duration_s,
        "seed": result.seed,
        "partial": result.partial,
        "swaps": swaps,
        "swaps_per_day": swaps / days if days else math.nan,
        "vehicles": {"arrived": arrived, "served": swaps, "balked": balked, "reneged": reneged,
                     "failed": failed, "turned_away": balked + reneged + failed,
                     "waiting_at_end": arrived - swaps - balked - reneged - failed},
        "served_share": _ratio(swaps, arrived),
        "wait_probability": _ratio(waited, len(waits)),
        "wait_s": _wait_stats(waits),
        "station_wait_probability": {"p50": percentile(p_waits, 50), "p90": percentile(p_waits, 90),
                                     "max": max(p_waits, default=math.nan)},
        "energy": {
            "grid_kwh": kwh, "cost": cost, "currency": net.currency, "mean_price": _ratio(cost, kwh),
            "peak_kw": peak,  # the highest 15-minute mean of the whole network (coincident)
            "peak_at_s": load.index(peak) * METER_PERIOD_S if load else math.nan,
            "sum_of_station_peaks_kw": math.fsum(row["peak_kw"] for row in table),
        },
        "by_class": dict(sorted(classes.items())),
        **({"packs": pack_report(result)[0]} if result.ledger is not None else {}),
    }


# --- tracked packs ---------------------------------------------------------------------------------


def pack_report(result: FleetResult) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """With tracked packs: the ``packs`` part of the summary, and the tables of PACK_TABLES."""
    from host.fleet.packs import PACK_TYPE_NAMES, rebalance

    led = result.ledger
    assert led is not None
    ids = [s.id for s in led.specs]
    th = led.settings.retire_soh
    due = led.soh < th
    healthy, target, moves, short = rebalance(led)
    stock = led.stock()
    ledger_rows = [
        {"id": int(p), "type": PACK_TYPE_NAMES[t], "station": ids[st], "in_vehicle": int(v), "efc": float(e),
         "soh": float(h), "throughput_kwh": float(k), "swaps": int(n), "due": int(d)}
        for p, t, st, v, e, h, k, n, d in zip(range(led.n), led.type, led.station, led.in_vehicle, led.efc,
                                                led.soh, led.throughput_kwh, led.swaps, due, strict=True)]
    stock_rows = [
        {"station": ids[i], "type": name, "stock": int(stock[i, k]), "in_service": int(healthy[i, k]),
         "target": int(target[i, k]), "imbalance": int(healthy[i, k] - target[i, k]),
         "short_after_moves": int(short[i, k])}
        for i in range(len(ids)) for k, name in enumerate(PACK_TYPE_NAMES) if stock[i, k] or target[i, k]]
    move_rows = [{"type": m.type_name, "from": ids[m.src], "to": ids[m.dst], "packs": m.count, "km": m.km}
                 for m in moves]
    soh = led.soh.tolist()
    by_type = {}
    for k, name in enumerate(PACK_TYPE_NAMES):
        sel = led.type == k
        if sel.any():
            by_type[name] = {"packs": int(sel.sum()), "in_racks": int((sel & ~led.in_vehicle).sum()),
                             "due": int((sel & due).sum()), "short_after_moves": int(short[:, k].sum())}
    summary_ = {
        "days": result.epochs_done,
        "total": led.n,
        "in_racks": int((~led.in_vehicle).sum()),
        "in_vehicles": int(led.in_vehicle.sum()),
        "conserved": True,  # Ledger.step raises otherwise
        "borrowed": led.borrowed,
        "soh": {**{f"p{q}": percentile(soh, q) for q in SOH_PERCENTILES}, "min": min(soh, default=math.nan),
                "mean": math.fsum(soh) / len(soh) if soh else math.nan},
        "efc_mean": float(led.efc.mean()) if led.n else math.nan,
        "throughput_mwh": math.fsum(led.throughput_kwh.tolist()) / 1000.0,
        "retire_soh": th,
        "due_for_retirement": int(due.sum()),
        "imbalanced_stations": int((healthy != target).any(axis=1).sum()),
        "moves": len(moves),
        "packs_to_move": sum(m.count for m in moves),
        "move_km": math.fsum(m.count * m.km for m in moves) if led.geo.has_coords else math.nan,
        "new_packs_needed": int(short.sum()),
        "by_type": by_type,
    }
    return summary_, {"packs": ledger_rows, "pack_stock": stock_rows, "pack_moves": move_rows}


def write_soh_plot(led_soh: Sequence[float], retire_soh: float, s: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.hist([100 * x for x in led_soh], bins=50, color="tab:purple", alpha=0.8)
    ax.axvline(100 * retire_soh, color="tab:red", linestyle="--",
               label=f"retirement ({100 * retire_soh:g} %)")
    ax.set_xlabel("state of health (%)")
    ax.set_ylabel("packs")
    ax.legend()
    ax.set_title(_title(s, "Packs by state of health"), fontsize=9)
    fig.tight_layout()
    fig.savefig(out / SOH_PLOT, dpi=110)
    plt.close(fig)
    return out / SOH_PLOT


# --- the per-station table -----------------------------------------------------------------


def write_table(table: Sequence[dict[str, Any]], path: Path, columns: dict[str, str] | None = None) -> None:
    """Parquet (pyarrow) or CSV, by the suffix; the columns of ``columns`` (default COLUMNS), NaN
    where undefined."""
    cols = columns or COLUMNS
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64()}
        schema = pa.schema([(name, types[t]) for name, t in cols.items()])
        data = {name: [row[name] for row in table] for name in cols}
        pq.write_table(pa.Table.from_pydict(data, schema=schema), path)
    elif path.suffix == ".csv":
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for row in table:
                w.writerow([repr(row[k]) if isinstance(row[k], float) else row[k] for k in cols])
    else:
        raise ValueError(f"{path}: the station table is .parquet or .csv")


def read_table(path: Path, columns: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The rows ``write_table`` wrote, with their types."""
    cols = columns or COLUMNS
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_table(path).to_pylist())
    with path.open(newline="") as f:
        conv = {"str": str, "int": int, "float": float}
        return [{k: conv[cols[k]](v) for k, v in row.items()} for row in csv.DictReader(f)]


# --- plots -----------------------------------------------------------------------------------


def _title(s: dict[str, Any], what: str) -> str:
    mark = "  PARTIAL RUN" if s.get("partial") else ""
    return (f"{what}: {s['network']}, {s['stations_run']} stations, seed {s['seed']}, "
            f"{span(s['duration_s'])}{mark}")


def write_plots(table: Sequence[dict[str, Any]], s: dict[str, Any], load_kw: Sequence[float],
                out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)

    served = sorted(row["served_share"] for row in table if not math.isnan(row["served_share"]))
    pw = sorted((row["wait_probability"] for row in table if not math.isnan(row["wait_probability"])),
                reverse=True)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    a1.plot(range(1, len(served) + 1), [100 * x for x in served], color="tab:blue")
    a1.set_ylabel("arrivals served (%)")
    a1.set_title(_title(s, "Stations ranked by service"), fontsize=9)
    a2.plot(range(1, len(pw) + 1), [100 * x for x in pw], color="tab:red")
    a2.set_ylabel("P(wait) (%)")
    a2.set_xlabel("station rank (worst first)")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    save(fig, PLOT_FILES[0])

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.hist([100 * x for x in pw], bins=40, color="tab:red", alpha=0.8)
    ax.set_xlabel(f"P(wait), % of served vehicles waiting {WAITED_S:g} s or more")
    ax.set_ylabel("stations")
    ax.set_title(_title(s, "P(wait) across stations"), fontsize=9)
    save(fig, PLOT_FILES[1])

    geo = [row for row in table if not math.isnan(row["lat"]) and not math.isnan(row["wait_probability"])]
    if geo:
        fig, ax = plt.subplots(figsize=(8, 7))
        sc = ax.scatter([r["lon"] for r in geo], [r["lat"] for r in geo],
                        c=[100 * r["wait_probability"] for r in geo], s=8, cmap="RdYlGn_r", vmin=0.0)
        fig.colorbar(sc, ax=ax, label="P(wait) (%)")
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(_title(s, "Stations by P(wait)"), fontsize=9)
        save(fig, PLOT_FILES[2])

    if load_kw:
        fig, ax = plt.subplots(figsize=(9, 4))
        hours = [(i + 0.5) * METER_PERIOD_S / 3600.0 for i in range(len(load_kw))]
        ax.step(hours, [x / 1000.0 for x in load_kw], where="mid", color="tab:green")
        ax.set_xlabel("hours from 00:00")
        ax.set_ylabel("network demand (MW, 15-min mean)")
        ax.grid(alpha=0.3)
        ax.set_title(_title(s, "Network grid demand"), fontsize=9)
        save(fig, PLOT_FILES[3])
    return written


def write_report(out: Path, result: FleetResult, *, table_format: str = "parquet", plots: bool = True,
                 run_facts: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[Path]]:
    """summary.json, run.json, stations.parquet (or .csv) and the plots into ``out``."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    table = rows(result)
    s = summary(result, table)
    written = [out / SUMMARY_FILE]
    if result.ledger is not None:
        _, pack_tables = pack_report(result)
        for name in PACK_TABLES:
            p = out / f"{name}.{table_format}"
            write_table(pack_tables[name], p, PACK_COLUMNS[name])
            written.append(p)
        if plots:
            led = result.ledger
            written.append(write_soh_plot(led.soh.tolist(), led.settings.retire_soh, s, out))
    write_summary(s, written[0])
    if run_facts is not None:
        (out / RUN_FILE).write_text(json.dumps(json_safe(run_facts), indent=2) + "\n")
        written.append(out / RUN_FILE)
    path = out / f"{TABLE_STEM}.{table_format}"
    write_table(table, path)
    written.append(path)
    if plots and table:
        written += write_plots(table, s, network_load_kw(result), out)
    return s, written


# --- terminal --------------------------------------------------------------------------------


def _f(x: Any, fmt: str = "{:,.1f}") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def format_table(s: dict[str, Any], facts: dict[str, Any] | None = None) -> str:
    v, e, w = s["vehicles"], s["energy"], s["wait_s"]
    cur = e["currency"]
    head = f"{s['network']}: {s['stations_run']:,} of {s['stations']:,} stations, seed {s['seed']}, " \
           f"{span(s['duration_s'])}" + ("  PARTIAL" if s["partial"] else "")
    lines = [
        head,
        f"  swaps served        {s['swaps']:>12,}   ({_f(s['swaps_per_day'], '{:,.0f}')} a day)",
        f"  vehicles arrived    {v['arrived']:>12,}",
        f"  turned away         {v['turned_away']:>12,}   (balked {v['balked']:,}, reneged {v['reneged']:,}, "
        f"failed swaps {v['failed']:,})",
        f"  served share        {_f(100 * s['served_share'] if s['swaps'] else math.nan):>12} %",
        f"  P(wait)             {_f(100 * s['wait_probability'] if w['count'] else math.nan, '{:.2f}'):>12} %"
        f"   (stations: median {_f(100 * s['station_wait_probability']['p50'], '{:.1f}')} %, "
        f"worst {_f(100 * s['station_wait_probability']['max'], '{:.1f}')} %)",
        f"  wait s              mean {_f(w['mean'])}, p95 {_f(w['p95'])}, p99 {_f(w['p99'])}, "
        f"max {_f(w['max'])}",
        f"  grid energy         {_f(e['grid_kwh'] / 1000.0):>12} MWh",
        f"  peak grid power     {_f(e['peak_kw'] / 1000.0, '{:,.2f}'):>12} MW   (15-min mean, whole network; "
        f"sum of station peaks {_f(e['sum_of_station_peaks_kw'] / 1000.0, '{:,.2f}')} MW)",
        f"  energy cost         {_f(e['cost'], '{:,.0f}'):>12} {cur}",
    ]
    if len(s["by_class"]) > 1:
        lines.append("  by class            stations    arrived      swaps  turned away  P(wait)")
        for name, c in s["by_class"].items():
            lines.append(f"    {name:<17} {c['stations']:>8,} {c['arrived']:>10,} {c['swaps']:>10,} "
                         f"{c['turned_away']:>12,}  {_f(100 * c['wait_probability'], '{:.2f}'):>6} %")
    pk = s.get("packs")
    if pk:
        sp = pk["soh"]
        lines += [
            f"  packs               {pk['total']:>12,}   ({pk['in_racks']:,} in racks, "
            f"{pk['in_vehicles']:,} in vehicles; conserved over {span(s['duration_s'])})",
            "  pack SoH            " + ", ".join(
                f"{k} {_f(100 * sp[k], '{:.2f}')} %" for k in ("p1", "p5", "p50", "min")),
            f"  due for retirement  {pk['due_for_retirement']:>12,}   "
            f"(SoH below {100 * pk['retire_soh']:g} %)",
            f"  rebalancing         {pk['packs_to_move']:>12,}   packs in {pk['moves']:,} moves "
            f"({pk['imbalanced_stations']:,} stations off their target stock; "
            f"{pk['new_packs_needed']:,} packs still short)",
        ]
    if facts:
        workers = facts.get("workers")
        plural = "s" if workers != 1 else ""
        lines.append(f"  run                 {facts.get('backend')} ({workers} worker{plural}), "
                     f"{_f(facts.get('wall_s'), '{:.1f}')} s wall, "
                     f"{_f(facts.get('station_s_per_wall_s'), '{:,.0f}')} station-s per wall-s")
    return "\n".join(lines)
