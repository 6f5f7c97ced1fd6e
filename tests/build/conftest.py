"""Fixtures for the build and flash tests.

The builds run on a snapshot of the source tree taken once per session: other people
edit firmware/ while the tests run, and a file saved between two builds must not make
a reproducibility test fail.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def snapshot(dest: Path) -> Path:
    shutil.copytree(
        ROOT / "firmware", dest / "firmware", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    shutil.copyfile(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


@pytest.fixture(scope="session")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention copy of firmware/ and pyproject.toml."""
    return snapshot(tmp_path_factory.mktemp("src"))


@pytest.fixture
def own_tree(tmp_path: Path) -> Path:
    """A private copy a test may change."""
    return snapshot(tmp_path / "src")
