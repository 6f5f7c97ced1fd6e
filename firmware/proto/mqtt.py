"""A small non-blocking MQTT 3.1.1 client for the station (MicroPython and CPython).

    c = MQTTClient("st-1", "10.0.0.2", 1883, user, password, keepalive_s=60,
                   will_topic="swapstation/st-1/status", will_payload=b'{"state":"offline"}',
                   on_message=fn)          # fn(topic str, payload bytes)
    c.subscribe("swapstation/st-1/cmd", 1)  # (re)sent on every connect
    pid = c.publish(topic, payload, qos=1)  # 0: not taken now (offline or window full)
    wait = c.poll(now_ms)                   # from the main loop: never blocks

The socket is non-blocking; ``poll`` connects, writes what is queued, reads what has
arrived and parses it from one preallocated receive buffer, keeps the session alive
(PINGREQ after keep-alive/2 of silence from us; a broker silent for 1.5 keep-alive is
dead) and reconnects with a doubling backoff. The session is clean (the broker keeps no
state for us), the last will is retained. QoS 1 publishes stay in ``inflight`` until
their PUBACK (``on_puback(pid)``) and are sent again, DUP set, after a reconnect.

Anything the broker sends that this client does not expect - a malformed remaining
length, a packet over ``max_packet``, an unknown or QoS 2 packet type, a CONNACK
refusal - drops the connection (``drops``, ``last_error``) and a reconnect follows:
the station's loop never sees an exception from here.
"""

import errno
import socket

from firmware.compat import const, ticks_add, ticks_diff

try:
    import select
except ImportError:  # pragma: no cover
    select = None  # type: ignore[assignment]

DOWN = const(0)
CONNECTING = const(1)  # TCP connect under way
WAIT_CONNACK = const(2)
UP = const(3)
STATE_NAMES = ("down", "connecting", "wait_connack", "up")

_CONNACK_MS = const(10000)  # TCP connect plus CONNACK must finish within this
_INFLIGHT = const(8)  # QoS 1 publishes awaiting PUBACK
_AGAIN = (errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN), errno.EINPROGRESS,
          getattr(errno, "EALREADY", 114))


class Malformed(Exception):
    pass


def _str_field(buf, i, s):
    """Write a 2-byte length and the UTF-8 of ``s`` (str or bytes) at ``i``."""
    b = s.encode() if type(s) is str else s
    n = len(b)
    buf[i] = n >> 8
    buf[i + 1] = n & 0xFF
    buf[i + 2 : i + 2 + n] = b
    return i + 2 + n


def _rl_len(n):
    return 1 if n < 128 else 2 if n < 16384 else 3 if n < 2097152 else 4


def _put_rl(buf, i, n):
    while True:
        b = n & 0x7F
        n >>= 7
        buf[i] = b | (0x80 if n else 0)
        i += 1
        if not n:
            return i


def _slen(s):
    return 2 + len(s.encode() if type(s) is str else s)


class MQTTClient:
    def __init__(self, client_id, host, port=1883, user=None, password=None, keepalive_s=60,
                 will_topic=None, will_payload=None, on_message=None, on_puback=None,
                 max_packet=2048, backoff_min_ms=500, backoff_max_ms=30000, now_ms=0):
        self.client_id = client_id
        self.addr = (host, port)
        self.user = user
        self.password = password
        self.keepalive_ms = keepalive_s * 1000
        self.will_topic = will_topic
        self.will_payload = will_payload
        self.on_message = on_message
        self.on_puback = on_puback
        self.max_packet = max_packet
        self.backoff_min = backoff_min_ms
        self.backoff_max = backoff_max_ms
        self._rx = bytearray(max_packet + 5)
        self._rxv = memoryview(self._rx)
        self._rn = 0
        self._tx = bytearray(max_packet + 5)  # a PUBLISH that does not fit is refused
        self._txv = memoryview(self._tx)
        self._to = 0  # sent so far of _tx[:_tn]
        self._tn = 0
        self.sock = None
        self._ai = None  # the broker's address, resolved at the first connect
        self._poller = None
        self.state = DOWN
        self._due = now_ms  # next connect attempt
        self._backoff = backoff_min_ms
        self._since = now_ms  # state entered
        self._last_tx = self._last_rx = now_ms
        self._ping_out = False
        self._pid = 0
        self.inflight = {}  # pid -> (topic, payload, retain)
        self.subs = []  # (topic, qos)
        self._resend = []  # pids to send again after a reconnect, oldest first
        self.connects = self.drops = self.received = self.sent = self.handler_errors = 0
        self.last_error = None

    # ---- public ---------------------------------------------------------------------------
    @property
    def connected(self):
        return self.state == UP

    def subscribe(self, topic, qos=1):
        self.subs.append((topic, qos))
        if self.state == UP:
            self._send_subscribe()

    def room(self):
        """QoS 1 publishes that may be started now."""
        return _INFLIGHT - len(self.inflight) if self.state == UP else 0

    def publish(self, topic, payload, qos=0, retain=False):
        """Queue a PUBLISH; its packet id (1 for QoS 0), or 0 if not taken: not connected,
        no room in the transmit buffer, or (QoS 1) the in-flight window is full."""
        if self.state != UP or (qos and (len(self.inflight) >= _INFLIGHT or self._resend)):
            return 0
        pid = 1
        if qos:
            pid = self._next_pid()
        if not self._put_publish(topic, payload, qos, retain, pid, False):
            return 0
        if qos:
            self.inflight[pid] = (topic, payload, retain)
        return pid

    def disconnect(self):
        """Send DISCONNECT (best effort) and close: the broker then keeps the will back."""
        if self.state == UP:
            self._put(b"\xe0\x00")
            self._flush()
        self._close("disconnect", False)

    def abort(self):
        """Close the socket without DISCONNECT, as a power cut does: the broker publishes the will."""
        self._close("aborted", False)

    def poll(self, now):
        """Advance the session; returns ms until it next needs a poll."""
        st = self.state
        if st == DOWN:
            if ticks_diff(now, self._due) < 0:
                return ticks_diff(self._due, now)
            self._open(now)
            return 0
        if st == CONNECTING:
            ev = self._events()
            if ev & 0x18:  # POLLERR | POLLHUP
                self._drop(now, "connect failed")
                return self._backoff
            if ev & 0x04:  # POLLOUT: the TCP connect finished
                self.state = WAIT_CONNACK
                self._put_connect()
            elif ticks_diff(now, self._since) > _CONNACK_MS:
                self._drop(now, "connect timed out")
                return self._backoff
            else:
                return 20
        if not self._flush():
            self._drop(now, "send failed")
            return self._backoff
        why = self._read(now)
        if why is not None:
            self._drop(now, why)
            return self._backoff
        if self.state == WAIT_CONNACK:
            if ticks_diff(now, self._since) > _CONNACK_MS:
                self._drop(now, "no CONNACK")
                return self._backoff
            return 20
        if self.state != UP:
            return 20
        if self._resend:
            self._push_resend()
            self._flush()
        ka = self.keepalive_ms
        if ka:
            if ticks_diff(now, self._last_rx) > ka + ka // 2:
                self._drop(now, "broker silent")
                return self._backoff
            if not self._ping_out and ticks_diff(now, self._last_tx) >= ka // 2:
                if self._put(b"\xc0\x00"):
                    self._ping_out = True
                    self._last_tx = now
                    self._flush()
        return 0 if self._tn else 50

    # ---- connection -----------------------------------------------------------------------
    def _open(self, now):
        self._since = now
        self._rn = self._tn = self._to = 0
        self._ping_out = False
        try:
            ai = self._ai
            if ai is None:
                # A name lookup blocks (no port has a non-blocking resolver): done once and
                # kept; an IP address in the config costs nothing.
                ai = self._ai = socket.getaddrinfo(self.addr[0], self.addr[1])[0]
            s = socket.socket(ai[0], socket.SOCK_STREAM)
        except OSError as e:
            self._drop(now, "socket: %s" % (e,))
            return
        self.sock = s
        s.setblocking(False)
        try:
            s.connect(ai[-1])
        except OSError as e:
            if e.args[0] not in _AGAIN:
                self._drop(now, "connect: %s" % (e,))
                return
        if select is not None:
            self._poller = select.poll()
            self._poller.register(s, select.POLLOUT)
        self.state = CONNECTING

    def _events(self):
        if self._poller is None:
            return 0x04
        ev = 0
        for t in self._poller.poll(0):
            ev |= t[1]
        return ev

    def _drop(self, now, why):
        self.drops += 1
        self._close(why, True)
        self._due = ticks_add(now, self._backoff)
        self._backoff = min(self._backoff * 2, self.backoff_max)

    def _close(self, why, error):
        self.last_error = why if error else self.last_error
        s, self.sock = self.sock, None
        self._poller = None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass
        self.state = DOWN
        self._rn = self._tn = self._to = 0
        self._resend = []

    # ---- transmit ---------------------------------------------------------------------------
    def _put(self, data):
        n = len(data)
        if self._tn + n > len(self._tx):
            if self._to:  # move the unsent rest to the front
                rest = self._tn - self._to
                self._tx[:rest] = self._txv[self._to : self._tn]
                self._tn, self._to = rest, 0
            if self._tn + n > len(self._tx):
                return False
        self._tx[self._tn : self._tn + n] = data
        self._tn += n
        return True

    def _reserve(self, n):
        """Index in _tx where ``n`` bytes may be written, or -1."""
        if self._tn + n > len(self._tx) and self._to:
            rest = self._tn - self._to
            self._tx[:rest] = self._txv[self._to : self._tn]
            self._tn, self._to = rest, 0
        return self._tn if self._tn + n <= len(self._tx) else -1

    def _flush(self):
        """Send what the socket takes now; False if the connection is broken."""
        s = self.sock
        while s is not None and self._to < self._tn:
            try:
                n = s.send(self._txv[self._to : self._tn])
            except OSError as e:
                if e.args[0] in _AGAIN:
                    return True
                return False
            if not n:
                return True  # MicroPython's non-blocking send may say 0/None: try next poll
            self._to += n
        if self._to == self._tn:
            self._to = self._tn = 0
        return True

    def _put_connect(self):
        flags = 0x02  # clean session
        n = 10 + _slen(self.client_id)
        if self.will_topic is not None:
            flags |= 0x04 | 0x20  # will, QoS 0, retained
            n += _slen(self.will_topic) + _slen(self.will_payload)
        if self.user is not None:
            flags |= 0x80
            n += _slen(self.user)
            if self.password is not None:
                flags |= 0x40
                n += _slen(self.password)
        i = self._reserve(1 + _rl_len(n) + n)
        if i < 0:
            return
        b = self._tx
        b[i] = 0x10
        i = _put_rl(b, i + 1, n)
        i = _str_field(b, i, "MQTT")
        b[i] = 4  # protocol level 3.1.1
        b[i + 1] = flags
        ka = self.keepalive_ms // 1000
        b[i + 2] = ka >> 8
        b[i + 3] = ka & 0xFF
        i = _str_field(b, i + 4, self.client_id)
        if self.will_topic is not None:
            i = _str_field(b, i, self.will_topic)
            i = _str_field(b, i, self.will_payload)
        if self.user is not None:
            i = _str_field(b, i, self.user)
            if self.password is not None:
                i = _str_field(b, i, self.password)
        self._tn = i
        self._last_tx = self._since

    def _put_publish(self, topic, payload, qos, retain, pid, dup):
        if type(payload) is str:
            payload = payload.encode()
        n = _slen(topic) + len(payload) + (2 if qos else 0)
        if n > self.max_packet:
            return False
        i = self._reserve(1 + _rl_len(n) + n)
        if i < 0:
            return False
        b = self._tx
        b[i] = 0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
        i = _put_rl(b, i + 1, n)
        i = _str_field(b, i, topic)
        if qos:
            b[i] = pid >> 8
            b[i + 1] = pid & 0xFF
            i += 2
        b[i : i + len(payload)] = payload
        self._tn = i + len(payload)
        self.sent += 1
        return True

    def _send_subscribe(self):
        for topic, qos in self.subs:
            n = 2 + _slen(topic) + 1
            i = self._reserve(1 + _rl_len(n) + n)
            if i < 0:
                return
            b = self._tx
            b[i] = 0x82
            i = _put_rl(b, i + 1, n)
            pid = self._next_pid()
            b[i] = pid >> 8
            b[i + 1] = pid & 0xFF
            i = _str_field(b, i + 2, topic)
            b[i] = qos
            self._tn = i + 1

    def _push_resend(self):
        """Send again as many unacknowledged publishes as the transmit buffer takes now."""
        while self._resend:
            pid = self._resend[0]
            m = self.inflight.get(pid)
            if m is not None and not self._put_publish(m[0], m[1], 1, m[2], pid, True):
                return
            self._resend.pop(0)

    def _next_pid(self):
        while True:
            self._pid = self._pid % 65535 + 1
            if self._pid not in self.inflight:
                return self._pid

    # ---- receive ------------------------------------------------------------------------------
    def _read(self, now):
        """Read and handle what arrived; the reason to drop the connection, or None."""
        s = self.sock
        while s is not None:
            if self._rn >= len(self._rx):
                return "packet over %d bytes" % self.max_packet
            try:
                n = s.recv_into(self._rxv[self._rn :]) if hasattr(s, "recv_into") else \
                    s.readinto(self._rxv[self._rn :])
            except OSError as e:
                if e.args[0] in _AGAIN:
                    return None
                return "recv: %s" % (e,)
            if n is None:
                return None  # MicroPython: nothing to read now
            if n == 0:
                return "closed by broker"
            self._rn += n
            self._last_rx = now
            try:
                self._parse(now)
            except Malformed as e:
                return "malformed: %s" % (e,)
            except (ValueError, IndexError, UnicodeError) as e:
                return "malformed: %s" % (e,)
            if self.state == DOWN:
                return None
        return None

    def _parse(self, now):
        b = self._rx
        while self._rn >= 2:
            rl = 0
            mult = 1
            i = 1
            while True:
                if i >= self._rn:
                    return  # the length is not all here yet
                d = b[i]
                rl += (d & 0x7F) * mult
                i += 1
                if not d & 0x80:
                    break
                mult *= 128
                if i > 4:
                    raise Malformed("remaining length over 4 bytes")
            if rl > self.max_packet:
                raise Malformed("packet of %d bytes over max_packet %d" % (rl, self.max_packet))
            end = i + rl
            if self._rn < end:
                return
            self._handle(b[0], i, end, now)
            rest = self._rn - end
            if rest:
                b[:rest] = self._rxv[end : self._rn]
            self._rn = rest

    def _handle(self, h, i, end, now):
        b = self._rx
        t = h >> 4
        rl = end - i
        if t == 2:  # CONNACK
            if rl != 2 or self.state != WAIT_CONNACK:
                raise Malformed("unexpected CONNACK")
            if b[i + 1] != 0:
                raise Malformed("connection refused, code %d" % b[i + 1])
            self.state = UP
            self.connects += 1
            self._backoff = self.backoff_min
            self._last_tx = now
            self._send_subscribe()
            self._resend = sorted(self.inflight)  # QoS 1 not acknowledged: again, DUP set
            self._push_resend()
            return
        if self.state != UP:
            raise Malformed("packet type %d before CONNACK" % t)
        if t == 3:  # PUBLISH
            qos = (h >> 1) & 3
            if qos > 1:
                raise Malformed("QoS %d publish" % qos)
            if rl < 2:
                raise Malformed("short PUBLISH")
            tl = (b[i] << 8) | b[i + 1]
            j = i + 2 + tl
            if j + (2 if qos else 0) > end:
                raise Malformed("topic longer than the packet")
            topic = bytes(self._rxv[i + 2 : j]).decode()
            if qos:
                pid = (b[j] << 8) | b[j + 1]
                j += 2
                self._put(bytes((0x40, 2, pid >> 8, pid & 0xFF)))
            self.received += 1
            if self.on_message is not None:
                try:
                    self.on_message(topic, bytes(self._rxv[j:end]))
                except Exception as e:  # a handler's bug must not stop the station's loop
                    self.handler_errors += 1
                    self.last_error = "on_message: %r" % (e,)
        elif t == 4:  # PUBACK
            if rl != 2:
                raise Malformed("PUBACK of %d bytes" % rl)
            pid = (b[i] << 8) | b[i + 1]
            if self.inflight.pop(pid, None) is not None and self.on_puback is not None:
                self.on_puback(pid)
        elif t == 9:  # SUBACK
            if rl < 3:
                raise Malformed("short SUBACK")
            if b[end - 1] == 0x80:
                self.last_error = "subscription refused"
        elif t == 13:  # PINGRESP
            if rl:
                raise Malformed("PINGRESP with a body")
            self._ping_out = False
        else:
            raise Malformed("unexpected packet type %d" % t)
