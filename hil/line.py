"""A paced RS-485 line between two pseudo-terminals, with fault injection and a trace.

``PacedLine`` owns two pty pairs. The controller opens ``master_path``, the field
devices (pymodbus, emulators) open ``slave_path``; a thread forwards bytes both ways
at the wire speed of the configured baud rate (11-bit characters). Each byte is
due one character time after the previous one ends, on an absolute schedule, so OS
wake-up jitter delays a byte but never accumulates over a frame.

Frames are told apart by input silence (``frame_gap_s``, default t3.5 but at least
1 ms): each writer hands over a whole frame at once. A fault is chosen when a
frame's first byte arrives, so it can act on every byte as it passes:

==========  =====================================================  ==============
kind        effect on the frame                                    parameter
==========  =====================================================  ==============
bitflip     flips one bit of byte ``pos`` (CRC error)              pos=3, bit=0
drop_byte   drops byte ``pos``                                     pos=3
truncate    passes only the first ``keep`` bytes                   keep=4
garbage     sends ``n`` random bytes first (same burst, or         n=4, gap_s=0
            ``gap_s`` earlier so they form a frame of their own)
delay       holds the frame back ``delay_s``                       delay_s=0.05
drop        drops the whole frame                                  -
==========  =====================================================  ==============

``inject`` arms a fault for the next ``count`` matching frames, ``set_rate`` applies
one at random to a share of frames (seeded), ``silence(unit)`` makes a device stop
answering (its requests are dropped) until ``restore(unit)``. Directions are
``REQUEST`` (controller to devices) and ``REPLY``; ``unit`` matches the frame's
address byte. Every frame goes to ``frames`` and, with ``trace_path``, to a CSV
file: time of its first delivered byte, direction, unit, function, length, fault,
bytes in hex.

RS-485 is half duplex but the two directions are paced independently here:
the Modbus master never talks while a reply is due, so they do not overlap.
"""

from __future__ import annotations

import csv
import os
import random
import select
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TextIO

REQUEST = "request"
REPLY = "reply"
FAULT_KINDS = ("bitflip", "drop_byte", "truncate", "garbage", "delay", "drop")
_DEFAULTS: dict[str, dict[str, float]] = {
    "bitflip": {"pos": 3, "bit": 0},
    "drop_byte": {"pos": 3},
    "truncate": {"keep": 4},
    "garbage": {"n": 4, "gap_s": 0.0},
    "delay": {"delay_s": 0.05},
    "drop": {},
}
_SPIN_S = 0.0003  # below this, spin on select(0) rather than sleep: wake-ups are late
STALL_S = 0.05  # the forwarding thread woke this late: counted in PacedLine.stalls


def _request_length(stream: bytes, i: int) -> int:
    """Length of the RTU request at ``stream[i]`` (the rest of the stream if unknown)."""
    left = len(stream) - i
    fc = stream[i + 1] if left > 1 else -1
    if 1 <= fc <= 6:
        return min(8, left)
    if fc in (15, 16) and left > 6:
        return min(9 + stream[i + 6], left)
    return left


@dataclass
class Frame:
    t: float  # seconds since start: first byte due at the reader (arrival, if dropped)
    direction: str
    data: bytes  # bytes delivered
    fault: str = ""
    sent: bytes = b""  # bytes the writer handed over

    @property
    def unit(self) -> int:
        return self.sent[0] if self.sent else -1

    @property
    def fc(self) -> int:
        return self.sent[1] if len(self.sent) > 1 else -1


@dataclass
class _Fault:
    kind: str
    direction: str
    unit: int | None
    params: dict[str, float]
    count: int = 1  # frames left (on-demand faults)
    rate: float = 0.0  # probability per frame (rate faults)

    def matches(self, direction: str, unit: int) -> bool:
        return self.direction == direction and (self.unit is None or self.unit == unit)


@dataclass
class _Side:
    """One direction of the line: input fd, output fd, schedule and the frame in flight."""

    direction: str
    in_fd: int
    out_fd: int
    out: deque = field(default_factory=deque)  # (due time, byte)
    wire_free: float = 0.0  # when the last scheduled character has left
    last_in: float = -1.0
    frame: dict | None = None


class PacedLine:
    """See the module doc. Use as a context manager or call start()/stop()."""

    def __init__(self, baudrate: int = 115200, trace_path: str | os.PathLike | None = None,
                 seed: int = 0, frame_gap_s: float | None = None, keep_frames: int = 100000):
        if baudrate <= 0:
            raise ValueError(f"baudrate must be positive, not {baudrate!r}")
        self.baudrate = baudrate
        self.char_s = 11.0 / baudrate
        t35 = 3.5 * self.char_s if baudrate <= 19200 else 0.00175
        self.frame_gap_s = max(t35, 0.001) if frame_gap_s is None else frame_gap_s
        self.trace_path = trace_path
        self.frames: deque[Frame] = deque(maxlen=keep_frames)
        self.overflows = 0  # bytes lost because a reader stopped reading
        # (line time s, ms) each time this thread woke STALL_S or more late (a loaded host):
        # bytes written meanwhile arrive late and merged, as no RS-485 line delivers them
        self.stalls: deque[tuple[float, float]] = deque(maxlen=1000)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._armed: list[_Fault] = []
        self._rates: list[_Fault] = []
        self._silent: set[int] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._fds: list[int] = []
        self._t0 = 0.0
        self._trace_file: TextIO | None = None
        self._trace: Any = None  # csv writer
        self._frame_event = threading.Condition(self._lock)
        # Two pty pairs: controller side and device side. The line keeps the
        # slave ends open and raw, so nothing echoes before a user opens them.
        self._m_master, m_slave = os.openpty()
        self._s_master, s_slave = os.openpty()
        for fd in (self._m_master, m_slave, self._s_master, s_slave):
            tty.setraw(fd)
        for fd in (self._m_master, self._s_master):
            os.set_blocking(fd, False)
        self.master_path = os.ttyname(m_slave)
        self.slave_path = os.ttyname(s_slave)
        self._fds = [self._m_master, m_slave, self._s_master, s_slave]
        self._wake_r, self._wake_w = os.pipe()
        self._sides = {
            self._m_master: _Side(REQUEST, self._m_master, self._s_master),
            self._s_master: _Side(REPLY, self._s_master, self._m_master),
        }

    # ---- life cycle ------------------------------------------------------------------
    def start(self) -> PacedLine:
        if self._thread is not None:
            raise RuntimeError("line already started")
        if self._fds == []:
            raise RuntimeError("line was stopped; make a new one")
        if self.trace_path is not None:
            f = self._trace_file = open(self.trace_path, "w", newline="", buffering=1)
            self._trace = csv.writer(f)
            self._trace.writerow(["t_ms", "direction", "unit", "fc", "length", "fault", "hex"])
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="paced-line", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            os.write(self._wake_w, b"x")
            self._thread.join(timeout=5)
            self._thread = None
        for side in self._sides.values():
            self._close_frame(side)
        if self._trace_file is not None:
            self._trace_file.close()
            self._trace_file = None
        for fd in self._fds + [self._wake_r, self._wake_w]:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> PacedLine:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- faults ----------------------------------------------------------------------
    def inject(self, kind: str, direction: str = REPLY, unit: int | None = None, count: int = 1,
               **params) -> None:
        """Apply ``kind`` to the next ``count`` frames going ``direction`` (from/to ``unit``)."""
        f = self._fault(kind, direction, unit, params)
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count!r}")
        f.count = count
        with self._lock:
            self._armed.append(f)

    def set_rate(self, kind: str, rate: float, direction: str = REPLY, unit: int | None = None,
                 **params) -> None:
        """Apply ``kind`` to each matching frame with probability ``rate`` (0 removes it)."""
        f = self._fault(kind, direction, unit, params)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within 0..1, not {rate!r}")
        f.rate = rate
        with self._lock:
            self._rates = [r for r in self._rates if not (r.kind == kind and r.direction == direction
                                                          and r.unit == unit)]
            if rate > 0:
                self._rates.append(f)

    def silence(self, unit: int) -> None:
        """The device ``unit`` stops answering: requests addressed to it are dropped."""
        self._check_unit(unit)
        with self._lock:
            self._silent.add(unit)

    def restore(self, unit: int) -> None:
        with self._lock:
            self._silent.discard(unit)

    def clear_faults(self) -> None:
        with self._lock:
            self._armed.clear()
            self._rates.clear()
            self._silent.clear()

    def armed(self) -> int:
        """Frames still to be hit by on-demand faults."""
        with self._lock:
            return sum(f.count for f in self._armed)

    def now(self) -> float:
        """Seconds since start, on the clock of ``Frame.t``."""
        return time.perf_counter() - self._t0

    def frames_since(self, t: float) -> list[Frame]:
        """Frames whose first byte came at or after ``t`` (from ``now()``)."""
        with self._lock:
            return [f for f in self.frames if f.t >= t]

    def requests_written(self) -> list[tuple[int, bytes]]:
        """The controller's requests in the order it wrote them, each with its offset in
        the byte stream it wrote (bytes as handed over, before any fault). Frames are cut
        at the RTU request lengths, so two requests the line read as one burst (a slow
        host) are two here. Offsets count from the line's start while ``frames`` still
        holds every request frame (``keep_frames``)."""
        with self._lock:
            stream = b"".join(f.sent for f in self.frames if f.direction == REQUEST)
        out = []
        i = 0
        while i < len(stream):
            n = _request_length(stream, i)
            out.append((i, stream[i:i + n]))
            i += n
        return out

    def wait_frames(self, n: int, timeout: float = 2.0, since: float | None = None) -> bool:
        """Wait until at least ``n`` frames are recorded (``since``: counting only those
        from that ``now()`` on). A frame is recorded when the line closes it, some time after
        its last byte reached the far end."""
        end = time.monotonic() + timeout
        with self._frame_event:
            while (len(self.frames) if since is None
                   else sum(1 for f in self.frames if f.t >= since)) < n:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._frame_event.wait(left)
        return True

    def _fault(self, kind, direction, unit, params) -> _Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        if direction not in (REQUEST, REPLY):
            raise ValueError(f"direction must be {REQUEST!r} or {REPLY!r}, not {direction!r}")
        if unit is not None:
            self._check_unit(unit)
        unknown = set(params) - set(_DEFAULTS[kind])
        if unknown:
            raise ValueError(f"fault {kind!r} takes {sorted(_DEFAULTS[kind]) or 'no parameters'}, "
                             f"not {sorted(unknown)}")
        p = dict(_DEFAULTS[kind], **params)
        for k, v in p.items():
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"fault {kind!r} parameter {k}={v!r} must be a number >= 0")
        if kind == "bitflip" and p["bit"] > 7:
            raise ValueError(f"bitflip bit={p['bit']} outside 0..7")
        return _Fault(kind, direction, unit, p)

    @staticmethod
    def _check_unit(unit) -> None:
        if not isinstance(unit, int) or not 0 <= unit <= 255:
            raise ValueError(f"unit must be an int 0..255, not {unit!r}")

    # ---- the forwarding thread ----------------------------------------------------
    def _run(self) -> None:
        sides = self._sides
        fds = [self._m_master, self._s_master, self._wake_r]
        while not self._stop.is_set():
            now = time.perf_counter()
            due = min((s.out[0][0] for s in sides.values() if s.out), default=None)
            if due is None:
                timeout = 0.02
            else:
                timeout = max(0.0, due - now)
                if timeout < _SPIN_S:
                    timeout = 0.0
                else:
                    timeout -= _SPIN_S
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except (OSError, ValueError):
                return
            woke = time.perf_counter()
            if woke - now - timeout >= STALL_S:
                self.stalls.append((woke - self._t0, round(1000 * (woke - now - timeout), 1)))
            now = woke
            for fd in ready:
                if fd == self._wake_r:
                    continue
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: no one has the slave end open yet
                    time.sleep(0.001)
                    continue
                side = sides[fd]
                for b in data:
                    self._take(side, b, now)
            now = time.perf_counter()
            for side in sides.values():
                self._deliver(side, now)
                f = side.frame
                if f is not None and not side.out and now - side.last_in >= self.frame_gap_s:
                    self._close_frame(side)

    def _take(self, side: _Side, b: int, now: float) -> None:
        """One byte arrived from a writer: start a frame if the line was quiet, apply its fault."""
        f = side.frame
        if f is None or now - side.last_in >= self.frame_gap_s:
            if f is not None:
                self._close_frame(side)
            f = side.frame = self._open_frame(side, b, now)
        side.last_in = now
        i = len(f["sent"])
        f["sent"].append(b)
        kind = f["kind"]
        p = f["params"]
        if (kind == "drop" or (kind == "drop_byte" and i == p["pos"])
                or (kind == "truncate" and i >= p["keep"])):
            return
        if kind == "bitflip" and i == p["pos"]:
            b ^= 1 << p["bit"]
        start = max(now, side.wire_free)
        if i == 0 and kind == "delay":
            start += p["delay_s"]
        if i == 0 and kind == "garbage":
            for g in bytes(self._rng.randrange(256) for _ in range(p["n"])):
                start += self.char_s
                side.out.append((start, g))
                f["data"].append(g)
            start += p["gap_s"]
        side.wire_free = start + self.char_s
        side.out.append((side.wire_free, b))
        f["data"].append(b)
        if "t_out" not in f:
            f["t_out"] = side.out[0][0] if i == 0 and kind == "garbage" else side.wire_free

    def _open_frame(self, side: _Side, first: int, now: float) -> dict:
        kind, params = "", {}
        with self._lock:
            if side.direction == REQUEST and first in self._silent:
                kind = "drop"
            else:
                for fault in self._armed:
                    if fault.matches(side.direction, first):
                        kind, params = fault.kind, fault.params
                        fault.count -= 1
                        if fault.count == 0:
                            self._armed.remove(fault)
                        break
                else:
                    for fault in self._rates:
                        if fault.matches(side.direction, first) and self._rng.random() < fault.rate:
                            kind, params = fault.kind, fault.params
                            break
        return {"kind": kind, "params": params, "sent": bytearray(), "data": bytearray(), "t": now}

    def _deliver(self, side: _Side, now: float) -> None:
        out = side.out
        if not out or out[0][0] > now:
            return
        chunk = bytearray()
        while out and out[0][0] <= now:
            chunk.append(out.popleft()[1])
        try:
            os.write(side.out_fd, chunk)
        except BlockingIOError:
            self.overflows += len(chunk)
        except OSError:
            self.overflows += len(chunk)

    def _close_frame(self, side: _Side) -> None:
        f = side.frame
        if f is None:
            return
        side.frame = None
        fault = f["kind"]
        if fault and fault != "drop":
            fault += "(" + ",".join(f"{k}={v}" for k, v in sorted(f["params"].items())) + ")"
        frame = Frame(f.get("t_out", f["t"]) - self._t0, side.direction, bytes(f["data"]), fault,
                      bytes(f["sent"]))
        with self._frame_event:
            self.frames.append(frame)
            self._frame_event.notify_all()
        if self._trace is not None:
            self._trace.writerow([f"{frame.t * 1000:.3f}", frame.direction, frame.unit, frame.fc,
                                  len(frame.data), frame.fault, frame.data.hex(" ")])
