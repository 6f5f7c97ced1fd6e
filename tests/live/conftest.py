"""Fixtures of the live view's tests: a simulated run serving the page, and real headless
Chromium browsers (Debian's chromium + chromium-driver, driven by Selenium)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from host.live.pacer import Pacer, controls
from host.live.server import LiveServer
from host.sim import scenario as scn
from host.sim.engine import Engine, RunResult

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "live-test.toml"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The machine's network is closed: without these Chromium waits on connections it cannot make.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")
WAIT_S = 90.0  # a condition's longest wait on a loaded 2-core machine


class LiveRun:
    """A scenario running on a thread, paced and watched, its page served on loopback."""

    def __init__(self, sc: scn.Scenario, speed: str, port: int = 0, paused: bool = False) -> None:
        self.eng = Engine(sc)
        self.server = LiveServer(port=port)
        self.pacer = Pacer(self.eng, self.publish, speed=speed, paused=paused)
        self.server.controls.update(controls(self.pacer))
        self.eng.pace = self.pacer
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="live-run", daemon=True)

    def publish(self, snap: dict[str, Any]) -> None:
        self.server.publish(snap)  # the server of the moment (a test restarts it)

    def _run(self) -> None:
        try:
            self.result = self.eng.run()
            self.pacer.done()
        except BaseException as e:  # noqa: BLE001  the test reads it
            self.error = e

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> LiveRun:
        self.server.start()
        self.thread.start()
        return self

    def stop(self) -> None:
        self.eng.request_stop()
        self.pacer.resume()
        self.thread.join(60)
        self.server.stop()


@pytest.fixture
def live_run() -> Iterator[Callable[..., LiveRun]]:
    runs: list[LiveRun] = []

    def start(speed: str = "10", duration_s: float | None = None, port: int = 0,
              paused: bool = False) -> LiveRun:
        sc = scn.load(str(SCENARIO))
        if duration_s is not None:
            sc.duration_s = duration_s
        run = LiveRun(sc, speed, port, paused)
        runs.append(run)
        return run.start()

    yield start
    for run in runs:
        run.stop()


@pytest.fixture(scope="session")
def chromium_ready() -> None:
    from host.deploy import debian

    try:
        debian.ensure({"chromium": CHROMIUM, "chromium-driver": CHROMEDRIVER}, "the browser tests")
    except debian.MissingPackages as e:
        pytest.fail(str(e))


@pytest.fixture
def browser(chromium_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Any]]:
    """Opens headless Chromium windows (each with a fresh profile); all closed at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opened: list[Any] = []

    def open_browser() -> Any:
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            opts.add_argument(flag)
        opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
        # The Debian driver by path: Selenium Manager then has nothing to download.
        driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
        driver.set_page_load_timeout(WAIT_S)
        opened.append(driver)
        return driver

    yield open_browser
    for driver in opened:
        try:
            driver.quit()
        except Exception:  # noqa: BLE001  a browser already gone
            pass
