"""Controller entry point: MicroPython runs /main.py after boot.

Checks the image (refuses a half-written one), reads board.json and the station
config, opens the board's HAL and runs the station supervisor. Nothing here blocks
but the idle sleep between supervisor ticks. Any failure before the loop prints why,
leaves the watchdog unstarted and returns to the REPL, so mpremote can still reach
the board.
"""

from firmware.compat import collect_every, const, forget, sleep_ms, ticks_diff, ticks_ms

_MAX_IDLE_MS = const(20)  # longest sleep between ticks: bounds reaction time and WDT feeds
# What start() keeps of the image manifest: the banner's and a channel's fields. The rest, a
# SHA-256 per file and copies of both configs, is ~18 KB that a 128 KB heap needs for the
# station (the qemu board's built image ran out in Supervisor() while it was kept).
_MANIFEST_KEPT = ("format", "firmware", "image_sha256", "station_id", "target", "test_drivers")


def start(root=""):
    """Check the image and open everything; returns (manifest, board, station), the manifest
    cut to ``_MANIFEST_KEPT``."""
    collect_every()  # small garbage runs from here on: what lives on packs into the low holes
    from firmware.boards import image

    full = image.check(root, full=True)
    check_signed(root, full)
    manifest = {}
    for k in _MANIFEST_KEPT:
        if k in full:
            manifest[k] = full[k]
    full = None  # garbage now, while the heap is still empty: its room goes to the station
    from firmware.boards import board_config
    from firmware.core import config

    bcfg = board_config.load(root + "board.json")
    scfg = config.load(root + "firmware/station.json", _warn)
    from firmware.drivers.board import open_board

    board = open_board(bcfg, scfg)
    forget("firmware.boards.board_config", "firmware.core.config")  # validators: boot only
    try:
        station = make_station(scfg, board)
        station.telemetry = make_telemetry(scfg, station)
    except Exception:
        board.close()
        raise
    return manifest, board, station


def check_signed(root, manifest):
    """A board holding an image key (``image.KEY_FILE``) starts only an image whose MAC
    matches it; a board without one (a bench board) starts unsigned images too."""
    from firmware.boards import image

    try:
        with open(root + image.KEY_FILE) as f:
            key_hex = f.read().strip()
    except OSError:
        return
    from firmware.proto.hmac256 import hmac_sha256, same, unhex

    try:
        key = unhex(key_hex)
    except ValueError:
        raise image.ImageError(image.KEY_FILE + " is not a key in hex") from None
    mac = manifest.get("mac")
    if type(mac) is not str:
        raise image.ImageError("the board has an image key and the image is not signed")
    try:
        good = same(unhex(mac), hmac_sha256(key, image.signing_text(manifest)))
    except ValueError:
        good = False
    if not good:
        raise image.ImageError("the image's MAC does not match the board's key: not built for this "
                               "station, or changed since")


def _warn(path, reason):
    print("station.json: warning: %s: %s" % (path, reason))  # valid, but the console should know


def make_station(scfg, board, now_ms=None, masters=None):
    """The supervisor on a board's buses, storage and pins. It feeds the board's watchdog
    gate itself, only while every subsystem is alive; a board without one (the HIL unix
    target) feeds from its own loop. ``now_ms``: the clock's reading, for virtual time;
    ``masters``: bus masters of the caller's own on the board's ports (Supervisor's)."""
    from firmware.core.supervisor import Supervisor

    gate = getattr(board, "watchdog_gate", None)
    return Supervisor(scfg, board.buses, board.storage, board.inputs, board.outputs, gate, now_ms,
                      minute_of_day=getattr(board, "minute_of_day", None), masters=masters)


def make_telemetry(scfg, station, now_ms=None):
    """The MQTT link (firmware/core/telemetry.py) when the config has an ``mqtt`` section,
    else None: a station without a network runs as before."""
    if scfg.get("mqtt") is None or station.error is not None:
        return None
    from firmware.core.telemetry import Telemetry

    return Telemetry(scfg, station, ticks_ms() if now_ms is None else now_ms)


def run(board, station, loops=-1, clock=ticks_ms, sleep=sleep_ms):
    """The main loop. ``loops`` < 0 runs for ever (tests pass a count). The station's
    ``telemetry``, if any, is polled after each tick; it never blocks."""
    wdt = board.start_watchdog()
    tel = getattr(station, "telemetry", None)
    wlan = getattr(board, "wlan", None)
    feed_here = getattr(board, "watchdog_gate", None) is None
    led = board.led
    while loops != 0:
        loops -= 1
        now = clock()
        wait = station.tick(now)
        if tel is not None:
            if wlan is not None:
                wlan.keep(now)  # joins again while the Wi-Fi is down; never waits
            w = tel.poll(now)
            if w < wait:
                wait = w
        if feed_here:
            wdt.feed()  # only after a tick came back: a hung loop lets the WDT reset us
        if led is not None:
            led.set_fault(station.error is not None or len(station.alarms) > 0)
            w = led.tick(now)
            if wait is None or w < wait:
                wait = w
        if wait is None or wait > _MAX_IDLE_MS:
            wait = _MAX_IDLE_MS
        spent = ticks_diff(clock(), now)
        if wait > spent:
            sleep(wait - spent)


def channel_for(board):
    """``serve_station`` of the channel module the board config names, or None: no channel,
    or it cannot be imported (said on the console; the station then runs on its own loop)."""
    cfg = getattr(board, "cfg", None)
    name = cfg.get("channel") if cfg is not None else None
    if name is None:
        return None
    try:
        return __import__(name).serve_station
    except (ImportError, AttributeError) as e:
        print("swapstation: channel", name, "not available:", type(e).__name__, e)
        return None


def main(root=""):
    try:
        manifest, board, station = start(root)
    except Exception as e:  # not KeyboardInterrupt: mpremote's Ctrl-C must still stop us
        print("swapstation: not starting:", type(e).__name__, e)
        return None
    fw = manifest["firmware"]
    print("swapstation %s (%s) image %s station %s" % (
        fw["version"], fw["revision"][:12], manifest["image_sha256"][:12], manifest["station_id"]))
    serve = channel_for(board)
    if serve is not None:
        serve(manifest, board, station)  # runs the station's loop with the channel beside it
    else:
        run(board, station)
    return None


if __name__ == "__main__":
    main()
