"""Reports of a simulated run: JSON summary, CSV time series, PNG plots, a terminal table,
and the progress bar long runs show on stderr."""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from host.kpi import SERIES_COLUMNS

SUMMARY_FILE = "summary.json"
SERIES_FILE = "timeseries.csv"
SWAPS_FILE = "swaps.csv"
PLOT_FILES = ("queue.png", "rack_soc.png", "grid_power.png")


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


def write_plots(rows: Sequence[Sequence[float]], out: Path, title: str) -> list[Path]:
    """queue.png, rack_soc.png and grid_power.png against hours of virtual time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    col = {name: i for i, name in enumerate(SERIES_COLUMNS)}
    hours = [r[col["t_s"]] / 3600.0 for r in rows]

    def one(name: str, ylabel: str, series: list[tuple[str, str]], step: bool) -> Path:
        fig, ax = plt.subplots(figsize=(9, 3.2), dpi=100)
        for key, label in series:
            ys = [r[col[key]] for r in rows]
            if step:
                ax.step(hours, ys, where="post", label=label, linewidth=1)
            else:
                ax.plot(hours, ys, label=label, linewidth=1)
        ax.set_xlabel("virtual time (h)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if len(series) > 1:
            ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        p = out / name
        fig.savefig(p)
        plt.close(fig)
        return p

    return [
        one("queue.png", "vehicles", [("queue", "waiting"), ("bay_busy", "in bay")], True),
        one("rack_soc.png", "SoC (%) / packs",
            [("rack_soc_mean", "mean rack SoC %"), ("packs_ready", "packs ready")], False),
        one("grid_power.png", "kW", [("grid_kw", "grid power")], True),
    ]


def write_report(out: Path, summary: dict[str, Any], rows: Sequence[Sequence[float]],
                 swaps: Sequence[Sequence[Any]] = (), swap_columns: Sequence[str] = (),
                 plots: bool = True) -> list[Path]:
    """Write every report file into ``out`` (created); returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / SUMMARY_FILE, out / SERIES_FILE]
    write_summary(summary, written[0])
    write_series(rows, written[1])
    if swap_columns:
        written.append(out / SWAPS_FILE)
        write_series(swaps, written[-1], swap_columns)
    if plots and rows:
        written += write_plots(rows, out, f"{summary.get('scenario', '')} (seed {summary.get('seed', '')})")
    return written


def _f(x: Any, fmt: str = "{:.1f}") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return fmt.format(x)


def format_table(s: dict[str, Any]) -> str:
    """A readable KPI table for the terminal."""
    v = s["vehicles"]
    w = s["wait_s"]
    d = s["swap_duration_s"]
    soc = s["soc_handed_over_pct"]
    e = s["energy"]
    qw = s["queue_wait_s"]
    days = s["duration_s"] / 86400.0
    rows: list[tuple[str, str]] = [
        ("scenario", f"{s.get('scenario', '')}  (seed {s.get('seed', '')}, mode {s.get('mode', '')})"),
        ("simulated", f"{_f(days, '{:.2f}')} d  in {_f(s.get('wall_s'), '{:.1f}')} s wall"),
        ("swaps served", f"{s['swaps']}  ({_f(s['swaps_per_day'], '{:.0f}')}/day)"),
        ("vehicles", f"{v['arrived']} arrived, {v['balked']} balked, {v['reneged']} reneged, "
                     f"{v['failed_swaps']} failed swaps"),
        ("wait", f"mean {_f(w['mean'])} s, p95 {_f(w['p95'])} s, max {_f(w['max'])} s, "
                 f"P(wait) {_f(s['wait_probability'], '{:.3f}')}"),
        ("queue", f"mean {_f(s['queue']['mean'], '{:.2f}')}, max {s['queue']['max']}; wait to drive in: "
                  f"mean {_f(qw['mean'])} s, p95 {_f(qw['p95'])} s"),
        ("swap duration", f"mean {_f(d['mean'])} s, p50 {_f(d['p50'])} s, p95 {_f(d['p95'])} s, "
                          f"max {_f(d['max'])} s"),
        ("SoC handed over", f"mean {_f(soc['mean'])} %, min {_f(soc['min'])} %"),
        ("grid energy", f"{_f(e['grid_kwh'], '{:.0f}')} kWh, peak {_f(e['peak_grid_kw'], '{:.0f}')} kW"),
        ("energy cost", f"{_f(e['cost'], '{:.2f}')}  (mean {_f(e['mean_price'], '{:.3f}')}/kWh)"),
        ("charger use", f"{_f(100 * s['chargers']['utilisation'])} % of {s['chargers']['count']} chargers"),
        ("alarms", _counts(s["alarms"])),
        ("faults", _counts(s["faults"])),
    ]
    if s.get("swap_failures"):
        rows.append(("swap failures", _counts(s["swap_failures"])))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {val}" for k, val in rows)


def _counts(c: dict[str, int]) -> str:
    if not c:
        return "none"
    return ", ".join(f"{k} {n}" for k, n in c.items())


class Progress:
    """A one-line progress bar on ``stream`` (stderr), drawn at most every 0.2 s wall time.

    Off when ``enabled`` is False or the stream is not a terminal."""

    def __init__(self, total: float, enabled: bool = True, stream: TextIO | None = None,
                 width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total = total
        self.width = width
        self.enabled = enabled and self.stream.isatty()
        self._last = 0.0
        self._start = time.monotonic()

    def update(self, done: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.2 and done < self.total:
            return
        self._last = now
        frac = min(1.0, done / self.total) if self.total else 1.0
        n = int(frac * self.width)
        bar = "#" * n + "-" * (self.width - n)
        wall = now - self._start
        self.stream.write(f"\r[{bar}] {frac:6.1%}  {done / 3600.0:7.1f} h simulated  {wall:6.1f} s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
