"""The MicroPython half of the firmware tests (tests/mpy_dual.py): each test's time is its own."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from tests.mpy_dual import (
    ROOT,
    RUNNER,
    _module_exclusions,
    heap_bytes,
    micropython_command,
    micropython_env,
    parse_results,
    qemu_runner_script,
    run_unix_module,
)

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


def test_named_tests_run_in_the_order_given(tmp_path: Path) -> None:
    # The qemu board has the test modules as .mpy only: the plugin passes the names.
    (tmp_path / "test_timed.py").write_text(MODULE)
    cmd = micropython_command() + [str(RUNNER), "test_timed", "test_fails", "test_quick"]
    proc = subprocess.run(cmd, cwd=str(ROOT), env=micropython_env([tmp_path]), capture_output=True,
                          text=True, timeout=120)
    results, _ = parse_results(proc.stdout)
    assert list(results) == ["test_fails", "test_quick"]
    assert results["test_fails"][0] == "fail" and results["test_quick"] == ("ok", "")


def test_heap_sizes_read_like_the_unix_port_option() -> None:
    assert heap_bytes("128K") == 131072
    assert heap_bytes("1M") == 1048576
    assert heap_bytes("100000") == 100000


HANGS = '''
def test_done_first():
    pass


def test_hangs():
    while True:
        pass


def test_never_reached():
    pass
'''


def test_a_module_run_that_times_out_keeps_what_finished(tmp_path: Path) -> None:
    (tmp_path / "test_hangs.py").write_text(HANGS)
    stdout, output = run_unix_module(tmp_path / "test_hangs.py", None, None, timeout_s=3)
    results, _ = parse_results(stdout)
    assert results == {"test_done_first": ("ok", "")}
    assert "timed out after 3 s" in output


REASON = "an hour of virtual time; test_other covers it on the board"
EXCLUDING = f'''
QEMU = True
QEMU_EXCLUDE = {{"test_long": "{REASON}"}}


def test_long():
    pass


def test_other():
    pass
'''


def test_qemu_exclusions_name_tests_of_the_module_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "test_x.py"
    tree = ast.parse(EXCLUDING)
    assert _module_exclusions(tree, path) == {"test_long": REASON}
    assert _module_exclusions(ast.parse("QEMU = True\n"), path) == {}
    with pytest.raises(ValueError, match="test_x.py: QEMU_EXCLUDE names no test of the module: test_lng"):
        _module_exclusions(ast.parse(EXCLUDING.replace('"test_long"', '"test_lng"')), path)
    with pytest.raises(ValueError, match=r"must be \{test name: reason\}"):
        _module_exclusions(ast.parse(EXCLUDING.replace(REASON, " ")), path)


def test_the_qemu_board_runs_in_the_romfs_as_the_unix_port_runs_in_the_checkout() -> None:
    # Relative paths in tests (firmware/boards/pico.json, firmware/station.json) then work.
    script = qemu_runner_script(["_mprun", "test_x"])
    assert 'os.chdir("/rom")' in script and script.index("os.chdir") < script.index("import _mprun")
