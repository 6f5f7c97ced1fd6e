"""Thermal-runaway detection in pack storage (GB/T 51077-2024 §12.4).

Per slot, from the hottest-cell temperature of each live charger read:

- over-temperature: a reading at or above ``limits.runaway.over_temp_c`` (one
  above the sensor's 200 degC scale too; one below -40 degC is a sensor fault);
- rate of rise: the rise since the newest earlier reading at least
  ``rise_window_ms`` old, over the time between the two readings (ticks taken when
  they were read, not poll counts), at or above ``rise_c_per_min``;
- the charger's own thermal-runaway fault bit;
- smoke: a detector input for one slot, or for the whole store (slot -1).

An alarm latches per slot until an operator clears it, and ``blocked(slot)`` stays
true meanwhile (a store-wide smoke alarm blocks every slot). Each new alarm is
queued as ``(slot, cause, value)`` for the supervisor: stop that slot's charger at
once, quarantine the pack, raise the alarm, move the pack to the isolation bay when
the robot is free. ``value`` is the reading in 0.1 degC (over-temperature, charger)
or 0.1 degC per minute (rise). Temperatures are integers in 0.1 degC, as the chargers
report them, so nothing here allocates per reading.
"""

from firmware.compat import const, ticks_diff

NONE = const(0)
OVER_TEMP = const(1)
RISE = const(2)
SMOKE = const(3)
CHARGER = const(4)
CAUSE_NAMES = ("none", "over_temp", "rise", "smoke", "charger")
STORE = const(-1)  # slot number of the store-wide smoke input

_K = const(6)  # readings kept per slot, spaced so they span more than the window
_Q = const(16)  # queued events; latched causes stay readable if the queue overflows
_T_MIN = const(-400)  # below this a cell reading is a sensor fault, 0.1 degC
_T_MAX = const(2000)  # above this the reading is off the sensor's scale: runaway, not a fault
# A slot's history this old is dropped (expire): far older than any rise window, and
# far younger than 2**29 ms, past which a reading's ticks would look like the future.
_FORGET_MS = const(3600000)


class Thermal:
    def __init__(self, cfg):
        rw = cfg["limits"]["runaway"]
        self.n = n = len(cfg["slots"])
        self.over_d = int(round(rw["over_temp_c"] * 10))
        self.rise_d = int(round(rw["rise_c_per_min"] * 10))  # 0.1 degC per minute
        self.window = rw["rise_window_ms"]
        self.smoke_latch = rw["smoke_latch"]
        self._spacing = max(1, self.window // (_K - 2))
        self._t = [0] * (n * _K)  # ticks of kept readings, ring per slot
        self._v = [0] * (n * _K)  # their temperatures
        self._count = bytearray(n)
        self._head = bytearray(n)  # index of the newest kept reading
        self._last = [0] * n  # ticks of the last reading seen (kept or not)
        self.cause = bytearray(n)  # latched cause per slot, NONE when clear
        self.value = [0] * n  # the reading that latched it
        self.store_smoke = False
        self._qs = [0] * _Q
        self._qc = bytearray(_Q)
        self._qv = [0] * _Q
        self._qh = self._qn = 0
        self.dropped = 0  # events that found the queue full
        self._scan = 0  # next slot expire() looks at

    def _slot(self, slot, store_ok=False):
        if type(slot) is not int or not (-1 if store_ok else 0) <= slot < self.n:
            extra = " or -1" if store_ok else ""
            raise ValueError("slot must be 0..%d%s, got %r" % (self.n - 1, extra, slot))

    def _raise(self, slot, cause, value):
        if slot == STORE:
            if self.store_smoke:
                return NONE
            self.store_smoke = True
        else:
            if self.cause[slot]:
                return NONE
            self.cause[slot] = cause
            self.value[slot] = value
        if self._qn == _Q:
            self.dropped += 1
        else:
            i = (self._qh + self._qn) % _Q
            self._qs[i], self._qc[i], self._qv[i] = slot, cause, value
            self._qn += 1
        return cause

    def check(self, slot, t_max_d, now_ms):
        """Feed one live reading (hottest cell, 0.1 degC, read at ``now_ms``). Returns
        the cause of an alarm this reading raised, else NONE."""
        self._slot(slot)
        if type(t_max_d) is not int or t_max_d < _T_MIN:
            raise ValueError("temperature must be an int in 0.1 degC, at least %d" % _T_MIN)
        base = slot * _K
        cnt = self._count[slot]
        if cnt and ticks_diff(now_ms, self._last[slot]) < 0:
            raise ValueError("reading at %d is older than the last one (%d)" % (now_ms, self._last[slot]))
        self._last[slot] = now_ms
        if t_max_d > _T_MAX:  # a pack in runaway passes 200 degC: latch, keep it out of the history
            return self._raise(slot, OVER_TEMP, t_max_d)
        raised = NONE
        if t_max_d >= self.over_d:
            raised = self._raise(slot, OVER_TEMP, t_max_d)
        # rate over the newest kept reading that is at least a window old
        h = self._head[slot]
        for k in range(cnt):
            i = base + (h - k) % _K
            age = ticks_diff(now_ms, self._t[i])
            if age >= self.window:
                rate = (t_max_d - self._v[i]) * 60000 // age
                if rate >= self.rise_d and not raised:
                    raised = self._raise(slot, RISE, rate)
                break
        if not cnt or ticks_diff(now_ms, self._t[base + h]) >= self._spacing:
            h = (h + 1) % _K if cnt else 0
            self._t[base + h], self._v[base + h] = now_ms, t_max_d
            self._head[slot] = h
            if cnt < _K:
                self._count[slot] = cnt + 1
        return raised

    def expire(self, now_ms):
        """Called every main-loop tick: drops one slot's history (round robin) if its
        last reading is over an hour old, e.g. a charger off the bus for days."""
        i = self._scan
        self._scan = i + 1 if i + 1 < self.n else 0
        if self._count[i] and ticks_diff(now_ms, self._last[i]) > _FORGET_MS:
            self.forget(i)

    def charger_fault(self, slot, t_max_d=0):
        """The charger reported its thermal-runaway fault bit."""
        self._slot(slot)
        return self._raise(slot, CHARGER, t_max_d)

    def smoke(self, active, slot=STORE):
        """Smoke detector input for one slot or the whole store (-1)."""
        self._slot(slot, True)
        if type(active) is not bool:
            raise ValueError("active must be True or False")
        if active:
            return self._raise(slot, SMOKE, 0)
        if not self.smoke_latch:
            if slot == STORE:
                self.store_smoke = False
            elif self.cause[slot] == SMOKE:
                self.cause[slot] = NONE
        return NONE

    def forget(self, slot):
        """A different pack is in the slot: its history says nothing about the new one."""
        self._slot(slot)
        self._count[slot] = 0
        self._head[slot] = 0

    def clear(self, slot):
        """Operator clears a latched alarm (slot -1: the store smoke alarm). Returns
        the cause that was latched. The history is dropped so the rise is measured
        afresh, and a condition still present latches again on the next reading."""
        self._slot(slot, True)
        if slot == STORE:
            was = SMOKE if self.store_smoke else NONE
            self.store_smoke = False
            return was
        was = self.cause[slot]
        self.cause[slot] = NONE
        self.forget(slot)
        return was

    def blocked(self, slot):
        """True while this slot must not charge: its own alarm or store-wide smoke."""
        return self.store_smoke or self.cause[slot] != NONE

    def pop(self):
        """Oldest queued alarm as (slot, cause, value), or None."""
        if not self._qn:
            return None
        i = self._qh
        self._qh = (i + 1) % _Q
        self._qn -= 1
        return self._qs[i], self._qc[i], self._qv[i]
