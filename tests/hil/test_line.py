"""The paced line: forwarding, pacing (lower bounds only), each fault, the trace, bad input."""

from __future__ import annotations

import csv
import os
import select
import sys
import time
import tty

import pytest

from firmware.proto.crc16 import append_crc, check_crc
from hil.line import REPLY, REQUEST, PacedLine

BAUD = 115200


def frame(*body: int) -> bytes:
    b = bytearray(len(body) + 2)
    b[: len(body)] = bytes(body)
    append_crc(b, len(body))
    return bytes(b)


REQ1 = frame(1, 3, 0, 0, 0, 2)
REP1 = frame(1, 3, 4, 0, 10, 0, 20)
REQ2 = frame(2, 3, 0, 0, 0, 2)
REP2 = frame(2, 3, 4, 0, 30, 0, 40)


class Ends:
    """Both users of the line: the controller end and the device end, raw."""

    def __init__(self, line: PacedLine) -> None:
        self.ctl = os.open(line.master_path, os.O_RDWR | os.O_NOCTTY)
        self.dev = os.open(line.slave_path, os.O_RDWR | os.O_NOCTTY)
        for fd in (self.ctl, self.dev):
            tty.setraw(fd)

    def close(self) -> None:
        os.close(self.ctl)
        os.close(self.dev)


def read_for(fd: int, n: int | None = None, quiet: float = 0.05, limit: float = 2.0) -> bytes:
    """Read until ``n`` bytes came, or nothing came for ``quiet`` seconds."""
    out = b""
    end = time.monotonic() + limit
    while time.monotonic() < end and (n is None or len(out) < n):
        r, _, _ = select.select([fd], [], [], quiet)
        if not r:
            break
        out += os.read(fd, 1024)
    return out


def exchange(ends: Ends, req: bytes, rep: bytes) -> bytes:
    os.write(ends.ctl, req)
    assert read_for(ends.dev, len(req)) == req
    os.write(ends.dev, rep)
    return read_for(ends.ctl)


@pytest.fixture
def line(tmp_path):
    with PacedLine(BAUD, trace_path=tmp_path / "trace.csv") as ln:
        ends = Ends(ln)
        ln.ends = ends
        yield ln
        ends.close()


def test_forwards_both_ways_unchanged(line):
    assert exchange(line.ends, REQ1, REP1) == REP1
    assert line.wait_frames(2)
    req, rep = list(line.frames)[:2]
    assert (req.direction, req.data, req.unit, req.fc, req.fault) == (REQUEST, REQ1, 1, 3, "")
    assert (rep.direction, rep.data, rep.sent) == (REPLY, REP1, REP1)
    assert rep.t > req.t


def test_bytes_are_not_delivered_faster_than_the_baud_rate():
    # 9600 baud: 200 bytes need 229 ms on the wire. Only a lower bound is checked.
    with PacedLine(9600) as ln:
        ends = Ends(ln)
        data = bytes(range(200))
        t0 = time.perf_counter()
        os.write(ends.ctl, data)
        got = read_for(ends.dev, len(data), limit=5)
        elapsed = time.perf_counter() - t0
        ends.close()
    assert got == data
    assert elapsed >= 200 * 11 / 9600 * 0.99, elapsed


def test_bitflip_drop_byte_truncate(line):
    line.inject("bitflip", pos=4, bit=3)
    got = exchange(line.ends, REQ1, REP1)
    assert len(got) == len(REP1) and got[4] == REP1[4] ^ 8 and not check_crc(got, 0, len(got))
    line.inject("drop_byte", pos=2)
    got = exchange(line.ends, REQ1, REP1)
    assert got == REP1[:2] + REP1[3:]
    line.inject("truncate", keep=5)
    assert exchange(line.ends, REQ1, REP1) == REP1[:5]
    assert exchange(line.ends, REQ1, REP1) == REP1  # one-shot faults are used up
    assert line.armed() == 0
    faults = [f.fault for f in line.frames if f.direction == REPLY]
    assert faults == ["bitflip(bit=3,pos=4)", "drop_byte(pos=2)", "truncate(keep=5)", ""]


def test_garbage_in_the_same_burst_and_as_a_frame_of_its_own(line):
    line.inject("garbage", n=3)
    got = exchange(line.ends, REQ1, REP1)
    assert len(got) == 3 + len(REP1) and got.endswith(REP1)
    line.inject("garbage", n=2, gap_s=0.02)
    os.write(line.ends.ctl, REQ1)
    read_for(line.ends.dev, len(REQ1))
    os.write(line.ends.dev, REP1)
    first = read_for(line.ends.ctl, quiet=0.01)  # the garbage, then silence
    rest = read_for(line.ends.ctl)
    assert len(first) == 2 and rest == REP1


def test_delay_holds_a_frame_back(line):
    line.inject("delay", delay_s=0.1)
    os.write(line.ends.ctl, REQ1)
    read_for(line.ends.dev, len(REQ1))
    t0 = time.perf_counter()
    os.write(line.ends.dev, REP1)
    got = read_for(line.ends.ctl, len(REP1), quiet=0.3)
    assert got == REP1 and time.perf_counter() - t0 >= 0.1


def test_faults_pick_direction_and_unit(line):
    line.inject("drop", unit=2)
    assert exchange(line.ends, REQ1, REP1) == REP1  # unit 1 untouched
    assert exchange(line.ends, REQ2, REP2) == b""  # unit 2's reply dropped
    line.inject("truncate", direction=REQUEST, keep=3)
    os.write(line.ends.ctl, REQ1)
    assert read_for(line.ends.dev) == REQ1[:3]
    assert [f.fault for f in line.frames][-1] == "truncate(keep=3)"


def test_silenced_device_stops_answering_until_restored(line):
    line.silence(2)
    os.write(line.ends.ctl, REQ2)
    assert read_for(line.ends.dev) == b""  # the device never hears it
    assert exchange(line.ends, REQ1, REP1) == REP1
    line.restore(2)
    assert exchange(line.ends, REQ2, REP2) == REP2
    assert [f.fault for f in line.frames if f.unit == 2] == ["drop", "", ""]


def test_rate_faults_are_seeded(line):
    line.set_rate("drop", 0.5)
    got = [exchange(line.ends, REQ1, REP1) for _ in range(30)]
    dropped = got.count(b"")
    assert 5 < dropped < 25 and got.count(REP1) == 30 - dropped
    line.set_rate("drop", 0)
    assert exchange(line.ends, REQ1, REP1) == REP1


def test_trace_csv_has_every_frame(tmp_path):
    path = tmp_path / "t.csv"
    with PacedLine(BAUD, trace_path=path) as ln:
        ends = Ends(ln)
        ln.inject("bitflip", unit=1)
        exchange(ends, REQ1, REP1)
        exchange(ends, REQ2, REP2)
        ends.close()
    rows = list(csv.DictReader(path.open()))
    assert [(r["direction"], r["unit"], r["length"]) for r in rows] == [
        ("request", "1", "8"), ("reply", "1", "9"), ("request", "2", "8"), ("reply", "2", "9")]
    assert rows[1]["fault"].startswith("bitflip") and rows[3]["hex"] == REP2.hex(" ")
    times = [float(r["t_ms"]) for r in rows]
    assert times == sorted(times)


def test_bad_fault_requests_are_refused_and_change_nothing(line):
    cases = [
        (lambda: line.inject("melt"), "unknown fault"),
        (lambda: line.inject("drop", direction="sideways"), "direction"),
        (lambda: line.inject("bitflip", bits=3), "takes"),
        (lambda: line.inject("bitflip", bit=8), "outside 0..7"),
        (lambda: line.inject("truncate", keep=-1), ">= 0"),
        (lambda: line.inject("drop", count=0), "at least 1"),
        (lambda: line.inject("drop", unit=300), "0..255"),
        (lambda: line.set_rate("drop", 1.5), "0..1"),
        (lambda: line.silence("2"), "0..255"),
    ]
    for call, text in cases:
        with pytest.raises(ValueError, match=text):
            call()
    assert line.armed() == 0
    assert exchange(line.ends, REQ1, REP1) == REP1
    with pytest.raises(RuntimeError, match="already started"):
        line.start()
    with pytest.raises(ValueError, match="baudrate"):
        PacedLine(0)


def test_stop_closes_everything_and_cannot_restart():
    ln = PacedLine(BAUD)
    path = ln.master_path
    with ln:
        assert os.path.exists(path)
    assert ln._thread is None
    with pytest.raises(RuntimeError, match="stopped"):
        ln.start()
    ln.stop()  # twice is harmless


def test_a_starved_forwarding_thread_is_recorded_as_a_stall(line):
    # On a loaded host the thread may wake late; what the controller wrote meanwhile then
    # arrives late and merged, which no RS-485 line does: the line says when it happened.
    assert list(line.stalls) == []
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.3)  # this thread keeps the GIL for 0.3 s at a time
    try:
        end = time.perf_counter() + 1.0
        while time.perf_counter() < end:
            pass
    finally:
        sys.setswitchinterval(old)
    assert line.stalls and max(ms for _, ms in line.stalls) >= 100, list(line.stalls)
