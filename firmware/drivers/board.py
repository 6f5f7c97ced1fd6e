"""HAL on MicroPython's ``machine``: RS-485 UARTs, pins, watchdog, status LED, flash storage.

Only this driver and ``mps2`` (the qemu board, which ``open_board`` hands over to) import
``machine``. Tests put a fake ``machine`` in ``sys.modules`` before importing it.
``open_board(board_cfg, station_cfg)`` builds everything a board config
(firmware/boards/*.json) describes; the watchdog is started separately because a started
``machine.WDT`` can never be stopped.
"""

import machine

from firmware.compat import const, ticks_add, ticks_diff, ticks_ms, ticks_us
from firmware.hal import DigitalIn, DigitalOut, SerialPort, Watchdog, frame_bits

_UART_PARITY = {"none": None, "even": 0, "odd": 1}

_HEARTBEAT_MS = const(500)  # slow blink: running
_FAULT_BLINK_MS = const(100)  # fast blink: a fault is raised
_WRAP = const(0x3FFFFFFF)  # counters wrap at 2**30, as ticks_ms does: small ints on 32-bit builds


def char_time_us(baudrate, bits):
    """Time of one character of ``bits`` bits on the wire, rounded up."""
    return (bits * 1000000 + baudrate - 1) // baudrate


class Rs485Uart(SerialPort):
    """A ``machine.UART`` driving a half-duplex RS-485 transceiver through a DE pin.

    DE is asserted before the first byte is queued and released by ``tx_done`` only
    once the last stop bit has left: ``UART.txdone()`` must say so AND one more
    character time must have passed since it first did, because txdone/flush returned
    while the last byte was still shifting out on some ports and versions (rp2 before
    late 2024, esp8266). The release also waits at least the wire time of every byte
    written since DE went up. Without ``txdone`` only that wire-time bound is used.
    """

    def __init__(self, uart, de_pin, baudrate, bits=11, de_active_low=False, clock_us=ticks_us):
        self._uart = uart
        self._de = de_pin
        self.baudrate = baudrate
        self.char_us = char_time_us(baudrate, bits)
        self._on = 0 if de_active_low else 1
        self._clock_us = clock_us
        self._has_txdone = hasattr(uart, "txdone")
        self._busy = False
        self._start_us = 0  # when DE went up
        self._sent = 0  # bytes queued since then
        self._end_us = clock_us()  # when the last of them has left at the latest
        self._idle_seen = False  # txdone() has said True since the last write
        self._idle_us = 0  # ... first at this time
        self._scratch = bytearray(32)
        de_pin.value(1 - self._on)

    def write(self, buf):
        now = self._clock_us()
        if not self._busy:
            self._de.value(self._on)
            self._busy = True
            self._start_us = now
            self._end_us = now
            self._sent = 0
        n = self._uart.write(buf)
        if n is None:  # MicroPython returns None when nothing could be queued
            n = 0
        self._sent += n
        # When the last byte queued so far leaves at the latest: after those before it, or
        # after its own wire time if the UART had gone idle meanwhile.
        if ticks_diff(now, self._end_us) > 0:
            self._end_us = now
        self._end_us = ticks_add(self._end_us, n * self.char_us)
        self._idle_seen = False
        return n

    def _elapsed(self, now, since, need):
        d = ticks_diff(now, since)
        # A negative difference means the ticks wrapped: far more than ``need`` has passed.
        return d < 0 or d >= need

    def tx_done(self):
        if not self._busy:
            return True
        now = self._clock_us()
        if not self._elapsed(now, self._start_us, (self._sent + 1) * self.char_us):
            return False
        if self._has_txdone:
            if not self._uart.txdone():
                self._idle_seen = False
                return False
            # Two chars past the last byte's wire time txdone() can no longer be early, so
            # a late poll (a long tick) releases at once instead of one char later.
            if not self._idle_seen and ticks_diff(now, self._end_us) >= 2 * self.char_us:
                self._idle_seen = True
                self._idle_us = ticks_add(now, -self.char_us)
            if not self._idle_seen:
                self._idle_seen = True
                self._idle_us = now
                return False
            if not self._elapsed(now, self._idle_us, self.char_us):
                return False
        self._de.value(1 - self._on)
        self._busy = False
        return True

    def settle(self, max_us):
        # The slave answers t3.5 after the request's last byte, while the main loop may not
        # poll again for a whole tick: wait here, for at most about the request's wire time.
        # Also at most max_us looks (each takes well over 1 us on a board), so a clock that
        # stands still, as a virtual one does between steps, cannot hang the loop.
        t0 = self._clock_us()
        for _ in range(max_us):
            if self.tx_done():
                return True
            if ticks_diff(self._clock_us(), t0) >= max_us:
                return False
        return False

    def readinto(self, buf):
        n = self._uart.any()
        if n <= 0:
            return 0
        if n > len(buf):
            n = len(buf)
        got = self._uart.readinto(buf, n)
        return got or 0

    def flush_input(self):
        # Bounded: the UART cannot hold more than its rx buffer, plus what arrives meanwhile.
        for _ in range(256):
            if not self._uart.any():
                return
            self._uart.readinto(self._scratch)

    def close(self):
        if self._busy:
            self._de.value(1 - self._on)
            self._busy = False
        deinit = getattr(self._uart, "deinit", None)
        if deinit is not None:
            deinit()


class PinIn(DigitalIn):
    """A GPIO input; ``value()`` is 1 when the input is active (``active_low`` inverts)."""

    def __init__(self, pin, active_low=False):
        self._pin = pin
        self._inv = 1 if active_low else 0

    def value(self):
        return self._pin.value() ^ self._inv


class PinOut(DigitalOut):
    """A GPIO output, ``value(1)`` drives the active level. Starts inactive."""

    def __init__(self, pin, active_low=False):
        self._pin = pin
        self._inv = 1 if active_low else 0
        self._v = 0
        pin.value(self._inv)

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = 1 if v else 0
        self._pin.value(self._v ^ self._inv)
        return self._v


class StatusLed:
    """Heartbeat: a slow blink while the station runs, a fast one while a fault is raised."""

    def __init__(self, out):
        self._out = out
        self._next = None
        self._fault = False

    def set_fault(self, fault):
        self._fault = bool(fault)

    def tick(self, now_ms):
        """Toggle when due; returns ms until the next toggle."""
        period = _FAULT_BLINK_MS if self._fault else _HEARTBEAT_MS
        if self._next is None or ticks_diff(now_ms, self._next) >= 0:
            self._out.value(0 if self._out.value() else 1)
            self._next = ticks_add(now_ms, period)
            return period
        wait = ticks_diff(self._next, now_ms)
        return wait if wait < period else period


class MachineWatchdog(Watchdog):
    """``machine.WDT``. Constructing it starts it; nothing can stop it afterwards."""

    def __init__(self, timeout_ms):
        self.timeout_ms = timeout_ms
        self._wdt = machine.WDT(timeout=timeout_ms)
        self.last_feed = ticks_ms()

    def feed(self):
        self._wdt.feed()
        self.last_feed = ticks_ms()


def make_pin_in(spec):
    pull = spec["pull"]
    if pull == "up":
        p = machine.Pin(spec["pin"], machine.Pin.IN, machine.Pin.PULL_UP)
    elif pull == "down":
        p = machine.Pin(spec["pin"], machine.Pin.IN, machine.Pin.PULL_DOWN)
    else:
        p = machine.Pin(spec["pin"], machine.Pin.IN)
    return PinIn(p, spec["active_low"])


def make_pin_out(spec):
    p = machine.Pin(spec["pin"], machine.Pin.OUT, value=1 if spec["active_low"] else 0)
    return PinOut(p, spec["active_low"])


def open_bus(bus, baudrate, clock_us=ticks_us):
    """One RS-485 line from a normalised board bus entry and the station's baudrate."""
    # value= sets the released level before the pin drives: no glitch on the line.
    de = machine.Pin(bus["de"], machine.Pin.OUT, value=1 if bus["de_active_low"] else 0)
    uart = machine.UART(
        bus["uart"],
        baudrate=baudrate,
        bits=8,
        parity=_UART_PARITY[bus["parity"]],
        stop=bus["stop"],
        tx=machine.Pin(bus["tx"]),
        rx=machine.Pin(bus["rx"]),
        txbuf=bus["txbuf"],
        rxbuf=bus["rxbuf"],
        timeout=0,  # never wait in read/write: the main loop polls
        timeout_char=0,
    )
    bits = frame_bits(bus["parity"], bus["stop"])
    return Rs485Uart(uart, de, baudrate, bits, bus["de_active_low"], clock_us)


class WatchdogGate(Watchdog):
    """The watchdog handed to the supervisor, which feeds it only while every subsystem is
    alive. Feeds pass to ``machine.WDT`` once the board has started it; during setup,
    before that, they do nothing."""

    def __init__(self):
        self.wdt = None
        self.feeds = 0

    def feed(self):
        if self.wdt is not None:
            self.wdt.feed()
            self.feeds = (self.feeds + 1) & _WRAP


class Wlan:
    """The station's Wi-Fi on an esp32 or a Pico W (board.json ``wlan``). ``connect`` only
    starts the join, so nothing here blocks: the join is started at boot and again every
    ``retry_s`` while the link is down (``keep``, from the main loop). Telemetry's MQTT
    client meanwhile fails its connects and backs off on its own."""

    def __init__(self, cfg, now_ms, network=None):
        if network is None:
            import network  # type: ignore[import-not-found]  # only on ports with Wi-Fi
        self.cfg = cfg
        self.sta = network.WLAN(network.STA_IF)
        self.sta.active(True)
        self.joins = 0
        self.errors = 0
        self.last = now_ms
        self._join(now_ms)

    def _join(self, now_ms):
        self.joins += 1
        self.last = now_ms
        try:
            self.sta.connect(self.cfg["ssid"], self.cfg["password"])
        except OSError:  # the radio is busy with the last attempt: the next retry tries again
            self.errors += 1

    def up(self):
        return bool(self.sta.isconnected())

    def keep(self, now_ms):
        if not self.sta.isconnected() and ticks_diff(now_ms, self.last) >= self.cfg["retry_s"] * 1000:
            self._join(now_ms)


class Board:
    """Everything a board config describes, opened. ``buses`` maps the station's bus
    names to ``Rs485Uart``; ``inputs``/``outputs`` map names to pins; ``wlan`` is the
    Wi-Fi (``Wlan``) or None."""

    def __init__(self, cfg, buses, inputs, outputs, led, storage, wlan=None):
        self.cfg = cfg
        self.wlan = wlan
        self.buses = buses
        self.inputs = inputs
        self.outputs = outputs
        self.led = led
        self.storage = storage
        self.watchdog = None
        self.watchdog_gate = WatchdogGate()

    def minute_of_day(self, localtime=None):
        """Local minutes since midnight from the RTC, or None while it was never set
        (mpremote sets it on connect, NTP on a networked esp32; a fresh board counts
        from 2000 or 2021) or when the port has no RTC (the qemu port's ``time`` has no
        ``localtime``)."""
        if localtime is None:
            import time

            localtime = getattr(time, "localtime", None)
            if localtime is None:
                return None
        t = localtime()
        if t[0] < 2024:
            return None
        return t[3] * 60 + t[4]

    def _new_watchdog(self, timeout_ms):
        return MachineWatchdog(timeout_ms)

    def start_watchdog(self):
        """Start the board's watchdog (``machine.WDT``) with its timeout. Call once setup
        has succeeded."""
        if self.watchdog is None:
            self.watchdog = self._new_watchdog(self.cfg["watchdog_ms"])
            if self.watchdog_gate is not None:
                self.watchdog_gate.wdt = self.watchdog
        return self.watchdog

    def close(self):
        for name in self.buses:
            self.buses[name].close()


def ensure_dir(path):
    """Create ``path`` and its parents on the flash filesystem (no os.makedirs on MicroPython)."""
    import os

    at = ""
    for part in path.split("/"):
        if not part:
            continue
        at = at + "/" + part
        try:
            os.stat(at)
        except OSError:
            os.mkdir(at)


def open_storage(root):
    """The flash filesystem folder the journal lives in (LittleFS on rp2 and esp32)."""
    from firmware.drivers.vfs_storage import VfsStorage

    ensure_dir(root)
    return VfsStorage(root)


def open_board(cfg, station_cfg, storage_factory=None, clock_us=ticks_us):
    """Open the UARTs, pins and storage of a validated board config.

    Baud rates come from the station config (``buses.<name>.baudrate``): the line speed
    is agreed with the chargers and the bay I/O module, the pins are this board's.
    ``storage_factory(root)`` gives the journal's Storage (default: the port's flash).
    The qemu board (no ``machine.UART``/``Pin``/``WDT``) is opened by ``drivers/mps2.py``.
    """
    if cfg["port"] == "qemu":
        from firmware.drivers import mps2

        return mps2.open_board(cfg, station_cfg, storage_factory, clock_us)
    if storage_factory is None:
        storage_factory = open_storage
    buses = {}
    for name in cfg["buses"]:
        buses[name] = open_bus(cfg["buses"][name], station_cfg["buses"][name]["baudrate"], clock_us)
    inputs = {}
    for name in cfg["inputs"]:
        inputs[name] = make_pin_in(cfg["inputs"][name])
    outputs = {}
    for name in cfg["outputs"]:
        outputs[name] = make_pin_out(cfg["outputs"][name])
    led = None
    if cfg["led"] is not None:
        led = StatusLed(make_pin_out(cfg["led"]))
    storage = storage_factory(cfg["storage"]["root"])
    wlan = Wlan(cfg["wlan"], ticks_ms()) if cfg.get("wlan") else None
    return Board(cfg, buses, inputs, outputs, led, storage, wlan)
