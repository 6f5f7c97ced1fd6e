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
u = CmsdkUart(UART1_BASE, 115200)
msg = b"hello from the board\\n"
n = 0
t0 = time.ticks_us()  # before the first byte: the wire time runs from there
while n < len(msg):
    n += u.write(msg[n:])
while not u.tx_done():
    pass
print("tx", time.ticks_diff(time.ticks_us(), t0) >= (len(msg) - 1) * u.char_us)
buf = bytearray(3)
got = b""
t0 = time.ticks_ms()
while len(got) < 10 and time.ticks_diff(time.ticks_ms(), t0) < 10000:
    k = u.readinto(buf)
    got += bytes(buf[:k])
print(got)
"""


def test_uart1_sends_and_receives_without_losing_bytes(qemu_firmware: tuple[Path, Path]) -> None:
    elf, romfs = qemu_firmware
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    heard: list[bytes] = []

    def host_side() -> None:
        server.settimeout(20)
        conn, _ = server.accept()
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(64)
                if not chunk:
                    break
                data += chunk
            heard.append(data)
            conn.sendall(b"0123456789")  # more than the UART holds: QEMU paces it
            conn.recv(1)  # until QEMU goes away

    t = threading.Thread(target=host_side, daemon=True)
    t.start()
    try:
        res = run_script(elf, UART_SCRIPT, romfs=romfs, timeout_s=30, serials=(f"tcp:127.0.0.1:{port}",))
    finally:
        server.close()
    t.join(5)
    assert res.error == ""
    assert heard == [b"hello from the board\n"]
    assert res.stdout.splitlines() == ["tx True", "b'0123456789'"]


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
