"""The MicroPython half of the firmware tests (tests/mpy_dual.py): each test's time is its own."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.mpy_dual import ROOT, RUNNER, micropython_command, micropython_env, parse_results

MODULE = '''
import time


def test_quick():
    pass


def test_sleeps():
    time.sleep_ms(300)


def test_fails():
    assert 1 == 2, "one is not two"
'''


def test_each_test_is_timed_inside_micropython(tmp_path: Path) -> None:
    (tmp_path / "test_timed.py").write_text(MODULE)
    proc = subprocess.run(micropython_command() + [str(RUNNER), "test_timed"], cwd=str(ROOT),
                          env=micropython_env([tmp_path]), capture_output=True, text=True, timeout=120)
    results, times = parse_results(proc.stdout)
    assert results["test_quick"] == ("ok", "")
    assert results["test_sleeps"] == ("ok", "")
    assert results["test_fails"][0] == "fail" and "one is not two" in results["test_fails"][1]
    assert set(times) == {"test_quick", "test_sleeps", "test_fails"}
    # The sleep is charged to the test that sleeps, not to the module's first test.
    assert times["test_sleeps"] >= 0.25  # ticks_us and the sleep clock differ by a little
    assert all(t >= 0.0 for t in times.values())
