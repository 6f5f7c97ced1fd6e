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
from dataclasses import dataclass
from pathlib import Path

from host.deploy.qemu_build import MACHINE, PACKAGES, QemuBuildError, apt_command

ROMFS_ADDR = 0x21000000
ROMFS_MAX = 0x00400000  # the board's ROMFS partition 0
RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
BOOT_TIMEOUT_S = 20.0


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
) -> QemuResult:
    """Boot the image, run ``script`` in the raw REPL, return its output, stop QEMU."""
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
