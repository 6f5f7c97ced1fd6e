"""The bay remote-I/O module on the bus: a :class:`~host.plant.bay.BayModel` (coils start
travels, limit inputs change when they end, nutrunners, reader, carrier handing packs to
the rack) as a Modbus device, on a clock it is handed: virtual time in the simulator,
wall or emulated time on the HIL rig.

The environment inputs (e-stop chain, door, light curtain, smoke, manual key) are set by
name with :meth:`BayIODevice.set_input`. Given a ``stamp`` clock, the device records
when each input changed and each coil write landed, so a test can measure how fast the
firmware reacts.
"""

from __future__ import annotations

from collections.abc import Callable

from firmware.proto import regmap as rm
from host.devices.codes import (
    EX_DEVICE_FAILURE,
    EX_ILLEGAL_ADDRESS,
    EX_ILLEGAL_FUNCTION,
    FC_READ_COILS,
    FC_READ_DISCRETE,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_WRITE_COIL,
    FC_WRITE_COILS,
    FC_WRITE_REGISTER,
    FC_WRITE_REGISTERS,
    ModbusError,
)
from host.plant.bay import BayModel, BayVehicle
from host.plant.charging import PackRecord

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
# The firmware keeps its own list (firmware.core.bay_steps.RUN); a test holds the two equal.
MOTION_COILS = (rm.BAY_CO_LIFT_UP, rm.BAY_CO_LIFT_DOWN, rm.BAY_CO_TOOL_UNBOLT, rm.BAY_CO_TOOL_BOLT,
                rm.BAY_CO_CARRIER_TO_RACK, rm.BAY_CO_CARRIER_TO_BAY, rm.BAY_CO_CARRIER_HOME)

# Table sizes by function code: reads and writes past them are exception 02.
_SIZE = {FC_READ_COILS: rm.BAY_COIL_COUNT, FC_READ_DISCRETE: rm.BAY_DI_COUNT,
         FC_READ_HOLDING: rm.BAY_HOLDING_COUNT, FC_READ_INPUT: rm.BAY_IR_COUNT,
         FC_WRITE_COIL: rm.BAY_COIL_COUNT, FC_WRITE_COILS: rm.BAY_COIL_COUNT,
         FC_WRITE_REGISTER: rm.BAY_HOLDING_COUNT, FC_WRITE_REGISTERS: rm.BAY_HOLDING_COUNT}


class BayIODevice:
    """The bay I/O module over ``model``. ``now()``: the model's time, s. ``stamp``: the
    clock that times ``input_changes`` and ``coil_writes`` (None: they are not kept)."""

    def __init__(self, model: BayModel, now: Callable[[], float],
                 stamp: Callable[[], float] | None = None) -> None:
        self.model = model
        self.rack = model.rack
        self.now = now
        self._stamp = stamp
        self.errors: list[str] = []  # plant refusals (a pack into a full slot ...): firmware or rig bugs
        self.input_changes: list[tuple[float, int, int]] = []  # (stamp, DI address, value)
        self.coil_writes: list[tuple[float, list[int]]] = []  # (stamp, whole coil image after)

    def advance(self, dt: float = 0.0) -> None:
        """Bring the mechanics to now (the field loop calls this every step)."""
        try:
            self.model.advance(self.now())
        except (ValueError, IndexError) as e:
            self.errors.append(f"{type(e).__name__}: {e}")

    def _check(self, fc: int, address: int, count: int) -> None:
        size = _SIZE.get(fc)
        if size is None:
            raise ModbusError(EX_ILLEGAL_FUNCTION)
        if address < 0 or count < 1 or address + count > size:
            raise ModbusError(EX_ILLEGAL_ADDRESS, f"{address}..{address + count - 1} outside 0..{size - 1}")

    def _refused(self, e: Exception) -> ModbusError:
        self.errors.append(f"{type(e).__name__}: {e}")
        return ModbusError(EX_DEVICE_FAILURE, str(e))

    # ---- Modbus --------------------------------------------------------------------------
    def read(self, fc: int, address: int, count: int) -> list[int]:
        self._check(fc, address, count)
        m, now = self.model, self.now()
        try:
            if fc == FC_READ_COILS:
                return m.read_coils(address, count, now)
            if fc == FC_READ_DISCRETE:
                return m.read_discrete_inputs(address, count, now)
            if fc == FC_READ_INPUT:
                return m.read_input_registers(address, count, now)
            if fc == FC_READ_HOLDING:
                return m.read_holding(address, count, now)
        except (ValueError, IndexError) as e:
            raise self._refused(e) from None
        raise ModbusError(EX_ILLEGAL_FUNCTION)

    def write(self, fc: int, address: int, values: list[int]) -> None:
        self._check(fc, address, len(values))
        m, now = self.model, self.now()
        try:
            if fc in (FC_WRITE_COIL, FC_WRITE_COILS):
                m.write_coils(address, values, now)
                if self._stamp is not None:
                    self.coil_writes.append((self._stamp(), list(m.coils)))
            elif fc in (FC_WRITE_REGISTER, FC_WRITE_REGISTERS):
                m.write_holding(address, values, now)
            else:
                raise ModbusError(EX_ILLEGAL_FUNCTION)
        except (ValueError, IndexError) as e:
            raise self._refused(e) from None

    # ---- environment -----------------------------------------------------------------------
    def set_input(self, name: str, value: bool) -> None:
        """Set an environment input by name (:data:`ENV_INPUTS`)."""
        address = ENV_INPUTS[name]
        self.model.set_input(address, 1 if value else 0, self.now())
        if self._stamp is not None:
            self.input_changes.append((self._stamp(), address, 1 if value else 0))

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
            "isolated": [p.pack_id for p in getattr(self.rack, "isolated", ())],
        }
