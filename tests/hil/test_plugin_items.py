"""The HIL plugin makes items only for targets that can run them: a need marked on the
test or on one of its parameters leaves the targets without that feature out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _collect(*args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "-n", "0", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_needs_on_a_parameter_leave_out_the_targets_without_the_feature() -> None:
    ids = _collect("tests/hil/test_power.py::test_power_cut_in_each_swap_step")
    assert any("[qemu-kill-" in i for i in ids), ids
    assert any("[unix-torn_write-" in i for i in ids), ids
    # qemu's flash is RAM: a cut tears no write there, so no item stands for one
    assert not [i for i in ids if "[qemu-torn_write-" in i], ids


def test_needs_on_the_test_leave_out_the_targets_without_the_feature() -> None:
    test = "test_a_comms_hold_before_the_cut_is_confirmed_and_the_cut_still_comes"
    ids = _collect(f"tests/hil/test_power.py::{test}")
    kinds = sorted(i.rsplit("[", 1)[1].rstrip("]") for i in ids)
    assert kinds == ["qemu", "unix"], ids  # a board's lines are real: nothing silences its module there
