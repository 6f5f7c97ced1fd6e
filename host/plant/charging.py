"""The plant of one or many stations: battery packs in rack slots and their chargers.

State is struct-of-arrays: one numpy array per field with one element per slot
(slots of station ``s`` are ``slot_range(s)``, contiguous), one per field per station.
The fields the kernel writes are rows of two 2-D blocks (float and int), so a snapshot
for the event-time queries is two copies. ``step(dt)`` advances every slot in one
compiled call (``backend="cython"``, the default) or in the pure-Python reference
(``backend="python"``). There is no silent fallback: a missing extension raises.

Setters take SI units (A, V, W, s); :mod:`host.plant.charger_regs` maps them to the
Modbus register map. Time is per station (``time_s(station)``), so an engine may
advance stations separately.

Each charger has its own rated power (``charger_kw``; ``Plant.for_station`` takes it from
the station config): its info block reports it, its output stays within it and it refuses
a power setpoint above it, as the register map says.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from firmware.proto import regmap
from host.plant import charger_regs
from host.plant import params as P
from host.plant.params import ChargerParams, PackType, RackParams
from host.plant.refkernel import F_BMS_COMM, F_COOLANT, F_GRID, F_HEARTBEAT, F_OVER_TEMP, F_RUNAWAY, RefKernel

# Fields the kernel writes, per slot (rows of the float / int state blocks).
SLOT_FLOAT_STATE = (
    "soc", "v_rc", "temp", "soh", "efc", "i_out", "v_term", "p_out", "p_in", "ch_temp", "hb_age",
    "e_in", "e_out", "e_ch_loss", "e_pack_heat",
)
SLOT_INT_STATE = ("bms_open", "enable", "faults", "status", "phase")
STATION_FLOAT_STATE = ("p_sta", "e_sta")
# Fields set from outside the kernel (pack parameters, charger settings, injected faults).
SLOT_FLOAT_SETTINGS = (
    "q_fault", "n_s", "cap_ah", "r0", "r1", "tau", "c_th", "h_amb", "i_bms", "p_bms", "v_max", "t_min",
    "t_max", "fade", "r_growth", "t_amb", "cool_g", "cool_set", "i_stuck", "p_rated", "i_rated", "v_rated",
    "ramp", "loss0", "loss1", "loss2", "standby", "ch_c", "ch_h", "wd_timeout", "set_i", "set_v", "set_p",
    "target_soc",
)
SLOT_INT_SETTINGS = ("present", "fault_inj")
SCRATCH_FLOAT = ("s_decay", "s_i", "s_pw", "s_ocv", "s_vrc0", "s_r0e", "s_b", "s_prev")
SCRATCH_INT = ("s_der", "s_pprev")

SOC_EVENT = 0
CC_END_EVENT = 1

INJECTABLE = {"stuck": P.INJ_STUCK, "dropout": P.INJ_DROPOUT, "pump": P.INJ_PUMP, "bms_comm": P.INJ_BMS_COMM}
RUNAWAY_HEAT_W = 60e3  # internal heat of a pack in thermal runaway (about 8 K/min for 0.45 MJ/K)


class Kernel(Protocol):
    def step(self, dt: float, nsub: int, s_lo: int, s_hi: int) -> None: ...

    def first_crossing(
        self, kind: int, target: float, h: float, max_steps: int, watch: Any, s_lo: int, s_hi: int
    ) -> tuple[float, int]: ...


def kernel_class(backend: str) -> type:
    """The kernel class for ``backend`` ("cython" or "python"); importing the extension may raise."""
    if backend == "cython":
        from host.plant._fastplant import RackKernel

        return RackKernel
    if backend == "python":
        return RefKernel
    raise ValueError(f"unknown plant backend {backend!r} (use 'cython' or 'python')")


def kernel_scalars(charger: ChargerParams) -> dict[str, float]:
    return {
        "knee": P.CC_KNEE_SOC, "floor": P.TAPER_FLOOR, "term_c": P.TERM_C_RATE, "t_cold": P.COLD_FULL_C,
        "f_cold": P.COLD_FACTOR, "t_derate": P.DERATE_FROM_C, "f_hot": P.HOT_FACTOR,
        "bms_cut": P.BMS_CUTOFF_C, "bms_ov": P.BMS_OVERVOLT,
        "stress_ref": P.STRESS_REF_C, "stress_k": P.STRESS_DOUBLING_K, "spread_a": P.CELL_SPREAD_K,
        "spread_b": P.CELL_SPREAD_K_PER_A, "pump_factor": charger.pump_failed_factor,
        "coolant_trip": charger.coolant_trip_c, "derate_k": charger.coolant_derate_k,
        "derate_floor": charger.coolant_derate_floor,
        "cell_trip": charger.cell_trip_c, "runaway_c": charger.runaway_c,
    }


@dataclass
class PackRecord:
    """A pack outside the rack (in a vehicle, on the carrier): its identity and state."""

    pack_id: int
    type_name: str
    soc: float
    temp_c: float = 25.0
    soh: float = 1.0
    efc: float = 0.0
    v_rc: float = 0.0
    fault_heat_w: float = 0.0

    @property
    def pack_type(self) -> PackType:
        return P.PACK_TYPES[self.type_name]


class Plant:
    """Packs and chargers of ``n_stations`` stations with ``slots_per_station`` slots each."""

    def __init__(
        self,
        n_stations: int = 1,
        slots_per_station: int = 23,
        *,
        grid_limit_kw: float = 1000.0,
        charger: ChargerParams | None = None,
        rack: RackParams | None = None,
        backend: str = "cython",
        max_substep_s: float = 5.0,
        watchdog: bool = True,
        charger_kw: float | Sequence[float] | None = None,
    ) -> None:
        """``charger_kw``: each charger's rated power, one value for all, one per slot of a
        station (every station alike) or one per slot; None: ``charger.p_rated_w``."""
        if n_stations < 1 or slots_per_station < 1:
            raise ValueError("need at least one station and one slot")
        self.charger = charger or ChargerParams()
        self.rack = rack or RackParams()
        self.backend = backend
        self.max_substep_s = float(max_substep_s)
        self.n_stations = n_stations
        self.slots_per_station = slots_per_station
        n = self.n_slots = n_stations * slots_per_station
        self._fblock = np.zeros((len(SLOT_FLOAT_STATE), n))
        self._iblock = np.zeros((len(SLOT_INT_STATE), n), dtype=np.int32)
        self._sblock = np.zeros((len(STATION_FLOAT_STATE), n_stations))
        a: dict[str, np.ndarray] = {}
        for k, name in enumerate(SLOT_FLOAT_STATE):
            a[name] = self._fblock[k]
        for k, name in enumerate(SLOT_INT_STATE):
            a[name] = self._iblock[k]
        for k, name in enumerate(STATION_FLOAT_STATE):
            a[name] = self._sblock[k]
        for name in SLOT_FLOAT_SETTINGS + SCRATCH_FLOAT:
            a[name] = np.zeros(n)
        for name in SLOT_INT_SETTINGS + SCRATCH_INT:
            a[name] = np.zeros(n, dtype=np.int32)
        a["sta_lo"] = np.arange(n_stations, dtype=np.int32) * slots_per_station
        a["sta_hi"] = a["sta_lo"] + slots_per_station
        a["grid_up"] = np.ones(n_stations, dtype=np.int32)
        a["grid_limit"] = np.full(n_stations, grid_limit_kw * 1000.0)
        a["ocv"] = np.array(P.CELL_OCV_V)
        self.arrays = a
        self.pack_id = np.zeros(n, dtype=np.int64)
        self.pack_type_name: list[str | None] = [None] * n
        self.type_code = np.zeros(n, dtype=np.int32)  # CHG_IR_PACK_TYPE of the pack present
        self.heartbeat_value = np.zeros(n, dtype=np.int64)
        self.frozen_inputs: dict[int, dict[int, int]] = {}  # input registers of stuck chargers
        self.t = np.zeros(n_stations)
        c = self.charger
        rated_w = self._ratings_w(charger_kw)
        for name, value in (
            ("p_rated", rated_w), ("i_rated", c.i_rated_a), ("v_rated", c.v_rated_max),
            ("ramp", c.ramp_a_per_s), ("loss0", c.loss0_w), ("loss1", c.loss1), ("loss2", c.loss2_per_w),
            ("standby", c.standby_w), ("ch_c", c.coolant_c_j_per_k), ("ch_h", c.coolant_h_w_per_k),
            ("wd_timeout", c.watchdog_s if watchdog else 0.0), ("set_i", c.i_rated_a),
            ("set_v", c.v_rated_max), ("set_p", rated_w), ("target_soc", 1.0),
            ("t_amb", self.rack.t_amb_c), ("cool_g", self.rack.cool_g_w_per_k),
            ("cool_set", self.rack.cool_set_c),
        ):
            a[name][:] = value
        a["ch_temp"][:] = self.rack.t_amb_c
        a["status"][:] = regmap.CHG_ST_STANDBY
        for slot in range(n):  # empty slots still need finite pack parameters
            self._set_pack_params(slot, P.PACK_TYPES["NIO-100"])
        self._scalars = kernel_scalars(self.charger)
        cls = kernel_class(backend)
        self.kernel: Kernel = cls(a, self._scalars)
        # The event-time queries run a second kernel on copies of the written state.
        self._probe_blocks = (self._fblock.copy(), self._iblock.copy(), self._sblock.copy())
        pa = dict(a)
        for k, name in enumerate(SLOT_FLOAT_STATE):
            pa[name] = self._probe_blocks[0][k]
        for k, name in enumerate(SLOT_INT_STATE):
            pa[name] = self._probe_blocks[1][k]
        for k, name in enumerate(STATION_FLOAT_STATE):
            pa[name] = self._probe_blocks[2][k]
        self._probe: Kernel = cls(pa, self._scalars)
        self._probe_arrays = pa
        # The status block read register by register in compiled code (None: charger_regs computes it).
        self.status_regs: Any = None
        if backend == "cython":
            from host.plant._fastplant import StatusRegs

            self.status_regs = StatusRegs(a, self.t, self.pack_id, self.type_code, slots_per_station,
                                          P.CELL_SPREAD_K, P.CELL_SPREAD_K_PER_A)
        # The control block written from a request frame in compiled code (None: charger_regs).
        self.control_write: Any = None
        if backend == "cython":
            from host.plant._fastplant import ControlWrite

            self.control_write = ControlWrite(a, self.heartbeat_value)

    @classmethod
    def for_station(cls, station: Mapping[str, Any], n_stations: int = 1, **kw: Any) -> Plant:
        """The plant of ``n_stations`` stations as a station config describes them: one slot per
        configured slot, each charger rated at its slot's ``charger_kw``, the grid connection at
        ``limits.grid_kw``. Keywords are the constructor's and take precedence."""
        kw.setdefault("grid_limit_kw", float(station["limits"]["grid_kw"]))
        kw.setdefault("charger_kw", P.charger_kw_of(station))
        return cls(n_stations, len(station["slots"]), **kw)

    def _ratings_w(self, charger_kw: float | Sequence[float] | None) -> np.ndarray:
        n, per = self.n_slots, self.slots_per_station
        if charger_kw is None:
            return np.full(n, self.charger.p_rated_w)
        if isinstance(charger_kw, (int, float)):
            kw = np.full(n, float(charger_kw))
        else:
            kw = np.asarray(charger_kw, dtype=float)
            if kw.shape == (per,):
                kw = np.tile(kw, self.n_stations)
        if kw.shape != (n,):
            raise ValueError(f"charger_kw: one value, {per} (a station's slots) or {n}, not {kw.size}")
        if not (np.isfinite(kw) & (kw > 0.0)).all():
            raise ValueError(f"charger_kw: every rating must be > 0 (got {kw.tolist()})")
        return kw * 1000.0

    # ---- layout and time ---------------------------------------------------------------
    def slot_range(self, station: int) -> range:
        lo = station * self.slots_per_station
        return range(lo, lo + self.slots_per_station)

    def station_of(self, slot: int) -> int:
        return slot // self.slots_per_station

    def time_s(self, station: int = 0) -> float:
        return float(self.t[station])

    def __getattr__(self, name: str) -> np.ndarray:
        """Read access to the state arrays: ``plant.soc``, ``plant.i_out``, ``plant.status`` ..."""
        arrays = self.__dict__.get("arrays")
        if arrays is not None and name in arrays:
            return arrays[name]
        raise AttributeError(name)

    def step(self, dt_s: float, station: int | None = None) -> None:
        """Advance every station (or one) by ``dt_s`` in sub-steps of at most ``max_substep_s``."""
        if dt_s <= 0.0:
            return
        nsub = max(1, math.ceil(dt_s / self.max_substep_s - 1e-9))
        if station is None:
            self.kernel.step(dt_s, nsub, 0, self.n_stations)
            self.t += dt_s
        else:
            self.kernel.step(dt_s, nsub, station, station + 1)
            self.t[station] += dt_s

    def step_to(self, t_s: float, station: int | None = None) -> None:
        """Advance to absolute time ``t_s`` (all stations must then share one clock)."""
        now = self.time_s(station or 0)
        if station is None and self.n_stations > 1 and not np.all(self.t == now):
            raise ValueError("stations have different clocks: step_to one station at a time")
        self.step(t_s - now, station)

    # ---- packs ---------------------------------------------------------------------------
    def _set_pack_params(self, slot: int, pt: PackType) -> None:
        a = self.arrays
        for name, value in (
            ("n_s", pt.n_series), ("cap_ah", pt.cap_ah), ("r0", pt.r0_ohm), ("r1", pt.r1_ohm),
            ("tau", pt.tau_s), ("c_th", pt.c_th_j_per_k), ("h_amb", pt.h_amb_w_per_k),
            ("i_bms", pt.max_charge_a),
            ("p_bms", pt.max_charge_kw * 1000.0), ("v_max", pt.v_max), ("t_min", pt.t_min_c),
            ("t_max", pt.t_max_c), ("fade", pt.fade_per_efc), ("r_growth", pt.r_growth),
        ):
            a[name][slot] = value

    def put_pack(self, slot: int, pack: PackRecord) -> None:
        """Seat ``pack`` in ``slot`` (which must be empty)."""
        a = self.arrays
        if a["present"][slot]:
            raise ValueError(f"slot {slot} already holds pack {self.pack_id[slot]}")
        pt = pack.pack_type
        self._set_pack_params(slot, pt)
        a["soc"][slot] = pack.soc
        a["temp"][slot] = pack.temp_c
        a["soh"][slot] = pack.soh
        a["efc"][slot] = pack.efc
        a["v_rc"][slot] = pack.v_rc
        a["q_fault"][slot] = pack.fault_heat_w
        a["present"][slot] = 1
        a["bms_open"][slot] = 0
        a["i_out"][slot] = 0.0
        a["v_term"][slot] = pt.n_series * P.cell_ocv(pack.soc) + pack.v_rc
        self.pack_id[slot] = pack.pack_id
        self.pack_type_name[slot] = pack.type_name
        self.type_code[slot] = pt.code
        self._refresh_status(slot)

    def take_pack(self, slot: int) -> PackRecord:
        """Remove and return the pack in ``slot``."""
        a = self.arrays
        if not a["present"][slot]:
            raise ValueError(f"slot {slot} is empty")
        name = self.pack_type_name[slot]
        assert name is not None
        rec = PackRecord(
            int(self.pack_id[slot]), name, float(a["soc"][slot]), float(a["temp"][slot]),
            float(a["soh"][slot]), float(a["efc"][slot]), float(a["v_rc"][slot]), float(a["q_fault"][slot]),
        )
        a["present"][slot] = 0
        a["q_fault"][slot] = 0.0
        for name_ in ("i_out", "v_term", "p_out", "v_rc"):
            a[name_][slot] = 0.0
        a["phase"][slot] = P.PHASE_OFF
        self.pack_id[slot] = 0
        self.pack_type_name[slot] = None
        self.type_code[slot] = regmap.PACK_NONE
        self._refresh_status(slot)
        return rec

    def _refresh_status(self, slot: int) -> None:
        """Status right after a pack moves (before the next step recomputes it)."""
        a = self.arrays
        if a["fault_inj"][slot] & P.INJ_STUCK:
            return
        fl = int(a["faults"][slot])
        if fl & F_HEARTBEAT:
            st = regmap.CHG_ST_WATCHDOG
        elif fl:
            st = regmap.CHG_ST_FAULT
        elif not a["present"][slot]:
            st = regmap.CHG_ST_STANDBY
        else:
            st = regmap.CHG_ST_READY
        a["status"][slot] = st

    # ---- charger setpoints (SI units) -----------------------------------------------------
    def rate_charger(self, slot: int, power_w: float) -> None:
        """Another rated power for charger ``slot`` (its module swapped for another): its info
        block, its range checks and its output follow; its setpoints stay as written."""
        if not power_w > 0.0:
            raise ValueError(f"rated power must be > 0 (got {power_w})")
        self.arrays["p_rated"][slot] = power_w

    def set_enable(self, slot: int, on: bool) -> None:
        """Enable or stop a charger. Enabling is ignored while the heartbeat fault is latched."""
        a = self.arrays
        if on and a["faults"][slot] & F_HEARTBEAT:
            return
        a["enable"][slot] = 1 if on else 0

    def set_limits(
        self, slot: int, current_a: float | None = None, voltage_v: float | None = None,
        power_w: float | None = None,
    ) -> None:
        a = self.arrays
        if current_a is not None:
            a["set_i"][slot] = current_a
        if voltage_v is not None:
            a["set_v"][slot] = voltage_v
        if power_w is not None:
            a["set_p"][slot] = power_w

    def set_target_soc(self, slot: int, soc: float) -> None:
        self.arrays["target_soc"][slot] = soc

    def heartbeat(self, slot: int, value: int) -> None:
        """Controller heartbeat: a value different from the last one restarts the watchdog."""
        if value != self.heartbeat_value[slot]:
            self.heartbeat_value[slot] = value
            self.arrays["hb_age"][slot] = 0.0

    def set_watchdog(self, slot: int, timeout_s: float) -> None:
        """Heartbeat timeout; 0 switches the watchdog model off (plant-only runs; the register cannot)."""
        self.arrays["wd_timeout"][slot] = timeout_s

    def fault_reset(self, slot: int) -> None:
        """Clear the latched fault bits whose cause is gone."""
        a = self.arrays
        c = self.charger
        fl = int(a["faults"][slot])
        t_hot = self.cell_temp_max(slot)
        gone = {
            F_HEARTBEAT: a["wd_timeout"][slot] <= 0.0 or a["hb_age"][slot] < a["wd_timeout"][slot],
            F_GRID: bool(a["grid_up"][self.station_of(slot)]),
            F_COOLANT: a["ch_temp"][slot] < c.coolant_trip_c - c.coolant_derate_k,
            F_OVER_TEMP: t_hot < c.cell_trip_c - 5.0,
            F_RUNAWAY: t_hot < c.cell_trip_c - 5.0,
            F_BMS_COMM: not a["fault_inj"][slot] & P.INJ_BMS_COMM,
        }
        for bit, ok in gone.items():
            if fl & bit and ok:
                fl &= ~bit
        a["faults"][slot] = fl
        self._refresh_status(slot)

    def _cell_spread(self, slot: int) -> float:
        return 0.5 * (P.CELL_SPREAD_K + P.CELL_SPREAD_K_PER_A * abs(float(self.arrays["i_out"][slot])))

    def cell_temp_max(self, slot: int) -> float:
        """Hottest cell: the lumped temperature plus half the spread (which grows with current)."""
        return float(self.arrays["temp"][slot]) + self._cell_spread(slot)

    def cell_temp_min(self, slot: int) -> float:
        return float(self.arrays["temp"][slot]) - self._cell_spread(slot)

    # ---- fault injection ----------------------------------------------------------------
    def inject(self, slot: int, fault: str) -> None:
        """Inject ``stuck``, ``dropout``, ``pump``, ``bms_comm`` (charger) or ``runaway`` (pack)."""
        a = self.arrays
        if fault == "runaway":
            a["q_fault"][slot] = RUNAWAY_HEAT_W
            return
        bit = INJECTABLE[fault]
        if bit == P.INJ_STUCK and not a["fault_inj"][slot] & bit:
            a["i_stuck"][slot] = a["i_out"][slot]
            self.frozen_inputs[slot] = charger_regs.snapshot(self, slot)
        a["fault_inj"][slot] |= bit

    def clear(self, slot: int, fault: str) -> None:
        a = self.arrays
        if fault == "runaway":
            a["q_fault"][slot] = 0.0
            return
        bit = INJECTABLE[fault]
        a["fault_inj"][slot] &= ~bit
        if bit == P.INJ_STUCK:
            self.frozen_inputs.pop(slot, None)

    # ---- grid -----------------------------------------------------------------------------
    def set_grid(self, station: int, *, limit_kw: float | None = None, up: bool | None = None) -> None:
        a = self.arrays
        if limit_kw is not None:
            a["grid_limit"][station] = limit_kw * 1000.0
        if up is not None:
            a["grid_up"][station] = 1 if up else 0

    def station_power_w(self, station: int) -> float:
        return float(self.arrays["p_sta"][station])

    def station_energy_j(self, station: int) -> float:
        return float(self.arrays["e_sta"][station])

    # ---- event-time queries ---------------------------------------------------------------
    def _watch_mask(self, slots: Iterable[int] | np.ndarray | None, station: int | None) -> np.ndarray:
        mask = np.zeros(self.n_slots, dtype=np.int32)
        if slots is None:
            if station is None:
                mask[:] = 1
            else:
                mask[self.slot_range(station).start:self.slot_range(station).stop] = 1
        elif isinstance(slots, np.ndarray) and slots.dtype == bool:
            mask[slots] = 1
        else:
            mask[list(slots)] = 1
        return mask

    def _first_crossing(
        self, kind: int, target: float, slots: Iterable[int] | np.ndarray | None, station: int | None,
        horizon_s: float, resolution_s: float | None,
    ) -> tuple[float, int]:
        h = resolution_s or self.max_substep_s
        np.copyto(self._probe_blocks[0], self._fblock)
        np.copyto(self._probe_blocks[1], self._iblock)
        np.copyto(self._probe_blocks[2], self._sblock)
        s_lo, s_hi = (0, self.n_stations) if station is None else (station, station + 1)
        steps = max(1, math.ceil(horizon_s / h))
        watch = self._watch_mask(slots, station)
        t, slot = self._probe.first_crossing(kind, target, h, steps, watch, s_lo, s_hi)
        return float(t), int(slot)

    def time_to_soc(
        self, target: float, slots: Iterable[int] | np.ndarray | None = None, *, station: int | None = None,
        horizon_s: float = 86400.0, resolution_s: float | None = None,
    ) -> tuple[float, int]:
        """Seconds until the next watched pack rises through ``target`` SoC, and its slot.

        Runs the same equations forward on a copy of the state with the present setpoints
        (sub-steps of ``resolution_s``, default ``max_substep_s``; the time is interpolated
        inside the sub-step). Packs already at or above ``target`` do not count.
        ``(inf, -1)`` when none gets there within ``horizon_s``.
        """
        return self._first_crossing(SOC_EVENT, target, slots, station, horizon_s, resolution_s)

    def time_to_cc_end(
        self, slots: Iterable[int] | np.ndarray | None = None, *, station: int | None = None,
        horizon_s: float = 86400.0, resolution_s: float | None = None,
    ) -> tuple[float, int]:
        """Seconds until the next watched charger in the CC phase leaves it (taper, full or stop)."""
        return self._first_crossing(CC_END_EVENT, 0.0, slots, station, horizon_s, resolution_s)

    def time_to_watchdog(self, station: int | None = None) -> tuple[float, int]:
        """Seconds until the next running watchdog expires (no heartbeat meanwhile), and its slot."""
        a = self.arrays
        r = range(self.n_slots) if station is None else self.slot_range(station)
        left = a["wd_timeout"][r.start:r.stop] - a["hb_age"][r.start:r.stop]
        armed = (a["wd_timeout"][r.start:r.stop] > 0.0) & ((a["faults"][r.start:r.stop] & F_HEARTBEAT) == 0)
        if not armed.any():
            return math.inf, -1
        left = np.where(armed, left, np.inf)
        k = int(np.argmin(left))
        return max(float(left[k]), 0.0), r.start + k

    # ---- registers (see charger_regs) -----------------------------------------------------
    def charger_input_registers(
        self, slot: int, address: int = regmap.CHG_STATUS_BASE, count: int = regmap.CHG_STATUS_COUNT
    ) -> list[int]:
        """FC04 read of charger ``slot`` (raises ``charger_regs.ModbusError`` / ``NoReply``)."""
        return charger_regs.read_input(self, slot, address, count)

    def charger_holding_registers(
        self, slot: int, address: int = 0, count: int = regmap.CHG_HOLDING_COUNT
    ) -> list[int]:
        """FC03 read of charger ``slot``."""
        return charger_regs.read_holding(self, slot, address, count)

    def write_charger_holding(self, slot: int, address: int, values: Sequence[int]) -> None:
        """FC06/FC16 write to charger ``slot``: all values checked first, then applied in address order."""
        charger_regs.write_holding(self, slot, address, values)
