"""In-process field buses between the real firmware and the simulated plant.

The field devices (``host.devices``: chargers, the bay I/O module) are seen through
their one interface, ``Device``: ``read(fc, address, count) -> list[int]`` and
``write(fc, address, values)``, raising ``ModbusError(code, why)`` for a Modbus
exception, or ``NoReply`` when the device is off the bus (dropout). Two buses put
those devices behind the firmware:

- ``wire``: ``RtuLine`` is the far end of the firmware master's in-memory serial port.
  It decodes the complete RTU request frames the master wrote (CRC, unit, function,
  PDU limits), calls the device, encodes the reply frame and hands it back after the
  time it takes on the wire at the line's baud rate, in virtual time. The slave side
  is ``host.devices.rtu``'s; the master is the firmware's own ``ModbusMaster``.
- ``direct``: ``DirectBus`` has the master's transaction API but calls the devices
  at once, without framing (see its docstring).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from firmware.compat import ticks_add, ticks_diff
from firmware.hal import char_time_us
from firmware.proto import modbus_rtu as mb
from firmware.proto.crc16 import crc16
from host.devices.codes import FC_WRITE_REGISTERS, Device, ModbusError, NoReply
from host.devices.rtu import handle_pdu, with_crc

# --- wire mode -------------------------------------------------------------------------------


class RtuLine:
    """The slave side of one RS-485 line: every device on it, behind the master's MemSerialPort.

    ``take_request(now_us)`` collects what the master wrote; when that is a complete frame
    for a device on the line, the reply is computed at once (the plant is advanced to the
    request time by the caller) and becomes due at ``reply_due_us``: the request's and
    the reply's wire times plus a turnaround. ``deliver(now_us)`` then puts the reply
    bytes where the master's ``readinto`` finds them. Frames for absent units, with bad
    CRCs, or for devices raising ``NoReply``, get no reply, as on a real line.
    """

    def __init__(self, port: object, devices: Mapping[int, Device], turnaround_us: int = 500,
                 observe: Callable[[int, int], None] | None = None) -> None:
        self.port = port  # firmware.drivers.mem.MemSerialPort (master end)
        self.devices = dict(devices)
        baud = getattr(port, "baudrate", 115200)
        self.char_us = char_time_us(baud)
        self.gap_us = 1750 if baud > 19200 else (35 * self.char_us + 9) // 10
        self.turnaround_us = turnaround_us
        self.reply: bytes = b""
        self.reply_due_us = -1
        self.frames = 0
        self.bad_frames = 0
        self.unanswered = 0
        self.observe = observe

    def take_request(self, now_us: int) -> bool:
        """Consume a request the master wrote; True when a reply is now pending."""
        raw = self.port.take_written()  # type: ignore[attr-defined]
        if not raw:
            return False
        self.frames += 1
        if len(raw) < 4 or crc16(raw) != 0:
            self.bad_frames += 1
            return False
        unit = raw[0]
        if unit == 0:  # broadcast: every device acts on it, none answers
            for d in self.devices.values():
                try:
                    handle_pdu(d, raw[1:-2])
                except NoReply:
                    pass
            return False
        device = self.devices.get(unit)
        if device is None:
            self.unanswered += 1
            return False
        try:
            pdu = handle_pdu(device, raw[1:-2])
        except NoReply:
            self.unanswered += 1
            return False
        if self.observe is not None:
            self.observe(unit, raw[1])
        self.reply = with_crc(bytes((unit,)) + pdu)
        wire = (len(raw) + len(self.reply)) * self.char_us + 2 * self.gap_us
        self.reply_due_us = now_us + wire + self.turnaround_us
        return True

    def deliver(self) -> None:
        self.port.inject(self.reply)  # type: ignore[attr-defined]
        self.reply = b""
        self.reply_due_us = -1


# --- direct mode -------------------------------------------------------------------------------


class DirectBus(mb.BusMaster):
    """The firmware master's API and bookkeeping (queue, pool, retries, health, offline
    probing: ``firmware.proto.modbus_rtu.BusMaster``) with the framing replaced by direct
    calls into the plant devices.

    ``poll(now)`` serves every queued request at once, in order: values, exceptions and
    writes are the devices' own. A device that does not answer (``NoReply``) costs what it
    costs on a line: the attempt stays on the bus until ``timeout_ms`` has passed, then
    counts as a timeout and is retried like the RTU master does.
    """

    def __init__(self, devices: Mapping[int, Device], timeout_ms: int = 100, retries: int = 1,
                 offline_after: int = 3, probe_interval_ms: int = 5000, turnaround_ms: int = 100,
                 log: Any = None, queue_size: int = 8) -> None:
        mb.BusMaster.__init__(self, timeout_ms, retries, offline_after, probe_interval_ms, turnaround_ms,
                              log, queue_size)
        self.devices = dict(devices)
        self._deadline = 0
        self.requests = 0

    def poll(self, now_ms: int) -> None:
        tx = self._active
        if tx is not None:  # an attempt waiting for its timeout
            if ticks_diff(now_ms, self._deadline) < 0:
                return
            self._attempt_failed(tx, mb.ERR_TIMEOUT)
            if not self._attempts_left(tx):
                self._finish(tx, mb.ERR_TIMEOUT, now_ms)
            elif self._try(tx, now_ms):
                return
        while self._qlen:
            tx = self._next_tx(now_ms)
            if tx is None or self._try(tx, now_ms):
                return

    def _try(self, tx: Any, now_ms: int) -> bool:
        """One attempt; True when it is left waiting for its timeout."""
        tx.attempts += 1
        self.requests += 1
        fc = tx.fc
        try:
            if tx.unit == 0:
                for d in self.devices.values():
                    try:
                        d.write(fc, tx.address, [tx.written(i) for i in range(tx.count)])
                    except NoReply:
                        pass
                self._finish(tx, mb.ERR_NONE, now_ms)
                return False
            device = self.devices.get(tx.unit)
            if device is None:
                raise NoReply
            if fc <= 4:
                read_into = getattr(device, "read_into", None)
                if read_into is not None:  # fills the transaction's buffer itself
                    read_into(fc, tx.address, tx.count, tx.result_list())
                else:
                    got = device.read(fc, tx.address, tx.count)
                    v = tx.result_list()
                    for i in range(tx.count):
                        v[i] = got[i]
            elif fc == FC_WRITE_REGISTERS:
                r = tx.req
                write_frame = getattr(device, "write_frame", None)
                if write_frame is not None:  # takes the values from the request frame itself
                    write_frame(tx.address, tx.count, r, 7)
                else:
                    values = [(r[j] << 8) | r[j + 1] for j in range(7, 7 + 2 * tx.count, 2)]
                    device.write(fc, tx.address, values)
            else:
                device.write(fc, tx.address, [tx.written(i) for i in range(tx.count)])
        except ModbusError as e:
            self._finish(tx, mb.ERR_EXCEPTION, now_ms, e.code)
            return False
        except NoReply:
            self._deadline = ticks_add(now_ms, self.timeout_ms)
            self._active = tx
            return True
        self._finish(tx, mb.ERR_NONE, now_ms)
        return False

    def next_poll_ms(self, now_ms: int) -> int:
        if self._active is not None:
            return max(0, ticks_diff(self._deadline, now_ms))
        return 0 if self._qlen else mb.IDLE_POLL_MS


class WireLink:
    """One simulated RS-485 line for ``wire`` mode: the firmware's own ``ModbusMaster`` on a
    ``MemSerialPort``, the plant devices behind an ``RtuLine``, all on a virtual clock.

    ``clock_ms()`` is the engine's virtual time in ms (not wrapped). The master gets a
    ``us_clock`` derived from it. After the firmware ran, ``sent(now_ms)`` collects the
    request it put on the line; ``due_ms()`` says when the reply has crossed the line and
    ``deliver()`` puts it into the master's receive buffer.
    """

    def __init__(self, devices: Mapping[int, Device], baudrate: int, clock_ms: Callable[[], int],
                 **master_kw: Any) -> None:
        from firmware.drivers.mem import MemSerialPort

        self.port = MemSerialPort(baudrate)
        self.line = RtuLine(self.port, devices)
        self._clock_ms = clock_ms
        self.master = mb.ModbusMaster(self.port, us_clock=self._us, **master_kw)

    def _us(self) -> int:
        return int(ticks_add(0, self._clock_ms() * 1000))

    def sent(self, now_ms: int) -> None:
        if self.port.peer_rx:
            self.line.take_request(now_ms * 1000)

    def due_ms(self) -> int:
        """Virtual ms at which the pending reply has arrived (-1: none pending)."""
        due = self.line.reply_due_us
        return -1 if due < 0 else (due + 999) // 1000

    def deliver(self) -> None:
        self.line.deliver()
