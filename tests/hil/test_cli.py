"""``swapstation hil``: exit codes, summary and traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware.core import config
from host.cli import main


def test_board_target_without_its_ports_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hil", "--target", "board", "--port", "/dev/ttyACM0"]) == 2
    assert "--chargers-adapter" in capsys.readouterr().err


def test_bad_rate_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["hil", "noise", "--rate", "2", "--out", str(tmp_path)]) == 2


def test_a_swap_passes_and_leaves_summary_and_traces(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["hil", "swaps", "--out", str(out), "--bay-scale", "0.01", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == [] and summary["station"]["swaps_ok"] == 1
    assert [r["o"] for r in summary["swap_records"]] == ["ok"]
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
    assert any("limits.heartbeat_ms" in p for p in summary["problems"]), summary["problems"]
    assert "FAIL" in capsys.readouterr().out
    # A field cannot be built from a config that does not validate: that is a usage error.
    assert main(["hil", "swaps", "--out", str(out), "--quiet", "--config", str(bad)]) == 2
