"""The qemu target itself: main.py's boot on mps2-an385 with the channel, the flash (the
board's PSRAM in a shared file) across power cuts, and what it refuses. The scenarios run on
it as [qemu] items of the other tests/hil modules (kill triggers and torn writes: test_power.py;
the torn write itself: test_target_channel.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.line import PacedLine
from hil.targets import TargetError
from hil.targets.qemu import PSRAM_BYTES, QemuTarget
from hil.unix_target_main import Station

FLASH_OFFSET = 0x21800000 - 0x21000000  # drivers/mps2.py FLASH_ADDR in the 16 MiB PSRAM


@pytest.fixture
def lines() -> Iterator[dict[str, PacedLine]]:
    made = {name: PacedLine(115200).start() for name in ("chargers", "bay_io")}
    yield made
    for ln in made.values():
        ln.stop()


def test_the_flash_survives_a_power_cut_and_a_fresh_file_is_a_blank_flash(
        tmp_path: Path, lines: dict[str, PacedLine]) -> None:
    image = tmp_path / "psram.img"
    t = QemuTarget(None, image, {n: ln.master_path for n, ln in lines.items()})
    try:
        boot = t.start()
        assert boot["error"] is None
        first = t.request("probe", what="journal")
        assert first["boots"] == 1
        buses = t.request("probe", what="buses")
        assert set(buses) == {"chargers", "bay_io"} and set(buses["chargers"]) >= {"good", "frame_errors"}
        mem = t.request("probe", what="mem")
        assert mem["free"] + mem["alloc"] <= 256 * 1024 and mem["free"] > 32 * 1024, mem
        t.power_cut()
        assert not t.alive()
        assert image.stat().st_size == PSRAM_BYTES
        with image.open("rb") as f:  # LittleFS's superblock names itself in block 0
            f.seek(FLASH_OFFSET)
            assert b"littlefs" in f.read(4096)
        t.start()
        again = t.request("probe", what="journal")
        assert again["boots"] == 2 and again["seq"] > first["seq"]
        t.stop()
        image.unlink()
        t.start()
        assert t.request("probe", what="journal")["boots"] == 1
    finally:
        t.stop()
    assert len(t.boots) == 3


def test_a_missing_serial_line_fails_the_start_with_the_reason(tmp_path: Path) -> None:
    t = QemuTarget(None, tmp_path / "psram.img", {"chargers": str(tmp_path / "no-such-tty"),
                                                   "bay_io": str(tmp_path / "no-such-tty-2")})
    with pytest.raises(TargetError, match="did not start|no raw REPL") as e:
        t.start(boot_timeout=30)
    assert "no-such-tty" in str(e.value)
    assert not t.alive()


def test_a_kill_trigger_is_refused_where_nothing_can_cut_the_power() -> None:
    # A board's channel without the unix flash and without a rig that cuts QEMU: saying so
    # beats a trigger that fires and cuts nothing.
    st = Station(station=None, board=None, flash=None)
    with pytest.raises(ValueError, match="cannot cut its own power"):
        st.arm({"step": "lift", "do": "kill"})
