"""The live page in a real headless Chromium during a simulated run: what a person sees."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from host.live.server import LiveServer
from tests.live.conftest import WAIT_S, LiveRun

# One round trip: what the page shows now.
READ = """
const b = document.body.dataset;
const slot = (id) => document.querySelector('.slot[data-slot="' + id + '"]');
const s21 = slot("S21"), s05 = slot("S05");
return {seq: Number(b.seq || -1), t: Number(b.t || -1), paused: b.paused, finished: b.finished,
        step: document.getElementById("bay-step").textContent,
        clock: document.getElementById("clock").textContent,
        conn: document.getElementById("conn").textContent,
        sim: !document.getElementById("sim-controls").hidden,
        s21: s21 ? {state: s21.dataset.state, soc: Number(s21.dataset.soc),
                    text: s21.querySelector(".soc").textContent} : null,
        s05: s05 ? {state: s05.dataset.state, label: s05.querySelector(".st").textContent} : null,
        alarms: Array.from(document.querySelectorAll("#alarms li")).map((li) => li.textContent)};
"""


def wait_for(driver: Any, cond: Callable[[dict[str, Any]], bool], what: str,
             seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Read the page until ``cond`` holds (every view read goes into ``seen``)."""
    deadline = time.monotonic() + WAIT_S
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = driver.execute_script(READ)
        if seen is not None:
            seen.append(view)
        if cond(view):
            return view
        time.sleep(0.05)
    raise AssertionError(f"the page never showed {what}; last: {view}")


def open_page(browser: Callable[[], Any], url: str) -> Any:
    driver = browser()
    driver.get(url)
    wait_for(driver, lambda v: v["seq"] > 0 and v["conn"] == "live", "a first snapshot")
    return driver


def not_blank(png: bytes) -> float:
    """Pixel spread of a screenshot (0: one flat colour)."""
    import io

    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    return float(img.std())


def test_the_page_follows_a_swap_charging_and_a_thermal_alarm(
        live_run: Callable[..., LiveRun], browser: Callable[[], Any], tmp_path: Path) -> None:
    # Held at the start until the page is open: a slow browser start misses nothing.
    run = live_run(speed="10", paused=True)
    driver = open_page(browser, run.url)
    assert driver.execute_script(READ)["t"] == 0.0
    run.pacer.resume()
    seen: list[dict[str, Any]] = []
    first = wait_for(driver, lambda v: v["s21"] is not None and v["s21"]["state"] == "charging",
                     "S21 charging", seen)
    # The bay's step changes through a swap: at least three of the 13 steps shown in turn.
    wait_for(driver, lambda v: len({x["step"] for x in seen} - {"idle"}) >= 3, "three swap steps", seen)
    steps = [x["step"] for x in seen]
    shown = list(dict.fromkeys(s for s in steps if s != "idle"))
    order = ["identify", "authorise", "position", "lift", "unbolt", "remove", "store", "fetch"]
    assert [s for s in order if s in shown][:3] == shown[:3], shown
    # A charging slot's SoC rises, and the page says so in its text too.
    soc0 = first["s21"]["soc"]
    risen = wait_for(driver, lambda v: v["s21"]["soc"] > soc0, "S21's SoC rising", seen)
    assert risen["s21"]["text"].startswith("SoC ") and risen["s21"]["state"] == "charging"
    # The thermal event in S05: the alarm is listed and the slot shows quarantined.
    view = wait_for(driver, lambda v: any("runaway" in a for a in v["alarms"])
                    and v["s05"]["state"] == "quarantined", "S05's runaway alarm and quarantine", seen)
    assert any(a.startswith("S05: runaway") for a in view["alarms"]), view["alarms"]
    assert view["s05"]["label"] == "quarantined"
    shot = tmp_path / "live-view.png"
    png = driver.get_screenshot_as_png()
    shot.write_bytes(png)
    assert len(png) > 20_000, "a screenshot this small is blank"
    assert not_blank(png) > 10.0
    assert run.error is None


def test_pause_stops_virtual_time_and_resume_restarts_it(
        live_run: Callable[..., LiveRun], browser: Callable[[], Any]) -> None:
    from selenium.webdriver.common.by import By

    run = live_run(speed="10")
    driver = open_page(browser, run.url)
    wait_for(driver, lambda v: v["t"] > 1.0 and v["sim"], "time running, the controls shown")
    driver.find_element(By.ID, "pause").click()
    paused = wait_for(driver, lambda v: v["paused"] == "1", "paused")
    # Snapshots keep coming while paused; virtual time stays where it stopped.
    later = wait_for(driver, lambda v: v["seq"] >= paused["seq"] + 5, "five more snapshots")
    assert later["t"] == paused["t"] and "(paused)" in later["clock"]
    assert run.eng.t_s == paused["t"] or run.eng.t_s >= paused["t"]
    assert driver.find_element(By.ID, "pause").text == "resume"
    driver.find_element(By.ID, "pause").click()
    wait_for(driver, lambda v: v["paused"] == "0" and v["t"] > paused["t"], "time running again")
    # The speed buttons: "max" runs the rest of the short run at once.
    driver.find_element(By.CSS_SELECTOR, '[data-speed="max"]').click()
    assert driver.find_element(By.CSS_SELECTOR, '[data-speed="max"]') is not None
    wait_for(driver, lambda v: v["finished"] == "1", "the run finished at max speed")
    assert run.error is None


def test_five_browsers_at_once(live_run: Callable[..., LiveRun], browser: Callable[[], Any]) -> None:
    run = live_run(speed="10")
    drivers = [open_page(browser, run.url) for _ in range(5)]
    starts = [d.execute_script(READ)["seq"] for d in drivers]
    for d, s0 in zip(drivers, starts, strict=True):
        wait_for(d, lambda v, s0=s0: v["seq"] > s0 + 3 and v["conn"] == "live", "updates in every browser")
    deadline = time.monotonic() + WAIT_S
    while run.server.clients < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.server.clients == 5
    # One leaves: the others go on.
    drivers[0].quit()
    s1 = drivers[1].execute_script(READ)["seq"]
    wait_for(drivers[1], lambda v: v["seq"] > s1 + 3, "updates after a browser left")
    assert run.error is None


def test_the_page_reconnects_after_a_server_restart(
        live_run: Callable[..., LiveRun], browser: Callable[[], Any]) -> None:
    run = live_run(speed="10")
    driver = open_page(browser, run.url)
    port = run.server.port
    run.server.stop()
    gone = wait_for(driver, lambda v: v["conn"] == "reconnecting", "the connection lost")
    run.server = LiveServer(port=port, controls=run.server.controls).start()
    back = wait_for(driver, lambda v: v["conn"] == "live" and v["seq"] > gone["seq"] + 2, "live again")
    assert back["t"] >= gone["t"]
    assert run.error is None


@pytest.mark.parametrize("speed", ["max"])
def test_the_page_shows_the_end_of_a_run(live_run: Callable[..., LiveRun], browser: Callable[[], Any],
                                         speed: str) -> None:
    run = live_run(speed=speed, duration_s=300.0)
    run.thread.join(WAIT_S)
    driver = open_page(browser, run.url)
    view = wait_for(driver, lambda v: v["finished"] == "1", "the run finished")
    assert "(finished)" in view["clock"] and view["t"] == 300.0
