"""The ``swapstation`` entry point: --version, the command list, and what a cheap command imports."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest

from host.cli import main
from tests.build.conftest import ROOT

COMMANDS = ("build", "flash", "demo", "sim", "hil")
HEAVY = ("pymodbus", "matplotlib", "serial", "numpy")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    with open(ROOT / "pyproject.toml", "rb") as f:
        want = tomllib.load(f)["project"]["version"]
    assert capsys.readouterr().out == f"swapstation {want}\n"


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"\n    {name} " in out, out
    assert "deploy an image to a board" in out or "copy a built image to a board" in out


def test_a_command_still_has_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    assert "--board" in capsys.readouterr().out


def _imported_after(argv: list[str]) -> list[str]:
    code = (
        "import json, sys\n"
        "from host.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "top = {m.split('.')[0] for m in sys.modules}\n"
        f"print('@@' + json.dumps(sorted(top & {set(HEAVY)!r})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = [x for x in proc.stdout.splitlines() if x.startswith("@@")][-1]
    return list(json.loads(line[2:]))


@pytest.mark.parametrize("argv", [["--version"], ["sim", "--list"], ["build", "--help"], ["hil", "--help"]])
def test_cheap_commands_import_no_field_or_plot_libraries(argv: list[str]) -> None:
    assert _imported_after(argv) == []
