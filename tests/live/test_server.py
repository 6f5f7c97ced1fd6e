"""The live server without a browser: bad input, disconnects, the CLI's --live, snapshots."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from host.live import parse_listen
from host.live.pacer import Pacer
from host.live.server import LiveError, LiveServer
from host.live.snapshot import journal_tail
from host.sim import scenario as scn
from host.sim.engine import Engine
from tests.live.conftest import SCENARIO, WAIT_S, LiveRun

ROOT = Path(__file__).resolve().parents[2]


def post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url + "control", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def latest(url: str) -> dict[str, Any]:
    """The newest snapshot ({} before the first: the run may not have taken one yet)."""
    with urllib.request.urlopen(url + "snapshot", timeout=WAIT_S) as r:
        data = json.loads(r.read())
    assert data is None or isinstance(data, dict)
    return data or {}


def until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("text, want", [("8080", ("127.0.0.1", 8080)), ("0.0.0.0:80", ("0.0.0.0", 80)),
                                        ("[::1]:9000", ("::1", 9000)), ("localhost:0", ("localhost", 0))])
def test_listen_addresses(text: str, want: tuple[str, int]) -> None:
    assert parse_listen(text) == want


@pytest.mark.parametrize("text, why", [("http", "port must be a number"), ("70000", "0..65535"),
                                       (":80", "empty host"), ("host:", "port must be a number")])
def test_bad_listen_addresses_say_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_listen(text)


def test_a_port_in_use_is_refused_before_anything_runs() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(LiveError, match=f"127.0.0.1:{port}: the port is in use"):
            LiveServer(port=port)


def test_sim_live_port_in_use_exits_2_before_the_run(tmp_path: Path) -> None:
    out = tmp_path / "report"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "host.cli", "sim", str(SCENARIO), "--live", str(port),
                            "--out", str(out), "-q"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert f"--live: cannot listen on 127.0.0.1:{port}: the port is in use" in p.stderr
    assert not list(out.glob("*")), "nothing of a run may be written"


def test_sim_live_bad_address_exits_2() -> None:
    p = subprocess.run([sys.executable, "-m", "host.cli", "sim", "--live", "nowhere:port"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert "port must be a number" in p.stderr


def test_sim_live_serves_the_run_and_ends_with_it(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "host.cli", "sim", str(SCENARIO), "--duration", "5m",
                        "--live", "127.0.0.1:0", "--speed", "max", "--json", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "live view: http://127.0.0.1:" in p.stderr
    assert json.loads(p.stdout)["swaps"] == 1
    assert (tmp_path / "summary.json").is_file()


def test_unknown_and_bad_controls_get_an_error_and_the_server_keeps_running(
        live_run: Callable[..., LiveRun]) -> None:
    run = live_run(speed="10")
    url = run.url
    code, body = post(url, b'{"action": "launch"}')
    assert code == 400 and body["error"] == "unknown control 'launch'; known: pause, resume, speed"
    code, body = post(url, b'{"action": "speed", "speed": "7"}')
    assert code == 400 and "unknown speed '7'" in body["error"]
    code, body = post(url, b"pause!")
    assert code == 400 and body["error"].startswith("not JSON")
    code, body = post(url, b'["pause"]')
    assert code == 400 and "JSON object" in body["error"]
    assert run.pacer.speed == "10" and not run.pacer.paused
    # ... and it still serves and obeys.
    code, body = post(url, b'{"action": "pause"}')
    assert code == 200 and body["ok"]
    until(lambda: latest(url).get("paused", False), "a paused snapshot")
    code, body = post(url, b'{"action": "speed", "speed": "max"}')
    assert code == 200 and body["result"] == "max"
    post(url, b'{"action": "resume"}')
    until(lambda: latest(url).get("finished", False), "the run finished")
    assert run.error is None


def _read_some_events(port: int, abort: bool) -> bytes:
    """An SSE client that reads a little and goes away (abort: a TCP reset, mid-stream)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    data = b""
    while data.count(b"data: ") < 2:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    if abort:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    return data


def test_browsers_that_disconnect_mid_update_do_not_break_the_server(
        live_run: Callable[..., LiveRun]) -> None:
    run = live_run(speed="100")
    for k in range(6):
        data = _read_some_events(run.server.port, abort=k % 2 == 0)
        assert b"200 OK" in data and b"text/event-stream" in data and b'"seq":' in data
    until(lambda: run.server.clients == 0, "every stream closed on the server")
    seq = latest(run.url).get("seq", 0)
    until(lambda: latest(run.url).get("seq", 0) > seq, "snapshots still flowing")
    assert run.error is None


def test_a_snapshot_is_plain_json_and_shows_the_station() -> None:
    sc = scn.load(str(SCENARIO))
    sc.duration_s = 100.0
    eng = Engine(sc)
    snaps: list[dict[str, Any]] = []
    pacer = Pacer(eng, snaps.append, speed="max")
    eng.pace = pacer
    eng.run()
    pacer.done()
    s = snaps[-1]
    json.dumps(s, allow_nan=False)
    assert s["finished"] and s["t_s"] == 100.0 and s["clock"] == "day 0 00:01:40"
    assert len(s["slots"]) == 23 and len(s["steps"]) == 13
    assert s["bay"]["step"] in s["steps"] and s["bay"]["in_step_s"] <= s["bay"]["timeout_s"]
    assert s["bay"]["vehicle"] == "800001" and s["bay"]["vehicle_pack"] == 800001
    assert {x["state"] for x in s["slots"]} >= {"ready", "charging"}
    assert [a["key"] for a in s["alarms"]] == ["4:runaway"] and s["alarms"][0]["slot"] == "S05"
    assert s["grid"]["cap_kw"] == 1000.0 and 0 < s["grid"]["kw"] < s["grid"]["cap_kw"]
    assert s["journal"] and s["journal"][-1]["seq"] > s["journal"][0]["seq"]
    assert s["kpi"]["arrived"] == 1


def test_the_journal_tail_skips_a_cut_first_line_and_bad_lines() -> None:
    from firmware.core import journal as jn

    lines = b"".join(jn.encode(i, "EV", {"c": "x" * 50, "i": i}) for i in range(200))
    tail = journal_tail(lines + b"garbage|00000000\n", n=5)
    assert [r["seq"] for r in tail] == [195, 196, 197, 198, 199]
    assert journal_tail(b"") == []


def test_pacing_holds_virtual_time_to_the_speed() -> None:
    """Virtual time never runs ahead of wall time x speed (a fake clock: no waiting)."""
    sc = scn.load(str(SCENARIO))
    sc.duration_s = 30.0
    eng = Engine(sc)
    wall = [0.0]
    pacer = Pacer(eng, lambda s: None, speed="10", clock=lambda: wall[0])
    behind: list[float] = []

    def wait(timeout: float | None = None) -> bool:
        wall[0] += timeout or 0.0  # the clock moves on by what the pacer would sleep
        return False

    pacer._wake.wait = wait  # type: ignore[method-assign]
    original = pacer.__call__

    def pace(t_ms: int) -> None:
        original(t_ms)
        behind.append(wall[0] * 10.0 - t_ms / 1000.0)

    eng.pace = pace
    eng.run()
    assert min(behind) >= -1e-6  # never ahead of wall time x 10
    assert wall[0] == pytest.approx(3.0, abs=0.1)
