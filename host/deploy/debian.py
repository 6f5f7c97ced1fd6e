"""Debian packages the tools and tests need: install them when root, else say how.

One place for the rule of the README: a missing package is installed by the command that
needs it when it runs as root, and otherwise the error names the exact ``apt-get`` line.
Each package is probed by a file it installs (a program on PATH, or an absolute path).
Installs are serialised across processes by a file lock, since pytest-xdist workers may
ask at the same time and dpkg takes one installer at once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

LOCK = Path(os.environ.get("TMPDIR", "/tmp")) / "swapstation-apt.lock"
# dpkg's own lock may be held by something else on the machine: wait for it, not fail.
APT_INSTALL = ("apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "--no-install-recommends")


class MissingPackages(Exception):
    """A package is missing and cannot be installed here; the message says how to."""


def is_root() -> bool:
    return os.geteuid() == 0


def apt_command(packages: Sequence[str]) -> str:
    return f"apt-get update && apt-get install -y {' '.join(packages)}"


def missing(probes: Mapping[str, str], which: Callable[[str], str | None] = shutil.which) -> list[str]:
    """The packages of ``probes`` (package -> program name or absolute path) not installed."""
    out = []
    for pkg, probe in probes.items():
        there = Path(probe).exists() if probe.startswith("/") else which(probe) is not None
        if not there:
            out.append(pkg)
    return out


def ensure(
    probes: Mapping[str, str],
    purpose: str,
    *,
    which: Callable[[str], str | None] = shutil.which,
    root: Callable[[], bool] = is_root,
    run: Callable[..., object] = subprocess.run,
    error: type[Exception] = MissingPackages,
) -> list[str]:
    """Install what of ``probes`` is missing (as root) and return it; not root and something
    missing raises ``error`` naming ``purpose`` and the command to run as root."""
    packages = list(probes)
    first = missing(probes, which)
    if not first:
        return []
    if not root():
        raise error(
            f"missing Debian packages {', '.join(first)} ({purpose} needs "
            f"{' '.join(packages)}); as root run: {apt_command(packages)}"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        todo = missing(probes, which)  # another process may have installed them meanwhile
        if not todo:
            return []
        try:
            run(["apt-get", "update"], check=True, env=env, capture_output=True)
            run([*APT_INSTALL, *packages], check=True, env=env, capture_output=True)
        except subprocess.CalledProcessError as e:
            tail = (e.stderr or b"")[-2000:]
            raise error(
                f"`{apt_command(packages)}` failed (exit {e.returncode}):\n"
                f"{tail.decode(errors='replace') if isinstance(tail, bytes) else tail}"
            ) from e
    still = missing(probes, which)
    if still:
        raise error(f"installed {' '.join(packages)} but still missing: {', '.join(still)}")
    return todo
