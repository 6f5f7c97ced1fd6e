"""The board target: a controller on a USB serial port. The rig builds and flashes the
image with ``host.deploy.build`` / ``host.deploy.flash`` (mpremote), resets the board (DTR, RTS or a
relay command), starts the station with the HIL channel at the board's REPL, and the
emulators answer on USB-RS485 adapters wired to the board's RS-485 lines."""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hil.targets.base import LAUNCHER, ROOT, Channel, Target, TargetError, _booted


class BoardTarget(Target):
    """A controller on ``port`` (its USB serial, e.g. /dev/ttyACM0).

    ``deploy``: build the image for ``board`` (``host.deploy.build``) with ``config`` and flash it
    (``host.deploy.flash``, mpremote), then copy the HIL channel (``hil/unix_target_main.py`` as
    ``hil_target.py``). ``reset``: ``"dtr"`` or ``"rts"`` pulse that line of the USB serial
    (wired to RUN/EN), or a shell command (a relay), also used for power cuts.
    The station starts at the board's REPL as ``hil_target.board_main()``, which opens
    the board's HAL like ``main.py`` and serves the channel on the USB serial.
    """

    name = "board"

    def __init__(self, port: str, *, board: str = "pico", config: str | Path | None = None,
                 reset: str = "dtr", deploy: bool = True, workdir: str | Path | None = None,
                 baudrate: int = 115200, log: Callable[[str], None] | None = None) -> None:
        self.port = port
        self.board = board
        self.config = None if config is None else Path(config)
        self.reset_how = reset
        self.deploy = deploy
        self.workdir = Path(workdir) if workdir else ROOT / "out" / "hil-board"
        self.baudrate = baudrate
        self.log = log
        self.serial: Any = None
        self._reader: threading.Thread | None = None
        self._running = False
        self.deployed = False

    # ---- deploy and reset ----------------------------------------------------------------
    def flash(self) -> None:
        from host.deploy.build import build_image
        from host.deploy.flash import Flasher

        image = self.workdir / f"image-{self.board}"
        build_image(image, self.board, self.config, test_drivers=True)  # hil_target.py imports blockdev
        Flasher(image, self.port, log=self.log or print).flash()
        from host.deploy.flash import default_mpremote

        cmd = [*default_mpremote(), "connect", self.port, "cp", str(LAUNCHER), ":hil_target.py"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise TargetError(f"could not copy the HIL channel to the board: {res.stderr.strip()}")
        self.deployed = True

    def hard_reset(self) -> None:
        how = self.reset_how
        if how in ("dtr", "rts"):
            import serial

            with serial.Serial(self.port, self.baudrate) as s:
                setter = s.setDTR if how == "dtr" else s.setRTS
                setter(False)
                time.sleep(0.1)
                setter(True)
                time.sleep(0.1)
                setter(False)
            return
        res = subprocess.run(shlex.split(how), capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise TargetError(f"reset command {how!r} failed: {res.stderr.strip()}")

    # ---- life cycle ------------------------------------------------------------------------
    def start(self, boot_timeout: float = 30.0) -> dict[str, Any]:
        import serial

        if self.deploy and not self.deployed:
            self.flash()
        self.hard_reset()
        time.sleep(0.5)
        s = serial.Serial(self.port, self.baudrate, timeout=0.05)
        self.serial = s
        # Stop main.py at the REPL (Ctrl-C twice), then start the station with the channel.
        s.write(b"\r\x03\x03")
        time.sleep(0.2)
        s.reset_input_buffer()
        s.write(b"import hil_target; hil_target.board_main()\r")
        self._running = True

        def write(data: bytes) -> None:
            s.write(data)

        ch = self.channel = Channel(write, self.listeners)
        self._reader = threading.Thread(target=self._read, args=(s, ch), name="hil-board", daemon=True)
        self._reader.start()
        ok = ch.wait(_booted, boot_timeout)
        fatal = ch.event("fatal")
        if fatal is not None or not ok:
            self.stop()
            why = fatal.get("error") if fatal else f"no boot line within {boot_timeout} s"
            raise TargetError(f"the board did not start the station: {why}{self.console_tail()}")
        boot = ch.event("boot")
        assert boot is not None
        return boot

    def _read(self, s: Any, ch: Channel) -> None:
        buf = b""
        while self._running:
            try:
                chunk = s.read(256)
            except Exception as e:  # the USB serial went away (reset, unplugged)
                ch.close(f"board serial closed: {e}")
                return
            if not chunk:
                continue
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode("utf-8", "replace")
                if self.log is not None:
                    self.log(text)
                ch.feed_line(text)
        ch.close("stopped")

    def alive(self) -> bool:
        return self._running and self.channel is not None and not self.channel.closed

    def stop(self) -> None:
        self._running = False
        if self._reader is not None:
            self._reader.join(2)
        if self.serial is not None:
            self.serial.close()
            self.serial = None

    def power_cut(self) -> None:
        """Reset the board (DTR/RTS or the relay command) without warning it."""
        self.stop()
        self.hard_reset()
