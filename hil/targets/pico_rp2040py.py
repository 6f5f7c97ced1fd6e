"""Work-arounds for defects of rp2040py 0.3.6, the emulator under the pico target.

Pinned to that one release: the patches replace or wrap private parts of its UART and
USB-CDC models (``RPUART._interrupt_status``, ``USBCDC._out_endpoint``, the callbacks
``USBCDC`` installs on the USB controller), so :func:`check_version` refuses any other
version instead of patching code it was not written against. With a fixed release, drop
the patch that is no longer needed and move the pin.

1. UART TX interrupt storm. ``RPUART.check_interrupts()`` raises the TX interrupt again
   on every call, so once MicroPython enables it (``machine.UART(...)`` does) the
   interrupt handler's clear is undone at once and the CPU never leaves the handler.
   Model used here: the TX FIFO empties the moment a byte is written (rp2040py models
   no wire time), so the TX interrupt is raised once per byte written to the data
   register and stays cleared once the firmware clears it.
2. USB-CDC OUT endpoint spinning. When the firmware arms its OUT (host to device)
   endpoint, ``USBCDC`` answers within ~10 us with whatever the host has queued, a
   zero-length packet when nothing is; the firmware re-arms, and the CPU never idles, so
   no idle time is skipped (``time.sleep(1)`` took 51 s of wall time). Model used here:
   a real host NAKs an OUT token while it has nothing to send, so the armed transfer is
   held until the host queues a byte, then completed (a few bytes queued together go in
   one packet). ``time.sleep(10)`` then takes a fraction of a second of wall time.

3. GIL starvation of every other thread. The engine thread runs 5 ms batches of native
   code, then briefly drops the GIL in its event loop's ``select()``, every 5 ms. That
   wakes a thread waiting for the GIL before its own 5 ms switch interval times out, so
   it never asks for a forced switch, and the engine takes the GIL back first: the
   waiting thread (the test waiting for the boot, a pty bridge) can starve for seconds
   to minutes, at random and more often on an idle machine (measured: boots of 0.2 s
   to over 100 s). :func:`shorten_switch_interval` sets the interpreter's switch
   interval below the batch budget, so a waiter times out inside a batch and the
   engine hands the GIL over at the batch's end. Process-wide, and only ever lowered.

4. The RUN pin leaves the watchdog running. A RESET (RUN-pin) reset clears only the
   watchdog's reason and scratch registers (``Watchdog.reset``, "Phase 1" of its own
   notes); its timer stays enabled. On silicon a chip reset clears the watchdog. So a
   station that had started its 5 s watchdog, then RESET and stopped at the REPL with
   Ctrl-C, was reset again by the watchdog once 5 s of emulated (idle, skipped) time
   passed, and its station started: an ``mpremote`` command sent meanwhile waited for
   ever (measured: enable still set after RESET, a reset 5 s of emulated time later).
   Model used here: a non-watchdog reset also stops the watchdog's timer and alarm.

Not patched, only worked around on the host side: ``RPUART.baud_rate`` assumes clk_peri
runs at 125 MHz, but MicroPython v1.28 (pico-sdk 2.2) runs it at 48 MHz, so 115200 baud
reads as 299940. :func:`uart_char_ns` computes a character's wire time from the divisors
the firmware wrote, at 48 MHz.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

RP2040PY_VERSION = "0.3.6"
INSTALL_HINT = ".venv/bin/pip install 'rp2040py[fs]==0.3.6' (the dev extra pins it: pip install -e '.[dev]')"

_UARTDR = 0x0  # data register offset
_UARTTXINTR = 1 << 5  # TXRIS / TXMIS / TXIC bit
_RELEASE_DELAY_NS = 1_000  # a held OUT transfer completes 1 us after the host queues a byte
SWITCH_INTERVAL_S = 0.001  # below rp2040py's 5 ms batch budget (work-around 3)
CLK_PERI_HZ = 48_000_000  # what the RPI_PICO v1.28.0 image programs the UART divisors for


class Rp2040pyVersionError(RuntimeError):
    """rp2040py is missing or is not the release these work-arounds were written for."""


def installed_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rp2040py")
    except PackageNotFoundError:
        return None


def version_problem(found: str | None) -> str | None:
    """Why rp2040py ``found`` (None: not installed) cannot be used, or None if it can."""
    if found is None:
        return f"rp2040py is not installed; the pico target needs {RP2040PY_VERSION}: {INSTALL_HINT}"
    if found != RP2040PY_VERSION:
        return (f"rp2040py {found} is installed; the pico target's work-arounds "
                f"(hil/targets/pico_rp2040py.py) are written for {RP2040PY_VERSION} only: {INSTALL_HINT}, "
                f"or check whether {found} fixed the UART TX interrupt, the USB-CDC OUT endpoint and "
                f"the RUN-pin watchdog reset, and "
                f"update the work-arounds and the pin")
    return None


def check_version() -> None:
    """Raise :class:`Rp2040pyVersionError` unless rp2040py 0.3.6 is installed."""
    problem = version_problem(installed_version())
    if problem:
        raise Rp2040pyVersionError(problem)


def patch_uart(uart: Any) -> None:
    """Defect 1: raise TX once per byte written, never on every interrupt check."""

    def check_interrupts() -> None:
        uart.rp2040.set_interrupt(uart.irq, bool(uart._interrupt_status & uart._interrupt_mask))

    write = uart.write_uint32

    def write_uint32(offset: int, value: int) -> None:
        write(offset, value)
        if offset == _UARTDR:  # the byte left at once: the TX FIFO has room again
            uart._interrupt_status |= _UARTTXINTR
            check_interrupts()

    uart.check_interrupts = check_interrupts
    uart.write_uint32 = write_uint32
    check_interrupts()  # drop a TX interrupt the original raised already


def patch_cdc(cdc: Any, clock: Any) -> None:
    """Defect 2: hold an armed OUT transfer while the host has nothing to send."""
    usb = cdc.usb
    serve: Callable[[int, int], None] = usb.on_endpoint_read  # USBCDC's own handler
    held: list[tuple[int, int]] = []  # (endpoint, size) of OUT transfers the host is NAKing

    def on_endpoint_read(endpoint: int, size: int) -> None:
        if endpoint > 0 and endpoint == cdc._out_endpoint and cdc.tx_fifo.empty:
            held.append((endpoint, size))
            return
        serve(endpoint, size)

    def release() -> None:
        # One buffer at a time, and only while there is data: a double-buffered endpoint
        # must not get a zero-length packet in its second buffer.
        while held and not cdc.tx_fifo.empty:
            endpoint, size = held.pop(0)
            serve(endpoint, size)

    alarm = clock.create_alarm(release)
    send = cdc.send_serial_byte

    def send_serial_byte(value: int) -> None:
        send(value)
        if held:
            alarm.schedule(_RELEASE_DELAY_NS)

    controller_reset = usb.on_reset

    def on_reset() -> None:
        held.clear()  # the device dropped off the bus; it arms afresh after enumerating
        alarm.cancel()
        if controller_reset is not None:
            controller_reset()

    usb.on_endpoint_read = on_endpoint_read
    usb.on_reset = on_reset
    cdc.send_serial_byte = send_serial_byte


def patch_watchdog(watchdog: Any) -> None:
    """Defect 4: a RUN-pin or power-on reset stops the watchdog, as on silicon. rp2040py
    calls ``Watchdog.reset`` on those resets only, never on the watchdog's own."""
    clear = watchdog.reset

    def reset() -> None:
        clear()
        watchdog._enable = False
        watchdog.timer.enable = False
        watchdog.alarm.enable = False

    watchdog.reset = reset


def uart_char_ns(uart: Any, default_baud: int = 115200) -> int:
    """One character on the wire (start bit, data bits, parity bit if enabled, stop bits) at
    the baud rate the firmware set, in ns; ``default_baud`` before it set one."""
    divider = uart._int_divisor + uart._frac_divisor / 64
    baud = CLK_PERI_HZ / (16 * divider) if divider else default_baud
    lcr = uart._line_ctrl_register
    bits = 1 + uart.word_length + (1 if lcr & 0x2 else 0) + (2 if lcr & 0x8 else 1)  # PEN, STP2
    return int(bits * 1e9 / baud)


def shorten_switch_interval() -> None:
    """Work-around 3: lower the interpreter's GIL switch interval below the engine's batch."""
    if sys.getswitchinterval() > SWITCH_INTERVAL_S:
        sys.setswitchinterval(SWITCH_INTERVAL_S)


def apply(device: Any) -> None:
    """Check the version and patch a ``MicroPythonDevice`` before it starts."""
    check_version()
    shorten_switch_interval()
    for uart in device.mcu.uart:
        patch_uart(uart)
    patch_cdc(device.cdc, device.simulator.clock)
    patch_watchdog(device.mcu.watchdog)
