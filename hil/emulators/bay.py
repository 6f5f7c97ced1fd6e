"""The bay remote-I/O module: ``host.plant.bay.BayModel`` (coils start travels, limit
inputs change when they end, nutrunners, reader, carrier handing packs to the rack) as a
Modbus device, on the model's clock = seconds since the device was made.

HIL runs in real time, so the mechanics are scaled down: :func:`scaled_timing` turns the
144 s PSS 4.0 swap into a few seconds. The environment inputs (e-stop chain, door, light
curtain, smoke, manual key) are set with :meth:`BayIODevice.set_input`; their change
times are recorded so a test can measure how fast the firmware reacts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from firmware.proto import regmap as rm
from host import buses
from host.buses import (
    FC_READ_COILS,
    FC_READ_DISCRETE,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_WRITE_COIL,
    FC_WRITE_COILS,
    FC_WRITE_REGISTER,
    FC_WRITE_REGISTERS,
)
from host.plant.bay import BayModel, BayTiming, BayVehicle, RackWithIsolation
from host.plant.rack import PackRecord, Plant

from .modbus import EX_DEVICE_FAILURE

# Durations of BayTiming that scale (the jitter and the tool timeout factor do not).
_SCALED = tuple(f.name for f in dataclasses.fields(BayTiming) if f.name.endswith("_s"))

# Inputs the environment drives, by name.
ENV_INPUTS = {
    "estop_ok": rm.BAY_DI_ESTOP_OK,
    "door_closed": rm.BAY_DI_DOOR_CLOSED,
    "curtain_clear": rm.BAY_DI_CURTAIN_CLEAR,
    "smoke_clear": rm.BAY_DI_SMOKE_CLEAR,
    "manual_mode": rm.BAY_DI_MANUAL_MODE,
}

# Coils that run a drive while set: a stop must drop them. (Positioner, platform, grip and
# doors command positions, where 0 is itself a motion; the bay's safety relay cuts those.)
MOTION_COILS = (rm.BAY_CO_LIFT_UP, rm.BAY_CO_LIFT_DOWN, rm.BAY_CO_TOOL_UNBOLT, rm.BAY_CO_TOOL_BOLT,
                rm.BAY_CO_CARRIER_TO_RACK, rm.BAY_CO_CARRIER_TO_BAY, rm.BAY_CO_CARRIER_HOME)


def scaled_timing(scale: float, base: BayTiming | None = None, jitter: float | None = None) -> BayTiming:
    """``base`` (default: the PSS 4.0 calibration) with every duration times ``scale``."""
    if scale <= 0:
        raise ValueError("scale must be > 0")
    b = base or BayTiming()
    changes: dict[str, float] = {name: getattr(b, name) * scale for name in _SCALED}
    if jitter is not None:
        changes["jitter"] = jitter
    return dataclasses.replace(b, **changes)


class BayIODevice:
    """Bay I/O module of one bay over a :class:`BayModel` whose rack is the plant (and the
    isolation bay behind its last slot)."""

    def __init__(self, plant: Plant, *, isolation_capacity: int = 1, timing: BayTiming | None = None,
                 bolt_count: int = rm.BOLT_COUNT,
                 torque_window_nm: tuple[float, float] = (110.0, 130.0),
                 angle_window_deg: tuple[float, float] = (30.0, 720.0), seed: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._t0 = clock()
        self.rack = RackWithIsolation(plant, isolation_capacity)
        self.model = BayModel(self.rack, seed=seed, timing=timing or BayTiming(), bolt_count=bolt_count,
                              torque_window_nm=torque_window_nm, angle_window_deg=angle_window_deg)
        self.errors: list[str] = []  # plant refusals (a pack into a full slot ...): firmware or rig bugs
        self.input_changes: list[tuple[float, int, int]] = []  # (monotonic time, DI address, value)
        self.coil_writes: list[tuple[float, list[int]]] = []  # (monotonic time, whole coil image after)

    def now(self) -> float:
        return self._clock() - self._t0

    def advance(self, dt: float = 0.0) -> None:
        """Bring the mechanics to now (the field loop calls this every step)."""
        try:
            self.model.advance(self.now())
        except (ValueError, IndexError) as e:
            self.errors.append(f"{type(e).__name__}: {e}")

    # ---- Modbus --------------------------------------------------------------------------
    def read(self, fc: int, address: int, count: int) -> list[int]:
        m = self.model
        now = self.now()
        try:
            if fc == FC_READ_COILS:
                out = m.read_coils(address, count, now)
            elif fc == FC_READ_DISCRETE:
                out = m.read_discrete_inputs(address, count, now)
            elif fc == FC_READ_INPUT:
                out = m.read_input_registers(address, count, now)
            elif fc == FC_READ_HOLDING:
                out = m.read_holding(address, count, now)
            else:
                raise buses.SlaveError(buses.EX_ILLEGAL_FUNCTION)
        except (ValueError, IndexError) as e:
            self.errors.append(f"{type(e).__name__}: {e}")
            raise buses.SlaveError(EX_DEVICE_FAILURE, str(e)) from None
        if len(out) != count:
            raise buses.SlaveError(buses.EX_ILLEGAL_ADDRESS)
        return out

    def write(self, fc: int, address: int, values: list[int]) -> None:
        m = self.model
        now = self.now()
        try:
            if fc in (FC_WRITE_COIL, FC_WRITE_COILS):
                if address < 0 or address + len(values) > rm.BAY_COIL_COUNT:
                    raise buses.SlaveError(buses.EX_ILLEGAL_ADDRESS)
                m.write_coils(address, values, now)
                self.coil_writes.append((self._clock(), list(m.coils)))
            elif fc in (FC_WRITE_REGISTER, FC_WRITE_REGISTERS):
                if address < 0 or address + len(values) > rm.BAY_HOLDING_COUNT:
                    raise buses.SlaveError(buses.EX_ILLEGAL_ADDRESS)
                m.write_holding(address, values, now)
            else:
                raise buses.SlaveError(buses.EX_ILLEGAL_FUNCTION)
        except (ValueError, IndexError) as e:
            self.errors.append(f"{type(e).__name__}: {e}")
            raise buses.SlaveError(EX_DEVICE_FAILURE, str(e)) from None

    # ---- environment -----------------------------------------------------------------------
    def set_input(self, name: str, value: bool) -> None:
        """Set an environment input by name (``estop_ok``, ``door_closed``, ``curtain_clear``,
        ``smoke_clear``, ``manual_mode``)."""
        address = ENV_INPUTS[name]
        self.model.set_input(address, 1 if value else 0, self.now())
        self.input_changes.append((self._clock(), address, 1 if value else 0))

    def vehicle_arrives(self, vehicle_id: int, model_code: int, pack: PackRecord | None,
                        known: bool = True) -> None:
        self.model.vehicle_arrives(BayVehicle(vehicle_id, model_code, pack, known), self.now())

    def inject(self, failure: str, bolt: int | None = None) -> None:
        self.model.inject(failure, bolt)

    def motion_coils_on(self) -> list[int]:
        c = self.model.coils
        return [k for k in MOTION_COILS if c[k]]

    def snapshot(self) -> dict[str, object]:
        m = self.model
        v = m.vehicle
        return {
            "coils": list(m.coils), "inputs": list(m.inputs), "holding": list(m.holding),
            "vehicle": None if v is None else {"id": v.vehicle_id, "model": v.model_code,
                                               "pack": None if v.pack is None else v.pack.pack_id},
            "queue": len(m.queue),
            "departed": [(t, dv.vehicle_id, None if dv.pack is None else dv.pack.pack_id)
                         for t, dv in m.departed],
            "carrier_at": m.carrier_at,
            "carrier_pack": None if m.carrier_pack is None else m.carrier_pack.pack_id,
            "errors": list(self.errors),
            "isolated": [p.pack_id for p in self.rack.isolated],
        }


def coil_names(coils: Sequence[int]) -> list[str]:
    names = ("lift_up", "lift_down", "positioner", "rgv_raise", "tool_unbolt", "tool_bolt", "tool_lock_speed",
             "pack_grip", "carrier_to_rack", "carrier_to_bay", "door_open", "exit_open", "beacon_green",
             "beacon_amber", "beacon_red", "ventilation")
    return [names[k] for k, v in enumerate(coils) if v]
