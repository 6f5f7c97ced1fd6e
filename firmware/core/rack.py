"""Rack slots and the packs in them, fed only by live charger reads.

Per slot (struct of arrays, index = position in ``cfg["slots"]``): pack serial and
type, SoC/SoH (0.1 %), hottest/coldest cell (0.1 degC), cycles, charger status and
fault bits, the ticks of the last good read, and a state:

    EMPTY  CHARGING  READY (SoC >= hand-over)  RESERVED (for a swap)
    QUARANTINED (thermal alarm or operator; until the pack goes to isolation)
    FAULT (charger fault bits, ``set_fault``, or a pack the slot was not expected to hold)

Values count only while fresh: read within ``limits.telemetry_stale_ms`` from a
charger that is online. ``charger_offline`` makes a slot unavailable at once; its
old values are never used as current (``telemetry`` returns None). Packs are assets:
``assets[pack] = [type, cycles, soh 0.1 %, swaps]``.

At boot ``restore(journal.state)`` loads what the journal says each slot holds; the
first read of each charger is checked against it, and a different pack faults the
slot until an operator confirms it. Every change of pack or state is reported to the
``on_change`` callback it is handed (the supervisor journals it as RK), and a thermal
alarm quarantines the slot in the same read.

The bay's port: ``reserve_for(model, now)``, ``reserve_slot``, ``release``,
``free_slot``, ``holds``, ``take``, ``set_fault``, ``to_isolation``.
"""

from firmware.compat import const, sized_dict, ticks_diff
from firmware.proto import regmap as rm

EMPTY = const(0)
CHARGING = const(1)
READY = const(2)
RESERVED = const(3)
QUARANTINED = const(4)
FAULT = const(5)
STATE_NAMES = ("EMPTY", "CHARGING", "READY", "RESERVED", "QUARANTINED", "FAULT")

_STICKY_FAULT = const(1)
_STICKY_QUARANTINE = const(2)
_CHARGER_OFF = (rm.CHG_ST_FAULT,)  # watchdog stops also set a fault bit
_F_PLACE_OK = const(0x0A00)  # HEARTBEAT | GRID: the charger still reads its pack


class Rack:
    def __init__(self, cfg, thermal=None, on_change=None):
        lim = cfg["limits"]
        self.n = n = len(cfg["slots"])
        self.ids = [s["id"] for s in cfg["slots"]]
        self.handover_d = int(round(lim["handover_soc"] * 10))
        self.stale_ms = lim["telemetry_stale_ms"]
        self.compat = cfg["compatibility"]
        self.pack_types = cfg["pack_types"]
        self.type_by_code = cfg["pack_type_by_code"]
        self.iso_capacity = cfg["isolation_bay"]["capacity"]
        self.thermal = thermal
        # on_change(slot, pack, type, soc %, soh %, cycles, state name): slot >= n is isolation
        self.on_change = on_change
        self.pack = [None] * n  # type: list  # serial (u32) or None
        self._hi = [-1] * n  # raw serial words of the last read, to spot a change cheaply
        self._lo = [-1] * n
        self.ptype = [None] * n  # type: list  # pack type id from the config, None if the code is unknown
        self.soc = [0] * n  # 0.1 %
        self.soh = [0] * n
        self.t_max = [0] * n  # 0.1 degC
        self.t_min = [0] * n
        self.volt = [0] * n  # 0.1 V
        self.amps = [0] * n  # 0.1 A, + into the pack
        self.power = [0] * n  # 0.1 kW
        self.cycles = [0] * n
        self.status = bytearray(n)
        self.faults = [0] * n
        self.seen = [0] * n  # ticks of the last good read
        self.online = bytearray(n)
        self.state = bytearray(n)
        self.sticky = bytearray(n)  # operator-cleared fault or quarantine
        self.reason = [None] * n  # type: list  # why FAULT / QUARANTINED
        self.reserved_model = [None] * n  # type: list
        self.expect = [None] * n  # type: list  # pack that should be here: journal or a store move
        self._exp_boot = bytearray(n)  # 1: the journal's view, where a missing pack counts too
        self._known = bytearray(n)  # the journal holds this slot's pack and state
        self.isolation = []  # packs in the isolation bay
        self.assets = sized_dict(3 * n + 8)  # the most _asset keeps: never grows at run time
        self.why = None  # why the last reserve_for returned None

    # -- helpers
    def _slot(self, slot):
        if type(slot) is not int or not 0 <= slot < self.n:
            raise ValueError("slot must be 0..%d, got %r" % (self.n - 1, slot))

    def fresh(self, slot, now_ms):
        """Telemetry read from a live charger within telemetry_stale_ms."""
        if not self.online[slot]:
            return False
        age = ticks_diff(now_ms, self.seen[slot])
        return 0 <= age <= self.stale_ms

    def telemetry(self, slot, now_ms):
        """(soc %, soh %, t_max degC, t_min degC) while fresh, else None."""
        self._slot(slot)
        if not self.fresh(slot, now_ms) or self.pack[slot] is None:
            return None
        return self.soc[slot] / 10, self.soh[slot] / 10, self.t_max[slot] / 10, self.t_min[slot] / 10

    def _derive(self, i):
        if self.sticky[i] == _STICKY_FAULT:
            return FAULT
        if self.sticky[i] == _STICKY_QUARANTINE:
            return QUARANTINED
        if self.pack[i] is None:
            return EMPTY
        if self.faults[i] or self.status[i] in _CHARGER_OFF:
            return FAULT
        if self.reserved_model[i] is not None:
            return RESERVED
        return READY if self.soc[i] >= self.handover_d else CHARGING

    def _update_state(self, i, force=False):
        st = self._derive(i)
        if st != self.state[i] or force:
            self.state[i] = st
            if self.on_change is not None:
                p = self.pack[i]
                a = self.assets.get(p) if p is not None else None
                self.on_change(i, p, self.ptype[i], self.soc[i] / 10 if p is not None else None,
                               self.soh[i] / 10 if p is not None else None,
                               a[1] if a else None, STATE_NAMES[st])
        return st

    def _asset(self, pack, ptype):
        a = self.assets.get(pack)
        if a is None:
            if len(self.assets) >= 3 * self.n + 8:  # drop packs that left long ago
                here = set(self.pack)
                for p in list(self.assets):
                    if p not in here and p not in self.isolation:
                        del self.assets[p]
            a = [ptype, 0, 0, 0]
            self.assets[pack] = a
        elif ptype is not None:
            a[0] = ptype
        return a

    # -- telemetry in
    def update_from_charger(self, slot, regs, now_ms, raw16=False):
        """Decode one status block (``regmap.CHG_STATUS_COUNT`` input registers from
        ``CHG_STATUS_BASE``) read at ``now_ms``. Returns the slot's state. ``raw16``: the
        registers are a bus reply's (16-bit by construction), not checked one by one again."""
        self._slot(slot)
        if len(regs) < rm.CHG_STATUS_COUNT:
            raise ValueError("need %d status registers, got %d" % (rm.CHG_STATUS_COUNT, len(regs)))
        for k in range(0 if raw16 else rm.CHG_STATUS_COUNT):
            v = regs[k]
            if type(v) is not int or not 0 <= v <= 0xFFFF:
                raise ValueError("register %d is not a 16-bit value: %r" % (k, v))
        i = slot
        changed = False
        if regs[rm.CHG_IR_PACK_PRESENT]:
            hi, lo = regs[rm.CHG_IR_PACK_ID_HI], regs[rm.CHG_IR_PACK_ID_LO]
            if hi != self._hi[i] or lo != self._lo[i] or self.pack[i] is None:
                self._hi[i], self._lo[i] = hi, lo
                pack = rm.u32(hi, lo)
                changed = pack != self.pack[i]
                self.pack[i] = pack
            self.ptype[i] = self.type_by_code.get(regs[rm.CHG_IR_PACK_TYPE])
        elif self.pack[i] is not None:
            self.pack[i] = self.ptype[i] = None
            self._hi[i] = self._lo[i] = -1
            changed = True
        self.status[i] = regs[rm.CHG_IR_STATUS]
        self.soc[i] = regs[rm.CHG_IR_SOC]
        self.soh[i] = regs[rm.CHG_IR_SOH]
        self.volt[i] = regs[rm.CHG_IR_VOLTAGE]
        # Signed registers, rm.s16 inline (a call per value costs more than the sum).
        v = regs[rm.CHG_IR_CURRENT]
        self.amps[i] = v - 0x10000 if v & 0x8000 else v
        v = regs[rm.CHG_IR_POWER]
        self.power[i] = v - 0x10000 if v & 0x8000 else v
        v = regs[rm.CHG_IR_TEMP_MAX]
        self.t_max[i] = v - 0x10000 if v & 0x8000 else v
        v = regs[rm.CHG_IR_TEMP_MIN]
        self.t_min[i] = v - 0x10000 if v & 0x8000 else v
        self.faults[i] = regs[rm.CHG_IR_FAULTS]
        self.seen[i] = now_ms
        self.online[i] = 1
        pack = self.pack[i]
        if changed:
            self.reserved_model[i] = None
            self._pack_left(i)
        if pack is not None:
            a = self._asset(pack, self.ptype[i])
            a[2] = self.soh[i]
        exp = self.expect[i]
        if exp is not None or self._exp_boot[i]:
            if pack == exp:
                self.expect[i] = None
                self._exp_boot[i] = 0
            elif pack is not None or self._exp_boot[i]:
                self.sticky[i] = _STICKY_FAULT
                self.reason[i] = "pack_mismatch" if pack is not None else "pack_missing"
                self.expect[i] = None
                self._exp_boot[i] = 0
        if self.thermal is not None and pack is not None:
            cause = self.thermal.check(i, self.t_max[i], now_ms)
            if self.faults[i] & rm.CHG_FAULT_THERMAL_RUNAWAY:
                cause = self.thermal.charger_fault(i, self.t_max[i]) or cause
            if self.thermal.cause[i] and self.sticky[i] != _STICKY_FAULT:
                self.reserved_model[i] = None
                if self.sticky[i] != _STICKY_QUARANTINE:
                    self.sticky[i] = _STICKY_QUARANTINE
                    self.reason[i] = "thermal"
        force = changed or not self._known[i]
        self._known[i] = 1
        return self._update_state(i, force=force)

    def update_info(self, slot, regs):
        """Decode the info block (``CHG_INFO_COUNT`` registers from ``CHG_INFO_BASE``):
        the pack's cycle count goes to its asset record."""
        self._slot(slot)
        if len(regs) < rm.CHG_INFO_COUNT:
            raise ValueError("need %d info registers, got %d" % (rm.CHG_INFO_COUNT, len(regs)))
        cy = regs[rm.CHG_IR_PACK_CYCLES - rm.CHG_INFO_BASE]
        if type(cy) is not int or not 0 <= cy <= 0xFFFF:
            raise ValueError("cycle register is not a 16-bit value: %r" % (cy,))
        self.cycles[slot] = cy
        if self.pack[slot] is not None:
            self._asset(self.pack[slot], self.ptype[slot])[1] = cy

    def charger_offline(self, slot):
        """The bus gave up on this charger: the slot is unavailable and its values stale."""
        self._slot(slot)
        self.online[slot] = 0
        if self.reserved_model[slot] is not None:
            self.reserved_model[slot] = None
            self._update_state(slot)

    # -- selection
    def available(self, slot, now_ms):
        """READY, fresh, no thermal block, a known pack type: may be handed out."""
        return (self.state[slot] == READY and self.fresh(slot, now_ms) and self.ptype[slot] is not None
                and (self.thermal is None or not self.thermal.blocked(slot)))

    def ready_count(self, now_ms, ptype=None):
        c = 0
        for i in range(self.n):
            if self.available(i, now_ms) and (ptype is None or self.ptype[i] == ptype):
                c += 1
        return c

    def _better(self, i, j):
        """Is slot i a better pack to hand out than slot j? Healthiest first (2 % bands),
        then coolest (5 degC bands), then fewest cycles (wear levelling), then SoC."""
        a, b = self.soh[i] // 20, self.soh[j] // 20
        if a != b:
            return a > b
        a, b = self.t_max[i] // 50, self.t_max[j] // 50
        if a != b:
            return a < b
        if self.cycles[i] != self.cycles[j]:
            return self.cycles[i] < self.cycles[j]
        return self.soc[i] > self.soc[j]

    def select(self, model, now_ms):
        """Best slot for a vehicle model, or None (``why`` says why). Reserves nothing."""
        types = self.compat.get(model)
        if types is None:
            self.why = "unknown vehicle model %r" % (model,)
            return None
        best = None
        for i in range(self.n):
            if not self.available(i, now_ms) or self.ptype[i] not in types:
                continue
            pt = self.pack_types[self.ptype[i]]
            if self.t_max[i] >= pt["cell_temp_max_c"] * 10 or self.t_min[i] < pt["cell_temp_min_c"] * 10:
                continue
            if best is None or self._better(i, best):
                best = i
        self.why = None if best is not None else "no charged compatible pack for %s" % model
        return best

    def reserve_for(self, model, now_ms):
        """Reserve the best charged compatible pack for ``model``; its slot or None."""
        i = self.select(model, now_ms)
        if i is not None:
            self.reserved_model[i] = model
            self._update_state(i)
        return i

    def reserve_slot(self, slot, model="?"):
        """Take back a reservation after a restart. True when the slot holds a pack it may give."""
        self._slot(slot)
        if self.state[slot] not in (READY, CHARGING, RESERVED) or self.pack[slot] is None:
            return False
        self.reserved_model[slot] = self.reserved_model[slot] or model
        self._update_state(slot)
        return True

    def release(self, slot):
        self._slot(slot)
        if self.reserved_model[slot] is not None:
            self.reserved_model[slot] = None
            self._update_state(slot)

    # -- pack movements
    def free_slot(self, now_ms=None):
        """An empty slot whose charger is online, without fault bits (one that lost its BMS
        link reads no pack whether or not one is there) and not expecting a pack, or None.
        HEARTBEAT and GRID stop charging only: that charger's "no pack" is true."""
        for i in range(self.n):
            if (self.state[i] == EMPTY and self.online[i] and self.expect[i] is None
                    and not self.faults[i] & ~_F_PLACE_OK
                    and (now_ms is None or self.fresh(i, now_ms))):
                return i
        return None

    def holds(self, slot, pack):
        """The slot's charger reports that pack (as of its last read)."""
        self._slot(slot)
        return self.online[slot] == 1 and pack is not None and self.pack[slot] == pack

    def insert_pack(self, slot, pack):
        """The carrier put ``pack`` into ``slot``: the next read must show it."""
        self._slot(slot)
        if self.pack[slot] is not None and self.pack[slot] != pack:
            raise ValueError("slot %s holds pack %r" % (self.ids[slot], self.pack[slot]))
        self.expect[slot] = pack

    def take(self, slot, now_ms=None):
        """The carrier took the slot's pack; returns its serial."""
        self._slot(slot)
        pack = self.pack[slot]
        if pack is None:
            raise ValueError("slot %s is empty" % self.ids[slot])
        self._asset(pack, self.ptype[slot])[3] += 1
        self.pack[slot] = self.ptype[slot] = self.reserved_model[slot] = None
        self._hi[slot] = self._lo[slot] = -1
        self._pack_left(slot)
        self._update_state(slot, force=True)
        return pack

    def _pack_left(self, i):
        """A quarantine goes with its pack; a latched thermal alarm keeps the slot
        itself out of service until an operator has inspected and cleared it."""
        if self.sticky[i] == _STICKY_QUARANTINE:
            self.sticky[i] = 0
            self.reason[i] = None
        if self.thermal is not None:
            if self.thermal.cause[i] and self.sticky[i] != _STICKY_FAULT:
                self.sticky[i] = _STICKY_FAULT
                self.reason[i] = "thermal_event"
            self.thermal.forget(i)

    remove_pack = take

    def to_isolation(self, pack, now_ms=None):
        """``pack`` now stands in the isolation bay (taken from its slot if still there)."""
        if pack in self.isolation:
            raise ValueError("pack %r is already in the isolation bay" % (pack,))
        if len(self.isolation) >= self.iso_capacity:
            raise ValueError("isolation bay is full (%d)" % self.iso_capacity)
        for i in range(self.n):
            if self.pack[i] == pack:
                self.take(i, now_ms)
        self.isolation.append(pack)
        if self.on_change is not None:
            k = self.n + len(self.isolation) - 1
            ty = self.assets[pack][0] if pack in self.assets else None
            self.on_change(k, pack, ty, None, None, None, "QUARANTINED")

    def leave_isolation(self, pack):
        """Operator took ``pack`` out of the isolation bay."""
        if pack not in self.isolation:
            raise ValueError("pack %r is not in the isolation bay" % (pack,))
        k = self.isolation.index(pack)
        self.isolation.remove(pack)
        if self.on_change is not None:
            self.on_change(self.n + k, None, None, None, None, None, "EMPTY")

    def needs_isolation(self):
        """A quarantined slot whose pack waits for the robot, or None."""
        for i in range(self.n):
            if self.state[i] == QUARANTINED and self.pack[i] is not None:
                return i
        return None

    # -- faults
    def set_fault(self, slot, why):
        self._slot(slot)
        self.sticky[slot] = _STICKY_FAULT
        self.reason[slot] = why
        self.reserved_model[slot] = None
        self._update_state(slot, force=True)

    def quarantine(self, slot, why):
        self._slot(slot)
        if self.sticky[slot] != _STICKY_FAULT:
            self.sticky[slot] = _STICKY_QUARANTINE
        self.reason[slot] = why
        self.reserved_model[slot] = None
        self._update_state(slot, force=True)

    def clear_fault(self, slot):
        """Operator: the slot is good again (its thermal alarm too); the pack it reports
        now is accepted."""
        self._slot(slot)
        if self.thermal is not None:
            self.thermal.clear(slot)
        self.sticky[slot] = 0
        self.reason[slot] = None
        self.expect[slot] = None
        self._exp_boot[slot] = 0
        self._update_state(slot, force=True)

    # -- boot
    def restore(self, jstate):
        """Load the journal's view: expected pack per slot, sticky faults, assets,
        the isolation bay. Live reads then confirm or contradict it."""
        for p, a in jstate.packs.items():
            self.assets[p] = [a[0], a[1] or 0, int((a[2] or 0) * 10), a[3]]
        for k, f in jstate.slots.items():
            if type(k) is not int or k < 0:
                continue
            if k >= self.n:
                if f.get("p") is not None and f["p"] not in self.isolation:
                    self.isolation.append(f["p"])
                continue
            p = f.get("p")
            self.pack[k] = self.expect[k] = p  # not fresh: used only to compare the first read
            self._known[k] = 1
            self.ptype[k] = f.get("ty")
            self._exp_boot[k] = 1
            st = f.get("st")
            if st == "QUARANTINED" and p is not None:
                self.sticky[k] = _STICKY_QUARANTINE
                self.reason[k] = "restored"
            elif st == "FAULT" and p is None:  # a slot fault, not a pack's
                self.sticky[k] = _STICKY_FAULT
                self.reason[k] = "restored"
            self.state[k] = self._derive(k)
