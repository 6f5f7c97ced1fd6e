"""`swapstation sim` argument handling, exit codes, run facts and Ctrl-C."""

import argparse
import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from host.sim import cli as sim_cli
from host.sim import scenario as scn


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


@pytest.mark.parametrize("argv", [["--duration", "-2h"], ["--duration=-2h"], ["--duration", "0"],
                                  ["--duration", "0s"]])
def test_duration_not_positive_says_so(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--duration: must be positive" in err and "cannot read" not in err


def test_duration_in_plain_seconds():
    assert parse(["--duration", "90"]).duration == 90.0


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
    marked = [line for line in out.splitlines() if "(default)" in line]
    assert len(marked) == 1 and marked[0].startswith(scn.DEFAULT_SCENARIO + " (default)")


def test_fault_outside_the_shortened_run_is_an_error_naming_it(tmp_path, capsys, monkeypatch):
    from host.sim import engine

    monkeypatch.setattr(engine.Engine, "run", lambda self: pytest.fail("ran a run whose fault never happens"))
    f = tmp_path / "late.toml"
    f.write_text("[rack]\npacks = [{type='NIO-75', count=4}]\n[demand]\nrate_per_hour = 4\n"
                 "[[faults]]\nkind = 'charger_dropout'\nslot = 'S03'\nat = '07:30'\n")
    assert sim_cli.run(parse([str(f), "--duration", "2h"])) == 2
    err = capsys.readouterr().err
    assert "late.toml: faults[0]: charger_dropout on S03 at 07:30 is outside the run" in err
    assert "ends at 02:00" in err
    assert sim_cli.run(parse(["fault-storm", "--duration", "2h"])) == 2
    assert "grid.outages[0]: the outage at 14:00 is outside the run" in capsys.readouterr().err


@pytest.mark.parametrize("make", ["a file", "under a file"])
def test_bad_out_is_found_before_the_run(make, tmp_path, capsys, monkeypatch):
    from host.sim import engine

    monkeypatch.setattr(engine.Engine, "run", lambda self: pytest.fail("ran before checking --out"))
    blocker = tmp_path / "f"
    blocker.write_text("")
    out = {"a file": blocker, "under a file": blocker / "run"}[make]
    assert sim_cli.run(parse(["--duration", "1h", "--out", str(out)])) == 2
    assert f"--out {out}: cannot write the report there" in capsys.readouterr().err


def test_wire_mode_warns_of_its_wall_time_at_the_start(capsys, monkeypatch):
    from host.sim import engine

    def stop(self):
        raise engine.SimulationError("stopped after the start message")

    monkeypatch.setattr(engine.Engine, "run", stop)
    assert sim_cli.run(parse(["--duration", "1d", "--mode", "wire"])) == 1
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    wire_s = 86400 / sim_cli.SPEED["wire"]
    assert first.startswith("pss4-urban-day: 1 d simulated in wire mode, expected wall time about ")
    assert f"{wire_s / 60:.0f} min" in first and "13x slower than direct" in first
    assert sim_cli.run(parse(["--duration", "1d", "--mode", "direct"])) == 1
    first = capsys.readouterr().err.splitlines()[0]
    assert f"about {86400 / sim_cli.SPEED['direct'] / 60:.0f} min" in first and "slower" not in first


def test_station_config_warnings_go_to_stderr_before_the_run(tmp_path, capsys, monkeypatch):
    from host.sim import engine

    def stop(self):
        raise engine.SimulationError("stopped after the start")

    monkeypatch.setattr(engine.Engine, "run", stop)
    f = tmp_path / "fast.toml"
    f.write_text("[station.overrides.limits]\ncharger_kw = 120\n"
                 "[station.overrides.pack_types.NIO-100]\nmax_charge_kw = 120\n"
                 "[rack]\npacks = [{type='NIO-100', count=4}]\n[demand]\nrate_per_hour = 4\n")
    assert sim_cli.run(parse([str(f), "--duration", "1h", "--json"])) == 1
    got = capsys.readouterr()
    warned = "swapstation sim: warning: station (station.json) limits.charger_kw: setpoints up to 120 kW"
    assert warned in got.err
    assert "warning" not in got.out
    assert sim_cli.run(parse(["--duration", "1h"])) == 1
    assert "warning" not in capsys.readouterr().err  # station.json as it is


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

    s = json.loads((out / "summary.json").read_text())
    assert s["scenario"] == scn.DEFAULT_SCENARIO and s["seed"] == 3 and s["duration_s"] == 1200.0
    assert s["plant"] == "fast" and s["partial"] is False and s["energy"]["currency"] == "CNY"
    assert (out / "timeseries.csv").read_text().count("\n") == 21  # header + one row a minute
    header = (out / "swaps.csv").read_text().splitlines()[0].split(",")
    assert header[-2:] == ["pack_type_returned", "pack_type_handed_over"]
    facts = json.loads((out / "run.json").read_text())
    assert facts["wall_s"] > 0 and facts["partial"] is False


def test_same_run_gives_the_same_summary_to_the_last_byte(tmp_path):
    from host import cli

    for name in ("a", "b"):
        assert cli.main(["sim", "--duration", "10m", "--seed", "2", "-q", "--no-plots", "--out",
                         str(tmp_path / name)]) == 0
    assert (tmp_path / "a" / "summary.json").read_bytes() == (tmp_path / "b" / "summary.json").read_bytes()
    assert "wall_s" not in (tmp_path / "a" / "summary.json").read_text()


def test_ctrl_c_writes_the_partial_report_and_exits_130(tmp_path):
    out = tmp_path / "run"
    root = Path(__file__).resolve().parents[2]
    p = subprocess.Popen([sys.executable, "-m", "host.cli", "sim", "--duration", "1d", "--no-plots", "--out",
                          str(out)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         # as from a terminal, even when these tests run as a background job (SIGINT ignored)
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert p.stderr is not None
        seen = []
        for line in p.stderr:  # piped: a progress line every 5 %; interrupt once the run is going
            seen.append(line)
            if "h simulated" in line:
                break
        assert any("h simulated" in x for x in seen), "".join(seen)
        p.send_signal(signal.SIGINT)
        stdout, rest = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    err = "".join(seen) + rest
    assert p.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted after" in err and "marked partial" in err
    s = json.loads((out / "summary.json").read_text())
    assert s["partial"] is True and 0 < s["duration_s"] < 86400
    assert json.loads((out / "run.json").read_text())["partial"] is True
    assert "PARTIAL" in stdout
    rows = (out / "timeseries.csv").read_text().count("\n") - 1
    d = s["duration_s"]
    assert math.ceil(d / 60) <= rows <= d // 60 + 1  # a row a minute up to where it stopped


def test_simulation_failure_exit_1(monkeypatch, capsys):
    from host.sim import engine

    def fail(*a, **k):
        raise engine.SimulationError("at t=1.000 s: RuntimeError: boom")

    monkeypatch.setattr(engine.Engine, "run", fail)
    assert sim_cli.run(parse(["--duration", "1m", "-q"])) == 1
    assert "simulation failed" in capsys.readouterr().err


def test_output_cut_short_by_a_closed_pipe_is_quiet():
    # `swapstation sim --list | head -1`: the reader goes away; no traceback, SIGPIPE's status.
    root = Path(__file__).resolve().parents[2]
    p = subprocess.Popen([sys.executable, "-m", "host.cli", "sim", "--list"], cwd=root,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    p.stdout.close()  # before the child writes: every write meets a closed pipe
    err = p.stderr.read().decode() if p.stderr else ""
    assert p.wait(timeout=60) == 128 + signal.SIGPIPE
    assert err == ""
