"""``swapstation flash`` with the real mpremote onto the real RPI_PICO image in rp2040py: the
path a firmware engineer takes with a board on /dev/ttyACM0, on the emulated Pico's console
pty. The Pico holds image A, which starts and runs, and then:

1. an image built for another MicroPython release is refused before anything is written;
2. a full filesystem is found before copying; the old image is restarted and runs;
3. a copy cut off half-way (mpremote killed once the first staging file is on the flash, as
   a pulled cable) leaves A's files whole; A is restarted and runs;
4. image B (another station id) is flashed: only the files that differ are copied, every
   copy and then every file is hashed on the board, the manifest goes last, the board is
   reset and B's station starts.

Each flash starts from a board at its REPL with no watchdog running
(:meth:`EmulatedPico.stop_at_repl`: RESET, Ctrl-C while the station starts, checked). On the
emulator a running station cannot be reached as on a board: while a host command waits for
USB data the emulator skips idle time, so the station's 5 s watchdog expires within the first
mpremote command and resets the chip; mpremote, whose pty stays, then waits for ever (seen in
2 of 2 tries; the flasher now stops such a command at ``COMMAND_TIMEOUT_S`` with
``NoAnswer``). The cut-off test once hung this way when it flashed B straight after the
failed flash had restarted A. The files are read from the flash on the host. Tests run in
order on one Pico.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.targets.pico import EmulatedPico, read_flash
from hil.targets.pico_target import make_flash
from host.deploy import tools
from host.deploy.build import build_image
from host.deploy.flash import Flasher, FlashError, Result, subprocess_runner

pytestmark = [pytest.mark.pico, pytest.mark.slow]  # minutes of wall time: started first

ROOT = Path(__file__).resolve().parents[2]
START_S = 600.0  # wall seconds for the station's start to print its banner (CPU-bound, ~40x slow)
JUNK = "/junk.bin"


class Images:
    def __init__(self, folder: Path) -> None:
        self.a, self.b, self.old_release = folder / "image-a", folder / "image-b", folder / "image-1.27"
        self.ma = build_image(self.a, "pico", micropython="1.28")
        cfg = json.loads((ROOT / "firmware" / "station.json").read_text())
        cfg["station_id"] = "PSS4-FLASH-TEST-B"
        (folder / "b.json").write_text(json.dumps(cfg))
        self.mb = build_image(self.b, "pico", config=folder / "b.json", micropython="1.28")
        build_image(self.old_release, "pico", micropython="1.27")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    return Images(tmp_path_factory.mktemp("pico-images"))


@pytest.fixture(scope="module")
def pico(images: Images) -> Iterator[EmulatedPico]:
    """A Pico flashed with image A (written on the host, as a factory would), running it."""
    files = {"/" + p.relative_to(images.a).as_posix(): p.read_bytes()
             for p in images.a.rglob("*") if p.is_file()}
    with EmulatedPico(flash=make_flash(files)) as p:
        p.wait_console(banner(images.ma), START_S)
        yield p


def banner(manifest: dict[str, Any]) -> str:
    return f"image {manifest['image_sha256'][:12]} station {manifest['station_id']}"


def to_repl(pico: EmulatedPico) -> None:
    """RESET, and Ctrl-C while the station starts: the REPL, answering, no watchdog running."""
    pico.stop_at_repl()


def flasher(image: Path, pico: EmulatedPico, runner: Any = subprocess_runner) -> Flasher:
    return Flasher(image, pico.console_path, tools.command("mpremote"), runner=runner, log=lambda m: None)


def on_flash(pico: EmulatedPico) -> dict[str, bytes]:
    return read_flash(pico.flash_image())


def holds(files: dict[str, bytes], manifest: dict[str, Any]) -> bool:
    """Every file of ``manifest`` is on the flash with its size and hash, the manifest too."""
    return all(("/" + p) in files and len(files["/" + p]) == f["size"]
               and hashlib.sha256(files["/" + p]).hexdigest() == f["sha256"]
               for p, f in manifest["files"].items()) and \
        json.loads(files["/manifest.json"])["image_sha256"] == manifest["image_sha256"]


def test_an_image_for_another_release_is_refused_and_nothing_is_written(images: Images,
                                                                      pico: EmulatedPico) -> None:
    to_repl(pico)
    before = on_flash(pico)
    with pytest.raises(FlashError, match="built for 1.27") as e:
        flasher(images.old_release, pico).flash()
    assert e.value.state == "nothing was written to the board"
    assert on_flash(pico) == before and holds(before, images.ma)


def test_a_full_filesystem_is_found_before_copying_and_the_old_image_runs_again(images: Images,
                                                                             pico: EmulatedPico) -> None:
    to_repl(pico)
    free = int(pico.exec("import os\ns = os.statvfs('/')\nprint(s[0] * s[3])").strip())
    fill = (free - 3 * 4096) // 4096  # whole blocks, written a block at a time (264 KB of RAM)
    pico.exec(f"b = bytearray(4096)\nf = open('{JUNK}', 'wb')\nfor _ in range({fill}):\n    f.write(b)\n"
              "f.close()", timeout=600)
    mark = pico.console_mark()
    with pytest.raises(FlashError, match="filesystem is full") as e:
        flasher(images.b, pico).flash()
    assert e.value.state == "the old image is intact and was restarted"
    pico.wait_console(banner(images.ma), START_S, start=mark)  # the old station is back
    to_repl(pico)
    files = on_flash(pico)
    assert holds(files, images.ma) and "/.flashing" not in files
    assert not any(p.endswith(".new") for p in files)
    pico.exec(f"import os\nos.remove('{JUNK}')", timeout=300)


def test_a_copy_cut_off_half_way_leaves_the_old_image_whole_and_running(images: Images,
                                                                       pico: EmulatedPico) -> None:
    cut = threading.Event()

    def pulled_cable(argv: list[str], timeout: float) -> Result:
        """The copy of the image's files, its mpremote killed once the first staging file is on
        the flash (the board's USB link gone mid-copy). Cut by what the flash holds, not by a
        wall-clock delay, which an idle host outran (the kill then fell in the manifest's copy)."""
        if "cp" not in argv or any("manifest.json" in a for a in argv):
            return subprocess_runner(argv, timeout)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < end:
            if any(p.endswith(".new") for p in on_flash(pico)):
                proc.send_signal(signal.SIGKILL)
                cut.set()
                break
            time.sleep(0.05)
        out, err = proc.communicate()
        return Result(proc.returncode, out, err)

    to_repl(pico)
    mark = pico.console_mark()
    with pytest.raises(FlashError, match="copying failed") as e:
        flasher(images.b, pico, runner=pulled_cable).flash()
    assert cut.is_set(), "the copy finished before the cut: cut sooner"
    assert e.value.state == "the old image is intact and was restarted"
    pico.wait_console(banner(images.ma), START_S, start=mark)  # A runs again
    to_repl(pico)
    files = on_flash(pico)
    assert holds(files, images.ma) and "/.flashing" not in files  # nothing of B moved into place
    assert not any(p.endswith(".new") for p in files)


def test_image_b_is_flashed_copying_only_what_differs_and_its_station_starts(images: Images,
                                                                            pico: EmulatedPico) -> None:
    steps: list[str] = []

    def recorded(argv: list[str], timeout: float) -> Result:
        """What each mpremote run did: image.py's function, ``cp`` or ``reset``."""
        call = re.search(r"json\.dumps\((\w+)\(", argv[-1])
        steps.append(call.group(1) if call else "cp" if "cp" in argv else argv[-1])
        t0 = time.monotonic()
        res = subprocess_runner(argv, timeout)
        print(f"  {steps[-1]}: {time.monotonic() - t0:.1f} s")  # wall time per command (-s)
        return res

    to_repl(pico)
    mark = pico.console_mark()
    done = flasher(images.b, pico, runner=recorded).flash()
    differ = sorted(p for p, f in images.mb["files"].items() if images.ma["files"].get(p) != f)
    assert differ and len(differ) < len(images.mb["files"]) / 2  # B is A with another station id
    assert sorted(done["copied"]) == differ and done["removed"] == []
    asked_again = [i for i, s in enumerate(steps) if s == "board_info" and steps[i - 1] == "board_info"]
    steps = [s for i, s in enumerate(steps) if i not in asked_again]  # the port back after the reset
    assert steps == ["board_info", "set_flashing", "reset", "board_info", "scan", "prepare",
                     "cp", "hashes",  # the changed files to .new names, hashed on the board
                     "commit", "hashes",  # moved into place, every file hashed
                     "cp", "hashes", "finish",  # the manifest last, hashed, marker cleared
                     "reset"]
    pico.wait_console(banner(images.mb), START_S, start=mark)  # B's station starts
    to_repl(pico)
    files = on_flash(pico)
    assert holds(files, images.mb) and "/.flashing" not in files
    assert not any(p.endswith(".new") for p in files)
