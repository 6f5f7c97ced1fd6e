"""The backend's storage and the CLIs' bad input, without a broker."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

import pytest

from firmware.core.telemetry import sign as fw_sign
from firmware.proto.hmac256 import hmac_sha256
from host import cli
from host.backend import ops
from host.backend.store import BadMessage, Store


def test_firmware_hmac_matches_cpython_hmac() -> None:
    for n in (0, 1, 31, 32, 63, 64, 65, 200):
        key = os.urandom(n)
        msg = os.urandom(n * 3 + 1)
        assert hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()
    key = os.urandom(32)
    assert fw_sign(key, "PSS-1", 42, "maintenance on") == ops.sign(key, "PSS-1", 42, "maintenance on")


def _swap(num: int, **kw: object) -> bytes:
    d = {"station": "S1", "seq": 10 + num, "n": num, "v": "7001", "m": "NIO-ES6", "o": "ok", "po": 555,
         "so": 12.0, "pi": 1000, "si": 95.0, "e": 79.5, "b": 1, "t0": 5, "t1": 99, "w": None}
    d.update(kw)
    return json.dumps(d).encode()


def test_a_swap_sent_twice_is_stored_once(tmp_path: Path) -> None:
    s = Store(str(tmp_path / "b.sqlite"))
    s.handle("swapstation/S1/swaps", _swap(1))
    s.handle("swapstation/S1/swaps", _swap(1, e=0.0))  # a resend: the first one stands
    s.handle("swapstation/S1/swaps", _swap(2))
    assert s.rows("SELECT n, energy_kwh, copies, pack_out FROM swaps ORDER BY n") == [(1, 79.5, 2, 555),
                                                                                       (2, 79.5, 1, 555)]
    s.close()


@pytest.mark.parametrize(("topic", "payload", "why"), [
    ("swapstation/S1/swaps", b"{not json", "not JSON"),
    ("swapstation/S1/swaps", b"[1, 2]", "expected a JSON object"),
    ("swapstation/S1/swaps", _swap(1, station="S2"), "'S2' on S1's topic"),
    ("swapstation/S1/swaps", _swap(1, n=None), "without a swap number"),
    ("swapstation/S1/alarms", b'{"slot": -1}', "needs slot and code"),
    ("swapstation/S1/result", b'{"ctr": 1}', "needs result"),
    ("swapstation/S1/other", b"{}", "not a station topic"),
    ("swapstation/S1/swaps", b"\xff\xfe", "not JSON"),
])
def test_bad_messages_are_refused_and_recorded(tmp_path: Path, topic: str, payload: bytes, why: str) -> None:
    s = Store(str(tmp_path / "b.sqlite"))
    with pytest.raises(BadMessage, match=why):
        s.handle(topic, payload)
    assert s.rows("SELECT COUNT(*) FROM swaps") == [(0,)]
    [(t, w)] = s.rows("SELECT topic, why FROM rejected")
    assert t == topic and why in w
    s.close()


def test_ops_refuses_bad_keys_files_with_the_reason(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.json"
    common = ["--db", str(tmp_path / "b.sqlite"), "--broker", "127.0.0.1:1", "--timeout", "1"]
    cases = [
        (None, "keys.json: No such file"),
        ("{nope", "not JSON"),
        (json.dumps({"OTHER": "aa" * 32}), "no key for station 'S1'"),
        (json.dumps({"S1": "xyz"}), "not hex"),
        (json.dumps({"S1": "aa" * 4}), "must be 32..64 bytes"),
    ]
    for text, why in cases:
        if text is None:
            keys.unlink(missing_ok=True)
        else:
            keys.write_text(text)
        assert cli.main(["ops", "S1", "status", "--keys", str(keys), *common]) == ops.EXIT_USAGE
        assert why in capsys.readouterr().err, why
    keys.write_text(json.dumps({"S1": "aa" * 32}))
    assert cli.main(["ops", "S1", "status", "--keys", str(keys), "--broker", "127.0.0.1:99999",
                     *common[:2]]) == ops.EXIT_USAGE
    assert "expected HOST or HOST:PORT" in capsys.readouterr().err


def test_backend_refuses_a_database_it_cannot_open(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["backend", "--db", str(tmp_path / "missing" / "b.sqlite"), "--broker", "127.0.0.1:1"])
    assert code == 2 and "unable to open database" in capsys.readouterr().err
