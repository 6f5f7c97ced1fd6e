"""Reports of a simulated run: JSON summary, CSV time series, PNG plots, a terminal table,
and the progress bar long runs show on stderr."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from host.sim.kpi import SERIES_COLUMNS

SUMMARY_FILE = "summary.json"
SERIES_FILE = "timeseries.csv"
SWAPS_FILE = "swaps.csv"
RUN_FILE = "run.json"
PLOT_FILES = ("grid_power.png", "rack_soc.png", "queue.png")


def json_safe(x: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x


def write_summary(summary: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(json_safe(summary), indent=2, sort_keys=False) + "\n")


def write_series(rows: Sequence[Sequence[Any]], path: Path, columns: Sequence[str] = SERIES_COLUMNS) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for row in rows:
            w.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])


def span(seconds: float) -> str:
    """A run length for people: "20 min", "2 h", "1 d", "2.5 d"."""
    if seconds >= 86400:
        return f"{seconds / 86400:.3g} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 60:.3g} min"


def plot_title(summary: dict[str, Any], what: str) -> str:
    """What the plot shows, then the run: scenario, seed, simulated span, mode; partial runs say so."""
    mark = "  PARTIAL RUN" if summary.get("partial") else ""
    return (f"{what}: {summary.get('scenario', '')}, seed {summary.get('seed', '')}, "
            f"{span(float(summary.get('duration_s', 0.0)))} from 00:00, {summary.get('mode', '')} mode{mark}")


def time_label(h: float, end_h: float) -> str:
    """Hour ``h`` of virtual time as a time of day ("18:30"); "d1 06:00" on later days of a run
    longer than a day (virtual time 0 is midnight of day 0)."""
    day, m = divmod(int(round(h * 60)), 1440)
    if day == 1 and m == 0 and end_h <= 24:
        return "24:00"  # the end of a one-day run
    hm = f"{m // 60:02d}:{m % 60:02d}"
    return f"d{day} {hm}" if day and end_h > 24 else hm


def _time_axis(ax: Any, end_h: float) -> None:
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    step = next((s for s in (0.25, 0.5, 1, 2, 3, 6, 12, 24) if end_h / s <= 12), 48)
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda h, _pos: time_label(h, end_h)))
    ax.set_xlim(0.0, end_h)
    ax.set_xlabel("time of day" + (" (d1 = the day after the first)" if end_h > 24 else ""))


def _legend_outside(ax: Any) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _tou_bands(scenario: Any, end_h: float) -> list[tuple[float, float, float]]:
    """(start_h, end_h, price) of every time-of-use band inside the run."""
    tou = scenario.station.get("tou") if scenario is not None else None
    if not tou:
        return []
    out = []
    for day in range(int(math.ceil(end_h / 24.0))):
        for b in tou["bands"]:
            lo = day * 24 + b["start_min"] / 60.0
            hi = min(day * 24 + b["end_min"] / 60.0, end_h)
            if lo < hi:
                out.append((lo, hi, float(b["price"])))
    return out


def write_plots(rows: Sequence[Sequence[float]], out: Path, summary: dict[str, Any],
                swaps: Sequence[Sequence[Any]] = (), swap_columns: Sequence[str] = (),
                scenario: Any = None) -> list[Path]:
    """grid_power.png, rack_soc.png and queue.png against the time of day. ``scenario`` (a
    host.sim.scenario.Scenario) adds the grid limit, time-of-use bands, outages and faults."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    col = {name: i for i, name in enumerate(SERIES_COLUMNS)}
    end_h = max(float(summary.get("duration_s", 0.0)), rows[-1][0]) / 3600.0
    hours = [r[col["t_s"]] / 3600.0 for r in rows]
    # A row's level holds until the next row; the last one until the end of the run.
    hx = [*hours, end_h]

    def series(key: str) -> list[float]:
        ys = [float(r[col[key]]) for r in rows]
        return [*ys, ys[-1]]

    def period_max(key: str, level: str) -> list[float]:
        """A row's maximum covers the period before it: shifted to start where that period does.
        After the last row only its level is known (the summary's maxima cover all of it)."""
        ys = [float(r[col[key]]) for r in rows[1:]] + [float(rows[-1][col[level]])]
        return [*ys, ys[-1]]

    def save(fig: Any, name: str) -> Path:
        p = out / name
        fig.savefig(p)
        plt.close(fig)
        return p

    def finish(fig: Any, ax: Any, ylabel: str, what: str, name: str) -> Path:
        ax.set_ylabel(ylabel)
        ax.set_title(plot_title(summary, what), fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        _time_axis(ax, end_h)
        _legend_outside(ax)
        fig.tight_layout()
        return save(fig, name)

    written = []

    # --- grid power ---
    fig, ax = plt.subplots(figsize=(12, 4.2), dpi=100)
    bands = _tou_bands(scenario, end_h)
    prices = sorted({p for _, _, p in bands})
    cmap = plt.get_cmap("YlOrRd")
    shades = {p: cmap(0.12 + 0.45 * i / max(1, len(prices) - 1)) for i, p in enumerate(prices)}
    currency = summary.get("energy", {}).get("currency", "")
    seen: set[float] = set()
    for lo, hi, price in bands:
        label = None if price in seen else f"price {price:g} {currency}/kWh"
        seen.add(price)
        ax.axvspan(lo, hi, color=shades[price], alpha=0.45, linewidth=0, label=label, zorder=0)
    ax.step(hx, period_max("grid_kw_max", "grid_kw"), where="post", color="tab:red", linewidth=0.9,
            label="highest in each sample period")
    ax.step(hx, series("grid_kw"), where="post", color="tab:blue", linewidth=0.9, alpha=0.8,
            label="at each sample")
    peak = summary.get("energy", {}).get("peak_grid_kw")
    if peak:
        i = max(0, max(range(len(rows)), key=lambda k: rows[k][col["grid_kw_max"]]) - 1)
        ax.plot([(hx[i] + hx[i + 1]) / 2], [peak], marker="v", color="black", linestyle="none",
                label=f"peak {peak:.0f} kW (summary)")
    top = float(peak or 0.0)
    if scenario is not None:
        limit = float(scenario.station["limits"]["grid_kw"])
        ax.axhline(limit, color="black", linestyle="--", linewidth=1,
                   label=f"controller's grid limit {limit:g} kW")
        cap = float(scenario.grid_capacity_kw)
        if cap != limit:
            ax.axhline(cap, color="dimgray", linestyle=":", linewidth=1, label=f"connection {cap:g} kW")
        top = max(top, limit, cap)
        outage_label: str | None = "grid outage"
        windows = [(a, d) for a, d in scenario.outages]
        windows += [(f.at_s, f.duration_s) for f in scenario.faults if f.kind == "grid_outage"]
        for at_s, dur_s in windows:
            ax.axvspan(at_s / 3600.0, (at_s + dur_s) / 3600.0, facecolor="none", edgecolor="black",
                       hatch="////", linewidth=0.8, label=outage_label, zorder=1)
            outage_label = None
        # Faults numbered in the headroom above the data, named in the legend.
        faults = [f for f in scenario.faults if f.kind != "grid_outage" and f.at_s / 3600.0 <= end_h]
        for n, f in enumerate(faults, 1):
            x = f.at_s / 3600.0
            ax.axvline(x, color="purple", linewidth=1, linestyle="-.",
                       label="fault injected" if n == 1 else None)
            ax.annotate(str(n), (x, 0.955), xycoords=("data", "axes fraction"), ha="center", va="center",
                        fontsize=7, color="purple",
                        bbox={"boxstyle": "circle,pad=0.2", "fc": "white", "ec": "purple", "lw": 0.6})
            ax.plot([], [], " ", label=f"  {n}: {f.kind}{' ' + f.target if f.target else ''} at "
                                       f"{time_label(x, end_h)}")
    ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)
    written.append(finish(fig, ax, "grid power (kW)", "Grid power", "grid_power.png"))

    # --- rack: ready packs on their own axis, hours with none ready shaded ---
    fig, (ax_r, ax_s) = plt.subplots(2, 1, figsize=(12, 5.2), dpi=100, sharex=True,
                                     gridspec_kw={"height_ratios": [3, 2]})
    ready = series("packs_ready")
    ax_r.step(hx, ready, where="post", color="tab:green", linewidth=1, label="packs ready to hand over")
    ax_r.fill_between(hx, ready, step="post", color="tab:green", alpha=0.2)
    zero_s = 0.0
    zero_label: str | None = "none ready"
    for k in range(len(rows)):
        if ready[k] <= 0:
            ax_r.axvspan(hx[k], hx[k + 1], color="tab:red", alpha=0.35, linewidth=0, label=zero_label)
            zero_label = None
            zero_s += (hx[k + 1] - hx[k]) * 3600.0
    if zero_label is not None:
        ax_r.plot([], [], color="tab:red", alpha=0.35, linewidth=6, label="none ready: never")
    else:
        ax_r.plot([], [], linestyle="none", label=f"none ready for {zero_s / 3600.0:.1f} h in all")
    ax_r.set_ylabel("packs ready")
    ax_r.set_ylim(0, max(ready) * 1.1 + 1)
    ax_r.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_r.grid(True, axis="y", alpha=0.3)
    ax_r.set_title(plot_title(summary, "Rack"), fontsize=10)
    _legend_outside(ax_r)
    ax_s.plot(hx, series("rack_soc_mean"), color="tab:blue", linewidth=1,
              label="mean SoC of packs in the rack")
    if scenario is not None:
        ho = float(scenario.station["limits"]["handover_soc"])
        ax_s.axhline(ho, color="black", linestyle="--", linewidth=0.8, label=f"hand-over SoC {ho:g} %")
    ax_s.set_ylabel("SoC (%)")
    ax_s.set_ylim(0, 100)
    ax_s.grid(True, axis="y", alpha=0.3)
    _legend_outside(ax_s)
    _time_axis(ax_s, end_h)
    fig.tight_layout()
    written.append(save(fig, "rack_soc.png"))

    # --- queue: waiting vehicles per time bin (minute samples are unreadable over a day) ---
    fig, ax = plt.subplots(figsize=(12, 4.2), dpi=100)
    bin_h = next((b for b in (1 / 60, 5 / 60, 10 / 60, 0.25, 0.5, 1.0, 2.0) if end_h / b <= 120), 4.0)
    edges, means, highs = _bins(hours, [float(r[col["queue"]]) for r in rows],
                                period_max("queue_max", "queue")[:-1], bin_h, end_h)
    what = f"{bin_h * 60:.0f} min" if bin_h < 1 else f"{bin_h:g} h"
    ax.stairs(highs, edges, fill=True, color="tab:blue", alpha=0.25, label=f"most waiting, per {what}")
    ax.stairs(means, edges, color="tab:blue", linewidth=1.6, label=f"waiting on average, per {what}")
    sc_col = {name: i for i, name in enumerate(swap_columns)}
    ymax = max(highs) if highs else 0.0
    if {"outcome", "arrived_s", "wait_s"} <= sc_col.keys():
        for outcome, marker, color, what in (("balked", "x", "tab:red", "balked (drove on)"),
                                             ("reneged", "v", "tab:orange", "reneged (gave up waiting)")):
            ts = []
            for r in swaps:
                if r[sc_col["outcome"]] != outcome:
                    continue
                t = float(r[sc_col["arrived_s"]])
                if outcome == "reneged" and isinstance(r[sc_col["wait_s"]], float) and \
                        math.isfinite(r[sc_col["wait_s"]]):
                    t += float(r[sc_col["wait_s"]])
                ts.append(t / 3600.0)
            y = ymax + (1.0 if outcome == "balked" else 1.6)
            ax.plot(ts, [y] * len(ts), linestyle="none", marker=marker, color=color, markersize=5,
                    label=f"{what}: {len(ts)}")
    ax.set_ylim(0, ymax + 2.4)
    # no queue-length ticks beside the balk and renege rows above the data
    ax.set_yticks([k for k in MaxNLocator(integer=True).tick_values(0, ymax) if 0 <= k <= ymax])
    written.append(finish(fig, ax, "vehicles waiting", "Entry queue", "queue.png"))
    return written


def _bins(hours: Sequence[float], levels: Sequence[float], highs: Sequence[float], bin_h: float,
          end_h: float) -> tuple[list[float], list[float], list[float]]:
    """Edges, mean of ``levels`` and max of ``highs`` per ``bin_h`` bin of samples (empty bins: 0)."""
    n = max(1, int(math.ceil(end_h / bin_h - 1e-9)))
    total = [0.0] * n
    count = [0] * n
    top = [0.0] * n
    for h, v, hi in zip(hours, levels, highs, strict=True):
        k = min(n - 1, int(h / bin_h))
        total[k] += v
        count[k] += 1
        top[k] = max(top[k], hi)
    edges = [min(k * bin_h, end_h) for k in range(n + 1)]
    edges[-1] = end_h
    return edges, [t / c if c else 0.0 for t, c in zip(total, count, strict=True)], top


def write_report(out: Path, summary: dict[str, Any], rows: Sequence[Sequence[float]],
                 swaps: Sequence[Sequence[Any]] = (), swap_columns: Sequence[str] = (),
                 plots: bool = True, run_facts: dict[str, Any] | None = None,
                 scenario: Any = None) -> list[Path]:
    """Write every report file into ``out`` (created); returns the paths written. ``run_facts``
    (wall time, start, partial) go to run.json, apart from the KPIs, so the same run gives the
    same summary.json to the last digit."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / SUMMARY_FILE, out / SERIES_FILE]
    write_summary(summary, written[0])
    write_series(rows, written[1])
    if swap_columns:
        written.append(out / SWAPS_FILE)
        write_series(swaps, written[-1], swap_columns)
    if run_facts is not None:
        written.append(out / RUN_FILE)
        written[-1].write_text(json.dumps(json_safe(run_facts), indent=2) + "\n")
    if plots and rows:
        written += write_plots(rows, out, summary, swaps, swap_columns, scenario)
    return written


def _f(x: Any, fmt: str = "{:.1f}") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return fmt.format(x)


def format_table(s: dict[str, Any], run_facts: dict[str, Any] | None = None) -> str:
    """A readable KPI table for the terminal; ``run_facts`` adds the wall time."""
    v = s["vehicles"]
    w = s["wait_s"]
    d = s["swap_duration_s"]
    soc = s["soc_handed_over_pct"]
    e = s["energy"]
    qw = s["queue_wait_s"]
    dur = float(s["duration_s"])
    cur = e.get("currency", "")
    wall = (run_facts or {}).get("wall_s")
    rate = f"{_f(s.get('swaps_per_hour'), '{:.1f}')}/h"
    if dur >= 86400:
        rate += f", {_f(s['swaps_per_day'], '{:.0f}')}/day"
    else:  # a day's figure from a shorter run is a guess: say what it rests on
        rate += f"; {_f(s['swaps_per_day'], '{:.0f}')}/day only if all day were like these {span(dur)}"
    types = s["swaps_by_pack_type"]
    rows: list[tuple[str, str]] = [
        ("scenario", f"{s.get('scenario', '')}  (seed {s.get('seed', '')}, mode {s.get('mode', '')}, "
                     f"plant {s.get('plant', '')})"),
        ("simulated", f"{span(dur)} from 00:00"
         + (f"  in {_f(wall, '{:.1f}')} s wall" if wall is not None else "")
         + ("  PARTIAL: interrupted, figures cover this span only" if s.get("partial") else "")),
        ("swaps served", f"{s['swaps']}  ({rate})"),
        ("pack types", f"handed over: {_counts(types['handed_over'])}; "
                       f"returned: {_counts(types['returned'])}"),
        ("vehicles", f"{v['arrived']} arrived, {v['balked']} balked, {v['reneged']} reneged, "
                     f"{v['not_swapped']} not swapped"),
        ("wait", f"mean {_f(w['mean'])} s, p95 {_f(w['p95'])} s, max {_f(w['max'])} s, "
                 f"P(wait) {_f(s['wait_probability'], '{:.3f}')}"),
        ("queue", f"mean {_f(s['queue']['mean'], '{:.2f}')}, max {s['queue']['max']}; wait to drive in: "
                  f"mean {_f(qw['mean'])} s, p95 {_f(qw['p95'])} s"),
        ("swap duration", f"mean {_f(d['mean'])} s, p50 {_f(d['p50'])} s, p95 {_f(d['p95'])} s, "
                          f"max {_f(d['max'])} s"),
        ("SoC handed over", f"mean {_f(soc['mean'])} %, min {_f(soc['min'])} %"),
        ("grid energy", f"{_f(e['grid_kwh'], '{:.0f}')} kWh, peak {_f(e['peak_grid_kw'], '{:.0f}')} kW"),
        ("energy cost", f"{_f(e['cost'], '{:.2f}')} {cur}  (mean {_f(e['mean_price'], '{:.3f}')} {cur}/kWh)"),
        ("charger use", f"{_f(100 * s['chargers']['utilisation'])} % of {s['chargers']['count']} chargers"),
        ("alarms", _alarms(s["alarms"])),
        ("faults", _counts(s["faults"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {val}" for k, val in rows)


def _counts(c: dict[str, int]) -> str:
    if not c:
        return "none"
    return ", ".join(f"{k} {n}" for k, n in c.items())


def _alarms(c: dict[str, int]) -> str:
    """Every run starts with the controller's power-up hold ("boot", confirmed by the operator at
    once): the table leaves that one out and counts only later ones."""
    later = dict(c)
    if later.get("boot", 0) > 0:
        later["boot"] -= 1
        if not later["boot"]:
            del later["boot"]
    return _counts(later) + " (besides the power-up hold every run starts with)"


class Progress:
    """Progress of a run on ``stream`` (stderr), with the time left at the run's pace so far.

    On a terminal a tqdm bar; otherwise (piped, logged) one line every ``every_pct`` percent.
    Nothing when ``enabled`` is False. ``update`` takes seconds, shown in hours; other counts
    (stations done) pass ``per_unit=1`` and their ``unit`` and ``what`` ("stations", "done").
    """

    def __init__(self, total_s: float, enabled: bool = True, stream: TextIO | None = None,
                 every_pct: float = 5.0, *, unit: str = "h", per_unit: float = 3600.0,
                 what: str = "simulated", digits: int = 1) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.per_unit = per_unit
        self.total_h = total_s / per_unit
        count = f"{{n:.{digits}f}}/{{total:.{digits}f}} {unit} {what}"
        self._bar_format = "{l_bar}{bar}| " + count + " [{elapsed} elapsed, {remaining} left]"
        self._line_format = "{percentage:3.0f}%  " + count + ", {elapsed} elapsed, about {remaining} left"
        self.enabled = enabled
        self.every = every_pct
        self._next_pct = every_pct
        self._start = time.monotonic()
        self._bar: Any = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            try:
                size = os.get_terminal_size(self.stream.fileno())
                sized = size.columns > 0 and size.lines > 0
            except (OSError, ValueError):
                sized = False
            # a terminal that reports no size (some ptys) would get no bar at all from tqdm
            self._bar = tqdm(total=self.total_h, file=self.stream, unit=unit, mininterval=0.2,
                             bar_format=self._bar_format,
                             ncols=None if sized else 100, nrows=None if sized else 24)

    def update(self, done_s: float) -> None:
        if not self.enabled:
            return
        done_h = min(done_s / self.per_unit, self.total_h)
        if self._bar is not None:
            self._bar.update(done_h - self._bar.n)
            return
        pct = 100.0 * done_h / self.total_h if self.total_h else 100.0
        if pct + 1e-9 < self._next_pct:
            return
        while self._next_pct <= pct + 1e-9:
            self._next_pct += self.every
        from tqdm import tqdm

        self.stream.write(tqdm.format_meter(done_h, self.total_h, time.monotonic() - self._start,
                                            bar_format=self._line_format) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

