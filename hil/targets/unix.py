"""The unix target: the firmware under the MicroPython unix port, as a separate process
(``hil/unix_target_main.py``). Its serial ports are the line emulator's ptys; its flash is
a file-backed LittleFS image that survives restarts and power cuts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from hil.targets.base import LAUNCHER, ROOT, Channel, Target, TargetError, _booted


def micropython_exe() -> str:
    """The unix-port interpreter of the tools extra (next to this Python), else on PATH."""
    from host.deploy import tools

    try:
        return tools.command("micropython")[0]
    except tools.MissingTool as e:
        raise TargetError(str(e)) from None


class UnixTarget(Target):
    """The firmware under the MicroPython unix port, one process per power-on.

    ``buses``: bus name -> pty path the firmware opens. ``config``: a station.json path
    (a wrong one is the firmware's problem to report). ``image``: the flash image file
    (created on first boot). ``inputs``: controller pins and their level at power-on.
    """

    name = "unix"
    supports_flash_cut = True

    def __init__(self, config: str | Path, image: str | Path, buses: Mapping[str, str], *,
                 inputs: Mapping[str, int] | None = None,
                 outputs: tuple[str, ...] = ("motion_enable", "fault"),
                 block_size: int = 4096, block_count: int = 256, status_ms: int = 100,
                 heapsize: str | None = None, log: Callable[[str], None] | None = None) -> None:
        self.config = str(config)
        self.image = str(image)
        self.buses = dict(buses)
        self.inputs = dict(inputs if inputs is not None else {"estop_ok": 1})
        self.outputs = outputs
        self.block_size = block_size
        self.block_count = block_count
        self.status_ms = status_ms
        self.heapsize = heapsize
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.boots = 0
        self.exit_codes: list[int] = []

    def args(self, cut_after: int | None = None) -> dict[str, Any]:
        return {"config": self.config, "image": self.image, "block_size": self.block_size,
                "block_count": self.block_count, "buses": self.buses, "inputs": self.inputs,
                "outputs": list(self.outputs), "status_ms": self.status_ms, "cut_after": cut_after,
                # A pty carries no parity bit, and Linux refuses PARENB on a pty now and then (EINVAL).
                "parity": "N"}

    def command(self, cut_after: int | None = None) -> list[str]:
        # The arguments go in a file: MicroPython 1.29's unix port aborts ("uncaught NLR")
        # on a command-line argument of 256 bytes or more.
        path = Path(self.image + ".args.json")
        path.write_text(json.dumps(self.args(cut_after)))
        cmd = [micropython_exe()]
        if self.heapsize:
            cmd += ["-X", f"heapsize={self.heapsize}"]
        return cmd + [str(LAUNCHER), str(path)]

    def start(self, boot_timeout: float = 20.0, cut_after: int | None = None) -> dict[str, Any]:
        if self.alive():
            raise TargetError("the unix target is already running")
        env = dict(os.environ)
        env["MICROPYPATH"] = os.pathsep.join([str(ROOT), ".frozen"])
        proc, ch, self._reader = self._spawn(self.command(cut_after), "hil-unix-target", self._read, env)
        self.proc = proc
        self.boots += 1
        ok = ch.wait(_booted, boot_timeout)
        fatal = ch.event("fatal")
        if fatal is not None:
            self._reap(1.0)
            raise TargetError(f"the firmware did not start: {fatal.get('error')}{self.console_tail()}")
        if not ok:
            self.power_cut()
            raise TargetError(f"no boot from the unix target within {boot_timeout} s{self.console_tail()}")
        boot = ch.event("boot")
        assert boot is not None
        return boot

    def _read(self, proc: subprocess.Popen[bytes], ch: Channel, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace")
            if self.log is not None:
                self.log(line.rstrip("\n"))
            ch.feed_line(line)
        code = proc.wait()
        ch.close(f"the unix target exited with code {code}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _reap(self, timeout: float) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        self.exit_codes.append(proc.returncode)
        self.proc = None

    def power_cut(self) -> None:
        """SIGKILL: the process stops between two instructions, mid-write or not."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        self._reap(5.0)

    def stop(self) -> None:
        """Orderly stop (closing stdin ends the target's loop); a cut if it does not end."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None and proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        self._reap(5.0)

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the process to end by itself (a flash cut kills it); its exit code."""
        proc = self.proc
        if proc is None:
            return self.exit_codes[-1] if self.exit_codes else None
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reap(1.0)
        return self.exit_codes[-1]
