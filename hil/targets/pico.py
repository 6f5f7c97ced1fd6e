"""The emulated Pico: the real ``RPI_PICO`` MicroPython image under the rp2040py emulator.

:class:`EmulatedPico` boots the UF2 (``SWAPSTATION_PICO_UF2``, default
``../shared/micropython/RPI_PICO-v1.28.0.uf2`` beside the checkout) with the LittleFS flash
image given, if any, and offers what a bench offers:

- the USB-CDC console on a host pty (``console_path``), for the real ``mpremote`` and
  ``swapstation flash``; :meth:`EmulatedPico.exec` runs code through the raw REPL on the
  same console (use one or the other at a time);
- UART0/UART1 as byte streams (:meth:`EmulatedPico.uart`): what the firmware writes reaches
  ``on_byte`` from inside the emulator, at the instruction that wrote it; bytes sent in are
  paced at the line's character time in emulated time, so a device model that answers from
  ``on_byte`` sees the same timing on every run, however loaded the host;
- GPIO outputs (:meth:`EmulatedPico.pin`) and inputs (:meth:`EmulatedPico.set_input`);
- the flash filesystem as bytes (:meth:`EmulatedPico.flash_image`), taken between two
  instructions; :meth:`EmulatedPico.power_cut` stops the chip and returns it, so the next
  boot starts from what a real cut would leave;
- resets: the watchdog's and ``machine.reset()`` reset the chip in place (flash kept,
  console pty kept) and are counted (``resets``), as are re-enumerations (``enumerations``).

Emulated time runs apart from wall time: CPU-bound code is ~43x slower than a real Pico,
idle time (``time.sleep``, ``machine.idle``, waiting on USB) is skipped. The emulator runs on
its own thread with its own asyncio loop; every call here may come from any other thread.
rp2040py 0.3.6 needs two work-arounds, kept in ``hil/targets/pico_rp2040py.py``.
"""

from __future__ import annotations

import asyncio
import os
import pty
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hil.targets import pico_rp2040py
from hil.targets.base import ROOT, TargetError

UF2_ENV = "SWAPSTATION_PICO_UF2"
UF2_NAME = "RPI_PICO-v1.28.0.uf2"
UF2_SHA256 = "792dfc00970199a4ad853b0eb1f50d120fcd0a687005e1d6a146b3168a3c5308"
RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
CONSOLE_KEEP = 1 << 20  # bytes of console output kept for exec() and console_text()
PTY_BACKLOG = 256 * 1024  # console bytes held for a pty nobody reads; older ones are dropped
PUMP_NS = 100_000  # retry interval (emulated) while the host-to-device FIFO is full
FS_BLOCK_SIZE = 4096  # the RPI_PICO image's LittleFS: 352 x 4 KiB at flash offset 0xA0000
FS_BLOCK_COUNT = 352


class PicoError(TargetError):
    """The emulated Pico did not boot, died, or the code run on it raised."""


def uf2_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The Pico image: ``path``, else $SWAPSTATION_PICO_UF2, else the shared folder beside
    the checkout."""
    if path is None:
        path = os.environ.get(UF2_ENV) or ROOT.parent / "shared" / "micropython" / UF2_NAME
    p = Path(path)
    if not p.is_file():
        raise PicoError(f"MicroPython Pico image not found: {p}; put {UF2_NAME} there or point {UF2_ENV} "
                          f"at a RPI_PICO .uf2 (see ../shared/micropython/README.md)")
    return p


def read_flash(image: bytes) -> dict[str, bytes]:
    """Every file on a flash image (:meth:`EmulatedPico.flash_image`), read on the host
    with littlefs-python (the ``fs`` extra of rp2040py): ``{"/main.py": b"...", ...}``."""
    from littlefs import LittleFS, UserContext

    fs = LittleFS(context=UserContext(buffer=bytearray(image)), block_size=FS_BLOCK_SIZE,
                  block_count=len(image) // FS_BLOCK_SIZE, prog_size=256, mount=True)
    out: dict[str, bytes] = {}
    for top, _dirs, files in fs.walk("/"):
        for name in files:
            path = top.rstrip("/") + "/" + name
            with fs.open(path, "rb") as f:
                out[path] = f.read()
    return out


class _Console:
    """Owner of the USB-CDC console: device output goes to a capture buffer, a line log and
    the pty; host input (the pty's or :meth:`send`'s) goes into the CDC FIFO as room frees."""

    def __init__(self, cdc: Any, clock: Any, loop: asyncio.AbstractEventLoop,
                 log: Callable[[str], None] | None) -> None:
        self.cdc = cdc
        self.loop = loop
        self.log = log
        self.cond = threading.Condition()
        self.buf = bytearray()
        self.base = 0  # absolute offset of buf[0]
        self._line = bytearray()
        self._pending = bytearray()  # host -> device, not yet in the FIFO
        self._pump_alarm = clock.create_alarm(self._pump)
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self._out = bytearray()  # device -> pty, not yet written
        self._writer = False
        cdc.on_serial_data = self._from_device
        loop.call_soon_threadsafe(loop.add_reader, self.master, self._from_pty)

    # -- device -> host (engine thread)
    def _from_device(self, data: bytes | bytearray) -> None:
        with self.cond:
            self.buf += data
            if len(self.buf) > CONSOLE_KEEP:
                cut = len(self.buf) - CONSOLE_KEEP // 2
                del self.buf[:cut]
                self.base += cut
            self.cond.notify_all()
        if self.log is not None:
            self._line += data
            while b"\n" in self._line:
                line, _, rest = bytes(self._line).partition(b"\n")
                self._line = bytearray(rest)
                self.log(line.decode("utf-8", "replace").rstrip("\r"))
        self._out += data
        if len(self._out) > PTY_BACKLOG:
            del self._out[: len(self._out) - PTY_BACKLOG]
        self._flush()

    def _flush(self) -> None:
        try:
            while self._out:
                n = os.write(self.master, self._out)
                del self._out[:n]
        except BlockingIOError:
            pass
        except OSError:
            self._out.clear()
        if self._out and not self._writer:
            self.loop.add_writer(self.master, self._flush)
            self._writer = True
        elif not self._out and self._writer:
            self.loop.remove_writer(self.master)
            self._writer = False

    # -- host -> device
    def _from_pty(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        if data:
            self._queue(data)

    def send(self, data: bytes) -> None:
        """From any thread."""
        self.loop.call_soon_threadsafe(self._queue, bytes(data))

    def _queue(self, data: bytes) -> None:
        self._pending += data
        self._pump()

    def _pump(self) -> None:
        fifo = self.cdc.tx_fifo
        n = min(len(self._pending), fifo.size - fifo.item_count)
        for b in self._pending[:n]:
            self.cdc.send_serial_byte(b)
        del self._pending[:n]
        if self._pending:
            self._pump_alarm.schedule(PUMP_NS)

    # -- reading what the device printed (any thread)
    def mark(self) -> int:
        with self.cond:
            return self.base + len(self.buf)

    def wait_for(self, needle: bytes, start: int, timeout: float) -> int:
        """Absolute offset just past the first ``needle`` at or after ``start``."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                i = self.buf.find(needle, max(0, start - self.base))
                if i >= 0:
                    return self.base + i + len(needle)
                left = end - time.monotonic()
                if left <= 0:
                    tail = bytes(self.buf[max(0, start - self.base):])[-400:]
                    raise PicoError(f"no {needle!r} from the Pico within {timeout} s; it printed: {tail!r}")
                self.cond.wait(min(left, 0.5))

    def text(self, start: int = 0, end: int | None = None) -> bytes:
        with self.cond:
            lo = max(0, start - self.base)
            hi = len(self.buf) if end is None else max(0, end - self.base)
            return bytes(self.buf[lo:hi])

    def close(self) -> None:
        """On the engine loop."""
        self.loop.remove_reader(self.master)
        if self._writer:
            self.loop.remove_writer(self.master)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class UartBridge:
    """UART ``n`` of the emulated Pico, seen from the wire.

    ``on_byte(b)`` is called for every byte the firmware writes, on the emulator's thread,
    at the instruction that wrote it (the chip's TX has no wire time; ``txdone()`` is true
    at once). Keep it short; a device model answers by calling :meth:`send` from it.
    :meth:`send` queues bytes for the chip's RX pin; they arrive one character time (at
    the baud rate and framing the firmware set) apart in emulated time, so an answer's timing does
    not depend on the host. A byte that finds the 32-byte RX FIFO full is lost, as on the
    chip (``overruns``)."""

    def __init__(self, pico: EmulatedPico, index: int) -> None:
        self.pico = pico
        self.index = index
        self.uart = pico.device.mcu.uart[index]
        self.on_byte: Callable[[int], None] | None = None
        self.written = bytearray()  # everything the firmware sent since boot (or clear())
        self.overruns = 0
        self._rx = bytearray()
        self._alarm = pico.device.simulator.clock.create_alarm(self._deliver)
        self._busy = False
        self.uart.on_byte = self._tx

    def _tx(self, b: int) -> None:
        self.written.append(b)
        if self.on_byte is not None:
            self.on_byte(b)

    def char_ns(self) -> int:
        """One character's time on the wire at the baud rate and framing the firmware set."""
        return pico_rp2040py.uart_char_ns(self.uart)

    def send(self, data: bytes) -> None:
        """Bytes for the chip's RX, from any thread (at once on the emulator's own)."""
        if threading.current_thread() is self.pico._thread:
            self._queue(bytes(data))
        else:
            self.pico._loop_call(self._queue, bytes(data))

    def _queue(self, data: bytes) -> None:
        self._rx += data
        if not self._busy:
            self._busy = True
            self._alarm.schedule(self.char_ns())  # the first byte's own character time

    def _deliver(self) -> None:
        if not self._rx:
            self._busy = False
            return
        b = self._rx.pop(0)
        if self.uart.rx_fifo.full:
            self.overruns += 1
        else:
            self.uart.feed_byte(b)
        self._alarm.schedule(self.char_ns())


class EmulatedPico:
    """One emulated Pico (see the module docstring). ``flash``: a LittleFS image file
    (352 x 4 KiB, what :meth:`save_flash` writes) to boot from, else an empty flash that
    MicroPython formats at first boot. ``log``: called with every console line."""

    def __init__(self, *, uf2: str | os.PathLike[str] | None = None,
                 flash: str | os.PathLike[str] | bytes | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        pico_rp2040py.check_version()
        self.uf2 = uf2_path(uf2)
        self.flash = flash
        self.log = log
        self.device: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._console: _Console | None = None
        self._uarts: dict[int, UartBridge] = {}
        self._exec_lock = threading.Lock()
        self._events = threading.Condition()
        self.resets = 0  # chip resets the guest caused (watchdog expiry, machine.reset())
        self.enumerations = 0  # times the USB console came up
        self._enumerations_at_reset = 0
        self.boot_wall_s = 0.0
        self.boot_emulated_s = 0.0

    # -- life cycle
    def boot(self, timeout: float = 30.0) -> EmulatedPico:
        """Power on and wait until the USB console is up. Returns self."""
        from rp2040py.boards import BOARDS, resolve_firmware
        from rp2040py.device.mp_device import MicroPythonDevice

        if self.device is not None:
            raise PicoError("the emulated Pico is already running")
        t0 = time.monotonic()
        spec = resolve_firmware(BOARDS["pico"], "micropython", str(self.uf2))
        with tempfile.TemporaryDirectory(prefix="pico-flash-") as tmp:
            fs: Path | None = None
            if isinstance(self.flash, bytes):
                fs = Path(tmp) / "flash.img"
                fs.write_bytes(self.flash)
            elif self.flash is not None:
                fs = Path(self.flash)
            try:
                dev = MicroPythonDevice(board=spec, filesystem=fs)
            except ValueError as e:  # a flash image of the wrong size
                raise PicoError(str(e)) from None
        pico_rp2040py.apply(dev)
        self.device = dev
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="emulated-pico", daemon=True)
        self._thread.start()
        dev.simulator.bind_loop(loop)
        self._console = _Console(dev.cdc, dev.simulator.clock, loop, self.log)
        trigger = dev.mcu.watchdog.on_watchdog_trigger

        def on_watchdog_trigger() -> None:
            with self._events:
                self.resets += 1
                self._enumerations_at_reset = self.enumerations
                self._events.notify_all()
            trigger()

        dev.mcu.watchdog.on_watchdog_trigger = on_watchdog_trigger
        try:
            dev.start_async(timeout).result(timeout + 5)
        except Exception as e:
            self.stop()
            raise PicoError(f"the emulated Pico did not come up: {e}") from None

        self._on_connected()
        self.boot_wall_s = time.monotonic() - t0
        self.boot_emulated_s = self.emulated_s
        return self

    def _on_connected(self) -> None:
        """The console came up (first boot, or after any reset). rp2040py's own reset
        replaces this hook with its own, so every host-side reset puts it back."""
        with self._events:
            self.enumerations += 1
            self._events.notify_all()
        self.device.cdc.on_device_connected = self._on_connected

    def alive(self) -> bool:
        return self.device is not None and not self.device.simulator.stopped

    def stop(self) -> None:
        """Switch off (nothing is saved) and free the thread and the pty."""
        dev, loop, thread = self.device, self._loop, self._thread
        if dev is None:
            return
        dev.stop()
        if loop is not None and thread is not None and thread.is_alive():
            console = self._console

            def shutdown() -> None:
                if console is not None:
                    console.close()
                loop.stop()

            loop.call_soon_threadsafe(shutdown)
            thread.join(10)
        if loop is not None and not loop.is_running():
            loop.close()
        self.device = self._loop = self._thread = self._console = None
        self._uarts.clear()

    def power_cut(self) -> bytes:
        """Stop the chip between two instructions and return its flash filesystem as it is
        then; the emulator is switched off."""
        image = self._on_engine(self._stop_and_snapshot)
        self.stop()
        return image

    def _stop_and_snapshot(self) -> bytes:
        self.device.simulator.stop()
        return self._snapshot()

    def reset(self, timeout: float = 30.0) -> None:
        """Press RESET (the RUN pin): the chip restarts with its flash; wait for the console."""
        self._running().hard_reset_async(timeout).result(timeout + 5)
        self._on_connected()

    def __enter__(self) -> EmulatedPico:
        return self.boot() if self.device is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state
    @property
    def emulated_s(self) -> float:
        """Emulated time since power-on, in seconds."""
        return 0.0 if self.device is None else self.device.simulator.clock.nanos / 1e9

    @property
    def console_path(self) -> str:
        """The USB console's pty, for mpremote (``mpremote connect <path> ...``)."""
        return self._con().path

    def console_text(self, start: int = 0) -> str:
        return self._con().text(start).decode("utf-8", "replace")

    def wait_console(self, needle: str | bytes, timeout: float, start: int = 0) -> None:
        """Wait until the console printed ``needle`` (since offset ``start``)."""
        n = needle.encode() if isinstance(needle, str) else needle
        self._con().wait_for(n, start, timeout)

    def console_mark(self) -> int:
        return self._con().mark()

    def interrupt(self, timeout: float = 300.0) -> None:
        """Ctrl-C on the console, again every half second, until the REPL prompt comes back:
        stops ``main.py`` or whatever runs (a Ctrl-C sent while the chip boots is lost)."""
        con = self._con()
        start = con.mark()
        end = time.monotonic() + timeout
        while True:
            con.send(b"\x03")
            try:
                con.wait_for(b">>> ", start, 0.5)
                return
            except PicoError:
                if time.monotonic() > end:
                    raise

    def watchdog_running(self) -> bool:
        """Whether the chip's watchdog counts down (a station started it; RESET stops it)."""
        return bool(self._on_engine(lambda: self._running().mcu.watchdog.timer.enable))

    def stop_at_repl(self, tries: int = 3, timeout: float = 300.0) -> None:
        """RESET, and Ctrl-C while ``main.py`` starts: the REPL, answering, with no watchdog
        running, where a host command (mpremote, ``swapstation flash``) may take as long as it
        needs. A running station cannot be reached otherwise: while a host command waits for
        USB data the emulator skips idle time, so the station's watchdog expires inside the
        command and resets the chip, and mpremote, whose pty a reset never closes, waits for
        ever. Tried again if a Ctrl-C came too late (the watchdog already started)."""
        why = ""
        for _ in range(tries):
            self.reset()
            self.interrupt(timeout)
            if self.watchdog_running():
                why = "the watchdog was running at the REPL (the station started it before the Ctrl-C)"
                continue
            try:
                if self.exec("print(6 * 7)", timeout).strip() == "42" and not self.watchdog_running():
                    return
                why = "the REPL did not answer 42 to print(6 * 7)"
            except PicoError as e:
                why = str(e)
        raise PicoError(f"the Pico did not stop at a quiet REPL after RESET and Ctrl-C ({tries} tries): "
                        f"{why}")

    def wait_resets(self, count: int, timeout: float) -> bool:
        """Wait until ``resets`` reaches ``count`` and the console is up again after it."""
        end = time.monotonic() + timeout
        with self._events:
            while not (self.resets >= count and self.enumerations > self._enumerations_at_reset):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._events.wait(min(left, 0.5))
        return True

    def pin(self, gpio: int) -> bool:
        """The level GPIO ``gpio`` drives (its output value, after any override)."""
        return bool(self._running().mcu.gpio[gpio].output_value)

    def set_input(self, gpio: int, value: bool) -> None:
        self._loop_call(self._running().mcu.gpio[gpio].set_input_value, bool(value))

    def uart(self, index: int) -> UartBridge:
        if index not in self._uarts:
            self._uarts[index] = UartBridge(self, index)
        return self._uarts[index]

    def flash_image(self) -> bytes:
        """The LittleFS region of the flash, taken between two instructions."""
        return self._on_engine(self._snapshot)

    def save_flash(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path)
        p.write_bytes(self.flash_image())
        return p

    def _snapshot(self) -> bytes:
        layout = self.device.board.layout
        start = layout.fs_start
        return bytes(self.device.mcu.flash[start: start + layout.fs_blocksize * layout.fs_blockcount])

    # -- running code
    def exec_raw(self, code: str, timeout: float = 30.0) -> tuple[str, str]:
        """Run ``code`` through the raw REPL (interrupting whatever runs): (stdout, traceback)."""
        con = self._con()
        with self._exec_lock:
            start = con.mark()
            con.send(b"\r\x03\x03\r\x01")
            pos = con.wait_for(RAW_PROMPT, start, timeout)
            con.send(code.encode() + b"\x04")
            pos = con.wait_for(b"OK", pos, timeout)
            out_end = con.wait_for(b"\x04", pos, timeout)
            err_end = con.wait_for(b"\x04", out_end, timeout)
            con.wait_for(b">", err_end, timeout)
            con.send(b"\x02")  # back to the friendly REPL, as a terminal would find it
            out = con.text(pos, out_end - 1).decode("utf-8", "replace")
            err = con.text(out_end, err_end - 1).decode("utf-8", "replace")
        return out.replace("\r\n", "\n"), err.replace("\r\n", "\n")

    def exec(self, code: str, timeout: float = 30.0) -> str:
        """Run ``code``; its output, or :class:`PicoError` with the traceback."""
        out, err = self.exec_raw(code, timeout)
        if err:
            raise PicoError(f"the code raised on the Pico:\n{err}\n(output: {out!r})")
        return out

    def eval(self, expr: str, timeout: float = 30.0) -> Any:
        """The value of ``expr`` on the Pico, through ``repr`` (numbers, strings, lists ...)."""
        import ast

        out = self.exec(f"print(repr({expr}))", timeout).strip()
        return ast.literal_eval(out)

    # -- plumbing
    def _running(self) -> Any:
        if self.device is None:
            raise PicoError("the emulated Pico is not running")
        return self.device

    def _con(self) -> _Console:
        if self._console is None:
            raise PicoError("the emulated Pico is not running")
        return self._console

    def _loop_call(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is None:
            raise PicoError("the emulated Pico is not running")
        self._loop.call_soon_threadsafe(fn, *args)

    def _on_engine(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run ``fn`` on the emulator's loop, between two instruction batches; its result."""
        if self._loop is None:
            raise PicoError("the emulated Pico is not running")

        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout)


# -- a bench without a board: `python -m hil.targets.pico`
def main(argv: list[str] | None = None) -> int:
    """Boot the emulated Pico, print its console pty (for ``swapstation flash --port`` and
    ``mpremote connect``) and run until Ctrl-C; with ``--flash`` the filesystem is loaded
    from that file if it exists, and saved to it at the end."""
    import argparse
    import signal

    ap = argparse.ArgumentParser(prog="python -m hil.targets.pico", description=main.__doc__)
    ap.add_argument("--flash", type=Path, help="LittleFS image file: booted from if it exists, saved on exit")
    ap.add_argument("--uf2", help=f"the MicroPython image (default: ${UF2_ENV}, else ../shared/micropython/"
                                  f"{UF2_NAME})")
    args = ap.parse_args(argv)
    flash = args.flash if args.flash is not None and args.flash.exists() else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        pico = EmulatedPico(uf2=args.uf2, flash=flash).boot()
    except (PicoError, OSError, ValueError) as e:
        print(f"python -m hil.targets.pico: {e}", file=sys.stderr)
        return 2
    try:
        print(f"emulated Pico running; console {pico.console_path}", flush=True)
        print(f"  swapstation flash IMAGE --port {pico.console_path}", flush=True)
        print("Ctrl-C stops it" + (f" and saves the flash to {args.flash}" if args.flash else ""), flush=True)
        while pico.alive() and not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if args.flash is not None and pico.alive():
            pico.save_flash(args.flash)
            print(f"flash saved to {args.flash}", flush=True)
        pico.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
