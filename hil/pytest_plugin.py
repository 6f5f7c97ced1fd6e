"""pytest plugin for HIL scenario tests: the rig, the target and the scenario driver.

Every test that uses ``hil_rig`` / ``hil_target`` / ``hil_driver`` (or
``hil_rig_factory``) runs once per target: ``[unix]`` (the firmware under the MicroPython
unix port, on ptys; what CI runs), ``[qemu]`` (the 32-bit single-precision build on QEMU
``mps2-an385``, booted through ``main.py``, on the same ptys; ``--hil-skip-qemu`` leaves it
out) and ``[board]`` (a controller on a bench), and with ``--hil-pico`` also ``[pico]`` (the
emulated Pico; slow: a minute of wall time per boot). The board run needs the bench on the
command line and is skipped without it::

    pytest tests/hil --hil-port /dev/ttyACM0 \\
        --hil-chargers-adapter /dev/ttyUSB0 --hil-bay-adapter /dev/ttyUSB1 \\
        [--hil-board pico] [--hil-reset dtr|rts|'relay-cmd ...'] [--hil-no-deploy]

Markers:

- ``hil``: a HIL scenario (added to every test using the fixtures).
- ``hil_needs(*features, reason=...)``: what the test needs of its target (``FEATURES``):
  ``lines`` (the paced pty lines, with fault injection), ``kill`` (a power cut from a step
  trigger inside the target), ``flash_cut`` (a torn k-th flash write), ``pins`` (the
  controller's own inputs). A target without one gets no item for the test.
- ``hil_unix_only(reason)``: needs what only the unix target offers.
- ``hil_slow_on(*targets)``: the test's items on these targets get ``slow`` (a minute or more
  there: they start first, and ``-m "not slow"`` leaves them out).
- ``hil_rig(**options)``: ``RigOptions`` fields for this test's rig (``packs``,
  ``target_config``, ``bay_scale``, ``seed`` ...).

``--hil-workdir DIR`` keeps each test's flash image, line traces (CSV) and console log
under ``DIR/<test name>``; by default they go to pytest's tmp_path.
Registered for the suite in tests/conftest.py (``pytest_plugins``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.rig import BoardOptions, Rig, RigOptions, ScenarioDriver
from hil.targets import Target

TARGETS = ("unix", "qemu", "board")
# What each target offers a test (see ``hil_needs``).
FEATURES = {
    "unix": {"lines", "kill", "flash_cut", "pins"},
    "qemu": {"lines", "kill", "flash_cut", "pins"},  # stand-in pins, a cut switch before its RAM flash
    "board": set(),
    "pico": set(),
}
_FIXTURES = {"hil_rig", "hil_target", "hil_driver", "hil_rig_factory"}
NO_BOARD = ("no board given: run with --hil-port /dev/ttyACM0 --hil-chargers-adapter /dev/ttyUSB0 "
            "--hil-bay-adapter /dev/ttyUSB1 to run this scenario on a controller (docs/hil.md)")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("hil", "HIL rig (docs/hil.md)")
    g.addoption("--hil-port", default=None, help="controller USB serial port: runs the [board] scenarios")
    g.addoption("--hil-chargers-adapter", default=None, help="USB-RS485 adapter on the charger line")
    g.addoption("--hil-bay-adapter", default=None, help="USB-RS485 adapter on the bay I/O line")
    g.addoption("--hil-board", default="pico", help="board name of firmware/boards (default pico)")
    g.addoption("--hil-reset", default="dtr",
                help="reset the board by pulsing 'dtr' or 'rts' of its USB serial, or run this command")
    g.addoption("--hil-no-deploy", action="store_true", help="the board already runs this firmware")
    g.addoption("--hil-parity", default="E", help="parity of the RS-485 adapters (N, E, O)")
    g.addoption("--hil-skip-unix", action="store_true", help="run only the [board] scenarios")
    g.addoption("--hil-skip-qemu", action="store_true",
                help="leave out the [qemu] scenarios (the qemu build of MicroPython under QEMU)")
    g.addoption("--hil-workdir", default=None, help="keep flash images, traces and logs here")
    g.addoption("--hil-bay-scale", type=float, default=None, help="bay motion time scale (default 0.03)")
    g.addoption("--hil-pico", action="store_true",
                help="also run every scenario on the emulated Pico ([pico]; a power-on costs about a "
                     "minute of wall time there)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hil: HIL scenario test (runs per target: unix, qemu, board)")
    config.addinivalue_line("markers", "hil_unix_only(reason): no item on other targets, for this reason")
    config.addinivalue_line("markers", "hil_slow_on(*targets): the test's items on these targets are slow")
    config.addinivalue_line("markers", "hil_needs(*features, reason=...): targets without one of these "
                                       "features (lines, kill, flash_cut, pins) get no item")
    config.addinivalue_line("markers", "hil_rig(**options): RigOptions for this test's rig")
    config.addinivalue_line("markers", "pico: runs on the emulated Pico (rp2040py, the dev extra)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if _FIXTURES & set(metafunc.fixturenames):
        # [pico] only on request: every scenario there pays a minute of boot and runs 25-40x
        # slower than on a controller (tests/hil/test_pico_*.py cover it with shared boots).
        extra = ("pico",) if metafunc.config.getoption("--hil-pico") else ()
        slow_on: set[str] = set()
        for m in metafunc.definition.iter_markers("hil_slow_on"):
            slow_on.update(m.args)
        # A target that cannot run the test by its nature (a torn write on a board's flash, its
        # line-level fault injection) gets no item at all: no skip stands for it. Needs marked
        # on a ``pytest.param`` are only seen on the item (pytest_collection_modifyitems).
        needs = _needs(metafunc.definition.iter_markers("hil_needs"))
        unix_only = metafunc.definition.get_closest_marker("hil_unix_only") is not None
        able = [k for k in TARGETS + extra
                if needs <= FEATURES[k] and (k == "unix" or not unix_only)]
        kinds = [pytest.param(k, marks=pytest.mark.slow) if k in slow_on else k for k in able]
        metafunc.parametrize("hil_target_kind", kinds, indirect=True)


def _needs(markers: Iterable[pytest.Mark]) -> set[str]:
    known = set().union(*FEATURES.values())
    needs: set[str] = set()
    for m in markers:
        unknown = sorted(set(m.args) - known)
        if unknown:
            raise pytest.UsageError(f"hil_needs: unknown feature(s) {unknown} (known: {sorted(known)})")
        needs.update(m.args)
    return needs


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if _FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.hil)
            callspec = getattr(item, "callspec", None)
            kind = callspec.params.get("hil_target_kind") if callspec is not None else None
            if kind in FEATURES and not _needs(item.iter_markers("hil_needs")) <= FEATURES[kind]:
                dropped.append(item)
                continue
        keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _board_options(config: pytest.Config) -> BoardOptions | None:
    port = config.getoption("--hil-port")
    if not port:
        return None
    chg = config.getoption("--hil-chargers-adapter")
    bay = config.getoption("--hil-bay-adapter")
    if not chg or not bay:
        raise pytest.UsageError("--hil-port needs --hil-chargers-adapter and --hil-bay-adapter too")
    return BoardOptions(port=port, chargers_adapter=chg, bay_adapter=bay,
                        board=config.getoption("--hil-board"), reset=config.getoption("--hil-reset"),
                        deploy=not config.getoption("--hil-no-deploy"),
                        parity=config.getoption("--hil-parity"))


@pytest.fixture
def hil_target_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    cfg = request.config
    if kind == "board" and _board_options(cfg) is None:
        pytest.skip(NO_BOARD)
    if kind == "unix" and cfg.getoption("--hil-skip-unix"):
        pytest.skip("--hil-skip-unix")
    if kind == "qemu" and cfg.getoption("--hil-skip-qemu"):
        pytest.skip("--hil-skip-qemu")
    return kind


def _workdir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    base = request.config.getoption("--hil-workdir")
    if not base:
        return tmp_path
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    d = Path(base) / name
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("*"):
        if old.is_file():
            old.unlink()
    return d


@pytest.fixture
def hil_rig_factory(request: pytest.FixtureRequest, hil_target_kind: str,
                    tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """``make(boot=True, **RigOptions fields) -> Rig`` (started). Every rig made is
    stopped at teardown; a failing test gets the target's console in its report."""
    rigs: list[Rig] = []
    workdir = _workdir(request, tmp_path)
    marker = request.node.get_closest_marker("hil_rig")
    defaults: dict[str, Any] = dict(marker.kwargs) if marker else {}
    scale = request.config.getoption("--hil-bay-scale")
    if scale is not None:
        defaults.setdefault("bay_scale", scale)
    log_path = workdir / "console.log"

    def make(boot: bool = True, **kw: Any) -> Rig:
        opts = dict(defaults, **kw)
        opts.setdefault("workdir", workdir / f"rig{len(rigs)}" if rigs else workdir)
        opts["target"] = hil_target_kind
        if hil_target_kind == "board":
            opts["board"] = _board_options(request.config)
        log_file = open(log_path, "a", buffering=1)  # noqa: SIM115  (closed at teardown)

        def log(line: str) -> None:
            log_file.write(line + "\n")

        rig = Rig(RigOptions(**opts), log=log)
        rig._log_file = log_file  # type: ignore[attr-defined]
        rigs.append(rig)
        rig.start(boot=boot)
        return rig

    yield make
    for rig in rigs:
        rig.stop()
        rig._log_file.close()  # type: ignore[attr-defined]


@pytest.fixture
def hil_rig(hil_rig_factory: Callable[..., Rig]) -> Rig:
    """A started rig (field, lines, target booted) with the test's ``hil_rig`` options."""
    return hil_rig_factory()


@pytest.fixture
def hil_target(hil_rig: Rig) -> Target:
    assert hil_rig.target is not None
    return hil_rig.target


@pytest.fixture
def hil_driver(hil_rig: Rig) -> ScenarioDriver:
    """The scenario driver of a booted, confirmed station."""
    d = hil_rig.driver()
    d.boot()
    return d


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    if rep.when == "call" and rep.failed:
        rig = getattr(item, "funcargs", {}).get("hil_rig")
        if isinstance(rig, Rig) and rig.target is not None:
            rep.sections.append(("hil rig", f"workdir {rig.workdir}{rig.target.console_tail(60)}"))
    return rep
