"""Parameters of the plant models: pack types, the charger module, the rack.

Pack type ids, capacities, charge limits and cell temperature limits follow
``firmware/station.json``; register codes and rated charger values follow
``firmware/proto/regmap.py``. Electrical and thermal values are typical figures
from ``../shared/domain-notes.md`` (96s packs, about 48 mOhm for a 75 kWh pack,
0.3-0.5 MJ/K thermal mass, 62.5 kW modules at 98 % peak efficiency).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from firmware.proto import regmap

# Open-circuit voltage of one NMC cell at SoC 0.00, 0.05, ..., 1.00 (21 points).
CELL_OCV_V: tuple[float, ...] = (
    3.00, 3.40, 3.50, 3.56, 3.60, 3.63, 3.66, 3.68, 3.71, 3.74, 3.77,
    3.81, 3.85, 3.89, 3.93, 3.97, 4.01, 4.05, 4.09, 4.14, 4.20,
)
OCV_POINTS = len(CELL_OCV_V) - 1  # intervals; SoC step = 1 / OCV_POINTS


def cell_ocv(soc: float) -> float:
    """Cell OCV by linear interpolation in :data:`CELL_OCV_V` (clamped at the ends)."""
    x = soc * OCV_POINTS
    j = min(max(int(x), 0), OCV_POINTS - 1)
    return CELL_OCV_V[j] + (x - j) * (CELL_OCV_V[j + 1] - CELL_OCV_V[j])


def mean_cell_ocv() -> float:
    """Mean OCV over SoC 0..1 (exact for the piecewise-linear table)."""
    pts = CELL_OCV_V
    return sum(0.5 * (pts[k] + pts[k + 1]) for k in range(OCV_POINTS)) / OCV_POINTS


MEAN_CELL_OCV_V = mean_cell_ocv()  # read on every pack seated: computed once

# BMS charge acceptance, shared by every pack type.
CC_KNEE_SOC = 0.80  # constant current up to here, then a linear taper
TAPER_FLOOR = 0.10  # taper never falls below this fraction of the CC current
TERM_C_RATE = 0.02  # CV termination: the pack is full when it accepts less than C/50
COLD_FULL_C = 10.0  # JEITA: from t_min up to here, acceptance is COLD_FACTOR
COLD_FACTOR = 0.50
DERATE_FROM_C = 45.0  # full acceptance up to here, then linear to HOT_FACTOR at t_max
HOT_FACTOR = 0.25
BMS_CUTOFF_C = 65.0  # the pack's own contactor opens at or above this
BMS_OVERVOLT = 1.02  # ... or above this fraction of its maximum voltage
STRESS_REF_C = 25.0  # capacity fade doubles every STRESS_DOUBLING_K above this
STRESS_DOUBLING_K = 10.0


@dataclass(frozen=True)
class PackType:
    """One pack type. ``cap_ah`` is derived from the nominal energy and the OCV curve."""

    name: str
    code: int  # regmap PACK_* code (0 where the register map has none)
    capacity_kwh: float
    n_series: int
    r0_ohm: float  # ohmic resistance, new pack
    r1_ohm: float  # RC pair resistance
    tau_s: float  # RC pair time constant R1*C1
    c_th_j_per_k: float  # lumped thermal mass
    h_amb_w_per_k: float  # passive heat exchange with the rack air
    max_charge_a: float  # BMS CC current
    max_charge_kw: float  # BMS power limit
    cell_v_max: float  # CV limit per cell
    t_min_c: float  # no charge at or below (cell_temp_min_c)
    t_max_c: float  # no charge at or above (cell_temp_max_c)
    fade_per_efc: float = 0.2 / 3000.0  # SoH loss per full-equivalent cycle at 25 degC
    r_growth: float = 2.5  # R0 grows by r_growth * (1 - SoH)

    @property
    def cap_ah(self) -> float:
        return self.capacity_kwh * 1000.0 / (self.n_series * MEAN_CELL_OCV_V)

    @property
    def v_max(self) -> float:
        return self.n_series * self.cell_v_max


PACK_TYPES: dict[str, PackType] = {
    p.name: p
    for p in (
        # kWh, cells, R0, R1, tau, C_th, h_amb, max A, max kW, cell V max, T min, T max
        PackType("NIO-75", regmap.PACK_75,
                 75.0, 96, 0.048, 0.018, 60.0, 0.35e6, 20.0, 180.0, 62.5, 4.2, 0.0, 58.0),
        PackType("NIO-100", regmap.PACK_100,
                 100.0, 96, 0.036, 0.014, 60.0, 0.45e6, 25.0, 180.0, 62.5, 4.2, 0.0, 58.0),
        PackType("NIO-150", regmap.PACK_150,
                 150.0, 96, 0.026, 0.010, 60.0, 0.60e6, 30.0, 180.0, 62.5, 4.2, 0.0, 55.0),
        # station.json's partner pack: 400 V nominal, so 108s.
        PackType("STD-A-60", regmap.PACK_STD_60,
                 60.0, 108, 0.060, 0.022, 60.0, 0.30e6, 18.0, 125.0, 50.0, 4.2, 0.0, 55.0),
    )
}
PACK_TYPE_NAMES: tuple[str, ...] = tuple(PACK_TYPES)


@dataclass(frozen=True)
class ChargerParams:
    """A 62.5 kW liquid-cooled DC module. Losses: ``loss0 + loss1*P + loss2*P**2`` while running.

    With these defaults the efficiency peaks at 98.0 % near half load, is 97.8 % at full
    load and falls at light load (96.5 % at 10 %, 88 % at 2 %). ``p_rated_w`` is the rated
    power of a charger no station config rates: ``Plant.for_station`` rates each one as its
    slot's ``charger_kw`` says (:func:`charger_kw_of`), with these losses.
    """

    p_rated_w: float = regmap.CHG_RATED_POWER * 100.0
    i_rated_a: float = regmap.CHG_RATED_I_MAX * 0.1
    v_rated_max: float = regmap.CHG_RATED_V_MAX * 0.1
    v_rated_min: float = regmap.CHG_RATED_V_MIN * 0.1
    ramp_a_per_s: float = 20.0  # output current rise rate (falls are immediate)
    loss0_w: float = 150.0
    loss1: float = 0.0108
    loss2_per_w: float = 1.536e-7
    standby_w: float = 15.0
    coolant_c_j_per_k: float = 30.0e3
    coolant_h_w_per_k: float = 150.0
    pump_failed_factor: float = 0.05  # coolant exchange left when the pump fails
    coolant_trip_c: float = 75.0  # COOLANT fault at or above
    coolant_derate_k: float = 10.0  # power derates linearly over this band below the trip ...
    coolant_derate_floor: float = 0.3  # ... down to this fraction of the limit at the trip
    cell_trip_c: float = 60.0  # OVER_TEMP fault: hottest cell at or above
    runaway_c: float = 80.0  # THERMAL_RUNAWAY fault: hottest cell at or above
    watchdog_s: float = regmap.CHG_WATCHDOG_DEFAULT_MS / 1000.0

    def efficiency(self, p_out_w: float) -> float:
        if p_out_w <= 0.0:
            return 0.0
        loss = self.loss0_w + self.loss1 * p_out_w + self.loss2_per_w * p_out_w * p_out_w
        return p_out_w / (p_out_w + loss)


def charger_kw_of(station: Mapping[str, Any]) -> list[float]:
    """Each slot's charger rating in kW as a station config (``firmware/station.json``) says:
    the slot's ``charger_kw``, else ``limits.charger_kw`` (a validated config has it filled in)."""
    default = float(station["limits"]["charger_kw"])
    return [float(s.get("charger_kw") or default) for s in station["slots"]]


@dataclass(frozen=True)
class RackParams:
    """Rack air and liquid cooling. Cooling removes ``cool_g * (T - cool_set)`` above ``cool_set``."""

    t_amb_c: float = 25.0
    cool_g_w_per_k: float = 250.0
    cool_set_c: float = 30.0


# Hottest/coldest cell around the lumped pack temperature: spread = a + b*|I|.
CELL_SPREAD_K = 1.0
CELL_SPREAD_K_PER_A = 0.01

# Injected faults (bits of the kernel's ``fault_inj`` array).
INJ_STUCK = 1  # charger frozen: output and registers stop changing
INJ_DROPOUT = 2  # charger stops answering on the bus (register access raises)
INJ_PUMP = 4  # coolant pump failed: the module overheats under load
INJ_BMS_COMM = 8  # charger lost its link to the pack BMS

# Charge phases (kernel ``phase`` array), used by the event-time queries.
PHASE_OFF = 0
PHASE_CC = 1  # current set by the charger's limits or the BMS constant current
PHASE_TAPER = 2  # current set by the SoC taper or the voltage limit
PHASE_FULL = 3  # target SoC reached
