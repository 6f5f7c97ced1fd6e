"""What would be flashed loads and runs: built images imported and started under the real
MicroPython unix port, from their .mpy files only (the source tree is not on the path)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from host.deploy import build
from tests.mpy_dual import FIRMWARE_TESTS, micropython_command, micropython_env

SMOKE = r"""
import sys
import json

with open(IMAGE + "/manifest.json") as f:
    m = json.load(f)
n = 0
for p in sorted(m["files"]):
    if not p.endswith(".mpy"):
        continue
    name = p[:-4].replace("/", ".")
    if name.endswith(".__init__"):
        name = name[:-9]
    mod = __import__(name)
    for part in name.split(".")[1:]:
        mod = getattr(mod, part)
    if not mod.__file__.endswith(".mpy"):
        raise AssertionError(name + " came from " + mod.__file__)
    n += 1
print("imported", n)

from firmware.boards import image
print("image", image.check(IMAGE + "/")["image_sha256"])

if m["target"]["port"] != "unix":
    import fakemachine
    fakemachine.install()
    import main  # the image's main.py, as the board runs it (here without __name__ == "__main__")
    from firmware.drivers import board as board_driver
    from firmware.drivers.vfs_storage import VfsStorage
    import os
    calls = []
    os.mkdir("data")  # in the test's folder: the board's /data is not the host's
    board_driver.open_storage = lambda root: calls.append(root) or VfsStorage("data")
    manifest, board, station = main.start(IMAGE + "/")
    print("start", station.state(), manifest["image_sha256"])
    print("storage", calls)
    uarts = [o for o in fakemachine.created if isinstance(o, fakemachine.UARTNoTxdone)]
    print("uarts", [u.id for u in uarts], [u.kw["baudrate"] for u in uarts])
"""


def _smoke(img: Path, tmp_path: Path) -> dict[str, str]:
    script = tmp_path / "smoke.py"
    script.write_text(f"IMAGE = {str(img)!r}\n" + SMOKE)
    env = micropython_env()
    env["MICROPYPATH"] = f"{img}:{FIRMWARE_TESTS}"  # the image, and the fake machine; no source tree
    proc = subprocess.run(
        [*micropython_command(), str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in proc.stdout.splitlines() if " " in line}


@pytest.mark.parametrize(
    "board, micropython",
    [("pico", None), ("esp32-devkitc", None), ("pico", "1.22"), ("unix", None)],
)
def test_image_loads_and_starts(
    source_tree: Path, tmp_path: Path, board: str, micropython: str | None
) -> None:
    img = tmp_path / "img"
    m = build.build_image(img, board, micropython=micropython, root=source_tree)
    out = _smoke(img, tmp_path)
    modules = [p for p in m["files"] if p.endswith(".mpy")]
    assert out["imported"] == str(len(modules))
    assert out["image"] == m["image_sha256"]
    if board != "unix":
        assert out["start"] == "boot " + m["image_sha256"]
        assert out["storage"] == "['/data']"  # the board's folder, asked of the (stand-in) flash
        assert json.loads(out["uarts"].split("] ")[0] + "]") == [
            m["board_config"]["buses"][b]["uart"] for b in ("chargers", "bay_io")
        ]


SCENARIO = Path(__file__).with_name("image_scenario.py")


def test_station_swaps_a_battery_from_the_pico_image(source_tree: Path, tmp_path: Path) -> None:
    """Boot, operator confirmation and one swap, run by the .mpy files of a Pico image
    through the board driver's RS-485 ports (fake UARTs bridged to the test plant)."""
    img = tmp_path / "img"
    m = build.build_image(img, "pico", root=source_tree)
    data = tmp_path / "data"
    data.mkdir()
    env = micropython_env()
    env["MICROPYPATH"] = f"{img}:{FIRMWARE_TESTS}"
    proc = subprocess.run(
        [*micropython_command(), "-X", "heapsize=512K", str(SCENARIO), str(img), str(data)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = dict(line[2:].split(" ", 1) for line in proc.stdout.splitlines() if line.startswith("@@"))
    assert out["boot"] == m["image_sha256"]
    assert out["hold"] == "True" and out["confirm"] == "True"  # holds for the operator after boot
    assert out["swapped"] == "True", out
    assert 60 <= int(out["swap_s"]) <= 300  # GB/T 29772-2024: a car swap within 300 s
    assert out["vehicle_pack"] == "1000" and out["departed"] == "True"
    assert int(out["wdt_feeds"]) > 0
    rises = json.loads(out["de_rises"])
    frames = out["frames"]
    assert frames == f"{rises} [0, 0]"  # DE raised once per request frame, every frame's CRC good
    assert min(rises) > 0
    assert out["journal_sw"] == "1"
