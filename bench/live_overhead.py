"""What watching a run costs: a simulated hour at full speed with and without the live view.

Runs the same scenario hour (default pss4-urban-day from 07:00, the morning rush: set with
--start) as fast as it goes, plain and with the live view attached (pacer at "max", the
server, and a client reading every snapshot: an SSE reader by default, a real headless
Chromium with --browser), alternating, and prints the wall times and their ratio. The
issue's target is under 10 %. Prints only; it never asserts.

    .venv/bin/python bench/live_overhead.py
    .venv/bin/python bench/live_overhead.py --repeat 5 --browser
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host.live.pacer import Pacer, controls  # noqa: E402
from host.live.server import LiveServer  # noqa: E402
from host.sim import scenario  # noqa: E402
from host.sim.engine import Engine  # noqa: E402

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage")


class Hour:
    """The wall time of the measured hour, from the engine's progress calls (the run starts
    at midnight; the hour is its last part)."""

    def __init__(self, start_s: float) -> None:
        self.start_s = start_s
        self.t0: float | None = None
        self.cpu0 = 0.0
        self.t_start_s = 0.0

    def __call__(self, t_s: float) -> None:
        if self.t0 is None and t_s >= self.start_s:
            self.t0 = time.perf_counter()
            self.cpu0 = time.process_time()
            self.t_start_s = t_s

    def run(self, eng: Engine) -> tuple[float, float]:
        """Wall and CPU seconds (all of the process's threads: the server's too) of the hour."""
        eng.run()
        assert self.t0 is not None
        # progress comes every 1/200 of the run: scale to the hour it really covered
        scale = (eng.t_s - self.start_s) / (eng.t_s - self.t_start_s)
        return (time.perf_counter() - self.t0) * scale, (time.process_time() - self.cpu0) * scale


def engine_for(name: str, start_s: float, hour_s: float) -> tuple[Engine, Hour]:
    sc = scenario.load(name)
    sc.duration_s = start_s + hour_s
    hour = Hour(start_s)
    return Engine(sc, progress=hour), hour


class SseReader(threading.Thread):
    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.events = 0

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url + "events", timeout=60) as r:
                for line in r:
                    if line.startswith(b"data: "):
                        self.events += 1
        except OSError:
            pass


def watched(name: str, start_s: float, hour_s: float, browser: bool) -> tuple[tuple[float, float], int]:
    eng, hour = engine_for(name, start_s, hour_s)
    server = LiveServer(port=0)
    pacer = Pacer(eng, server.publish, speed="max")
    server.controls.update(controls(pacer))
    server.start()
    driver: Any = None
    reader: SseReader | None = None
    try:
        if browser:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service

            opts = webdriver.ChromeOptions()
            opts.binary_location = "/usr/bin/chromium"
            for flag in CHROMIUM_FLAGS:
                opts.add_argument(flag)
            opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='live-bench-')}")
            driver = webdriver.Chrome(options=opts, service=Service(executable_path="/usr/bin/chromedriver"))
            driver.get(server.url)
        else:
            reader = SseReader(server.url)
            reader.start()
        while server.clients < 1:
            time.sleep(0.01)
        start_ms = int(start_s * 1000)

        def pace(t_ms: int) -> None:  # watched from the hour's start
            if t_ms >= start_ms:
                pacer(t_ms)

        eng.pace = pace
        wall = hour.run(eng)
        pacer.done()
        seen = int(driver.execute_script("return Number(document.body.dataset.seq)")) if driver else (
            reader.events if reader else 0)
        return wall, seen
    finally:
        if driver is not None:
            driver.quit()
        server.stop()


def plain(name: str, start_s: float, hour_s: float) -> tuple[float, float]:
    eng, hour = engine_for(name, start_s, hour_s)
    return hour.run(eng)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="pss4-urban-day")
    ap.add_argument("--start", type=scenario.parse_duration, default=7 * 3600.0,
                    help="virtual time of day the measured hour starts (default 7h)")
    ap.add_argument("--hour", type=scenario.parse_duration, default=3600.0, help="span measured (default 1h)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each kind, alternating (best counts)")
    ap.add_argument("--browser", action="store_true",
                    help="watch with a headless Chromium, not an SSE reader")
    a = ap.parse_args()
    bare: list[tuple[float, float]] = []
    live: list[tuple[float, float]] = []
    for k in range(a.repeat):
        bare.append(plain(a.scenario, a.start, a.hour))
        times, seen = watched(a.scenario, a.start, a.hour, a.browser)
        live.append(times)
        print(f"run {k + 1}: unwatched {bare[-1][0]:.2f} s wall {bare[-1][1]:.2f} s CPU, "
              f"watched {times[0]:.2f} s wall {times[1]:.2f} s CPU ({seen} snapshots seen)")
    who = "headless Chromium" if a.browser else "an SSE reader"
    print(f"{a.scenario}, {a.hour / 3600:g} h from {a.start / 3600:g} h, watched by {who}:")
    for i, what in enumerate(("wall", "CPU")):
        b = [x[i] for x in bare]
        w = [x[i] for x in live]
        print(f"  {what:4}: unwatched best {min(b):.2f} s median {statistics.median(b):.2f} s; "
              f"watched best {min(w):.2f} s median {statistics.median(w):.2f} s; overhead "
              f"{100 * (min(w) / min(b) - 1):+.1f} % (best), "
              f"{100 * (statistics.median(w) / statistics.median(b) - 1):+.1f} % (median)")
    print("  target: under 10 %; CPU time counts the server's thread too (the Chromium process not)")


if __name__ == "__main__":
    main()
