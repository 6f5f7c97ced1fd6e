"""The image `swapstation build --board qemu-mps2-an385` writes, booted on the emulated board:
main.start checks it, reads board.json and opens the board as on a Pico, and the supervisor
feeds the CMSDK watchdog past its timeout."""

from __future__ import annotations

import subprocess
from pathlib import Path

from host.deploy import build, tools
from host.deploy.qemu_build import QemuBuildError
from host.deploy.qemu_run import run_script

MAIN_SCRIPT = """\
import sys, time, os
sys.path.insert(0, "/rom")
import main
manifest, board, station = main.start("/rom/")
print(manifest["target"]["board"], type(board).__name__)
t0 = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), t0) < 7000:  # past the 5 s watchdog
    main.run(board, station, loops=1)
st = station.status()
print(st["state"], st["alive"], st["late_ticks"], board.watchdog_gate.feeds == st["ticks"] > 0)
print("charger_offline" in set(a.split(":")[1] for a in st["alarms"]), st["rack"]["offline"])
print(os.listdir("/data"))
"""


def _romfs(image: Path, out: Path) -> Path:
    cmd = [*tools.command("mpremote"), "romfs", "--no-mpy", "-o", str(out), "build", str(image)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise QemuBuildError(f"mpremote romfs build failed: {proc.stdout}{proc.stderr}")
    return out


def test_the_built_qemu_image_boots_main_and_feeds_the_watchdog(
    qemu_firmware: tuple[Path, Path], tmp_path: Path
) -> None:
    elf, _ = qemu_firmware
    build.build_image(tmp_path / "image", "qemu-mps2-an385")
    romfs = _romfs(tmp_path / "image", tmp_path / "image.romfs")
    # Nothing on the lines ("null" backends): every charger and the bay module stay silent.
    res = run_script(elf, MAIN_SCRIPT, romfs=romfs, timeout_s=60, serials=("null", "null"))
    assert res.error == ""
    assert res.stdout.splitlines() == [
        "qemu-mps2-an385 Mps2Board",
        "boot True 0 True",  # holds for the operator's confirmation; every tick fed the watchdog
        "True 23",  # no charger answers: each is offline, and alarmed
        "['journal.log']",  # on the board's LittleFS
    ]
