"""HAL for the Arm MPS2 AN385 board (Cortex-M3), as QEMU's ``mps2-an385`` emulates it.

The MicroPython ``qemu`` port has no ``machine.UART`` or ``machine.WDT``, so this driver
talks to the CMSDK APB peripherals through ``machine.mem32``, polled and non-blocking:

- UART1 0x40005000, UART2 0x40006000 (UART0 is the REPL): DATA +0x0, STATE +0x4 (bit0 TX
  full, bit1 RX full), CTRL +0x8 (bit0 TX enable, bit1 RX enable), BAUDDIV +0x10. One byte
  each way is buffered; QEMU holds host bytes back while RX is full, so none is lost.
- Watchdog 0x40008000: LOAD +0x0, CTRL +0x8 (bit0 interrupt, bit1 reset), INTCLR +0xC,
  LOCK +0xC00. It counts LOAD clock ticks down twice (interrupt, then reset), so LOAD is
  half the timeout; a feed reloads it.

There are no GPIO pins or RS-485 direction pins on this board: it carries the station's
buses on UART1/UART2 to a host pty (``-serial pty``). ``open_board`` opens a validated
``boards/qemu-mps2-an385.json`` (``drivers/board.py``'s ``open_board`` hands it over here).

Flash: the port mounts no filesystem but its ROMFS at ``/rom``. ``mount_flash`` puts
LittleFS on 1 MiB of the board's PSRAM at 0x21800000 (outside the heap; the ROMFS image is
loaded at 0x21000000, the test harness's ``/tmp`` is at 0x21400000) and mounts it at ``/``,
as rp2 and esp32 have theirs. It survives the watchdog's reset (QEMU keeps RAM across a
system reset), not a new QEMU process.
"""

import machine

from firmware.compat import const, ticks_diff, ticks_ms, ticks_us
from firmware.drivers.board import Board, ensure_dir
from firmware.hal import SerialPort, Watchdog, frame_bits, frame_gap_us

UART1_BASE = const(0x40005000)
UART2_BASE = const(0x40006000)
WDOG_BASE = const(0x40008000)
APB_CLOCK_HZ = const(25000000)  # the board's 25 MHz peripheral clock
FLASH_ADDR = const(0x21800000)
FLASH_BLOCK = const(4096)
FLASH_BLOCKS = const(256)
UART_BASES = {1: UART1_BASE, 2: UART2_BASE}  # board.json "uart" -> registers
RTU_FRAME_GAP_US = const(20000)  # a reply's end by silence, as on a tty (posix_serial)

_DATA = const(0x0)
_STATE = const(0x4)
_CTRL = const(0x8)
_BAUDDIV = const(0x10)
_TX_FULL = const(1)
_RX_FULL = const(2)
_TX_RX_ENABLE = const(3)
_BACKSTEP_US = const(2000)

_WD_LOAD = const(0x0)
_WD_CTRL = const(0x8)
_WD_INTCLR = const(0xC)
_WD_LOCK = const(0xC00)
_WD_UNLOCK_KEY = const(0x1ACCE551)
_WD_INT_RESET = const(3)


class CmsdkUart(SerialPort):
    """One CMSDK APB UART, polled. ``tx_done`` waits for the TX register to empty and
    the wire time of what was written (the emulator sends at once; a board does not).

    Received bytes come from a QEMU chardev (a host pty or socket) one at a time, each
    after QEMU's main loop runs: host scheduling opens gaps inside a reply that no wire
    had (5 % of charger replies failed t1.5 on the HIL rig at load 4). As a tty does
    (``posix_serial``), the port tells the Modbus master ``rtu_char_gap_us = 0`` and a
    wide ``rtu_frame_gap_us``; a valid reply still ends by its length at once."""

    def __init__(self, base, baudrate, bits=10, mem=None, clock_us=ticks_us):
        self._mem = machine.mem32 if mem is None else mem
        self._base = base
        self.baudrate = baudrate
        self.char_us = (bits * 1000000 + baudrate - 1) // baudrate
        self._clock_us = clock_us
        self._busy = False
        self._start_us = 0
        self._sent = 0
        self.rtu_char_gap_us = 0
        self.rtu_frame_gap_us = max(frame_gap_us(baudrate), RTU_FRAME_GAP_US)
        m = self._mem
        m[base + _CTRL] = 0
        m[base + _BAUDDIV] = APB_CLOCK_HZ // baudrate
        m[base + _CTRL] = _TX_RX_ENABLE

    def write(self, buf):
        m = self._mem
        base = self._base
        n = 0
        for b in buf:
            if m[base + _STATE] & _TX_FULL:
                break
            m[base + _DATA] = b
            n += 1
        if n and not self._busy:
            self._busy = True
            self._start_us = self._clock_us()
            self._sent = 0
        self._sent += n
        return n

    def tx_done(self):
        if not self._busy:
            return True
        if self._mem[self._base + _STATE] & _TX_FULL:
            return False
        d = ticks_diff(self._clock_us(), self._start_us)
        # The qemu port's ticks_us steps back by up to 1 ms now and then (seen: -975 us):
        # a small negative d is "just started"; a large one, a start over half a period ago.
        if -_BACKSTEP_US < d < self._sent * self.char_us:
            return False
        self._busy = False
        return True

    def readinto(self, buf):
        m = self._mem
        base = self._base
        n = 0
        size = len(buf)
        while n < size and m[base + _STATE] & _RX_FULL:
            buf[n] = m[base + _DATA] & 0xFF
            n += 1
        return n

    def flush_input(self):
        m = self._mem
        for _ in range(256):  # bounded: the host may keep sending
            if not m[self._base + _STATE] & _RX_FULL:
                return
            m[self._base + _DATA]

    def close(self):
        self._mem[self._base + _CTRL] = 0
        self._busy = False


class CmsdkWatchdog(Watchdog):
    """The CMSDK watchdog with reset enabled. Starting it cannot be undone by the firmware
    (as ``machine.WDT``): ``feed`` reloads the counter, silence resets the board."""

    def __init__(self, timeout_ms, mem=None, base=WDOG_BASE):
        if not 1 <= timeout_ms <= 60000:
            raise ValueError("watchdog timeout_ms must be 1..60000")
        self.timeout_ms = timeout_ms
        self._mem = machine.mem32 if mem is None else mem
        self._base = base
        m = self._mem
        m[base + _WD_LOCK] = _WD_UNLOCK_KEY
        m[base + _WD_LOAD] = timeout_ms * (APB_CLOCK_HZ // 2000)  # two count-downs
        m[base + _WD_CTRL] = _WD_INT_RESET
        m[base + _WD_LOCK] = 0  # locked again: stray writes cannot stop it
        self.last_feed = ticks_ms()

    def feed(self):
        m = self._mem
        m[self._base + _WD_LOCK] = _WD_UNLOCK_KEY
        m[self._base + _WD_INTCLR] = 1  # clears the first count-down and reloads
        m[self._base + _WD_LOCK] = 0
        self.last_feed = ticks_ms()


class PsramDisk:
    """A LittleFS block device (extended protocol) on board memory outside the heap."""

    def __init__(self, addr=FLASH_ADDR, block_size=FLASH_BLOCK, blocks=FLASH_BLOCKS):
        import uctypes

        self.block_size = block_size
        self.blocks = blocks
        self._mv = memoryview(uctypes.bytearray_at(addr, block_size * blocks))

    def readblocks(self, block, buf, offset=0):
        a = block * self.block_size + offset
        buf[:] = self._mv[a : a + len(buf)]

    def writeblocks(self, block, buf, offset=0):
        a = block * self.block_size + offset
        self._mv[a : a + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.blocks
        if op == 5:  # block size
            return self.block_size
        return 0  # init, deinit, sync; erase: RAM needs none


def mount_flash(disk=None, at="/"):
    """Mount the board's LittleFS at ``at``, formatting it first if it holds none (a fresh
    QEMU process starts with blank memory), as a port's first boot does."""
    import vfs

    if disk is None:
        disk = PsramDisk()
    lfs = getattr(vfs, "VfsLfs2")  # noqa: B009 - the port stubs make it an abstract block device
    try:
        fs = lfs(disk)
    except OSError:
        lfs.mkfs(disk)
        fs = lfs(disk)
    vfs.mount(fs, at)
    return fs


def open_storage(root):
    """The journal's folder on the board's flash, mounted first if nothing is at ``/``."""
    from firmware.drivers.vfs_storage import VfsStorage

    try:
        ensure_dir(root)
    except OSError:  # ENODEV: no filesystem there yet
        mount_flash()
        ensure_dir(root)
    return VfsStorage(root)


class Mps2Board(Board):
    """The qemu board: CMSDK UARTs as the station's buses, the CMSDK watchdog; no pins,
    no LED, no RTC (``minute_of_day`` is None: no time-of-use)."""

    def __init__(self, cfg, buses, storage, mem=None):
        Board.__init__(self, cfg, buses, {}, {}, None, storage)
        self._mem = mem

    def _new_watchdog(self, timeout_ms):
        return CmsdkWatchdog(timeout_ms, self._mem)


def open_board(cfg, station_cfg, storage_factory=None, clock_us=ticks_us, mem=None):
    """Open a validated qemu board config: each bus's CMSDK UART at the station's baud rate,
    then the storage (default: ``open_storage``, the board's flash)."""
    buses = {}
    for name in cfg["buses"]:
        bus = cfg["buses"][name]
        buses[name] = CmsdkUart(UART_BASES[bus["uart"]], station_cfg["buses"][name]["baudrate"],
                                frame_bits(bus["parity"], bus["stop"]), mem, clock_us)
    if storage_factory is None:
        storage_factory = open_storage
    return Mps2Board(cfg, buses, storage_factory(cfg["storage"]["root"]), mem)
