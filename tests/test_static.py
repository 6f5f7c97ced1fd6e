"""Static checks, run as part of the normal pytest run: ruff on the whole project, mypy on
the firmware against the MicroPython stubs of each board port, mypy on the host code.

The MicroPython stub packages both install ``machine.pyi`` and friends at the top of
site-packages and overwrite each other, so each port's stubs are installed once into
their own folder, ``.stubs/<port>-<version>/`` (gitignored), with ``pip --target``. mypy
then takes ``machine``/``time``/``micropython`` from there (MYPYPATH) and the MicroPython
standard library (``os`` without ``os.path``, no ``dataclasses``...) from the stubs'
``stdlib`` folder (``--custom-typeshed-dir``). Errors inside the stub files are not ours
and are switched off per stub module; nothing is switched off in project code.

Run by hand: ``.venv/bin/python tests/test_static.py`` prints every finding.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from host.deploy.build import HOST_ONLY

ROOT = Path(__file__).resolve().parent.parent
STUBS_DIR = ROOT / ".stubs"
CACHE_DIR = ROOT / ".mypy_cache"
STUB_VERSION = "1.29.0.post1"  # micropython-<port>-stubs; match the MicroPython the images target
PORTS = ("rp2", "esp32")
# Firmware modules that never run on a board (POSIX serial for ptys and USB adapters) are
# checked with the host code, against CPython's library, instead of the board stubs.
HOST_ONLY_FIRMWARE = HOST_ONLY
HOST_PACKAGES = ("host", "hil")
TIMEOUT_S = 600

def _tool(name: str) -> str:
    exe = Path(sys.executable).parent / name
    found = str(exe) if exe.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"`{name}` is not installed: pip install -e '.[dev]'")
    return found


class Finding:
    def __init__(self, check: str, path: str, line: int, code: str, message: str):
        self.check, self.path, self.line, self.code, self.message = check, path, line, code, message

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.code}] {self.message}"


def _report(check: str, findings: list[Finding]) -> None:
    if findings:
        lines = "\n".join(f"  {f}" for f in findings)
        pytest.fail(
            f"{check}: {len(findings)} finding(s):\n{lines}\n"
            "Fix them. (`python tests/test_static.py` lists every check's findings.)",
            pytrace=False,
        )


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def test_findings_fail_with_their_location() -> None:
    with pytest.raises(pytest.fail.Exception) as e:
        _report("x", [Finding("x", "a.py", 9, "E2", "unused import")])
    assert "a.py:9: [E2] unused import" in str(e.value)
    _report("x", [])  # nothing found: passes


# ---------------------------------------------------------------- ruff


def ruff_findings() -> list[Finding]:
    proc = _run([_tool("ruff"), "check", "--output-format", "json", "--no-fix", "."])
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"ruff failed to run (exit {proc.returncode}):\n{proc.stderr}")
    out = []
    for item in json.loads(proc.stdout or "[]"):
        path = os.path.relpath(item["filename"], ROOT)
        out.append(Finding("ruff", path, item["location"]["row"], item["code"] or "syntax", item["message"]))
    return out


def test_ruff() -> None:
    _report("ruff", ruff_findings())


# ---------------------------------------------------------------- single-precision constants

FLOAT32_MAX = 3.4028234663852886e38


def float32_findings(root: Path = ROOT) -> list[Finding]:
    """Float literals a single-precision build cannot hold: they are inf at run time there,
    and an image with the firmware frozen in cannot be built at all (mpy-tool packs each
    constant as a C float and stops with OverflowError)."""
    import ast

    out = []
    for p in sorted((root / "firmware").rglob("*.py")):
        tree = ast.parse(p.read_text(), filename=str(p))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and type(node.value) is float:
                v = abs(node.value)
                if v > FLOAT32_MAX or 0.0 < v < 1.2e-38:
                    out.append(Finding("float32", os.path.relpath(p, root), node.lineno, "F32",
                                       f"{node.value!r} is outside single precision (inf or 0 on a board)"))
    return sorted(out, key=lambda f: (f.path, f.line))


def test_float32_findings_name_the_literal(tmp_path: Path) -> None:
    (tmp_path / "firmware").mkdir()
    (tmp_path / "firmware" / "m.py").write_text("a = 3.0e38\nb = -1e300 < a < 1e300\nc = 1e-40\n")
    found = [str(f) for f in float32_findings(tmp_path)]
    assert len(found) == 3  # 3.0e38 fits
    assert found[1].startswith("firmware/m.py:2: [F32] 1e+300 is outside single precision")
    assert found[2] == "firmware/m.py:3: [F32] 1e-40 is outside single precision (inf or 0 on a board)"


def test_firmware_float_constants_fit_single_precision() -> None:
    _report("float32", float32_findings())


# ---------------------------------------------------------------- mypy

_MYPY_LINE = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+): error: (?P<msg>.*?)(?:  \[(?P<code>[a-z-]+)\])?$")


def _mypy(args: list[str], check: str, env_path: str | None = None) -> list[Finding]:
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    if env_path:
        env["MYPYPATH"] = env_path
    proc = _run([sys.executable, "-m", "mypy", *args], env=env)
    if proc.returncode not in (0, 1) or ("error:" not in proc.stdout and proc.returncode == 1):
        raise RuntimeError(f"mypy failed to run (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    out = []
    for line in proc.stdout.splitlines():
        m = _MYPY_LINE.match(line)
        if m:
            path = os.path.relpath(m["path"], ROOT) if os.path.isabs(m["path"]) else m["path"]
            out.append(Finding(check, path, int(m["line"]), m["code"] or "error", m["msg"]))
    return out


def stubs_for(port: str) -> Path:
    """``.stubs/<port>-<version>``, installed on first use (atomically: two engineers may
    run the tests at the same time in one checkout)."""
    dest = STUBS_DIR / f"{port}-{STUB_VERSION}"
    if (dest / "machine.pyi").exists():
        return dest
    STUBS_DIR.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{port}-", dir=STUBS_DIR))
    try:
        # With its dependency, micropython-stdlib-stubs: that is the MicroPython typeshed.
        proc = _run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
                str(tmp),
                f"micropython-{port}-stubs=={STUB_VERSION}",
            ]
        )
        if proc.returncode != 0 or not (tmp / "machine.pyi").exists():
            raise RuntimeError(
                f"could not install micropython-{port}-stubs=={STUB_VERSION} into {tmp}:\n"
                + proc.stderr[-3000:]
            )
        try:
            tmp.rename(dest)
        except OSError:  # someone else finished first
            if not (dest / "machine.pyi").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _stub_modules(stubs: Path) -> list[str]:
    """Top-level module names the stub folder provides (their own errors are not ours)."""
    names = set()
    for p in stubs.iterdir():
        if p.suffix == ".pyi":
            names.add(p.stem)
        elif p.is_dir() and p.name.isidentifier() and any(p.glob("*.pyi")):
            names.add(p.name)
    return sorted(names)


def _firmware_files() -> list[str]:
    files = []
    for p in sorted((ROOT / "firmware").rglob("*.py")):
        rel = p.relative_to(ROOT).as_posix()
        if rel not in HOST_ONLY_FIRMWARE:
            files.append(rel)
    return files


def firmware_config(port: str, stubs: Path) -> Path:
    mods = _stub_modules(stubs)
    text = "\n".join(
        [
            "[mypy]",
            "python_version = 3.11",
            "check_untyped_defs = True",
            "warn_unused_ignores = False",
            "warn_redundant_casts = True",
            # Firmware is unannotated MicroPython code: an empty {} or [] needs no annotation,
            # and an attribute set to None in __init__ and filled in later needs no assert
            # before each use (asserts cost flash and time on the board).
            "disable_error_code = var-annotated, union-attr",
            "",
            f"[mypy-{','.join(m + ',' + m + '.*' for m in mods)}]",
            "ignore_errors = True",
            "",
        ]
    )
    cfg = STUBS_DIR / f"mypy-{port}.ini"
    tmp = cfg.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(cfg)
    return cfg


def firmware_findings(port: str) -> list[Finding]:
    stubs = stubs_for(port)
    cfg = firmware_config(port, stubs)
    args = [
        "--config-file",
        str(cfg),
        "--custom-typeshed-dir",
        str(stubs),
        "--cache-dir",
        str(CACHE_DIR / f"fw-{port}"),
        "--no-error-summary",
        "--show-error-codes",
        "--no-pretty",
        *_firmware_files(),
    ]
    return _mypy(args, f"mypy-{port}", env_path=str(stubs))


@pytest.mark.parametrize("port", PORTS)
def test_mypy_firmware(port: str) -> None:
    _report(f"mypy-{port}", firmware_findings(port))


HOST_CONFIG = """\
[mypy]
python_version = 3.11
check_untyped_defs = True
warn_unused_ignores = True
warn_redundant_casts = True
no_implicit_optional = True
ignore_missing_imports = True

# The firmware is checked against the MicroPython stubs above; here it only lends its types.
[mypy-firmware.*]
follow_imports = silent
"""


def host_findings() -> list[Finding]:
    targets = [p for p in HOST_PACKAGES if (ROOT / p).is_dir()]
    targets += [p for p in HOST_ONLY_FIRMWARE if (ROOT / p).is_file()]
    STUBS_DIR.mkdir(exist_ok=True)
    cfg = STUBS_DIR / "mypy-host.ini"
    tmp = cfg.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(HOST_CONFIG)
    tmp.replace(cfg)
    args = [
        "--config-file",
        str(cfg),
        "--cache-dir",
        str(CACHE_DIR / "host"),
        "--no-error-summary",
        "--show-error-codes",
        "--no-pretty",
        *targets,
    ]
    return _mypy(args, "mypy-host")


def test_mypy_host() -> None:
    _report("mypy-host", host_findings())


if __name__ == "__main__":
    # Lists every check's findings.
    for name, fn in [("ruff", ruff_findings), ("float32", float32_findings), ("mypy-host", host_findings)] + [
        (f"mypy-{p}", lambda p=p: firmware_findings(p)) for p in PORTS
    ]:
        found = fn()
        print(f"== {name}: {len(found)} finding(s)")
        for f in found:
            print(f"  {f}")
