"""The plant of the simulator's queueing-validation mode: rack slots whose charge work is
exponential, so that a station run can be checked against the M/M/C closed form."""

from __future__ import annotations

import numpy as np

from firmware.proto import regmap as R
from host.plant.charging import PackRecord
from host.plant.params import PACK_TYPES


class ExpChargeRack:
    """Plant of the queueing-validation mode: rack slots whose charge work is exponential.

    A depleted pack put in a slot needs ``Exp(mean_s)`` seconds at its charger's full
    power; it is charged at the power limit the firmware writes (``P_LIMIT``, while
    enabled) and becomes full (SoC = ``full_soc``) when that work is done. Its SoC
    reading rises with the work received but says nothing about the work left, and the
    firmware's dispatch charges first in, first charged: it cannot tell short
    jobs from long ones, and with exponential work the number of packs not yet full is then
    the M/M/C birth-death process of the closed form. Chargers present the register map
    (status and info blocks, control block); no watchdog, no faults, 25 degC, 370 V.
    Duck-types the parts of ``Plant`` the engine and the bay model use.
    """

    backend = "exp-charge"
    VOLT = 370.0

    def __init__(self, n_slots: int, mean_s: float, full_soc: float, p_rated_w: float,
                 seed: int | np.random.SeedSequence) -> None:
        self.n = self.n_slots = n_slots
        self.mean_s = mean_s
        self.full_soc = full_soc
        self.p_rated_w = p_rated_w
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.pack: list[PackRecord | None] = [None] * n_slots
        self.left_s = [0.0] * n_slots  # full-power seconds of work left
        self.served_s = [0.0] * n_slots
        self.start_soc = [0.0] * n_slots
        self.enable = [0] * n_slots
        self.p_limit_w = [p_rated_w] * n_slots
        self.target = [1000] * n_slots
        self.hb = [0] * n_slots
        self.wh = [0.0] * n_slots
        self.t = 0.0
        self.arrays: dict[str, np.ndarray] = {
                       "p_sta": np.zeros(1), "e_sta": np.zeros(1), "p_out": np.zeros(n_slots),
                       "present": np.zeros(n_slots, dtype=np.int32), "soc": np.zeros(n_slots)}

    def _power_w(self, i: int) -> float:
        if self.pack[i] is None or not self.enable[i] or self.left_s[i] <= 0.0:
            return 0.0
        return min(self.p_limit_w[i], self.p_rated_w)

    def step_to(self, t_s: float) -> None:
        dt = t_s - self.t
        if dt <= 0.0:
            return
        self.t = t_s
        a = self.arrays
        total = 0.0
        for i in range(self.n):
            p = self._power_w(i)
            if p <= 0.0:
                continue
            total += p
            work = dt * p / self.p_rated_w
            self.served_s[i] += work
            self.left_s[i] -= work
            self.wh[i] += p * dt / 3600.0
            pk = self.pack[i]
            assert pk is not None
            if self.left_s[i] <= 0.0:
                pk.soc = self.full_soc
            else:
                s0 = self.start_soc[i]
                x = self.served_s[i]
                pk.soc = s0 + (self.full_soc - 0.002 - s0) * x / (x + self.mean_s)
            a["soc"][i] = pk.soc
        a["e_sta"][0] += total * dt
        for i in range(self.n):
            a["p_out"][i] = self._power_w(i)
        a["p_sta"][0] = a["p_out"].sum()

    # the bay's rack port
    def put_pack(self, slot: int, pack: PackRecord) -> None:
        if self.pack[slot] is not None:
            raise ValueError(f"slot {slot} is not empty")
        self.pack[slot] = pack
        full = pack.soc >= self.full_soc
        self.left_s[slot] = 0.0 if full else float(self.rng.exponential(self.mean_s))
        self.served_s[slot] = 0.0
        self.start_soc[slot] = pack.soc
        self.arrays["present"][slot] = 1
        self.arrays["soc"][slot] = pack.soc

    def take_pack(self, slot: int) -> PackRecord:
        pk = self.pack[slot]
        if pk is None:
            raise ValueError(f"slot {slot} is empty")
        self.pack[slot] = None
        self.arrays["present"][slot] = 0
        self.arrays["p_out"][slot] = 0.0
        return pk

    # charger registers
    def status(self, i: int) -> int:
        pk = self.pack[i]
        if pk is None:
            return R.CHG_ST_STANDBY
        if self.left_s[i] <= 0.0 or pk.soc * 1000 >= self.target[i]:
            return R.CHG_ST_FULL
        return R.CHG_ST_CHARGING if self._power_w(i) > 0 else R.CHG_ST_READY

    def input_registers(self, i: int) -> dict[int, int]:
        pk = self.pack[i]
        p = self._power_w(i)
        pid_hi, pid_lo = R.split32(pk.pack_id & 0xFFFFFFFF) if pk else (0, 0)
        e_hi, e_lo = R.split32(int(self.wh[i]) & 0xFFFFFFFF)
        code = PACK_TYPES[pk.type_name].code if pk else R.PACK_NONE
        return {
            R.CHG_IR_STATUS: self.status(i), R.CHG_IR_PACK_PRESENT: 1 if pk else 0,
            R.CHG_IR_PACK_ID_HI: pid_hi, R.CHG_IR_PACK_ID_LO: pid_lo, R.CHG_IR_PACK_TYPE: code,
            R.CHG_IR_SOC: min(1000, int(round(pk.soc * 1000))) if pk else 0, R.CHG_IR_SOH: 1000 if pk else 0,
            R.CHG_IR_VOLTAGE: int(self.VOLT * 10) if pk else 0,
            R.CHG_IR_CURRENT: int(round(p / self.VOLT * 10)),
            R.CHG_IR_POWER: int(round(p / 100.0)), R.CHG_IR_TEMP_MAX: 250 if pk else 0,
            R.CHG_IR_TEMP_MIN: 250 if pk else 0, R.CHG_IR_FAULTS: 0, R.CHG_IR_ENERGY_HI: e_hi,
            R.CHG_IR_ENERGY_LO: e_lo, R.CHG_IR_HEARTBEAT: int(self.t) & 0xFFFF,
            R.CHG_IR_MODEL: R.CHG_MODEL_CODE, R.CHG_IR_FW_VERSION: 0x0100,
            R.CHG_IR_RATED_POWER: int(round(self.p_rated_w / 100.0)),
            R.CHG_IR_RATED_V_MAX: R.CHG_RATED_V_MAX, R.CHG_IR_RATED_V_MIN: R.CHG_RATED_V_MIN,
            R.CHG_IR_RATED_I_MAX: R.CHG_RATED_I_MAX,
            R.CHG_IR_PACK_CAPACITY: int(PACK_TYPES[pk.type_name].capacity_kwh * 10) if pk else 0,
            R.CHG_IR_PACK_CYCLES: 0, R.CHG_IR_COOLANT_TEMP: 250,
        }
