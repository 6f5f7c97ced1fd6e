"""The operator/status channel and the target interface every target implements.

Requests are JSON lines, answers and status lines start with ``@@HIL `` (see
``hil/unix_target_main.py``). ``Target.status()`` is the latest status line:
``{"t": ms since boot, "s": supervisor.status(), ...}``.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent.parent
LAUNCHER = ROOT / "hil" / "unix_target_main.py"
TAG = "@@HIL "
EXIT_FATAL = 3


class TargetError(Exception):
    """The target did not start, died, or refused a request."""


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

    def write_raw(self, data: bytes) -> None:
        """Bytes to the console as they are (a REPL's control characters, a script)."""
        self._write(data)

    def send(self, op: str, **fields: Any) -> None:
        """A request whose answer nobody waits for (one that may never come: ``hang``)."""
        if self.closed:
            raise TargetError("the target is not running")
        msg = dict(fields, id=next(self._ids), op=op)
        try:
            self._write((json.dumps(msg) + "\n").encode())
        except OSError as e:
            raise TargetError(f"cannot reach the target: {e}") from None

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

    def _spawn(self, argv: list[str], thread_name: str,
               read: Callable[[subprocess.Popen[bytes], Channel, IO[bytes]], None],
               env: dict[str, str] | None = None
               ) -> tuple[subprocess.Popen[bytes], Channel, threading.Thread]:
        """Start the process whose stdin/stdout is the target's console, a Channel over it,
        and a reader thread (started) feeding the channel with ``read(proc, channel, stdout)``."""
        proc = subprocess.Popen(argv, cwd=str(ROOT), env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        assert proc.stdin is not None and proc.stdout is not None
        stdin = proc.stdin

        def write(data: bytes) -> None:
            stdin.write(data)
            stdin.flush()

        ch = self.channel = Channel(write, self.listeners)
        reader = threading.Thread(target=read, args=(proc, ch, proc.stdout), name=thread_name, daemon=True)
        reader.start()
        return proc, ch, reader

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

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the target to stop by itself (an armed flash cut stops it); its exit
        code, or None if it still runs after ``timeout``."""
        raise TargetError(f"the {self.name} target does not stop by itself")

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
