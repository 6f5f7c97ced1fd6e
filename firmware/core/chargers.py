"""Charger polling for the supervisor: every ``limits.heartbeat_ms`` each slot's
charger is read (status block, FC04); after the read the control block (FC16: the
dispatch's setpoints and a fresh heartbeat) is written when it is due, a few requests
in flight at a time. The control block is due when a setpoint differs from what the
charger last acknowledged, when the last acknowledged write is ``KEEPALIVE_MS`` old
(two fifths of the charger's 5 s heartbeat watchdog, so two lost writes in a row
still leave it a second), and always after a new pack, a fault reset, a stop or the
charger coming back online (its setpoints may have been reset).

- A good read goes to the rack (``update_from_charger``), which also runs thermal
  detection; a new pack there brings an info-block read: the pack's cycles, and the
  charger's rated power, current and voltage, within which the dispatch keeps its
  setpoints from then on (``Dispatch.rated``): a charger refuses a control block with a
  value above its rating.
- A write the charger answers with an exception (refused: the charger changed nothing)
  raises one alarm, ``charger_refused``, naming the slot, the unit, the write and the
  exception; refused again, it stays as it is; it clears when a write of that kind is
  accepted. The first refusal also brings an info-block read (a module swapped for a
  smaller one is then held to its new rating).
- A failed read of a unit the bus has marked offline makes the slot unavailable at
  once (``rack.charger_offline``) and raises one alarm, cleared by the next good read.
- ``stop(slot)`` sends charge-enable 0 ahead of everything else for that slot.
- A charger whose own heartbeat counter (``CHG_IR_HEARTBEAT``) has not moved for
  ``FROZEN_MS`` is frozen, even though it answers: its values are not current, so the
  slot is out as if offline (``rack.charger_offline``), it is sent a stop, and one
  alarm (``charger_frozen``) asks for a power cycle; it clears when the counter moves.
- A status block the rack refuses (a value out of its range) raises an alarm and
  counts as no reading; the slot's telemetry goes stale rather than stopping the loop.
- Latched charger faults (``CHG_IR_FAULTS``; a charger clears only the bits whose
  cause is gone): HEARTBEAT (the controller restarted) and GRID (AC input lost) get a
  fault reset as soon as they appear and then every ``RESET_AGAIN_MS`` while they
  stay; over/under temperature, coolant, BMS link and connector every
  ``RESET_RETRY_MS``; THERMAL_RUNAWAY only once its slot is empty (the pack went to
  isolation); the rest (over-voltage/current, insulation, internal, cell imbalance)
  never: a person must look first. The next control write enables the charger again
  if the dispatch says so. GRID at any charger raises one station alarm
  (``grid_lost``); other bits but HEARTBEAT raise ``charger_fault`` on the slot,
  naming the bits and what happens next; both clear when the bits are gone.

Per-slot state is kept in flat arrays; the only allocation per request is the
control block list the dispatch fills (reused).
"""

from firmware.compat import const, ticks_add, ticks_diff
from firmware.proto import fieldbus as fb
from firmware.proto import regmap as rm

_READ = const(1)
_WRITE = const(2)
_STOP = const(3)
_RESET = const(4)
_INFO = const(5)
_IN_FLIGHT = const(6)
_STOP_B = bytes((_STOP,))
_MAYBE = const(7)  # after a read: write the control block if due
_NREG = const(5)  # control registers compared (the heartbeat is not)
_WRAP = const(0x3FFFFFFF)  # counters wrap at 2**30, as ticks_ms does: small ints on 32-bit builds
# The control block is refreshed at least this often: two fifths of the charger's
# heartbeat watchdog (CHG_HR_WATCHDOG_MS, which the controller leaves at its default).
KEEPALIVE_MS = const(2000)
RESET_AGAIN_MS = const(5000)  # HEARTBEAT / GRID still set: reset again this often
RESET_RETRY_MS = const(60000)  # temperature, coolant, BMS link, connector: give the cause time to go
# The charger's counter moves every 1000 ms; still after this long, the charger is frozen.
FROZEN_MS = const(5000)
_F_AT_ONCE = const(0x0A00)  # HEARTBEAT | GRID
_F_RETRY = const(0x015C)  # OVER_TEMP | UNDER_TEMP | COOLANT | BMS_COMM | CONNECTOR
_F_QUIET = const(0x0A00)  # no per-slot alarm: HEARTBEAT is routine after a restart, GRID is station-wide


class ChargerLink:
    def __init__(self, sup, bus, cfg, now_ms, alarm):
        self.sup = sup
        self.alarm = alarm  # alarm(slot, code, detail=None, active=True), from the supervisor
        self.bus = bus
        slots = cfg["slots"]
        self.n = n = len(slots)
        self.units = [s["charger_unit"] for s in slots]
        self.period = cfg["limits"]["heartbeat_ms"]
        self.tx = [None] * n
        self.kind = bytearray(n)
        self.due = [now_ms] * n
        self.hb = [0] * n
        self.urgent = bytearray(n)  # _STOP or _RESET waiting
        self.then = bytearray(n)  # _WRITE or _INFO to follow the read
        self.read_once = bytearray(n)
        self._idle = bytearray(n)  # all zero: compared with urgent and then
        self._cut = True
        # what each charger last acknowledged (-1: unknown) and when
        self.sent = [-1] * (n * _NREG)
        self.want = [0] * (n * _NREG)
        self.acked = [ticks_add(now_ms, -KEEPALIVE_MS)] * n  # none yet: as if long ago
        self.refresh = KEEPALIVE_MS - self.period // 2 if KEEPALIVE_MS > self.period else 0
        self.online = bytearray(b"\x01" * n)
        self.bad = bytearray(n)  # 1: the last status block was refused (bad_reading alarm up)
        self.refused = bytearray(n)  # kind of the write refused (charger_refused alarm up), or 0
        self.fault = [0] * n  # fault bits of the last good read
        self.beat = [-1] * n  # the charger's own heartbeat counter (CHG_IR_HEARTBEAT) ...
        self.beat_at = [now_ms] * n  # ... and when it last changed
        self.frozen = bytearray(n)
        self.reset_at = [now_ms] * n  # ticks of the last fault reset sent
        self.no_grid = 0  # chargers whose last read showed GRID
        self.inflight = 0
        self._ends = -1  # bus.ends when the requests in flight were last looked at
        self.last_done = now_ms
        self.next_due = now_ms
        self.dispatch_due = now_ms
        self.reads = 0
        self.writes = 0
        self._rr = 0

    def all_read(self):
        for k in range(self.n):
            if not self.read_once[k]:
                return False
        return True

    def stop(self, slot):
        self.urgent[slot] = _STOP

    def stop_all(self):
        for k in range(self.n):
            self.urgent[k] = _STOP

    def finished(self):
        """A request has its answer and waits for ``service``."""
        if self.inflight and self.bus.ends != self._ends:
            for t in self.tx:
                if t is not None and t.done:
                    return True
        return False

    def wait(self, now_ms):
        if self.inflight >= _IN_FLIGHT:
            return 1000
        return ticks_diff(self.next_due, now_ms)

    def progress(self, now_ms, stall_ms):
        """False when requests are queued but none finished for ``stall_ms``."""
        if self.bus.pending() == 0:
            self.last_done = now_ms
            return True
        return ticks_diff(now_ms, self.last_done) <= stall_ms

    def service(self, now_ms):
        """Finish done requests and start due ones; True when any finished."""
        got = False
        tx = self.tx
        ends = self.bus.ends
        # Requests the bus finished since the last look (every one of them is the link's,
        # and each look takes all the done ones): none, no look; the look ends at the last.
        left = (ends - self._ends) & _WRAP if self.inflight else 0
        self._ends = ends
        for k in range(self.n if left else 0):
            t = tx[k]
            if t is not None and t.done:
                tx[k] = None
                self.inflight -= 1
                self._done(k, t, now_ms)
                t.release()
                got = True
                if ticks_diff(self.due[k], self.next_due) < 0:
                    self.next_due = self.due[k]  # idle again: its next read counts
                left -= 1
                if not left:
                    break
        if got:
            self.last_done = now_ms
        if ticks_diff(now_ms, self.dispatch_due) >= 0:
            self.sup.dispatch_update(now_ms)
            self.dispatch_due = ticks_add(now_ms, self.period)
        # No read due yet: next_due is still the earliest idle slot's due time (lowered
        # above as requests finish), so with no stop, reset or follow-up waiting there is
        # nothing to send before next_due, the earliest read or dispatch due.
        if (self._cut or ticks_diff(now_ms, self.next_due) >= 0 or self.urgent != self._idle
                or self.then != self._idle):
            self._start(now_ms)
        return got

    def _done(self, k, t, now_ms):
        sup = self.sup
        kind = self.kind[k]
        if kind != _READ:
            if kind == _INFO and t.ok:
                sup.rack.update_info(k, t.values)
                b = rm.CHG_INFO_BASE
                v = t.values
                sup.dispatch.rated(k, v[rm.CHG_IR_RATED_POWER - b], v[rm.CHG_IR_RATED_I_MAX - b],
                                   v[rm.CHG_IR_RATED_V_MAX - b])
            elif kind == _STOP and not t.ok:
                self.urgent[k] = _STOP  # charging must stop: try again
            if t.ok:
                if kind != _INFO:
                    self.writes = (self.writes + 1) & _WRAP
                b = k * _NREG
                if kind == _WRITE:
                    self.acked[k] = now_ms
                    sent = self.sent
                    want = self.want
                    for j in range(b, b + _NREG):
                        sent[j] = want[j]
                elif kind != _INFO:  # a stop or a fault reset changed the charger's state
                    self.sent[b] = -1
                    if kind == _RESET:
                        self.then[k] = _WRITE  # its setpoints again now, not after the next read
                if self.refused[k] == kind:
                    self.refused[k] = 0
                    self.alarm(k, "charger_refused", None, False)
            elif kind != _INFO and t.error == fb.ERR_EXCEPTION and not self.refused[k]:
                self._refused(k, kind, t.exception_code)
            return
        self.read_once[k] = 1
        if not t.ok:
            self.then[k] = 0
            if not self.bus.health(self.units[k]).online and self.online[k]:
                self.online[k] = 0
                sup.rack.charger_offline(k)
                self.alarm(k, "charger_offline", fb.ERROR_NAMES[t.error])
            return
        self.reads = (self.reads + 1) & _WRAP
        if not self.online[k]:
            self.online[k] = 1
            self.sent[k * _NREG] = -1  # it may have restarted with its default setpoints
            self.alarm(k, "charger_offline", None, False)
        rack = sup.rack
        beat = t.values[rm.CHG_IR_HEARTBEAT]
        if beat != self.beat[k]:
            self.beat[k] = beat
            self.beat_at[k] = now_ms
            if self.frozen[k]:
                self.frozen[k] = 0
                self.sent[k * _NREG] = -1
                self.alarm(k, "charger_frozen", None, False)
        elif self.frozen[k] or ticks_diff(now_ms, self.beat_at[k]) > FROZEN_MS:
            if not self.frozen[k]:  # its values are not current: the slot is out, as if offline
                self.frozen[k] = 1
                rack.charger_offline(k)
                self.urgent[k] = _STOP
                self.alarm(k, "charger_frozen", "heartbeat counter stopped: power-cycle the charger")
            self.then[k] = 0
            return
        before = rack.pack[k]
        try:
            rack.update_from_charger(k, t.values, now_ms, True)
        except ValueError as e:  # a reading the rack refuses must not stop the loop
            self.then[k] = _MAYBE
            self.bad[k] = 1
            self.alarm(k, "bad_reading", str(e)[:64])
            return
        if self.bad[k]:  # checked first: the alarm key is a new string on every call
            self.bad[k] = 0
            self.alarm(k, "bad_reading", None, False)
        f = rack.faults[k]
        if f or self.fault[k]:
            self._faults(k, f, rack.pack[k] is None, now_ms)
        self.then[k] = _INFO if rack.pack[k] is not None and rack.pack[k] != before else _MAYBE

    def _refused(self, k, kind, code):
        """Charger ``k`` answered a write of ``kind`` with exception ``code``."""
        self.refused[k] = kind
        self.then[k] = _INFO  # its rating again: the one read with its pack may be out of date
        what = "control write" if kind == _WRITE else ("stop" if kind == _STOP else "fault reset")
        name = fb.EXC_NAMES[code] if 0 < code < len(fb.EXC_NAMES) else "?"
        self.alarm(k, "charger_refused", ("%s unit %d %s: exception %02d %s" % (
            self.sup.rack.ids[k], self.units[k], what, code, name))[:64])

    def _faults(self, k, f, empty, now_ms):
        """Alarms and fault resets for charger ``k`` reading fault bits ``f``."""
        old = self.fault[k]
        self.fault[k] = f
        if (f ^ old) & rm.CHG_FAULT_GRID:
            self.no_grid += 1 if f & rm.CHG_FAULT_GRID else -1
            if self.no_grid == (1 if f & rm.CHG_FAULT_GRID else 0):
                self.alarm(-1, "grid_lost", "chargers have no AC input: they charge again when it returns",
                           self.no_grid > 0)
        shown = f & ~_F_QUIET
        if shown != old & ~_F_QUIET:
            if old & ~_F_QUIET:
                self.alarm(k, "charger_fault", None, False)  # raised again with the new bits
            if shown:
                self.alarm(k, "charger_fault", _describe(shown, empty))
        if not f or self.urgent[k]:
            return
        auto = _F_AT_ONCE | _F_RETRY | (rm.CHG_FAULT_THERMAL_RUNAWAY if empty else 0)
        if f & ~auto:
            return  # needs service: the alarm says so
        if f & rm.CHG_FAULT_HEARTBEAT and ticks_diff(now_ms, self.acked[k]) >= KEEPALIVE_MS:
            # The latch clears only under a fresh heartbeat: the control write (due, its
            # last ack is old) goes first, and the next read resets at once.
            self.reset_at[k] = ticks_add(now_ms, -RESET_RETRY_MS)
            return
        if not f & ~old:  # no new bit: wait before trying again
            again = RESET_AGAIN_MS if f & _F_AT_ONCE == f else RESET_RETRY_MS
            if ticks_diff(now_ms, self.reset_at[k]) < again:
                return
        self.reset_at[k] = now_ms
        self.urgent[k] = _RESET

    def _write_due(self, k, regs, now_ms):
        """True when the control block ``regs`` must go to charger ``k`` now."""
        if ticks_diff(now_ms, self.acked[k]) >= self.refresh:
            return True
        sent = self.sent
        b = k * _NREG
        for j in range(_NREG):
            if regs[j] != sent[b + j]:
                return True
        return False

    def _start(self, now_ms):
        n = self.n
        urgent = self.urgent
        then = self.then
        # No read due yet (service calls only when something may be sent): idle slots
        # need no look this round.
        td = ticks_diff  # a local: the round may compare up to two due times per slot
        quiet = not self._cut and td(now_ms, self.next_due) < 0
        bus = self.bus
        txs = self.tx
        due = self.due
        inflight = self.inflight  # a local in the loop, stored back after it
        nxt = self.next_due if quiet else None
        cut = False  # the round stopped early: next_due covers only the slots it saw
        rr = self._rr
        for j in range(rr, rr + n):  # the round starts at slot _rr
            k = j if j < n else j - n
            if inflight >= _IN_FLIGHT:
                # A stop goes out even when the round has its requests in flight.
                if _STOP_B not in urgent:  # bytes: MicroPython has no int-in-bytearray
                    cut = True
                    break
                if urgent[k] != _STOP:
                    continue
            if txs[k] is not None:
                continue
            u = urgent[k]
            th = then[k]
            if not u and not th:
                if quiet:
                    continue
                d = due[k]
                if td(now_ms, d) < 0:  # the common case: nothing due yet
                    if nxt is None or td(d, nxt) < 0:
                        nxt = d
                    continue
            unit = self.units[k]
            if u == _STOP:
                t = bus.write(unit, fb.FC_WRITE_SINGLE_REGISTER, rm.CHG_HR_ENABLE, 0)
            elif u == _RESET:
                t = bus.write(unit, fb.FC_WRITE_SINGLE_REGISTER, rm.CHG_HR_FAULT_RESET, 1)
            elif th == _INFO:
                t = bus.read(unit, fb.FC_READ_INPUT_REGISTERS, rm.CHG_INFO_BASE, rm.CHG_INFO_COUNT)
                u = _INFO
            elif th == _WRITE or th == _MAYBE:
                hb = (self.hb[k] + 1) & 0xFFFF
                regs = self.sup.dispatch.control_regs(k, hb)
                if th == _MAYBE and not self._write_due(k, regs, now_ms):
                    then[k] = 0  # the charger has these setpoints and a fresh heartbeat
                    if nxt is None or td(due[k], nxt) < 0:
                        nxt = due[k]
                    continue
                t = bus.write(unit, fb.FC_WRITE_MULTIPLE_REGISTERS, rm.CHG_CONTROL_BASE, regs)
                if t is not None:
                    self.hb[k] = hb
                    b = k * _NREG
                    want = self.want
                    for i in range(_NREG):
                        want[b + i] = regs[i]
                u = _WRITE
            elif td(now_ms, due[k]) >= 0:
                t = bus.read(unit, fb.FC_READ_INPUT_REGISTERS, rm.CHG_STATUS_BASE, rm.CHG_STATUS_COUNT)
                if t is not None:
                    d = ticks_add(due[k], self.period)
                    due[k] = d if td(d, now_ms) > 0 else ticks_add(now_ms, self.period)
                u = _READ
            else:
                if nxt is None or td(due[k], nxt) < 0:
                    nxt = due[k]
                continue
            if t is None:
                cut = True
                break  # the bus queue is full
            if u == _INFO:
                then[k] = _WRITE
            elif u == _WRITE:
                then[k] = 0
            elif u != _READ:
                urgent[k] = 0
            txs[k] = t
            self.kind[k] = u
            inflight += 1
        self.inflight = inflight
        self._rr = rr + 1 if rr + 1 < n else 0
        self._cut = cut
        if nxt is None:
            nxt = ticks_add(now_ms, self.period)
        if td(self.dispatch_due, nxt) < 0:
            nxt = self.dispatch_due
        self.next_due = nxt


def _describe(bits, empty):
    """Alarm detail: the fault names and what happens next (journal details are <= 64 chars)."""
    names = [rm.CHG_FAULT_NAMES[i] for i in range(len(rm.CHG_FAULT_NAMES)) if bits >> i & 1]
    auto = _F_AT_ONCE | _F_RETRY | (rm.CHG_FAULT_THERMAL_RUNAWAY if empty else 0)
    what = ": reset each minute until the cause is gone" if bits & auto == bits else ": service the charger"
    return (",".join(names) + what)[:64]
