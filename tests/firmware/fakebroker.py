"""A scripted MQTT broker on a loopback socket, for client tests on CPython and MicroPython:
the test accepts, reads and writes raw packets itself (blocking, with a timeout), and
drives the client's ``poll`` in between."""

import socket

from fwtest import random_tag


def listen():
    """(server socket, port) on 127.0.0.1; MicroPython's socket has no getsockname, so
    the port is drawn and another one tried if it is taken."""
    tag = random_tag()
    base = 20000 + int(tag[:4], 16) % 30000
    for i in range(50):
        port = base + i * 7
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        except OSError:
            s.close()
            continue
        s.listen(2)
        return s, port
    raise OSError("no free port")


class Peer:
    """The broker's side of one connection."""

    def __init__(self, server, pump):
        server.settimeout(10)
        self.sock, _ = server.accept()
        self.sock.settimeout(0.05)
        self.pump = pump  # called while waiting: the client's poll
        self.buf = b""

    def _fill(self):
        for _ in range(400):
            self.pump()
            try:
                got = self.sock.recv(512)
            except OSError:
                continue
            if not got:
                return False
            self.buf += got
            return True
        raise AssertionError("the client sent nothing")

    def packet(self):
        """(first byte, body bytes) of the next packet from the client, or None if it closed."""
        while True:
            b = self.buf
            if len(b) >= 2:
                rl = 0
                mult = 1
                i = 1
                while i < len(b):
                    rl += (b[i] & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b[i - 1] & 0x80:
                        break
                else:
                    i = -1
                if i > 0 and len(b) >= i + rl:
                    self.buf = b[i + rl:]
                    return b[0], b[i:i + rl]
            if not self._fill():
                return None

    def send(self, data):
        self.sock.settimeout(5)
        self.sock.send(data)
        self.sock.settimeout(0.05)

    def closed(self):
        """True once the client closed its end (reads until EOF)."""
        for _ in range(400):
            self.pump()
            try:
                got = self.sock.recv(512)
            except OSError:
                continue
            if not got:
                return True
        return False

    def close(self):
        self.sock.close()


def string(b, i):
    n = (b[i] << 8) | b[i + 1]
    return bytes(b[i + 2:i + 2 + n]), i + 2 + n


def publish(topic, payload, qos=0, pid=1):
    t = topic.encode()
    body = bytes([len(t) >> 8, len(t) & 0xFF]) + t
    if qos:
        body += bytes([pid >> 8, pid & 0xFF])
    body += payload
    n = len(body)
    rl = b""
    while True:
        d = n & 0x7F
        n >>= 7
        rl += bytes([d | (0x80 if n else 0)])
        if not n:
            break
    return bytes([0x30 | (qos << 1)]) + rl + body
