"""A small station plant for firmware tests, in plain Python both interpreters run.

- ``MemBus``: an in-memory field bus on the Modbus master's own ``BusMaster``
  (same queue, transaction pool, retries and offline/probe logic), calling the
  devices instead of framing bytes.
- ``Charger``: one charger module per the register map (status/control blocks,
  heartbeat watchdog, latched faults), integrating its pack's SoC lazily on access.
- ``BayIO``: the bay remote-I/O module with the mechanics behind it: each axis a
  travel between two limit inputs, nutrunners as timed runs with per-bolt torque
  and angle, a carrier moving packs between bay and rack, the reader, the vehicle.
- ``Plant``: all of it plus fault injection.

Devices follow host/sim/buses.py's ``Device`` shape: ``read(fc, address, count)`` and
``write(fc, address, values)``, raising ``NoReply`` when off the bus.
Time is virtual: ``Plant.now`` is a plain integer of ms, moved by ``advance``; the
buses take the ticks value the supervisor is given.
"""

from firmware.compat import ticks_add, ticks_diff
from firmware.proto import regmap as rm
from firmware.proto.fieldbus import ERR_EXCEPTION, ERR_NONE, ERR_TIMEOUT, IDLE_POLL_MS, BusMaster

FC_READ_COILS = 1
FC_READ_DISCRETE = 2
FC_READ_HOLDING = 3
FC_READ_INPUT = 4
FC_WRITE_COIL = 5
FC_WRITE_REGISTER = 6
FC_WRITE_COILS = 15
FC_WRITE_REGISTERS = 16


class NoReply(Exception):
    pass


class SlaveError(Exception):
    def __init__(self, code):
        super().__init__("modbus exception " + str(code))
        self.code = code


# ---- bus ---------------------------------------------------------------------------
class MemBus(BusMaster):
    """The master's queue, pool and health logic (``BusMaster``) over in-process
    devices: one transaction at a time, each taking ``latency_ms``; a device that
    is off the bus costs ``timeout_ms`` per attempt, as on the wire."""

    def __init__(self, devices, latency_ms=0, timeout_ms=50, retries=2, offline_after=3,
                 probe_interval_ms=5000, queue_size=8):
        BusMaster.__init__(self, timeout_ms, retries, offline_after, probe_interval_ms, 0, None, queue_size)
        self.devices = devices  # unit -> device
        self.latency_ms = latency_ms
        self._due = 0
        self.requests = 0
        self.log_writes = None  # a list to record (unit, fc, address, values) of writes...
        self.log_unit = None  # ...to this unit

    def poll(self, now_ms):
        while True:
            tx = self._active
            if tx is None:
                tx = self._next_tx(now_ms)
                if tx is None:
                    return
                self._start(tx, now_ms)
                continue
            if ticks_diff(now_ms, self._due) < 0:
                return
            self._exchange(tx, now_ms)

    def _start(self, tx, now_ms):
        tx.attempts += 1
        self.requests += 1
        dev = self.devices.get(tx.unit)
        off = dev is None or dev.offline
        self._due = ticks_add(now_ms, self.timeout_ms if off else self.latency_ms)

    def _exchange(self, tx, now_ms):
        dev = self.devices.get(tx.unit)
        try:
            if dev is None or dev.offline:
                raise NoReply()
            if tx.fc < 5:
                got = dev.read(tx.fc, tx.address, tx.count)
                v = tx.result_list()
                for i in range(tx.count):
                    v[i] = got[i]
            else:
                vals = [tx.written(i) for i in range(tx.count)]
                if self.log_writes is not None and tx.unit == self.log_unit:
                    self.log_writes.append((tx.unit, tx.fc, tx.address, vals))
                dev.write(tx.fc, tx.address, vals)
            self._finish(tx, ERR_NONE, now_ms)
        except SlaveError as e:
            self._finish(tx, ERR_EXCEPTION, now_ms, e.code)
        except NoReply:
            self._attempt_failed(tx, ERR_TIMEOUT)
            if self._attempts_left(tx):
                self._start(tx, now_ms)
            else:
                self._finish(tx, ERR_TIMEOUT, now_ms)

    def next_poll_ms(self, now_ms):
        if self._active is not None:
            return max(0, ticks_diff(self._due, now_ms))
        return 0 if self._qlen else IDLE_POLL_MS


# ---- packs and vehicles ------------------------------------------------------------
class Pack:
    # Fault injection, set on the instances a test picks (class defaults keep every other
    # pack's attribute table small: the hour test holds some forty packs on a small heap).
    weak_bolt = -1  # this bolt never reaches torque
    stuck_bolt = -1  # this bolt will not come loose
    no_contact = False  # fails the vehicle's electrical self-check
    runaway = False

    def __init__(self, pid, ptype=rm.PACK_100, soc=50.0, temp=25.0, soh=98.0, cycles=100, bolts=10):
        self.id = pid
        self.type = ptype
        self.capacity_kwh = rm.PACK_PARAMS[ptype][0] / 10
        self.soc = soc
        self.temp = temp
        self.soh = soh
        self.cycles = cycles
        self.bolt = bytearray(bolts)  # 0 released, 1 snug, 2 tight
        for i in range(bolts):
            self.bolt[i] = 2

    def mwh(self):
        """Energy held, in mWh, as an int: SoC to 0.001 % times capacity in 0.1 kWh
        (1e-5 x 100 Wh). At most 100000 x 1500: a small int on a 32-bit build too."""
        return int(round(self.soc * 1000)) * int(round(self.capacity_kwh * 10))

    def tight(self):
        for b in self.bolt:
            if b != 2:
                return False
        return True

    def released(self):
        for b in self.bolt:
            if b != 0:
                return False
        return True


class Vehicle:
    def __init__(self, vid, model_code, pack, subscribed=True):
        self.id = vid
        self.subscribed = subscribed
        self.model = model_code
        self.pack = pack
        self.arrived = None
        self.left = None
        self.came_with = pack.id
        self.came_mwh = pack.mwh()  # what it brought in: the plant's side of the swap's energy
        self.came_kwh = pack.capacity_kwh


# ---- charger ------------------------------------------------------------------------
class Charger:
    held = 0  # fault bits whose cause is still there: a fault reset leaves them set
    resets = 0  # fault resets written
    beat_stopped = -1  # >= 0: its heartbeat counter reads this and no longer counts (frozen)
    # Rated output (info block); a setpoint above it is refused with exception 03, as the map says.
    rated_dkw = rm.CHG_RATED_POWER
    rated_da = rm.CHG_RATED_I_MAX
    rated_dv = rm.CHG_RATED_V_MAX
    refuse = 0  # > 0: every write is answered with this exception code (fault injection)
    refused = 0  # writes answered with an exception

    def __init__(self, plant, slot):
        self.plant = plant
        self.slot = slot
        self.offline = False
        self.hr = [0] * rm.CHG_HOLDING_COUNT
        self.hr[rm.CHG_HR_WATCHDOG_MS] = rm.CHG_WATCHDOG_DEFAULT_MS
        self.hr[rm.CHG_HR_TARGET_SOC] = 1000
        self.faults = 0
        self.t = plant.now
        self.hb_t = plant.now  # when the controller's heartbeat last changed
        self.power_kw = 0.0
        self.writes = 0

    def pack(self):
        return self.plant.slots[self.slot]

    def _sync(self):
        now = self.plant.now
        dt = now - self.t
        if dt <= 0:
            return
        self.t = now
        p = self.pack()
        if ((now - self.hb_t) > self.hr[rm.CHG_HR_WATCHDOG_MS]
                and not self.faults & rm.CHG_FAULT_HEARTBEAT):
            self.faults |= rm.CHG_FAULT_HEARTBEAT
            self.hr[rm.CHG_HR_ENABLE] = 0
        if p is None:
            self.power_kw = 0.0
            return
        if p.runaway:
            p.temp += dt * 0.002  # 2 K/s: runaway
            if p.temp > 80:
                self.faults |= rm.CHG_FAULT_THERMAL_RUNAWAY
        kw = 0.0
        target = self.hr[rm.CHG_HR_TARGET_SOC] / 10
        if self.hr[rm.CHG_HR_ENABLE] and not self.faults and p.soc < target:
            kw = min(self.hr[rm.CHG_HR_P_LIMIT] / 10, self.rated_dkw / 10)
            if p.soc > 80:
                kw = kw * max(0.2, (100 - p.soc) / 20)  # CV taper
        self.power_kw = kw
        if kw > 0:
            p.soc = min(target, p.soc + kw * dt / 3600000 / p.capacity_kwh * 100)
        if not p.runaway:
            # Lumped thermal model: heats with power, relaxes to 25 C in minutes.
            goal = 25 + kw * 0.25
            p.temp += (goal - p.temp) * min(1.0, dt / 300000)

    def status(self):
        p = self.pack()
        if self.faults & rm.CHG_FAULT_HEARTBEAT:
            return rm.CHG_ST_WATCHDOG
        if self.faults:
            return rm.CHG_ST_FAULT
        if p is None:
            return rm.CHG_ST_STANDBY
        if self.power_kw > 0:
            return rm.CHG_ST_CHARGING
        if p.soc >= self.hr[rm.CHG_HR_TARGET_SOC] / 10 - 0.05:
            return rm.CHG_ST_FULL
        return rm.CHG_ST_READY

    def read(self, fc, address, count):
        self._sync()
        if fc == FC_READ_INPUT:
            regs = self._inputs(address)
            if regs is None or count > len(regs):
                raise SlaveError(2)
            return regs if count == len(regs) else regs[:count]
        if fc == FC_READ_HOLDING:
            if address + count > rm.CHG_HOLDING_COUNT:
                raise SlaveError(2)
            return self.hr[address:address + count]
        raise SlaveError(1)

    def _inputs(self, address):
        p = self.pack()
        if address == rm.CHG_STATUS_BASE:
            hi, lo = rm.split32(p.id) if p else (0, 0)
            beat = (self.plant.now // 1000) & 0xFFFF if self.beat_stopped < 0 else self.beat_stopped
            e = 0
            return [
                self.status(), 1 if p else 0, hi, lo, p.type if p else 0,
                int(p.soc * 10) if p else 0, int(p.soh * 10) if p else 0, 3700 if p else 0,
                rm.u16(int(self.power_kw * 1000 / 370 * 10)), rm.u16(int(self.power_kw * 10)),
                rm.u16(int(p.temp * 10)) if p else 0, rm.u16(int((p.temp - 2) * 10)) if p else 0,
                self.faults, e, e, beat,
            ]
        if address == rm.CHG_INFO_BASE:
            return [rm.CHG_MODEL_CODE, 0x0100, self.rated_dkw, self.rated_dv, rm.CHG_RATED_V_MIN,
                    self.rated_da, int(p.capacity_kwh * 10) if p else 0, p.cycles if p else 0, 250]
        return None

    def write(self, fc, address, values):
        self._sync()
        if fc not in (FC_WRITE_REGISTER, FC_WRITE_REGISTERS):
            raise SlaveError(1)
        if address + len(values) > rm.CHG_HOLDING_COUNT:
            raise SlaveError(2)
        code = self.refuse
        for i, v in enumerate(values):
            a = address + i
            lo = rm.CHG_WATCHDOG_MIN_MS if a == rm.CHG_HR_WATCHDOG_MS else 0
            if not code and not lo <= v <= self._top(a):
                code = 3  # out of range: nothing is written
        if code:
            self.refused += 1
            raise SlaveError(code)
        self.writes += 1
        for i, v in enumerate(values):
            a = address + i
            if a == rm.CHG_HR_HEARTBEAT:
                if v != self.hr[a]:
                    self.hb_t = self.plant.now
            elif a == rm.CHG_HR_FAULT_RESET:
                if v == 1:
                    p = self.pack()
                    keep = rm.CHG_FAULT_THERMAL_RUNAWAY if p is not None and p.runaway else 0
                    if self.plant.now - self.hb_t > self.hr[rm.CHG_HR_WATCHDOG_MS]:
                        keep |= rm.CHG_FAULT_HEARTBEAT  # no fresh heartbeat yet: the cause is still there
                    self.faults &= keep | self.held
                    self.resets += 1
                continue
            elif a == rm.CHG_HR_ENABLE and v and self.faults:
                continue  # refused until faults are reset
            self.hr[a] = v

    def _top(self, a):
        """Highest value holding register ``a`` accepts (docs/register-map.md)."""
        if a == rm.CHG_HR_I_LIMIT:
            return self.rated_da
        if a == rm.CHG_HR_V_LIMIT:
            return self.rated_dv
        if a == rm.CHG_HR_P_LIMIT:
            return self.rated_dkw
        if a == rm.CHG_HR_TARGET_SOC:
            return 1000
        if a == rm.CHG_HR_WATCHDOG_MS:
            return rm.CHG_WATCHDOG_MAX_MS
        if a == rm.CHG_HR_HEARTBEAT:
            return 0xFFFF
        return 1  # enable, fault reset


# ---- bay I/O module and mechanics --------------------------------------------------
class Axis:
    """A travel between two limits: ``pos`` runs 0..travel_ms, one unit per ms driven."""

    def __init__(self, travel_ms, pos=0):
        self.travel_ms = travel_ms
        self.pos = pos

    def drive(self, direction, dt):
        if direction > 0:
            self.pos = min(self.travel_ms, self.pos + dt)
        elif direction < 0:
            self.pos = max(0, self.pos - dt)

    def high(self):
        return self.pos >= self.travel_ms

    def low(self):
        return self.pos <= 0


# Mechanism timings (ms): a swap takes about 150 s, like a PSS 4.0's 144 s.
T = {
    "door": 3000, "positioner": 4000, "lift": 8000, "rgv": 5000, "grip": 800, "unbolt": 12000,
    "dock": 6000, "lock": 4000, "carry": 6000, "per_slot": 200, "transfer": 3000, "drive_in": 8000,
    "reader": 1500, "drive_out": 4000, "elec": 2000,
}
_STEP_MS = 100  # mechanics integrate in steps no longer than this


class BayIO:
    def __init__(self, plant, bolts, torque_window=(110.0, 130.0)):
        self.plant = plant
        self.offline = False
        self.bolts = bolts
        self.window = torque_window
        self.coils = bytearray(rm.BAY_COIL_COUNT)
        self.hr = [0] * rm.BAY_HOLDING_COUNT
        self.ir = [0] * rm.BAY_IR_COUNT
        self._di = bytearray(rm.BAY_DI_COUNT)  # inputs() fills it: no list per read
        self.t = plant.now
        self.last_req = plant.now
        self.door = Axis(T["door"])  # 1 = open
        self.positioner = Axis(T["positioner"])  # 1 = engaged
        self.lift = Axis(T["lift"])
        self.rgv = Axis(T["rgv"])
        self.grip = Axis(T["grip"])
        self.vehicle = None  # on the platform
        self.entering = None  # (vehicle, ms left)
        self.leaving_ms = -1
        self.id_ms = -1
        self.carrier_at = -1  # -1 bay, k slot k (n_slots: isolation), None moving
        self.carrier_pack = None
        self.move_dest = None
        self.move_ms = 0
        self.transfer_ms = -1
        self.returning = False
        self.tool = 0  # 0 idle, 1 unbolt, 2 dock, 3 lock
        self.tool_ms = 0
        self.prev_unbolt = 0
        self.prev_bolt = 0
        self.elec_ms = 0
        self.estop = False
        self.curtain_broken = False
        self.smoke = False
        self.manual_key = False
        self.torque_low_bolt = -1
        self.writes = 0
        self.stuck = set()  # axes that do not move (fault injection): "lift", "rgv", ...
        self.tool_stall = False  # nutrunner runs never finish
        self.exit_blocked = False  # the vehicle does not drive off
        self.isolation_target = True  # TARGET_SLOT = slot count reaches the isolation bay

    # -- Modbus side
    def read(self, fc, address, count):
        self._sync()
        self.last_req = self.plant.now
        if fc == FC_READ_DISCRETE:
            di = self.inputs()
            if address + count > len(di):
                raise SlaveError(2)
            return di if address == 0 and count == len(di) else di[address:address + count]
        if fc == FC_READ_INPUT:
            if address + count > rm.BAY_IR_COUNT:
                raise SlaveError(2)
            ir = self.ir
            return ir if address == 0 and count == len(ir) else ir[address:address + count]
        if fc == FC_READ_COILS:
            return list(self.coils[address:address + count])
        if fc == FC_READ_HOLDING:
            return self.hr[address:address + count]
        raise SlaveError(1)

    def write(self, fc, address, values):
        self._sync()
        self.last_req = self.plant.now
        self.writes += 1
        if fc in (FC_WRITE_COILS, FC_WRITE_COIL):
            if address + len(values) > rm.BAY_COIL_COUNT:
                raise SlaveError(2)
            for i, v in enumerate(values):
                self.coils[address + i] = 1 if v else 0
            self._edges()
        elif fc in (FC_WRITE_REGISTERS, FC_WRITE_REGISTER):
            if address + len(values) > rm.BAY_HOLDING_COUNT:
                raise SlaveError(2)
            top = len(self.plant.slots) if self.isolation_target else len(self.plant.slots) - 1
            for i, v in enumerate(values):
                if address + i == rm.BAY_HR_TARGET_SLOT and v > top:
                    raise SlaveError(3)  # the map: out-of-range values are refused
            for i, v in enumerate(values):
                self.hr[address + i] = v
        else:
            raise SlaveError(1)

    def _powered(self):
        return not self.estop

    def _edges(self):
        # Nutrunner runs start on the rising edge of their coil (module sets TOOL_BUSY at once).
        c = self.coils
        v = self.vehicle
        at_pack = self.rgv.high() and v is not None and v.pack is not None
        if c[rm.BAY_CO_TOOL_UNBOLT] and not self.prev_unbolt and not c[rm.BAY_CO_TOOL_BOLT]:
            if self._powered() and at_pack:
                self._start_tool(1, T["unbolt"])
        if c[rm.BAY_CO_TOOL_BOLT] and not self.prev_bolt and not c[rm.BAY_CO_TOOL_UNBOLT]:
            if self._powered() and at_pack:
                self._start_tool(3 if c[rm.BAY_CO_TOOL_LOCK_SPEED] else 2,
                                 T["lock"] if c[rm.BAY_CO_TOOL_LOCK_SPEED] else T["dock"])
        self.prev_unbolt = c[rm.BAY_CO_TOOL_UNBOLT]
        self.prev_bolt = c[rm.BAY_CO_TOOL_BOLT]

    def _start_tool(self, kind, ms):
        self.tool = kind
        self.tool_ms = ms
        for b in range(rm.BOLT_MAX):
            self.ir[rm.BAY_IR_TORQUE_BASE + b] = 0
            self.ir[rm.BAY_IR_ANGLE_BASE + b] = 0

    def _end_tool(self):
        p = self.vehicle.pack
        kind = self.tool
        self.tool = 0
        lo, hi = self.window
        target = self.hr[rm.BAY_HR_TORQUE_TARGET] / 10 or (lo + hi) / 2
        for b in range(self.bolts):
            t = a = 0
            if kind == 1:
                if b == p.stuck_bolt:
                    t, a = hi * 2, 0
                else:
                    t = target * 0.9 if p.bolt[b] == 2 else 5
                    a = 540
                    p.bolt[b] = 0
            elif kind == 2:
                t, a = 8, 900 if p.bolt[b] == 0 else 10
                p.bolt[b] = max(1, p.bolt[b])
            else:
                if p.bolt[b] == 0:
                    t, a = 0, 0
                elif b == p.weak_bolt or b == self.torque_low_bolt:
                    t, a = lo - 20, 40
                else:
                    t = target + (b % 3 - 1) * 0.5
                    a = 60 if p.bolt[b] == 1 else 2
                    p.bolt[b] = 2
            self.ir[rm.BAY_IR_TORQUE_BASE + b] = int(t * 10)
            self.ir[rm.BAY_IR_ANGLE_BASE + b] = a

    def _torque_ok(self, b):
        lo, hi = self.window
        t = self.ir[rm.BAY_IR_TORQUE_BASE + b] / 10
        return 1 if lo <= t <= hi else 0

    def inputs(self):
        """The discrete inputs now, in one buffer reused by every call."""
        v = self.vehicle
        di = self._di
        p = v.pack if v is not None else None
        di[rm.BAY_DI_VEHICLE_PRESENT] = 1 if v is not None else 0
        di[rm.BAY_DI_VEHICLE_POSITIONED] = 1 if v is not None and self.positioner.high() else 0
        di[rm.BAY_DI_LIFT_UP] = 1 if self.lift.high() else 0
        di[rm.BAY_DI_LIFT_DOWN] = 1 if self.lift.low() else 0
        di[rm.BAY_DI_RGV_UP] = 1 if self.rgv.high() else 0
        di[rm.BAY_DI_RGV_DOWN] = 1 if self.rgv.low() else 0
        di[rm.BAY_DI_PACK_ON_CARRIER] = 1 if self.carrier_pack is not None else 0
        di[rm.BAY_DI_PACK_GRIPPED] = 1 if self.grip.high() else 0
        di[rm.BAY_DI_PACK_SEATED] = 1 if p is not None else 0
        di[rm.BAY_DI_CARRIER_AT_BAY] = 1 if self.carrier_at == -1 else 0
        di[rm.BAY_DI_CARRIER_AT_RACK] = 1 if (self.carrier_at is not None and self.carrier_at >= 0
                                             and self.carrier_at == self.hr[rm.BAY_HR_TARGET_SLOT]) else 0
        di[rm.BAY_DI_ELECTRICAL_OK] = 1 if p is not None and self.elec_ms >= T["elec"] else 0
        di[rm.BAY_DI_ESTOP_OK] = 0 if self.estop else 1
        di[rm.BAY_DI_DOOR_CLOSED] = 1 if self.door.low() else 0
        di[rm.BAY_DI_CURTAIN_CLEAR] = 0 if self.curtain_broken else 1
        di[rm.BAY_DI_SMOKE_CLEAR] = 0 if self.smoke else 1
        di[rm.BAY_DI_MANUAL_MODE] = 1 if self.manual_key else 0
        di[rm.BAY_DI_TOOL_BUSY] = 1 if self.tool else 0
        di[rm.BAY_DI_POSITIONER_OPEN] = 1 if self.positioner.low() else 0
        for b in range(self.bolts):
            di[rm.BAY_DI_BOLT_RELEASED_BASE + b] = 1 if p is not None and p.bolt[b] == 0 else 0
            di[rm.BAY_DI_BOLT_TORQUE_OK_BASE + b] = self._torque_ok(b) if p is not None else 0
        return di

    # -- mechanics
    def _sync(self):
        now = self.plant.now
        while self.t < now:
            dt = min(_STEP_MS, now - self.t)
            self.t += dt
            self._step(dt)

    def _step(self, dt):
        c = self.coils
        wd = self.hr[rm.BAY_HR_COMM_WATCHDOG_MS]
        if wd and self.t - self.last_req > wd:
            for i in range(len(c)):
                c[i] = 0
            self.prev_unbolt = self.prev_bolt = 0
        self._vehicle(dt)
        if not self._powered():
            self.tool = 0  # safety relay cuts the drives
            return
        if self.tool:
            coil = rm.BAY_CO_TOOL_UNBOLT if self.tool == 1 else rm.BAY_CO_TOOL_BOLT
            if not c[coil]:
                self.tool = 0  # run cut short: bolts keep their state
            else:
                if not self.tool_stall:
                    self.tool_ms -= dt
                if self.tool_ms <= 0:
                    self._end_tool()
        self.door.drive(1 if c[rm.BAY_CO_DOOR_OPEN] else -1, dt)
        if "positioner" not in self.stuck:
            self.positioner.drive(1 if c[rm.BAY_CO_POSITIONER] else -1, dt)
        if "lift" not in self.stuck:
            self.lift.drive(c[rm.BAY_CO_LIFT_UP] - c[rm.BAY_CO_LIFT_DOWN], dt)
        self.grip.drive(1 if c[rm.BAY_CO_PACK_GRIP] else -1, dt)
        self._rgv(dt)
        self._carrier(dt)
        v = self.vehicle
        if v is not None and v.pack is not None and v.pack.tight() and not v.pack.no_contact:
            self.elec_ms += dt
        else:
            self.elec_ms = 0

    def _rgv(self, dt):
        c = self.coils
        v = self.vehicle
        if "rgv" in self.stuck or self.carrier_at != -1:
            return
        was_high = self.rgv.high()
        up = 1 if c[rm.BAY_CO_RGV_RAISE] else -1
        if up < 0 and was_high and v is not None and v.pack is not None:
            # Leaving the pack: it comes down only if gripped and every bolt is out.
            if self.grip.high() and v.pack.released():
                self.carrier_pack = v.pack
                v.pack = None
            elif self.carrier_pack is v.pack:
                self.carrier_pack = None
        self.rgv.drive(up, dt)
        arrived = self.rgv.high() and not was_high
        if arrived and v is not None and v.pack is None and self.carrier_pack is not None:
            if self.lift.high():
                v.pack = self.carrier_pack  # seated, bolts loose
                for b in range(len(v.pack.bolt)):
                    v.pack.bolt[b] = 0

    def _carrier(self, dt):
        c = self.coils
        target = self.hr[rm.BAY_HR_TARGET_SLOT]
        home = c[rm.BAY_CO_CARRIER_HOME]
        to_rack = c[rm.BAY_CO_CARRIER_TO_RACK] and not c[rm.BAY_CO_CARRIER_TO_BAY] and not home
        to_bay = c[rm.BAY_CO_CARRIER_TO_BAY] and not c[rm.BAY_CO_CARRIER_TO_RACK] and not home
        if not to_bay:
            self.returning = False
        if not (to_rack or to_bay or home) or not self.rgv.low() or "carrier" in self.stuck:
            return
        if home:
            dest = -1
            if self.carrier_at == dest:
                return
        elif to_rack:
            dest = target
        elif self.returning or self.carrier_pack is not None:
            dest = -1
        else:
            dest = target  # CARRIER_TO_BAY: to the slot, take its pack if any, back to the bay
        if self.carrier_at == dest:
            if to_rack:
                self._store(dt, target)
            elif dest >= 0:
                self._pick(dt, target)
            return
        if self.move_dest != dest:
            self.move_dest = dest
            frm = self.carrier_at if self.carrier_at is not None else -1
            self.move_ms = T["carry"] + T["per_slot"] * abs(max(dest, 0) - max(frm, 0))
            self.carrier_at = None
        self.move_ms -= dt
        if self.move_ms <= 0:
            self.carrier_at = dest
            self.move_dest = None
            self.transfer_ms = T["transfer"]

    def _store(self, dt, target):
        """At a rack slot with the grip open, the slot's shuttle takes the carrier's pack."""
        plant = self.plant
        if self.carrier_pack is None or self.coils[rm.BAY_CO_PACK_GRIP] or not self.grip.low():
            return
        iso = target == len(plant.slots)
        if not iso and plant.slots[target] is not None:
            return
        self.transfer_ms -= dt
        if self.transfer_ms <= 0:
            if iso:
                plant.isolation.append(self.carrier_pack)
            else:
                plant.slots[target] = self.carrier_pack
            self.carrier_pack = None

    def _pick(self, dt, target):
        plant = self.plant
        if target >= len(plant.slots) or plant.slots[target] is None:
            self.returning = True  # nothing to take: back empty
            return
        if self.coils[rm.BAY_CO_PACK_GRIP]:
            self.transfer_ms -= dt
            if self.transfer_ms <= 0:
                self.carrier_pack = plant.slots[target]
                plant.slots[target] = None
                self.returning = True

    def _vehicle(self, dt):
        plant = self.plant
        v = self.vehicle
        if v is None:
            if self.entering is not None:
                if self.door.high():
                    self.entering[1] -= dt
                    if self.entering[1] <= 0:
                        self.vehicle = self.entering[0]
                        self.vehicle.arrived = plant.now
                        self.entering = None
                        self.id_ms = T["reader"]
            elif plant.waiting and self.door.high():
                self.entering = [plant.waiting.pop(0), T["drive_in"]]
            return
        if self.id_ms >= 0:
            self.id_ms -= dt
            if self.id_ms < 0 and plant.reader:
                self._identify(v)
        if (self.coils[rm.BAY_CO_EXIT_OPEN] and self.lift.low() and self.positioner.low()
                and self.rgv.low() and self._powered() and not self.exit_blocked):
            if self.leaving_ms < 0:
                self.leaving_ms = T["drive_out"]
            self.leaving_ms -= dt
            if self.leaving_ms <= 0:
                v.left = plant.now
                plant.departed.append(v)
                plant.sold_to(v)
                self.vehicle = None
                self.leaving_ms = -1
                self.ir[rm.BAY_IR_ID_STATUS] = rm.ID_NONE

    def _identify(self, v):
        ir = self.ir
        ir[rm.BAY_IR_ID_STATUS] = rm.ID_VALID if v.id else rm.ID_UNKNOWN
        ir[rm.BAY_IR_ID_SEQ] = (ir[rm.BAY_IR_ID_SEQ] + 1) & 0xFFFF
        ir[rm.BAY_IR_VEHICLE_ID_HI], ir[rm.BAY_IR_VEHICLE_ID_LO] = rm.split32(v.id)
        ir[rm.BAY_IR_VEHICLE_MODEL] = v.model
        p = v.pack
        ir[rm.BAY_IR_PACK_ID_HI], ir[rm.BAY_IR_PACK_ID_LO] = rm.split32(p.id if p else 0)
        ir[rm.BAY_IR_PACK_TYPE] = p.type if p else 0
        ir[rm.BAY_IR_ID_FLAGS] = rm.ID_FLAG_SUBSCRIBED if v.subscribed else 0


class Plant:
    """The whole station: slots of packs, chargers, the bay module, vehicles."""

    def __init__(self, n_slots=23, bolts=10, torque_window=(110.0, 130.0), now=0):
        self.now = now
        self.slots = [None] * n_slots
        self.isolation = []
        self.waiting = []  # vehicles queued at the entry
        self.departed = []
        self.reader = True  # the bay's reader identifies vehicles
        self.chargers = [Charger(self, k) for k in range(n_slots)]
        self.bay = BayIO(self, bolts, torque_window)
        self.bolts = bolts
        # The plant's own account of what the journal should say: swaps that sent a
        # vehicle off with another pack, and the energy it drove off with beyond what it
        # brought (what the station sold), exact: sold_kwh kWh + sold_mwh mWh, small ints.
        self.sold = 0
        self.sold_kwh = 0
        self.sold_mwh = 0
        # What the journal may differ by, Wh: per swap one SoC register step (0.1 %) of each
        # pack's capacity plus 5 Wh of rounding to 0.01 kWh (docs/architecture.md, float32).
        self.sold_bound_wh = 0
        self.sales = None  # a list to record each sale's (mWh, bound Wh), when wanted

    def sold_to(self, v):
        if v.pack is None or v.pack.id == v.came_with:
            return
        e = max(0, v.pack.mwh() - v.came_mwh)  # the firmware counts no negative sale either
        bound = int(v.pack.capacity_kwh + v.came_kwh + 0.5) + 5  # 0.1 % of X kWh is X Wh
        self.sold += 1
        m = self.sold_mwh + e
        self.sold_kwh += m // 1000000
        self.sold_mwh = m % 1000000
        self.sold_bound_wh += bound
        if self.sales is not None:
            self.sales.append((e, bound))

    def fill(self, packs):
        for k, p in enumerate(packs):
            self.slots[k] = p

    def advance(self, ms):
        self.now += ms

    def arrive(self, vehicle):
        self.waiting.append(vehicle)

    def packs_everywhere(self):
        """Every pack id in the plant (slots, isolation, carrier, vehicles), for bookkeeping."""
        out = [p.id for p in self.slots if p is not None]
        out += [p.id for p in self.isolation]
        b = self.bay
        if b.carrier_pack is not None and (b.vehicle is None or b.vehicle.pack is not b.carrier_pack):
            out.append(b.carrier_pack.id)
        if b.vehicle is not None and b.vehicle.pack is not None:
            out.append(b.vehicle.pack.id)
        return out
