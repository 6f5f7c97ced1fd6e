"""board.json validation: every mistake names the field and says why."""

import json

from fwtest import raises

from firmware.boards import board_config
from firmware.boards.board_config import BoardConfigError

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap


def _pico():
    return {
        "board": "pico", "port": "rp2", "watchdog_ms": 5000,
        "buses": {"chargers": {"uart": 0, "tx": 0, "rx": 1, "de": 2},
                  "bay_io": {"uart": 1, "tx": 4, "rx": 5, "de": 6}},
        "led": {"pin": 25},
    }


def _esp32():
    return {
        "board": "devkitc", "port": "esp32", "watchdog_ms": 5000,
        "buses": {"chargers": {"uart": 1, "tx": 25, "rx": 26, "de": 27},
                  "bay_io": {"uart": 2, "tx": 32, "rx": 33, "de": 13}},
    }


def _qemu():
    with open("firmware/boards/qemu-mps2-an385.json") as f:
        return json.loads(f.read())


def _bad(cfg, mutate, path, reason_part):
    mutate(cfg)
    before = json.dumps(cfg)
    e = raises(BoardConfigError, board_config.validate, cfg)
    assert e.path == path, (e.path, str(e))
    assert reason_part in e.reason, str(e)
    assert str(e) == path + ": " + e.reason
    assert json.dumps(cfg) == before  # the caller's dict is left as it was
    return e


def test_defaults():
    cfg = board_config.validate(_pico())
    assert cfg["arch"] == "armv6m"
    assert cfg["storage"] == {"root": "/data"}
    assert cfg["inputs"] == {} and cfg["outputs"] == {}
    assert cfg["led"] == {"pin": 25, "active_low": False}
    assert board_config.validate(_esp32())["led"] is None


def test_comments_are_allowed():
    cfg = _pico()
    cfg["_comment"] = "x"
    cfg["buses"]["chargers"]["_why"] = "y"
    board_config.validate(cfg)


def test_unknown_and_missing_fields():
    _bad(_pico(), lambda c: c.update({"watchdog": 1}), "watchdog", "unknown field")
    _bad(_pico(), lambda c: c["buses"]["chargers"].update({"baud": 9600}), "buses.chargers.baud",
         "unknown field")
    _bad(_pico(), lambda c: c["buses"].pop("bay_io"), "buses.bay_io", "required")
    _bad(_pico(), lambda c: c["buses"]["chargers"].pop("de"), "buses.chargers.de", "required")
    _bad(_pico(), lambda c: c.pop("watchdog_ms"), "watchdog_ms", "required")
    _bad(_pico(), lambda c: c.update({"buses": []}), "buses", "expected an object")


def test_port_and_arch():
    _bad(_pico(), lambda c: c.update({"port": "stm32"}), "port", "must be one of esp32, qemu, rp2")
    _bad(_pico(), lambda c: c.update({"arch": "xtensawin"}), "arch", "must be one of armv6m, armv7emsp")


def test_rp2_uart_pin_functions():
    e = _bad(_pico(), lambda c: c["buses"]["chargers"].update({"tx": 3}), "buses.chargers.tx",
             "GPIO3 cannot be UART0 TX on rp2")
    assert "allowed: 0, 12, 16, 28" in str(e)
    _bad(_pico(), lambda c: c["buses"]["bay_io"].update({"rx": 1}), "buses.bay_io.rx",
         "GPIO1 cannot be UART1 RX on rp2")
    _bad(_pico(), lambda c: c["buses"]["bay_io"].update({"uart": 2}), "buses.bay_io.uart",
         "must be one of 0, 1 on rp2")
    _bad(_pico(), lambda c: c["buses"]["chargers"].update({"de": 30}), "buses.chargers.de", "must be 0..29")


def test_esp32_pin_rules():
    _bad(_esp32(), lambda c: c["buses"]["chargers"].update({"uart": 0}), "buses.chargers.uart",
         "must be one of 1, 2 on esp32")
    _bad(_esp32(), lambda c: c["buses"]["chargers"].update({"de": 6}), "buses.chargers.de", "SPI flash")
    _bad(_esp32(), lambda c: c["buses"]["chargers"].update({"tx": 34}), "buses.chargers.tx", "input-only")
    _bad(_esp32(), lambda c: c["buses"]["chargers"].update({"rx": 3}), "buses.chargers.rx", "console")
    _bad(_esp32(), lambda c: c["buses"]["chargers"].update({"rx": 24}), "buses.chargers.rx", "does not exist")
    cfg = _esp32()
    cfg["buses"]["bay_io"]["rx"] = 35  # input-only pins are fine for RX
    assert board_config.validate(cfg)["buses"]["bay_io"]["rx"] == 35


def test_each_pin_has_one_job():
    e = _bad(_pico(), lambda c: c["led"].update({"pin": 6}), "led.pin", "GPIO6 is already used by")
    assert "buses.bay_io.de" in str(e)
    _bad(_esp32(), lambda c: c["buses"]["bay_io"].update({"de": 25}), "buses.bay_io.de",
         "GPIO25 is already used by buses.chargers.tx")
    _bad(_esp32(), lambda c: c["buses"]["bay_io"].update({"uart": 1}), "buses.bay_io.uart",
         "UART1 is already used by buses.chargers")


def test_values():
    _bad(_pico(), lambda c: c.update({"watchdog_ms": 9000}), "watchdog_ms", "must be 500..8388")
    _bad(_pico(), lambda c: c.update({"watchdog_ms": 5000.0}), "watchdog_ms", "expected an integer")
    _bad(_pico(), lambda c: c.update({"watchdog_ms": True}), "watchdog_ms", "expected an integer")
    _bad(_pico(), lambda c: c["buses"]["chargers"].update({"parity": "mark"}), "buses.chargers.parity",
         "must be one of none, even, odd")
    _bad(_pico(), lambda c: c["buses"]["chargers"].update({"stop": 3}), "buses.chargers.stop", "must be 1..2")
    _bad(_pico(), lambda c: c["buses"]["chargers"].update({"de_active_low": 1}),
         "buses.chargers.de_active_low", "expected true or false")
    _bad(_pico(), lambda c: c["buses"]["chargers"].update({"txbuf": 64}), "buses.chargers.txbuf",
         "must be 256..4096")
    _bad(_pico(), lambda c: c.update({"board": ""}), "board", "1..32 characters")
    _bad(_pico(), lambda c: c.update({"storage": {"root": "data"}}), "storage.root", "absolute folder")
    _bad(_pico(), lambda c: c.update({"storage": {"root": "/data/"}}), "storage.root", "absolute folder")


def test_led_and_named_pins():
    cfg = _pico()
    cfg["led"] = {"pin": "LED"}  # Pico W
    assert board_config.validate(cfg)["led"]["pin"] == "LED"
    _bad(_pico(), lambda c: c.update({"led": {"pin": 2.5}}), "led.pin", "expected an integer")
    _bad(_pico(), lambda c: c.update({"inputs": {"estop": {"pin": 15, "pull": "sideways"}}}),
         "inputs.estop.pull", "must be one of none, up, down")
    _bad(_pico(), lambda c: c.update({"outputs": {"horn": {"pin": 15, "pull": "up"}}}),
         "outputs.horn.pull", "unknown field")
    _bad(_pico(), lambda c: c.update({"inputs": {"a": {"pin": 15}}, "outputs": {"b": {"pin": 15}}}),
         "outputs.b.pin", "GPIO15 is already used by inputs.a.pin")


def test_the_qemu_board_names_uarts_and_nothing_else():
    cfg = board_config.validate(_qemu())
    assert cfg["buses"]["chargers"] == {"uart": 1, "parity": "none", "stop": 1}
    assert cfg["watchdog_ms"] == 5000 and cfg["led"] is None and cfg["storage"] == {"root": "/data"}
    _bad(_qemu(), lambda c: c["buses"]["chargers"].update({"uart": 0}), "buses.chargers.uart",
         "must be one of 1, 2 on qemu (got 0)")  # UART0 is the REPL
    _bad(_qemu(), lambda c: c["buses"]["bay_io"].update({"uart": 1}), "buses.bay_io.uart",
         "UART1 is already used by buses.chargers")
    e = _bad(_qemu(), lambda c: c["buses"]["chargers"].update({"tx": 0}), "buses.chargers.tx", "not on qemu")
    assert "no pins" in str(e)
    _bad(_qemu(), lambda c: c["buses"]["bay_io"].update({"rxbuf": 512}), "buses.bay_io.rxbuf", "not on qemu")
    _bad(_qemu(), lambda c: c["buses"]["bay_io"].update({"baud": 9600}), "buses.bay_io.baud", "unknown field")
    _bad(_qemu(), lambda c: c["buses"]["chargers"].update({"parity": "even"}), "buses.chargers.parity",
         "sends 8N1 only (got 'even')")
    _bad(_qemu(), lambda c: c["buses"]["chargers"].update({"stop": 2}), "buses.chargers.stop", "8N1 only")
    _bad(_qemu(), lambda c: c.update({"led": {"pin": 2}}), "led", "the qemu board has no GPIO")
    _bad(_qemu(), lambda c: c.update({"inputs": {"estop_ok": {"pin": 3}}}), "inputs.estop_ok", "no GPIO")
    _bad(_qemu(), lambda c: c.update({"arch": "armv6m"}), "arch", "must be one of armv7m")
    _bad(_qemu(), lambda c: c.update({"watchdog_ms": 61000}), "watchdog_ms", "must be 500..60000")
    _bad(_qemu(), lambda c: c["buses"].pop("bay_io"), "buses.bay_io", "required")


def test_text_and_file_errors():
    e = raises(BoardConfigError, board_config.loads, "{\"board\": ", "board.json")
    assert e.path == "board.json" and "invalid JSON" in e.reason
    e = raises(BoardConfigError, board_config.load, "no/such/board.json")
    assert e.path == "no/such/board.json" and "cannot read" in e.reason


def test_channel_names_a_module_or_is_absent():
    assert board_config.validate(_pico())["channel"] is None
    cfg = _pico()
    cfg["channel"] = "hil_target"
    assert board_config.validate(cfg)["channel"] == "hil_target"
    _bad(_pico(), lambda c: c.update(channel=""), "channel", "1..32 characters")
    _bad(_pico(), lambda c: c.update(channel=7), "channel", "1..32 characters")


def test_wlan_on_the_boards_with_wi_fi():
    cfg = _esp32()
    cfg["wlan"] = {"ssid": "station-net", "password": "s3cret"}
    assert board_config.validate(cfg)["wlan"] == {"ssid": "station-net", "password": "s3cret", "retry_s": 30}
    assert board_config.validate(_pico())["wlan"] is None
    _bad(_pico(), lambda c: c.update({"wlan": {"password": "x"}}), "wlan.ssid", "required")
    _bad(_pico(), lambda c: c.update({"wlan": {"ssid": "n", "retry_s": 1}}), "wlan.retry_s", "5..3600")
    _bad(_pico(), lambda c: c.update({"wlan": {"ssid": "n", "password": "p" * 65}}), "wlan.password",
         "up to 64")
    _bad(_pico(), lambda c: c.update({"wlan": {"ssid": "n", "channel": 6}}), "wlan.channel", "unknown field")
    _bad(_qemu(), lambda c: c.update({"wlan": {"ssid": "n"}}), "wlan", "has no Wi-Fi")
