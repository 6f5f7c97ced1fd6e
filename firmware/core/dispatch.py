"""Charge dispatch: per-slot setpoints that share the grid connection.

``update(now_ms, price=None, demand=None, other_kw=0)`` fills preallocated arrays,
in the charger's register units so the supervisor writes them as they are:

    enable[i]  0/1              p_dkw[i]  power limit, 0.1 kW
    i_da[i]    current, 0.1 A   v_dv[i]   voltage limit, 0.1 V
    target_d[i] stop SoC, 0.1 % why[i]    WHY_* reason (OK when enabled)

``control_regs(slot, heartbeat)`` gives the FC16 control block (``CHG_HR_ENABLE`` ..
``CHG_HR_HEARTBEAT``).

Rules, per slot: a slot charges only with a pack of a known type, fresh telemetry
and no charger fault, thermal alarm, quarantine or reservation, below
``limits.full_soc``. Its cap is the least of its charger's limit (its ``charger_kw``, and
the rated power the charger reports, ``rated``), the pack type's power limit and its
current limit at the measured voltage, times a JEITA factor:
none below ``stop_below_c`` (or the pack's cell minimum) and above ``stop_above_c``
(or the pack's cell maximum), ``cold_derate_pct`` below ``cold_full_c``, falling
linearly from 100 % at ``derate_from_c`` to ``derate_min_pct`` at the stop. In an
expensive time-of-use band (``price > tou.expensive_above``) with at least
``tou.min_ready`` packs ready, caps shrink to ``tou.expensive_pct``.

The grid budget (``grid_kw - other_kw``) goes to slots in priority order, each up to
its cap. Groups first: packs of a type that ``demand`` ({pack type: vehicles expected
soon}) says will run short, then packs below the hand-over SoC, then packs above it
topping up. Within a group, first in, first charged: a pack ranks by the update in
which it was first seen in its slot (a sequence number kept per slot), so a pack that
arrives later never takes a charger from one that waits, whatever the SoC readings
(ties on SoC handed the charger to the lowest slot: starvation and chatter). Packs
first seen in the same update (boot) rank nearest to hand-over first, then by slot.
A charger switched on stays on for ``limits.charge_min_on_ms`` ahead of every other
slot (still within its cap and the grid budget, and only while the slot may charge).
A slot whose share would be under 1 kW stays off. ``switches`` counts switch-ons.
Current and voltage limits stay within the charger's rated current and voltage too: a
charger refuses a control block with a value above its rating (docs/register-map.md).
"""

from firmware.compat import const, ticks_diff
from firmware.core import rack as rk
from firmware.proto import regmap as rm

OK = const(0)
EMPTY = const(1)
STALE = const(2)
FAULT = const(3)
ALARM = const(4)
RESERVED = const(5)
FULL = const(6)
TEMP = const(7)
GRID = const(8)
UNKNOWN_TYPE = const(9)
TOU = const(10)
WHY_NAMES = ("ok", "empty", "stale", "fault", "alarm", "reserved", "full", "temp", "grid", "unknown_type",
             "tou")

_MIN_DKW = const(10)  # 1 kW: less is not worth switching a module on for
_PINNED = const(3)  # group offset of a slot that is not within its minimum on-time
_U16 = const(0xFFFF)  # a setpoint register holds no more


def _d(x):
    return int(round(x * 10))


class Dispatch:
    def __init__(self, cfg, rack):
        lim = cfg["limits"]
        self.rack = rack
        self.n = n = rack.n
        self.grid_dkw = _d(lim["grid_kw"])
        self.cfg_dkw = [min(_d(s["charger_kw"]), _U16) for s in cfg["slots"]]
        self.slot_dkw = list(self.cfg_dkw)  # ... within the rated power each charger reports
        self.max_da = [_U16] * n  # rated current and voltage each charger reports (0.1 A, 0.1 V)
        self.max_dv = [_U16] * n
        self.stop_below = _d(lim["stop_below_c"])
        self.cold_full = _d(lim["cold_full_c"])
        self.cold_pm = _d(lim["cold_derate_pct"])  # per mille
        self.derate_from = _d(lim["derate_from_c"])
        self.min_pm = _d(lim["derate_min_pct"])
        self.stop_above = _d(lim["stop_above_c"])
        self.full_d = _d(lim["full_soc"])
        self.handover_d = _d(lim["handover_soc"])
        # per pack type: (max 0.1 kW, max 0.1 A, max 0.1 V, cell min, cell max 0.1 degC, kWh)
        self.ptypes = {}
        for name, pt in cfg["pack_types"].items():
            self.ptypes[name] = (
                _d(pt["max_charge_kw"]), _d(pt["max_charge_a"]), _d(pt["max_charge_v"]),
                _d(pt["cell_temp_min_c"]), _d(pt["cell_temp_max_c"]), int(pt["capacity_kwh"]),
            )
        tou = cfg.get("tou")
        self.tou = (tou["expensive_above"], tou["min_ready"], int(tou["expensive_pct"] * 10)) if tou else None
        self.bands = tuple((b["start_min"], b["end_min"], b["price"]) for b in tou["bands"]) if tou else ()
        self.enable = bytearray(n)
        self.p_dkw = [0] * n
        self.i_da = [0] * n
        self.v_dv = [0] * n
        self.target_d = [0] * n
        self.why = bytearray(n)
        self.total_dkw = 0  # power granted in the last update
        self.slowed = False  # the last update applied the time-of-use cap
        self.min_on_ms = lim["charge_min_on_ms"]
        self.switches = 0  # charger switch-ons since start
        self._cap = [0] * n
        self._key = [0] * n  # energy to go
        self._grp = bytearray(n)
        self._seq = [0] * n  # first-in order: the update in which the slot's pack was first seen
        self._who = [None] * n  # type: list  # the pack that _seq belongs to
        self._next = 0
        self._on_at = [0] * n  # ticks of the slot's last switch-on
        self._order = list(range(n))
        self._ready = {name: 0 for name in cfg["pack_types"]}
        self._regs = [0] * rm.CHG_CONTROL_COUNT

    def jeita_pm(self, t_max, t_min, cell_min, cell_max):
        """Charge factor in per mille for cell temperatures in 0.1 degC."""
        hot = min(self.stop_above, cell_max)
        cold = max(self.stop_below, cell_min)
        if t_max > hot or t_min < cold:
            return 0
        f = 1000
        if t_min < self.cold_full:
            f = self.cold_pm
        if t_max > self.derate_from:
            span = hot - self.derate_from
            g = self.min_pm if span <= 0 else 1000 - (1000 - self.min_pm) * (t_max - self.derate_from) // span
            f = min(f, g)
        return f

    def _off(self, i, why):
        self.enable[i] = 0
        self.p_dkw[i] = self.i_da[i] = self.v_dv[i] = self._cap[i] = 0
        self.target_d[i] = self.full_d
        self.why[i] = why

    def _cap_of(self, i, now_ms):
        """Cap in 0.1 kW for slot i, or 0 with why[i] set."""
        r = self.rack
        st = r.state[i]
        if r.pack[i] is None or st == rk.EMPTY:
            return EMPTY
        if not r.fresh(i, now_ms):
            return STALE
        th = r.thermal
        if st == rk.QUARANTINED or (th is not None and th.blocked(i)):
            return ALARM
        if st == rk.FAULT or r.faults[i]:
            return FAULT
        if st == rk.RESERVED:
            return RESERVED
        pt = self.ptypes.get(r.ptype[i])
        if pt is None:
            return UNKNOWN_TYPE
        if r.soc[i] >= self.full_d:
            return FULL
        f = self.jeita_pm(r.t_max[i], r.t_min[i], pt[3], pt[4])
        if not f:
            return TEMP
        v = r.volt[i] if r.volt[i] > 0 else pt[2]
        a = min(pt[1], self.max_da[i])
        cap = min(self.slot_dkw[i], pt[0], a * v // 10000)  # 0.1 A x 0.1 V -> 0.1 kW
        self._cap[i] = cap * f // 1000
        self.i_da[i] = a * f // 1000
        self.v_dv[i] = min(pt[2], self.max_dv[i])
        return OK

    def rated(self, slot, p_dkw, i_da, v_dv):
        """The rated power (0.1 kW), current (0.1 A) and voltage (0.1 V) charger ``slot``
        reports in its info block, 0 where it reports none: its setpoints stay within them,
        the ones in force at once (the control write that follows must not be refused)."""
        c = self.cfg_dkw[slot]
        p = self.slot_dkw[slot] = min(c, p_dkw) if p_dkw > 0 else c
        a = self.max_da[slot] = i_da if i_da > 0 else _U16
        v = self.max_dv[slot] = v_dv if v_dv > 0 else _U16
        if self.p_dkw[slot] > p:
            self.total_dkw -= self.p_dkw[slot] - p
            self.p_dkw[slot] = p
        if self.i_da[slot] > a:
            self.i_da[slot] = a
        if self.v_dv[slot] > v:
            self.v_dv[slot] = v

    def price_at(self, minute_of_day):
        """Price of the time-of-use band holding ``minute_of_day``, or None."""
        m = minute_of_day % 1440
        for b in self.bands:
            if b[0] <= m < b[1]:
                return b[2]
        return None

    def update(self, now_ms, price=None, demand=None, other_kw=0):
        """Recompute every slot's setpoint. Returns the number of slots enabled."""
        if other_kw < 0:
            raise ValueError("other_kw must be >= 0")
        r = self.rack
        ready = self._ready
        for k in ready:
            ready[k] = 0
        total_ready = 0
        for i in range(self.n):
            if r.available(i, now_ms) and r.ptype[i] in ready:
                ready[r.ptype[i]] += 1
                total_ready += 1
        slow = 1000
        if self.tou is not None and price is not None and price > self.tou[0] and total_ready >= self.tou[1]:
            slow = self.tou[2]
        self.slowed = slow < 1000
        cands = 0
        order = self._order
        grp = self._grp
        seqs = self._seq
        keys = self._key
        seq = self._next
        seen = False
        for i in range(self.n):
            p = r.pack[i]
            if p is not None and p != self._who[i]:
                self._who[i] = p
                seqs[i] = seq
                seen = True
            why = self._cap_of(i, now_ms)
            if why != OK:
                self._off(i, why)
                continue
            if self._cap[i] * slow // 1000 < _MIN_DKW:
                self._off(i, TOU if self._cap[i] >= _MIN_DKW else TEMP)
                continue
            self._cap[i] = self._cap[i] * slow // 1000
            t = r.ptype[i]
            short = demand is not None and demand.get(t, 0) > ready[t]
            togo = self.handover_d - r.soc[i]
            group = 0 if short else (1 if togo > 0 else 2)
            # 0 <=: on for over 2**29 ms, the switch-on tick looks ahead (32-bit ticks wrap)
            if not (self.enable[i] and 0 <= ticks_diff(now_ms, self._on_at[i]) < self.min_on_ms):
                group += _PINNED
            energy = (togo if togo > 0 else self.full_d - r.soc[i]) * self.ptypes[t][5]
            grp[i] = group
            keys[i] = energy
            sq = seqs[i]
            j = cands  # insertion sort by (group, seq, energy); ties keep slot order
            while j > 0:
                o = order[j - 1]
                g = grp[o]
                if g < group or (g == group and (seqs[o] < sq or (seqs[o] == sq and keys[o] <= energy))):
                    break
                order[j] = o
                j -= 1
            order[j] = i
            cands += 1
        if seen:
            self._next = seq + 1  # one a swap at most: 2**30 of them outlast the station
        budget = self.grid_dkw - _d(other_kw)
        granted = on = 0
        for k in range(cands):
            i = order[k]
            give = min(self._cap[i], budget)
            if give < _MIN_DKW:
                self._off(i, GRID)
                continue
            budget -= give
            granted += give
            on += 1
            if not self.enable[i]:
                self._on_at[i] = now_ms
                self.switches += 1
            self.enable[i] = 1
            self.p_dkw[i] = give
            self.target_d[i] = self.full_d
            self.why[i] = OK
        self.total_dkw = granted
        return on

    def control_regs(self, slot, heartbeat, out=None):
        """The FC16 control block for one charger: enable, I, V, P limits, target SoC,
        heartbeat. Fills ``out`` (or an internal list reused on every call)."""
        if type(slot) is not int or not 0 <= slot < self.n:
            raise ValueError("slot must be 0..%d, got %r" % (self.n - 1, slot))
        o = self._regs if out is None else out
        o[rm.CHG_HR_ENABLE - rm.CHG_CONTROL_BASE] = self.enable[slot]
        o[rm.CHG_HR_I_LIMIT - rm.CHG_CONTROL_BASE] = self.i_da[slot]
        o[rm.CHG_HR_V_LIMIT - rm.CHG_CONTROL_BASE] = self.v_dv[slot]
        o[rm.CHG_HR_P_LIMIT - rm.CHG_CONTROL_BASE] = self.p_dkw[slot]
        o[rm.CHG_HR_TARGET_SOC - rm.CHG_CONTROL_BASE] = self.target_d[slot]
        o[rm.CHG_HR_HEARTBEAT - rm.CHG_CONTROL_BASE] = heartbeat & 0xFFFF
        return o
