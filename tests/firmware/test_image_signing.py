"""Signed images at boot (main.check_signed): a board holding an image key starts only an
image whose manifest MAC matches it; a board without a key starts unsigned images too."""

import json

from fwtest import raises
from scratchfs import Board, write_image

from firmware import main
from firmware.boards import image
from firmware.proto.hmac256 import hexlify, hmac_sha256

QEMU = True  # also on the Cortex-M3 board: its hashing and file reads

KEY = bytes(range(32))
FILES = {"main.py": b"print(1)\n", "firmware/core/a.mpy": b"M\x06\x00\x1fabc"}


def _image(b, key=None, mac=None):
    """A complete image on ``b``; signed with ``key`` (or carrying ``mac``); its manifest."""
    write_image(b, FILES)
    m = image.load_manifest(b.root)
    m["station_id"] = "PSS4-TEST"
    m["image_sha256"] = "ab" * 32
    if key is not None:
        mac = hexlify(hmac_sha256(key, image.signing_text(m)))
    if mac is not None:
        m["mac"] = mac
    b.put(image.MANIFEST, json.dumps(m).encode())
    return image.check(b.root)


def _why(fn, *args):
    """Why ``fn(*args)`` refused the image."""
    return str(raises(image.ImageError, fn, *args))


def _keyed(b, text):
    b.put(image.KEY_FILE, text.encode())


def test_a_board_without_a_key_starts_an_unsigned_image():
    b = Board()
    try:
        main.check_signed(b.root, _image(b))
    finally:
        b.done()


def test_a_keyed_board_starts_an_image_signed_with_its_key():
    b = Board()
    try:
        _keyed(b, hexlify(KEY) + "\n")
        main.check_signed(b.root, _image(b, KEY))
    finally:
        b.done()


def test_a_keyed_board_refuses_unsigned_foreign_and_changed_images():
    b = Board()
    try:
        _keyed(b, hexlify(KEY))
        assert "not signed" in _why(main.check_signed, b.root, _image(b))
        # another station's key
        assert "does not match" in _why(main.check_signed, b.root, _image(b, bytes(32)))
        assert "does not match" in _why(main.check_signed, b.root, _image(b, mac="zz"))  # not even hex
        m = _image(b, KEY)
        m["files"]["main.py"]["sha256"] = "00" * 32  # a file the MAC did not cover
        assert "does not match" in _why(main.check_signed, b.root, m)
        m = _image(b, KEY)
        m["station_id"] = "PSS4-OTHER"
        assert "does not match" in _why(main.check_signed, b.root, m)
    finally:
        b.done()


def test_a_damaged_key_file_refuses_every_image():
    b = Board()
    try:
        _keyed(b, "not a key")
        assert "not a key in hex" in _why(main.check_signed, b.root, _image(b, KEY))
    finally:
        b.done()


def test_main_start_refuses_before_anything_is_opened():
    b = Board()
    try:
        _keyed(b, hexlify(KEY))
        _image(b)
        assert "not signed" in _why(main.start, b.root)
    finally:
        b.done()
