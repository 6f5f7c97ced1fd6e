"""host.deploy.debian: install missing Debian packages as root, else name the command."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from host.deploy import debian


def test_a_probe_is_a_program_on_path_or_an_absolute_file(tmp_path: Path) -> None:
    there = tmp_path / "header.h"
    there.write_text("")
    probes = {"a": "prog-a", "b": str(there), "c": str(tmp_path / "absent.h"), "d": "prog-d"}
    assert debian.missing(probes, which=lambda p: "/usr/bin/a" if p == "prog-a" else None) == ["c", "d"]


def test_not_root_names_the_purpose_and_the_command() -> None:
    with pytest.raises(debian.MissingPackages) as e:
        debian.ensure({"mosquitto": "mosquitto"}, "the broker tests",
                      which=lambda p: None, root=lambda: False)
    assert "the broker tests needs mosquitto" in str(e.value)
    assert "as root run: apt-get update && apt-get install -y mosquitto" in str(e.value)


def test_a_package_another_process_installed_meanwhile_is_not_installed_again() -> None:
    """The check is redone under the lock: the first look saw it missing, the second not."""
    looks = iter([None, "/usr/sbin/mosquitto"])

    def run(cmd: list[str], **kw: object) -> None:
        raise AssertionError("must not run apt-get")

    assert debian.ensure({"mosquitto": "mosquitto"}, "x", which=lambda p: next(looks),
                         root=lambda: True, run=run) == []


def test_an_install_that_leaves_the_probe_missing_is_an_error() -> None:
    def run(cmd: list[str], **kw: object) -> None:
        return None

    with pytest.raises(debian.MissingPackages, match="still missing: chromium"):
        debian.ensure({"chromium": "chromium"}, "x", which=lambda p: None, root=lambda: True, run=run)


def test_apt_failure_carries_its_output() -> None:
    def run(cmd: list[str], **kw: object) -> None:
        if "install" in cmd:
            raise subprocess.CalledProcessError(100, cmd, stderr=b"E: Unable to locate package nope")

    with pytest.raises(debian.MissingPackages, match="exit 100.*\n.*Unable to locate package nope"):
        debian.ensure({"nope": "nope"}, "x", which=lambda p: None, root=lambda: True, run=run)
