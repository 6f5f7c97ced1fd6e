"""The ``pico`` target of the rig: the station as ``main.py`` starts it on the emulated Pico.

The image is what ``swapstation build --board pico --test-drivers`` makes, with two
differences a bench board has too: ``board.json`` names ``hil_target`` as its
``channel`` (``main.py`` hands the started station to ``hil_target.serve_station``, so
the operator/status channel is on the USB console without stopping ``main.py``), and
``hil_target.mpy`` (``hil/unix_target_main.py``, compiled) is on the flash. The flash
is written on the host (LittleFS, as MicroPython formats it): copying 96 KB through
mpremote takes minutes of wall time here, writing it on the host well under a second.

The field (:class:`~hil.targets.pico_field.EmulatedField`) answers on the UARTs in
emulated time. A station's power-on costs about 2 s of emulated time (imports, image
hash check, config validation), ~40-80 s of wall time: share one booted station per
test module.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hil.targets.base import LAUNCHER, ROOT, Channel, Target, TargetError, _booted
from hil.targets.pico import FS_BLOCK_COUNT, FS_BLOCK_SIZE, EmulatedPico

BOARD = ROOT / "firmware" / "boards" / "pico.json"
SLOW = 12  # request timeouts are this many times longer (the CPU runs 25-40x slower)


def make_flash(files: dict[str, bytes]) -> bytes:
    """A LittleFS image of the Pico's filesystem region holding ``files`` ({"/a/b.py": data})."""
    from littlefs import LittleFS, UserContext

    buf = bytearray(b"\xff" * (FS_BLOCK_SIZE * FS_BLOCK_COUNT))
    fs = LittleFS(context=UserContext(buffer=buf), block_size=FS_BLOCK_SIZE, block_count=FS_BLOCK_COUNT,
                  prog_size=32, read_size=32, mount=False)
    fs.format()
    fs.mount()
    made: set[str] = set()
    for path in sorted(files):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            d = "/" + "/".join(parts[:i])
            if d not in made:
                fs.mkdir(d)
                made.add(d)
        with fs.open(path, "wb") as f:
            f.write(files[path])
    fs.unmount()
    return bytes(buf)


def ballast_boot_py(nbytes: int) -> bytes:
    """A ``boot.py`` that takes ``nbytes`` of heap before ``main.py`` runs (MicroPython runs
    both in the same globals, so the bytearray lives on): the station then boots in a heap
    that much smaller, as on a board with less RAM."""
    return f"_hil_ballast = bytearray({int(nbytes)})\n".encode()


def station_image(config: Path | None = None, workdir: Path | None = None,
                  ballast: int = 0) -> tuple[bytes, dict[str, Any]]:
    """(flash image, normalised board config) of the station for the pico target;
    ``ballast`` > 0 adds a ``boot.py`` holding that many bytes of heap."""
    from firmware.boards import board_config
    from host.deploy.build import MpyCross, build_image, parse_version

    tmp = Path(tempfile.mkdtemp(prefix="pico-image-", dir=workdir))
    try:
        raw = json.loads(BOARD.read_text())
        raw["channel"] = "hil_target"
        board = tmp / "pico-hil.json"
        board.write_text(json.dumps(raw))
        out = tmp / "image"
        build_image(out, str(board), config, micropython="1.28", test_drivers=True)
        MpyCross(parse_version("1.28")).compile(LAUNCHER, "hil_target.py", out / "hil_target.mpy",
                                                raw.get("arch", "armv6m"))
        files = {"/" + p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        if ballast > 0:
            files["/boot.py"] = ballast_boot_py(ballast)
        return make_flash(files), board_config.validate(raw)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class PicoTarget(Target):
    """The station on an :class:`EmulatedPico`; ``field`` (an ``EmulatedField``) is
    attached to its UARTs at every power-on."""

    name = "pico"

    def __init__(self, field: Any, *, config: Path | None = None, workdir: Path | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.field = field
        self.config = config
        self.workdir = workdir
        self.log = log
        self.pico: EmulatedPico | None = None
        self.flash: bytes | None = None  # what the next power-on boots from
        self.board_cfg: dict[str, Any] | None = None
        self.boots: list[dict[str, float]] = []  # wall and emulated s from power-on to the boot line
        self.ballast = 0  # heap bytes boot.py takes before main.py (set before the first start)

    def start(self, boot_timeout: float = 600.0) -> dict[str, Any]:
        import time

        if self.flash is None:
            self.flash, self.board_cfg = station_image(self.config, self.workdir, self.ballast)
        assert self.board_cfg is not None
        ch: Channel | None = None

        def line(text: str) -> None:
            if self.log is not None:
                self.log(text)
            if ch is not None:
                ch.feed_line(text)

        pico = EmulatedPico(flash=self.flash, log=line)
        t0 = time.monotonic()
        pico.boot()
        self.pico = pico
        ch = self.channel = Channel(lambda data: pico._con().send(data), self.listeners)
        self.field.attach(pico, self.board_cfg)
        ok = ch.wait(_booted, boot_timeout)
        fatal = ch.event("fatal")
        if fatal is not None or not ok:
            why = fatal.get("error") if fatal else f"no boot line within {boot_timeout} s"
            self.stop()
            raise TargetError(f"the emulated Pico did not start the station: {why}{self.console_tail()}")
        self.boots.append({"wall_s": time.monotonic() - t0, "emulated_s": pico.emulated_s})
        boot = ch.event("boot")
        assert boot is not None
        return boot

    def alive(self) -> bool:
        return self.pico is not None and self.pico.alive()

    def request(self, op: str, timeout: float = 5.0, **fields: Any) -> Any:
        """As on any target, with the timeout in emulated terms: the emulated Pico runs
        25-40x slower than a real one, so a request that answers in 0.2 s on a board may
        take seconds of wall time here."""
        return super().request(op, max(timeout * SLOW, 30.0), **fields)

    def wait_status(self, pred: Callable[[dict[str, Any]], bool], timeout: float,
                    what: str = "") -> dict[str, Any]:
        """As on any target, with the timeout in emulated terms (see ``request``): a driver's
        30 s for a boot to finish is under a second of the Pico's own time."""
        return super().wait_status(pred, timeout * SLOW, what)

    def boot_events(self) -> int:
        ch = self.channel
        return 0 if ch is None else sum(1 for e in ch.events if e.get("k") == "boot")

    def wait_reboot(self, boots: int, timeout: float = 300.0) -> dict[str, Any]:
        """After a reset in place (watchdog, ``machine.reset()``): wait for boot line number
        ``boots + 1`` on the same console and a status after it; the new boot line."""
        ch = self._ch()
        if not ch.wait(lambda c: self.boot_events() > boots or c.event("fatal") is not None, timeout):
            raise TargetError(f"no boot line within {timeout} s after the reset{self.console_tail()}")
        n = ch.statuses
        if not ch.wait(lambda c: c.statuses > n, timeout):
            raise TargetError(f"no status within {timeout} s after the boot line{self.console_tail()}")
        boot = ch.event("boot")
        assert boot is not None
        return boot

    def power_cut(self, off_s: float = 0.0) -> None:
        """The chip stops between two instructions; the next power-on boots from the flash
        as it was then."""
        if self.pico is None:
            return
        ran = self.pico.emulated_s
        self.flash = self.pico.power_cut()
        self._gone(ran, off_s)

    def stop(self) -> None:
        if self.pico is None:
            return
        ran = self.pico.emulated_s
        self.pico.stop()
        self._gone(ran, 0.0)

    def _gone(self, ran_s: float, off_s: float) -> None:
        self.field.detach(ran_s, off_s)
        self.pico = None
        if self.channel is not None:
            self.channel.close("the emulated Pico is off")
