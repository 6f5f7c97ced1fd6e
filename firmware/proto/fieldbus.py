"""Field-bus transactions: the API station logic codes against, without framing.

``BusMaster`` holds the request queue, the transaction pool and per-unit health.
``firmware.proto.modbus_rtu.ModbusMaster`` adds RTU framing on a SerialPort; the
simulator's direct bus adds an in-process exchange. Both offer::

    tx = bus.read(unit, FC_READ_INPUT_REGISTERS, address, count)  # None: queue full
    tx = bus.write(unit, FC_WRITE_MULTIPLE_REGISTERS, address, values)
    bus.poll(now_ms)          # from the main loop; never blocks
    if tx.done:
        if tx.ok: use(tx.values, tx.time_ms)
        else: handle(tx.error, tx.exception_code)
        tx.release()          # hand the object back to the pool
    bus.idle(); bus.next_poll_ms(now_ms); bus.health(unit)
    bus.withdraw(tx)          # not sent after all, if it is not on the wire yet

``read``/``write`` check every argument against the spec limits and raise
ValueError before anything is queued. ``values`` is a sequence of ints: a
bytearray of 0/1 for FC1/2, an array('H') of 0..65535 for FC3/4 (index it, or
copy with list()); a write done ``ok`` has empty ``values``. Write values may be
any sequence of ints (bools count), or one int for FC5/FC6. Unit 0 (broadcast) takes
writes only: done once sent, then the bus stays quiet for ``turnaround_ms``.

Transactions come from a fixed pool (``queue_size``) so the heap stays quiet. A
handle is the caller's from ``read``/``write`` until ``release()``; after that the
object serves another request, so keep no reference to it. Releasing a queued
request cancels it; releasing one on the wire frees it when its exchange ends.

Results: ``ok`` with ``values`` and ``time_ms`` (the now_ms of the poll that
received them), or ``error`` = ERR_* with ``values`` empty: a failed transaction
never shows data. ``exception_code`` is set with ERR_EXCEPTION (never retried).
Timeouts, CRC and frame errors are retried ``retries`` times.

Health (``health(unit)``): good, exceptions, timeouts, crc_errors, frame_errors
count attempts; ``consecutive_failures`` counts failed transactions. After
``offline_after`` of them the unit is offline: its requests fail at once with
ERR_OFFLINE without using the bus, except one single-attempt probe every
``probe_interval_ms``. ``log(msg)`` hears only the two transitions, and the line's.

Line state: ``babbling`` is True while the line itself is at fault: it never went
quiet long enough to send a request for a whole ``timeout_ms`` (a node talking out of
turn, or noise). A framing master sets it (firmware.proto.modbus_rtu); a bus without
a line never does. The requests that could not be sent fail as timeouts, counted as
above; the flag is the station's cue to raise one alarm for the line.
"""

from array import array

from firmware.compat import const, ticks_diff
from firmware.proto.crc16 import append_crc

FC_READ_COILS = const(1)
FC_READ_DISCRETE_INPUTS = const(2)
FC_READ_HOLDING_REGISTERS = const(3)
FC_READ_INPUT_REGISTERS = const(4)
FC_WRITE_SINGLE_COIL = const(5)
FC_WRITE_SINGLE_REGISTER = const(6)
FC_WRITE_MULTIPLE_COILS = const(15)
FC_WRITE_MULTIPLE_REGISTERS = const(16)

ERR_NONE = const(0)
ERR_TIMEOUT = const(1)  # no reply (or none of ours) in time
ERR_CRC = const(2)  # our unit's reply arrived with a bad CRC
ERR_EXCEPTION = const(3)  # the device answered with an exception code
ERR_OFFLINE = const(4)  # unit marked offline; request not sent
ERR_FRAME = const(5)  # reply truncated, broken by a gap, or fields wrong
ERROR_NAMES = ("ok", "timeout", "crc", "exception", "offline", "frame")

EXC_ILLEGAL_FUNCTION = const(1)
EXC_ILLEGAL_ADDRESS = const(2)
EXC_ILLEGAL_VALUE = const(3)
EXC_DEVICE_FAILURE = const(4)
EXC_ACKNOWLEDGE = const(5)
EXC_DEVICE_BUSY = const(6)
EXC_NAMES = ("", "illegal function", "illegal address", "illegal value", "device failure", "acknowledge",
             "device busy")

IDLE_POLL_MS = const(1000)  # next_poll_ms when nothing is queued
ADU_MAX = const(256)  # longest RTU frame
_NO_VALUES = b""  # what a pending or failed transaction shows: nothing

_WRAP = const(0x3FFFFFFF)  # counters wrap at 2**30, as ticks_ms does: small ints on 32-bit builds
_FREE = const(0)
_QUEUED = const(1)
_ACTIVE = const(2)
_DONE = const(3)


def _limit(fc):
    # Spec quantity limits (PDU <= 253 bytes).
    if fc == 1 or fc == 2:
        return 2000
    if fc == 3 or fc == 4:
        return 125
    if fc == 15:
        return 1968
    if fc == 16:
        return 123
    return 1


def reply_len(fc, count):
    """Bytes of the RTU reply to a request of function ``fc`` for ``count`` bits or
    registers (5 for an exception reply, whatever the request)."""
    if fc < 3:
        return 5 + ((count + 7) >> 3)
    if fc < 5:
        return 5 + 2 * count
    return 8  # writes: the echo of address and value or quantity


def _check_addr(fc, address, count):
    if not isinstance(address, int) or address < 0 or address > 0xFFFF:
        raise ValueError("FC%d address %r outside 0..65535" % (fc, address))
    hi = _limit(fc)
    if count < 1 or count > hi:
        raise ValueError("FC%d quantity %d outside 1..%d" % (fc, count, hi))
    if address + count > 0x10000:
        raise ValueError("FC%d address %d + quantity %d passes 65535" % (fc, address, count))


class Transaction:
    """One request and its result; see the module doc for when it may be reused."""

    def __init__(self, bus):
        self._bus = bus
        self._state = _FREE
        self._release_when_done = False
        self._bits = bytearray(0)  # reused for FC1/2 replies
        self._regs = array("H")  # reused for FC3/4 replies
        self.req = bytearray(ADU_MAX)  # whole RTU request (its CRC once frame_crc ran)
        self.req_mv = memoryview(self.req)
        self.req_len = 0
        self.expect = 0  # reply length in bytes
        self._reset()

    def _reset(self):
        self.unit = 0
        self.fc = 0
        self.address = 0
        self.count = 0
        self.done = False
        self.ok = False
        self.error = ERR_NONE
        self.exception_code = 0
        self.values = _NO_VALUES  # type: bytes | bytearray | array
        self.time_ms = 0
        self.attempts = 0
        self.probe = False
        self.no_retry = False  # withdrawn while on the wire: a failed attempt is the last

    def release(self):
        self._bus.release(self)

    def frame_crc(self):
        """Put the request frame's CRC in its last two bytes. A framing master calls this
        when it puts the frame on the wire; an in-process bus has no use for it."""
        append_crc(self.req, self.req_len - 2)

    def written(self, i):
        """The i-th value this write request carries (for in-process buses)."""
        fc = self.fc
        r = self.req
        if fc == 5:
            return 1 if r[4] else 0
        if fc == 6:
            return (r[4] << 8) | r[5]
        if fc == 15:
            return (r[7 + (i >> 3)] >> (i & 7)) & 1
        return (r[7 + 2 * i] << 8) | r[8 + 2 * i]

    def result_list(self):
        """``count`` slots for the reply's values, reused while the shape stays:
        a bytearray of 0/1 for bits, an array('H') for registers (compact on the heap)."""
        n = self.count
        if self.fc < 3:
            if len(self._bits) != n:
                self._bits = bytearray(n)
            return self._bits
        if len(self._regs) != n:
            self._regs = array("H", bytes(2 * n))
        return self._regs

    def __repr__(self):
        return "<Tx u%d fc%d @%d n%d %s>" % (
            self.unit, self.fc, self.address, self.count,
            ("ok" if self.ok else ERROR_NAMES[self.error]) if self.done else "pending",
        )


class Health:
    """Per-unit communication health."""

    def __init__(self):
        self.online = True
        self.good = 0
        self.exceptions = 0
        self.timeouts = 0
        self.crc_errors = 0
        self.frame_errors = 0
        self.consecutive_failures = 0
        self.last_ok_ms = 0
        self.probe_ms = 0  # when the last offline probe was sent

    def __repr__(self):
        return "<Health %s good=%d exc=%d to=%d crc=%d frame=%d run=%d>" % (
            "online" if self.online else "OFFLINE", self.good, self.exceptions,
            self.timeouts, self.crc_errors, self.frame_errors, self.consecutive_failures,
        )


class BusMaster:
    """Queue, transaction pool and health bookkeeping, without framing.

    Subclasses implement ``poll``/``next_poll_ms``: take work with ``_next_tx``,
    count each failed attempt with ``_attempt_failed`` and end with ``_finish``.
    """

    def __init__(self, timeout_ms=100, retries=1, offline_after=3, probe_interval_ms=5000,
                 turnaround_ms=100, log=None, queue_size=8):
        if timeout_ms < 1 or retries < 0 or offline_after < 1 or probe_interval_ms < 0:
            raise ValueError("timeout_ms >= 1, retries >= 0, offline_after >= 1, probe_interval_ms >= 0")
        if turnaround_ms < 0 or queue_size < 1:
            raise ValueError("turnaround_ms >= 0 and queue_size >= 1")
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.offline_after = offline_after
        self.probe_interval_ms = probe_interval_ms
        self.turnaround_ms = turnaround_ms
        self.log = log
        self._pool = [Transaction(self) for _ in range(queue_size)]
        self._free = list(self._pool)
        self._queue = [None] * queue_size  # type: list[Transaction | None]
        self._qhead = 0
        self._qlen = 0
        self._active = None
        self._health = {}
        self.babbling = False  # the line never went quiet for a request (module doc)
        # Transactions finished so far (wraps): a caller holding several requests needs
        # to look for done ones only when this moved.
        self.ends = 0

    # ---- requests --------------------------------------------------------------
    def read(self, unit, fc, address, count):
        if fc < 1 or fc > 4:
            raise ValueError("read takes FC1..FC4, not FC%r" % (fc,))
        if not isinstance(unit, int) or unit < 1 or unit > 247:
            raise ValueError("read unit %r outside 1..247" % (unit,))
        if not isinstance(count, int):
            raise ValueError("FC%d quantity must be an int" % fc)
        _check_addr(fc, address, count)
        tx = self._new(unit, fc, address, count)
        if tx is None:
            return None
        r = tx.req
        r[4] = count >> 8
        r[5] = count & 0xFF
        tx.req_len = 8  # the CRC goes in when the frame is sent (frame_crc)
        tx.expect = reply_len(fc, count)
        return self._enqueue(tx)

    def write(self, unit, fc, address, values):
        if fc not in (5, 6, 15, 16):
            raise ValueError("write takes FC5, FC6, FC15 or FC16, not FC%r" % (fc,))
        if not isinstance(unit, int) or unit < 0 or unit > 247:
            raise ValueError("write unit %r outside 0..247" % (unit,))
        if isinstance(values, int) or isinstance(values, bool):  # no tuple built per call
            values = (values,)
        n = len(values)
        if fc < 7 and n != 1:
            raise ValueError("FC%d writes exactly one value, got %d" % (fc, n))
        _check_addr(fc, address, n)
        bits = fc == 5 or fc == 15
        for v in values:
            if not isinstance(v, int) and not isinstance(v, bool):  # MicroPython's bool is no int subclass
                raise ValueError("FC%d value %r is not an int" % (fc, v))
            if bits and v != 0 and v != 1:
                raise ValueError("FC%d coil value %r is not 0/1" % (fc, v))
            if v < 0 or v > 0xFFFF:
                raise ValueError("FC%d register value %r outside 0..65535" % (fc, v))
        tx = self._new(unit, fc, address, n)
        if tx is None:
            return None
        r = tx.req
        if fc == 5:
            r[4] = 0xFF if values[0] else 0
            r[5] = 0
            end = 6
        elif fc == 6:
            r[4] = values[0] >> 8
            r[5] = values[0] & 0xFF
            end = 6
        else:
            r[4] = n >> 8
            r[5] = n & 0xFF
            nb = (n + 7) >> 3 if bits else 2 * n
            r[6] = nb
            end = 7 + nb
            if bits:
                for i in range(nb):
                    r[7 + i] = 0
                for i in range(n):
                    if values[i]:
                        r[7 + (i >> 3)] |= 1 << (i & 7)
            else:
                for i in range(n):
                    v = values[i]
                    r[7 + 2 * i] = v >> 8
                    r[8 + 2 * i] = v & 0xFF
        tx.req_len = end + 2  # the CRC goes in when the frame is sent (frame_crc)
        tx.expect = reply_len(fc, n)
        return self._enqueue(tx)

    def release(self, tx):
        st = tx._state
        if st == _FREE or tx._bus is not self:
            raise ValueError("transaction is not held (released twice?)")
        if st == _ACTIVE:
            tx._release_when_done = True
            return
        if st == _QUEUED:
            q = self._queue
            size = len(q)
            keep = 0
            for k in range(self._qlen):
                item = q[(self._qhead + k) % size]
                if item is not tx:
                    q[(self._qhead + keep) % size] = item
                    keep += 1
            self._qlen = keep
            q[(self._qhead + keep) % size] = None
        self._give_back(tx)

    def withdraw(self, tx):
        """Take back a request that is not on the wire: queued, or waiting to be sent
        (again). True if it was; the handle is then released and nothing of it goes out
        any more. False if it is on the wire (it ends as usual, but is not retried) or done."""
        st = tx._state
        if st == _QUEUED:
            self.release(tx)
            return True
        if st == _ACTIVE:
            if self._active is tx and self._unsend(tx):
                self._active = None
                self._give_back(tx)
                return True
            tx.no_retry = True
        return False

    def _unsend(self, tx):
        """Subclasses: drop the active request if none of its bytes are on the wire now."""
        return False

    def _new(self, unit, fc, address, count):
        """A pooled Transaction with the request header filled in, or None."""
        if not self._free:
            return None
        tx = self._free.pop()
        tx._reset()
        tx.unit = unit
        tx.fc = fc
        tx.address = address
        tx.count = count
        r = tx.req
        r[0] = unit
        r[1] = fc
        r[2] = address >> 8
        r[3] = address & 0xFF
        return tx

    def _give_back(self, tx):
        tx._state = _FREE
        tx._release_when_done = False
        tx.values = _NO_VALUES
        self._free.append(tx)

    def _enqueue(self, tx):
        q = self._queue
        q[(self._qhead + self._qlen) % len(q)] = tx
        self._qlen += 1
        tx._state = _QUEUED
        return tx

    # ---- state -----------------------------------------------------------------------
    def idle(self):
        """True when nothing is queued or on the wire."""
        return self._active is None and self._qlen == 0

    def pending(self):
        return self._qlen + (0 if self._active is None else 1)

    def health(self, unit):
        h = self._health.get(unit)
        if h is None:
            h = self._health[unit] = Health()
        return h

    def units(self):
        """Units talked to so far."""
        return sorted(self._health)

    # ---- for subclasses -------------------------------------------------------------
    def _next_tx(self, now_ms):
        """Dequeue the next request to put on the bus; offline units fail fast here."""
        q = self._queue
        while self._qlen:
            tx = q[self._qhead]
            q[self._qhead] = None
            self._qhead = (self._qhead + 1) % len(q)
            self._qlen -= 1
            if tx is None:  # cannot happen: the ring holds _qlen requests
                continue
            tx._state = _ACTIVE
            if tx.unit:
                h = self.health(tx.unit)
                if not h.online:
                    if ticks_diff(now_ms, h.probe_ms) < self.probe_interval_ms:
                        self._finish(tx, ERR_OFFLINE, now_ms)
                        continue
                    h.probe_ms = now_ms
                    tx.probe = True
            self._active = tx
            return tx
        return None

    def _attempts_left(self, tx):
        return not tx.probe and not tx.no_retry and tx.attempts <= self.retries

    def _attempt_failed(self, tx, err):
        if tx.unit:
            h = self.health(tx.unit)
            if err == ERR_TIMEOUT:
                h.timeouts = (h.timeouts + 1) & _WRAP
            elif err == ERR_CRC:
                h.crc_errors = (h.crc_errors + 1) & _WRAP
            else:
                h.frame_errors = (h.frame_errors + 1) & _WRAP

    def _finish(self, tx, err, now_ms, exc=0):
        """Publish the outcome, update health, free the handle if it was released."""
        if self._active is tx:
            self._active = None
        tx.done = True
        self.ends = (self.ends + 1) & _WRAP
        tx.ok = err == ERR_NONE
        tx.error = err
        tx.exception_code = exc
        tx.time_ms = now_ms
        if tx.ok and tx.fc < 5:
            tx.values = tx._bits if tx.fc < 3 else tx._regs
        else:
            tx.values = _NO_VALUES
        tx._state = _DONE
        if tx.unit and err != ERR_OFFLINE:
            h = self.health(tx.unit)
            if err == ERR_NONE or err == ERR_EXCEPTION:
                if err == ERR_NONE:
                    h.good = (h.good + 1) & _WRAP
                    h.last_ok_ms = now_ms
                else:
                    h.exceptions = (h.exceptions + 1) & _WRAP
                h.consecutive_failures = 0
                if not h.online:
                    h.online = True
                    self._say("unit %d back online" % tx.unit)
            else:
                h.consecutive_failures += 1
                if h.online and h.consecutive_failures >= self.offline_after:
                    h.online = False
                    h.probe_ms = now_ms
                    self._say("unit %d offline after %d failed requests (last: %s)" % (
                        tx.unit, h.consecutive_failures, ERROR_NAMES[err]))
        if tx._release_when_done:
            self._give_back(tx)

    def _say(self, msg):
        if self.log is not None:
            self.log(msg)
