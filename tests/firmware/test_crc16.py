import gc

from firmware.proto import crc16 as crcmod
from firmware.proto.crc16 import append_crc, check_crc, crc16

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap


def test_check_value_of_the_standard():
    # CRC-16/MODBUS check value over "123456789".
    assert crc16(b"123456789") == 0x4B37


def test_known_modbus_frame():
    # Read 10 holding registers from unit 1 at 0: the spec example ends C5 CD.
    buf = bytearray(b"\x01\x03\x00\x00\x00\x0a\x00\x00")
    assert append_crc(buf, 6) == 8
    assert bytes(buf[6:]) == b"\xc5\xcd"
    assert check_crc(buf, 0, 8)


def test_range_of_a_larger_buffer():
    buf = bytearray(b"xx123456789yy")
    assert crc16(buf, 2, 11) == 0x4B37
    assert crc16(b"") == 0xFFFF


def test_any_single_bit_flip_is_caught():
    buf = bytearray(b"\x11\x04\x00\x10\x00\x02\x00\x00")
    append_crc(buf, 6)
    for i in range(8 * 8):
        buf[i // 8] ^= 1 << (i % 8)
        assert not check_crc(buf, 0, 8), i
        buf[i // 8] ^= 1 << (i % 8)
    assert check_crc(buf, 0, 8)


def test_frame_at_an_offset_and_too_short():
    buf = bytearray(b"\xaa\xbb\x01\x03\x00\x00\x00\x0a\xc5\xcd")
    assert check_crc(buf, 2, 8)
    assert not check_crc(buf, 0, 8)
    assert not check_crc(buf, 0, 2)


def test_table_built_once():
    t = crcmod._TABLE
    assert len(t) == 256 and t[1] == 0xC0C1 and t[255] == 0x4040
    crc16(b"abc")
    assert crcmod._TABLE is t


def test_no_allocation_per_call():
    buf = bytearray(64)
    append_crc(buf, 62)
    if not hasattr(gc, "mem_alloc"):
        return  # CPython: allocation is not observable this way
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(200):
            crc16(buf, 0, 62)
            check_crc(buf, 0, 64)
            append_crc(buf, 62)
        used = gc.mem_alloc() - before
    finally:
        gc.enable()
    assert used < 64, used  # 600 calls; a loop counter may cost a block
