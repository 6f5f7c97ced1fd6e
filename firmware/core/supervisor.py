"""Station supervisor: the controller's non-blocking main loop.

    sup = Supervisor(cfg, buses, storage, inputs=None, outputs=None, watchdog=None, now_ms=None,
                     masters=None)
    while True:
        wait = sup.tick(ticks_ms())  # ms until it next needs to run; sleep at most that

- ``cfg``: the station config, raw (validated here) or as ``config.load``/``validate``
  return it. A bad config leaves the station in a safe state: no bus traffic (the bay
  module's comm watchdog drops its coils, the chargers' heartbeat watchdogs stop
  charging), ``motion_enable`` off, ``error`` names the field and the reason.
- ``buses``: ``{"chargers": port, "bay_io": port}``, each a ``hal.SerialPort`` (an RS-485
  line); the supervisor runs a ``ModbusMaster`` on each, set up from ``cfg["buses"]``.
  ``masters``: ``{"chargers": bus, "bay_io": bus}`` instead, each with the field-bus
  transaction API of ``firmware.proto.fieldbus`` already (the simulator's in-process
  buses, the tests' in-memory ones); ``buses`` is then None.
- ``storage``: ``hal.Storage`` for the journal.
- ``inputs``: optional ``{"estop_ok": DigitalIn}``, the controller's own e-stop chain
  (1 = healthy), read every tick. ``outputs``: optional ``{"motion_enable": DigitalOut,
  "fault": DigitalOut}``.
- ``watchdog``: optional ``hal.Watchdog``, fed by ``tick`` only while every subsystem
  is alive (``alive``): both buses making progress, journal writable, loop on time.

Operator actions, each journalled (OP): ``ack()`` resets e-stop / interlock / smoke
latches whose cause is gone; ``confirm()`` confirms the bay after a power loss,
manual mode, lost comms or a fault; ``manual(on)``; ``jog(coil, on)`` in manual mode;
``abort_swap()`` closes a held swap as failed once the operator has cleared the bay
(refused while its sensors say otherwise; the manual recovery is in docs/operations.md);
``clear_slot(slot)`` accepts a slot after a fault or a thermal alarm.
For telemetry (core/telemetry.py): ``watch_alarms(fn)``, ``remote_alarm``, ``command_counter``
/ ``accept_counter`` (the journalled remote command counter, RC), ``last_swap_seq`` /
``exported_seq`` / ``next_swap_record`` / ``swaps_exported`` (swap records and their EX
cursor), ``grid_kw``.
``vehicle_arrived(vehicle_id, model, pack_id, soc=None, pack_type=None)`` queues an
identity for scenario drivers whose plant has no reader (treated as subscribed; without
``pack_type`` the model's first compatible type is assumed); the primary path is the
bay's RFID/ANPR reader (bay.py). ``status()`` is a compact snapshot for reports.

Boot: replay the journal; read every charger once, reconciling the rack against
the pack serials they report (``rack.restore`` + first reads); read the bay module's
coils back and hold them; restore an interrupted swap at the step it was in. Nothing
moves until ``confirm()``; charging follows the dispatch as soon as chargers are read.

Journal use: SB when a vehicle is authorised with a reserved pack, SS at the start of
every later step (``r`` = "start:" + plan, ``rs``/``ss`` slots, ``po`` the vehicle's
pack, ``pi`` the pack to install), SW at the end, ST the step times in ms, RJ a
rejected vehicle, EV sequence events, IS isolation moves, AL alarms (hold reasons,
chargers offline, thermal), OP operator actions.

Alarms (``alarms``, ``status()["alarms"]``, each raise and clear journalled as AL) clear
when their condition is gone or an operator acknowledges them:

- hold reasons (``estop``, ``interlock``, ``smoke``, ``comms``, ``manual``, ``confirm``)
  and ``boot``: when the bay's hold bit clears (``ack``/``confirm``/leaving manual);
- ``bay_io_offline``: when the module answers again;
- ``chargers_babble``, ``bay_io_babble`` (that line never went quiet for a request,
  ``babbling`` of its bus): when the bus master counts the line quiet again;
- ``operator`` (the bay holds on a fault): on the ``confirm`` that retries, or when the
  swap ends; ``swap_interrupted`` (a swap resumed after a power loss) and
  ``bay_not_clear`` (an ``abort_swap`` refused): when that swap ends, whatever the outcome;
- ``journal_replay`` (torn or corrupt records skipped at boot) and ``journal_refused`` (the
  journal refused a record as malformed; its detail says which field), ``cmd_bad_mac`` and
  ``cmd_replay`` (a remote command refused, ``remote_alarm``): on the operator's ``ack``;
- ``store_smoke``: on the ``ack`` that clears the smoke latch; per-slot alarms
  (``runaway``, ``pack_mismatch``, ``pack_missing``, ``not_isolated``): ``clear_slot``;
- ``journal`` (flash unwritable): never in this boot; the watchdog restarts the controller.
"""

from firmware.compat import const, ticks_diff
from firmware.core import bay as bay_mod
from firmware.core import safety as sf
from firmware.core import thermal as th
from firmware.core.baylink import BayLink
from firmware.core.chargers import ChargerLink
from firmware.core.dispatch import Dispatch
from firmware.core.journal import Journal
from firmware.core.rack import FAULT, QUARANTINED, RESERVED, Rack

_BAY_CYCLE_MS = const(100)  # sensor poll while the bay is busy or held
_IDLE_CYCLE_MS = const(500)  # sensor poll while the bay waits for a vehicle
_FEED_MS = const(250)  # longest wait between watchdog feeds
_LOOP_LATE_MS = const(2000)  # a gap between ticks this long: the loop is not on time
_QUEUE = const(8)  # transactions per bus master we build (chargers keep 6 in flight, the bay 6)
_QUEUE_MAX = const(8)  # identities waiting from vehicle_arrived
# Why a slot is out of use by a remote command (the rack's reason): a slot taken out of
# service, or one holding a pack the platform quarantined. Only these go back remotely.
REMOTE_OUT = ("out of service", "pack quarantined")
# Alarms about records only (a refused command, a damaged or refused journal record): the
# platform may acknowledge these; holds and safety latches are acknowledged at the station.
RECORD_ALARMS = ("journal_replay", "journal_refused", "cmd_bad_mac", "cmd_replay")
_WRAP = const(0x3FFFFFFF)  # counters wrap at 2**30, as ticks_ms does: small ints on 32-bit builds
_DETAIL_MAX = const(64)  # the longest alarm text the journal takes (core/journal.py)
_ST_NAMES = ("config_error", "boot", "hold", "manual", "run")
# Alarms about the swap in the bay: they clear when that swap ends, whatever its outcome.
_SWAP_ALARMS = ("operator", "swap_interrupted", "bay_not_clear")
# A line that never goes quiet (the bus's ``babbling``): one alarm per line and episode.
_BABBLE = ("chargers_babble", "bay_io_babble")
_BABBLE_TEXT = ("chargers line never quiet: a node talks out of turn, or noise",
                "bay_io line never quiet: a node talks out of turn, or noise")


def swap_kwh(soc_in, kwh_in, soc_out, kwh_out):
    """Energy the vehicle drove off with beyond what it brought (what a swap sells), kWh
    to 0.01, half up: SoC in %, pack capacities in kWh. Counted in ints (0.1 % x Wh =
    mWh, at most 1000 x 1000000 < 2**30) so a float32 board, the unix port and CPython
    all round the same swap alike."""
    mwh = round(soc_in * 10) * round(kwh_in * 1000) - round(soc_out * 10) * round(kwh_out * 1000)
    return (mwh + 5000) // 10000 / 100 if mwh > 0 else 0.0


def _config(cfg):
    """(normalised config, None) or (None, why). The validator is imported only when
    needed: boot code that validated already may have dropped it (config.release)."""
    if "pack_type_by_code" in cfg:  # normalised already (config.load / validate)
        return cfg, None
    from firmware.core import config as config_mod

    try:
        return config_mod.validate(cfg), None
    except config_mod.ConfigError as e:
        return None, str(e)


def _rtu_master(port, bcfg):
    from firmware.proto.modbus_rtu import ModbusMaster

    return ModbusMaster(port, bcfg["timeout_ms"], bcfg["retries"], bcfg["offline_after"],
                        bcfg["probe_interval_ms"], queue_size=_QUEUE)


def _stall_ms(bcfg):
    # A bus with requests queued must finish one within this (every retry timing out).
    return 4 * bcfg["timeout_ms"] * (bcfg["retries"] + 1) + 1000


class Supervisor:
    def __init__(self, cfg, buses, storage, inputs=None, outputs=None, watchdog=None, now_ms=None,
                 bay_cycle_ms=_BAY_CYCLE_MS, idle_cycle_ms=_IDLE_CYCLE_MS, minute_of_day=None,
                 masters=None):
        if now_ms is None:
            from firmware.compat import ticks_ms

            now_ms = ticks_ms()
        self.now = now_ms
        self.inputs = inputs or {}
        self.outputs = outputs or {}
        self.watchdog = watchdog
        self.minute_of_day = minute_of_day  # local time, minutes since midnight, or None: unknown
        self.error = None
        self.alarms = {}  # active: "slot:code" -> detail
        self._alarm_hooks = []  # fn(slot, code, active, detail), from watch_alarms
        self.telemetry = None  # main.make_telemetry: the MQTT link main.run polls beside tick
        self.ticks = 0
        self.late_ticks = 0
        self.feeds = 0
        self.journal_errors = 0
        self.alive = False
        self._last_tick = now_ms
        self._out("motion_enable", 0)
        self.cfg, why = _config(cfg)
        if why is not None:
            self.error = "config " + why
            self._out("fault", 1)
            return
        cfg = self.cfg
        bc = cfg["buses"]
        if masters is None:
            masters = {"bay_io": _rtu_master(buses["bay_io"], bc["bay_io"]),
                       "chargers": _rtu_master(buses["chargers"], bc["chargers"])}
        self.bay_bus = masters["bay_io"]
        self.bay_unit = bc["bay_io"]["unit"]
        self._stall = (_stall_ms(bc["chargers"]), _stall_ms(bc["bay_io"]))
        self.journal = Journal.from_config(storage, cfg)
        self._journal_ok = True
        self.replay = None
        try:
            self.replay = self.journal.open()
        except OSError as e:
            self._journal_failed(e)
        jstate = self.journal.state
        self.thermal = th.Thermal(cfg)
        self.bay = None  # the rack's restore reports slots before the bay exists
        self.rack = Rack(cfg, self.thermal, self.rack_change)
        self.rack.restore(jstate)
        self.dispatch = Dispatch(cfg, self.rack)
        self.bay = bay_mod.Bay(cfg, self.rack, self._bay_event)
        self.chargers = ChargerLink(self, masters["chargers"], cfg, now_ms,
                                    self._alarm)
        self.baylink = BayLink(self._alarm, self.bay_bus, self.bay_unit, self.bay, bay_cycle_ms,
                               idle_cycle_ms, now_ms)
        self._hold_seen = self.bay.safety.hold
        self._babbling = bytearray(2)  # the alarm raised, per line (chargers, bay_io)
        self._smoke = False
        self._booting = True
        self._isolating = -1
        self._no_isolation = []  # quarantined slots whose move failed
        self.open_swap = jstate.open_swap  # the swap a power loss interrupted, until restored
        self._alarm(-1, "boot", "power returned: confirm before any motion")

    # ---- journal --------------------------------------------------------------------
    def _j(self, fn, *args):
        """Journal call that never stops the loop; a storage failure stops WDT feeds."""
        if not self._journal_ok:
            return None
        try:
            return fn(*args)
        except OSError as e:
            self._journal_failed(e)
        except ValueError as e:  # a record the journal refused: say so once, carry on
            self.journal_errors += 1
            self._alarm(-1, "journal_refused", str(e)[:_DETAIL_MAX])
        return None

    def _journal_failed(self, e):
        self._journal_ok = False
        self.journal_errors += 1
        self.alarms["-1:journal"] = str(e)

    def rack_change(self, slot, pack, *args):
        """The rack's journal hook (RK records). It also keeps the first reading of the
        vehicle's pack once a slot holds it: the SoC it came with. A reading at the end of
        the swap is after the charger has had it for a minute or more (~1 kWh at 62.5 kW),
        which the swap's energy would lose."""
        b = self.bay
        s = b.swap if b is not None else None
        if s is not None and s.soc_out is None and pack is not None and pack == s.pack and slot < self.rack.n:
            s.soc_out = args[1]
        self._j(self.journal.rack_change, slot, pack, *args)

    def _alarm(self, slot, code, detail=None, active=True):
        key = "%d:%s" % (slot, code)
        if active == (key in self.alarms):
            return
        if detail is not None and len(detail) > _DETAIL_MAX:
            detail = detail[:_DETAIL_MAX - 3] + "..."  # shortened, not refused by the journal
        if active:
            self.alarms[key] = detail
        else:
            del self.alarms[key]
        self._j(self.journal.alarm, slot, code, active, self.now, detail)
        for fn in self._alarm_hooks:
            fn(slot, code, active, detail)

    def _event(self, kind, fields):
        self._j(self.journal.append, kind, fields)

    def _bay_event(self, kind, a, b):
        s = a
        now = self.now
        bay = self.bay
        if kind == "alarm":
            self._event("EV", {"c": a, "d": b})
            if a == "operator":
                self._alarm(-1, "operator", b)
        elif kind == "begin":
            if bay.plan == bay_mod.P_ISOLATE:
                self._event("IS", {"s": s.fetch_slot, "r": "start"})
            else:
                n = self._j(self.journal.swap_begin, s.vehicle, s.model, s.t0, s.fetch_slot, s.new_pack)
                s.n = n or 0
                s.soc_new = self.rack.soc[s.fetch_slot] / 10
                s.kwh_new = self._kwh(self.rack.ptype[s.fetch_slot])
        elif kind == "step":
            if s.n and self._j(self.journal.swap_step, s.n, bay_mod.SWAP_STEPS[bay.step],
                               "start:" + bay_mod.PLAN_NAMES[bay.plan], now,
                               {"rs": s.fetch_slot, "ss": s.store_slot, "po": s.pack,
                                "pi": s.new_pack}) is None:
                # A step the journal does not know must not move anything: after a
                # restart the journal would resume the step before it.
                bay.hold_fault("journal unwritable")
        elif kind == "end":
            self._end_swap(s, b, now)

    def _kwh(self, ptype):
        pt = self.cfg["pack_types"].get(ptype) if ptype is not None else None
        return pt["capacity_kwh"] if pt is not None else 0

    def _end_swap(self, s, outcome, now):
        if self.bay.plan == bay_mod.P_ISOLATE:
            self._event("IS", {"s": s.fetch_slot, "p": s.new_pack, "r": outcome})
            if outcome != "isolated":  # do not try again until an operator clears the slot
                self._no_isolation.append(s.fetch_slot)
                self._alarm(s.fetch_slot, "not_isolated", outcome)
            self._isolating = -1
            return
        if not s.n:
            self._event("RJ", {"v": s.vehicle, "m": s.model, "why": s.why or outcome})
            return
        ok = outcome == "ok"
        rk = self.rack
        soc_out = s.soc
        if ok and rk.holds(s.own_slot, s.pack):
            # as it came out; after a power loss mid-swap, what the slot reads now
            soc_out = s.soc_out if s.soc_out is not None else rk.soc[s.own_slot] / 10
        kwh = 0.0
        if ok and s.soc_new is not None and soc_out is not None:
            kwh = swap_kwh(s.soc_new, s.kwh_new, soc_out, self._kwh(s.ptype))
        self._j(self.journal.swap_end, s.n, outcome, now, s.pack if ok else None, soc_out,
                s.new_pack if ok else None, s.soc_new if ok else None, kwh)
        self._event("ST", {"n": s.n, "ms": s.step_ms, "t": s.ms})
        for code in _SWAP_ALARMS:
            self._alarm(-1, code, None, False)

    def dispatch_update(self, now):
        """New setpoints for every slot; vehicles queued for the bay count as demand."""
        demand = None
        b = self.bay
        if b.queue or b.swap is not None:
            demand = {}
            for v in b.queue:
                if v[3] is not None:
                    demand[v[3]] = demand.get(v[3], 0) + 1
            s = b.swap
            if s is not None and b.step == bay_mod.AUTHORISE and not s.reserved and s.ptype is not None:
                # authorised, waiting in the bay for a charged pack
                demand[s.ptype] = demand.get(s.ptype, 0) + 1
        price = None
        if self.minute_of_day is not None:
            m = self.minute_of_day()
            if m is not None:  # no clock: no time-of-use shaping, charge as fast as allowed
                price = self.dispatch.price_at(m)
        self.dispatch.update(now, price, demand)

    # ---- outputs ----------------------------------------------------------------------
    def _out(self, name, v):
        pin = self.outputs.get(name)
        if pin is not None:
            pin.value(v)

    # ---- main loop ----------------------------------------------------------------------
    def tick(self, now):
        """Run everything due; returns ms until the next tick is needed."""
        self.ticks = (self.ticks + 1) & _WRAP
        late = ticks_diff(now, self._last_tick) > _LOOP_LATE_MS
        if late:
            self.late_ticks += 1
        self._last_tick = now
        self.now = now
        if self.error is not None:
            self._out("motion_enable", 0)
            self._feed(now, not late)
            return _FEED_MS
        pin = self.inputs.get("estop_ok")
        if pin is not None:
            self.bay.estop_pin(pin.value())
            self.baylink.write()  # a stop's image takes the bus before any older one goes out
        ch = self.chargers
        for _ in range(8):  # in-process buses answer at once: go round while they do
            ch.bus.poll(now)
            self.bay_bus.poll(now)
            if not (ch.service(now) | self.baylink.service(now, not self._booting)):
                break
        self.thermal.expire(now)
        if self._thermal_events(now):
            ch.service(now)  # charge-enable 0 goes out in this tick
        if self._booting:
            self._boot(now)
        else:
            self._isolation(now)
        # Outputs go on the wire before anything is journalled: a flash write must not
        # delay motion going off after an e-stop.
        self.baylink.write()
        self.bay_bus.poll(now)
        self._lines()
        self._holds(now)
        ch.bus.poll(now)
        self.bay_bus.poll(now)
        compacting = self._journal_ok and self._j(self.journal.service, 8) is False
        self._feed(now, not late)
        return self._wait(now, compacting)

    def _wait(self, now, busy):
        if self.baylink.finished() or self.chargers.finished():
            return 0  # answered in the tick's last poll: act on it now, not a second later
        w = min(self.chargers.bus.next_poll_ms(now), self.bay_bus.next_poll_ms(now),
                self.chargers.wait(now))
        if not self.baylink.reading():
            w = min(w, ticks_diff(self.baylink.due, now))
        if self.watchdog is not None:
            w = min(w, _FEED_MS)
        if busy:
            w = min(w, 10)
        return w if w > 0 else 0

    def _feed(self, now, on_time):
        # A bad config is a safe, steady state: the loop itself is what must stay alive.
        ok = on_time
        if ok and self.error is None:
            ok = (self._journal_ok and self.chargers.progress(now, self._stall[0])
                  and self.baylink.progress(now, self._stall[1]))
        self.alive = ok
        if ok and self.watchdog is not None:
            self.watchdog.feed()
            self.feeds = (self.feeds + 1) & _WRAP

    # ---- boot ------------------------------------------------------------------------------
    def _boot(self, now):
        if self.baylink.booted < 2 or not self.chargers.all_read():
            return
        self._booting = False
        rep = self.replay
        if rep is not None and not rep.clean:
            self._alarm(-1, "journal_replay", "torn" if rep.torn else "corrupt lines skipped")
        sw = self.open_swap
        if sw is not None:
            self._reconcile_swap(sw)
        for k in range(self.rack.n):
            if self.rack.reason[k] in ("pack_mismatch", "pack_missing"):
                self._alarm(k, self.rack.reason[k], "rack differs from the journal")
        r = (sw.get("r") or "") if sw is not None else ""
        plan = r[6:] if r.startswith("start:") else "swap"
        if sw is not None and sw.get("s") in bay_mod.SWAP_STEPS and plan in bay_mod.PLAN_NAMES:
            self.bay.restore(sw["n"], plan, sw["s"], now, sw["v"], sw["m"], sw.get("po"),
                             sw.get("rs"), sw.get("ss"), sw.get("pi"))
            self._alarm(-1, "swap_interrupted", "%s at %s" % (sw["v"], sw["s"]))
        elif sw is not None and sw.get("s") is not None:  # a record this firmware cannot resume
            self._j(self.journal.swap_end, sw["n"], "unresumable", now)
            self.bay.hold_fault("swap %d stopped at %s: clear the bay by hand" % (sw["n"], sw["s"]))
        elif sw is not None:  # begun, no step recorded: nothing moved yet
            self._j(self.journal.swap_end, sw["n"], "power_loss", now)
        elif not self.bay.carrier_home():
            # An isolation move was cut short, or someone moved it: only a person knows.
            self.bay.hold_fault("carrier not home: bring it back in manual mode")
        self.open_swap = None
        self.bay.update(now)
        self.baylink.poll_now(now)

    def _reconcile_swap(self, sw):
        """The interrupted swap's own slots may differ from the journal's rack: its pack
        in or out may or may not have moved. Accept what the chargers report there if
        it is one of the swap's packs or nothing."""
        rk = self.rack
        packs = (None, sw.get("po"), sw.get("pi"))
        for k in (sw.get("rs"), sw.get("ss")):
            if k is not None and 0 <= k < rk.n and rk.reason[k] in ("pack_mismatch", "pack_missing"):
                if rk.pack[k] in packs:
                    rk.clear_fault(k)

    def _holds(self, now):
        smoke = self.bay.safety.smoke_live
        if smoke != self._smoke:
            # The bay's detector also watches the store: stop all charging (GB/T 51077).
            self._smoke = smoke
            self.thermal.smoke(smoke)
        hold = self.bay.safety.hold
        self._out("motion_enable", 1 if hold == 0 and self.baylink.online else 0)
        seen = self._hold_seen
        if hold != seen:
            self._hold_seen = hold
            for bit, name in sf.NAMES:
                if (hold ^ seen) & bit:
                    self._alarm(-1, name, None, bool(hold & bit))
            if not hold & sf.CONFIRM:
                self._alarm(-1, "boot", None, False)
        self._out("fault", 1 if self.alarms else 0)

    def _lines(self):
        """Follow each bus's line state; the alarm goes up and down with it (the bus
        master keeps an episode together), not with each failed request."""
        seen = self._babbling
        for i in range(2):
            on = (self.chargers.bus if i == 0 else self.bay_bus).babbling
            if on != seen[i]:
                seen[i] = 1 if on else 0
                self._alarm(-1, _BABBLE[i], _BABBLE_TEXT[i] if on else None, on)

    # ---- thermal --------------------------------------------------------------------------
    def _thermal_events(self, now):
        got = False
        while True:
            ev = self.thermal.pop()
            if ev is None:
                if got:
                    self.dispatch_update(now)  # no later control write may enable it again
                return got
            got = True
            slot, cause, value = ev
            name = th.CAUSE_NAMES[cause]
            if slot == th.STORE:
                self.chargers.stop_all()
                self._alarm(-1, "store_smoke", None)
                continue
            self.chargers.stop(slot)  # charge-enable 0 goes out ahead of the round
            self.rack.quarantine(slot, "thermal " + name)
            self._alarm(slot, "runaway", "%s %d" % (name, value))

    def _isolation(self, now):
        b = self.bay
        if self._isolating >= 0 or b.swap is not None or not b.safety.motion_allowed():
            return
        rk = self.rack
        if len(rk.isolation) >= self.cfg["isolation_bay"]["capacity"]:
            return
        for slot in range(rk.n):
            if (rk.state[slot] == QUARANTINED and rk.pack[slot] is not None
                    and slot not in self._no_isolation and rk.reason[slot] not in REMOTE_OUT):
                if b.start_isolation(slot, now):
                    self._isolating = slot
                return

    # ---- operator --------------------------------------------------------------------------
    def _op(self, action, done, detail=None):
        self._j(self.journal.operator, action, "operator", self.now, detail)
        self.baylink.poll_now(self.now)  # look at the sensors again at once
        return done

    def ack(self):
        """Reset e-stop / interlock / smoke latches whose cause is gone, and acknowledge a
        damaged journal (``journal_replay``: replay skipped the bad records) or a refused
        record (``journal_refused``); nothing else clears those two. True if anything cleared."""
        if self.error is not None:
            return False
        cleared = self.bay.ack()
        if cleared & sf.SMOKE:
            self.thermal.clear(th.STORE)
            self._alarm(-1, "store_smoke", None, False)
        names = sf.names(cleared)
        for code in RECORD_ALARMS:
            if "-1:" + code in self.alarms:
                self._alarm(-1, code, None, False)
                names.append(code)
        return self._op("ack", bool(names), ",".join(names) or None)

    def confirm(self):
        """Confirm the bay's state; refused while a stop is latched. A held swap resumes its
        step (see ``Bay.confirm``); the fault the bay held for is cleared with it."""
        if self.error is not None or self._booting:
            return False
        ok = self.bay.confirm()
        if ok:
            self._alarm(-1, "operator", None, False)
        return self._op("confirm", ok)

    def manual(self, on):
        if self.error is not None:
            return False
        self.bay.set_manual(on)
        return self._op("manual_on" if on else "manual_off", True)

    def jog(self, coil, on):
        """Manual mode: set one bay output. E-stop still overrides."""
        if self.error is not None or not self.bay.safety.hold & sf.MANUAL:
            return False
        self.bay.set_jog(coil, on)
        self.bay.update(self.now)
        self.baylink.write()
        return self._op("jog", True, "%d=%d" % (coil, 1 if on else 0))

    def abort_swap(self):
        """Close a held swap as failed after the manual recovery (docs/operations.md).
        Refused while the bay's sensors say it is not clear; ``bay_not_clear`` then names
        what is in the way, until the swap ends."""
        if self.error is not None:
            return False
        b = self.bay
        ok = b.abort_swap(self.now)
        why = None
        if not ok and b.swap is not None and b.safety.hold & (sf.CONFIRM | sf.MANUAL):
            why = ", ".join(b.not_clear())
            self._alarm(-1, "bay_not_clear", why)
        return self._op("abort_swap", ok, why)

    def clear_slot(self, slot):
        """Operator accepts a slot again after a fault or a thermal alarm."""
        if self.error is not None:
            return False
        self.thermal.clear(slot)
        self.rack.clear_fault(slot)
        if slot in self._no_isolation:
            self._no_isolation.remove(slot)
        for code in ("runaway", "pack_mismatch", "pack_missing", "not_isolated"):
            self._alarm(slot, code, None, False)
        return self._op("clear_slot", True, self.rack.ids[slot])

    def vehicle_arrived(self, vehicle_id, model, pack_id, soc=None, pack_type=None):
        """Queue a vehicle's identity (scenario drivers without a reader model)."""
        if self.error is not None or len(self.bay.queue) >= _QUEUE_MAX:
            return False
        if pack_type is None:
            types = self.cfg["compatibility"].get(model)
            pack_type = types[0] if types else None
        self.bay.offer_identity(str(vehicle_id), model, pack_id, pack_type, soc, True)
        return True

    # ---- telemetry (firmware/core/telemetry.py) -------------------------------------------------
    def watch_alarms(self, fn):
        """Call ``fn(slot, code, active, detail)`` on every alarm raised or cleared."""
        self._alarm_hooks.append(fn)

    def remote_alarm(self, code, detail):
        """A remote command refused for its MAC (``cmd_bad_mac``) or counter (``cmd_replay``):
        station-wide, cleared by the operator's ``ack``."""
        self._alarm(-1, code, detail)

    def command_counter(self):
        """The last remote command counter accepted, from the journal (survives reboots)."""
        return self.journal.state.cmd_ctr

    def accept_counter(self, n):
        """Journal a remote command's counter before it acts; False: not journalled, so
        the command must not act (a replay after a reboot would pass)."""
        return self.error is None and self._j(self.journal.command_counter, n) is not None

    def last_swap_seq(self):
        """Sequence number of the newest swap transaction in the journal."""
        return self.journal.state.last_swap_seq

    def exported_seq(self):
        """Sequence number up to which the back office acknowledged every swap record."""
        return self.journal.state.exported

    def next_swap_record(self, after):
        """(seq, fields) of the first swap transaction after journal sequence ``after``, or None."""
        if self.error is not None or not self._journal_ok:
            return None
        g = None
        try:
            g = self.journal.swap_records(after)
            return next(g, None)
        except OSError as e:
            self._journal_failed(e)
        finally:
            if g is not None:
                g.close()  # closes the journal file now: MicroPython does not on collection
        return None

    def swaps_exported(self, seq):
        """The back office holds every swap record up to ``seq``: journal it (EX)."""
        if self.error is not None or seq <= self.journal.state.exported:
            return False
        return self._j(self.journal.mark_exported, seq) is not None

    def set_grid_cap(self, kw):
        """The grid cap from afar (demand response): from 1 kW up to the connection's
        ``limits.grid_kw``, until the next boot. False: out of range, or no station."""
        top = self.cfg["limits"]["grid_kw"]
        if self.error is not None or not (type(kw) in (int, float) and 1 <= kw <= top):
            return False
        self.dispatch.grid_dkw = int(round(kw * 10))
        self.dispatch_update(self.now)
        return self._op("grid_cap", True, "%d kW" % kw)

    def ack_record_alarm(self, code):
        """Acknowledge from afar one of RECORD_ALARMS; nothing else: the e-stop, interlock
        and smoke latches that ``ack`` resets stay with the person at the station."""
        if self.error is not None or code not in RECORD_ALARMS or "-1:" + code not in self.alarms:
            return False
        self._alarm(-1, code, None, False)
        return self._op("ack_record_alarm", True, code)

    def set_tariff(self, prices):
        """New prices for the configured time-of-use bands, in their order (the bands' times
        stay the config's), until the next boot. False without bands, or a price not in
        0..10000 per kWh, or a count that is not the bands'."""
        d = self.dispatch
        if self.error is not None or not d.bands or len(prices) != len(d.bands):
            return False
        for p in prices:
            if type(p) not in (int, float) or not 0 <= p <= 10000:
                return False
        d.bands = tuple((b[0], b[1], float(prices[i])) for i, b in enumerate(d.bands))
        self.dispatch_update(self.now)
        return self._op("tariff", True, " ".join("%g" % p for p in prices))

    def take_out(self, slot, why):
        """Hold ``slot`` out of use from afar (``why``: one of REMOTE_OUT): nothing is
        fetched from it, stored in it or charged there, and a pack in it stays where it is,
        for no remote command starts motion. A thermal alarm there later still isolates
        it. False for a slot that is already out (a fault, a quarantine) or reserved."""
        rk = self.rack
        if self.error is not None or why not in REMOTE_OUT or not 0 <= slot < rk.n:
            return False
        if rk.state[slot] in (FAULT, QUARANTINED, RESERVED):
            return False
        self.chargers.stop(slot)
        rk.quarantine(slot, why)
        self.dispatch_update(self.now)
        return self._op("take_out", True, rk.ids[slot] + " " + why)

    def put_back(self, slot):
        """Undo ``take_out``; only that: a slot out for any other reason (a thermal alarm
        since) needs ``clear_slot`` at the station."""
        rk = self.rack
        if self.error is not None or not 0 <= slot < rk.n or rk.reason[slot] not in REMOTE_OUT:
            return False
        rk.clear_fault(slot)
        self.dispatch_update(self.now)
        return self._op("put_back", True, rk.ids[slot])

    def grid_kw(self):
        """The charging power the dispatch gives the chargers now, kW."""
        if self.error is not None:
            return 0.0
        return sum(self.dispatch.p_dkw) / 10

    # ---- status -----------------------------------------------------------------------------
    def state(self):
        if self.error is not None:
            return "config_error"
        if self._booting:
            return "boot"
        hold = self.bay.safety.hold
        if hold & sf.MANUAL:
            return "manual"
        return "hold" if hold else "run"

    def status(self):
        """Compact snapshot: plain values only, cheap enough to ask every second."""
        if self.error is not None:
            return {"state": "config_error", "error": self.error}
        b = self.bay
        s = b.swap
        rk = self.rack
        counts = [0] * 6
        for k in range(rk.n):
            counts[rk.state[k]] += 1
        return {
            "state": self.state(),
            "hold": sf.names(b.safety.hold),
            "fault": b.fault,
            "step": bay_mod.SWAP_STEPS[b.step] if b.step >= 0 else None,
            "plan": bay_mod.PLAN_NAMES[b.plan] if s is not None else None,
            "swap": s.n if s is not None else None,
            "vehicle": s.vehicle if s is not None else None,
            "queue": len(b.queue),
            "rack": {"empty": counts[0], "charging": counts[1], "ready": counts[2], "reserved": counts[3],
                     "quarantined": counts[4], "fault": counts[5], "offline": rk.n - sum(rk.online),
                     "isolation": len(rk.isolation)},
            "alarms": sorted(self.alarms),
            "in_bay": b.not_clear(),  # what the sensors see in the bay (empty: clear)
            "swaps_ok": b.swaps_ok,
            "swaps_other": b.swaps_other,
            "last_swap_ms": b.last_swap_ms,
            "last_step_ms": list(b.last_step_ms) if b.last_step_ms else None,
            "ticks": self.ticks,
            "late_ticks": self.late_ticks,
            "alive": self.alive,
            "journal_errors": self.journal_errors,
        }
