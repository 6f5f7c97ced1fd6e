"""firmware/main.py: refuses to start a half-written or misconfigured image (watchdog not
started, so the board stays reachable), and the main loop's feeding and idling."""

import fakemachine
from fwtest import raises
from scratchfs import Board, write_image

from firmware import main
from firmware.boards import board_config, image
from firmware.compat import ticks_add, ticks_max

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap

board = fakemachine.install()


def _read(path):
    # Read when a test needs it, not held by the module: on the 128 KB qemu board the
    # station started below has no room for the harness's 5 KB copy of station.json.
    with open(path, "rb") as f:
        return f.read()


def _pico():
    return _read("firmware/boards/pico.json")


def _station():
    return _read("firmware/station.json")


def _wdts():
    return [o for o in fakemachine.created if isinstance(o, fakemachine.WDT)]


def _start_fails(files, exc, part, flashing=False):
    fakemachine.reset()
    b = Board()
    try:
        write_image(b, files)
        if flashing:
            image.set_flashing(b.root, True)
        e = raises(exc, main.start, b.root)
        assert part in str(e), str(e)
        assert main.main(b.root) is None  # prints why and returns to the REPL
        assert _wdts() == []  # never started: mpremote can still reach the board
    finally:
        b.done()


def test_refuses_while_a_flash_is_under_way():
    files = {"board.json": _pico(), "firmware/station.json": _station()}
    _start_fails(files, image.ImageError, "in progress", flashing=True)


def test_refuses_an_image_without_its_board_config():
    _start_fails({"firmware/station.json": _station()}, board_config.BoardConfigError, "cannot read")


def test_refuses_a_bad_board_config():
    bad = _pico().replace(b'"tx": 0', b'"tx": 3')
    _start_fails({"board.json": bad, "firmware/station.json": _station()}, board_config.BoardConfigError,
                 "buses.chargers.tx: GPIO3 cannot be UART0 TX")


def test_refuses_a_bad_station_config():
    bad = _station().replace(b'"station_id": "', b'"station_idx": "')
    files = {"board.json": _pico(), "firmware/station.json": bad}
    _start_fails(files, ValueError, "station_idx: unknown field")


def test_refuses_without_a_manifest():
    fakemachine.reset()
    b = Board()
    try:
        b.put("board.json", _pico())
        e = raises(image.ImageError, main.start, b.root)
        assert "no manifest.json" in str(e)
        assert _wdts() == []
    finally:
        b.done()


def test_start_keeps_only_the_manifest_fields_the_banner_and_a_channel_read():
    # The file list (a SHA-256 per file) and the configs' copies stay on the flash: on the
    # qemu board's 128 KB heap the built image could not start its station beside them.
    import json

    from firmware.drivers.vfs_storage import VfsStorage

    fakemachine.reset()
    b = Board()
    stand_in = board.open_storage
    try:
        b.put("data/.keep", b"")
        board.open_storage = lambda root: VfsStorage(b.dir + root)  # the board's /data, in b
        write_image(b, {"board.json": _pico(), "firmware/station.json": _station()})
        m = json.loads(b.get(image.MANIFEST))
        m.update({"firmware": {"version": "0.1.0", "revision": "f" * 40}, "image_sha256": "a" * 64,
                  "station_id": "S1", "target": {"board": "pico"}, "test_drivers": False,
                  "station_config": {"big": "x" * 200}, "board_config": {"board": "pico"}})
        b.put(image.MANIFEST, json.dumps(m).encode())
        del m  # the whole manifest (a SHA-256 per file): held here, it would crowd the station out
        manifest, brd, station = main.start(b.root)
        assert sorted(manifest) == ["firmware", "format", "image_sha256", "station_id", "target",
                                    "test_drivers"]
        assert manifest["image_sha256"] == "a" * 64 and station.state() == "boot"
        brd.close()
    finally:
        board.open_storage = stand_in
        b.done()


class FakeStation:
    """The supervisor's loop contract: tick() returns ms until it needs to run again and
    feeds the watchdog it was given while ``alive``."""

    def __init__(self, waits, watchdog=None):
        self.waits = waits
        self.watchdog = watchdog
        self.ticks = []
        self.alive = True
        self.error = None
        self.alarms = {}

    def tick(self, now):
        self.ticks.append(now)
        if self.alive and self.watchdog is not None:
            self.watchdog.feed()
        return self.waits[len(self.ticks) - 1]


class Clock:
    def __init__(self, t, step):
        self.t = t
        self.step = step  # how long each tick takes

    def __call__(self):
        t = self.t
        self.t = ticks_add(self.t, self.step)
        return t


def _board(led=True):
    fakemachine.reset()
    cfg = board_config.loads(_pico().decode())
    if not led:
        cfg["led"] = None
    station_buses = {"chargers": {"baudrate": 115200}, "bay_io": {"baudrate": 115200}}
    return board.open_board(cfg, {"buses": station_buses}, lambda root: None)


def test_the_supervisor_feeds_the_watchdog_not_the_loop():
    b = _board(led=False)
    station = FakeStation([5] * 6, b.watchdog_gate)
    station.tick(0)  # setup time: the WDT is not running, a feed goes nowhere
    assert _wdts() == [] and b.watchdog_gate.feeds == 0
    main.run(b, station, loops=3, clock=Clock(0, 1), sleep=lambda ms: None)
    assert _wdts()[0].feeds == 3 and _wdts()[0].timeout == 5000
    station.alive = False  # a subsystem stopped: the loop goes on, the WDT starves
    main.run(b, station, loops=2, clock=Clock(0, 1), sleep=lambda ms: None)
    assert _wdts()[0].feeds == 3 and len(_wdts()) == 1


def test_loop_without_a_gate_feeds_after_each_tick_and_sleeps_what_is_left():
    b = _board(led=False)
    b.watchdog_gate = None  # a board like the HIL unix target's
    station = FakeStation([5, 100, None, 0])
    slept = []
    clock = Clock(ticks_add(ticks_max(), -3), 2)  # each tick takes 2 ms, across the wraparound
    main.run(b, station, loops=4, clock=clock, sleep=slept.append)
    assert len(station.ticks) == 4
    assert _wdts()[0].feeds == 4
    assert slept == [3, 18, 18]  # 5-2; capped at 20 then -2; None -> 20-2; 0 -> no sleep


def test_loop_blinks_the_led_and_shows_faults():
    b = _board()
    station = FakeStation([1000] * 8)
    slept = []
    clock = Clock(0, 0)
    main.run(b, station, loops=1, clock=clock, sleep=slept.append)
    led_pin = [o for o in fakemachine.created if isinstance(o, fakemachine.Pin) and o.id == 25][0]
    assert led_pin.level == 1
    assert slept == [20]
    station.alarms["3:over_temp"] = "61 C"
    clock.t = 500
    main.run(b, station, loops=1, clock=clock, sleep=slept.append)
    assert led_pin.level == 0
    assert slept[-1] == 20  # next toggle in 100 ms (fast blink), capped by the idle limit
    clock.t = 599
    main.run(b, station, loops=1, clock=clock, sleep=slept.append)
    assert led_pin.level == 0
    clock.t = 600
    main.run(b, station, loops=1, clock=clock, sleep=slept.append)
    assert led_pin.level == 1  # toggled after 100 ms, not 500


class _Channel:
    """A channel module as board.json's ``channel`` names it."""

    def __init__(self):
        self.served = []

    def serve_station(self, manifest, board, station):
        self.served.append((manifest, board, station))


def test_a_board_channel_module_gets_the_started_station():
    import sys

    b = _board(led=False)
    assert main.channel_for(b) is None  # no channel: main.py runs its own loop
    mod = _Channel()
    sys.modules["fake_channel"] = mod
    try:
        b.cfg["channel"] = "fake_channel"
        serve = main.channel_for(b)
        serve({"m": 1}, b, "station")
        assert mod.served == [({"m": 1}, b, "station")]
    finally:
        del sys.modules["fake_channel"]


def test_a_missing_channel_module_leaves_the_station_on_its_own_loop():
    b = _board(led=False)
    b.cfg["channel"] = "no_such_channel_module"
    assert main.channel_for(b) is None
