"""The board target's start at a MicroPython REPL, without a board: the unix port's
interactive REPL runs on a pty as a board's runs on its USB serial. Its "filesystem"
holds the HIL channel (``hil_target.py``) and a stand-in for the image's ``main.py``
whose ``start()`` opens unix hardware instead of ``machine``. Building, flashing and
the reset line need a real board (docs/hil.md); ``reset`` here is a shell command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.core import config
from hil.line import PacedLine
from hil.targets import LAUNCHER, ROOT, BoardTarget, micropython_exe

FAKE_MAIN = '''
import json
import os
from firmware.drivers.posix_serial import PosixSerialPort
from firmware.drivers.mem import MemPin
from firmware.drivers.vfs_storage import VfsStorage
from firmware.drivers.blockdev import RamBlockDev
import vfs
import hil_target


def start():
    bdev = RamBlockDev(512, 128)
    vfs.VfsLfs2.mkfs(bdev)
    buses = {"chargers": PosixSerialPort(os.getenv("HIL_CHG"), 115200, "N"),
             "bay_io": PosixSerialPort(os.getenv("HIL_BAY"), 115200, "N")}
    board = hil_target.UnixBoard(buses, {"estop_ok": MemPin(1)}, {"motion_enable": MemPin(0)},
                                 VfsStorage(vfs.VfsLfs2(bdev)))
    from firmware.main import make_station
    with open(os.getenv("HIL_CFG")) as f:
        station = make_station(json.load(f), board)
    return {"image_sha256": "0123456789abcdef"}, board, station
'''


@pytest.fixture
def fake_board(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    fs = tmp_path / "board"
    fs.mkdir()
    shutil.copy(LAUNCHER, fs / "hil_target.py")
    shutil.copy(config.default_path(), fs / "station.json")
    (fs / "main.py").write_text(FAKE_MAIN)
    fds = []
    env = dict(os.environ)
    for key in ("HIL_CHG", "HIL_BAY"):
        m, s = os.openpty()
        tty.setraw(m)
        tty.setraw(s)
        fds += [m, s]
        env[key] = os.ttyname(s)
    env["HIL_CFG"] = str(fs / "station.json")
    env["MICROPYPATH"] = os.pathsep.join([str(fs), str(ROOT), ".frozen"])
    usb = PacedLine(1_000_000).start()  # the "USB serial": REPL on one side, the rig on the other
    repl_fd = os.open(usb.slave_path, os.O_RDWR | os.O_NOCTTY)
    proc = subprocess.Popen([micropython_exe()], stdin=repl_fd, stdout=repl_fd, stderr=repl_fd, env=env,
                            cwd=str(fs), start_new_session=True)
    try:
        yield usb.master_path, tmp_path
    finally:
        proc.kill()
        proc.wait(5)
        os.close(repl_fd)
        usb.stop()
        for fd in fds:
            os.close(fd)


def test_board_target_starts_the_station_at_the_repl(fake_board: tuple[str, Path]) -> None:
    port, tmp = fake_board
    marker = tmp / "reset-count"
    reset = f"{sys.executable} -c \"import pathlib; p = pathlib.Path('{marker}'); " \
            f"p.write_text(str(int(p.read_text() if p.exists() else 0) + 1))\""
    t = BoardTarget(port, deploy=False, reset=reset)
    boot = t.start(boot_timeout=20)
    try:
        assert boot["image"] == "0123456789ab" and boot["error"] is None
        st = t.wait_status(lambda s: s["ticks"] > 0, 5)
        assert st["s"]["state"] == "boot"
        assert t.request("probe", what="journal")["boots"] == 1
        assert t.set_pin("estop_ok", 0) == 0
        t.wait_status(lambda s: "estop" in s["s"]["hold"], 5, "the e-stop latched")
        with pytest.raises(Exception, match="no flash cut switch"):
            t.request("cut", after=0)
        assert marker.read_text() == "1"
    finally:
        t.power_cut()
    assert marker.read_text() == "2"  # a power cut is a reset by the same line or relay
    assert not t.alive()
