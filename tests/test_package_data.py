"""A wheel install has every file the code reads at run time: each non-Python file in the
shipped packages is covered by pyproject's package-data (setuptools leaves the rest out)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("firmware", "host", "hil")  # [tool.setuptools.packages.find] include
# built or compiled, not read at run time: the extension's sources and build products
NOT_DATA = {".py", ".pyc", ".so", ".pyx", ".pxd", ".c"}


def _covered() -> set[Path]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        data = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    out: set[Path] = set()
    for package, patterns in data.items():
        folder = ROOT.joinpath(*package.split("."))
        for pattern in patterns:
            out |= set(folder.glob(pattern))
    return out


def _data_files() -> set[Path]:
    files = set()
    for top in SHIPPED:
        for p in (ROOT / top).rglob("*"):
            if p.is_file() and p.suffix not in NOT_DATA and "__pycache__" not in p.parts:
                files.add(p)
    return files


def test_every_data_file_of_the_shipped_packages_is_package_data() -> None:
    files = _data_files()
    missing = sorted(str(p.relative_to(ROOT)) for p in files - _covered())
    assert files and not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_the_files_the_tools_read_are_among_them() -> None:
    # the station config (`swapstation build`, the rig), the board maps, the page, a scenario
    expected = {ROOT / "firmware" / "station.json", ROOT / "firmware" / "boards" / "pico.json",
                ROOT / "host" / "live" / "static" / "index.html",
                ROOT / "host" / "sim" / "scenarios" / "pss4-urban-day.toml"}
    assert expected <= _covered()
