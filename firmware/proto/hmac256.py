"""HMAC-SHA256 (RFC 2104) on ``hashlib.sha256``: MicroPython has no ``hmac`` module.

    mac = hmac_sha256(key, msg)       # 32 bytes
    same(mac, expected)               # comparison whose time does not depend on where they differ
"""

import hashlib

_BLOCK = 64


def hmac_sha256(key, msg):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    k = bytearray(_BLOCK)
    k[: len(key)] = key
    for i in range(_BLOCK):
        k[i] ^= 0x36
    inner = hashlib.sha256(k)
    inner.update(msg)
    ih = inner.digest()
    for i in range(_BLOCK):
        k[i] ^= 0x36 ^ 0x5C  # ipad -> opad in place
    outer = hashlib.sha256(k)
    outer.update(ih)
    return outer.digest()


def same(a, b):
    """Constant-time equality of two byte strings (a MAC check must not leak a prefix)."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0


def hexlify(b):
    return "".join("%02x" % x for x in b)


def unhex(s):
    """bytes of a hex string; ValueError on anything else."""
    if type(s) is not str or len(s) % 2:
        raise ValueError("expected an even number of hex digits")
    out = bytearray(len(s) // 2)
    for i in range(len(out)):
        out[i] = int(s[2 * i : 2 * i + 2], 16)
    return bytes(out)
