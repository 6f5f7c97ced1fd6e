"""The HIL plugin makes items only for targets that can run them: a need marked on the
test or on one of its parameters leaves the targets without that feature out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _collect(*args: str, cwd: Path = ROOT) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # this checkout's plugin, from any folder
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "-n", "0", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_needs_on_a_parameter_leave_out_the_targets_without_the_feature(tmp_path: Path) -> None:
    (tmp_path / "test_needs.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('how', ['plain',\n"
        "    pytest.param('lines', marks=pytest.mark.hil_needs('lines')),\n"
        "    pytest.param('torn', marks=pytest.mark.hil_needs('flash_cut'))])\n"
        "def test_x(hil_rig_factory, how):\n"
        "    pass\n")
    ids = _collect("-p", "hil.pytest_plugin", "--rootdir", str(tmp_path), "-c", "/dev/null", "test_needs.py",
                   cwd=tmp_path)
    kinds = sorted(i.rsplit("[", 1)[1].rstrip("]") for i in ids)
    # A board's lines are real wires and it has no cut switch; unix and qemu have both.
    assert kinds == ["board-plain", "qemu-lines", "qemu-plain", "qemu-torn",
                     "unix-lines", "unix-plain", "unix-torn"], ids


def test_the_torn_writes_of_the_power_cuts_run_on_qemu_too() -> None:
    ids = _collect("tests/hil/test_power.py::test_power_cut_in_each_swap_step")
    assert any("[qemu-kill-" in i for i in ids), ids
    assert any("[unix-torn_write-" in i for i in ids), ids
    # qemu's RAM flash sits behind a cut switch: its writes tear as the unix target's do
    assert len([i for i in ids if "[qemu-torn_write-" in i]) == 2, ids


def test_needs_on_the_test_leave_out_the_targets_without_the_feature() -> None:
    test = "test_a_comms_hold_before_the_cut_is_confirmed_and_the_cut_still_comes"
    ids = _collect(f"tests/hil/test_power.py::{test}")
    kinds = sorted(i.rsplit("[", 1)[1].rstrip("]") for i in ids)
    assert kinds == ["qemu", "unix"], ids  # a board's lines are real: nothing silences its module there
