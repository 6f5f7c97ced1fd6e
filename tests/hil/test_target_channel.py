"""The unix target's launcher and its operator/status channel, without a field: the
firmware boots on ptys where nothing answers, on a LittleFS image in a file (the flash
cut on the qemu target too, its PSRAM flash in a file)."""

from __future__ import annotations

import os
import threading
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.core import config
from hil.targets import Channel, TargetError, UnixTarget
from hil.targets.qemu import QemuTarget


@pytest.fixture
def ptys() -> Iterator[dict[str, str]]:
    fds = []
    paths = {}
    for name in ("chargers", "bay_io"):
        m, s = os.openpty()
        tty.setraw(m)
        tty.setraw(s)
        fds += [m, s]
        paths[name] = os.ttyname(s)
    yield paths
    for fd in fds:
        os.close(fd)


def make(tmp_path: Path, ptys: dict[str, str], **kw: Any) -> UnixTarget:
    return UnixTarget(kw.pop("config", config.default_path()), tmp_path / "flash.img", ptys, **kw)


def test_boot_status_requests_and_flash_that_persists(tmp_path: Path, ptys: dict[str, str]) -> None:
    t = make(tmp_path, ptys)
    boot = t.start()
    try:
        assert boot["fresh_flash"] is True and boot["error"] is None
        st = t.wait_status(lambda s: s["ticks"] > 0, 5)
        assert st["s"]["state"] == "boot" and st["outputs"] == {"motion_enable": 0, "fault": 1}
        assert t.call("confirm") is False  # still booting: no charger has answered
        j = t.request("probe", what="journal")
        assert j["boots"] == 1 and j["open_swap"] is None
        with pytest.raises(TargetError, match="unknown op"):
            t.request("frobnicate")
        with pytest.raises(TargetError, match="not an operator action"):
            t.call("tick", 0)
        with pytest.raises(TargetError, match="unknown step"):
            t.request("trigger", step="dance", do="kill")
        assert t.set_pin("estop_ok", 0) == 0
        t.wait_status(lambda s: "estop" in s["s"]["hold"], 5, "the controller e-stop latched")
    finally:
        t.stop()
    assert t.exit_codes == [0]  # end of stdin ends the target cleanly
    again = t.start()
    try:
        assert again["fresh_flash"] is False
        assert t.request("probe", what="journal")["boots"] == 2  # the journal survived
    finally:
        t.stop()


FLASH_BYTES = 256 * 4096  # both targets' LittleFS: 256 blocks of 4 KiB
QEMU_FLASH_OFFSET = 0x21800000 - 0x21000000  # drivers/mps2.py FLASH_ADDR in the PSRAM file


def _flash(image: Path, offset: int) -> bytes:
    with image.open("rb") as f:
        f.seek(offset)
        return f.read(FLASH_BYTES)


@pytest.mark.parametrize("kind", ["unix", "qemu"])
def test_flash_cut_stops_the_target_at_the_torn_write(tmp_path: Path, ptys: dict[str, str],
                                                      kind: str) -> None:
    if kind == "unix":
        t: UnixTarget | QemuTarget = make(tmp_path, ptys)
        offset = 0
    else:  # the flash is PSRAM in a shared file; QEMU's UART1/UART2 on the ptys
        t = QemuTarget(None, tmp_path / "psram.img", ptys)
        offset = QEMU_FLASH_OFFSET
    t.start()
    try:
        writes = t.arm_flash_cut(0)
        before = _flash(Path(t.image), offset)
        t.set_pin("estop_ok", 0)  # the e-stop alarm is journalled: the next flash write
        assert t.wait_exit(30) == -9  # SIGKILL: to itself on unix, from the rig to QEMU
        assert t.channel is not None
        cut = t.channel.event("powercut")
        assert cut is not None and cut["writes"] == writes
        # The torn write is all that changed, and only its first half landed.
        after = _flash(Path(t.image), offset)
        a, half = cut["addr"], cut["n"] // 2
        assert 0 < half and after[:a] == before[:a] and after[a + half:] == before[a + half:], cut
        if cut["erase"]:
            assert after[a:a + half] == b"\xff" * half, cut
        t.start()  # LittleFS mounts what the torn write left
        assert t.request("probe", what="journal")["boots"] == 2
    finally:
        t.stop()


def test_a_config_that_does_not_validate_is_reported_not_run(tmp_path: Path, ptys: dict[str, str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"station_id": "X"}')
    t = make(tmp_path, ptys, config=bad)
    boot = t.start()
    try:
        assert boot["error"].startswith("config ")
        st = t.wait_status(lambda s: True, 5)
        assert st["s"] == {"state": "config_error", "error": boot["error"]}
        assert t.call("confirm") is False
    finally:
        t.stop()


def test_cannot_start_without_its_serial_ports(tmp_path: Path) -> None:
    t = UnixTarget(config.default_path(), tmp_path / "flash.img",
                   {"chargers": str(tmp_path / "nope0"), "bay_io": str(tmp_path / "nope1")})
    with pytest.raises(TargetError, match="cannot open serial port"):
        t.start()
    assert t.exit_codes == [3]


def test_channel_matches_replies_and_keeps_the_console() -> None:
    sent: list[bytes] = []
    ch = Channel(sent.append)
    result: dict[str, Any] = {}

    def ask() -> None:
        result["r"] = ch.request("probe", 2.0, what="rack")

    th = threading.Thread(target=ask)
    th.start()
    while not sent:
        pass
    assert b'"op": "probe"' in sent[0] and b'"id": 1' in sent[0]
    ch.feed_line("Traceback (most recent call last):\n")
    ch.feed_line('@@HIL {"k": "reply", "id": 99, "ok": true, "r": 0}\n')  # nobody asked: ignored
    ch.feed_line('@@HIL {"k": "status", "t": 5, "s": {"state": "run"}}\n')
    ch.feed_line('@@HIL {"k": "reply", "id": 1, "ok": true, "r": {"slots": []}}\n')
    th.join(2)
    assert result["r"] == {"slots": []}
    assert ch.status == {"k": "status", "t": 5, "s": {"state": "run"}}
    assert list(ch.console) == ["Traceback (most recent call last):"]
    ch.close("gone")
    with pytest.raises(TargetError, match="not running"):
        ch.request("status")
