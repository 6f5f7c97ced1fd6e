"""The qemu mps2-an385 image the [qemu] items run on: what a board's interpreter is like."""

from __future__ import annotations

from pathlib import Path

from host.deploy.qemu_run import QemuResult, run_script


def _run(qemu_firmware: tuple[Path, Path], code: str) -> QemuResult:
    elf, romfs = qemu_firmware
    return run_script(elf, code, romfs=romfs, timeout_s=60)


def test_the_image_is_a_32_bit_single_precision_micropython(qemu_firmware: tuple[Path, Path]) -> None:
    res = _run(
        qemu_firmware,
        "import sys, gc, struct\n"
        "print(sys.implementation._machine)\n"
        "print(1.0 + 1e-8 == 1.0, 16777217.0 == 16777216.0, 1 / 3)\n"
        "print(struct.unpack('f', struct.pack('f', 0.1))[0] == 0.1, sys.maxsize)\n"
        "gc.collect(); print(gc.mem_free())\n",
    )
    machine, floats, word, free = res.stdout.splitlines()
    assert machine == "mps2-an385 with Cortex-M3"
    assert floats == "True True 0.33333334"  # float32: 24-bit mantissa, 8 digits printed
    assert word == f"True {2**31 - 1}"  # a float is a C float; a machine word is 32 bits
    assert 100_000 < int(free) <= 128 * 1024  # the 128 KB heap, less the interpreter's own
    assert res.error == ""


def test_firmware_imports_from_the_romfs_and_errors_come_back(qemu_firmware: tuple[Path, Path]) -> None:
    res = _run(
        qemu_firmware,
        "import sys\nsys.path.append('/rom')\n"
        "from firmware.proto.crc16 import crc16\nprint(hex(crc16(b'123456789')))\n"
        "import firmware.proto.crc16 as m\nprint(m.__file__)\n"
        "raise ValueError('from the board')\n",
    )
    assert res.stdout.splitlines() == ["0x4b37", "/rom/firmware/proto/crc16.mpy"]
    assert "ValueError: from the board" in res.error


def test_printed_lines_come_to_the_callback_and_the_error_does_not(qemu_firmware: tuple[Path, Path]) -> None:
    elf, romfs = qemu_firmware
    lines: list[str] = []
    code = "for i in range(3):\n    print('line', i)\nprint('last', end='')\nraise ValueError('x')\n"
    res = run_script(elf, code, romfs=romfs, timeout_s=60, on_line=lines.append)
    assert lines == ["line 0", "line 1", "line 2", "last"]
    assert res.stdout == "line 0\nline 1\nline 2\nlast" and "ValueError: x" in res.error
