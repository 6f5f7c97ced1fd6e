"""host.deploy.qemu_build without the toolchain: cache keys, settings and error messages."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from host.deploy import debian
from host.deploy import qemu_build as q

ARGS = q.make_args(128 * 1024)
MODS = {"timens/micropython.mk": b"SRC_USERMOD_C += timens.c\n", "timens/timens.c": b"int x;\n"}


def test_cache_key_is_stable_and_covers_every_input() -> None:
    key = q.cache_key("a" * 64, ARGS, MODS)
    assert key == q.cache_key("a" * 64, list(ARGS), dict(reversed(list(MODS.items()))))
    others = {
        q.cache_key("b" * 64, ARGS, MODS),  # another tarball
        q.cache_key("a" * 64, q.make_args(96 * 1024), MODS),  # another heap
        q.cache_key("a" * 64, ARGS, {**MODS, "timens/timens.c": b"int y;\n"}),  # a usermod edit
        q.cache_key("a" * 64, ARGS, {**MODS, "extra/x.c": b""}),  # a usermod added
    }
    assert key not in others and len(others) == 4


def test_make_args_ask_for_single_precision_lfs2_and_the_heap() -> None:
    args = q.make_args(100 * 1024, "/src/usermod")
    assert "MICROPY_FLOAT_IMPL=float" in args
    assert "MICROPY_VFS_LFS2=1" in args and "CFLAGS_EXTRA=-DMICROPY_VFS_LFS2=1" in args
    assert "MICROPY_HEAP_SIZE=102400" in args and "USER_C_MODULES=/src/usermod" in args
    # The key uses a placeholder for the usermod path: moving the sources keeps the cache.
    assert "USER_C_MODULES=USERMOD" in q.make_args(100 * 1024)
    with pytest.raises(q.QemuBuildError, match="whole number of KiB"):
        q.make_args(100 * 1024 + 1)


def test_missing_tarball_names_the_path_and_the_setting(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(q.QemuBuildError) as e:
        q.firmware_elf(src=tmp_path, cache=tmp_path / "cache")
    assert str(tmp_path / q.TARBALL) in str(e.value) and q.SRC_ENV in str(e.value)
    monkeypatch.setenv(q.SRC_ENV, str(tmp_path / "elsewhere"))
    assert q.source_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv(q.SRC_ENV)
    assert q.source_dir() == q.ROOT.parent / "shared" / "micropython"


def test_missing_usermod_is_named(tmp_path: Path) -> None:
    (tmp_path / q.TARBALL).write_bytes(b"not really")
    with pytest.raises(q.QemuBuildError, match="user C module folder not found: .*timens"):
        q.firmware_elf(src=tmp_path, cache=tmp_path / "cache")


def test_a_cached_image_is_returned_without_building(tmp_path: Path) -> None:
    (tmp_path / q.TARBALL).write_bytes(b"tarball bytes")
    (tmp_path / "usermod" / "timens").mkdir(parents=True)
    (tmp_path / "usermod" / "timens" / "micropython.mk").write_bytes(b"mk")
    key = q.cache_key(
        q._sha256(tmp_path / q.TARBALL), q.make_args(), q.usermod_files(tmp_path / "usermod")
    )
    elf = tmp_path / "cache" / key / "firmware.elf"
    elf.parent.mkdir(parents=True)
    elf.write_bytes(b"\x7fELF")
    assert q.firmware_elf(src=tmp_path, cache=tmp_path / "cache") == elf  # "tarball" never opened


def _which_none(prog: str) -> str | None:
    return None


def test_not_root_and_packages_missing_gives_the_apt_command() -> None:
    with pytest.raises(q.QemuBuildError) as e:
        q.ensure_packages(which=_which_none, root=lambda: False)
    msg = str(e.value)
    apt = "apt-get update && apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
    assert apt in msg
    assert "gcc-arm-none-eabi" in msg.split(";")[0] and "qemu-system-arm" in msg.split(";")[0]


def test_root_installs_the_missing_packages_with_apt_get() -> None:
    calls: list[list[str]] = []
    installed = {"done": False}

    def run(cmd: list[str], **kw: object) -> None:
        calls.append(cmd)
        if "install" in cmd:
            installed["done"] = True

    def which(prog: str) -> str | None:
        return "/usr/bin/" + prog if installed["done"] else None

    assert q.ensure_packages(which=which, root=lambda: True, run=run)  # reports what it installed
    assert calls == [["apt-get", "update"], [*debian.APT_INSTALL, *q.PACKAGES]]


def test_a_failing_apt_get_is_reported_with_its_output() -> None:
    def run(cmd: list[str], **kw: object) -> None:
        raise subprocess.CalledProcessError(100, cmd, stderr=b"E: Unable to locate package")

    with pytest.raises(q.QemuBuildError, match="exit 100.*\n.*Unable to locate package"):
        q.ensure_packages(which=_which_none, root=lambda: True, run=run)


def test_nothing_missing_installs_nothing() -> None:
    def run(cmd: list[str], **kw: object) -> None:
        raise AssertionError("must not run apt-get")

    def which(prog: str) -> str | None:
        return "/usr/bin/" + prog

    if q.NEWLIB_HEADER.is_file():
        assert q.ensure_packages(which=which, root=lambda: False, run=run) == []
    else:
        assert q.missing_packages(which) == ["libnewlib-arm-none-eabi"]


def test_frozen_files_count_in_the_key_by_content_and_get_a_manifest(tmp_path: Path) -> None:
    fw = {"firmware/__init__.py": b"", "firmware/core/a.py": b"x = 1\n"}
    frozen_args = q.make_args(128 * 1024, manifest="MANIFEST")
    assert "FROZEN_MANIFEST=MANIFEST" in frozen_args and "FROZEN_MANIFEST=" in q.make_args()
    key = q.cache_key("a" * 64, frozen_args, MODS, fw)
    assert key != q.cache_key("a" * 64, ARGS, MODS)  # frozen or not
    assert key != q.cache_key("a" * 64, frozen_args, MODS, {**fw, "firmware/core/a.py": b"x = 2\n"})
    assert q.cache_key("a" * 64, ARGS, MODS, None) == q.cache_key("a" * 64, ARGS, MODS)  # old keys hold
    manifest = q._write_frozen(tmp_path / "frozen", fw)
    assert manifest.read_text() == f"package('firmware', base_path={str(tmp_path / 'frozen')!r})\n"
    assert (tmp_path / "frozen" / "firmware" / "core" / "a.py").read_bytes() == b"x = 1\n"
    with pytest.raises(q.QemuBuildError, match="inside a package folder"):
        q._write_frozen(tmp_path / "bad", {"main.py": b""})
    assert "firmware/drivers/mps2.py" in q.firmware_package() and "firmware/main.py" in q.firmware_package()
