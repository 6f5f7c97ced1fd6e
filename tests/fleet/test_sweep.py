"""swapstation sweep: a grid over a station's parameters, the sizing answer, and the theory
model's agreement with the closed forms of host/sim/queueing.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from host.cli import main
from host.fleet import sweep as sw
from host.sim import queueing

THEORY = """
name = "theory check"
model = "theory"
[run]
duration = "40d"
seed = 3
replications = 8
[target]
wait_probability = 0.10
[theory]
charge = "1h"
[base]
id = "T"
packs = { "NIO-100" = 4 }
pack_mix = { "NIO-100" = 1 }
grid_kw = 630
swaps_per_day = 48
[grid]
packs = [3, 4, 5, 6, 8, 10]
chargers = [3]
"""

PLANT = """
name = "small urban"
[run]
duration = "6h"
seed = 5
replications = 2
[target]
p95_wait_s = "5m"
[base]
id = "U"
packs = { "NIO-75" = 4, "NIO-100" = 6 }
pack_mix = { "NIO-75" = 0.4, "NIO-100" = 0.6 }
grid_kw = 630
swaps_per_day = 200
[grid]
packs = [6, 12]
charger_kw = [40.0, 62.5]
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_the_theory_models_sizing_answer_is_the_closed_forms(tmp_path: Path) -> None:
    s = sw.load(write(tmp_path, THEORY))
    rows = sw.cell_rows(s, sw.replications(s))
    lam, mu = 48 / 86400.0, 1 / 3600.0
    closed = [queueing.swap_wait_probability(3, n, lam, mu) for n in (3, 4, 5, 6, 8, 10)]
    assert [r["closed_form_wait_probability"] for r in rows] == closed
    for r in rows:  # each simulated cell agrees with its closed form
        assert r["wait_probability_low"] <= r["closed_form_wait_probability"] <= r["wait_probability_high"], r
    (answer,) = sw.sizing(s, rows)
    (theory,) = sw.sizing(s, rows, "closed_form_wait_probability")
    smallest = min(n for n, p in zip((3, 4, 5, 6, 8, 10), closed, strict=True) if p <= 0.10)
    assert answer["design"] == theory["design"] and theory["design"]["packs"] == smallest


def test_a_plant_sweep_writes_cells_sizing_and_the_trade_off(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["sweep", str(write(tmp_path, PLANT)), "--serial", "--out", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert "sizing: the smallest design with p95 wait, s <= 300" in text
    with open(out / "cells.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["packs"]), float(r["charger_kw"])) for r in rows] == [(6, 40.0), (6, 62.5), (12, 40.0),
                                                                           (12, 62.5)]
    assert all(float(r["p95_wait_s_low"]) <= float(r["p95_wait_s"]) <= float(r["p95_wait_s_high"])
               for r in rows)
    doc = json.loads((out / "sizing.json").read_text())
    assert doc["target"] == {"p95_wait_s": 300.0} and len(doc["sizing"]) == 1
    assert (out / "tradeoff.png").stat().st_size > 10_000


def test_packs_are_shared_over_the_base_types_and_mix_share_moves_stock_and_demand(tmp_path: Path) -> None:
    text = PLANT.replace('name = "small urban"', 'name = "m"\npartner = "NIO-150"')
    s = sw.load(write(tmp_path, text.replace("charger_kw = [40.0, 62.5]", "mix_share = [0.0, 0.5]")))
    a = sw.station_for(s, {"packs": 12, "mix_share": 0.0}, 0)
    b = sw.station_for(s, {"packs": 12, "mix_share": 0.5}, 1)
    assert dict(a.packs) == {"NIO-75": 5, "NIO-100": 7} and a.chargers == 13  # the base's one spare slot
    assert dict(b.packs)["NIO-150"] == 6 and dict(b.pack_mix)["NIO-150"] == 0.5 and b.n_packs == 12


@pytest.mark.parametrize("edit, why", [
    (("[grid]", "[grid]\nspeed = [1]"), "grid.speed: unknown"),
    (("packs = [6, 12]", "packs = [6, -1]"), "grid.packs[1]: expected a whole number from 1"),
    (("packs = [6, 12]", "packs = [6, 6]"), "grid.packs: a value is listed twice"),
    (("packs = [6, 12]", "packs = [6, 12]\nchargers = [8]"), "grid.chargers: 8 slots cannot hold 12 packs"),
    (("p95_wait_s = \"5m\"", ""), "target: one of wait_probability, p95_wait_s"),
    (("grid_kw = 630", "grid_kw = -5"), "base.grid_kw"),
    (("charger_kw = [40.0, 62.5]", "mix_share = [0.5]"), "partner: mix_share needs the partner"),
    (('name = "small urban"', 'name = "small urban"\nmodel = "theory"'), "grid.charger_kw: has no part in"),
])
def test_a_bad_sweep_file_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          edit: tuple[str, str], why: str) -> None:
    text = PLANT.replace(*edit)
    assert text != PLANT
    assert main(["sweep", str(write(tmp_path, text)), "--serial", "-q"]) == 2
    err = capsys.readouterr().err
    assert why in err and "s.toml" in err, err
