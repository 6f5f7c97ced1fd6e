"""firmware/drivers/mps2.py on the qemu mps2-an385 board: CMSDK UART1 to a host socket,
the CMSDK watchdog resetting the board when it is not fed."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from host.deploy.qemu_run import QemuTimeout, run_script

UART_SCRIPT = """\
import sys, time
sys.path.append("/rom")
from firmware.drivers.mps2 import CmsdkUart, UART1_BASE
u = CmsdkUart(UART1_BASE, 9600)
msg = b"hello from the board\\n"
n = 0
t0 = time.ticks_us()  # before the first byte: the wire time runs from there
while n < len(msg):
    n += u.write(msg[n:])
while not u.tx_done():
    pass
print("tx", time.ticks_diff(time.ticks_us(), t0), len(msg) * u.char_us)
buf = bytearray(3)
got = b""
t0 = time.ticks_ms()
while len(got) < 10 and time.ticks_diff(time.ticks_ms(), t0) < 10000:
    k = u.readinto(buf)
    got += bytes(buf[:k])
print(got)
"""


class _LinePeer:
    """A host end of one board UART (QEMU's ``-serial tcp:...`` connects to it): reads one
    line, answers ``reply``, stays until QEMU goes away."""

    def __init__(self, reply: bytes):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.backend = f"tcp:127.0.0.1:{self.server.getsockname()[1]}"
        self.reply = reply
        self.heard: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.server.settimeout(20)
        conn, _ = self.server.accept()
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(64)
                if not chunk:
                    return
                data += chunk
            self.heard.append(data)
            conn.sendall(self.reply)
            conn.recv(1)

    def close(self) -> None:
        self.server.close()
        self.thread.join(5)


def test_uart1_sends_and_receives_without_losing_bytes(qemu_firmware: tuple[Path, Path]) -> None:
    elf, romfs = qemu_firmware
    host = _LinePeer(b"0123456789")  # more than the UART holds: QEMU paces it
    try:
        res = run_script(elf, UART_SCRIPT, romfs=romfs, timeout_s=30, serials=(host.backend,))
    finally:
        host.close()
    assert res.error == ""
    assert host.heard == [b"hello from the board\n"]
    tx, got = res.stdout.splitlines()
    elapsed_us, wire_us = (int(x) for x in tx.split()[1:])
    # The emulator sends at once; tx_done waits out the wire time (22 ms at 9600 baud). The
    # qemu port's ticks_us steps back by up to 1 ms now and then, in either of the two
    # readings tx_done compares and in the script's own: at most 2 ms early.
    assert elapsed_us >= wire_us - 2000
    assert got == "b'0123456789'"


WDT_SCRIPT = """\
import sys, time
sys.path.append("/rom")
from firmware.drivers.mps2 import CmsdkWatchdog
w = CmsdkWatchdog(3000)
t0 = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), t0) < 1000:
    w.feed()
    time.sleep_ms(50)
print("fed for 1 s")
time.sleep_ms(5000)
print("still running")
"""


def test_an_unfed_watchdog_resets_the_board(qemu_firmware: tuple[Path, Path]) -> None:
    elf, romfs = qemu_firmware
    # QEMU's clock follows the host's, so a loaded host's pauses count: the timeout (its
    # first count-down half of it, an NMI) is far above the 50 ms feeds.
    with pytest.raises(QemuTimeout) as e:
        run_script(elf, WDT_SCRIPT, romfs=romfs, timeout_s=10)
    out = e.value.output.decode(errors="replace")
    assert "fed for 1 s" in out and "still running" not in out
    assert "MicroPython v" in out.split("fed for 1 s")[1]  # booted again: the reset banner


BOARD_SCRIPT = """\
import sys, time
sys.path.append("/rom")
from firmware.boards import board_config
from firmware.core import config
from firmware.drivers.board import open_board
bcfg = board_config.load("/rom/firmware/boards/qemu-mps2-an385.json")
b = open_board(bcfg, config.load("/rom/firmware/station.json"))
print(type(b).__name__, sorted(b.buses), b.led, b.minute_of_day())
buf = bytearray(8)
for name in ("chargers", "bay_io"):
    port = b.buses[name]
    msg = name.encode() + b"?\\n"
    n = 0
    while n < len(msg):
        n += port.write(msg[n:])
    while not port.tx_done():
        pass
    got = b""
    t0 = time.ticks_ms()
    while not got.endswith(b"\\n") and time.ticks_diff(time.ticks_ms(), t0) < 10000:
        k = port.readinto(buf)
        got += bytes(buf[:k])
    print(name, got)
f = b.storage.open("probe", "w")
f.write("kept")
f.close()
import os
print(os.listdir("/data"), open("/data/probe").read())
w = b.start_watchdog()
t0 = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), t0) < 1500:
    b.watchdog_gate.feed()
    time.sleep_ms(50)
print(type(w).__name__, b.watchdog_gate.feeds > 20)
"""


def test_the_qemu_board_json_opens_on_the_board(qemu_firmware: tuple[Path, Path]) -> None:
    """firmware/boards/qemu-mps2-an385.json through open_board, as main.py opens a board:
    each bus is its CMSDK UART (chargers UART1, bay_io UART2, each to its own host socket),
    the journal's folder is on LittleFS mounted at / in the board's PSRAM, and the watchdog
    is the CMSDK one (fed through the supervisor's gate: no reset within 1.5 s)."""
    elf, romfs = qemu_firmware
    chargers = _LinePeer(b"from charger line\n")
    bay = _LinePeer(b"from bay line\n")
    try:
        serials = (chargers.backend, bay.backend)  # UART1, UART2
        res = run_script(elf, BOARD_SCRIPT, romfs=romfs, timeout_s=60, serials=serials)
    finally:
        chargers.close()
        bay.close()
    assert res.error == ""
    assert chargers.heard == [b"chargers?\n"] and bay.heard == [b"bay_io?\n"]
    assert res.stdout.splitlines() == [
        "Mps2Board ['bay_io', 'chargers'] None None",  # no LED; no RTC: no time of day
        "chargers b'from charger line\\n'",
        "bay_io b'from bay line\\n'",
        "['probe'] kept",
        "CmsdkWatchdog True",
    ]
