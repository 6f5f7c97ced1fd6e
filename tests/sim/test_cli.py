"""`swapstation sim` argument handling and exit codes (runs that need no simulation)."""

import argparse

import pytest

from host import scenario as scn
from host import sim_cli


def parse(argv):
    parser = argparse.ArgumentParser(prog="swapstation")
    sim_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["sim", *argv])


def test_defaults():
    a = parse([])
    assert a.scenario == scn.DEFAULT_SCENARIO
    assert (a.duration, a.seed, a.mode, a.out, a.quiet, a.list) == (None, None, None, None, False, False)


def test_values_parsed():
    a = parse(["highway-holiday", "--duration", "6h", "--seed", "0x10", "--mode", "wire", "-q"])
    assert (a.scenario, a.duration, a.seed, a.mode, a.quiet) == ("highway-holiday", 21600.0, 16, "wire", True)


@pytest.mark.parametrize("argv", [["--duration", "soon"], ["--duration", "0"], ["--seed", "-1"],
                                  ["--seed", "x"], ["--mode", "fast"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_help_explains(capsys):
    with pytest.raises(SystemExit) as e:
        parse(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for word in ("SCENARIO", "--duration", "--seed", "--mode", "--out", "--list", "exit codes", "wire"):
        assert word in out


def test_list_names_every_builtin(capsys):
    assert sim_cli.run(parse(["--list"])) == 0
    out = capsys.readouterr().out
    for name in scn.builtin_names():
        assert name in out


def test_bad_scenario_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[demand]\nrate_per_hour = -3\n[rack]\npacks = [{type='NIO-75', count=1}]\n")
    assert sim_cli.run(parse([str(bad)])) == 2
    err = capsys.readouterr().err
    assert "bad.toml: demand.rate_per_hour" in err
    assert sim_cli.run(parse(["no-such-scenario"])) == 2
    assert "no built-in scenario" in capsys.readouterr().err


def test_run_writes_the_report(tmp_path, capsys):
    from host import cli

    out = tmp_path / "run"
    assert cli.main(["sim", "--duration", "20m", "--seed", "3", "--out", str(out), "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "swaps served" in text and "seed 3" in text
    import json

    s = json.loads((out / "summary.json").read_text())
    assert s["scenario"] == scn.DEFAULT_SCENARIO and s["seed"] == 3 and s["duration_s"] == 1200.0
    assert (out / "timeseries.csv").read_text().count("\n") == 21  # header + one row a minute
    assert (out / "swaps.csv").exists()


def test_simulation_failure_exit_1(monkeypatch, capsys):
    from host import engine

    def fail(*a, **k):
        raise engine.SimulationError("at t=1.000 s: RuntimeError: boom")

    monkeypatch.setattr(engine, "run", fail)
    assert sim_cli.run(parse(["--duration", "1m", "-q"])) == 1
    assert "simulation failed" in capsys.readouterr().err
