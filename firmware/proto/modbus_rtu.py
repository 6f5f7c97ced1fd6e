"""Modbus RTU master: RTU framing for the field-bus API of firmware.proto.fieldbus.

``ModbusMaster(port, timeout_ms=100, retries=1, offline_after=3,
probe_interval_ms=5000, turnaround_ms=100, log=None)`` with ``port`` a
firmware.hal.SerialPort; read/write/poll/idle/next_poll_ms/health and the FC_*,
ERR_*, EXC_* names are those of fieldbus (re-exported here).

Framing: a reply is complete as soon as the expected length (or a 5-byte
exception) has arrived with a good CRC, so no frame-end silence is waited for.
Frames from other units and garbage are dropped and the wait goes on. A frame
from our unit that ends (silence of ``frame_gap_us``, or a gap over
``char_gap_us`` inside it) without validating fails the attempt at once with
ERR_CRC or ERR_FRAME. Gaps are measured with ``us_clock`` (default ticks_us) and
count only when proven by an empty read, so a slow main loop never invents one.
Defaults follow the spec (t1.5 / t3.5 of 11-bit characters, fixed 0.75 / 1.75 ms
above 19200 baud). Ptys and USB-RS485 adapters deliver bytes in bursts, so a
port may carry ``rtu_char_gap_us`` / ``rtu_frame_gap_us`` to override them
(firmware.drivers.posix_serial turns the t1.5 check off and widens t3.5); an
argument beats both; ``char_gap_us=0`` turns the t1.5 check off. A request
starts no sooner than ``send_gap_us`` (t3.5) after the last byte on the line.
A reply times out once ``timeout_ms`` plus the expected reply's own wire time (its
length at ``char_us``; an exception reply is shorter) has passed, both by ``now_ms`` and
by ``us_clock``, since the request left, so neither a long reply at a low baud rate nor
a poll late in a long tick (its ``now_ms`` stale) cuts the wait short.

A line that is never silent for t3.5 (a node talking out of turn, noise) does not hold
a request for ever: an attempt that waited ``timeout_ms`` for the line, counted from
when it became due (the head of the queue, or its retry), fails as a timeout without
being sent, and sets ``babbling`` (fieldbus module doc). The flag clears once no
attempt has waited out its timeout for ``LINE_QUIET_MS`` and the line is then seen
quiet for t3.5, so noise that comes and goes is one episode, not one per request.
In virtual time pass a ``us_clock`` derived from the virtual ms clock.
"""

from firmware.compat import const, ticks_add, ticks_diff, ticks_us
from firmware.hal import char_time_us
from firmware.hal import frame_gap_us as t35_us
from firmware.proto.crc16 import check_crc
from firmware.proto.fieldbus import (  # noqa: F401  (re-exported API names)
    ADU_MAX,
    ERR_CRC,
    ERR_EXCEPTION,
    ERR_FRAME,
    ERR_NONE,
    ERR_OFFLINE,
    ERR_TIMEOUT,
    ERROR_NAMES,
    EXC_ACKNOWLEDGE,
    EXC_DEVICE_BUSY,
    EXC_DEVICE_FAILURE,
    EXC_ILLEGAL_ADDRESS,
    EXC_ILLEGAL_FUNCTION,
    EXC_ILLEGAL_VALUE,
    FC_READ_COILS,
    FC_READ_DISCRETE_INPUTS,
    FC_READ_HOLDING_REGISTERS,
    FC_READ_INPUT_REGISTERS,
    FC_WRITE_MULTIPLE_COILS,
    FC_WRITE_MULTIPLE_REGISTERS,
    FC_WRITE_SINGLE_COIL,
    FC_WRITE_SINGLE_REGISTER,
    IDLE_POLL_MS,
    BusMaster,
    Health,
    Transaction,
)

_RX_SIZE = const(512)
_CHUNK = const(64)
_READS_PER_POLL = const(8)  # bounds the work of one poll under a byte flood
_SETTLE_MAX_US = const(10000)  # the longest a poll waits for a request's last byte to leave
_WRAP = const(0x3FFFFFFF)  # counters wrap at 2**30, as ticks_ms does: small ints on 32-bit builds
# A babbling line counts as quiet again once no attempt has waited out its timeout for
# the line this long: noise that keeps coming back stays one episode.
LINE_QUIET_MS = const(10000)

_S_IDLE = const(0)
_S_WAIT_BUS = const(1)  # request ready, waiting for line silence
_S_TX = const(2)  # writing / waiting for the last stop bit
_S_RX = const(3)  # waiting for the reply


class ModbusMaster(BusMaster):
    """RTU framing over a firmware.hal.SerialPort; see the module doc."""

    def __init__(self, port, timeout_ms=100, retries=1, offline_after=3, probe_interval_ms=5000,
                 turnaround_ms=100, log=None, queue_size=8, char_gap_us=None, frame_gap_us=None,
                 send_gap_us=None, us_clock=None):
        BusMaster.__init__(self, timeout_ms, retries, offline_after, probe_interval_ms,
                           turnaround_ms, log, queue_size)
        self._port = port
        baud = port.baudrate or 19200
        self.char_us = char_time_us(baud)
        slow = baud <= 19200
        t15 = (15 * self.char_us + 9) // 10 if slow else 750
        t35 = t35_us(baud)
        if char_gap_us is None:
            char_gap_us = getattr(port, "rtu_char_gap_us", None)
        if frame_gap_us is None:
            frame_gap_us = getattr(port, "rtu_frame_gap_us", None)
        self.char_gap_us = t15 if char_gap_us is None else char_gap_us
        self.frame_gap_us = t35 if frame_gap_us is None else frame_gap_us
        self.send_gap_us = t35 if send_gap_us is None else send_gap_us
        self._us = us_clock or ticks_us
        self._rx = bytearray(_RX_SIZE)
        self._rxlen = 0
        self._chunk = bytearray(_CHUNK)
        self._rxhead = memoryview(self._rx)[:_CHUNK]  # a frame's first read lands in place: no copy
        self._state = _S_IDLE
        self._sent = 0
        self._no_mv = memoryview(b"")  # "nothing to send", without allocating each time
        self._txmv = self._no_mv
        self._deadline = 0
        self._timeout_us = 1000 * self.timeout_ms
        self._reply_us = 0  # the attempt's reply window by us_clock: timeout and wire time
        self._reply_due = 0
        t = self._us()
        self._last_rx_us = t  # last read that returned bytes
        self._last_empty_us = t  # last read that returned none
        self._bus_free_us = t  # no request before this
        self._sent_us = t  # when the request on the wire left
        self._due_ms = 0  # when the attempt began to wait for the line ...
        self._due_us = t  # ... by both clocks
        self._babble_ms = 0  # when an attempt last waited out its timeout for the line
        self._quiet_until_ms = None  # broadcast turnaround end
        self.stray_frames = 0  # closed frames ignored: other units, garbage, noise
        self.stray_bytes = 0  # bytes dropped as noise or as other units' traffic

    # ---- main loop ---------------------------------------------------------------------
    def poll(self, now_ms):
        """Advance the bus; returns quickly and never waits for the line."""
        for _ in range(4):  # a few state steps per call, bounded
            st = self._state
            if st == _S_RX:  # the most frequent state first: waiting for a reply
                if not self._receive(now_ms):
                    return
            elif st == _S_IDLE:
                n = self._port.readinto(self._chunk)
                if n:
                    self._drain(n)
                if self.babbling and not self._bus_wait_us():
                    self._line_quiet(now_ms)
                if self._quiet_until_ms is not None:
                    # Strictly after: ms ticks are truncated, so this is >= turnaround in real time.
                    if ticks_diff(now_ms, self._quiet_until_ms) <= 0:
                        return
                    self._quiet_until_ms = None
                if not self._qlen or self._next_tx(now_ms) is None:
                    return
                self._wait_bus(now_ms)
            elif st == _S_WAIT_BUS:
                n = self._port.readinto(self._chunk)
                if n:
                    self._drain(n)
                if self._bus_wait_us():
                    if not self._bus_timed_out(now_ms):
                        return
                    self._babble(now_ms)
                else:
                    self._start_send(now_ms)
            elif not self._send_more(now_ms):
                return

    def next_poll_ms(self, now_ms):
        """Ms until the master next needs a poll (rounded up: a loop sleeping this
        long never spins). While a reply is due, poll more often for full speed."""
        st = self._state
        if st == _S_IDLE:
            if self._qlen == 0:
                return IDLE_POLL_MS
            if self._quiet_until_ms is not None:
                return max(0, ticks_diff(self._quiet_until_ms, now_ms) + 1)
            return 0
        if st == _S_WAIT_BUS:
            return (self._bus_wait_us() + 999) // 1000
        if st == _S_TX:
            return 1
        left = ticks_diff(self._deadline, now_ms)
        due = ticks_diff(self._reply_due, now_ms)
        return max(0, min(left, due if due > 1 else 1))

    def next_poll_us(self, now_ms):
        """As next_poll_ms, in us where the master knows better than a ms: the
        t3.5 wait before a request. For host loops that can sleep below 1 ms."""
        if self._state == _S_WAIT_BUS:
            return self._bus_wait_us()
        return 1000 * self.next_poll_ms(now_ms)

    def _bus_wait_us(self):
        """Us until the line is free for a request, 0 once it is. The mark is never set
        more than send_gap_us ahead: further ahead, it is long past and the us ticks have
        wrapped (2**30 us, ~18 min on a 32-bit build), e.g. after a quiet spell."""
        d = ticks_diff(self._bus_free_us, self._us())
        return d if 0 < d <= self.send_gap_us else 0

    # ---- the line ------------------------------------------------------------------------
    def _wait_bus(self, now_ms):
        """The active attempt is due: it waits for line silence, at most timeout_ms."""
        self._state = _S_WAIT_BUS
        self._due_ms = now_ms
        self._due_us = self._us()

    def _bus_timed_out(self, now_ms):
        return (ticks_diff(now_ms, self._due_ms) >= self.timeout_ms
                and ticks_diff(self._us(), self._due_us) >= self._timeout_us)

    def _babble(self, now_ms):
        """The line was never quiet for a whole timeout: the attempt fails unsent."""
        self._active.attempts += 1
        self._babble_ms = now_ms
        if not self.babbling:
            self.babbling = True
            self._say("line never quiet for %d ms: a node talks out of turn, or noise" % self.timeout_ms)
        self._attempt_end(ERR_TIMEOUT, now_ms)

    def _line_quiet(self, now_ms):
        """Called when the line has just been seen quiet for t3.5."""
        if ticks_diff(now_ms, self._babble_ms) >= LINE_QUIET_MS:
            self.babbling = False
            self._say("line quiet again")

    # ---- steps ----------------------------------------------------------------------------
    def _drain(self, n):
        # Bytes outside a transaction belong to no one: read them so they cannot
        # pollute the next reply, and let them hold off the next request. ``n``: the
        # first read's count (poll makes that read itself: most polls find nothing).
        while n:
            self.stray_bytes = (self.stray_bytes + n) & _WRAP
            n = self._port.readinto(self._chunk)
        t = self._us()
        self._last_rx_us = t
        self._bus_free_us = ticks_add(t, self.send_gap_us)

    def _start_send(self, now_ms):
        if self.babbling:
            self._line_quiet(now_ms)
        tx = self._active
        tx.attempts += 1
        # Guard against a port whose tx_done never comes: the attempt times out.
        self._deadline = ticks_add(now_ms, self.timeout_ms + (tx.req_len * self.char_us) // 1000)
        self._port.flush_input()
        self._rxlen = 0
        tx.frame_crc()
        self._txmv = tx.req_mv[: tx.req_len]  # the one allocation per request
        self._sent = 0
        self._state = _S_TX

    def _send_more(self, now_ms):
        tx = self._active
        if self._sent < tx.req_len:
            mv = self._txmv
            n = self._port.write(mv if self._sent == 0 else mv[self._sent :])
            self._sent += n or 0
            if self._sent < tx.req_len:
                return self._tx_stuck(now_ms)
        if not self._port.settle(min((tx.req_len + 3) * self.char_us, _SETTLE_MAX_US)):
            return self._tx_stuck(now_ms)
        self._txmv = self._no_mv
        t = self._us()
        self._last_rx_us = t
        self._last_empty_us = t
        self._bus_free_us = ticks_add(t, self.send_gap_us)
        if tx.unit == 0:
            self._state = _S_IDLE
            self._quiet_until_ms = ticks_add(now_ms, self.turnaround_ms)
            self._finish(tx, ERR_NONE, now_ms)
            return True
        # The reply's own wire time is not the device's to answer in: a long reply at a
        # low baud rate may take longer than timeout_ms on the wire alone.
        self._reply_us = self._timeout_us + tx.expect * self.char_us
        self._deadline = ticks_add(now_ms, (self._reply_us + 999) // 1000)
        self._sent_us = t  # a long tick's now_ms is stale: the timeout also runs from here
        self._reply_due = ticks_add(now_ms, (tx.expect * self.char_us + self.send_gap_us + 999) // 1000)
        self._state = _S_RX
        return True  # read at once: a fast device may have answered already

    def _unsend(self, tx):
        # Waiting for line silence: none of this attempt's bytes went out yet.
        if self._state != _S_WAIT_BUS:
            return False
        self._state = _S_IDLE
        return True

    def _tx_stuck(self, now_ms):
        if ticks_diff(now_ms, self._deadline) < 0:
            return False
        self._txmv = self._no_mv
        self._attempt_end(ERR_TIMEOUT, now_ms)
        return True

    def _receive(self, now_ms):
        """Read what waits and judge it; True when the attempt ended."""
        port = self._port
        rx = self._rx
        chunk = self._chunk
        got = False  # bytes read in this call, not scanned yet
        for _ in range(_READS_PER_POLL):
            head = self._rxlen == 0
            n = port.readinto(self._rxhead if head else chunk)
            t = self._us()
            if not n:
                # Scan before judging silence: a stall between the read that brought
                # the reply and this empty read must not turn a good reply into an error.
                if got and self._scan(now_ms):
                    return True
                if self._rxlen and ticks_diff(t, self._last_rx_us) >= self.frame_gap_us:
                    if self._frame_ended(now_ms):
                        return True
                self._last_empty_us = t
                break
            if (self._rxlen and self.char_gap_us
                    and ticks_diff(self._last_empty_us, self._last_rx_us) > self.char_gap_us):
                # Proven gap inside the frame: what came before is a broken frame.
                if self._frame_ended(now_ms):
                    return True
            L = self._rxlen
            if not head:
                if L + n > _RX_SIZE:
                    if got and self._scan(now_ms):
                        return True
                    # Noise flood: keep the newest bytes, a reply is at most 256 of them.
                    keep = ADU_MAX - n
                    base = L - keep
                    self.stray_bytes = (self.stray_bytes + base) & _WRAP
                    for i in range(keep):
                        rx[i] = rx[base + i]
                    L = keep
                for i in range(n):
                    rx[L + i] = chunk[i]
            self._rxlen = L + n
            self._last_rx_us = t
            got = True
        else:  # still streaming: judge what came, read on at the next poll
            if got and self._scan(now_ms):
                return True
        if got:  # else it is already last_rx + send_gap (every path that moves one sets both)
            self._bus_free_us = ticks_add(self._last_rx_us, self.send_gap_us)
        if (ticks_diff(now_ms, self._deadline) >= 0
                and ticks_diff(self._us(), self._sent_us) >= self._reply_us):
            self._attempt_end(ERR_TIMEOUT, now_ms)
            return True
        return False

    def _scan(self, now_ms):
        """Look for our reply anywhere in the buffer; True when the attempt ended."""
        tx = self._active
        rx = self._rx
        L = self._rxlen
        unit = tx.unit
        fc = tx.fc
        exp = tx.expect
        for off in range(L - 1):
            if rx[off] != unit:
                continue
            f = rx[off + 1]
            if f == fc:
                if fc < 5 and L - off >= 3 and rx[off + 2] != exp - 5:
                    # Byte count not what we asked for: an error if the frame checks out.
                    own = rx[off + 2] + 5
                    if L - off >= own and check_crc(rx, off, own):
                        self._attempt_end(ERR_FRAME, now_ms)
                        return True
                    continue
                if L - off < exp:
                    continue
                if not check_crc(rx, off, exp):
                    continue
                if fc < 5:
                    self._decode(tx, off)
                    self._done_ok(now_ms, off, exp)
                    return True
                req = tx.req
                for i in range(6):
                    if rx[off + i] != req[i]:
                        self._attempt_end(ERR_FRAME, now_ms)
                        return True
                self._done_ok(now_ms, off, exp)
                return True
            if f == (fc | 0x80) and L - off >= 5 and check_crc(rx, off, 5):
                self._rxlen = 0
                self._state = _S_IDLE
                self._finish(tx, ERR_EXCEPTION, now_ms, rx[off + 2])
                return True
        return False

    def _frame_ended(self, now_ms):
        """The bytes so far form a closed frame that did not validate.
        Ours (address + function match): fail the attempt. Anyone else's: drop it."""
        tx = self._active
        rx = self._rx
        L = self._rxlen
        err = ERR_NONE
        for off in range(L - 1):
            if rx[off] == tx.unit and (rx[off + 1] & 0x7F) == tx.fc:
                full = 5 if rx[off + 1] & 0x80 else tx.expect
                err = ERR_CRC if L - off >= full else ERR_FRAME
                break
        self._rxlen = 0
        if err:
            self._attempt_end(err, now_ms)
            return True
        self.stray_frames = (self.stray_frames + 1) & _WRAP
        self.stray_bytes = (self.stray_bytes + L) & _WRAP
        return False

    def _attempt_end(self, err, now_ms):
        tx = self._active
        self._attempt_failed(tx, err)
        self._rxlen = 0
        if self._attempts_left(tx):
            self._wait_bus(now_ms)  # retry once the line is quiet
        else:
            self._state = _S_IDLE
            self._finish(tx, err, now_ms)

    def _done_ok(self, now_ms, off, length):
        self.stray_bytes = (self.stray_bytes + self._rxlen - length) & _WRAP  # noise around the reply
        self._rxlen = 0
        self._state = _S_IDLE
        self._bus_free_us = ticks_add(self._last_rx_us, self.send_gap_us)
        self._finish(self._active, ERR_NONE, now_ms)

    def _decode(self, tx, off):
        v = tx.result_list()
        rx = self._rx
        base = off + 3
        if tx.fc < 3:
            for i in range(tx.count):
                v[i] = (rx[base + (i >> 3)] >> (i & 7)) & 1
        else:
            for i in range(tx.count):  # base walks the reply: one add per register, not four
                v[i] = (rx[base] << 8) | rx[base + 1]
                base += 2
