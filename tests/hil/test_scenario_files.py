"""One scenario language for the simulator and the HIL rig (issue #15 part 3): the same
file runs on `swapstation sim` and `swapstation hil`, every fault kind of the schema maps
onto a rig action or is refused by name, and what a side cannot run is refused at load
time with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hil import cli as hil_cli
from hil import scenario as hil_scn
from host.cli import main
from host.sim import scenario as scn

# Three vehicles two minutes apart and a smoke alarm during the first swap: 10 min of
# scenario time, 12 s of wall time at --bay-scale 0.02 plus the last swaps' end.
BOTH = """\
name = "both-sides"
description = "three vehicles and a smoke alarm, short enough for the HIL rig"

[run]
duration = "10m"
seed = 5

[rack]
packs = [{ type = "NIO-100", count = 8, soc = 95 }, { type = "NIO-75", count = 8, soc = 95 }]

[operator]
response = "20s"

[[arrivals]]
at = "0s"
model = "NIO-ES6"
soc = 20
count = 3
every = "2m"

[[faults]]
kind = "smoke"
at = "1m"
duration = "30s"
"""


def _file(tmp_path: Path, text: str, name: str = "scenario.toml") -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


def _no_rig(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused scenario must be refused before the rig (or the simulator) starts."""
    from hil import rig
    from host.sim import engine

    monkeypatch.setattr(rig.Rig, "start", lambda *a, **k: pytest.fail("the rig started"))
    monkeypatch.setattr(engine.Engine, "run", lambda self: pytest.fail("the simulation ran"))


def test_one_file_runs_on_the_simulator_and_on_the_rig(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    f = _file(tmp_path, BOTH)
    assert main(["sim", str(f), "--out", str(tmp_path / "sim"), "--no-plots", "--quiet"]) == 0
    sim = json.loads((tmp_path / "sim" / "summary.json").read_text())
    assert sim["swaps"] == 3 and sim["faults"] == {"smoke": 1} and "smoke" in sim["alarms"]
    assert sim["vehicles"]["served"] == 3

    out = tmp_path / "hil"
    assert main(["hil", str(f), "--out", str(out), "--bay-scale", "0.02"]) == 0, \
        json.loads((out / "summary.json").read_text())["problems"]
    hil = json.loads((out / "summary.json").read_text())
    assert hil["passed"] and hil["scenario"] == "both-sides" and hil["time_scale"] == 0.02
    assert hil["vehicles"]["swapped"] == 3 == hil["station"]["swaps_ok"]
    assert [x["fault"] for x in hil["faults"]] == ["smoke at 00:01"] and hil["faults"][0]["ended_s"] > 60
    assert any("smoke" in c["hold"] for c in hil["timeline"])  # the station saw it ...
    assert hil["operator_actions"]["ack"] >= 1  # ... and the operator reset it, as in the simulator
    assert sorted(int(r["vehicle"]) for r in hil["swap_records"]) == [800_001, 800_002, 800_003]
    assert "about 12 s on the rig" in capsys.readouterr().out  # the expected wall time, said first


def test_every_fault_kind_maps_to_a_rig_action_or_is_named_unsupported() -> None:
    """A kind added to the schema without a rig action fails here, not silently on the bench."""
    assert set(hil_scn.ACTIONS) == set(scn.FAULT_KINDS)
    for kind, act in hil_scn.ACTIONS.items():
        if isinstance(act, str):
            assert act, kind  # unsupported on HIL: says why
        else:
            assert callable(act.start) and act.what, kind


@pytest.mark.parametrize("kind", scn.FAULT_KINDS)
def test_every_fault_kind_runs_in_the_simulator_or_is_named_unsupported(kind: str) -> None:
    from host.sim import engine

    fault = {"kind": kind, "at": "1m"}
    if kind in scn.SLOT_FAULTS:
        fault["slot"] = "S02"
    data = {"run": {"duration": "3m"}, "rack": {"packs": [{"type": "NIO-100", "count": 4}]},
            "demand": {"rate_per_hour": 0}, "faults": [fault]}
    sc = scn.from_dict(data, "kinds.toml")
    if kind in scn.SIM_UNSUPPORTED:
        with pytest.raises(scn.ScenarioError, match=rf"faults\[0\]\.kind: {kind} cannot run in the sim"):
            scn.check_sim(sc)
        return
    assert engine.run(sc).summary["faults"] == {kind: 1}


def test_a_kind_the_rig_cannot_run_is_refused_at_load_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    _no_rig(monkeypatch)
    monkeypatch.setitem(hil_scn.ACTIONS, "smoke", "the bench has no smoke detector input")
    assert main(["hil", str(_file(tmp_path, BOTH)), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "scenario.toml: faults[0].kind: smoke cannot run: the bench has no smoke detector input" in err
    assert "on the HIL rig" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["passed"] is False and "faults[0].kind" in summary["problems"][0]


@pytest.mark.parametrize(("fault", "field"), [
    ("kind = 'line_noise'\nat = '1m'", "faults[0].kind: line_noise needs the unix target"),
    ("kind = 'power_cut'\nat = '1m'\ncut = 'torn_write'", "faults[0].cut: torn_write needs the unix target"),
    ("kind = 'estop'\ninput = 'controller'\nstep = 'lift'\nat = '0s'",
     "faults[0].step: estop waiting for a swap step needs"),
])
def test_unix_only_actions_are_refused_on_a_board(tmp_path: Path, fault: str, field: str) -> None:
    sc = scn.load(str(_file(tmp_path, BOTH.split("[[faults]]")[0] + "[[faults]]\n" + fault + "\n")))
    hil_scn.check_hil(sc, "unix", {"NIO-ES6": 1})
    with pytest.raises(scn.ScenarioError, match="on the HIL rig") as e:
        hil_scn.check_hil(sc, "board", {"NIO-ES6": 1})
    assert field in str(e.value)
    # The qemu target has the paced lines, the step triggers and a cut switch before its flash.
    hil_scn.check_hil(sc, "qemu", {"NIO-ES6": 1})


@pytest.mark.parametrize(("edit", "needle"), [
    (("smoke", "flood"), "faults[0].kind: must be one of"),
    ('duration = "30s"', 'duration = "30s"\nslot = "S01"'),  # a field smoke does not have
    ("every = \"2m\"", "every = \"2m\"\nmodel_year = 2024"),
])
def test_a_bad_file_is_exit_2_naming_the_field_on_both_sides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str],
                                                            edit: object, needle: str) -> None:
    _no_rig(monkeypatch)
    if isinstance(edit, tuple):
        text, want = BOTH.replace(f'kind = "{edit[0]}"', f'kind = "{edit[1]}"'), needle
    else:
        text = BOTH.replace(edit, needle)
        want = "faults[0].slot" if "slot" in needle else "arrivals[0].model_year"
        want += ": unknown field"
    f = _file(tmp_path, text)
    for argv in (["sim", str(f), "--quiet"], ["hil", str(f), "--quiet", "--out", str(tmp_path / "run")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"scenario.toml: {want}" in err and err.count("\n") == 1, (argv, err)


def test_the_simulator_refuses_what_only_the_rig_can_run(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    _no_rig(monkeypatch)
    assert main(["sim", "hil-power-cut", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "hil-power-cut.toml: faults[0].kind: power_cut cannot run in the simulator" in err
    assert main(["sim", "hil-estop", "--quiet"]) == 2
    assert "faults[0].step: estop waiting for swap step 'unbolt' cannot run in the simulator" in \
        capsys.readouterr().err


def test_a_day_on_the_rig_needs_a_duration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _no_rig(monkeypatch)
    assert main(["hil", "pss4-urban-day", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "pss4-urban-day.toml: run.duration: 24 h of scenario time takes 43.2 min on the rig" in err
    assert "give --duration" in err
    # A fault that a shortened run never reaches is an error, as in the simulator.
    assert main(["hil", "fault-storm", "--duration", "2h", "--out", str(tmp_path / "run")]) == 2
    assert "grid.outages[0]: the outage at 14:00 is outside the run" in capsys.readouterr().err


def test_built_ins_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The former HIL scenarios are files, by their short names too; the old options set their fields."""
    _no_rig(monkeypatch)
    names = {n for n in scn.builtin_names() if n.startswith("hil-")}
    assert names == {"hil-swaps", "hil-estop", "hil-power-cut", "hil-dropout", "hil-noise"}
    parser = __import__("host.cli", fromlist=["build_parser"]).build_parser(["hil"])

    def load(*argv: str) -> scn.Scenario:
        return hil_cli.load(parser.parse_args(["hil", *argv]))

    assert len(load("swaps", "--swaps", "3").arrivals) == 3
    pc = load("power-cut", "--step", "store", "--cut", "torn-write").faults[0]
    assert (pc.kind, pc.step, pc.cut) == ("power_cut", "store", "torn_write")
    assert load("dropout", "--slot", "S05").faults[0].target == "S05"
    assert load("noise", "--rate", "0.05").faults[0].rate == 0.05
    with pytest.raises(scn.ScenarioError, match=r"faults\[0\]\.rate: must be <= 1"):
        load("noise", "--rate", "2")
    with pytest.raises(scn.ScenarioError, match="--rate: the scenario has no line_noise fault"):
        load("swaps", "--rate", "0.1")
    for name in names:  # every HIL built-in passes the rig's own check
        hil_scn.check_hil(load(name), "unix", {"NIO-ES6": 1})


@pytest.mark.parametrize("name", ["estop", "power-cut", "dropout", "noise"])
def test_former_hil_scenarios_run_from_their_files(name: str, tmp_path: Path) -> None:
    """`swaps` is tests/hil/test_cli.py's; the other four as they ran from the if-chain."""
    out = tmp_path / "run"
    code = main(["hil", name, "--out", str(out), "--bay-scale", "0.02", "--quiet"])
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0, summary["problems"]
    assert summary["scenario"] == f"hil-{name}" and summary["station"]["swaps_ok"] == 1
    assert [r["outcome"] for r in summary["swap_records"]] == ["ok"]
    [fault] = summary["faults"]
    holds = {h for c in summary["timeline"] for h in c["hold"]}
    if name in ("estop", "power-cut"):
        assert fault["step"] == "unbolt" and fault["ended_s"] > fault["started_s"]
    if name == "estop":
        assert "estop" in holds and summary["operator_actions"]["ack"] >= 1
    if name == "power-cut":
        assert summary["operator_actions"]["confirm"] >= 1  # the restart held for confirmation
    if name == "noise":
        assert summary["lines"]["chargers"]["faults"] > 0
