"""Pure-Python reference of the plant kernel (the same equations as ``_fastplant.pyx``).

Per slot ``i`` and sub-step ``h`` (seconds):

Pack, first-order equivalent circuit::

    OCV    = n_s * cell_ocv(SoC)                     (piecewise-linear table)
    R0'    = R0 * (1 + r_growth * (1 - SoH))          (resistance grows as the pack fades)
    a      = exp(-h / tau);  b = R1 * (1 - a)         (exact RC discretisation)
    V_rc'  = V_rc * a + b * I
    V      = OCV + R0' * I + V_rc'
    SoC'   = SoC + I h / (3600 * Ah_nominal * SoH)
    C dT/dt = I^2 R0' + V_rc'^2 / R1 + q_fault + h_amb (T_amb - T) - cool_g * max(0, T - T_cool)
    SoH'   = SoH - fade * (I h / 3600 / Ah_nominal) * 2^((T - 25) / 10 if T > 25)

BMS acceptance (CC-CV with SoC taper and JEITA temperature factor)::

    I_acc  = I_bms * f_T(T) * f_SoC(SoC)
    f_SoC  = 1 up to the knee (80 %), then (1 - SoC) / (1 - knee), floored at 10 %
    FULL   once SoC reaches the target, or above the knee once min(I_bms f_SoC, I_cv)
           falls below the termination current (C/50)
    f_T    = 0 at or below t_min and at or above t_max, COLD_FACTOR below 10 degC,
             1 up to 45 degC, then linear down to HOT_FACTOR at t_max

Charger::

    I_p    = current at which V(I) * I = min(P_set, P_rated, P_bms) (root of R I^2 + V0 I - P = 0)
    I      = min(I_set, I_rated, I_p, I_acc, I_cv, I_to_full), ramped up at ``ramp`` A/s
    loss   = loss0 + loss1 P + loss2 P^2 while current flows, else standby
    P_in   = P + loss;  Cc dTc/dt = loss - h_c (Tc - T_amb)

A station's chargers share the grid connection: when their input exceeds it, every
charger's output power is scaled by one factor ``k``, solved exactly (a quadratic, as
the losses are) so that the station's input equals the limit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from firmware.proto import regmap
from host.plant import params as _p

F_HEARTBEAT = regmap.CHG_FAULT_HEARTBEAT
F_GRID = regmap.CHG_FAULT_GRID
F_COOLANT = regmap.CHG_FAULT_COOLANT
F_OVER_TEMP = regmap.CHG_FAULT_OVER_TEMP
F_RUNAWAY = regmap.CHG_FAULT_THERMAL_RUNAWAY
F_BMS_COMM = regmap.CHG_FAULT_BMS_COMM
LN2 = 0.6931471805599453

_FLOAT_FIELDS = (
    "soc", "v_rc", "temp", "soh", "efc", "q_fault", "n_s", "cap_ah", "r0", "r1", "tau", "c_th", "h_amb",
    "i_bms", "p_bms", "v_max", "t_min", "t_max", "fade", "r_growth", "t_amb", "cool_g", "cool_set",
    "i_out", "v_term", "p_out", "p_in", "ch_temp", "hb_age", "i_stuck", "e_in", "e_out", "e_ch_loss",
    "e_pack_heat", "p_rated", "i_rated", "v_rated", "ramp", "loss0", "loss1", "loss2", "standby", "ch_c",
    "ch_h", "wd_timeout", "set_i", "set_v", "set_p", "target_soc", "grid_limit", "p_sta", "e_sta", "ocv",
)
_INT_FIELDS = (
    "present", "bms_open", "enable", "faults", "status", "phase", "fault_inj", "sta_lo", "sta_hi", "grid_up",
)
# Arrays the kernel writes (copied back after each call).
_WRITTEN = (
    "soc", "v_rc", "temp", "soh", "efc", "bms_open", "i_out", "v_term", "p_out", "p_in", "ch_temp", "hb_age",
    "e_in", "e_out", "e_ch_loss", "e_pack_heat", "enable", "faults", "status", "phase", "p_sta", "e_sta",
)


class RefKernel:
    """Same interface and results as ``host.plant._fastplant.RackKernel``, in plain Python."""

    def __init__(self, arrays: dict[str, np.ndarray], scalars: dict[str, float]) -> None:
        for name in _FLOAT_FIELDS + _INT_FIELDS:
            if name not in arrays:
                raise KeyError(name)
        self.arrays = arrays
        self.sc = dict(scalars)

    def step(self, dt: float, nsub: int, s_lo: int, s_hi: int) -> None:
        if dt <= 0.0 or nsub < 1 or s_hi <= s_lo:
            return
        h = dt / nsub
        v = {name: self.arrays[name].tolist() for name in _FLOAT_FIELDS + _INT_FIELDS}
        decay = self._prepare(v, h, s_lo, s_hi)
        for _ in range(nsub):
            self._substep(v, decay, h, s_lo, s_hi)
        self._store(v)

    def first_crossing(
        self, kind: int, target: float, h: float, max_steps: int, watch: Any, s_lo: int, s_hi: int
    ) -> tuple[float, int]:
        if s_hi <= s_lo or max_steps < 1:
            return math.inf, -1
        v = {name: self.arrays[name].tolist() for name in _FLOAT_FIELDS + _INT_FIELDS}
        lo, hi = v["sta_lo"][s_lo], v["sta_hi"][s_hi - 1]
        decay = self._prepare(v, h, s_lo, s_hi)
        best, tbest = -1, math.inf
        for n in range(max_steps):
            prev = v["soc"][lo:hi]
            pprev = v["phase"][lo:hi]
            self._substep(v, decay, h, s_lo, s_hi)
            for i in range(lo, hi):
                if not watch[i]:
                    continue
                if kind == 0:
                    before, after = prev[i - lo], v["soc"][i]
                    if before < target <= after:
                        t = (n + (target - before) / (after - before)) * h
                        if t < tbest:
                            tbest, best = t, i
                elif pprev[i - lo] == _p.PHASE_CC and v["phase"][i] != _p.PHASE_CC:
                    t = (n + 1) * h
                    if t < tbest:
                        tbest, best = t, i
            if best >= 0:
                break
        self._store(v)
        return tbest, best

    def _store(self, v: dict[str, list[Any]]) -> None:
        for name in _WRITTEN:
            self.arrays[name][:] = v[name]

    @staticmethod
    def _prepare(v: dict[str, list[Any]], h: float, s_lo: int, s_hi: int) -> list[float]:
        tau = v["tau"]
        decay = [0.0] * len(tau)
        for i in range(v["sta_lo"][s_lo], v["sta_hi"][s_hi - 1]):
            decay[i] = math.exp(-h / tau[i])
        return decay

    def _substep(self, v: dict[str, list[Any]], decay: list[float], h: float, s_lo: int, s_hi: int) -> None:
        sc = self.sc
        knee, floor = sc["knee"], sc["floor"]
        npts = len(v["ocv"]) - 1
        tab = v["ocv"]
        soc_a, v_rc, temp, soh = v["soc"], v["v_rc"], v["temp"], v["soh"]
        efc, q_fault = v["efc"], v["q_fault"]
        present, bms_open = v["present"], v["bms_open"]
        i_out, hb_age, faults, enable, phase = v["i_out"], v["hb_age"], v["faults"], v["enable"], v["phase"]
        fault_inj, ch_temp = v["fault_inj"], v["ch_temp"]
        n = len(soc_a)
        s_i, s_pw, s_ocv, s_vrc0, s_r0e, s_b = ([0.0] * n for _ in range(6))
        s_der = [0] * n
        for s in range(s_lo, s_hi):
            g = v["grid_up"][s]
            total = fixed = qa = qb = 0.0
            lo, hi = v["sta_lo"][s], v["sta_hi"][s]
            # pass 1: what each charger would deliver on its own
            for i in range(lo, hi):
                fl = faults[i]
                inj = fault_inj[i]
                stuck = inj & _p.INJ_STUCK
                pres = present[i]
                ocv = vrc0 = r0e = b = soc_i = temp_i = 0.0
                cap = 1.0
                if pres:
                    soc_i = soc_a[i]
                    temp_i = temp[i]
                    soh_i = soh[i]
                    cap = v["cap_ah"][i] * soh_i
                    r0e = v["r0"][i] * (1.0 + v["r_growth"][i] * (1.0 - soh_i))
                    x = soc_i * npts
                    j = min(max(int(x), 0), npts - 1)
                    ocv = v["n_s"][i] * (tab[j] + (x - j) * (tab[j + 1] - tab[j]))
                    a = decay[i]
                    b = v["r1"][i] * (1.0 - a)
                    vrc0 = v_rc[i] * a
                s_ocv[i], s_vrc0[i], s_r0e[i], s_b[i] = ocv, vrc0, r0e, b
                der = 0
                itgt = 0.0
                if not stuck:
                    wd = v["wd_timeout"][i]
                    if wd > 0.0:
                        hb_age[i] += h
                        if hb_age[i] >= wd and not (fl & F_HEARTBEAT):
                            fl |= F_HEARTBEAT
                            enable[i] = 0
                    if not g:
                        fl |= F_GRID
                    if ch_temp[i] >= sc["coolant_trip"]:
                        fl |= F_COOLANT
                    if pres:
                        t_hot = temp_i + 0.5 * (sc["spread_a"] + sc["spread_b"] * abs(i_out[i]))
                        if t_hot >= sc["cell_trip"]:
                            fl |= F_OVER_TEMP
                        if t_hot >= sc["runaway_c"]:
                            fl |= F_RUNAWAY
                        if inj & _p.INJ_BMS_COMM:
                            fl |= F_BMS_COMM
                    faults[i] = fl
                    on = pres and enable[i] and fl == 0
                    ph = _p.PHASE_OFF
                    if on:
                        if soc_i >= v["target_soc"][i]:
                            ph = _p.PHASE_FULL
                        else:
                            t_max = v["t_max"][i]
                            if temp_i <= v["t_min"][i] or temp_i >= t_max:
                                ft = 0.0
                            elif temp_i < sc["t_cold"]:
                                ft = sc["f_cold"]
                            elif temp_i <= sc["t_derate"]:
                                ft = 1.0
                            else:
                                ft = 1.0 - (1.0 - sc["f_hot"]) * (temp_i - sc["t_derate"]) / (
                                    t_max - sc["t_derate"])
                            if soc_i <= knee:
                                fs = 1.0
                            else:
                                fs = max((1.0 - soc_i) / (1.0 - knee), floor)
                            i_acc = v["i_bms"][i] * ft * fs
                            i_full = (1.0 - soc_i) * 3600.0 * cap / h
                            vlim = min(v["set_v"][i], v["v_rated"][i], v["v_max"][i])
                            rt = r0e + b
                            v0 = ocv + vrc0
                            i_cv = (vlim - v0) / rt
                            if soc_i > knee and min(v["i_bms"][i] * fs, i_cv) < sc["term_c"] * cap:
                                ph = _p.PHASE_FULL  # CV termination current reached
                            else:
                                plim = min(v["set_p"][i], v["p_rated"][i], v["p_bms"][i])
                                if ch_temp[i] > sc["coolant_trip"] - sc["derate_k"]:
                                    plim = plim * (1.0 - (1.0 - sc["derate_floor"]) * (
                                        ch_temp[i] - sc["coolant_trip"] + sc["derate_k"]) / sc["derate_k"])
                                    der = 1
                                i_p = 0.0
                                if plim > 0.0:
                                    i_p = 2.0 * plim / (v0 + math.sqrt(v0 * v0 + 4.0 * rt * plim))
                                i_ch = min(v["set_i"][i], v["i_rated"][i], i_p)
                                itgt = max(min(i_ch, i_acc, i_cv, i_full), 0.0)
                                cc = fs >= 1.0 and i_cv >= min(i_ch, i_acc)
                                ph = _p.PHASE_CC if cc else _p.PHASE_TAPER
                                if itgt < i_ch:
                                    der = 1
                                itgt = min(itgt, i_out[i] + v["ramp"][i] * h)
                        if bms_open[i]:
                            itgt = 0.0
                    phase[i] = ph
                elif pres and g and not bms_open[i]:
                    itgt = v["i_stuck"][i]
                s_i[i] = itgt
                s_der[i] = der
                if g:
                    if itgt > 0.0:
                        p = (ocv + vrc0 + (r0e + b) * itgt) * itgt
                        s_pw[i] = p
                        loss = v["loss0"][i] + v["loss1"][i] * p + v["loss2"][i] * p * p
                        total += p + loss
                        if stuck:
                            fixed += p + loss
                        else:
                            fixed += v["loss0"][i]
                            qa += v["loss2"][i] * s_pw[i] * s_pw[i]
                            qb += (1.0 + v["loss1"][i]) * s_pw[i]
                    else:
                        total += v["standby"][i]
                        fixed += v["standby"][i]
            # grid connection: scale every charger's power by one factor k so that the input,
            # sum(k p + loss0 + loss1 k p + loss2 k^2 p^2) + fixed, equals the limit
            k = 1.0
            limit = v["grid_limit"][s]
            if total > limit:
                qc = fixed - limit
                if qc >= 0.0 or qb <= 0.0:
                    k = 0.0
                elif qa > 0.0:
                    k = 2.0 * (-qc) / (qb + math.sqrt(qb * qb - 4.0 * qa * qc))
                else:
                    k = -qc / qb
            # pass 2: integrate
            total = 0.0
            for i in range(lo, hi):
                stuck = fault_inj[i] & _p.INJ_STUCK
                cur = s_i[i]
                if k < 1.0 and not stuck and cur > 0.0:
                    p = k * s_pw[i]
                    v0 = s_ocv[i] + s_vrc0[i]
                    rt = s_r0e[i] + s_b[i]
                    cur = 2.0 * p / (v0 + math.sqrt(v0 * v0 + 4.0 * rt * p)) if p > 0.0 else 0.0
                p = 0.0
                if present[i]:
                    b, r0e = s_b[i], s_r0e[i]
                    vrc = s_vrc0[i] + b * cur
                    vt = s_ocv[i] + r0e * cur + vrc
                    p = vt * cur
                    soh_i = soh[i]
                    cap_ah = v["cap_ah"][i]
                    soc_a[i] += cur * h / (3600.0 * cap_ah * soh_i)
                    q = cur * cur * r0e + vrc * vrc / v["r1"][i]
                    temp_i = temp[i]
                    cool = 0.0
                    if temp_i > v["cool_set"][i]:
                        cool = v["cool_g"][i] * (temp_i - v["cool_set"][i])
                    temp[i] = temp_i + h * (q + q_fault[i] + v["h_amb"][i] * (v["t_amb"][i] - temp_i)
                                            - cool) / v["c_th"][i]
                    v["e_pack_heat"][i] += q * h
                    if cur > 0.0:
                        dah = cur * h / 3600.0
                        efc[i] += dah / cap_ah
                        stress = 1.0
                        if temp_i > sc["stress_ref"]:
                            stress = math.exp(LN2 * (temp_i - sc["stress_ref"]) / sc["stress_k"])
                        soh[i] = soh_i - v["fade"][i] * dah / cap_ah * stress
                    if soc_a[i] > 1.000001 or temp[i] >= sc["bms_cut"] or vt > sc["bms_ov"] * v["v_max"][i]:
                        bms_open[i] = 1
                    v_rc[i] = vrc
                    v["v_term"][i] = vt
                else:
                    v["v_term"][i] = 0.0
                if not g:
                    loss = 0.0
                elif cur > 0.0:
                    loss = v["loss0"][i] + v["loss1"][i] * p + v["loss2"][i] * p * p
                else:
                    loss = v["standby"][i]
                pin = p + loss
                chh = v["ch_h"][i]
                if fault_inj[i] & _p.INJ_PUMP:
                    chh = chh * sc["pump_factor"]
                ch_temp[i] += h * (loss - chh * (ch_temp[i] - v["t_amb"][i])) / v["ch_c"][i]
                i_out[i] = cur
                v["p_out"][i] = p
                v["p_in"][i] = pin
                v["e_in"][i] += pin * h
                v["e_out"][i] += p * h
                v["e_ch_loss"][i] += loss * h
                total += pin
                if not stuck:
                    fl = faults[i]
                    ph = phase[i]
                    if fl & F_HEARTBEAT:
                        st = regmap.CHG_ST_WATCHDOG
                    elif fl:
                        st = regmap.CHG_ST_FAULT
                    elif not present[i]:
                        st = regmap.CHG_ST_STANDBY
                    elif ph == _p.PHASE_FULL:
                        st = regmap.CHG_ST_FULL
                    elif ph != _p.PHASE_OFF:
                        st = regmap.CHG_ST_DERATED if (s_der[i] or k < 1.0) else regmap.CHG_ST_CHARGING
                    else:
                        st = regmap.CHG_ST_READY
                    v["status"][i] = st
            v["p_sta"][s] = total
            v["e_sta"][s] += total * h
