"""The MicroPython ``qemu`` port built for the Cortex-M3 ``mps2-an385`` machine.

The firmware meets a 32-bit interpreter there, as on a board: single-precision floats
(``MICROPY_FLOAT_IMPL=float``, as rp2 and esp32 builds use), 31-bit small ints and a
heap the size of a microcontroller's. The build follows docs of
``../shared/micropython/README.md``: the port's Makefile with LittleFS2, no frozen
modules (``frozen=`` freezes given packages, e.g. the firmware), no btree and the
``usermod/timens`` user C module (LittleFS file timestamps).

Builds are cached under ``~/.cache/swapstation/qemu/<key>/firmware.elf``
(``SWAPSTATION_QEMU_CACHE`` moves it). The key hashes every input: the source tarball's
SHA-256, the make arguments and the user C module files, so a second call with the same
inputs only checks that the file is there.

The Debian packages it needs (``gcc-arm-none-eabi libnewlib-arm-none-eabi
qemu-system-arm``) are installed by :func:`ensure_packages` when running as root; other
users get the exact ``apt-get`` command to run.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from host.deploy import debian
from host.deploy.debian import apt_command

ROOT = Path(__file__).resolve().parent.parent.parent
TARBALL = "micropython-1.29.0-preview-1c3c2011.tar.gz"
SRC_ENV = "SWAPSTATION_MICROPYTHON_SRC"
CACHE_ENV = "SWAPSTATION_QEMU_CACHE"
BOARD = "MPS2_AN385"
MACHINE = "mps2-an385"
DEFAULT_HEAP = 128 * 1024
NEWLIB_HEADER = Path("/usr/lib/arm-none-eabi/include/stdlib.h")
# Package -> a file it installs (a program on PATH, or a path).
PROBES = {
    "gcc-arm-none-eabi": "arm-none-eabi-gcc",
    "libnewlib-arm-none-eabi": str(NEWLIB_HEADER),
    "qemu-system-arm": "qemu-system-arm",
}
PACKAGES = tuple(PROBES)
KEY_VERSION = "1"  # bump when the way the build is done changes but its inputs do not
BUILD_TIMEOUT_S = 1800


class QemuBuildError(Exception):
    """A missing input or package, or a failed build; the message says what to do."""


def source_dir(src: str | os.PathLike[str] | None = None) -> Path:
    """The folder with the tarball and ``usermod/``: ``src``, else $SWAPSTATION_MICROPYTHON_SRC,
    else ``shared/micropython`` beside the checkout."""
    if src is None:
        src = os.environ.get(SRC_ENV) or ROOT.parent / "shared" / "micropython"
    return Path(src)


def tarball_path(src: str | os.PathLike[str] | None = None) -> Path:
    folder = source_dir(src)
    path = folder / TARBALL
    if not path.is_file():
        raise QemuBuildError(
            f"MicroPython source tarball not found: {path}. Put {TARBALL} there, or point "
            f"{SRC_ENV} (or the src argument) at the folder that holds it and usermod/"
        )
    return path


def usermod_dir(src: str | os.PathLike[str] | None = None) -> Path:
    path = source_dir(src) / "usermod"
    if not (path / "timens" / "micropython.mk").is_file():
        raise QemuBuildError(
            f"user C module folder not found: {path / 'timens'} (micropython.mk and timens.c); "
            f"it comes with the tarball in {source_dir(src)}"
        )
    return path


def cache_root(cache: str | os.PathLike[str] | None = None) -> Path:
    if cache is None:
        cache = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "swapstation" / "qemu"
    return Path(cache)


def make_args(heap_size: int = DEFAULT_HEAP, usermod: str = "USERMOD", manifest: str = "") -> list[str]:
    """Arguments of ``make -C ports/qemu``; ``usermod`` is the user C module folder,
    ``manifest`` a frozen-module manifest.py (none by default; ``MANIFEST`` in a key)."""
    if heap_size < 16 * 1024 or heap_size % 1024:
        raise QemuBuildError(f"heap size must be a whole number of KiB, at least 16 KiB (got {heap_size})")
    return [
        f"BOARD={BOARD}",
        f"FROZEN_MANIFEST={manifest}",
        "MICROPY_PY_BTREE=0",
        "GIT_SUBMODULES=",
        "MICROPY_VFS_LFS2=1",
        "CFLAGS_EXTRA=-DMICROPY_VFS_LFS2=1",
        "MICROPY_FLOAT_IMPL=float",
        f"MICROPY_HEAP_SIZE={heap_size}",
        f"USER_C_MODULES={usermod}",
    ]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def usermod_files(usermod: Path) -> dict[str, bytes]:
    return {
        p.relative_to(usermod).as_posix(): p.read_bytes() for p in sorted(usermod.rglob("*")) if p.is_file()
    }


def cache_key(tarball_sha256: str, args: Sequence[str], usermods: dict[str, bytes],
              frozen: dict[str, bytes] | None = None) -> str:
    """Hash of everything the image is built from. The usermod and manifest paths inside
    ``args`` are placeholders, so moving the source folder keeps the key; ``frozen`` (the
    files frozen into the image) counts by content."""
    h = hashlib.sha256()
    h.update(f"swapstation-qemu {KEY_VERSION}\n".encode())
    h.update(f"tarball {tarball_sha256}\n".encode())
    for a in args:
        h.update(f"arg {a}\n".encode())
    for name in sorted(usermods):
        h.update(f"file {name} {hashlib.sha256(usermods[name]).hexdigest()}\n".encode())
    for name in sorted(frozen or {}):
        h.update(f"frozen {name} {hashlib.sha256((frozen or {})[name]).hexdigest()}\n".encode())
    return h.hexdigest()[:24]


def firmware_package(root: Path = ROOT) -> dict[str, bytes]:
    """``firmware/**.py`` as the frozen-image build takes it: image path -> source."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted((root / "firmware").rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def missing_packages(which: Callable[[str], str | None] = shutil.which) -> list[str]:
    return debian.missing(PROBES, which)


def ensure_packages(
    *,
    which: Callable[[str], str | None] = shutil.which,
    root: Callable[[], bool] = debian.is_root,
    run: Callable[..., object] = subprocess.run,
) -> list[str]:
    """Install the Debian packages the build and the emulator need if any is missing.
    Returns what was installed. Not root and something missing: QemuBuildError with the
    command to run as root."""
    return debian.ensure(PROBES, "the qemu build", which=which, root=root, run=run, error=QemuBuildError)


def _write_frozen(folder: Path, frozen: dict[str, bytes]) -> Path:
    """The files under ``folder`` and a manifest.py freezing each top-level package there."""
    tops = set()
    for name, data in frozen.items():
        if "/" not in name or not name.endswith(".py"):
            raise QemuBuildError(f"frozen file {name!r}: expected a .py file inside a package folder")
        tops.add(name.split("/", 1)[0])
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    manifest = folder / "manifest.py"
    manifest.write_text("".join(f"package({top!r}, base_path={str(folder)!r})\n" for top in sorted(tops)))
    return manifest


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build per key at a time (pytest-xdist workers, two engineers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def firmware_elf(
    heap_size: int = DEFAULT_HEAP,
    *,
    frozen: dict[str, bytes] | None = None,
    src: str | os.PathLike[str] | None = None,
    cache: str | os.PathLike[str] | None = None,
    jobs: int = 2,
    log: Callable[[str], None] | None = None,
) -> Path:
    """The firmware.elf for these inputs: from the cache, or built into it first.

    ``frozen`` (image path -> source, e.g. :func:`firmware_package`) is frozen into the image
    as packages (``package()`` of each top folder in a manifest.py): imported without any
    filesystem, its bytecode in flash. The build then also makes the tarball's mpy-cross."""
    tarball = tarball_path(src)
    usermod = usermod_dir(src)
    key_args = make_args(heap_size, manifest="MANIFEST" if frozen else "")
    if frozen:
        key_args.append("MPY_LIB_DIR=EMPTY")
    key = cache_key(_sha256(tarball), key_args, usermod_files(usermod), frozen)
    out_dir = cache_root(cache) / key
    elf = out_dir / "firmware.elf"
    if elf.is_file():
        return elf
    with _locked(cache_root(cache) / f"{key}.lock"):
        if elf.is_file():  # built by whoever held the lock
            return elf
        missing = missing_packages()
        if missing:
            raise QemuBuildError(
                f"cannot build: missing Debian packages {', '.join(missing)}; as root run: "
                f"{apt_command(PACKAGES)} (or call ensure_packages())"
            )
        if log:
            log(f"building MicroPython qemu {BOARD} (heap {heap_size} bytes) into {out_dir}")
        cache_root(cache).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"build-{key}-", dir=cache_root(cache)) as tmp:
            work = Path(tmp)
            with tarfile.open(tarball) as tf:
                tf.extractall(work, filter="data")
            tree = work / "micropython"
            if not (tree / "ports" / "qemu" / "Makefile").is_file():
                raise QemuBuildError(f"{tarball} has no micropython/ports/qemu/Makefile")
            mods = work / "usermod"
            shutil.copytree(usermod, mods)
            manifest = ""
            if frozen:
                manifest = str(_write_frozen(work / "frozen", frozen))
            args = make_args(heap_size, str(mods), manifest)
            if frozen:
                # The frozen-content rule insists on the micropython-lib submodule (a README.md
                # in MPY_LIB_DIR) even when the manifest requires nothing from it; the tarball
                # has no submodules, so it gets an empty stand-in.
                lib = work / "no-micropython-lib"
                lib.mkdir()
                (lib / "README.md").write_text("empty: the frozen manifest uses no micropython-lib package\n")
                args.append(f"MPY_LIB_DIR={lib}")
            cmd = ["make", "-C", str(tree / "ports" / "qemu"), f"-j{jobs}", *args]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
            built = tree / "ports" / "qemu" / f"build-{BOARD}" / "firmware.elf"
            if proc.returncode != 0 or not built.is_file():
                raise QemuBuildError(
                    f"qemu port build failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
                )
            staging = work / "out"
            staging.mkdir()
            shutil.copy2(built, staging / "firmware.elf")
            (staging / "make-args.txt").write_text("\n".join(key_args) + "\n")
            if frozen:
                (staging / "frozen.txt").write_text("".join(f"{name}\n" for name in sorted(frozen)))
            if out_dir.exists():
                shutil.rmtree(out_dir)
            staging.rename(out_dir)
    return elf
