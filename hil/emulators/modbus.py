"""Field devices served by pymodbus on a serial line (a pty path or a USB-RS485 adapter).

A line carries several Modbus devices, one per unit ID, each a ``host.devices`` device:
``read(fc, address, count) -> list[int]`` and ``write(fc, address, values)``, raising
``ModbusError(code)`` for an exception reply and ``NoReply`` when it is off the bus.
:class:`LineServer` puts those devices behind one pymodbus RTU serial server:

- every unit is a ``SimDevice`` (the pymodbus 3.16 data model) whose register tables
  only buffer values; its ``action`` callback asks the device on every request, so a
  reply always carries the device's state at that moment and writes reach the device
  before the reply leaves;
- a device raising ``NoReply``, and any unit not on the line, stays silent (the master
  times out), as on a real RS-485 line;
- the receiver drops a partial frame after ``resync_s`` of silence, as a real slave
  resynchronises on the t3.5 gap (pymodbus alone would glue a torn frame to the next one);
- a reply starts no sooner than t3.5 after the request's last byte (pymodbus alone
  answers as soon as it has decoded the request);
- every request and its outcome is recorded in a :class:`RequestLog` with host
  timestamps (tests and benchmarks measure poll cycles and reaction times from it).

The server runs in an asyncio loop; :class:`hil.emulators.field.Field` owns that loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from host.devices.codes import (
    BIT_FCS,
    EX_ILLEGAL_FUNCTION,
    FC_READ_COILS,
    FC_WRITE_COIL,
    FC_WRITE_REGISTER,
    Device,
    ModbusError,
    NoReply,
)

# pymodbus reads back after FC05/FC06 to build the echo; the echo must be the request.
_ECHO_FCS = (FC_WRITE_COIL, FC_WRITE_REGISTER)
_EXC = {1: ExcCodes.ILLEGAL_FUNCTION, 2: ExcCodes.ILLEGAL_ADDRESS, 3: ExcCodes.ILLEGAL_VALUE,
        4: ExcCodes.DEVICE_FAILURE, 5: ExcCodes.ACKNOWLEDGE, 6: ExcCodes.DEVICE_BUSY}


@dataclass(frozen=True)
class Tables:
    """Sizes of a device's four tables, each addressed 0..size-1 (0: none). Requests
    outside a table get exception 02 from pymodbus; inside, the device decides."""

    coils: int = 0
    discrete: int = 0
    holding: int = 0
    inputs: int = 0


@dataclass
class Request:
    """One request a device on the line received, as the emulator saw it."""

    t: float  # time.monotonic() when the device handled it
    unit: int
    fc: int
    address: int
    count: int
    values: list[int] | None  # written values (writes), or the values read (reads)
    error: int = 0  # exception code sent, 0 for a normal reply
    silent: bool = False  # no reply (device off the bus)


class RequestLog:
    """Requests seen on one line, newest last, bounded. Thread-safe for readers."""

    def __init__(self, maxlen: int = 200_000) -> None:
        self._items: deque[Request] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.listeners: list[Callable[[Request], None]] = []

    def add(self, r: Request) -> None:
        with self._lock:
            self._items.append(r)
        for fn in self.listeners:
            fn(r)

    def snapshot(self, since: float = 0.0) -> list[Request]:
        with self._lock:
            return [r for r in self._items if r.t >= since]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def _bits_to_regs(bits: Sequence[int], nregs: int) -> list[int]:
    regs = [0] * nregs
    for i, b in enumerate(bits[: nregs * 16]):
        if b:
            regs[i >> 4] |= 1 << (i & 15)
    return regs


class _Unit:
    """One unit on the line: the device, its tables and the pymodbus action."""

    def __init__(self, server: LineServer, unit: int, device: Device, tables: Tables) -> None:
        self.server = server
        self.unit = unit
        self.device = device
        self.tables = tables

    def simdevice(self) -> SimDevice:
        t = self.tables

        def bits(n: int) -> list[SimData]:
            # A table the device lacks still needs one block; the device answers 01 for it.
            return [SimData(0, count=max(16, (n + 15) // 16 * 16), values=False, datatype=DataType.BITS)]

        def regs(n: int) -> list[SimData]:
            return [SimData(0, count=max(1, n), values=0, datatype=DataType.REGISTERS)]

        tables = (bits(t.coils), bits(t.discrete), regs(t.holding), regs(t.inputs))
        return SimDevice(self.unit, simdata=tables, action=self.action)

    async def action(self, fc: int, start: int, address: int, count: int, registers: list[int],
                     values: list[int] | list[bool] | None) -> ExcCodes | None:
        if values is None and fc in _ECHO_FCS:
            return None  # read-back for the echo: the table holds what was just written
        return self.server._serve(self, fc, start, address, count, registers, values)


class _ResyncHandler(ServerRequestHandler):
    """Drops a partial frame after a silence, like a slave's t3.5 receiver timeout."""

    def __init__(self, line: LineServer, server: ModbusSerialServer, *args: Any) -> None:
        super().__init__(server, *args)
        self._owner = line
        self._last_rx = 0.0

    def datagram_received(self, data: bytes, addr: tuple | None) -> None:
        now = time.monotonic()
        if self.recv_buffer and now - self._last_rx > self._owner.resync_s:
            self._owner.resyncs += 1
            self.recv_buffer = b""
        self._last_rx = now
        super().datagram_received(data, addr)

    async def handle_request(self) -> None:
        pdu = self.last_pdu
        if pdu is not None and pdu.dev_id and pdu.dev_id not in self._owner.units:
            self._owner.foreign += 1
            return  # another unit's request: not ours to answer
        # A slave keeps the line silent for t3.5 after the request before it answers.
        wait = self._last_rx + self._owner.reply_gap_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        await super().handle_request()


class _Server(ModbusSerialServer):
    def __init__(self, owner: LineServer, **kwargs: Any) -> None:
        self._owner = owner
        super().__init__(**kwargs)

    def callback_new_connection(self) -> ServerRequestHandler:
        return _ResyncHandler(self._owner, self, self.trace_packet, self.trace_pdu, self.trace_connect)


class LineServer:
    """Every device of one RS-485 line behind a pymodbus RTU serial server.

    ``devices`` maps unit ID to (device, tables). Start with ``await start()`` inside the
    owner's event loop; ``port`` is a pty slave path or an adapter's device path.
    """

    def __init__(self, name: str, port: str, devices: dict[int, tuple[Device, Tables]], *,
                 baudrate: int = 115200, parity: str = "E", stopbits: int = 1,
                 resync_s: float = 0.010, broadcast: bool = True) -> None:
        if not devices:
            raise ValueError("a line needs at least one device")
        for unit in devices:
            if not 1 <= unit <= 247:
                raise ValueError(f"unit {unit}: Modbus unicast units are 1..247")
        self.name = name
        self.port = port
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        # A frame's bytes arrive back to back; a gap this long ends any partial frame. It must
        # be longer than the host's scheduling jitter and shorter than the master's timeout.
        self.resync_s = resync_s
        self.reply_gap_s = 3.5 * 11 / baudrate if baudrate <= 19200 else 0.00175  # t3.5
        self.broadcast = broadcast
        self.units = {u: _Unit(self, u, d, t) for u, (d, t) in devices.items()}
        self.log = RequestLog()
        self.resyncs = 0  # partial frames dropped after a silence
        self.foreign = 0  # requests for units not on this line (left unanswered)
        self.served = 0
        # unit -> exception code it answers every request with (a device in trouble: 04 failure,
        # 05 acknowledge, 06 busy), whatever the device would have said. Cleared by deleting.
        self.force_exception: dict[int, int] = {}
        self._dev_id = -1  # unit of the request being handled (0: broadcast)
        self._server: _Server | None = None

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self._dev_id = pdu.dev_id
        return pdu

    async def start(self) -> None:
        sims = [u.simdevice() for u in self.units.values()]
        self._server = _Server(
            self, context=sims, framer=FramerType.RTU, port=self.port, baudrate=self.baudrate,
            parity=self.parity, stopbits=self.stopbits, bytesize=8, ignore_missing_devices=True,
            broadcast_enable=self.broadcast, trace_pdu=self._trace_pdu, reconnect_delay=0.2,
        )
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    # ---- request handling (in the event loop) -----------------------------------------
    def _serve(self, u: _Unit, fc: int, start: int, address: int, count: int, registers: list[int],
               values: list[int] | list[bool] | None) -> ExcCodes | None:
        now = time.monotonic()
        broadcast = self._dev_id == 0
        dev = u.device
        try:
            forced = self.force_exception.get(u.unit)
            if forced:
                raise ModbusError(forced, "forced by the rig")
            if values is not None:
                vals = [int(v) for v in values]
                dev.write(fc, address, vals)
                self._record(Request(now, u.unit, fc, address, len(vals), vals))
                return None
            if fc in BIT_FCS:
                size = u.tables.coils if fc == FC_READ_COILS else u.tables.discrete
                if not size:
                    dev.read(fc, address, 1)  # a device without this table raises 01
                    raise ModbusError(EX_ILLEGAL_FUNCTION)
                # pymodbus passes the count in 16-bit words here: refresh the table from
                # the start of the word holding ``address`` up to the table's end.
                first = (address // 16) * 16
                got = dev.read(fc, first, size - first) if size > first else []
                words = _bits_to_regs(got, (size - first + 15) // 16)
                off = first // 16 - start
                registers[off: off + len(words)] = words
                lo = address - first
                self._record(Request(now, u.unit, fc, address, count, list(got[lo:])))
                return None
            regs = dev.read(fc, address, count)
            off = address - start
            registers[off: off + count] = [v & 0xFFFF for v in regs]
            self._record(Request(now, u.unit, fc, address, count, list(regs)))
            return None
        except NoReply:
            self._record(Request(now, u.unit, fc, address, count, None, silent=True))
            if broadcast:
                return None  # an absent device misses a broadcast; the others still get it
            raise NoSuchIdException(f"unit {u.unit} does not answer") from None
        except ModbusError as e:
            self._record(Request(now, u.unit, fc, address, count, None, error=e.code))
            return _EXC.get(e.code, ExcCodes.DEVICE_FAILURE)

    def _record(self, r: Request) -> None:
        self.served += 1
        self.log.add(r)


def unit_tables_for_charger() -> Tables:
    from firmware.proto import regmap as rm

    return Tables(holding=rm.CHG_HOLDING_COUNT, inputs=rm.CHG_INFO_BASE + rm.CHG_INFO_COUNT)


def unit_tables_for_bay() -> Tables:
    from firmware.proto import regmap as rm

    return Tables(coils=rm.BAY_COIL_COUNT, discrete=rm.BAY_DI_COUNT, holding=rm.BAY_HOLDING_COUNT,
                  inputs=rm.BAY_IR_COUNT)


def run_coroutine(loop: asyncio.AbstractEventLoop, coro: Any, timeout: float = 10.0) -> Any:
    """Run ``coro`` on ``loop`` (in its thread) and wait for the result."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)
