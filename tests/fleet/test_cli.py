"""`swapstation fleet` end to end on a tiny network, --generate, errors, Ctrl-C, lazy imports."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from host import cli
from host.fleet import network as nw
from tests.fleet import nets

ROOT = Path(__file__).resolve().parents[2]


def test_runs_end_to_end_and_writes_the_report(tmp_path, capsys):
    net = nets.write(tmp_path)
    out = tmp_path / "run"
    argv = ["fleet", str(net), "--serial", "--duration", "2h", "--seed", "4", "--out", str(out)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "tiny: 3 of 3 stations, seed 4, 2 h" in text and "P(wait)" in text
    s = json.loads((out / "summary.json").read_text())
    assert s["stations_run"] == 3 and s["seed"] == 4 and s["duration_s"] == 7200.0 and s["partial"] is False
    facts = json.loads((out / "run.json").read_text())
    assert facts["backend"] == "serial" and facts["workers"] == 1 and facts["wall_s"] > 0
    for name in ("stations.parquet", "stations_ranked.png", "p_wait.png", "map.png", "network_load.png"):
        assert (out / name).stat().st_size > 0, name


def test_same_seed_same_summary_and_csv_table(tmp_path):
    net = nets.write(tmp_path)
    for name in ("a", "b"):
        assert cli.main(["fleet", str(net), "--serial", "--duration", "1h", "-q", "--no-plots",
                         "--table", "csv", "--out", str(tmp_path / name)]) == 0
    for f in ("summary.json", "stations.csv"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_generate_writes_a_network_that_runs(tmp_path, capsys):
    out = tmp_path / "gen.toml"
    assert cli.main(["fleet", "--generate", str(out), "--stations", "8", "--highway", "3",
                     "--swaps-per-day", "240"]) == 0
    net = nw.load(out)
    assert len(net.stations) == 8 and net.swaps_per_day == pytest.approx(240.0, abs=0.5)
    assert cli.main(["fleet", str(out), "--serial", "--duration", "30m", "--sample", "4", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["stations"], s["stations_run"]) == (8, 4)


def test_usage_errors_exit_2_and_name_the_field(tmp_path, capsys):
    bad = nets.write(tmp_path, nets.TINY.replace("grid_kw = 630", "grid_kw = -630"), "bad.toml")
    assert cli.main(["fleet", str(bad), "--serial"]) == 2
    assert "bad.toml: classes.urban.grid_kw: must be positive" in capsys.readouterr().err
    assert cli.main(["fleet"]) == 2
    assert "a NETWORK file is needed" in capsys.readouterr().err
    assert cli.main(["fleet", str(bad), "--generate", str(tmp_path / "x.toml")]) == 2
    assert cli.main(["fleet", "--generate", str(tmp_path / "x.yaml")]) == 2
    too_many = ["--stations", "3", "--highway", "4"]
    assert cli.main(["fleet", "--generate", str(tmp_path / "x.toml"), *too_many]) == 2


def test_version_and_sim_list_do_not_import_dask():
    code = ("import sys\nfrom host import cli\n"
            "for argv in (['--version'], ['sim', '--list']):\n"
            "    try:\n        cli.main(argv)\n    except SystemExit:\n        pass\n"
            "heavy = ('dask', 'distributed', 'pyarrow')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("where", ["--serial", "--workers=2"])
def test_ctrl_c_keeps_the_finished_stations(tmp_path, where):
    gen = tmp_path / "gen.toml"
    assert cli.main(["fleet", "--generate", str(gen), "--stations", "400", "-q"]) == 0
    out = tmp_path / "run"
    # A terminal's Ctrl-C reaches the whole process group: the Dask workers too.
    p = subprocess.Popen([sys.executable, "-m", "host.cli", "fleet", str(gen), where, "--no-plots",
                          "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert p.stderr is not None
        seen = []
        for line in p.stderr:  # piped: a line every 10 % of the stations
            seen.append(line)
            if "stations done" in line:
                break
        assert any("stations done" in x for x in seen), "".join(seen)
        os.killpg(p.pid, signal.SIGINT)
        stdout, rest = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    err = "".join(seen) + rest
    assert p.returncode == 130, err
    assert "Traceback" not in err and "marked partial" in err
    s = json.loads((out / "summary.json").read_text())
    assert s["partial"] is True and 0 < s["stations_run"] < 400
    assert "PARTIAL" in stdout


def test_packs_end_to_end_adds_the_pack_report(tmp_path, capsys):
    net = nets.write(tmp_path)
    out = tmp_path / "run"
    argv = ["fleet", str(net), "--serial", "--duration", "30h", "--seed", "4", "--packs",
            "--retire-soh", "0.9999", "--table", "csv", "--out", str(out)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "conserved over 1.25 d" in text and "due for retirement" in text
    s = json.loads((out / "summary.json").read_text())
    pk = s["packs"]
    assert pk["days"] == 2 and pk["conserved"] and pk["in_racks"] == 13 + 13 + 8
    assert pk["due_for_retirement"] > 0 and pk["retire_soh"] == 0.9999
    from host.fleet import report

    ledger = report.read_table(out / "packs.csv", report.PACK_COLUMNS["packs"])
    assert [r["id"] for r in ledger] == list(range(pk["total"]))
    assert sum(r["due"] for r in ledger) == pk["due_for_retirement"]
    stock = report.read_table(out / "pack_stock.csv", report.PACK_COLUMNS["pack_stock"])
    assert {r["station"] for r in stock} == {"U1", "U2", "H1"}
    assert (out / "pack_moves.csv").exists() and (out / "soh.png").stat().st_size > 0
    # without --packs nothing of it
    plain = tmp_path / "plain"
    argv = ["fleet", str(net), "--serial", "--duration", "1h", "-q", "--no-plots", "--out", str(plain)]
    assert cli.main(argv) == 0
    assert "packs" not in json.loads((plain / "summary.json").read_text())
    assert not (plain / "packs.parquet").exists()


def test_pack_options_errors(tmp_path, capsys):
    net = nets.write(tmp_path)
    assert cli.main(["fleet", str(net), "--serial", "--retire-soh", "0.7"]) == 2
    assert "--retire-soh needs --packs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["fleet", str(net), "--serial", "--packs", "--retire-soh", "1.5"])
    bad = nets.write(tmp_path, nets.TINY + "\n[packs]\nnearby = 2\n", "bad.toml")
    assert cli.main(["fleet", str(bad), "--serial", "--packs"]) == 2
    assert "bad.toml: packs.nearby: must be <= 1" in capsys.readouterr().err
    # too few packs out in vehicles for a day's demand: the file's setting, named, exit 2
    dry = nets.write(tmp_path, nets.TINY + "\n[packs]\nrevisit_days = 0.1\n", "dry.toml")
    assert cli.main(["fleet", str(dry), "--serial", "--packs", "--duration", "2d", "-q"]) == 2
    err = capsys.readouterr().err
    assert "dry.toml: day 1: more vehicles with NIO-" in err and "raise [packs] revisit_days (0.1)" in err
