# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled plant kernel: packs and chargers of whole racks, struct-of-arrays over typed memoryviews.

``RackKernel`` binds the arrays that :class:`host.plant.charging.Plant` owns (one 1-D array per
field, one element per slot or per station) and advances them in one call. The equations
are documented, and written once more in pure Python, in :mod:`host.plant.refkernel`; the
two must stay line-for-line the same.
"""

from libc.math cimport exp, sqrt, fabs, rint, INFINITY

from firmware.proto import regmap
from host.plant import params as _p

cdef int F_HEARTBEAT = regmap.CHG_FAULT_HEARTBEAT
cdef int F_GRID = regmap.CHG_FAULT_GRID
cdef int F_COOLANT = regmap.CHG_FAULT_COOLANT
cdef int F_OVER_TEMP = regmap.CHG_FAULT_OVER_TEMP
cdef int F_RUNAWAY = regmap.CHG_FAULT_THERMAL_RUNAWAY
cdef int F_BMS_COMM = regmap.CHG_FAULT_BMS_COMM
cdef int ST_STANDBY = regmap.CHG_ST_STANDBY
cdef int ST_READY = regmap.CHG_ST_READY
cdef int ST_CHARGING = regmap.CHG_ST_CHARGING
cdef int ST_FULL = regmap.CHG_ST_FULL
cdef int ST_DERATED = regmap.CHG_ST_DERATED
cdef int ST_FAULT = regmap.CHG_ST_FAULT
cdef int ST_WATCHDOG = regmap.CHG_ST_WATCHDOG
cdef int INJ_STUCK = _p.INJ_STUCK
cdef int INJ_PUMP = _p.INJ_PUMP
cdef int INJ_BMS_COMM = _p.INJ_BMS_COMM
cdef int PHASE_OFF = _p.PHASE_OFF
cdef int PHASE_CC = _p.PHASE_CC
cdef int PHASE_TAPER = _p.PHASE_TAPER
cdef int PHASE_FULL = _p.PHASE_FULL
cdef double LN2 = 0.6931471805599453


def compiled():
    """True: lets tests prove the extension was built and imported."""
    return True


cdef inline double dmin(double a, double b) noexcept nogil:
    return a if a < b else b


cdef class RackKernel:
    """Steps every slot of stations ``s_lo..s_hi-1``; see :class:`host.plant.refkernel.RefKernel`."""

    # pack state
    cdef double[::1] soc, v_rc, temp, soh, efc, q_fault
    cdef int[::1] present, bms_open
    # pack parameters
    cdef double[::1] n_s, cap_ah, r0, r1, tau, c_th, h_amb, i_bms, p_bms, v_max, t_min, t_max
    cdef double[::1] fade, r_growth
    # rack
    cdef double[::1] t_amb, cool_g, cool_set
    # charger state
    cdef double[::1] i_out, v_term, p_out, p_in, ch_temp, hb_age, i_stuck, e_in, e_out, e_ch_loss, e_pack_heat
    cdef int[::1] enable, faults, status, phase, fault_inj
    # charger parameters and setpoints
    cdef double[::1] p_rated, i_rated, v_rated, ramp, loss0, loss1, loss2, standby
    cdef double[::1] ch_c, ch_h, wd_timeout, set_i, set_v, set_p, target_soc
    # stations
    cdef int[::1] sta_lo, sta_hi, grid_up
    cdef double[::1] grid_limit, p_sta, e_sta
    # tables and scratch
    cdef double[::1] ocv, decay, s_i, s_pw, s_ocv, s_vrc0, s_r0e, s_b, s_prev
    cdef int[::1] s_der, s_pprev
    cdef int npts
    # scalars
    cdef double knee, floor, term_c, t_cold, f_cold, t_derate, f_hot, bms_cut, bms_ov, stress_ref, stress_k
    cdef double spread_a, spread_b, pump_factor, coolant_trip, derate_k, derate_floor, cell_trip, runaway_c
    cdef readonly dict arrays

    def __init__(self, dict arrays, dict scalars):
        self.arrays = arrays
        a = arrays
        self.soc = a["soc"]; self.v_rc = a["v_rc"]; self.temp = a["temp"]; self.soh = a["soh"]
        self.efc = a["efc"]; self.q_fault = a["q_fault"]
        self.present = a["present"]; self.bms_open = a["bms_open"]
        self.n_s = a["n_s"]; self.cap_ah = a["cap_ah"]; self.r0 = a["r0"]; self.r1 = a["r1"]
        self.tau = a["tau"]; self.c_th = a["c_th"]; self.h_amb = a["h_amb"]; self.i_bms = a["i_bms"]
        self.p_bms = a["p_bms"]; self.v_max = a["v_max"]; self.t_min = a["t_min"]; self.t_max = a["t_max"]
        self.fade = a["fade"]; self.r_growth = a["r_growth"]
        self.t_amb = a["t_amb"]; self.cool_g = a["cool_g"]; self.cool_set = a["cool_set"]
        self.i_out = a["i_out"]; self.v_term = a["v_term"]; self.p_out = a["p_out"]; self.p_in = a["p_in"]
        self.ch_temp = a["ch_temp"]; self.hb_age = a["hb_age"]; self.i_stuck = a["i_stuck"]
        self.e_in = a["e_in"]; self.e_out = a["e_out"]; self.e_ch_loss = a["e_ch_loss"]
        self.e_pack_heat = a["e_pack_heat"]
        self.enable = a["enable"]; self.faults = a["faults"]; self.status = a["status"]
        self.phase = a["phase"]; self.fault_inj = a["fault_inj"]
        self.p_rated = a["p_rated"]; self.i_rated = a["i_rated"]; self.v_rated = a["v_rated"]
        self.ramp = a["ramp"]; self.loss0 = a["loss0"]; self.loss1 = a["loss1"]; self.loss2 = a["loss2"]
        self.standby = a["standby"]; self.ch_c = a["ch_c"]; self.ch_h = a["ch_h"]
        self.wd_timeout = a["wd_timeout"]; self.set_i = a["set_i"]; self.set_v = a["set_v"]
        self.set_p = a["set_p"]; self.target_soc = a["target_soc"]
        self.sta_lo = a["sta_lo"]; self.sta_hi = a["sta_hi"]; self.grid_up = a["grid_up"]
        self.grid_limit = a["grid_limit"]; self.p_sta = a["p_sta"]; self.e_sta = a["e_sta"]
        self.ocv = a["ocv"]; self.decay = a["s_decay"]; self.s_i = a["s_i"]; self.s_pw = a["s_pw"]
        self.s_ocv = a["s_ocv"]
        self.s_vrc0 = a["s_vrc0"]; self.s_r0e = a["s_r0e"]; self.s_b = a["s_b"]; self.s_prev = a["s_prev"]
        self.s_der = a["s_der"]; self.s_pprev = a["s_pprev"]
        self.npts = self.ocv.shape[0] - 1
        s = scalars
        self.knee = s["knee"]; self.floor = s["floor"]; self.term_c = s["term_c"]; self.t_cold = s["t_cold"]; self.f_cold = s["f_cold"]
        self.t_derate = s["t_derate"]; self.f_hot = s["f_hot"]; self.bms_cut = s["bms_cut"]
        self.bms_ov = s["bms_ov"]; self.stress_ref = s["stress_ref"]; self.stress_k = s["stress_k"]
        self.spread_a = s["spread_a"]; self.spread_b = s["spread_b"]; self.pump_factor = s["pump_factor"]
        self.coolant_trip = s["coolant_trip"]; self.derate_k = s["derate_k"]; self.derate_floor = s["derate_floor"]; self.cell_trip = s["cell_trip"]
        self.runaway_c = s["runaway_c"]

    cdef void _prepare(self, double h, int s_lo, int s_hi) noexcept nogil:
        cdef int i
        for i in range(self.sta_lo[s_lo], self.sta_hi[s_hi - 1]):
            self.decay[i] = exp(-h / self.tau[i])

    cdef void _substep(self, double h, int s_lo, int s_hi) noexcept nogil:
        # local pointers and scalars: Python extensions build with -fno-strict-aliasing, so
        # every store through a double* would otherwise reload each field from self
        cdef double* soc = &self.soc[0]
        cdef double* v_rc = &self.v_rc[0]
        cdef double* temp = &self.temp[0]
        cdef double* soh = &self.soh[0]
        cdef double* efc = &self.efc[0]
        cdef double* q_fault = &self.q_fault[0]
        cdef double* n_s = &self.n_s[0]
        cdef double* cap_ah = &self.cap_ah[0]
        cdef double* r0 = &self.r0[0]
        cdef double* r1 = &self.r1[0]
        cdef double* c_th = &self.c_th[0]
        cdef double* h_amb = &self.h_amb[0]
        cdef double* i_bms = &self.i_bms[0]
        cdef double* p_bms = &self.p_bms[0]
        cdef double* v_max = &self.v_max[0]
        cdef double* t_min = &self.t_min[0]
        cdef double* t_max = &self.t_max[0]
        cdef double* fade = &self.fade[0]
        cdef double* r_growth = &self.r_growth[0]
        cdef double* t_amb = &self.t_amb[0]
        cdef double* cool_g = &self.cool_g[0]
        cdef double* cool_set = &self.cool_set[0]
        cdef double* i_out = &self.i_out[0]
        cdef double* v_term = &self.v_term[0]
        cdef double* p_out = &self.p_out[0]
        cdef double* p_in = &self.p_in[0]
        cdef double* ch_temp = &self.ch_temp[0]
        cdef double* hb_age = &self.hb_age[0]
        cdef double* i_stuck = &self.i_stuck[0]
        cdef double* e_in = &self.e_in[0]
        cdef double* e_out = &self.e_out[0]
        cdef double* e_ch_loss = &self.e_ch_loss[0]
        cdef double* e_pack_heat = &self.e_pack_heat[0]
        cdef double* p_rated = &self.p_rated[0]
        cdef double* i_rated = &self.i_rated[0]
        cdef double* v_rated = &self.v_rated[0]
        cdef double* ramp = &self.ramp[0]
        cdef double* loss0 = &self.loss0[0]
        cdef double* loss1 = &self.loss1[0]
        cdef double* loss2 = &self.loss2[0]
        cdef double* standby = &self.standby[0]
        cdef double* ch_c = &self.ch_c[0]
        cdef double* ch_h = &self.ch_h[0]
        cdef double* wd_timeout = &self.wd_timeout[0]
        cdef double* set_i = &self.set_i[0]
        cdef double* set_v = &self.set_v[0]
        cdef double* set_p = &self.set_p[0]
        cdef double* target_soc = &self.target_soc[0]
        cdef double* grid_limit = &self.grid_limit[0]
        cdef double* p_sta = &self.p_sta[0]
        cdef double* e_sta = &self.e_sta[0]
        cdef double* tab = &self.ocv[0]
        cdef double* decay = &self.decay[0]
        cdef double* s_i = &self.s_i[0]
        cdef double* s_pw = &self.s_pw[0]
        cdef double* s_ocv = &self.s_ocv[0]
        cdef double* s_vrc0 = &self.s_vrc0[0]
        cdef double* s_r0e = &self.s_r0e[0]
        cdef double* s_b = &self.s_b[0]
        cdef int* present = &self.present[0]
        cdef int* bms_open = &self.bms_open[0]
        cdef int* enable = &self.enable[0]
        cdef int* faults = &self.faults[0]
        cdef int* status = &self.status[0]
        cdef int* phase = &self.phase[0]
        cdef int* fault_inj = &self.fault_inj[0]
        cdef int* sta_lo = &self.sta_lo[0]
        cdef int* sta_hi = &self.sta_hi[0]
        cdef int* grid_up = &self.grid_up[0]
        cdef int* s_der = &self.s_der[0]
        cdef double knee = self.knee
        cdef double floor = self.floor
        cdef double term_c = self.term_c
        cdef double t_cold = self.t_cold
        cdef double f_cold = self.f_cold
        cdef double t_derate = self.t_derate
        cdef double f_hot = self.f_hot
        cdef double bms_cut = self.bms_cut
        cdef double bms_ov = self.bms_ov
        cdef double stress_ref = self.stress_ref
        cdef double stress_k = self.stress_k
        cdef double spread_a = self.spread_a
        cdef double spread_b = self.spread_b
        cdef double pump_factor = self.pump_factor
        cdef double coolant_trip = self.coolant_trip
        cdef double derate_k = self.derate_k
        cdef double derate_floor = self.derate_floor
        cdef double cell_trip = self.cell_trip
        cdef double runaway_c = self.runaway_c
        cdef int npts = self.npts
        cdef int s, i, j, fl, inj, stuck, g, pres, on, ph, der, st
        cdef double soc_i, temp_i, soh_i, r0e, x, ocv, a, b, vrc0, t_hot, v0, rt, cap
        cdef double ft, fs, i_acc, i_full, vlim, i_cv, plim, i_p, i_ch, itgt, p, loss, pin
        cdef double total, fixed, k, cur, vrc, vt, q, cool, dah, stress, chh, qa, qb, qc
        for s in range(s_lo, s_hi):
            g = grid_up[s]
            total = 0.0
            fixed = 0.0
            qa = 0.0
            qb = 0.0
            # pass 1: what each charger would deliver on its own
            for i in range(sta_lo[s], sta_hi[s]):
                fl = faults[i]
                inj = fault_inj[i]
                stuck = inj & INJ_STUCK
                pres = present[i]
                ocv = 0.0
                vrc0 = 0.0
                r0e = 0.0
                b = 0.0
                soc_i = 0.0
                temp_i = 0.0
                cap = 1.0
                if pres:
                    soc_i = soc[i]
                    temp_i = temp[i]
                    soh_i = soh[i]
                    cap = cap_ah[i] * soh_i
                    r0e = r0[i] * (1.0 + r_growth[i] * (1.0 - soh_i))
                    x = soc_i * npts
                    j = <int>x
                    if j < 0:
                        j = 0
                    elif j > npts - 1:
                        j = npts - 1
                    ocv = n_s[i] * (tab[j] + (x - j) * (tab[j + 1] - tab[j]))
                    a = decay[i]
                    b = r1[i] * (1.0 - a)
                    vrc0 = v_rc[i] * a
                s_ocv[i] = ocv
                s_vrc0[i] = vrc0
                s_r0e[i] = r0e
                s_b[i] = b
                der = 0
                itgt = 0.0
                if not stuck:
                    if wd_timeout[i] > 0.0:
                        hb_age[i] += h
                        if hb_age[i] >= wd_timeout[i] and not (fl & F_HEARTBEAT):
                            fl = fl | F_HEARTBEAT
                            enable[i] = 0
                    if not g:
                        fl = fl | F_GRID
                    if ch_temp[i] >= coolant_trip:
                        fl = fl | F_COOLANT
                    if pres:
                        t_hot = temp_i + 0.5 * (spread_a + spread_b * fabs(i_out[i]))
                        if t_hot >= cell_trip:
                            fl = fl | F_OVER_TEMP
                        if t_hot >= runaway_c:
                            fl = fl | F_RUNAWAY
                        if inj & INJ_BMS_COMM:
                            fl = fl | F_BMS_COMM
                    faults[i] = fl
                    on = pres and enable[i] and fl == 0
                    ph = PHASE_OFF
                    if on:
                        if soc_i >= target_soc[i]:
                            ph = PHASE_FULL
                        else:
                            if temp_i <= t_min[i] or temp_i >= t_max[i]:
                                ft = 0.0
                            elif temp_i < t_cold:
                                ft = f_cold
                            elif temp_i <= t_derate:
                                ft = 1.0
                            else:
                                ft = 1.0 - (1.0 - f_hot) * (temp_i - t_derate) / (
                                    t_max[i] - t_derate)
                            if soc_i <= knee:
                                fs = 1.0
                            else:
                                fs = (1.0 - soc_i) / (1.0 - knee)
                                if fs < floor:
                                    fs = floor
                            i_acc = i_bms[i] * ft * fs
                            i_full = (1.0 - soc_i) * 3600.0 * cap / h
                            vlim = dmin(dmin(set_v[i], v_rated[i]), v_max[i])
                            rt = r0e + b
                            v0 = ocv + vrc0
                            i_cv = (vlim - v0) / rt
                            if soc_i > knee and dmin(i_bms[i] * fs, i_cv) < term_c * cap:
                                ph = PHASE_FULL  # CV termination current reached
                            else:
                                plim = dmin(dmin(set_p[i], p_rated[i]), p_bms[i])
                                if ch_temp[i] > coolant_trip - derate_k:
                                    plim = plim * (1.0 - (1.0 - derate_floor) * (
                                        ch_temp[i] - coolant_trip + derate_k) / derate_k)
                                    der = 1
                                i_p = 0.0
                                if plim > 0.0:
                                    i_p = 2.0 * plim / (v0 + sqrt(v0 * v0 + 4.0 * rt * plim))
                                i_ch = dmin(dmin(set_i[i], i_rated[i]), i_p)
                                itgt = dmin(dmin(i_ch, i_acc), dmin(i_cv, i_full))
                                if itgt < 0.0:
                                    itgt = 0.0
                                if fs >= 1.0 and i_cv >= dmin(i_ch, i_acc):
                                    ph = PHASE_CC
                                else:
                                    ph = PHASE_TAPER
                                if itgt < i_ch:
                                    der = 1
                                if itgt > i_out[i] + ramp[i] * h:
                                    itgt = i_out[i] + ramp[i] * h
                        if bms_open[i]:
                            itgt = 0.0
                    phase[i] = ph
                elif pres and g and not bms_open[i]:
                    itgt = i_stuck[i]
                s_i[i] = itgt
                s_der[i] = der
                if g:
                    if itgt > 0.0:
                        p = (ocv + vrc0 + (r0e + b) * itgt) * itgt
                        s_pw[i] = p
                        loss = loss0[i] + loss1[i] * p + loss2[i] * p * p
                        total += p + loss
                        if stuck:
                            fixed += p + loss
                        else:
                            fixed += loss0[i]
                            qa += loss2[i] * s_pw[i] * s_pw[i]
                            qb += (1.0 + loss1[i]) * s_pw[i]
                    else:
                        total += standby[i]
                        fixed += standby[i]
            # grid connection: scale every charger's power by one factor k so that the input,
            # sum(k p + loss0 + loss1 k p + loss2 k^2 p^2) + fixed, equals the limit
            k = 1.0
            if total > grid_limit[s]:
                qc = fixed - grid_limit[s]
                if qc >= 0.0 or qb <= 0.0:
                    k = 0.0
                elif qa > 0.0:
                    k = 2.0 * (-qc) / (qb + sqrt(qb * qb - 4.0 * qa * qc))
                else:
                    k = -qc / qb
            # pass 2: integrate
            total = 0.0
            for i in range(sta_lo[s], sta_hi[s]):
                stuck = fault_inj[i] & INJ_STUCK
                cur = s_i[i]
                if k < 1.0 and not stuck and cur > 0.0:
                    p = k * s_pw[i]
                    v0 = s_ocv[i] + s_vrc0[i]
                    rt = s_r0e[i] + s_b[i]
                    cur = 2.0 * p / (v0 + sqrt(v0 * v0 + 4.0 * rt * p)) if p > 0.0 else 0.0
                p = 0.0
                if present[i]:
                    b = s_b[i]
                    r0e = s_r0e[i]
                    vrc = s_vrc0[i] + b * cur
                    vt = s_ocv[i] + r0e * cur + vrc
                    p = vt * cur
                    soh_i = soh[i]
                    soc[i] += cur * h / (3600.0 * cap_ah[i] * soh_i)
                    q = cur * cur * r0e + vrc * vrc / r1[i]
                    temp_i = temp[i]
                    cool = 0.0
                    if temp_i > cool_set[i]:
                        cool = cool_g[i] * (temp_i - cool_set[i])
                    temp[i] = temp_i + h * (q + q_fault[i] + h_amb[i] * (t_amb[i] - temp_i)
                                                 - cool) / c_th[i]
                    e_pack_heat[i] += q * h
                    if cur > 0.0:
                        dah = cur * h / 3600.0
                        efc[i] += dah / cap_ah[i]
                        stress = 1.0
                        if temp_i > stress_ref:
                            stress = exp(LN2 * (temp_i - stress_ref) / stress_k)
                        soh[i] = soh_i - fade[i] * dah / cap_ah[i] * stress
                    if soc[i] > 1.000001 or temp[i] >= bms_cut or vt > bms_ov * v_max[i]:
                        bms_open[i] = 1
                    v_rc[i] = vrc
                    v_term[i] = vt
                else:
                    v_term[i] = 0.0
                if not grid_up[s]:
                    loss = 0.0
                elif cur > 0.0:
                    loss = loss0[i] + loss1[i] * p + loss2[i] * p * p
                else:
                    loss = standby[i]
                pin = p + loss
                chh = ch_h[i]
                if fault_inj[i] & INJ_PUMP:
                    chh = chh * pump_factor
                ch_temp[i] += h * (loss - chh * (ch_temp[i] - t_amb[i])) / ch_c[i]
                i_out[i] = cur
                p_out[i] = p
                p_in[i] = pin
                e_in[i] += pin * h
                e_out[i] += p * h
                e_ch_loss[i] += loss * h
                total += pin
                if not stuck:
                    fl = faults[i]
                    ph = phase[i]
                    if fl & F_HEARTBEAT:
                        st = ST_WATCHDOG
                    elif fl:
                        st = ST_FAULT
                    elif not present[i]:
                        st = ST_STANDBY
                    elif ph == PHASE_FULL:
                        st = ST_FULL
                    elif ph != PHASE_OFF:
                        st = ST_DERATED if (s_der[i] or k < 1.0) else ST_CHARGING
                    else:
                        st = ST_READY
                    status[i] = st
            p_sta[s] = total
            e_sta[s] += total * h

    def step(self, double dt, int nsub, int s_lo, int s_hi):
        """Advance stations ``s_lo..s_hi-1`` by ``dt`` seconds in ``nsub`` equal sub-steps."""
        cdef int k
        cdef double h
        if dt <= 0.0 or nsub < 1 or s_hi <= s_lo:
            return
        h = dt / nsub
        with nogil:
            self._prepare(h, s_lo, s_hi)
            for k in range(nsub):
                self._substep(h, s_lo, s_hi)

    def first_crossing(self, int kind, double target, double h, int max_steps, int[::1] watch,
                       int s_lo, int s_hi):
        """Step in sub-steps of ``h`` until a watched slot crosses; return ``(seconds, slot)``.

        kind 0: SoC rises through ``target`` (time interpolated inside the sub-step);
        kind 1: a slot in the CC phase leaves it. ``(inf, -1)`` if none within ``max_steps``.
        Advances this kernel's own arrays: run it on a copy of the plant state.
        """
        cdef int n, i, lo, hi, best = -1
        cdef double t, tbest = INFINITY, before, after
        if s_hi <= s_lo or max_steps < 1:
            return INFINITY, -1
        lo = self.sta_lo[s_lo]
        hi = self.sta_hi[s_hi - 1]
        with nogil:
            self._prepare(h, s_lo, s_hi)
            for n in range(max_steps):
                for i in range(lo, hi):
                    self.s_prev[i] = self.soc[i]
                    self.s_pprev[i] = self.phase[i]
                self._substep(h, s_lo, s_hi)
                for i in range(lo, hi):
                    if not watch[i]:
                        continue
                    if kind == 0:
                        before = self.s_prev[i]
                        after = self.soc[i]
                        if before < target <= after:
                            t = (n + (target - before) / (after - before)) * h
                            if t < tbest:
                                tbest = t
                                best = i
                    elif self.s_pprev[i] == PHASE_CC and self.phase[i] != PHASE_CC:
                        t = (n + 1) * h
                        if t < tbest:
                            tbest = t
                            best = i
                if best >= 0:
                    break
        return tbest, best


cdef inline long r_u16(double v) noexcept nogil:
    # charger_regs._u16: Python's round() (half to even, as rint) clamped to 0..65535
    cdef double r = rint(v)
    if r < 0.0:
        return 0
    if r > 65535.0:
        return 65535
    return <long>r


cdef inline long r_s16(double v) noexcept nogil:
    # charger_regs._s16: round, clamp to -32768..32767, as a register value
    cdef double r = rint(v)
    if r < -32768.0:
        r = -32768.0
    elif r > 32767.0:
        r = 32767.0
    cdef long x = <long>r
    return x + 0x10000 if x < 0 else x


cdef class StatusRegs:
    """The charger status block (input registers 0..15) of every slot, computed as
    :mod:`host.plant.charger_regs` computes it, register for register, into a caller's
    ``array('H')``. Online and span checks stay with the caller."""

    cdef double[::1] soc, soh, v_term, i_out, p_out, temp, e_out, t
    cdef int[::1] present, fault_inj, status, faults, code
    cdef long long[::1] pack_id
    cdef int per_station, inj_bms
    cdef double spread_a, spread_b

    def __init__(self, dict a, t, pack_id, code, int per_station, double spread_a, double spread_b):
        self.soc = a["soc"]; self.soh = a["soh"]; self.v_term = a["v_term"]; self.i_out = a["i_out"]
        self.p_out = a["p_out"]; self.temp = a["temp"]; self.e_out = a["e_out"]
        self.present = a["present"]; self.fault_inj = a["fault_inj"]; self.status = a["status"]
        self.faults = a["faults"]
        self.t = t
        self.pack_id = pack_id
        self.code = code
        self.per_station = per_station
        self.spread_a = spread_a
        self.spread_b = spread_b
        self.inj_bms = INJ_BMS_COMM

    def read_into(self, int slot, int address, int count, unsigned short[::1] out):
        cdef int k, s = slot
        cdef long v
        cdef bint pr = self.present[s] != 0
        cdef bint ok = pr and not (self.fault_inj[s] & self.inj_bms)
        cdef unsigned long long pid = (<unsigned long long>self.pack_id[s]) & 0xFFFFFFFFULL
        cdef unsigned long long wh
        cdef double spread = 0.5 * (self.spread_a + self.spread_b * fabs(self.i_out[s]))
        for k in range(address, address + count):
            if k == 0:
                v = self.status[s]
            elif k == 1:
                v = 1 if ok else 0
            elif k == 2:
                v = <long>(pid >> 16) if ok else 0
            elif k == 3:
                v = <long>(pid & 0xFFFF) if ok else 0
            elif k == 4:
                v = self.code[s] if ok else 0
            elif k == 5:
                v = r_u16(self.soc[s] * 1000.0) if ok else 0
                if v > 1000:
                    v = 1000
            elif k == 6:
                v = r_u16(self.soh[s] * 1000.0) if ok else 0
                if v > 1000:
                    v = 1000
            elif k == 7:
                v = r_u16(self.v_term[s] * 10.0) if pr else 0
            elif k == 8:
                v = r_s16(self.i_out[s] * 10.0)
            elif k == 9:
                v = r_s16(self.p_out[s] / 100.0)
            elif k == 10:
                v = r_s16((self.temp[s] + spread) * 10.0) if ok else 0
            elif k == 11:
                v = r_s16((self.temp[s] - spread) * 10.0) if ok else 0
            elif k == 12:
                v = self.faults[s]
            elif k == 13 or k == 14:
                wh = (<unsigned long long>(<long long>(self.e_out[s] / 3600.0))) & 0xFFFFFFFFULL
                v = <long>(wh >> 16) if k == 13 else <long>(wh & 0xFFFF)
            else:
                v = (<long long>self.t[s // self.per_station]) & 0xFFFF
            out[k - address] = <unsigned short>v


cdef class ControlWrite:
    """An FC16 write of the whole control block (holding registers 0..5: enable, I, V, P
    limits, target SoC, heartbeat) to one charger, applied as
    :func:`host.plant.charger_regs.write_holding` applies it, from the request frame's bytes.
    ``apply`` returns False, having changed nothing, when a value is out of its range (the
    limits' range ends at the charger's own rated current, voltage and power, rounded as its
    info block reports them): the caller then takes the checked path, which raises the
    exception reply."""

    cdef double[::1] set_i, set_v, set_p, target_soc, hb_age, i_rated, v_rated, p_rated
    cdef int[::1] enable, faults
    cdef long long[::1] hb_value
    cdef int f_heartbeat

    def __init__(self, dict a, hb_value):
        self.set_i = a["set_i"]; self.set_v = a["set_v"]; self.set_p = a["set_p"]
        self.target_soc = a["target_soc"]; self.hb_age = a["hb_age"]
        self.i_rated = a["i_rated"]; self.v_rated = a["v_rated"]; self.p_rated = a["p_rated"]
        self.enable = a["enable"]; self.faults = a["faults"]
        self.hb_value = hb_value
        self.f_heartbeat = F_HEARTBEAT

    def apply(self, int slot, const unsigned char[:] frame, int offset):
        cdef int k
        cdef long r[6]
        for k in range(6):
            r[k] = (<long>frame[offset + 2 * k] << 8) | frame[offset + 2 * k + 1]
        if (r[0] > 1 or r[1] > r_u16(self.i_rated[slot] * 10.0) or r[2] > r_u16(self.v_rated[slot] * 10.0)
                or r[3] > r_u16(self.p_rated[slot] / 100.0) or r[4] > 1000):
            return False
        if not (r[0] == 1 and (self.faults[slot] & self.f_heartbeat)):  # Plant.set_enable
            self.enable[slot] = 1 if r[0] == 1 else 0
        self.set_i[slot] = r[1] * 0.1
        self.set_v[slot] = r[2] * 0.1
        self.set_p[slot] = r[3] * 100.0
        self.target_soc[slot] = r[4] / 1000.0
        if r[5] != self.hb_value[slot]:  # Plant.heartbeat
            self.hb_value[slot] = r[5]
            self.hb_age[slot] = 0.0
        return True



cdef class ReadySlots:
    """The plant-only dispatcher's questions about a rack, asked once or more per event:
    numpy on a 23-slot rack costs more in call overhead than the scan itself, so the arrays
    (the plant's SoC, the dispatcher's pack-type index and reservations) are bound once."""

    cdef const double[::1] soc
    cdef const int[::1] type_idx
    cdef const signed char[::1] reserved

    def __init__(self, const double[::1] soc, const int[::1] type_idx, const signed char[::1] reserved):
        self.soc = soc
        self.type_idx = type_idx
        self.reserved = reserved

    def fullest(self, int lo, int hi, int type_code, double min_soc):
        """Slot in ``lo..hi-1`` holding a pack of ``type_code``, not reserved, with SoC at least
        ``min_soc`` and the highest SoC (the first of equals, as ``numpy.argmax``); -1 if none."""
        cdef int i, best = -1
        cdef double best_soc = 0.0
        for i in range(lo, hi):
            if self.type_idx[i] == type_code and not self.reserved[i] and self.soc[i] >= min_soc:
                if best < 0 or self.soc[i] > best_soc:
                    best = i
                    best_soc = self.soc[i]
        return best

    def of_type(self, int lo, int hi, int type_code):
        """The slots in ``lo..hi-1`` holding a pack of ``type_code`` that is not reserved."""
        cdef int i
        return [i for i in range(lo, hi) if self.type_idx[i] == type_code and not self.reserved[i]]
