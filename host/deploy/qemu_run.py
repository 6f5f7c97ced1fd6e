"""Run a MicroPython script on the qemu ``mps2-an385`` build and collect its output.

QEMU runs the image with UART0 (the REPL) on its stdin/stdout pipes; the script goes in
through the raw REPL (Ctrl-A, the code, Ctrl-D), which answers ``OK``, the script's
output, ``\\x04``, any exception's traceback and ``\\x04``. QEMU flow-controls the UART,
so nothing typed is lost while the guest is busy. Code to import comes on a ROMFS image
(``mpremote romfs build``) loaded at 0x21000000, which the port mounts at ``/rom``:
modules there run in place, off the heap, as frozen code does on a board.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from host.deploy.qemu_build import MACHINE, PACKAGES, QemuBuildError, apt_command

ROOT = Path(__file__).resolve().parents[2]
ROMFS_ADDR = 0x21000000
ROMFS_MAX = 0x00400000  # the board's ROMFS partition 0
RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
BOOT_TIMEOUT_S = 20.0
# Run first on the board: /tmp as LittleFS on 1 MiB of the board's PSRAM above the ROMFS
# partition (uctypes.bytearray_at: no heap), the ROMFS on sys.path and as the current
# folder (relative paths such as firmware/station.json work as in the checkout).
QEMU_BOOT = """\
import os, sys, vfs, uctypes
class _RamDisk:
    def __init__(self, addr, bs, n):
        self.mv = memoryview(uctypes.bytearray_at(addr, bs * n))
        self.bs = bs
        self.n = n
    def readblocks(self, b, buf, off=0):
        o = b * self.bs + off
        buf[:] = self.mv[o : o + len(buf)]
    def writeblocks(self, b, buf, off=0):
        o = b * self.bs + off
        self.mv[o : o + len(buf)] = buf
    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return self.bs
        return 0
_d = _RamDisk(0x21400000, 4096, 256)
vfs.VfsLfs2.mkfs(_d)
vfs.mount(vfs.VfsLfs2(_d), "/tmp")
del _d, _RamDisk
sys.path[:] = ["/rom/tests/firmware", "/rom"]
os.chdir("/rom")
"""


def qemu_romfs_files(root: Path = ROOT) -> dict[str, Path]:
    """What the qemu board gets on its ROMFS (image path -> file): the firmware package
    (data files too) and, by path, the MicroPython-side firmware tests with their station
    and plant, which the [qemu] tests and the qemu benches run."""
    out: dict[str, Path] = {}
    for p in sorted((root / "firmware").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".json"):
            out[p.relative_to(root).as_posix()] = p
    for p in sorted((root / "tests" / "firmware").glob("*.py")):
        out[p.relative_to(root).as_posix()] = p
    return out


@dataclass
class QemuResult:
    stdout: str  # what the script printed
    error: str  # the traceback of an uncaught exception, else ""
    seconds: float  # wall time from starting QEMU to the script's end


class QemuTimeout(Exception):
    def __init__(self, message: str, output: bytes):
        super().__init__(message)
        self.output = output


def qemu_command(elf: Path, romfs: Path | None = None, serials: tuple[str, ...] = ()) -> list[str]:
    """``serials``: QEMU -serial backends for UART1, UART2... (UART0 is the REPL on stdio)."""
    exe = shutil.which("qemu-system-arm")
    if exe is None:
        raise QemuBuildError(f"qemu-system-arm is not installed; as root run: {apt_command(PACKAGES)}")
    cmd = [exe, "-machine", MACHINE, "-nographic", "-monitor", "null", "-semihosting", "-serial", "stdio"]
    for backend in serials:
        cmd += ["-serial", backend]
    if romfs is not None:
        if romfs.stat().st_size > ROMFS_MAX:
            raise QemuBuildError(f"{romfs} is {romfs.stat().st_size} bytes; ROMFS holds {ROMFS_MAX}")
        cmd += ["-device", f"loader,file={romfs},addr={ROMFS_ADDR:#x},force-raw=on"]
    return cmd + ["-kernel", str(elf)]


class _Console:
    def __init__(self, proc: subprocess.Popen[bytes], deadline: float):
        self.proc = proc
        self.deadline = deadline
        self.seen = b""
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.on_line: Callable[[str], None] | None = None
        self._line = b""

    def _lines(self, data: bytes) -> None:
        """Hand each whole line of the script's output to ``on_line`` as it comes."""
        if self.on_line is None:
            return
        end = data.find(b"\x04")
        if end >= 0:
            data = data[:end]
        *whole, self._line = (self._line + data).split(b"\n")
        if end >= 0 and self._line:
            whole.append(self._line)  # the output ended without a newline
        for line in whole:
            self.on_line(line.rstrip(b"\r").decode(errors="replace"))
        if end >= 0:
            self.on_line = None

    def read_until(self, marker: bytes, what: str) -> bytes:
        """Bytes up to and including ``marker``; QemuTimeout past the deadline."""
        while True:
            i = self.seen.find(marker)
            if i >= 0:
                out, self.seen = self.seen[: i + len(marker)], self.seen[i + len(marker) :]
                return out
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise QemuTimeout(f"no {what} from MicroPython under QEMU in time", self.seen)
            ready, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise QemuTimeout(f"QEMU exited (code {self.proc.poll()}) waiting for {what}", self.seen)
                self.seen += chunk
                self._lines(chunk)

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()


def run_script(
    elf: Path,
    script: str,
    *,
    romfs: Path | None = None,
    timeout_s: float = 300.0,
    serials: tuple[str, ...] = (),
    on_line: Callable[[str], None] | None = None,
) -> QemuResult:
    """Boot the image, run ``script`` in the raw REPL, return its output, stop QEMU.
    ``on_line`` gets each line the script prints as it comes (long runs report as they go)."""
    t0 = time.monotonic()
    cmd = qemu_command(elf, romfs, serials)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        con = _Console(proc, t0 + BOOT_TIMEOUT_S)
        con.write(b"\r\x03\x03\x01")  # interrupt anything, then the raw REPL
        con.read_until(RAW_PROMPT, "raw REPL prompt")
        con.deadline = t0 + timeout_s
        con.write(script.encode() + b"\x04")
        con.read_until(b"OK", "raw REPL OK")
        if on_line is not None:
            con.on_line = on_line
            con._lines(con.seen)
        out = con.read_until(b"\x04", "end of the script's output")[:-1]
        err = con.read_until(b"\x04", "end of the script's error output")[:-1]
        return QemuResult(
            out.decode(errors="replace").replace("\r\n", "\n"),
            err.decode(errors="replace").replace("\r\n", "\n"),
            time.monotonic() - t0,
        )
    finally:
        proc.kill()
        proc.wait()


def build_romfs(files: dict[str, Path], out: Path, *, arch: str = "armv7m") -> Path:
    """A ROMFS image of ``files`` (image path -> source file): ``.py`` compiled to ``.mpy``
    for ``arch`` (the code then runs in place from ROM), everything else copied."""
    from concurrent.futures import ThreadPoolExecutor

    from host.deploy import tools
    from host.deploy.build import MpyCross

    stage = out.with_suffix(".d")
    if stage.exists():
        shutil.rmtree(stage)
    compiler = MpyCross(None)
    jobs = []
    for rel, src in sorted(files.items()):
        target = stage / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".py"):
            jobs.append((src, rel, target.with_suffix(".mpy")))
        else:
            shutil.copyfile(src, target)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda j: compiler.compile(j[0], j[1], j[2], arch), jobs))
    proc = subprocess.run(
        [*tools.command("mpremote"), "romfs", "--no-mpy", "-o", str(out), "build", str(stage)],
        capture_output=True,
        text=True,
    )
    shutil.rmtree(stage, ignore_errors=True)
    if proc.returncode != 0 or not out.is_file():
        raise QemuBuildError(
            f"mpremote romfs build failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    return out
