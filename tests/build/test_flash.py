"""`swapstation flash` against a fake board (tests/build/fake_mpremote.py): the mpremote
commands, copying only what changed, and every failure leaving no half-written image
running."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from firmware.boards import image as board_image
from host.deploy import build, flash, tools
from host.cli import main as cli_main
from tests.build.fake_mpremote import FakeBoard, parse, put_files

PORT = "/dev/ttyACM0"
JOURNAL = {"data/journal.log": b"1 boot\n2 swap\n"}  # station data: never the flasher's to touch


@pytest.fixture(scope="module")
def images(source_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Image A, and image B with one module changed, one added and one removed."""
    base = tmp_path_factory.mktemp("images")
    a = base / "a"
    build.build_image(a, "pico", root=source_tree)
    src_b = base / "src-b"
    import shutil

    shutil.copytree(source_tree, src_b)
    hal = src_b / "firmware" / "hal" / "__init__.py"
    hal.write_text(hal.read_text() + "\n\nEXTRA = 1\n")
    (src_b / "firmware" / "core" / "added_in_b.py").write_text("X = 2\n")
    (src_b / "firmware" / "proto" / "regmap.py").unlink()
    b = base / "b"
    build.build_image(b, "pico", root=src_b)
    return {"a": a, "b": b}


@pytest.fixture
def board(tmp_path: Path) -> FakeBoard:
    b = FakeBoard(tmp_path / "board", PORT)
    put_files(b, JOURNAL)
    return b


def _flasher(image: Path, board: FakeBoard, **kw) -> flash.Flasher:
    logs: list[str] = []
    f = flash.Flasher(
        image,
        PORT,
        ["mpremote"],
        runner=board,
        device_root=board.device_root,
        log=logs.append,
        sleep=lambda s: None,
        **kw,
    )
    f.logs = logs  # type: ignore[attr-defined]
    return f


def _image_files(image: Path) -> dict[str, bytes]:
    return {p.relative_to(image).as_posix(): p.read_bytes() for p in sorted(image.rglob("*")) if p.is_file()}


def _manifest(image: Path) -> dict:
    return json.loads((image / "manifest.json").read_text())


def _copied(board: FakeBoard) -> list[str]:
    return [w[: -len(board_image.STAGING)] for w in board.writes]


def test_first_flash(images, board) -> None:
    result = _flasher(images["a"], board).flash()
    assert board.tree() == {**_image_files(images["a"]), **JOURNAL}  # exactly the image, data kept
    m = _manifest(images["a"])
    assert sorted(result["copied"]) == sorted(m["files"])
    assert board.writes[-1] == "manifest.json.new"  # the manifest is written last
    assert sorted(_copied(board)[:-1]) == sorted(m["files"])
    assert board.boots[0].startswith("refuses: a flash is in progress")  # the reset into the marker
    assert board.boots[-1] == "starts " + m["image_sha256"][:12]
    assert board_image.check(board.device_root)["image_sha256"] == m["image_sha256"]


def test_reflash_copies_only_the_manifest(images, board) -> None:
    _flasher(images["a"], board).flash()
    board.writes.clear()
    result = _flasher(images["a"], board).flash()
    assert result["copied"] == [] and result["removed"] == []
    assert board.writes == ["manifest.json.new"]
    assert board.tree() == {**_image_files(images["a"]), **JOURNAL}


def test_update_copies_changes_and_removes_old_files(images, board) -> None:
    _flasher(images["a"], board).flash()
    board.writes.clear()
    result = _flasher(images["b"], board).flash()
    assert sorted(result["copied"]) == ["firmware/core/added_in_b.mpy", "firmware/hal/__init__.mpy"]
    assert result["removed"] == ["firmware/proto/regmap.mpy"]
    assert board.tree() == {**_image_files(images["b"]), **JOURNAL}
    assert board.boots[-1] == "starts " + _manifest(images["b"])["image_sha256"][:12]


def test_commands_are_valid_mpremote(images, board) -> None:
    _flasher(images["a"], board).flash()
    for argv in board.calls:
        parsed = parse(argv[1:])  # raises on anything mpremote would refuse
        assert parsed[0][0] == "connect" and parsed[0][1].device == [PORT]
    copies = [argv for argv in board.calls if "cp" in argv]
    assert len(copies) == 2  # one mpremote run for the image, one for the manifest
    assert copies[0].count("+") == len(_manifest(images["a"])["files"]) - 1


def test_dry_run_prints_commands_and_touches_nothing(images, tmp_path) -> None:
    def no_board(argv):
        raise AssertionError("dry run ran " + " ".join(argv))

    f = flash.Flasher(images["a"], PORT, ["mpremote"], runner=no_board)
    lines = f.dry_run()
    assert lines[0].startswith("#") and "set -e" in lines
    assert f'IMAGE_PY="$(cat {flash.IMAGE_PY})"' in lines
    cmds = [line for line in lines if line.startswith("mpremote")]
    assert all(line.startswith(f"mpremote connect {PORT} ") for line in cmds)
    call = 'print("@@SWAPSTATION " + json.dumps(board_info("/")))'
    assert cmds[0] == f"""mpremote connect {PORT} exec "$IMAGE_PY"'\n{call}\n'"""
    assert cmds[-1] == f"mpremote connect {PORT} reset"
    cp = [line for line in cmds if " fs cp -f " in line]
    assert len(cp) == 2
    for rel in _manifest(images["a"])["files"]:
        assert f"{images['a'] / rel} :/{rel}.new" in cp[0]


def _mpremote_script(tmp_path: Path, board: FakeBoard) -> Path:
    """An ``mpremote`` executable that is the fake board: each run acts on its folder."""
    script = tmp_path / "bin" / "mpremote"
    script.parent.mkdir()
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(build.ROOT)!r})\n"
        "from pathlib import Path\n"
        "from tests.build.fake_mpremote import FakeBoard\n"
        f"res = FakeBoard(Path({str(board.root)!r}), {board.port!r})(sys.argv)\n"
        "sys.stdout.write(res.stdout)\n"
        "sys.stderr.write(res.stderr)\n"
        "sys.exit(res.returncode)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_dry_run_is_a_script_a_person_can_run(images, board, tmp_path) -> None:
    """The printed commands, run by sh with mpremote answering as the board, flash it."""
    f = flash.Flasher(images["a"], PORT, [str(_mpremote_script(tmp_path, board))],
                      device_root=board.device_root)
    script = "\n".join(f.dry_run()) + "\n"
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert board.tree() == {**_image_files(images["a"]), **JOURNAL}
    m = _manifest(images["a"])
    assert board_image.check(board.device_root)["image_sha256"] == m["image_sha256"]


# ---------------------------------------------------------------- refusals before anything is written


def _refused(images, board, patch: dict, message: str) -> flash.FlashError:
    _flasher(images["a"], board).flash()
    board.info_patch = patch
    before = board.tree()
    calls = len(board.calls)
    with pytest.raises(flash.FlashError) as e:
        _flasher(images["b"], board).flash()
    assert message in str(e.value)
    assert e.value.state == "nothing was written to the board"
    assert board.tree() == before
    assert len(board.calls) == calls + 1  # only the question
    return e.value


def test_no_board(images, tmp_path) -> None:
    board = FakeBoard(tmp_path / "b", port="/dev/ttyUSB3")  # the board is on another port
    with pytest.raises(flash.FlashError) as e:
        _flasher(images["a"], board).flash()
    assert f"no MicroPython board answered on {PORT}" in str(e.value)
    assert len(board.calls) == 1


def test_wrong_micropython_version(images, board) -> None:
    e = _refused(
        images, board, {"version": [1, 24, 1]}, "the board runs MicroPython 1.24.1, the image is built for"
    )
    assert "--micropython 1.24.1" in str(e)


def test_wrong_mpy_version(images, board) -> None:
    m = _manifest(images["a"])
    major, minor = (int(x) for x in m["target"]["micropython"].split("."))
    _refused(
        images,
        board,
        {"mpy": 5, "version": [major, minor, 0]},
        "the board loads .mpy 5.0, the image has .mpy 6.3 files",
    )


def test_wrong_port(images, board) -> None:
    _refused(images, board, {"platform": "esp32"}, "the image is for rp2 (pico), the board is 'esp32'")


def test_not_micropython(images, board) -> None:
    _refused(images, board, {"name": "circuitpython"}, "not MicroPython")


# ---------------------------------------------------------------- failures while copying: the old image stays


def _failed_update(images, board, fault: dict, message: str) -> flash.FlashError:
    _flasher(images["a"], board).flash()
    for k, v in fault.items():
        setattr(board, k, v)
    before = board.tree()
    with pytest.raises(flash.FlashError) as e:
        _flasher(images["b"], board).flash()
    assert message in str(e.value), str(e.value)
    assert e.value.state == "the old image is intact and was restarted"
    assert board.tree() == before  # no copies, no marker left behind
    assert board.boots[-1] == "starts " + _manifest(images["a"])["image_sha256"][:12]
    return e.value


def test_failed_copy(images, board) -> None:
    _failed_update(images, board, {"fail_copy": "firmware/hal/__init__.mpy.new"}, "copying failed")


def test_copy_that_lands_damaged(images, board) -> None:
    e = _failed_update(
        images,
        board,
        {"corrupt_copy": "firmware/hal/__init__.mpy.new"},
        "copy firmware/hal/__init__.mpy.new does not match the image",
    )
    assert "read back" in str(e)


def test_full_filesystem_found_before_copying(images, board) -> None:
    _flasher(images["a"], board).flash()
    board.capacity = board.used() + 1000  # the changed files need blocks this board lacks
    before = board.tree()
    writes = len(board.writes)
    with pytest.raises(flash.FlashError) as e:
        _flasher(images["b"], board).flash()
    assert "filesystem is full: the 2 changed files need about" in str(e.value) and "are free" in str(e.value)
    assert e.value.state == "the old image is intact and was restarted"
    assert board.tree() == before
    assert len(board.writes) == writes  # refused before copying anything


def test_full_filesystem_while_copying(images, board) -> None:
    _flasher(images["a"], board).flash()
    board.capacity = board.used() + 200  # the board says there is room, then has none
    board.info_patch = {"free": 10**6}
    before = board.tree()
    with pytest.raises(flash.FlashError) as e:
        _flasher(images["b"], board).flash()
    assert "copying: the board's filesystem is full" in str(e.value)
    assert e.value.state == "the old image is intact and was restarted"
    assert board.tree() == before


def test_board_lost_after_the_move_does_not_start(images, board) -> None:
    _flasher(images["a"], board).flash()
    board.gone_after = None

    moved = []

    def watch(code: str) -> None:
        if "commit(" in code and not moved:
            moved.append(len(board.calls))
            board.gone_after = len(board.calls)  # unplugged right after this command

    board.on_exec = watch
    with pytest.raises(flash.FlashError) as e:
        _flasher(images["b"], board).flash()
    assert "no MicroPython board answered" in str(e.value)
    assert e.value.state == "the board has no manifest and will not start: flash again"
    with pytest.raises(board_image.ImageError):
        board_image.check(board.device_root)
    # and flashing again repairs it
    board.gone_after = None
    board.on_exec = None
    _flasher(images["b"], board).flash()
    assert board.tree() == {**_image_files(images["b"]), **JOURNAL}


def test_leftovers_of_an_interrupted_flash_are_cleaned(images, board) -> None:
    _flasher(images["a"], board).flash()
    put_files(board, {".flashing": b"x", "firmware/core/added_in_b.mpy.new": b"half", "main.py.new": b"hal"})
    with pytest.raises(board_image.ImageError, match="in progress"):
        board_image.check(board.device_root)
    _flasher(images["b"], board).flash()
    assert board.tree() == {**_image_files(images["b"]), **JOURNAL}


def test_cleanup_failure_is_reported(images, board) -> None:
    _flasher(images["a"], board).flash()
    board.fail_copy = "firmware/hal/__init__.mpy.new"

    def vanish(code: str) -> None:
        if "abandon(" in code:
            board.gone_after = len(board.calls) - 1

    board.on_exec = vanish
    with pytest.raises(flash.FlashError) as e:
        _flasher(images["b"], board).flash()
    assert "cleaning up failed too" in e.value.state and ".flashing marker" in e.value.state


# ---------------------------------------------------------------- the command line


def test_cli_bad_image_folder(capsys, tmp_path) -> None:
    code = cli_main(["flash", str(tmp_path), "--port", PORT, "--dry-run"])
    assert code == 2
    assert "no manifest.json" in capsys.readouterr().err


@pytest.mark.parametrize("make", [None, "file"])
def test_cli_image_folder_missing_or_a_file(capsys, tmp_path, make) -> None:
    image = tmp_path / "image-pico"
    if make == "file":
        image.write_text("not an image")
    code = cli_main(["flash", str(image), "--port", PORT, "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "manifest" not in err
    want = "is a file, not an image folder" if make else "no such folder"
    assert err.startswith(f"swapstation flash: {image}: {want}; build one with `swapstation build"), err


def test_cli_missing_mpremote_says_how_to_install_it(capsys, images, tmp_path, monkeypatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(tools, "BIN", empty)  # no mpremote next to this Python
    monkeypatch.setenv("PATH", str(empty))  # nor on PATH
    monkeypatch.setitem(sys.modules, "mpremote", None)  # nor importable
    code = cli_main(["flash", str(images["a"]), "--port", PORT])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"swapstation flash: {tools.missing('mpremote')}\n"
    assert f"{sys.executable} -m pip install -e '{build.ROOT}[tools]'" in err
    # A wrong image folder is named first: it is the user's argument.
    assert cli_main(["flash", str(tmp_path / "nope"), "--port", PORT]) == 2
    assert "nope: no such folder" in capsys.readouterr().err
    # A dry run still prints the commands, and says what is missing first.
    assert cli_main(["flash", str(images["a"]), "--port", PORT, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"# {tools.missing('mpremote')}" in out
    assert any(line.startswith(f"mpremote connect {PORT} ") for line in out)


def test_cli_tampered_image(capsys, images, tmp_path) -> None:
    import shutil

    img = tmp_path / "img"
    shutil.copytree(images["a"], img)
    (img / "firmware" / "compat.mpy").write_bytes(b"M\x06junk")
    code = cli_main(["flash", str(img), "--port", PORT, "--dry-run"])
    assert code == 2
    assert "firmware/compat.mpy does not match the manifest; rebuild the image" in capsys.readouterr().err


def test_cli_dry_run(capsys, images) -> None:
    code = cli_main(["flash", str(images["a"]), "--port", PORT, "--dry-run", "--mpremote", "mpr"])
    out = capsys.readouterr().out
    assert code == 0
    assert [line for line in out.splitlines() if not line.startswith(("#", "set ", "IMAGE_PY="))][
        0
    ].startswith(f"mpr connect {PORT} exec ")


def test_cli_real_mpremote_without_a_board(capsys, images) -> None:
    """The installed mpremote on a port with nothing behind it: its real message is recognised."""
    code = cli_main(["flash", str(images["a"]), "--port", "/dev/swapstation-no-such-port"])
    err = capsys.readouterr().err
    assert code == 1
    assert "no MicroPython board answered on /dev/swapstation-no-such-port" in err
    assert "nothing was written to the board" in err


def test_cli_fake_mpremote_on_path(capsys, images, tmp_path) -> None:
    """An mpremote executable that fails a copy, named with --mpremote as a user would."""
    board_dir = tmp_path / "dev"
    script = tmp_path / "mpremote"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "print('mpremote: failed to access ' + sys.argv[2] + ' (it may be in use by another program)',"
        " file=sys.stderr)\n"
        "sys.exit(1)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    code = cli_main(["flash", str(images["a"]), "--port", "/dev/ttyACM7", "--mpremote", str(script)])
    assert code == 1
    assert "no MicroPython board answered on /dev/ttyACM7" in capsys.readouterr().err
    assert not board_dir.exists()


KEY = bytes(range(32))


@pytest.fixture(scope="module")
def signed(source_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("signed") / "img"
    build.build_image(out, "pico", root=source_tree, image_key=KEY)
    return out


def test_a_signed_image_carries_a_mac_of_every_file_and_flashes_with_its_key(signed, board) -> None:
    import hashlib
    import hmac

    m = _manifest(signed)
    assert m["mac"] == hmac.new(KEY, board_image.signing_text(m), hashlib.sha256).hexdigest()
    assert all(p in board_image.signing_text(m).decode() for p in m["files"])
    put_files(board, {board_image.KEY_FILE: KEY.hex().encode()})
    _flasher(signed, board, image_key=KEY).flash()
    assert board.tree()[board_image.KEY_FILE] == KEY.hex().encode()  # the board's, never the flasher's


def test_an_image_signed_for_another_station_is_refused_before_anything(signed, board) -> None:
    with pytest.raises(flash.FlashError, match="does not match --image-key"):
        _flasher(signed, board, image_key=bytes(32)).flash()
    assert board.calls == []


def test_an_unsigned_image_is_refused_with_a_key_and_by_a_keyed_board(images, board) -> None:
    with pytest.raises(flash.FlashError, match="not signed; build it with --image-key"):
        _flasher(images["a"], board, image_key=KEY).flash()
    assert board.calls == []
    put_files(board, {board_image.KEY_FILE: KEY.hex().encode()})
    with pytest.raises(flash.FlashError, match="holds an image key") as e:
        _flasher(images["a"], board).flash()
    assert e.value.state == "nothing was written to the board" and board.writes == []


@pytest.mark.parametrize("text, why", [("zz", "not a key in hex"), ("00" * 8, "8 bytes")])
def test_a_bad_key_file_is_a_usage_error(images, tmp_path, capsys, text, why) -> None:
    key = tmp_path / "key.hex"
    key.write_text(text)
    assert cli_main(["flash", str(images["a"]), "--port", PORT, "--image-key", str(key), "--dry-run"]) == 2
    assert why in capsys.readouterr().err
    assert cli_main(["build", "--board", "pico", "--image-key", str(key), "--out", str(tmp_path / "o")]) == 2
    assert why in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert cli_main(["build", "--board", "pico", "--image-key", str(tmp_path / "nope")]) == 2
    assert "cannot read it" in capsys.readouterr().err


# ---------------------------------------------------------------- a board that stops answering mid-command


class HalfAnsweringBoard:
    """A MicroPython board on a pty, as the real mpremote meets it, that takes each command
    (raw REPL, raw paste refused, "OK") and then never finishes it: a board that reset or hung
    in the middle, on a port that stays (a USB-serial bridge, an emulator's pty). mpremote
    waits for such a command's end without a limit."""

    def __init__(self) -> None:
        import os
        import pty
        import threading
        import tty

        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.commands = 0  # commands taken (and never finished)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import os
        import select

        raw, line = False, bytearray()
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.1)[0]:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            out, i = b"", 0
            while i < len(data):
                c = data[i]
                i += 1
                if c == 0x05 and raw and data[i: i + 2] == b"A\x01":  # raw paste: not offered
                    out += b"R\x00"
                    i += 2
                elif c == 0x01:  # Ctrl-A: raw REPL
                    raw, line = True, bytearray()
                    out += b"raw REPL; CTRL-B to exit\r\n>"
                elif c == 0x02:
                    raw = False
                elif c == 0x03:
                    line = bytearray()
                elif not raw:
                    continue
                elif c == 0x04:
                    if line:  # a command: taken, never finished
                        out += b"OK"
                        self.commands += 1
                    else:  # Ctrl-D on an empty line: a soft reset
                        out += b"OK\r\nMPY: soft reboot\r\nraw REPL; CTRL-B to exit\r\n>"
                    line = bytearray()
                else:
                    line.append(c)
            if out:
                os.write(self.master, out)

    def close(self) -> None:
        import os

        self._stop.set()
        self._thread.join(5)
        for fd in (self.master, self.slave):
            os.close(fd)


def test_a_board_that_stops_answering_mid_command_is_a_clear_error_not_a_hang(images) -> None:
    """The real mpremote on a board that takes the first command and never finishes it:
    the flash stops at the command's time limit with what happened, nothing written."""
    import threading

    board = HalfAnsweringBoard()
    got: list[BaseException | None] = []

    def flash_it() -> None:
        f = flash.Flasher(images["a"], board.path, tools.command("mpremote"), log=lambda m: None,
                          command_timeout_s=5.0)
        try:
            f.flash()
            got.append(None)
        except BaseException as e:  # handed to the test's thread
            got.append(e)

    t = threading.Thread(target=flash_it, daemon=True)
    try:
        t.start()
        t.join(300)  # a hang shows as a thread still running, not as a test run that never ends
        assert got, "the flash still waits for a board that stopped answering"
    finally:
        board.close()
    e = got[0]
    assert isinstance(e, flash.NoAnswer), e
    assert f"asking the board what it is: the board on {board.path} stopped answering" in str(e)
    assert "no result after 5 s" in str(e)
    assert e.state == "nothing was written to the board"
    assert board.commands == 1  # the first command was taken: mpremote got in


def test_a_board_that_stops_answering_after_the_reset_is_not_asked_again_and_again(images, board) -> None:
    """After the reset into the marker the flasher asks again until the board is back; a board
    that answers and then stops mid-command is reported at once, not after RECONNECT_TRIES
    time limits, and the old image is put back."""
    _flasher(images["a"], board).flash()
    seen: list[list[str]] = []

    def asks(argv: list[str]) -> bool:
        return "json.dumps(board_info(" in argv[-1]

    def stalls_after_reset(argv: list[str], timeout: float) -> flash.Result:
        seen.append(argv)
        if asks(argv) and argv[-1:] != ["reset"] and any(a[-1:] == ["reset"] for a in seen):
            return flash.Result(124, "", "", timed_out=True)
        return board(argv, timeout)

    f = _flasher(images["b"], board)
    f.runner = stalls_after_reset
    with pytest.raises(flash.NoAnswer, match="stopped answering: mpremote had no result after 120 s") as e:
        f.flash()
    assert e.value.state == "the old image is intact and was restarted"
    assert sum(asks(argv) for argv in seen) == 2  # before the reset, and once after
    assert board.boots[-1] == "starts " + _manifest(images["a"])["image_sha256"][:12]
