"""Replies no well-behaved slave sends, from a scripted responder on a real pty:
the firmware master (both interpreters) must never take them for data."""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from collections.abc import Callable

import pytest

from firmware.proto import modbus_rtu as mb
from firmware.proto.crc16 import append_crc, check_crc

from .conftest import run_fw

Reply = bytes | Callable[[bytes], bytes] | None


def frame(*body: int) -> bytes:
    b = bytearray(len(body) + 2)
    b[: len(body)] = bytes(body)
    append_crc(b, len(body))
    return bytes(b)


def request_length(buf: bytes) -> int:
    if len(buf) >= 7 and buf[1] in (15, 16):
        return 9 + buf[6]
    return 8


class RawResponder:
    """Answers each request on a pty with the next scripted reply (None: stay silent)."""

    def __init__(self, replies: list[Reply], unsolicited: bytes = b"") -> None:
        self.fd, self._slave = os.openpty()
        tty.setraw(self.fd)
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._unsolicited = unsolicited
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RawResponder:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self.fd)
        os.close(self._slave)

    def _run(self) -> None:
        buf = b""
        if self._unsolicited:
            os.write(self.fd, self._unsolicited)  # noise before the master says anything
        while not self._stop.is_set():
            r, _, _ = select.select([self.fd], [], [], 0.02)
            if not r:
                continue
            buf += os.read(self.fd, 512)
            while len(buf) >= 8 and len(buf) >= request_length(buf):
                n = request_length(buf)
                req, buf = buf[:n], buf[n:]
                assert check_crc(req, 0, n), req.hex()
                self.requests.append(req)
                reply = self.replies.pop(0) if self.replies else None
                if callable(reply):
                    reply = reply(req)
                if reply:
                    time.sleep(0.002)
                    os.write(self.fd, reply)


GOOD_5 = frame(5, 4, 4, 0x12, 0x34, 0x56, 0x78)
READ_5 = ["read", 5, mb.FC_READ_INPUT_REGISTERS, 0, 2]
CFG = {"timeout_ms": 250, "retries": 0}  # room for a loaded machine: the good replies must beat it


def test_reply_from_the_wrong_address(fw_interpreter):
    with RawResponder([frame(7, 4, 4, 0, 1, 0, 2), GOOD_5]) as dev:
        out = run_fw(fw_interpreter, dev.path, {"config": CFG, "ops": [READ_5, READ_5]})
    wrong, good = out["results"]
    assert wrong["err"] == "timeout" and wrong["values"] == [] and not wrong["ok"]
    assert good["ok"] and good["values"] == [0x1234, 0x5678]
    assert out["stray_frames"] == 1 and "7" not in out["health"]


@pytest.mark.parametrize(
    "reply, err",
    [
        (frame(5, 4, 2, 0x12, 0x34), "frame"),  # byte count says 1 register, 2 were asked
        (frame(5, 4, 6, 0, 1, 0, 2, 0, 3), "frame"),  # 3 registers
        (GOOD_5[:-1] + bytes([GOOD_5[-1] ^ 0x40]), "crc"),
        (GOOD_5[:5], "frame"),  # truncated
        (frame(5, 3, 4, 0x12, 0x34, 0x56, 0x78), "timeout"),  # function code of another request
    ],
)
def test_malformed_replies_are_errors_never_data(fw_interpreter, reply, err):
    with RawResponder([reply, GOOD_5]) as dev:
        out = run_fw(fw_interpreter, dev.path, {"config": CFG, "ops": [READ_5, READ_5]})
    bad, good = out["results"]
    assert bad["err"] == err and bad["values"] == [] and not bad["ok"]
    assert good["ok"] and good["values"] == [0x1234, 0x5678]


def test_write_echo_must_match_the_request(fw_interpreter):
    def echo_other_value(req: bytes) -> bytes:
        return frame(*req[:5], req[5] ^ 1)

    def echo_other_quantity(req: bytes) -> bytes:
        return frame(*req[:4], 0, 3)

    def echo(req: bytes) -> bytes:
        return frame(*req[:6])

    replies: list[Reply] = [echo_other_value, echo, echo_other_quantity, echo]
    ops = [
        ["write", 5, mb.FC_WRITE_SINGLE_REGISTER, 10, 300],
        ["write", 5, mb.FC_WRITE_SINGLE_REGISTER, 10, 300],
        ["write", 5, mb.FC_WRITE_MULTIPLE_REGISTERS, 10, [1, 2]],
        ["write", 5, mb.FC_WRITE_MULTIPLE_REGISTERS, 10, [1, 2]],
    ]
    with RawResponder(replies) as dev:
        out = run_fw(fw_interpreter, dev.path, {"config": CFG, "ops": ops})
    assert [r["err"] for r in out["results"]] == ["frame", "ok", "frame", "ok"]
    assert out["health"]["5"]["frame"] == 2


def test_unsolicited_bytes_and_unusual_exception_codes(fw_interpreter):
    replies: list[Reply] = [frame(5, 0x84, 0x0B), GOOD_5]
    with RawResponder(replies, unsolicited=b"\x05\x04\x04\xff\xff") as dev:
        time.sleep(0.05)  # the noise waits in the port before the master starts
        out = run_fw(fw_interpreter, dev.path, {"config": CFG, "ops": [READ_5, READ_5]})
    exc, good = out["results"]
    assert exc["err"] == "exception" and exc["exc"] == 11 and exc["values"] == []
    assert good["ok"] and good["values"] == [0x1234, 0x5678]
