"""The station's field side for the HIL rig: packs and chargers (the plant), the bay
mechanics behind the bay remote-I/O module, served by pymodbus on the serial lines.

One asyncio event loop, in a thread of its own, runs both line servers and the plant
clock: every ``step_s`` the plant and the bay mechanics are advanced by the real time
that passed, so SoC, current and temperature evolve physically while the firmware
charges. Everything that touches the plant runs in that loop; other threads go through
:meth:`Field.call`, which runs a function there and returns its result.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import numpy as np

from firmware.proto import regmap as rm
from host.devices.bay import BayIODevice
from host.devices.charger import ChargerDevice
from host.plant.bay import bay_for_station, scaled_timing
from host.plant.charging import PackRecord, Plant
from host.plant.params import RackParams

from .modbus import Device, LineServer, Tables, unit_tables_for_bay, unit_tables_for_charger

T = TypeVar("T")
_Units = dict[int, tuple[Device, Tables]]

DEFAULT_FIRST_PACK_ID = 500_001


def default_packs(cfg: Mapping[str, Any], *, free_slots: int = 1, soc: float = 0.95,
                  pack_type: str = "NIO-100", first_id: int = DEFAULT_FIRST_PACK_ID) -> dict[int, PackRecord]:
    """A rack with every slot holding a charged pack but the last ``free_slots``."""
    n = len(cfg["slots"])
    return {k: PackRecord(first_id + k, pack_type, soc) for k in range(max(0, n - free_slots))}


class Field:
    """Plant, chargers and bay I/O of one station, on their serial lines.

    ``charger_port`` / ``bay_port``: where the line servers listen (pty paths from the
    line emulator, or USB-RS485 adapters on a bench). The same path for both puts every
    device on one line; no ``bay_port`` means no bay module. ``bay_scale`` scales every
    bay motion (0.03: a 144 s swap in about 4 s); ``seed`` draws the motion jitter.
    """

    def __init__(self, cfg: Mapping[str, Any], *, charger_port: str, bay_port: str | None = None,
                 packs: Mapping[int, PackRecord] | None = None, bay_scale: float = 0.03,
                 bay_jitter: float | None = None, seed: int | np.random.SeedSequence = 0,
                 parity: str = "N", stopbits: int = 1,
                 step_s: float = 0.02, plant_backend: str = "cython", grid_limit_kw: float | None = None,
                 ambient_c: float | None = None) -> None:
        self.cfg = cfg
        slots = cfg["slots"]
        kw: dict[str, Any] = {}
        if grid_limit_kw is not None:  # the connection's physical limit (default: the config's)
            kw["grid_limit_kw"] = grid_limit_kw
        if ambient_c is not None:
            kw["rack"] = RackParams(t_amb_c=ambient_c)
        self.plant = Plant.for_station(cfg, backend=plant_backend, **kw)  # its chargers rated as configured
        for slot, pack in (default_packs(cfg) if packs is None else packs).items():
            self.plant.put_pack(slot, pack)
        self.chargers: dict[int, ChargerDevice] = {}
        for k, s in enumerate(slots):
            self.chargers[int(s["charger_unit"])] = ChargerDevice(self.plant, k)
        self.bay: BayIODevice | None = None
        self._t0 = time.monotonic()  # the bay mechanics' time 0
        if bay_port is not None:
            if not bay_scale > 0:
                raise ValueError(f"bay_scale must be > 0, not {bay_scale}")
            model = bay_for_station(cfg, self.plant, scaled_timing(bay_scale, jitter=bay_jitter), seed)
            self.bay = BayIODevice(model, now=self.bay_time, stamp=self.clock)
        self.bay_unit = int(cfg["buses"]["bay_io"]["unit"])
        self.step_s = step_s
        self.parity = parity
        self.stopbits = stopbits
        self.charger_port = charger_port
        self.bay_port = bay_port
        self.lines: dict[str, LineServer] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stepper: asyncio.Task[None] | None = None
        self._last_step = 0.0
        self.steps = 0
        self.hooks: list[Callable[[float], None]] = []  # called in the loop after every step

    # ---- life cycle ---------------------------------------------------------------------
    def _line_devices(self) -> dict[str, tuple[str, _Units]]:
        chg: _Units = {u: (d, unit_tables_for_charger()) for u, d in self.chargers.items()}
        lines: dict[str, tuple[str, _Units]] = {"chargers": (self.charger_port, chg)}
        if self.bay is not None:
            assert self.bay_port is not None
            entry: tuple[Device, Tables] = (self.bay, unit_tables_for_bay())
            if self.bay_port == self.charger_port:
                if self.bay_unit in chg:
                    raise ValueError(f"bay I/O unit {self.bay_unit} clashes with a charger on a shared line")
                chg[self.bay_unit] = entry
            else:
                lines["bay_io"] = (self.bay_port, {self.bay_unit: entry})
        return lines

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("field already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="hil-field", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), loop).result(10)
        except BaseException:
            self.stop()
            raise

    async def _start(self) -> None:
        for name, (port, devices) in self._line_devices().items():
            baud = int(self.cfg["buses"][name]["baudrate"])
            line = LineServer(name, port, devices, baudrate=baud, parity=self.parity, stopbits=self.stopbits)
            await line.start()
            self.lines[name] = line
        self._last_step = self.clock()
        self._stepper = asyncio.get_running_loop().create_task(self._run_plant())

    async def _run_plant(self) -> None:
        while True:
            await asyncio.sleep(self.step_s)
            self.advance()

    def clock(self) -> float:
        """The field's time, s: what the bay's ``coil_writes`` and ``input_changes`` are
        stamped with (wall time here; emulated time on the emulated Pico)."""
        return time.monotonic()

    def bay_time(self) -> float:
        """The bay mechanics' time, s: the field's time since the field was made."""
        return self.clock() - self._t0

    def advance(self) -> None:
        """Advance the plant and the bay mechanics to now (runs in the loop)."""
        now = self.clock()
        dt = now - self._last_step
        self._last_step = now
        if dt <= 0:
            return
        self.plant.step(dt)
        if self.bay is not None:
            self.bay.advance(dt)
        self.steps += 1
        for fn in self.hooks:
            fn(now)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def _stop() -> None:
            if self._stepper is not None:
                self._stepper.cancel()
            for line in self.lines.values():
                await line.stop()

        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(_stop(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> Field:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- access from other threads ------------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """Run ``fn(*args)`` in the field's loop (between requests) and return its result."""
        loop = self._loop
        if loop is None:
            return fn(*args)  # not running: nothing else touches the plant
        fut: Future[T] = Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # handed to the caller
                fut.set_exception(e)

        loop.call_soon_threadsafe(run)
        return fut.result(timeout)

    def inject(self, slot: int, fault: str) -> None:
        """Plant fault injection (``dropout``, ``stuck``, ``pump``, ``bms_comm``, ``runaway``)."""
        self.call(self.plant.inject, slot, fault)

    def clear(self, slot: int, fault: str) -> None:
        self.call(self.plant.clear, slot, fault)

    def set_grid(self, up: bool) -> None:
        """AC power to the chargers lost (``up=False``) or back; the controller stays on its UPS."""
        self.call(lambda: self.plant.set_grid(0, up=up))

    def slot_of_unit(self, unit: int) -> int:
        return self.chargers[unit].slot

    def rack(self) -> list[dict[str, Any]]:
        """What each charger would report now: slot, unit, pack, SoC %, status, temps, faults."""

        def snap() -> list[dict[str, Any]]:
            p = self.plant
            a = p.arrays
            out = []
            for unit, dev in self.chargers.items():
                k = dev.slot
                present = bool(a["present"][k])
                out.append({
                    "slot": k, "unit": unit, "pack": int(p.pack_id[k]) if present else None,
                    "type": p.pack_type_name[k], "soc": float(a["soc"][k]) * 100.0,
                    "status": rm.CHG_ST_NAMES[int(a["status"][k])], "i": float(a["i_out"][k]),
                    "p_kw": float(a["p_out"][k]) / 1000.0, "temp": p.cell_temp_max(k) if present else None,
                    "faults": int(a["faults"][k]), "enable": int(a["enable"][k]),
                    "reads": dev.reads, "writes": dev.writes,
                })
            return out

        return self.call(snap)

    def pack_ids(self) -> dict[int, int]:
        """Slot -> pack serial of every occupied slot."""
        return {r["slot"]: r["pack"] for r in self.rack() if r["pack"] is not None}


def pack_records(specs: Sequence[tuple[int, int, str, float]]) -> dict[int, PackRecord]:
    """{slot: PackRecord} from (slot, pack id, type, SoC 0..1) tuples."""
    return {slot: PackRecord(pid, ptype, soc) for slot, pid, ptype, soc in specs}
