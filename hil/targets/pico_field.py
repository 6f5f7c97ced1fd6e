"""The rig's field devices on the emulated Pico's UARTs, in emulated time.

The unix and board targets reach the field through pymodbus servers that run on wall
time. The emulated Pico runs ~40x slower than a real one, and not at a steady pace, so
its field must run on the Pico's own clock instead:

- :class:`RtuSlaves` listens on one :class:`~hil.targets.pico.UartBridge`: every byte the
  firmware writes arrives in ``on_byte`` inside the emulator; once a request frame is
  complete (its length follows from the function code) and its CRC holds, the unit's
  device (the same ``host.devices`` ``ChargerDevice`` / ``BayIODevice`` the pymodbus
  servers ask, backed by the plant) is asked synchronously and the reply is scheduled in
  emulated time: the request's wire time plus t3.5 after its first byte, then one
  character time a byte.
  The RS-485 driver enable (DE) is sampled at every byte sent (must be high) and when a
  reply starts (must be low: the master has released the line).
- :class:`EmulatedField` is a :class:`~hil.emulators.field.Field` whose plant and bay
  mechanics advance on the Pico's clock (an alarm every ``step_s`` of emulated time),
  and whose ``call`` runs on the emulator's thread, between two instruction batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from firmware.proto.crc16 import crc16
from hil.emulators.field import Field
from hil.emulators.modbus import Request, RequestLog, Tables
from host.devices.codes import READ_FCS, Device, NoReply
from host.devices.rtu import handle_pdu, request_length, with_crc

T35_NS = 1_750_000  # t3.5 above 19200 baud (Modbus over serial line, 2.5.1.1)


class RtuSlaves:
    """Every unit of one RS-485 line, answering on UART ``bridge`` (see the module doc).
    ``de_pin``: the GPIO of the line's driver enable."""

    def __init__(self, name: str, bridge: Any, de_pin: int, devices: Mapping[int, tuple[Device, Tables]],
                 clock_s: Callable[[], float]) -> None:
        self.name = name
        self.bridge = bridge
        self.de_pin = de_pin
        self.devices = dict(devices)
        self.clock_s = clock_s
        self.log = RequestLog()
        self.frames = 0  # complete requests with a good CRC
        self.bad_crc = 0
        self.foreign = 0  # requests for units not on this line
        self.de_low_bytes = 0  # bytes sent while DE was low (lost on a real line)
        self.de_high_replies = 0  # replies due while DE was still high (a collision)
        self.replies = 0
        self._buf = bytearray()
        self._first_ns = 0
        self._reply = b""
        self._alarm = bridge.pico.device.simulator.clock.create_alarm(self._answer)
        bridge.on_byte = self._on_byte

    def _now_ns(self) -> int:
        return int(self.bridge.pico.device.simulator.clock.nanos)

    def _on_byte(self, b: int) -> None:
        if not self.bridge.pico.pin(self.de_pin):
            self.de_low_bytes += 1
        if not self._buf:
            self._first_ns = self._now_ns()
        self._buf.append(b)
        n = request_length(self._buf)
        while n is not None:
            if n == 0 or len(self._buf) < n:
                if n == 0:
                    self._buf.clear()
                return
            frame = bytes(self._buf[:n])
            del self._buf[:n]
            self._request(frame)
            n = request_length(self._buf)

    def _request(self, frame: bytes) -> None:
        if crc16(frame[:-2]) != frame[-2] | (frame[-1] << 8):
            self.bad_crc += 1
            return
        self.frames += 1
        unit = frame[0]
        if unit == 0:
            for u in self.devices:
                self._serve(u, frame, broadcast=True)
            return
        if unit not in self.devices:
            self.foreign += 1
            return
        reply = self._serve(unit, frame)
        if reply is None:
            return
        char = self.bridge.char_ns()
        self._reply = reply
        # The request's first byte left at _first_ns; its last stop bit len*char later.
        due = self._first_ns + len(frame) * char + T35_NS
        self._alarm.schedule(max(1, due - self._now_ns()))

    def _answer(self) -> None:
        if self.bridge.pico.pin(self.de_pin):
            self.de_high_replies += 1
        self.replies += 1
        self.bridge.send(self._reply)

    def _serve(self, unit: int, f: bytes, broadcast: bool = False) -> bytes | None:
        dev, _tables = self.devices[unit]
        fc, address, count = f[1], (f[2] << 8) | f[3], (f[4] << 8) | f[5]
        now = self.clock_s()
        served: list[list[int]] = []
        try:
            pdu = handle_pdu(dev, f[1:-2], lambda _fc, _a, values: served.append(values))
        except NoReply:
            self.log.add(Request(now, unit, fc, address, count, None, silent=True))
            return None
        if served:
            n = count if fc in READ_FCS else len(served[0])
            self.log.add(Request(now, unit, fc, address, n, served[0]))
        else:  # an exception reply
            self.log.add(Request(now, unit, fc, address, count, None, error=pdu[1]))
        return None if broadcast else with_crc(bytes((unit,)) + pdu)


class EmulatedField(Field):
    """The field of :class:`~hil.emulators.field.Field` (plant, chargers, bay I/O) on the
    emulated Pico's clock. :meth:`attach` puts it on a booted Pico; it keeps its time
    across power cycles (``now()`` goes on from where the last one stopped, plus the
    off-time given to :meth:`detach`)."""

    def __init__(self, cfg: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(cfg, charger_port="pico:uart", bay_port="pico:uart", **kwargs)
        self.pico: Any = None
        self._offset_s = 0.0
        self._stepper_alarm: Any = None
        self.slaves: dict[str, RtuSlaves] = {}
        self._t0 = 0.0  # the bay's time is the field's

    def now(self) -> float:
        """Field time, s: emulated time, continuous over power cycles."""
        return self._offset_s + (self.pico.emulated_s if self.pico is not None else 0.0)

    def clock(self) -> float:
        return self.now()

    def start(self) -> None:  # the lines come with the Pico: attach()
        pass

    def attach(self, pico: Any, board_cfg: Mapping[str, Any]) -> None:
        """Serve the field on ``pico``'s UARTs (the ones ``board_cfg`` wires the buses to)."""
        self.pico = pico
        self._last_step = self.now()

        def setup() -> None:
            for name, (_port, devices) in self._line_devices().items():
                bus = board_cfg["buses"][name]
                self.slaves[name] = RtuSlaves(name, pico.uart(bus["uart"]), bus["de"], devices, self.now)
            clock = pico.device.simulator.clock
            self._stepper_alarm = clock.create_alarm(self._step)
            self._stepper_alarm.schedule(int(self.step_s * 1e9))

        pico._on_engine(setup)

    def _line_devices(self) -> dict[str, tuple[str, Any]]:
        chg = {u: (d, _charger_tables()) for u, d in self.chargers.items()}
        lines: dict[str, tuple[str, Any]] = {"chargers": ("uart", chg)}
        if self.bay is not None:
            lines["bay_io"] = ("uart", {self.bay_unit: (self.bay, _bay_tables())})
        return lines

    def _step(self) -> None:
        self.advance()
        self._stepper_alarm.schedule(int(self.step_s * 1e9))

    def detach(self, ran_s: float, off_s: float = 0.0) -> None:
        """The Pico is gone (power cut, stop) after ``ran_s`` of emulated time: the
        field's time goes on from there, and by ``off_s`` more."""
        self.pico = None
        self._offset_s += ran_s
        self.advance()  # nothing drives the plant while the power is off: step it now
        self._offset_s += off_s
        self.advance()
        self.slaves.clear()

    def stop(self) -> None:
        self.pico = None

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 60.0) -> Any:
        pico = self.pico
        if pico is None or not pico.alive():
            return fn(*args)
        return pico._on_engine(lambda: fn(*args), timeout)


def _charger_tables() -> Tables:
    from hil.emulators.modbus import unit_tables_for_charger

    return unit_tables_for_charger()


def _bay_tables() -> Tables:
    from hil.emulators.modbus import unit_tables_for_bay

    return unit_tables_for_bay()
