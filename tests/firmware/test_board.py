"""Board driver on a fake ``machine``: RS-485 direction-pin timing, pins, watchdog, LED."""

import fakemachine

from firmware import hal
from firmware.boards import board_config
from firmware.compat import ticks_add, ticks_diff, ticks_max

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap

board = fakemachine.install()

BAUD = 19200
CHAR_US = 573  # 11 bits at 19200 baud, rounded up


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, us):
        self.t = ticks_add(self.t, us)


def _edges(history):
    """Pin levels with repeats collapsed: what a scope on the pin would show."""
    out = []
    for v in history:
        if not out or out[-1] != v:
            out.append(v)
    return out


def _port(uart_cls=fakemachine.UART, start=1000, de_active_low=False):
    fakemachine.reset()
    clock = Clock(start)
    uart = uart_cls(0)
    de = fakemachine.Pin(2, fakemachine.Pin.OUT)
    port = board.Rs485Uart(uart, de, BAUD, 11, de_active_low, clock)
    return port, uart, de, clock


def test_char_time():
    assert board.char_time_us(BAUD, 11) == CHAR_US
    assert board.char_time_us(115200, 10) == 87  # 86.8 rounded up


def test_de_is_asserted_before_the_bytes_are_queued():
    port, uart, de, clock = _port()
    seen = []
    uart.on_write = lambda: seen.append(de.value())
    assert de.value() == 0
    assert port.write(b"\x01\x03\x00\x00\x00\x01\x84\x0a") == 8
    assert seen == [1]
    assert bytes(uart.wire) == b"\x01\x03\x00\x00\x00\x01\x84\x0a"


def test_de_held_while_txdone_is_false():
    port, uart, de, clock = _port()
    port.write(b"abc")
    clock.advance(100 * CHAR_US)  # far past the wire time, but the UART still sends
    assert not port.tx_done()
    assert de.value() == 1


def test_de_released_one_char_after_txdone():
    port, uart, de, clock = _port()
    port.write(b"abc")
    clock.advance(4 * CHAR_US)  # wire time of 3 bytes + 1 char has passed
    uart.done = True
    assert not port.tx_done()  # txdone seen now; may still be shifting the last byte
    assert de.value() == 1
    clock.advance(CHAR_US - 1)
    assert not port.tx_done()
    assert de.value() == 1
    clock.advance(1)
    assert port.tx_done()
    assert de.value() == 0
    assert port.tx_done()  # stays released


def test_early_txdone_does_not_cut_the_frame():
    # A port whose txdone() says True at once (the rp2/esp8266 bug, or worse).
    port, uart, de, clock = _port()
    port.write(b"0123456789")
    uart.done = True
    clock.advance(5 * CHAR_US)
    assert not port.tx_done()
    clock.advance(5 * CHAR_US)  # 10 chars: the wire time, but not one char more
    assert not port.tx_done()
    assert de.value() == 1
    clock.advance(CHAR_US)
    assert not port.tx_done()  # txdone first seen now
    clock.advance(CHAR_US)
    assert port.tx_done()
    assert de.value() == 0


def test_write_while_draining_restarts_the_wait():
    port, uart, de, clock = _port()
    port.write(b"ab")
    clock.advance(3 * CHAR_US)
    uart.done = True
    assert not port.tx_done()
    port.write(b"cd")  # queued before the release: DE stays up, counts the new bytes
    clock.advance(CHAR_US)
    assert not port.tx_done()  # uart.done is False again after the write
    uart.done = True
    clock.advance(2 * CHAR_US)
    assert not port.tx_done()
    clock.advance(CHAR_US)
    assert port.tx_done()
    assert _edges(de.history) == [0, 1, 0]  # one assertion for both writes, one release


def test_without_txdone_the_wire_time_plus_one_char_decides():
    port, uart, de, clock = _port(fakemachine.UARTNoTxdone)
    port.write(b"abcd")
    clock.advance(5 * CHAR_US - 1)
    assert not port.tx_done()
    clock.advance(1)
    assert port.tx_done()
    assert de.value() == 0


def test_release_across_ticks_wraparound():
    port, uart, de, clock = _port(start=ticks_add(ticks_max(), -2 * CHAR_US))
    port.write(b"a")
    uart.done = True
    clock.advance(2 * CHAR_US)  # wraps here
    assert not port.tx_done()
    clock.advance(CHAR_US)
    assert port.tx_done()


def test_de_active_low():
    port, uart, de, clock = _port(de_active_low=True)
    assert de.value() == 1  # released = high
    seen = []
    uart.on_write = lambda: seen.append(de.value())
    port.write(b"x")
    assert seen == [0]
    uart.done = True
    clock.advance(2 * CHAR_US)
    assert not port.tx_done()
    clock.advance(CHAR_US)
    assert port.tx_done()
    assert de.value() == 1


def test_write_that_queues_nothing_returns_zero():
    port, uart, de, clock = _port()
    uart.accept = 0
    assert port.write(b"abc") == 0
    uart.accept = 2
    assert port.write(b"abc") == 2


def test_readinto_never_waits_and_flush_input():
    port, uart, de, clock = _port()
    buf = bytearray(4)
    assert port.readinto(buf) == 0
    uart.rx.extend(b"\x01\x02\x03\x04\x05\x06")
    assert port.readinto(buf) == 4 and bytes(buf) == b"\x01\x02\x03\x04"
    assert port.readinto(buf) == 2 and bytes(buf[:2]) == b"\x05\x06"
    uart.rx.extend(b"x" * 100)
    port.flush_input()
    assert port.readinto(buf) == 0


def test_close_releases_de():
    port, uart, de, clock = _port()
    port.write(b"abc")
    port.close()
    assert de.value() == 0
    assert uart.deinited


def _station():
    return {"buses": {"chargers": {"baudrate": 115200}, "bay_io": {"baudrate": 9600}}}


def _pico():
    return board_config.load("firmware/boards/pico.json")


def test_open_board_builds_uarts_from_the_pin_map():
    fakemachine.reset()
    stores = []
    b = board.open_board(_pico(), _station(), lambda root: stores.append(root) or "store")
    uarts = [o for o in fakemachine.created if isinstance(o, fakemachine.UARTNoTxdone)]
    assert [u.id for u in uarts] == [0, 1]
    kw = uarts[0].kw
    assert kw["baudrate"] == 115200 and kw["parity"] == 0 and kw["stop"] == 1 and kw["bits"] == 8
    assert kw["tx"].id == 0 and kw["rx"].id == 1
    assert kw["timeout"] == 0 and kw["timeout_char"] == 0
    assert uarts[1].kw["baudrate"] == 9600 and uarts[1].kw["tx"].id == 4
    assert b.buses["chargers"].baudrate == 115200
    assert b.buses["chargers"].char_us == board.char_time_us(115200, 11)
    de_pins = [o for o in fakemachine.created if isinstance(o, fakemachine.Pin) and o.id in (2, 6)]
    assert [_edges(p.history) for p in de_pins] == [[0], [0]]  # created released, never glitched
    assert b.storage == "store" and stores == ["/data"]
    assert b.watchdog is None  # not started by opening the board


def test_watchdog_starts_once_with_the_board_timeout():
    fakemachine.reset()
    b = board.open_board(_pico(), _station(), lambda root: None)
    w = b.start_watchdog()
    assert b.start_watchdog() is w
    wdts = [o for o in fakemachine.created if isinstance(o, fakemachine.WDT)]
    assert len(wdts) == 1 and wdts[0].timeout == 5000
    w.feed()
    assert wdts[0].feeds == 1


def test_status_led_heartbeat_and_fault_blink():
    fakemachine.reset()
    out = board.make_pin_out({"pin": 25, "active_low": True})
    pin = fakemachine.created[-1]
    assert pin.level == 1  # active low: off is high
    led = board.StatusLed(out)
    t = ticks_add(ticks_max(), -200)
    assert led.tick(t) == 500 and out.value() == 1 and pin.level == 0
    assert led.tick(ticks_add(t, 300)) == 200
    assert led.tick(ticks_add(t, 500)) == 500 and out.value() == 0
    led.set_fault(True)
    assert led.tick(ticks_add(t, 600)) == 100  # next toggle is due later than a fast period
    assert led.tick(ticks_add(t, 1000)) == 100 and out.value() == 1


def test_inputs_and_outputs():
    fakemachine.reset()
    cfg = _pico()
    cfg = board_config.validate({
        "board": "x", "port": "rp2", "watchdog_ms": 1000,
        "buses": {"chargers": {"uart": 0, "tx": 0, "rx": 1, "de": 2},
                  "bay_io": {"uart": 1, "tx": 4, "rx": 5, "de": 6}},
        "inputs": {"estop": {"pin": 15, "pull": "up", "active_low": True}},
        "outputs": {"beacon": {"pin": 16}},
    })
    b = board.open_board(cfg, _station(), lambda root: None)
    pins = {o.id: o for o in fakemachine.created if isinstance(o, fakemachine.Pin)}
    assert pins[15].pull == fakemachine.Pin.PULL_UP and pins[15].mode == fakemachine.Pin.IN
    pins[15].level = 0
    assert b.inputs["estop"].value() == 1
    pins[15].level = 1
    assert b.inputs["estop"].value() == 0
    b.outputs["beacon"].value(1)
    assert pins[16].level == 1
    assert b.led is None


def test_board_json_files_are_valid():
    pico = _pico()
    assert pico["port"] == "rp2" and pico["arch"] == "armv6m"
    assert pico["buses"]["chargers"] == {
        "uart": 0, "tx": 0, "rx": 1, "de": 2, "de_active_low": False,
        "parity": "even", "stop": 1, "txbuf": 256, "rxbuf": 512,
    }
    esp = board_config.load("firmware/boards/esp32-devkitc.json")
    assert esp["port"] == "esp32" and esp["arch"] == "xtensawin"
    assert esp["buses"]["bay_io"]["uart"] == 2
    qemu = _qemu()
    assert qemu["port"] == "qemu" and qemu["arch"] == "armv7m" and qemu["led"] is None
    assert qemu["buses"] == {"chargers": {"uart": 1, "parity": "none", "stop": 1},
                             "bay_io": {"uart": 2, "parity": "none", "stop": 1}}
    for bus, bits in ((qemu["buses"]["chargers"], 10), (pico["buses"]["chargers"], 11)):
        assert hal.frame_bits(bus["parity"], bus["stop"]) == bits


def _qemu():
    return board_config.load("firmware/boards/qemu-mps2-an385.json")


def test_the_qemu_board_opens_its_cmsdk_uarts_and_watchdog():
    fakemachine.reset()
    regs = fakemachine.mem32.regs
    stores = []
    b = board.open_board(_qemu(), _station(), lambda root: stores.append(root) or "store")
    # chargers on UART1 (0x40005000) at 115200, bay_io on UART2 (0x40006000) at 9600: BAUDDIV
    # is the 25 MHz APB clock over the baud rate, CTRL enables TX and RX.
    assert regs[0x40005010] == 25000000 // 115200 and regs[0x40005008] == 3
    assert regs[0x40006010] == 25000000 // 9600 and regs[0x40006008] == 3
    assert b.buses["chargers"].char_us == board.char_time_us(115200, 10)  # 8N1
    assert b.buses["bay_io"].baudrate == 9600
    # Bytes come through QEMU's main loop one at a time: no t1.5 check, t3.5 as wide as a tty's.
    assert [(p.rtu_char_gap_us, p.rtu_frame_gap_us) for p in b.buses.values()] == [(0, 20000)] * 2
    assert b.storage == "store" and stores == ["/data"]
    assert b.led is None and b.inputs == {} and b.outputs == {}
    assert b.watchdog is None and not [a for a, _ in fakemachine.mem32.writes if a >= 0x40008000]
    w = b.start_watchdog()
    assert b.start_watchdog() is w and w.timeout_ms == 5000
    assert regs[0x40008000] == 5000 * 12500 and regs[0x40008008] == 3  # LOAD: two count-downs
    assert regs[0x40008C00] == 0  # locked again
    n = len(fakemachine.mem32.writes)
    b.watchdog_gate.feed()
    assert fakemachine.mem32.writes[n:] == [(0x40008C00, 0x1ACCE551), (0x4000800C, 1), (0x40008C00, 0)]
    assert [o for o in fakemachine.created if isinstance(o, (fakemachine.WDT, fakemachine.Pin))] == []
    assert b.buses["chargers"].write(b"\x01\x03") == 2 and regs[0x40005000] == 3  # DATA
    b.close()
    assert regs[0x40005008] == 0 and regs[0x40006008] == 0


def test_ensure_dir_creates_the_storage_folder():
    from scratchfs import Board

    b = Board()
    try:
        board.ensure_dir(b.dir + "/data/journal")
        board.ensure_dir(b.dir + "/data/journal")  # already there: nothing to do
        assert b.exists("data/journal")
        b.put("data/journal/x", b"1")
        assert b.get("data/journal/x") == b"1"
    finally:
        b.done()


def test_local_time_comes_from_the_rtc_once_it_was_set():
    b = board.open_board(_pico(), _station(), lambda root: None)
    assert b.minute_of_day(lambda: (2000, 1, 1, 0, 5, 0, 5, 1)) is None  # fresh RTC: unknown
    assert b.minute_of_day(lambda: (2026, 11, 22, 10, 30, 7, 6, 326)) == 630


class _RunningClock(Clock):
    """A us clock that moves on at every read, as a running CPU's does."""

    def __call__(self):
        self.t = ticks_add(self.t, 25)
        return self.t


class _WireUart(fakemachine.UART):
    """txdone() turns True once the bytes written have had their wire time."""

    clock = None
    end = 0

    def write(self, buf):
        n = fakemachine.UART.write(self, buf)
        self.end = ticks_add(self.clock.t, (n or 0) * CHAR_US)
        return n

    def txdone(self):
        return ticks_diff(self.clock.t, self.end) >= 0


def test_master_lets_go_of_the_line_in_the_poll_that_sends():
    # The reply starts t3.5 after the request's last byte; the master's next poll can be a
    # whole control tick away (10-50 ms on a Pico), so DE must drop in the sending poll.
    from firmware.proto.modbus_rtu import ModbusMaster

    fakemachine.reset()
    clock = _RunningClock(1000)
    uart = _WireUart(0)
    uart.clock = clock
    de = fakemachine.Pin(2, fakemachine.Pin.OUT)
    port = board.Rs485Uart(uart, de, BAUD, 11, False, clock)
    m = ModbusMaster(port, timeout_ms=100, us_clock=clock)
    m.read(1, 3, 0, 2)
    m.poll(0)
    assert len(uart.wire) == 8
    assert de.value() == 0
    assert _edges(de.history) == [0, 1, 0]
    t = clock.t
    m.poll(0)  # nothing more to do until the reply: no second wait on the line
    assert ticks_diff(clock.t, t) < 10 * 25


def test_a_late_first_look_releases_at_once():
    # Polled a whole tick after the frame left: txdone() cannot be early any more.
    port, uart, de, clock = _port()
    port.write(b"abc")
    uart.done = True
    clock.advance(5 * CHAR_US)  # 3 bytes' wire time + 2 chars
    assert port.tx_done()
    assert de.value() == 0


def test_settle_gives_up_under_a_clock_that_stands_still():
    # A virtual clock does not move inside a wait: the wait must still end.
    port, uart, de, clock = _port()
    port.write(b"abc")
    assert port.settle(5000) is False
    assert de.value() == 1  # not released early: the next poll decides


class _Sta:
    """network.WLAN(STA_IF) of a port with Wi-Fi: joins when told to, drops when the test says."""

    def __init__(self):
        self.on = False
        self.joined = False
        self.connects = []
        self.busy = False

    def active(self, on):
        self.on = on

    def connect(self, ssid, password):
        if self.busy:
            raise OSError("Wifi Internal Error")
        self.connects.append((ssid, password))

    def isconnected(self):
        return self.joined


class _Network:
    STA_IF = 0

    def __init__(self):
        self.sta = _Sta()

    def WLAN(self, which):
        assert which == self.STA_IF
        return self.sta


def test_wlan_joins_at_boot_and_again_only_while_down_and_no_sooner_than_retry_s():
    net = _Network()
    w = board.Wlan({"ssid": "station-net", "password": "pw", "retry_s": 30}, 1000, net)
    sta = net.sta
    assert sta.on and sta.connects == [("station-net", "pw")] and not w.up()
    w.keep(20000)
    assert len(sta.connects) == 1  # the first join may still be under way
    w.keep(31000)
    assert len(sta.connects) == 2
    sta.joined = True
    w.keep(100000)
    assert len(sta.connects) == 2 and w.up()  # up: left alone
    sta.joined = False  # the access point went away
    sta.busy = True
    w.keep(100001)
    assert w.errors == 1 and w.joins == 3  # a refused join is counted, nothing raised
    sta.busy = False
    w.keep(ticks_add(100001, 30000))
    assert len(sta.connects) == 3
