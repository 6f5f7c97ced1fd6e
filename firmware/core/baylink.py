"""The supervisor's link to the bay remote-I/O module.

Each cycle it reads the sensors (FC02, plus the input registers when the bay asks
for them or waits for an identity) and hands them to the bay, which updates its
sequence; whenever the bay's output generation changes it writes the holding
registers (target slot, torque target, comm watchdog, docking and locking speeds) if
they changed, then every coil (FC15). Each such pair is a batch, numbered in bus order.
A sensor image counts as seen by the output generation of the last batch acknowledged
whole before the read went on the bus (``Bay.set_inputs``): writes queued after the read
are counted after it, even when both answers are in by the next ``service``. A failed
write makes the module's outputs unknown: every batch already in flight stops counting
and everything is sent again in a new batch, whose acknowledgement counts.

At boot the module's coils are read back first (FC01) and adopted as the held
image, so nothing that is in position is commanded elsewhere.
"""

from firmware.compat import const, ticks_add, ticks_diff
from firmware.core import bay as bay_mod
from firmware.proto import fieldbus as fb
from firmware.proto import regmap as rm

_WRITES = const(4)  # output writes in flight at most
_BATCH_MASK = const(0x3FFFFFFF)  # batch numbers wrap here (small ints on 32-bit ports)


def _ahead(a, b):
    """How many batches ``a`` comes after ``b`` (negative: before), across the wrap."""
    return ((a - b + 0x20000000) & _BATCH_MASK) - 0x20000000


class BayLink:
    def __init__(self, alarm, bus, unit, bay, cycle_ms, idle_ms, now_ms):
        self.alarm = alarm  # alarm(slot, code, detail=None, active=True), from the supervisor
        self.bus = bus
        self.unit = unit
        self.bay = bay
        self.cycle_ms = cycle_ms
        self.idle_ms = idle_ms
        self.comm_wd = max(1000, 3 * idle_ms)  # the module drops its coils after this silence
        self._di = self._ir = self._co = None  # reads in flight
        self._writes = []  # (tx, gen, target slot sent (registers) or -1 (coils), batch) in bus order
        self._hr_sent = None
        self._batch = 0  # number of the last batch queued
        self._bad_batch = 0  # batches up to this one were in flight when a write failed
        self._di_batch = 0  # last batch queued before the sensor read in flight
        self.due = now_ms
        self.last_done = now_ms
        self.online = True
        self.booted = 0  # 1 coils read back, 2 first sensors read

    def poll_now(self, now_ms):
        self.due = now_ms

    def reading(self):
        return self._di is not None

    def finished(self):
        """A transaction has its answer and waits for ``service``."""
        w = self._writes
        di, ir, co = self._di, self._ir, self._co
        return bool((w and w[0][0].done) or (co is not None and co.done)
                    or (di is not None and di.done and (ir is None or ir.done)))

    def progress(self, now_ms, stall_ms):
        if self.bus.pending() == 0:
            self.last_done = now_ms
            return True
        return ticks_diff(now_ms, self.last_done) <= stall_ms

    def service(self, now_ms, run):
        """Finish transactions; with ``run`` the bay sequence advances on new sensors.
        Returns True when any transaction finished."""
        b = self.bay
        di, ir = self._di, self._ir
        read_done = di is not None and di.done and (ir is None or ir.done)
        # Writes the read followed on the bus first (it saw them), the later ones after it.
        got = self._written(self._di_batch if read_done else None)
        co = self._co
        if co is not None and co.done:
            self._co = None
            if co.ok:
                b.adopt(co.values)
                self.booted = 1
                self.due = now_ms  # the first sensor read goes out now
            co.release()
            got = True
        if read_done:
            self._di = self._ir = None
            got = True
            self._sensors(di, ir, now_ms, run)
            di.release()
            if ir is not None:
                ir.release()
            self._written(None)
        if got:
            self.last_done = now_ms
        if self._di is None and ticks_diff(now_ms, self.due) >= 0:
            self._read(now_ms)
        return got

    def _written(self, upto):
        """Finish the answered writes in bus order, of batches up to ``upto`` (None: all)."""
        got = False
        b = self.bay
        w = self._writes
        while w and w[0][0].done and (upto is None or _ahead(w[0][3], upto) <= 0):
            tx, gen, target, batch = w.pop(0)
            if tx.ok:
                if target < 0 and _ahead(batch, self._bad_batch) > 0:
                    b.outputs_written(gen)
                elif target >= 0:
                    b.hr_refused = None
            else:
                # What the module holds is unknown; batches still in flight were sent
                # before anyone knew: only a batch sent after this counts again.
                self._bad_batch = self._batch
                b.written = -1
                if target >= 0 and tx.error == fb.ERR_EXCEPTION:
                    b.hr_refused = target  # refused, not resent: the bay must not wait for it
                else:
                    self._hr_sent = None  # unknown what the module has: send it all again
            tx.release()
            got = True
        return got

    def _sensors(self, di, ir, now_ms, run):
        b = self.bay
        if di.ok:
            b.set_inputs(di.values, ir.values if ir is not None and ir.ok else None)
            if not self.online:
                self.online = True
                b.comms(True)
                self.alarm(-1, "bay_io_offline", None, False)
            if self.booted == 1:
                self.booted = 2
            if run:
                b.update(now_ms)
                self.write()
        elif self.online and not self.bus.health(self.unit).online:
            self.online = False
            b.comms(False)
            b.written = -1
            self.alarm(-1, "bay_io_offline", fb.ERROR_NAMES[di.error])

    def _read(self, now_ms):
        bus = self.bus
        b = self.bay
        if self.booted == 0:
            if self._co is None:
                self._co = bus.read(self.unit, fb.FC_READ_COILS, 0, rm.BAY_COIL_COUNT)
                # A failed read is asked again an idle cycle later, not at once: with ``due``
                # left behind, a module silent since boot had every tick ask for the next at once.
                self.due = ticks_add(now_ms, self.idle_ms)
            return
        self._di = bus.read(self.unit, fb.FC_READ_DISCRETE_INPUTS, 0, rm.BAY_DI_COUNT)
        if self._di is None:
            return
        self._di_batch = self._batch
        if b.need_ir or (b.step == bay_mod.IDENTIFY and not b.queue):
            self._ir = bus.read(self.unit, fb.FC_READ_INPUT_REGISTERS, 0, rm.BAY_IR_COUNT)
        busy = b.swap is not None or b.safety.hold
        self.due = ticks_add(now_ms, self.cycle_ms if busy else self.idle_ms)

    def write(self):
        """Send the bay's outputs if their generation is not on its way yet."""
        b = self.bay
        w = self._writes
        if self.booted == 0:
            return
        gen = b.gen
        if b.safety.hold and w and w[-1][1] != gen:
            self._withdraw(gen)
        if len(w) >= _WRITES:
            return
        if (w and w[-1][1] == gen) or (not w and b.written == gen):
            return
        bus = self.bus
        batch = (self._batch + 1) & _BATCH_MASK
        if self._hr_sent != b.hr:
            hr = b.hr
            tx = bus.write(self.unit, fb.FC_WRITE_MULTIPLE_REGISTERS, rm.BAY_HR_TARGET_SLOT,
                           (hr[0], hr[1], self.comm_wd, hr[2], hr[3]))
            if tx is None:
                return
            self._batch = batch
            w.append((tx, gen, b.hr[0], batch))
            self._hr_sent = list(b.hr)
        tx = bus.write(self.unit, fb.FC_WRITE_MULTIPLE_COILS, 0, b.coils)
        if tx is not None:
            self._batch = batch
            w.append((tx, gen, -1, batch))

    def _withdraw(self, gen):
        """The bay holds: an older image not on the wire yet may run a drive, so it must
        not reach the module after the hold's image (one on the wire is not sent again)."""
        w = self._writes
        i = 0
        while i < len(w):
            e = w[i]
            if e[1] != gen and self.bus.withdraw(e[0]):
                w.pop(i)
                if e[2] >= 0:
                    self._hr_sent = None  # not sent after all: the registers go again
            else:
                i += 1
