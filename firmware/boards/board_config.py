"""Board configuration: which port, which pins. Read from ``board.json`` on the controller.

``validate(raw) -> normalised dict`` checks the pin map against what the chip can do
and fills defaults; ``BoardConfigError`` names the field and the reason, e.g.
``buses.chargers.tx: GPIO3 cannot be UART0 TX on rp2 (allowed: 0, 12, 16, 28)``.
The ``qemu`` port (the emulated MPS2 AN385 board) has UARTs and a watchdog but no pins.
Pure Python: no ``machine`` here, so the build and the tests use it too.
The schema is in docs/flashing.md.
"""

import json

from firmware.core.config import ConfigError


class BoardConfigError(ConfigError):
    """Same shape as the station's ConfigError: ``.path``, ``.reason``, ``"path: reason"``."""


# The two field buses the station config names (buses.chargers, buses.bay_io).
BUS_NAMES = ("chargers", "bay_io")

PARITIES = ("none", "even", "odd")

# rp2 (RP2040/RP2350, GPIO0-29): UART functions are on fixed pins.
_RP2_UART_TX = {0: (0, 12, 16, 28), 1: (4, 8, 20, 24)}
_RP2_UART_RX = {0: (1, 13, 17, 29), 1: (5, 9, 21, 25)}

# esp32 (classic): any GPIO through the matrix, with these exceptions.
_ESP32_NO_GPIO = (20, 24, 28, 29, 30, 31)
_ESP32_FLASH = (6, 7, 8, 9, 10, 11)  # wired to the SPI flash: touching them hangs the chip
_ESP32_CONSOLE = (1, 3)  # UART0 TX/RX: the REPL that mpremote uses
_ESP32_INPUT_ONLY = (34, 35, 36, 37, 38, 39)

# port -> (mpy-cross architectures, UART ids, watchdog max ms)
PORTS = {
    "rp2": (("armv6m", "armv7emsp"), (0, 1), 8388),  # RP2040 WDT counts at most 8.388 s
    "esp32": (("xtensawin", "rv32imc"), (1, 2), 60000),  # UART0 is the console
    # MicroPython's qemu port on the Arm MPS2 AN385 (Cortex-M3) that QEMU emulates: CMSDK
    # APB UART1 (0x40005000) and UART2 (0x40006000), UART0 is the REPL; the CMSDK watchdog
    # (0x40008000). firmware/drivers/mps2.py drives them.
    "qemu": (("armv7m",), (1, 2), 60000),
}

# Ports whose UARTs are wired to the host (QEMU -serial), not to pins: a bus there names its
# UART only, there is no GPIO for an LED or extra pins, and the frame is the CMSDK UART's 8N1.
PINLESS = ("qemu",)
_PINLESS_BUS = ("uart", "parity", "stop")

_TOP = ("board", "port", "arch", "buses", "watchdog_ms", "led", "storage", "inputs", "outputs", "channel",
        "wlan")
_WLAN = ("ssid", "password", "retry_s")
WLAN_PORTS = ("esp32", "rp2")  # MicroPython's network.WLAN: esp32, Pico W
_BUS = ("uart", "tx", "rx", "de", "de_active_low", "parity", "stop", "txbuf", "rxbuf")
_LED = ("pin", "active_low")
_STORAGE = ("root",)
_INPUT = ("pin", "pull", "active_low")
_OUTPUT = ("pin", "active_low")
_PULLS = ("none", "up", "down")


def _join(path, key):
    return path + "." + key if path else key


def _obj(v, path, allowed=None):
    """A JSON object; with ``allowed``, any other key not starting with ``_`` is a typo."""
    if type(v) is not dict:
        raise BoardConfigError(path or "board", "expected an object")
    if allowed is not None:
        for k in v:
            if k[:1] != "_" and k not in allowed:
                raise BoardConfigError(_join(path, str(k)), "unknown field")
    return v


def _req(src, path, key):
    if key not in src:
        raise BoardConfigError(_join(path, key), "required")
    return src[key]


def _int(v, path, lo, hi):
    if type(v) is not int:
        raise BoardConfigError(path, "expected an integer")
    if v < lo or v > hi:
        raise BoardConfigError(path, "must be %d..%d (got %d)" % (lo, hi, v))
    return v


def _bool(v, path):
    if type(v) is not bool:
        raise BoardConfigError(path, "expected true or false")
    return v


def _choice(v, path, choices):
    if v not in choices:
        raise BoardConfigError(path, "must be one of %s (got %r)" % (", ".join(choices), v))
    return v


def _name(v, path):
    if type(v) is not str or not v or len(v) > 32:
        raise BoardConfigError(path, "expected a string of 1..32 characters")
    return v


def _gpio(v, path, port, output):
    """A GPIO number this port can use; ``output`` pins must be able to drive."""
    if port == "rp2":
        return _int(v, path, 0, 29)
    n = _int(v, path, 0, 39)
    if n in _ESP32_NO_GPIO:
        raise BoardConfigError(path, "GPIO%d does not exist on esp32" % n)
    if n in _ESP32_FLASH:
        raise BoardConfigError(path, "GPIO%d is wired to the SPI flash on esp32" % n)
    if n in _ESP32_CONSOLE:
        raise BoardConfigError(path, "GPIO%d is the UART0 console (REPL, mpremote)" % n)
    if output and n in _ESP32_INPUT_ONLY:
        raise BoardConfigError(path, "GPIO%d is input-only on esp32" % n)
    return n


def _allowed(pins):
    return "allowed: " + ", ".join([str(p) for p in pins])


def _pinless_bus(src, path, port, uart):
    for k in src:
        if k[:1] != "_" and k not in _PINLESS_BUS:
            if k in _BUS:
                raise BoardConfigError(_join(path, k), "not on %s: its UARTs are wired to the host, "
                                       "with no pins, direction line or buffer sizes to set" % port)
            raise BoardConfigError(_join(path, k), "unknown field")
    parity = src.get("parity", "none")
    if parity != "none":
        raise BoardConfigError(_join(path, "parity"), "the CMSDK UART on %s sends 8N1 only (got %r)"
                               % (port, parity))
    stop = src.get("stop", 1)
    if type(stop) is not int or stop != 1:
        raise BoardConfigError(_join(path, "stop"), "the CMSDK UART on %s sends 8N1 only (got %r)"
                               % (port, stop))
    return {"uart": uart, "parity": "none", "stop": 1}


def _bus(src, path, port):
    _obj(src, path)
    uart_ids = PORTS[port][1]
    uart = _req(src, path, "uart")
    if type(uart) is not int or uart not in uart_ids:
        raise BoardConfigError(_join(path, "uart"), "must be one of %s on %s (got %r)"
                               % (", ".join([str(u) for u in uart_ids]), port, uart))
    if port in PINLESS:
        return _pinless_bus(src, path, port, uart)
    _obj(src, path, _BUS)
    tx = _gpio(_req(src, path, "tx"), _join(path, "tx"), port, True)
    rx = _gpio(_req(src, path, "rx"), _join(path, "rx"), port, False)
    if port == "rp2":
        if tx not in _RP2_UART_TX[uart]:
            raise BoardConfigError(_join(path, "tx"), "GPIO%d cannot be UART%d TX on rp2 (%s)"
                                   % (tx, uart, _allowed(_RP2_UART_TX[uart])))
        if rx not in _RP2_UART_RX[uart]:
            raise BoardConfigError(_join(path, "rx"), "GPIO%d cannot be UART%d RX on rp2 (%s)"
                                   % (rx, uart, _allowed(_RP2_UART_RX[uart])))
    return {
        "uart": uart,
        "tx": tx,
        "rx": rx,
        "de": _gpio(_req(src, path, "de"), _join(path, "de"), port, True),
        "de_active_low": _bool(src.get("de_active_low", False), _join(path, "de_active_low")),
        # Modbus RTU default framing is 8E1; "none" needs stop 2 to keep 11-bit characters.
        "parity": _choice(src.get("parity", "even"), _join(path, "parity"), PARITIES),
        "stop": _int(src.get("stop", 1), _join(path, "stop"), 1, 2),
        # One RTU frame is at most 256 bytes: a whole frame fits, so write() never waits.
        "txbuf": _int(src.get("txbuf", 256), _join(path, "txbuf"), 256, 4096),
        "rxbuf": _int(src.get("rxbuf", 512), _join(path, "rxbuf"), 256, 4096),
    }


def _pins(src, path, port, fields, output):
    _obj(src, path)  # the names are the supervisor's to choose
    out = {}
    for name in src:
        if name[:1] == "_":
            continue
        p = _join(path, name)
        item = _obj(src[name], p, fields)
        d = {
            "pin": _gpio(_req(item, p, "pin"), _join(p, "pin"), port, output),
            "active_low": _bool(item.get("active_low", False), _join(p, "active_low")),
        }
        if not output:
            d["pull"] = _choice(item.get("pull", "none"), _join(p, "pull"), _PULLS)
        out[name] = d
    return out


def _led(src, path, port):
    _obj(src, path, _LED)
    pin = _req(src, path, "pin")
    if type(pin) is str:  # named pins such as "LED" on a Pico W (the LED sits on the radio chip)
        pin = _name(pin, _join(path, "pin"))
    else:
        pin = _gpio(pin, _join(path, "pin"), port, True)
    return {"pin": pin, "active_low": _bool(src.get("active_low", False), _join(path, "active_low"))}


def _storage(src, path):
    _obj(src, path, _STORAGE)
    root = src.get("root", "/data")
    if type(root) is not str or root[:1] != "/" or (len(root) > 1 and root[-1] == "/") or "//" in root:
        raise BoardConfigError(_join(path, "root"), "expected an absolute folder such as /data (got %r)"
                               % (root,))
    return {"root": root}


def _wlan(src, path, port):
    """The station's Wi-Fi, for telemetry (docs/telemetry.md): joined at boot, again every
    ``retry_s`` while it is down."""
    _obj(src, path, _WLAN)
    if port not in WLAN_PORTS:
        raise BoardConfigError(path, "the %s board has no Wi-Fi (network.WLAN): leave it out" % port)
    password = src.get("password", "")
    if type(password) is not str or len(password) > 64:
        raise BoardConfigError(_join(path, "password"), "expected a string of up to 64 characters")
    return {
        "ssid": _name(_req(src, path, "ssid"), _join(path, "ssid")),
        "password": password,
        "retry_s": _int(src.get("retry_s", 30), _join(path, "retry_s"), 5, 3600),
    }


def _no_shared_pins(cfg):
    """Each GPIO has one job: a pin listed twice is a wiring mistake."""
    seen = {}

    def use(pin, path):
        if type(pin) is not int:
            return
        if pin in seen:
            raise BoardConfigError(path, "GPIO%d is already used by %s" % (pin, seen[pin]))
        seen[pin] = path

    for name in BUS_NAMES:
        bus = cfg["buses"][name]
        for role in ("tx", "rx", "de"):
            use(bus.get(role), "buses.%s.%s" % (name, role))
    uarts = {}
    for name in BUS_NAMES:
        u = cfg["buses"][name]["uart"]
        if u in uarts:
            raise BoardConfigError("buses.%s.uart" % name, "UART%d is already used by buses.%s"
                                   % (u, uarts[u]))
        uarts[u] = name
    if cfg["led"] is not None:
        use(cfg["led"]["pin"], "led.pin")
    for group in ("inputs", "outputs"):
        for name in cfg[group]:
            use(cfg[group][name]["pin"], "%s.%s.pin" % (group, name))


def _no_gpio(raw, port):
    why = "the %s board has no GPIO (leave it out)" % port
    if raw.get("led") is not None:
        raise BoardConfigError("led", why)
    for group in ("inputs", "outputs"):
        pins = _obj(raw.get(group, {}), group)
        for name in pins:
            if name[:1] != "_":
                raise BoardConfigError(_join(group, name), why)


def validate(raw):
    """Check a parsed board.json and return it normalised (defaults filled)."""
    _obj(raw, "", _TOP)
    port = _req(raw, "", "port")
    if port not in PORTS:
        raise BoardConfigError("port", "must be one of %s (got %r)" % (", ".join(sorted(PORTS)), port))
    arches, _, wdt_max = PORTS[port]
    cfg = {
        "board": _name(_req(raw, "", "board"), "board"),
        "port": port,
        "arch": _choice(raw.get("arch", arches[0]), "arch", arches),
        "watchdog_ms": _int(_req(raw, "", "watchdog_ms"), "watchdog_ms", 500, wdt_max),
    }
    buses = _obj(_req(raw, "", "buses"), "buses", BUS_NAMES)
    cfg["buses"] = {}
    for name in BUS_NAMES:
        cfg["buses"][name] = _bus(_req(buses, "buses", name), "buses." + name, port)
    if port in PINLESS:
        _no_gpio(raw, port)
    led = raw.get("led")
    cfg["led"] = None if led is None else _led(led, "led", port)
    cfg["storage"] = _storage(raw.get("storage", {}), "storage")
    cfg["inputs"] = _pins(raw.get("inputs", {}), "inputs", port, _INPUT, False)
    cfg["outputs"] = _pins(raw.get("outputs", {}), "outputs", port, _OUTPUT, True)
    # A module on the flash that serves an operator/status channel: main.py hands it the
    # started station (``serve_station(manifest, board, station)``) instead of running
    # its own loop. The HIL rig's boards name ``hil_target``; a station's board has none.
    channel = raw.get("channel")
    cfg["channel"] = None if channel is None else _name(channel, "channel")
    wlan = raw.get("wlan")
    cfg["wlan"] = None if wlan is None else _wlan(wlan, "wlan", port)
    _no_shared_pins(cfg)
    return cfg


def loads(text, source="board.json"):
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise BoardConfigError(source, "invalid JSON (%s)" % (e,)) from None
    return validate(raw)


def load(path="board.json"):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise BoardConfigError(path, "cannot read (%s)" % (e,)) from None
    return loads(text, path)
