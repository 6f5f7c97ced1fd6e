"""firmware/boards/image.py on a real filesystem: hashing, the boot check that refuses a
half-written image, and the flasher's steps as the board runs them."""

import os

from fwtest import raises
from scratchfs import Board, write_image

from firmware.boards import image

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


FILES = {"main.py": b"print(1)\n", "firmware/core/a.mpy": b"M\x06\x00\x1fabc", "firmware/b.mpy": b"M\x06xyz"}


def test_sha256_and_hashes():
    b = Board()
    try:
        b.put("x/abc", b"abc")
        b.put("big", b"\x5a" * 1500)  # several reads of the 512-byte buffer
        assert image.sha256_file(b.root + "x/abc") == ABC_SHA256
        h = image.hashes(b.root, ["x/abc", "nope", "x"])
        assert h == {"x/abc": [3, ABC_SHA256], "nope": None, "x": None}
        assert image.hashes(b.root, ["big"])["big"][0] == 1500
    finally:
        b.done()


def test_walk_and_makedirs():
    b = Board()
    try:
        b.put("firmware/core/deep/z.mpy", b"1")
        b.put("firmware/a.mpy", b"2")
        b.put("other/c", b"3")
        assert image.walk(b.root, "firmware") == ["firmware/a.mpy", "firmware/core/deep/z.mpy"]
        assert image.walk(b.root, "missing") == []
    finally:
        b.done()


def test_complete_image_passes_the_check():
    b = Board()
    try:
        write_image(b, FILES)
        assert sorted(image.check(b.root)["files"]) == sorted(FILES)
    finally:
        b.done()


def test_check_refuses_a_half_written_image():
    b = Board()
    try:
        write_image(b, FILES)
        image.set_flashing(b.root, True)
        e = raises(image.ImageError, image.check, b.root)
        assert "in progress" in str(e)
        image.set_flashing(b.root, False)
        image.set_flashing(b.root, False)  # clearing twice is fine
        os.remove(b.root + image.MANIFEST)
        e = raises(image.ImageError, image.check, b.root)
        assert "no manifest.json" in str(e)
    finally:
        b.done()


def test_check_finds_missing_short_and_changed_files():
    b = Board()
    try:
        write_image(b, FILES)
        os.remove(b.root + "firmware/b.mpy")
        assert "firmware/b.mpy is missing" in str(raises(image.ImageError, image.check, b.root))
        b.put("firmware/b.mpy", b"M\x06xy")
        assert "has 4 bytes, the manifest says 5" in str(raises(image.ImageError, image.check, b.root))
        b.put("firmware/b.mpy", b"M\x06xyZ")  # same size, other bytes
        assert image.check(b.root, full=False)  # the size-only check cannot see it
        assert "does not match" in str(raises(image.ImageError, image.check, b.root, True))
    finally:
        b.done()


def test_check_refuses_a_damaged_manifest():
    b = Board()
    try:
        b.put(image.MANIFEST, b"{\"format\": 1, \"fil")
        assert "damaged" in str(raises(image.ImageError, image.check, b.root))
        b.put(image.MANIFEST, b"{\"format\": 99, \"files\": {}}")
        assert "unknown format" in str(raises(image.ImageError, image.check, b.root))
    finally:
        b.done()


def test_flash_steps_on_the_board():
    b = Board()
    try:
        write_image(b, FILES)
        b.put("data/journal.log", b"keep me")
        info = image.board_info(b.root)
        assert info["manifest"]["format"] == image.FORMAT and not info["flashing"]
        assert info["free"] > 0 and info["block"] > 0 and info["total"] >= info["free"]
        assert type(info["mpy"]) is int and len(info["version"]) == 3
        image.set_flashing(b.root, True)
        assert image.board_info(b.root)["flashing"]
        # a new main.py and a new module; firmware/b.mpy is gone from the new image
        image.prepare(b.root, ["firmware/old.mpy.new"], ["firmware/new/c.mpy"])
        b.put("main.py.new", b"print(2)\n")
        b.put("firmware/new/c.mpy.new", b"M\x06c")
        scan = image.scan(b.root, ["main.py", "firmware/new/c.mpy"], "firmware")
        assert scan["hashes"]["firmware/new/c.mpy"] is None
        assert "firmware/new/c.mpy.new" in scan["walk"]
        image.commit(b.root, ["main.py", "firmware/new/c.mpy"], ["firmware/b.mpy"])
        assert not b.exists(image.MANIFEST) and not b.exists("firmware/b.mpy")
        assert b.get("main.py") == b"print(2)\n" and b.get("firmware/new/c.mpy") == b"M\x06c"
        assert not b.exists("main.py.new")
        assert "in progress" in str(raises(image.ImageError, image.check, b.root))
        b.put(image.MANIFEST + image.STAGING, b"{}")
        image.finish(b.root)
        assert b.get(image.MANIFEST) == b"{}" and not b.exists(image.FLASHING)
        assert b.get("data/journal.log") == b"keep me"
    finally:
        b.done()


def test_abandon_restores_the_old_image():
    b = Board()
    try:
        write_image(b, FILES)
        image.set_flashing(b.root, True)
        b.put("firmware/b.mpy.new", b"half")
        image.abandon(b.root, ["firmware/b.mpy.new", "main.py.new"])
        assert not b.exists("firmware/b.mpy.new") and not b.exists(image.FLASHING)
        assert image.check(b.root)
    finally:
        b.done()
