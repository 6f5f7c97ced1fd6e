"""The replay view: a finished run's frames (frames.jsonl.gz beside its report), served with a
scrubber by `swapstation replay`, and looked at in a real headless Chromium."""

from __future__ import annotations

import gzip
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from host.cli import main
from host.live import record
from host.live.server import LiveServer
from host.sim import scenario as scn
from host.sim.engine import Engine
from tests.live.conftest import SCENARIO, WAIT_S


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`swapstation sim` of the live test's scenario (a swap, charging, a thermal event) into a folder."""
    out = tmp_path_factory.mktemp("report")
    assert main(["sim", str(SCENARIO), "--out", str(out), "-q", "--no-plots"]) == 0
    return out


def frames_of(folder: Path) -> list[dict[str, Any]]:
    with gzip.open(folder / record.FRAMES_FILE) as f:
        return [json.loads(line) for line in f]


def test_a_report_holds_a_frame_every_30_s_of_the_run_and_one_at_its_end(report: Path) -> None:
    frames = frames_of(report)
    ts = [f["t_s"] for f in frames]
    sc = scn.load(str(SCENARIO))
    assert ts[0] == 0.0 and ts == sorted(ts)
    steps = [b - a for a, b in zip(ts[:-2], ts[1:-1], strict=True)]
    assert all(record.FRAME_EVERY_S <= d < 2 * record.FRAME_EVERY_S for d in steps), steps
    assert frames[-1]["finished"] and not any(f["finished"] for f in frames[:-1])
    assert sc.duration_s - record.FRAME_EVERY_S <= ts[-1] <= sc.duration_s
    assert {f["bay"]["step"] for f in frames} - {None}, "no frame shows the swap"
    summary = json.loads((report / "summary.json").read_text())
    assert frames[-1]["kpi"]["swaps"] == summary["swaps"]


def test_no_frames_writes_none(tmp_path: Path) -> None:
    assert main(["sim", str(SCENARIO), "--duration", "10m", "--out", str(tmp_path), "-q", "--no-plots",
                 "--no-frames"]) == 0
    assert (tmp_path / "summary.json").is_file() and not (tmp_path / record.FRAMES_FILE).exists()


@pytest.mark.parametrize("damage, why", [
    (None, "not there"),
    (b"not gzip", "cannot be read"),
    (gzip.compress(b'{"t_s": 0}\n{"t_s": 30', mtime=0), "cannot be read"),
    (gzip.compress(b'{"t_s": 0}\n[1, 2]\n', mtime=0), "line 2 is not a view frame"),
    (gzip.compress(b"", mtime=0), "holds no frames"),
], ids=["missing", "not-gzip", "cut-line", "not-a-frame", "empty"])
def test_a_folder_without_good_frames_is_refused_with_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: bytes | None, why: str) -> None:
    if damage is not None:
        (tmp_path / record.FRAMES_FILE).write_bytes(damage)
    assert main(["replay", str(tmp_path), "--live", "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert why in err and str(tmp_path) in err


def test_a_port_in_use_is_refused(report: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with LiveServer(port=0) as busy:
        assert main(["replay", str(report), "--live", f"127.0.0.1:{busy.port}"]) == 2
    assert "the port is in use" in capsys.readouterr().err


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=WAIT_S) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_server_gives_the_frames_by_number(report: Path) -> None:
    frames = record.load(report)
    with LiveServer(port=0, frames=frames) as srv:
        assert get(srv.url + "info")[1]["replay"] == len(frames)
        status, times = get(srv.url + "frames")
        assert status == 200 and times["t_s"] == [f["t_s"] for f in frames_of(report)]
        assert get(srv.url + "frame/0")[1]["t_s"] == 0.0
        assert get(srv.url + f"frame/{len(frames) - 1}")[1]["finished"] is True
        status, body = get(srv.url + f"frame/{len(frames)}")
        assert status == 404 and f"this replay has {len(frames)}" in body["error"]
        assert get(srv.url + "frame/x")[0] == 400
    with LiveServer(port=0) as live:  # a live run has no frames
        assert get(live.url + "info")[1]["replay"] is None and get(live.url + "frames")[0] == 404


def test_recording_beside_a_live_page_changes_neither(tmp_path: Path) -> None:
    """The recorder and the pacer share Engine.pace: both see every step."""
    sc = scn.load(str(SCENARIO))
    sc.duration_s = 600.0
    eng = Engine(sc)
    rec = record.Recorder(eng, every_s=60.0)
    seen: list[int] = []
    eng.pace = record.both(rec, seen.append)
    eng.run()
    rec.done()
    assert len(rec.frames) == 11 and seen and seen == sorted(seen)
    assert record.both(None, None) is None and record.both(None, seen.append) == seen.append


READ = """
return {conn: document.getElementById("conn").textContent,
        clock: document.getElementById("clock").textContent,
        t: Number(document.body.dataset.t || -1),
        label: document.getElementById("scrub-label").textContent,
        scrub: !document.getElementById("replay-controls").hidden,
        sim: !document.getElementById("sim-controls").hidden};
"""


def test_the_page_scrubs_through_a_finished_run(report: Path, browser: Callable[[], Any]) -> None:
    frames = record.load(report)
    with LiveServer(port=0, frames=frames) as srv:
        driver = browser()
        driver.get(srv.url)

        def wait(cond: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
            deadline = time.monotonic() + WAIT_S
            view: dict[str, Any] = {}
            while time.monotonic() < deadline:
                view = driver.execute_script(READ)
                if cond(view):
                    return view
                time.sleep(0.05)
            raise AssertionError(f"the page never showed {what}; last: {view}")

        first = wait(lambda v: v["conn"] == "replay" and v["t"] == 0.0, "the first frame")
        assert first["scrub"] and not first["sim"] and first["label"] == f"1 / {len(frames)}"
        last = len(frames) - 1
        driver.execute_script(f"const s = document.getElementById('scrub'); s.value = {last};"
                              "s.dispatchEvent(new Event('input'));")
        end = wait(lambda v: "(finished)" in v["clock"], "the last frame")
        assert end["t"] == json.loads(frames[last])["t_s"] and end["label"] == f"{last + 1} / {len(frames)}"
        driver.execute_script("document.getElementById('scrub').value = 0;"
                              "document.getElementById('scrub').dispatchEvent(new Event('input'));")
        wait(lambda v: v["t"] == 0.0, "the start again")
        driver.find_element("id", "play").click()  # plays forward, a frame at a time
        wait(lambda v: v["t"] > 0.0, "time moving under play")
