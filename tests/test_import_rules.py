"""Dependencies point one way (docs/architecture.md): firmware (core -> hal -> drivers)
depends on nothing of the host; the plant depends on the firmware's register map; the
field devices (``host.devices``) sit on the plant; the simulator (``host.sim``: buses,
engine, firmware runner, operator) and the HIL rig sit on the devices; the network twin
sits on the simulator, the deploy tools (``host.deploy``) beside it; the CLIs sit on top;
nothing ships code that imports the tests. Every import statement in firmware/, host/,
hil/ and bench/ is read (function-level ones too) and checked against the rules below.

``KNOWN`` lists the wrong-way imports still to be removed (issue #15), each with what
replaces it. An entry that no longer occurs fails the test too, so the list only shrinks.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST_ONLY_LIBS = ("numpy", "pymodbus", "serial", "dask", "distributed", "pyarrow", "matplotlib", "scipy",
                  "starlette", "uvicorn")

# (importer prefix, imported prefix, why not): an import that matches a rule breaks it.
RULES: tuple[tuple[str, str, str], ...] = (
    *(("firmware", p, "the firmware depends on nothing of the host") for p in
      ("host", "hil", "tests", "bench")),
    *(("firmware", p, "the firmware runs on MicroPython") for p in HOST_ONLY_LIBS),
    *(("firmware.hal", p, "the HAL is the bottom layer") for p in
      ("firmware.core", "firmware.proto", "firmware.drivers", "firmware.boards", "firmware.main")),
    *(("firmware.proto", p, "protocols sit on the HAL only") for p in
      ("firmware.core", "firmware.drivers", "firmware.boards", "firmware.main")),
    *(("firmware.core", p, "core reaches hardware through the HAL it is handed") for p in
      ("firmware.drivers", "firmware.boards", "firmware.main")),
    *(("firmware.drivers", p, "drivers implement the HAL; they do not drive the station") for p in
      ("firmware.core", "firmware.boards", "firmware.main")),
    *(("host.plant", p, "the plant depends on the firmware's register map only") for p in
      ("firmware.core", "firmware.drivers", "firmware.hal", "firmware.boards", "firmware.main")),
    *(("host.plant", p, "the plant sits under the engine, the rig and the reports") for p in
      ("host.sim", "host.fleet", "host.deploy", "host.cli", "hil")),
    *(("host.plant", p, "the devices sit on the plant (it raises their codes only)") for p in
      ("host.devices.bay", "host.devices.charger", "host.devices.rtu")),
    *(("host.devices", p, "the devices sit under the simulator's buses, the engine and the rig") for p in
      ("host.sim", "host.fleet", "host.deploy", "host.cli", "hil")),
    *((p, "host.live", "the live view sits on the engine (Engine.pace), which does not know it") for p in
      ("host.plant", "host.devices", "host.sim.engine", "host.sim.firmware", "host.sim.operator",
       "host.sim.scenario_plant", "host.sim.buses", "host.sim.kpi", "host.sim.scenario")),
    *(("host.sim", p, "the network twin and the deploy tools sit beside or on the simulator") for p in
      ("host.fleet", "host.deploy", "host.backend")),
    *(("host.deploy", p, "building and flashing an image need nothing of the simulator") for p in
      ("host.plant", "host.devices", "host.sim", "host.fleet", "host.live", "host.backend")),
    ("host.devices.codes", "host.plant", "the codes are the device layer's bottom: the plant raises them"),
    ("host", "hil", "the host's simulator and tools sit beside the rig, not on it"),
    ("host", "tests", "shipped code does not import the tests"),
    ("host", "bench", "shipped code does not import the benchmarks"),
    ("hil", "tests", "shipped code does not import the tests"),
    ("hil", "bench", "shipped code does not import the benchmarks"),
    ("bench", "tests", "a benchmark uses the project's own modules, not the test suite's"),
)

# (importing file, imported module) -> what removes it
KNOWN: dict[tuple[str, str], str] = {}


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, which is ``module``."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                yield node.lineno, ".".join([*base, node.module] if node.module else base)
            elif node.module:
                yield node.lineno, node.module


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _rule_breaks(importer: str, name: str) -> list[str]:
    return [why for src, dst, why in RULES if _matches(importer, src) and _matches(name, dst)]


def _violations() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for top in ("firmware", "host", "hil", "bench"):
        for path in sorted((ROOT / top).rglob("*.py")):
            importer = _module_of(path)
            rel = path.relative_to(ROOT).as_posix()
            for line, name in _imports(path, importer):
                for why in _rule_breaks(importer, name):
                    found.setdefault((rel, name), []).append(f"{rel}:{line}: imports {name}: {why}")
    return found


def test_dependencies_point_one_way() -> None:
    found = _violations()
    new = [msg for key, msgs in sorted(found.items()) if key not in KNOWN for msg in msgs]
    assert not new, "wrong-way imports:\n" + "\n".join(new)


def test_every_known_wrong_way_import_still_exists() -> None:
    """A removed one comes off KNOWN, so the list says what is left to do."""
    found = _violations()
    stale = [f"{f} -> {m}" for f, m in KNOWN if (f, m) not in found]
    assert not stale, "fixed, remove from KNOWN: " + ", ".join(stale)


def test_the_rules_catch_a_wrong_way_import(tmp_path: Path) -> None:
    """The scanner sees function-level and relative imports, the usual ways one slips in."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from host.sim.engine import Engine\n    from . import sibling\n"
                 "    from .. import buses\n")
    names = [name for _, name in _imports(f, "host.plant.m")]
    assert names == ["host.sim.engine", "host.plant", "host"]
    assert _rule_breaks("host.plant.m", "host.sim.engine")
    assert _rule_breaks("firmware.core.bay", "firmware.drivers.board")
    assert _rule_breaks("bench.x", "tests.mpy_dual")
    assert not _rule_breaks("host.sim.engine", "host.plant.charging")  # the engine sits on the plant
    assert not _rule_breaks("host.plant.charging", "firmware.proto.regmap")
    assert _rule_breaks("host.plant.charging", "host.devices.charger")
    assert not _rule_breaks("host.plant.charger_regs", "host.devices.codes")
    assert _rule_breaks("host.devices.bay", "hil.emulators.field")
    assert _rule_breaks("host.sim.operator", "host.live.pacer")
    assert _rule_breaks("host.deploy.build", "host.sim.scenario")
    assert not _rule_breaks("host.sim.cli", "host.live.server")  # the subcommand starts the view
    assert not _rule_breaks("host.fleet.runner", "host.sim.kpi")


def test_the_cli_lists_scenarios_without_the_rig_or_the_cluster_installed() -> None:
    """Subcommands are imported lazily: ``swapstation sim --list`` needs none of pymodbus,
    pyserial, Dask, pyarrow or matplotlib (a planner's machine may lack the rig's parts)."""
    code = ("import sys\n"
            "for m in ('pymodbus', 'serial', 'dask', 'distributed', 'pyarrow', 'matplotlib', 'hil'):\n"
            "    sys.modules[m] = None\n"
            "from host import cli\n"
            "sys.exit(cli.main(['sim', '--list']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pss4-urban-day (default)" in proc.stdout
