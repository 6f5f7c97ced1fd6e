"""The MQTT client against a scripted broker on loopback, and HMAC-SHA256 on known vectors."""

from fakebroker import Peer, listen, publish, string

from firmware.compat import sleep_ms
from firmware.proto import mqtt as M
from firmware.proto.hmac256 import hexlify, hmac_sha256, same, unhex


class Rig:
    def __init__(self, keepalive_s=10, max_packet=512):
        self.server, port = listen()
        self.now = 1000
        self.msgs = []
        self.acked = []
        self.c = M.MQTTClient("st-9", "127.0.0.1", port, "st-9", "pw", keepalive_s, "swapstation/st-9/status",
                              b'{"online":false}', on_message=self._msg, on_puback=self.acked.append,
                              max_packet=max_packet, backoff_min_ms=500, backoff_max_ms=4000, now_ms=self.now)
        self.c.subscribe("swapstation/st-9/cmd", 1)

    def _msg(self, topic, payload):
        self.msgs.append((topic, payload))

    def pump(self):
        self.c.poll(self.now)

    def session(self):
        """Accept the client's connection and answer its CONNECT; returns the Peer."""
        self.pump()
        p = Peer(self.server, self.pump)
        h, body = p.packet()
        assert h == 0x10, h
        p.send(b"\x20\x02\x00\x00")
        h, body = p.packet()
        assert h == 0x82, h  # the subscription, again on every connect
        p.send(b"\x90\x03" + body[:2] + b"\x01")
        assert self.until(lambda: self.c.connected), self.c.last_error
        return p

    def until(self, cond, ms=20000):
        """Poll the client (real time passes for the socket, not for the client) until ``cond()``."""
        for _ in range(ms // 2):
            self.pump()
            if cond():
                return True
            sleep_ms(2)
        return False

    def after_backoff(self):
        self.now += 5000

    def done(self):
        self.c.disconnect()
        self.server.close()


def test_hmac_sha256_rfc4231_vectors():
    # RFC 4231 test cases 1, 2 and 6 (a key longer than the block is hashed first).
    assert hexlify(hmac_sha256(b"\x0b" * 20, b"Hi There")) == \
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    assert hexlify(hmac_sha256(b"Jefe", b"what do ya want for nothing?")) == \
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert hexlify(hmac_sha256(b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First")) == \
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


def test_mac_comparison_and_hex():
    a = hmac_sha256(b"k", b"m")
    assert same(a, bytes(a))
    b = bytearray(a)
    b[31] ^= 1
    assert not same(a, bytes(b))
    assert not same(a, a[:31])
    assert unhex(hexlify(a)) == a
    for bad in ("abc", "zz", 5):
        try:
            unhex(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_connect_carries_id_credentials_keepalive_clean_session_and_retained_will():
    r = Rig(keepalive_s=30)
    r.pump()
    p = Peer(r.server, r.pump)
    h, b = p.packet()
    assert h == 0x10
    name, i = string(b, 0)
    assert name == b"MQTT" and b[i] == 4
    flags = b[i + 1]
    assert flags == 0x80 | 0x40 | 0x20 | 0x04 | 0x02  # user, password, will retained QoS 0, will, clean
    assert (b[i + 2] << 8) | b[i + 3] == 30
    cid, i = string(b, i + 4)
    wt, i = string(b, i)
    wp, i = string(b, i)
    user, i = string(b, i)
    pw, i = string(b, i)
    assert (cid, wt, wp) == (b"st-9", b"swapstation/st-9/status", b'{"online":false}')
    assert (user, pw) == (b"st-9", b"pw")
    assert i == len(b)
    p.close()
    r.done()


def test_qos1_publish_is_resent_with_dup_after_a_reconnect_until_acknowledged():
    r = Rig()
    p = r.session()
    pid = r.c.publish("swapstation/st-9/swaps", b"rec-1", 1)
    assert pid
    h, b = p.packet()
    assert h == 0x32  # QoS 1, no DUP
    assert r.c.inflight
    p.close()  # the broker goes away before its PUBACK
    assert r.until(lambda: not r.c.connected)
    assert not r.c.publish("x", b"y", 1)  # offline: not taken
    r.after_backoff()
    p = r.session()
    h, b = p.packet()
    assert h == 0x3A, hex(h)  # DUP | QoS 1
    t, i = string(b, 0)
    assert t == b"swapstation/st-9/swaps" and b[i + 2:] == b"rec-1"
    p.send(b"\x40\x02" + b[i:i + 2])
    assert r.until(lambda: not r.c.inflight) and r.acked == [pid]
    p.close()
    r.done()


def test_incoming_qos1_publish_is_delivered_and_acknowledged():
    r = Rig()
    p = r.session()
    p.send(publish("swapstation/st-9/cmd", b'{"ctr":1}', 1, 77))
    h, b = p.packet()
    assert (h, b) == (0x40, b"\x00\x4d")
    assert r.msgs == [("swapstation/st-9/cmd", b'{"ctr":1}')]
    p.close()
    r.done()


def test_malformed_length_drops_and_reconnects():
    r = Rig()
    p = r.session()
    p.send(b"\x30\xff\xff\xff\xff\x01")  # a remaining length of five bytes
    assert p.closed()
    assert not r.c.connected and r.c.drops == 1 and "malformed" in r.c.last_error, r.c.last_error
    p.close()
    r.after_backoff()
    p = r.session()  # back, and the subscription with it
    assert r.c.connects == 2
    p.close()
    r.done()


def test_oversized_packet_and_unknown_type_drop_the_connection():
    r = Rig(max_packet=512)
    p = r.session()
    p.send(b"\x30\x81\x04")  # a PUBLISH of 513 bytes announced
    assert p.closed()
    assert "max_packet" in r.c.last_error, r.c.last_error
    p.close()
    r.after_backoff()
    p = r.session()
    p.send(b"\xf0\x00")  # packet type 15 does not exist in 3.1.1
    assert p.closed()
    assert "type 15" in r.c.last_error, r.c.last_error
    p.close()
    r.after_backoff()
    p = r.session()
    p.send(b"\x34\x05\x00\x01a\x00\x01")  # QoS 2: never subscribed for it
    assert p.closed()
    assert "QoS 2" in r.c.last_error, r.c.last_error
    assert r.c.drops == 3
    p.close()
    r.done()


def test_refused_connack_backs_off_doubling():
    r = Rig()
    r.pump()
    p = Peer(r.server, r.pump)
    p.packet()
    p.send(b"\x20\x02\x00\x05")  # not authorised
    assert p.closed()
    assert "refused, code 5" in r.c.last_error
    p.close()
    # backoff: 500 ms after the first failure, then 1000
    assert M.DOWN == r.c.state
    assert r.c.poll(r.now) > 0
    r.now += 499
    assert r.c.poll(r.now) > 0 and r.c.state == M.DOWN
    r.now += 1
    r.c.poll(r.now)
    assert r.c.state != M.DOWN
    r.done()


def test_pingreq_after_half_the_keepalive_and_a_silent_broker_is_dropped():
    r = Rig(keepalive_s=10)
    p = r.session()
    r.now += 5000
    r.pump()
    h, b = p.packet()
    assert (h, b) == (0xC0, b"")
    p.send(b"\xd0\x00")
    r.now += 100
    r.pump()
    assert r.c.connected
    r.now += 16000  # nothing from the broker for over 1.5 keep-alive
    r.pump()
    assert not r.c.connected and r.c.last_error == "broker silent"
    p.close()
    r.done()


def test_resends_larger_than_the_transmit_buffer_all_go_out_in_order_before_new_ones():
    r = Rig(max_packet=512)
    p = r.session()
    pids = []
    for k in range(4):
        pid = r.c.publish("t", bytes([65 + k]) * 300, 1)  # one fits the 517-byte buffer at a time
        assert pid
        pids.append(pid)
        r.pump()
        assert p.packet()[0] == 0x32
    p.close()
    assert r.until(lambda: not r.c.connected)
    r.after_backoff()
    p = r.session()
    got = []
    for _ in range(4):
        h, b = p.packet()
        assert h == 0x3A
        got.append(((b[3] << 8) | b[4], b[5:6]))
    assert got == [(pids[k], bytes([65 + k])) for k in range(4)]
    for pid, _ in got:
        p.send(bytes((0x40, 2, pid >> 8, pid & 0xFF)))
    assert r.until(lambda: not r.c.inflight)
    assert r.acked == pids, (r.acked, r.c.inflight, r.c.last_error, r.c.state)
    assert r.c.publish("t", b"new", 1)
    p.close()
    r.done()
