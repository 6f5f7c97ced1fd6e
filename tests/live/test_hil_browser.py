"""The live page on the HIL rig, in a real headless Chromium: the operator's e-stop."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from hil.live import HilView
from hil.rig import ScenarioDriver, ScenarioError
from host.live.server import LiveServer
from tests.live.conftest import WAIT_S
from tests.live.test_browser import open_page, wait_for

READ_HIL = """
return {hil: !document.getElementById("hil-controls").hidden,
        state: document.getElementById("state").textContent,
        coils: document.getElementById("bay-coils").textContent,
        step: document.getElementById("bay-step").textContent,
        alarms: Array.from(document.querySelectorAll("#alarms li")).map((li) => li.textContent)};
"""


def post(url: str, msg: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url + "control", data=json.dumps(msg).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def hil_view(driver: Any, cond: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def check(_: dict[str, Any]) -> bool:
        out.update(driver.execute_script(READ_HIL))
        return cond(out)

    wait_for(driver, check, what)
    return out


@pytest.mark.hil_unix_only("the page's e-stop is tested once, on the unix target")
@pytest.mark.hil_rig(bay_scale=0.05)
def test_the_page_estop_latches_the_estop_and_the_coils_go_off(
        hil_driver: ScenarioDriver, browser: Callable[[], Any]) -> None:
    from selenium.webdriver.common.by import By

    d = hil_driver
    server = LiveServer(port=0)
    view = HilView(d, server.publish, "hil-test")
    server.controls.update(view.controls())
    server.start()
    view.start()
    try:
        page = open_page(browser, server.url)
        hil_view(page, lambda v: v["hil"], "the rig's operator controls")
        d.arrive(soc=0.3)
        d.wait_step("lift", 30)
        d.wait_field(lambda: d.motion_coils() != [], 10, "the lift running")
        hil_view(page, lambda v: v["coils"] not in ("", "drives on: none"), "drives on")
        page.find_element(By.ID, "estop-press").click()
        d.wait(lambda s: "estop" in s["hold"], 10, "the e-stop latched")
        d.wait_field(lambda: d.motion_coils() == [], 10, "every drive off")
        v = hil_view(page, lambda v: "estop" in v["state"] and v["coils"] == "drives on: none"
                     and any("estop" in a for a in v["alarms"]), "the e-stop hold, no drive on, the alarm")
        assert v["state"].startswith("hold")
        # Bad actions: an error each, and the rig untouched.
        code, body = post(server.url, {"action": "charger_dropout", "slot": "S99"})
        assert code == 400 and "unknown slot 'S99'" in body["error"]
        code, body = post(server.url, {"action": "estop", "pressed": "yes"})
        assert code == 400 and "true or false" in body["error"]
        # Release and acknowledge from the page: the swap goes on.
        page.find_element(By.ID, "estop-release").click()
        released = False
        for _ in range(100):  # as an operator does: again until the station has read the chain closed
            page.find_element(By.ID, "ack").click()
            try:
                d.wait(lambda s: "estop" not in s["hold"], 0.5, "the hold released")
            except ScenarioError:
                continue
            released = True
            break
        assert released, "the page's acknowledge never released the e-stop hold"
        st = d.wait_swaps(1, timeout=60)
        assert st["swaps_ok"] == 1
        assert view.errors == 0
    finally:
        view.stop()
        server.stop()


def test_hil_live_port_in_use_exits_2_before_the_rig_starts(tmp_path: Any,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from host.cli import main

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main(["hil", "swaps", "--out", str(tmp_path), "--quiet", "--live", str(port)]) == 2
    assert f"--live: cannot listen on 127.0.0.1:{port}: the port is in use" in capsys.readouterr().err
    assert not (tmp_path / "console.log").exists(), "the rig must not have started"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "the port is in use" in summary["problems"][0]


def test_hil_live_serves_the_rig_run(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from host.cli import main

    assert main(["hil", "swaps", "--out", str(tmp_path), "--bay-scale", "0.01", "--live", "127.0.0.1:0"]) == 0
    out = capsys.readouterr()
    assert "live view: http://127.0.0.1:" in out.out + out.err


@pytest.mark.hil_unix_only("the view's reads of the firmware are the same on every target")
@pytest.mark.hil_rig(bay_scale=0.05)
def test_the_rig_view_shows_the_firmwares_slot_states_and_journal_tail(hil_driver: ScenarioDriver) -> None:
    """Reserved exists only in the firmware; the page shows it, and the journal's last records
    from the controller's flash, as on the simulator's page."""
    d = hil_driver
    view = HilView(d, lambda snap: None, "hil-test")
    d.arrive(soc=0.3)
    d.wait_step("lift", 30)  # reserved from authorise until fetch takes the pack
    snap: dict[str, Any] = {}
    for _ in range(100):
        view._fw_at = None  # read the firmware now, not at its pace
        snap = view.snapshot()
        if any(s["state"] == "reserved" for s in snap["slots"]):
            break
    reserved = [s for s in snap["slots"] if s["state"] == "reserved"]
    assert len(reserved) == 1 and reserved[0]["for_bay"], snap["slots"]
    fw = d.rack_probe()["slots"][view.slot_ids.index(reserved[0]["id"])]
    assert fw["state"] == "RESERVED" and fw["pack"] == reserved[0]["pack"]
    seqs = [r["seq"] for r in snap["journal"]]
    assert "SB" in [r["kind"] for r in snap["journal"]], snap["journal"]  # this swap's begin
    assert seqs == sorted(set(seqs)) and 0 < seqs[-1] <= d.journal_probe()["seq"]
    assert view.errors == 0
