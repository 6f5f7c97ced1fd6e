"""Targets: where the station firmware runs during a HIL test.

- :class:`UnixTarget`: the firmware under the MicroPython unix port, as a separate
  process (``hil/unix_target_main.py``). Its serial ports are the line emulator's ptys;
  its flash is a file-backed LittleFS image that survives restarts and power cuts.
- :class:`BoardTarget`: a controller on a USB serial port. The rig builds and flashes the
  image with ``host.build`` / ``host.flash`` (mpremote), resets the board (DTR, RTS or a
  relay command), starts the station with the HIL channel at the board's REPL, and the
  emulators answer on USB-RS485 adapters wired to the board's RS-485 lines.

Both speak the same operator/status channel (see ``hil/unix_target_main.py``):
requests are JSON lines, answers and status lines start with ``@@HIL ``. ``status()``
is the latest status line: ``{"t": ms since boot, "s": supervisor.status(), ...}``.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "hil" / "unix_target_main.py"
TAG = "@@HIL "
EXIT_FATAL = 3


class TargetError(Exception):
    """The target did not start, died, or refused a request."""


def micropython_exe() -> str:
    """The unix-port interpreter of the tools extra (next to this Python), else on PATH."""
    from host import tools

    try:
        return tools.command("micropython")[0]
    except tools.MissingTool as e:
        raise TargetError(str(e)) from None


class Channel:
    """Client side of the operator/status channel over a line-oriented byte stream.

    ``feed_line`` is called with every line the target prints; tagged lines are parsed,
    the rest is kept as console output (tracebacks, prints).
    """

    def __init__(self, write: Callable[[bytes], None],
                 listeners: list[Callable[[dict[str, Any]], None]] | None = None) -> None:
        self._write = write
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[Any]] = {}
        self._cond = threading.Condition()
        self.status: dict[str, Any] | None = None
        self.statuses = 0
        self.events: list[dict[str, Any]] = []  # boot, fatal, powercut
        self.console: deque[str] = deque(maxlen=400)
        # Called with every tagged message; a target passes its own list, so they carry over
        # to the channel of the next power-on.
        self.listeners: list[Callable[[dict[str, Any]], None]] = [] if listeners is None else listeners
        self.closed = False

    def feed_line(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if not line.startswith(TAG):
            if line:
                self.console.append(line)
            return
        try:
            msg = json.loads(line[len(TAG):])
        except ValueError:
            self.console.append(line)
            return
        kind = msg.get("k")
        with self._cond:
            if kind == "reply":
                fut = self._pending.pop(msg.get("id"), None)
                if fut is not None:
                    if msg.get("ok"):
                        fut.set_result(msg.get("r"))
                    else:
                        fut.set_exception(TargetError(msg.get("error", "request failed")))
            elif kind == "status":
                self.status = msg
                self.statuses += 1
            else:
                self.events.append(msg)
            self._cond.notify_all()
        for fn in self.listeners:
            fn(msg)

    def close(self, why: str) -> None:
        with self._cond:
            self.closed = True
            for fut in self._pending.values():
                fut.set_exception(TargetError(why))
            self._pending.clear()
            self._cond.notify_all()

    def request(self, op: str, timeout: float = 5.0, **fields: Any) -> Any:
        if self.closed:
            raise TargetError("the target is not running")
        rid = next(self._ids)
        fut: Future[Any] = Future()
        with self._cond:
            self._pending[rid] = fut
        msg = dict(fields, id=rid, op=op)
        try:
            self._write((json.dumps(msg) + "\n").encode())
        except OSError as e:
            with self._cond:
                self._pending.pop(rid, None)
            raise TargetError(f"cannot reach the target: {e}") from None
        try:
            return fut.result(timeout)
        except TimeoutError:
            with self._cond:
                self._pending.pop(rid, None)
            raise TargetError(f"no answer to {op!r} within {timeout} s") from None

    def wait(self, pred: Callable[[Channel], bool], timeout: float) -> bool:
        """Wait until ``pred(self)`` holds (checked on every message); False on timeout."""
        end = time.monotonic() + timeout
        with self._cond:
            while not pred(self):
                left = end - time.monotonic()
                if left <= 0 or self.closed:
                    return pred(self)
                self._cond.wait(left)
        return True

    def event(self, kind: str) -> dict[str, Any] | None:
        for e in reversed(self.events):
            if e.get("k") == kind:
                return e
        return None


def _booted(c: Channel) -> bool:
    """The boot line and a first status arrived, or the target said it cannot start."""
    return c.event("fatal") is not None or (c.event("boot") is not None and c.status is not None)


class Target:
    """What the driver and the tests use, on either target."""

    name = "target"
    channel: Channel | None = None
    supports_flash_cut = False
    _listeners: list[Callable[[dict[str, Any]], None]] | None = None

    @property
    def listeners(self) -> list[Callable[[dict[str, Any]], None]]:
        """Callbacks for every message from the target, kept across power cycles."""
        if self._listeners is None:
            self._listeners = []
        return self._listeners

    # ---- life cycle (subclasses) -----------------------------------------------------------
    def start(self, boot_timeout: float = 20.0) -> dict[str, Any]:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def power_cut(self) -> None:
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    def restart(self, boot_timeout: float = 20.0) -> dict[str, Any]:
        """Power off (a cut, if it still runs) and on again: the flash is what was left."""
        if self.alive():
            self.power_cut()
        return self.start(boot_timeout)

    # ---- channel ----------------------------------------------------------------------------
    def _ch(self) -> Channel:
        if self.channel is None:
            raise TargetError("the target is not running")
        return self.channel

    def request(self, op: str, timeout: float = 5.0, **fields: Any) -> Any:
        return self._ch().request(op, timeout, **fields)

    def call(self, action: str, *args: Any, timeout: float = 5.0) -> Any:
        """An operator action of the supervisor: ``ack``, ``confirm``, ``manual`` ..."""
        return self.request("call", timeout, name=action, args=list(args))

    def set_pin(self, name: str, value: int) -> int:
        return int(self.request("pin", name=name, value=value))

    def arm_flash_cut(self, after: int = 0) -> int:
        """Tear the ``after``-th next flash write and stop the target there; returns the
        writes so far."""
        if not self.supports_flash_cut:
            raise TargetError(f"the {self.name} target cannot cut its flash")
        return int(self.request("cut", after=after))

    def status(self) -> dict[str, Any]:
        st = self._ch().status
        if st is None:
            raise TargetError("no status from the target yet")
        return st

    def station(self) -> dict[str, Any]:
        """The supervisor's own status snapshot."""
        s = self.status().get("s")
        return s if isinstance(s, dict) else {}

    def wait_status(self, pred: Callable[[dict[str, Any]], bool], timeout: float,
                    what: str = "") -> dict[str, Any]:
        """The first status for which ``pred`` holds; ``TargetError`` on timeout or death."""
        ch = self._ch()
        ok = ch.wait(lambda c: c.status is not None and bool(pred(c.status)), timeout)
        if not ok:
            last = ch.status
            why = "the target died" if ch.closed else f"not within {timeout} s"
            raise TargetError(f"waiting for {what or 'a status'}: {why}; "
                              f"last status {json.dumps(last)[:1500]}{self.console_tail()}")
        assert ch.status is not None
        return ch.status

    def console_tail(self, n: int = 30) -> str:
        ch = self.channel
        if ch is None or not ch.console:
            return ""
        return "\nconsole:\n  " + "\n  ".join(list(ch.console)[-n:])


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
        proc = subprocess.Popen(self.command(cut_after), cwd=str(ROOT), env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        stdin = proc.stdin

        def write(data: bytes) -> None:
            stdin.write(data)
            stdin.flush()

        ch = self.channel = Channel(write, self.listeners)
        self._reader = threading.Thread(target=self._read, args=(proc, ch, proc.stdout),
                                        name="hil-unix-target", daemon=True)
        self._reader.start()
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


class BoardTarget(Target):
    """A controller on ``port`` (its USB serial, e.g. /dev/ttyACM0).

    ``deploy``: build the image for ``board`` (``host.build``) with ``config`` and flash it
    (``host.flash``, mpremote), then copy the HIL channel (``hil/unix_target_main.py`` as
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
        from host.build import build_image
        from host.flash import Flasher

        image = self.workdir / f"image-{self.board}"
        build_image(image, self.board, self.config, test_drivers=True)  # hil_target.py imports blockdev
        Flasher(image, self.port, log=self.log or print).flash()
        from host.flash import default_mpremote

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
