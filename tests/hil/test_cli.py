"""``swapstation hil``: exit codes, summary and traces."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from firmware.core import config
from hil import cli as hil_cli
from host.cli import main
from host.deploy import tools


def test_board_target_without_its_ports_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hil", "--target", "board", "--port", "/dev/ttyACM0"]) == 2
    assert "--chargers-adapter" in capsys.readouterr().err


def test_bad_rate_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["hil", "noise", "--rate", "2", "--out", str(tmp_path)]) == 2


@pytest.mark.parametrize("target", ["unix", "qemu"])
def test_a_swap_passes_and_leaves_summary_and_traces(tmp_path: Path, target: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["hil", "swaps", "--target", target, "--out", str(out), "--bay-scale", "0.01", "--quiet"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is True
    assert summary["problems"] == [] and summary["station"]["swaps_ok"] == 1
    [rec] = summary["swap_records"]
    assert rec["outcome"] == "ok" and rec["swap"] == 1
    assert set(hil_cli.SWAP_RECORD_NAMES.values()) - {"wall_s"} <= set(rec)  # written out, not po, si, t0
    assert rec["pack_out"] != rec["pack_in"] and rec["soc_in"] > rec["soc_out"]
    assert rec["end_ms"] > rec["start_ms"]
    steps = [c["step"] for c in summary["timeline"] if c["step"]]
    assert steps == list(config.SWAP_STEPS)
    head = (out / "chargers.csv").read_text().splitlines()
    assert head[0] == "t_ms,direction,unit,fc,length,fault,hex" and len(head) > 100
    assert summary["lines"]["chargers"]["frames"] == len(head) - 1
    assert "PASS" in capsys.readouterr().out


def test_a_refused_config_fails_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = json.loads(Path(config.default_path()).read_text())
    raw["limits"]["heartbeat_ms"] = raw["limits"]["telemetry_stale_ms"]  # must be below it
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    out = tmp_path / "run"
    # The field is built from the good config; the firmware is given the bad one.
    assert main(["hil", "swaps", "--out", str(out), "--quiet", "--firmware-config", str(bad)]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False
    assert any("limits.heartbeat_ms" in p for p in summary["problems"]), summary["problems"]
    assert "FAIL" in capsys.readouterr().out
    # A field cannot be built from a config that does not validate: that is a usage error.
    assert main(["hil", "swaps", "--out", str(out), "--quiet", "--config", str(bad)]) == 2


def test_relative_paths_from_another_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from outside the repository with relative paths and the default --out."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copyfile(config.default_path(), site / "station.json")
    monkeypatch.chdir(tmp_path)
    assert main(["hil", "swaps", "--quiet", "--bay-scale", "0.01", "--config", "site/station.json",
                 "--firmware-config", "site/station.json"]) == 0
    summary = json.loads((tmp_path / "out" / "hil" / "summary.json").read_text())
    assert summary["passed"] is True and summary["station"]["swaps_ok"] == 1
    assert summary["args"]["out"] == str(tmp_path / "out" / "hil")
    assert summary["args"]["firmware_config"] == str(site / "station.json")


def _run_refused(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, dict]:
    assert main([*argv, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err  # one line, no traceback
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False and summary["problems"]
    assert {"scenario", "target", "args", "seconds", "timeline", "lines"} <= set(summary)
    return captured.err, summary


def test_board_target_with_missing_adapters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port, chargers, bay = (str(tmp_path / n) for n in ("ttyACM9", "ttyUSB8", "ttyUSB9"))
    argv = ["hil", "swaps", "--target", "board", "--no-deploy", "--port", port,
            "--chargers-adapter", chargers, "--bay-adapter", bay]
    err, summary = _run_refused(argv, tmp_path / "run", capsys)
    assert err.startswith("swapstation hil: ")
    for opt, path in (("--port", port), ("--chargers-adapter", chargers), ("--bay-adapter", bay)):
        assert f"{opt} {path}: no such device" in err
        assert any(f"{opt} {path}: no such device" in p for p in summary["problems"])


def test_missing_micropython_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(tools, "BIN", empty)  # no micropython next to this Python
    monkeypatch.setenv("PATH", str(empty))  # nor on PATH
    err, summary = _run_refused(["hil", "swaps", "--quiet"], tmp_path / "run", capsys)
    assert err == f"swapstation hil: {tools.missing('micropython')}\n"
    assert f"{sys.executable} -m pip install -e '{tools.ROOT}[tools]'" in err
    assert summary["problems"] == [str(tools.missing("micropython"))]


def test_board_target_with_adapters_that_are_not_serial_ports(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    chargers, bay = tmp_path / "chargers", tmp_path / "bay"
    chargers.write_text("")
    bay.write_text("")
    argv = ["hil", "swaps", "--target", "board", "--no-deploy", "--port", str(tmp_path / "ttyACM9"),
            "--chargers-adapter", str(chargers), "--bay-adapter", str(bay)]
    err, summary = _run_refused(argv, tmp_path / "run", capsys)
    for opt, path in (("--chargers-adapter", chargers), ("--bay-adapter", bay)):
        assert f"{opt} {path}: cannot open it as a serial port" in err


def test_the_rig_names_the_install_command_for_a_missing_micropython(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The pytest plugin and the benches find the interpreter through the rig, not the CLI."""
    from hil import targets

    monkeypatch.setattr(tools, "BIN", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(targets.TargetError) as e:
        targets.micropython_exe()
    assert str(e.value) == str(tools.missing("micropython"))
