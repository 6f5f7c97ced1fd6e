"""``swapstation demo``: the firmware's Modbus master polling emulated chargers.

A pymodbus 3.16 RTU server emulates charger modules (the register map of
docs/register-map.md, values from firmware.proto.regmap) behind a paced pty line
(hil.line.PacedLine, 115200 baud). The firmware's ModbusMaster, on the POSIX serial
driver, polls each charger's status block and writes its control block, then
prints what it read and each unit's bus health. One unit is configured but absent
from the line, to show a timeout and the offline state.

The server pieces (``ChargerSim``, ``BayIoSim``, ``ModbusLineServer``) are reused
by tests/modbus and bench/modbus_poll.py.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Iterable
from typing import Any, cast

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware.proto import regmap as rm

EXIT_OK = 0
EXIT_FAILURE = 1


def charger_registers(unit: int) -> tuple[list[int], list[int], list[int]]:
    """(status block, info block, holding registers) of a plausible charger ``unit``.

    Units cycle through pack types and states so a table of several shows variety."""
    pack_type = (rm.PACK_75, rm.PACK_100, rm.PACK_150, rm.PACK_100_HV)[(unit - 1) % 4]
    cap, v_min, v_nom, v_max = rm.PACK_PARAMS[pack_type]
    states = (rm.CHG_ST_CHARGING, rm.CHG_ST_CHARGING, rm.CHG_ST_FULL, rm.CHG_ST_DERATED, rm.CHG_ST_READY)
    status = states[(unit - 1) % len(states)]
    soc = {rm.CHG_ST_FULL: 900, rm.CHG_ST_READY: 120}.get(status, 200 + (unit * 97) % 600)
    volts = v_min + (v_max - v_min) * soc // 1000  # 0.1 V, rising with SoC
    power = {rm.CHG_ST_CHARGING: 600, rm.CHG_ST_DERATED: 310}.get(status, 0)  # 0.1 kW
    amps = power * 10000 // volts if power else 0  # 0.1 A = P / V
    t_max = 285 + (unit * 13) % 60 + (90 if status == rm.CHG_ST_DERATED else 0)
    pack_id = 0x4E000000 + unit * 7919
    energy = 1_250_000 + unit * 33_333  # Wh
    status_block = [0] * rm.CHG_STATUS_COUNT
    status_block[rm.CHG_IR_STATUS] = status
    status_block[rm.CHG_IR_PACK_PRESENT] = 1
    status_block[rm.CHG_IR_PACK_ID_HI], status_block[rm.CHG_IR_PACK_ID_LO] = rm.split32(pack_id)
    status_block[rm.CHG_IR_PACK_TYPE] = pack_type
    status_block[rm.CHG_IR_SOC] = soc
    status_block[rm.CHG_IR_SOH] = 985 - (unit * 7) % 60
    status_block[rm.CHG_IR_VOLTAGE] = volts
    status_block[rm.CHG_IR_CURRENT] = rm.u16(amps)
    status_block[rm.CHG_IR_POWER] = rm.u16(power)
    status_block[rm.CHG_IR_TEMP_MAX] = rm.u16(t_max)
    status_block[rm.CHG_IR_TEMP_MIN] = rm.u16(t_max - 25 - unit % 5)
    status_block[rm.CHG_IR_ENERGY_HI], status_block[rm.CHG_IR_ENERGY_LO] = rm.split32(energy)
    info = [rm.CHG_MODEL_CODE, 0x0102, rm.CHG_RATED_POWER, rm.CHG_RATED_V_MAX, rm.CHG_RATED_V_MIN,
            rm.CHG_RATED_I_MAX, cap, 100 + unit * 11, rm.u16(240 + unit % 30)]
    holding = [0] * rm.CHG_HOLDING_COUNT
    holding[rm.CHG_HR_TARGET_SOC] = 900
    holding[rm.CHG_HR_WATCHDOG_MS] = rm.CHG_WATCHDOG_DEFAULT_MS
    return status_block, info, holding


class ChargerSim:
    """One emulated charger: register tables for pymodbus plus the little behaviour
    a controller can observe (heartbeat, write checks, forced exceptions)."""

    def __init__(self, unit: int) -> None:
        self.unit = unit
        self.status, self.info, self.holding = charger_registers(unit)
        self.force_exception = 0  # answer every request with this code (tests)
        self.requests = 0
        self.writes: list[tuple[int, int, list[int]]] = []
        self._t0 = time.monotonic()

    def device(self) -> SimDevice:
        bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        return SimDevice(
            id=self.unit,
            simdata=(
                bits,  # chargers have no coils or inputs; the action refuses them
                list(bits),
                [SimData(0, values=list(self.holding), datatype=DataType.REGISTERS)],
                [SimData(rm.CHG_STATUS_BASE, values=list(self.status), datatype=DataType.REGISTERS),
                 SimData(rm.CHG_INFO_BASE, values=list(self.info), datatype=DataType.REGISTERS)],
            ),
            action=self.action,
        )

    async def action(self, fc: int, start: int, address: int, count: int, registers: list[int],
                     values: list[int] | list[bool] | None) -> ExcCodes | None:
        self.requests += 1
        if self.force_exception:
            return ExcCodes(self.force_exception)
        if fc in (1, 2, 5, 15):
            return ExcCodes.ILLEGAL_FUNCTION
        if fc == 4 and start == rm.CHG_STATUS_BASE:
            beat = int(time.monotonic() - self._t0) & 0xFFFF
            registers[rm.CHG_IR_HEARTBEAT - start] = beat
        if values is not None and fc in (6, 16):
            for i, v in enumerate(values):
                if not self._valid(address + i, int(v)):
                    return ExcCodes.ILLEGAL_VALUE
            self.writes.append((fc, address, [int(v) for v in values]))
        return None

    @staticmethod
    def _valid(reg: int, v: int) -> bool:
        limits = {rm.CHG_HR_ENABLE: 1, rm.CHG_HR_I_LIMIT: rm.CHG_RATED_I_MAX,
                  rm.CHG_HR_V_LIMIT: rm.CHG_RATED_V_MAX, rm.CHG_HR_P_LIMIT: rm.CHG_RATED_POWER,
                  rm.CHG_HR_TARGET_SOC: 1000, rm.CHG_HR_FAULT_RESET: 1}
        if reg == rm.CHG_HR_WATCHDOG_MS:
            return rm.CHG_WATCHDOG_MIN_MS <= v <= rm.CHG_WATCHDOG_MAX_MS
        return v <= limits.get(reg, 0xFFFF)


class BayIoSim:
    """A bay remote-I/O module with the bay map's sizes: coils, inputs, registers."""

    def __init__(self, unit: int) -> None:
        self.unit = unit
        self.coils = [False] * rm.BAY_COIL_COUNT
        self.inputs = [False] * rm.BAY_DI_COUNT
        self.inputs[rm.BAY_DI_ESTOP_OK] = self.inputs[rm.BAY_DI_SMOKE_CLEAR] = True
        self.inputs[rm.BAY_DI_LIFT_DOWN] = self.inputs[rm.BAY_DI_DOOR_CLOSED] = True
        self.input_regs = [0] * rm.BAY_IR_COUNT
        self.input_regs[rm.BAY_IR_ID_STATUS] = rm.ID_VALID
        self.input_regs[rm.BAY_IR_ID_SEQ] = 1
        vid = rm.split32(0x00C0FFEE)
        self.input_regs[rm.BAY_IR_VEHICLE_ID_HI], self.input_regs[rm.BAY_IR_VEHICLE_ID_LO] = vid
        self.input_regs[rm.BAY_IR_PACK_TYPE] = rm.PACK_100
        self.holding = [0, 1000, 2000]
        self.force_exception = 0

    def device(self) -> SimDevice:
        return SimDevice(
            id=self.unit,
            simdata=(
                [SimData(0, values=list(self.coils), datatype=DataType.BITS)],
                [SimData(0, values=list(self.inputs), datatype=DataType.BITS)],
                [SimData(0, values=list(self.holding), datatype=DataType.REGISTERS)],
                [SimData(0, values=list(self.input_regs), datatype=DataType.REGISTERS)],
            ),
            action=self.action,
        )

    async def action(self, fc, start, address, count, registers, values) -> ExcCodes | None:
        return ExcCodes(self.force_exception) if self.force_exception else None


class _ServedUnitsOnly:
    """pymodbus' SimCore answers an unknown unit with exception 04; on a real line
    an absent device is silent. Raise NoSuchIdException so the server ignores it."""

    def __init__(self, core: Any) -> None:
        self.core = core

    def device_ids(self) -> list[int]:
        return self.core.device_ids()

    async def async_getValues(self, device_id, func_code, address, count=1):
        if device_id not in self.core.devices:
            raise NoSuchIdException(f"unit {device_id} is not on this line")
        return await self.core.async_getValues(device_id, func_code, address, count)

    async def async_setValues(self, device_id, func_code, address, values):
        if device_id not in self.core.devices:
            raise NoSuchIdException(f"unit {device_id} is not on this line")
        return await self.core.async_setValues(device_id, func_code, address, values)


class ModbusLineServer:
    """A pymodbus RTU serial server for ``sims`` on ``path``, in its own thread and loop."""

    def __init__(self, path: str, sims: Iterable[ChargerSim | BayIoSim], baudrate: int = 115200) -> None:
        self.path = path
        self.baudrate = baudrate
        self.sims = {s.unit: s for s in sims}
        if not self.sims:
            raise ValueError("a line server needs at least one device")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusSerialServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> ModbusLineServer:
        self._thread = threading.Thread(target=self._run, name="modbus-line-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("pymodbus server did not start within 10 s")
        if self._error is not None:
            raise RuntimeError(f"pymodbus server failed to start: {self._error}")
        return self

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        async def main() -> None:
            try:
                server = ModbusSerialServer(
                    [s.device() for s in self.sims.values()], framer=FramerType.RTU, port=self.path,
                    baudrate=self.baudrate, parity="N", stopbits=1, ignore_missing_devices=True,
                    broadcast_enable=True,
                )
                server.context = cast(Any, _ServedUnitsOnly(server.context))  # duck-typed SimCore
                self._server = server
                await server.serve_forever(background=True)
            except BaseException as e:  # reported by start()
                self._error = e
                self._ready.set()
                return
            self._ready.set()
            await server.serving

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._server is not None and self._thread is not None:
            fut = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
            try:
                fut.result(5)
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
            self._thread.join(5)
        self._thread = None

    def __enter__(self) -> ModbusLineServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _fmt_row(unit: int, tx_values: Any, age_ms: int) -> list[str]:
    v = list(tx_values)
    status = v[rm.CHG_IR_STATUS]
    name = rm.CHG_ST_NAMES[status] if status < len(rm.CHG_ST_NAMES) else f"?{status}"
    faults = v[rm.CHG_IR_FAULTS]
    fault_names = [n for i, n in enumerate(rm.CHG_FAULT_NAMES) if faults >> i & 1] or ["-"]
    return [
        str(unit), name, f"{rm.u32(v[rm.CHG_IR_PACK_ID_HI], v[rm.CHG_IR_PACK_ID_LO]):08X}",
        (f"{rm.PACK_PARAMS[v[rm.CHG_IR_PACK_TYPE]][0] / 10:.0f} kWh"
         if v[rm.CHG_IR_PACK_TYPE] < len(rm.PACK_PARAMS) else "?"),
        f"{v[rm.CHG_IR_SOC] / 10:.1f} %", f"{v[rm.CHG_IR_SOH] / 10:.1f} %",
        f"{v[rm.CHG_IR_VOLTAGE] / 10:.1f} V", f"{rm.s16(v[rm.CHG_IR_CURRENT]) / 10:+.1f} A",
        f"{rm.s16(v[rm.CHG_IR_POWER]) / 10:+.1f} kW",
        f"{rm.s16(v[rm.CHG_IR_TEMP_MAX]) / 10:.1f}/{rm.s16(v[rm.CHG_IR_TEMP_MIN]) / 10:.1f} °C",
        f"{rm.u32(v[rm.CHG_IR_ENERGY_HI], v[rm.CHG_IR_ENERGY_LO]) / 1000:.1f} kWh",
        ",".join(fault_names), f"{age_ms} ms",
    ]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def run_demo(units: list[int], absent: list[int], cycles: int, baudrate: int, out=print) -> int:
    from firmware.compat import ticks_diff, ticks_ms
    from firmware.drivers.posix_serial import PosixSerialPort
    from firmware.proto import modbus_rtu as mb
    from hil.line import PacedLine

    logs: list[str] = []
    with PacedLine(baudrate) as line, ModbusLineServer(line.slave_path, [ChargerSim(u) for u in units],
                                                       baudrate) as server:
        port = PosixSerialPort(line.master_path, baudrate, parity="N")
        bus = mb.ModbusMaster(port, timeout_ms=50, retries=1, offline_after=2, probe_interval_ms=2000,
                              log=lambda m: logs.append(f"[{ticks_ms() % 100000:>5} ms] {m}"))
        latest: dict[int, tuple[list[int], int]] = {}
        t_start = time.perf_counter()
        beat = 0
        try:
            for _ in range(cycles):
                beat = (beat + 1) & 0xFFFF
                for unit in units + absent:
                    reads = bus.read(unit, mb.FC_READ_INPUT_REGISTERS, rm.CHG_STATUS_BASE,
                                     rm.CHG_STATUS_COUNT)
                    control = [1, 1500, 4200, 600, 900, beat]  # enable, 150 A, 420 V, 60 kW, 90 %, heartbeat
                    writes = bus.write(unit, mb.FC_WRITE_MULTIPLE_REGISTERS, rm.CHG_CONTROL_BASE, control)
                    for tx in (reads, writes):
                        while not tx.done:
                            now = ticks_ms()
                            bus.poll(now)
                            if not tx.done:
                                port.wait_input(min(bus.next_poll_ms(now), 5))
                    if reads.ok:
                        latest[unit] = (list(reads.values), reads.time_ms)
                    reads.release()
                    writes.release()
        finally:
            port.close()
        elapsed = time.perf_counter() - t_start
        now = ticks_ms()
        rows = [_fmt_row(u, vals, ticks_diff(now, t)) for u, (vals, t) in sorted(latest.items())]
        served_writes = sum(len(s.writes) for s in server.sims.values() if isinstance(s, ChargerSim))
    out(f"Firmware Modbus master (CPython) -> paced line {baudrate} baud -> pymodbus chargers {units}"
        + (f", units {absent} polled but absent" if absent else ""))
    out(f"{cycles} poll cycles in {elapsed:.2f} s: status block FC04 x{rm.CHG_STATUS_COUNT} and control "
        f"block FC16 x{rm.CHG_CONTROL_COUNT} per unit; chargers took {served_writes} control writes\n")
    out(_table(["unit", "status", "pack", "type", "SoC", "SoH", "voltage", "current", "power", "Tmax/Tmin",
                "energy", "faults", "age"], rows))
    out("")
    hrows = []
    for u in units + absent:
        h = bus.health(u)
        hrows.append([str(u), "online" if h.online else "OFFLINE", str(h.good), str(h.timeouts),
                      str(h.crc_errors), str(h.frame_errors), str(h.exceptions), str(h.consecutive_failures)])
    out(_table(["unit", "state", "good", "timeouts", "crc", "frame", "exceptions", "failing"], hrows))
    if logs:
        out("\nbus log:")
        for m in logs:
            out("  " + m)
    missing = [u for u in units if u not in latest]
    if missing:
        out(f"\nno data from served units {missing}")
        return EXIT_FAILURE
    return EXIT_OK


def _units(text: str) -> list[int]:
    try:
        units = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"units must be comma-separated integers, not {text!r}") from None
    bad = [u for u in units if not 1 <= u <= 247]
    if bad:
        raise argparse.ArgumentTypeError(f"unit IDs must be 1..247, not {bad}")
    return units


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="poll emulated chargers with the firmware's Modbus master over a paced pty line",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--units", type=_units, default=[1, 2, 3, 4],
                   help="charger unit IDs served (default 1,2,3,4)")
    p.add_argument("--absent", type=_units, default=[5],
                   help="unit IDs polled but not on the line (default 5)")
    p.add_argument("--cycles", type=int, default=5, help="poll cycles (default 5)")
    p.add_argument("--baud", type=int, default=115200, choices=[9600, 19200, 38400, 57600, 115200])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.cycles < 1:
        print("demo: --cycles must be at least 1")
        return 2
    if not args.units:
        print("demo: --units needs at least one unit")
        return 2
    overlap = set(args.units) & set(args.absent)
    if overlap:
        print(f"demo: units {sorted(overlap)} cannot be both served and absent")
        return 2
    return run_demo(args.units, args.absent, args.cycles, args.baud)
