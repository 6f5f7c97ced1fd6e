"""The ``qemu`` target: the station as ``main.py`` starts it on the Cortex-M3 ``mps2-an385``
board under QEMU, the 32-bit single-precision MicroPython build of ``host.deploy.qemu_build``.

- Code: the image ``swapstation build --board qemu-mps2-an385 --test-drivers`` makes, on a
  ROMFS loaded at 0x21000000 (mounted at ``/rom``), with ``hil_target.mpy``
  (``hil/unix_target_main.py``) beside it. ``board.json`` names ``hil_target`` as its
  ``channel``: the raw REPL runs ``main.main("/rom/")``, which checks the image, opens the
  board (``drivers/mps2.py``) and hands the started station to
  ``hil_target.serve_station``. The operator/status channel is then on UART0 (QEMU's
  stdin/stdout), as on a bench board's USB console.
- Lines: CMSDK UART1 (chargers) and UART2 (bay I/O) are QEMU ``-serial`` tty backends on the
  master ends of the rig's paced pty lines, as the unix target's serial ports are.
- Flash: the driver puts LittleFS on PSRAM at 0x21800000. The board's whole 16 MiB PSRAM is
  a shared memory-mapped file (``-object memory-backend-file,share=on``), the rig's flash
  image: every guest store is in the file at once, so a power cut is QEMU killed at any
  instruction, and the next power-on boots on the PSRAM as it was then. No monitor dump is
  needed, and none could be late. A watchdog reset keeps it too (same process).
- Power cut from a step trigger (``do: kill``): the target says which trigger fired and
  stops its loop in place; the rig kills QEMU as soon as it reads that line.
- Torn flash write (``flash_cut``: ``{"op": "cut"}``, a ``cut_write`` trigger): the boot
  script mounts the flash itself, the PSRAM disk behind the cut switch of
  ``drivers/blockdev.py`` (``hil_target.cut_board_flash``), before ``main.main`` opens the
  board. The torn write stores half its bytes in PSRAM, so in the file; the target prints
  ``powercut`` and spins in the write, and the rig kills QEMU on that line: the next
  power-on boots on the half-written flash, as the unix target's does.

- Pins: the board has none. ``hil_target.HIL_PINS`` makes the channel wire in-memory stand-ins
  (the ``estop_ok`` input; ``motion_enable`` and ``fault`` outputs) into the running
  supervisor, as the unix target's pins are, so the controller e-stop scenarios run too.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from hil.targets.base import LAUNCHER, ROOT, TAG, Channel, Target, TargetError, _booted

BOARD = ROOT / "firmware" / "boards" / "qemu-mps2-an385.json"
HEAP = 256 * 1024  # the station with .mpy on ROMFS needs ~128 KiB; the channel's requests more
PSRAM_BYTES = 16 * 1024 * 1024  # the machine's RAM: mps2-an385 insists on exactly this size
RAW_PROMPT = "raw REPL; CTRL-B to exit"
NOT_STARTING = "swapstation: not starting:"  # main.main's line when start() fails
SLOW = 3  # request timeouts are this many times longer: QEMU under load is slower than a board
BOOT_SCRIPT = (
    "import sys\n"
    "sys.path[:0] = ['/rom']\n"
    "import hil_target\n"
    "hil_target.KILL_BY_HOST = True\n"  # a kill trigger stops the loop; the rig ends QEMU
    "hil_target.HIL_PINS = {pins}\n"  # the board has no pins: stand-ins the channel sets
    "hil_target.cut_board_flash()\n"  # LittleFS behind a cut switch; main.main finds it mounted
    "import main\n"
    "main.main('/rom/')\n"
)

_romfs_cache: dict[str, Path] = {}
_romfs_lock = threading.Lock()


def _digest(config: Path | None) -> str:
    h = hashlib.sha256()
    h.update(b"" if config is None else Path(config).read_bytes())
    for p in sorted((ROOT / "firmware").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(p.relative_to(ROOT).as_posix().encode() + b"\0" + p.read_bytes())
    h.update(LAUNCHER.read_bytes())
    return h.hexdigest()[:20]


def station_romfs(config: Path | None = None) -> Path:
    """The ROMFS image of the station for this config (built once per process and config).

    A config the build refuses (``swapstation build`` validates it) still gets an image: the
    default config's, with ``firmware/station.json`` replaced and the manifest restamped,
    as a hand-edited flash would have it. Judging it is then main.py's job on the board."""
    key = _digest(config)
    with _romfs_lock:
        hit = _romfs_cache.get(key)
        if hit is not None and hit.is_file():
            return hit
        tmp = Path(tempfile.mkdtemp(prefix="swapstation-qemu-hil-"))
        atexit.register(shutil.rmtree, tmp, True)  # the process's images go with it
        out = _build(tmp, config)
        _romfs_cache[key] = out
        return out


def _build(tmp: Path, config: Path | None) -> Path:
    from host.deploy.build import BuildError, MpyCross, build_image

    raw = json.loads(BOARD.read_text())
    raw["channel"] = "hil_target"
    board = tmp / "qemu-hil.json"
    board.write_text(json.dumps(raw))
    image = tmp / "image"
    try:
        build_image(image, str(board), config, test_drivers=True)
    except BuildError as e:
        if config is None or "station config" not in str(e):
            raise
        build_image(image, str(board), None, test_drivers=True)
        _restamp(image, "firmware/station.json", Path(config).read_bytes())
    MpyCross(None).compile(LAUNCHER, "hil_target.py", image / "hil_target.mpy", raw["arch"])
    files = {p.relative_to(image).as_posix(): p for p in image.rglob("*") if p.is_file()}
    # Everything is already built: .mpy and data files go on the ROMFS as they are.
    return _romfs_as_is(files, tmp / "station.romfs")


def _romfs_as_is(files: dict[str, Path], out: Path) -> Path:
    from host.deploy import tools
    from host.deploy.qemu_build import QemuBuildError

    stage = out.with_suffix(".d")
    for rel, src in files.items():
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, stage / rel)
    cmd = [*tools.command("mpremote"), "romfs", "--no-mpy", "-o", str(out), "build", str(stage)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        raise QemuBuildError(f"mpremote romfs build failed (exit {proc.returncode}):\n"
                             f"{proc.stdout}{proc.stderr}")
    return out


def _restamp(image: Path, rel: str, data: bytes) -> None:
    """Replace one file of a built image and make its manifest agree (hashes, image digest)."""
    from host.deploy.build import MANIFEST, image_digest, sha256

    (image / rel).write_bytes(data)
    m = json.loads((image / MANIFEST).read_text())
    m["files"][rel] = {"sha256": sha256(image / rel), "size": len(data)}
    m["image_sha256"] = image_digest(m["files"])
    (image / MANIFEST).write_text(json.dumps(m, indent=1, sort_keys=True) + "\n")


def qemu_elf(heap: int = HEAP) -> Path:
    """The cached qemu build (the Debian packages first, installed when root)."""
    from host.deploy import qemu_build

    try:
        qemu_build.ensure_packages()
        return qemu_build.firmware_elf(heap)
    except qemu_build.QemuBuildError as e:
        raise TargetError(str(e)) from None


class QemuTarget(Target):
    """The station on QEMU ``mps2-an385``, one QEMU process per power-on.

    ``buses``: bus name -> tty path (the line's master end) for UART1/UART2. ``image``: the
    PSRAM file (the flash), created blank on first use. ``config``: the station.json the
    image carries (default: the firmware's)."""

    name = "qemu"
    supports_flash_cut = True

    def __init__(self, config: str | Path | None, image: str | Path, buses: Mapping[str, str], *,
                 heap: int = HEAP, log: Callable[[str], None] | None = None) -> None:
        self.config = None if config is None else Path(config)
        self.image = Path(image)
        self.buses = dict(buses)
        self.heap = heap
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.boots: list[float] = []  # wall s from QEMU's start to the boot line
        self.exit_codes: list[int] = []
        self.kills = 0  # power cuts from a kill trigger or a torn flash write
        self.inputs = {"estop_ok": 1}  # the stand-in controller pins and their level at power-on
        self.listeners.append(self._on_message)

    def command(self, elf: Path, romfs: Path) -> list[str]:
        from host.deploy.qemu_run import qemu_command

        board = json.loads(BOARD.read_text())
        by_uart = {int(b["uart"]): name for name, b in board["buses"].items()}
        serials = tuple(self.buses[by_uart[u]] if by_uart.get(u) in self.buses else "null"
                        for u in range(1, max(by_uart) + 1))
        cmd = qemu_command(elf, romfs, serials)
        mem = ["-object", f"memory-backend-file,id=psram,size={PSRAM_BYTES},mem-path={self.image},share=on"]
        i = cmd.index("-machine")
        cmd[i + 1] += ",memory-backend=psram"
        return cmd[:i] + mem + cmd[i:]

    def start(self, boot_timeout: float = 60.0) -> dict[str, Any]:
        if self.alive():
            raise TargetError("the qemu target is already running")
        self._reap(5.0)
        elf = qemu_elf(self.heap)
        try:
            romfs = station_romfs(self.config)
        except Exception as e:  # noqa: BLE001 - a build failure is the target not starting
            raise TargetError(f"cannot build the qemu image: {e}") from None
        t0 = time.monotonic()
        proc, ch, self._reader = self._spawn(self.command(elf, romfs), "hil-qemu-target", self._read)
        self.proc = proc
        try:
            ch.write_raw(b"\r\x03\x03\x01")  # interrupt anything, then the raw REPL
            end = time.monotonic() + boot_timeout
            # Console lines wake no waiter (only tagged ones do): look every 50 ms.
            while not any(RAW_PROMPT in x for x in list(ch.console)):
                if time.monotonic() > end or ch.closed:
                    raise TargetError(f"no raw REPL from QEMU within {boot_timeout} s")
                ch.wait(lambda c: False, 0.05)
            ch.write_raw(BOOT_SCRIPT.format(pins=json.dumps(self.inputs)).encode() + b"\x04")
        except (OSError, TargetError) as e:
            self.power_cut()
            raise TargetError(f"the qemu target did not start: {e}{self.console_tail()}") from None
        ok = ch.wait(_booted, boot_timeout)
        fatal = ch.event("fatal")
        if fatal is not None:
            self.power_cut()
            raise TargetError(f"the firmware did not start: {fatal.get('error')}{self.console_tail()}")
        if not ok:
            self.power_cut()
            raise TargetError(f"no boot from the qemu target within {boot_timeout} s{self.console_tail()}")
        self.boots.append(time.monotonic() - t0)
        boot = ch.event("boot")
        assert boot is not None
        return boot

    def _read(self, proc: subprocess.Popen[bytes], ch: Channel, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").replace("\r", "")
            # The raw REPL's "OK" runs into the script's first line.
            while line.startswith(">OK") or line.startswith("OK"):
                line = line.split("OK", 1)[1]
            if self.log is not None:
                self.log(line.rstrip("\n"))
            if line.startswith(NOT_STARTING):  # main.py refused to start: say so as the channel
                ch.feed_line(TAG + json.dumps({"k": "fatal", "error": line[len(NOT_STARTING):].strip()}))
            ch.feed_line(line)
        code = proc.wait()
        ch.close(f"the qemu target exited with code {code}")

    def _on_message(self, msg: dict[str, Any]) -> None:
        """A kill trigger fired or a flash write was torn: the guest has stopped in place;
        cut the power now (on the reader thread, before any later line is read)."""
        if (msg.get("k") == "trigger" and msg.get("do") == "kill") or msg.get("k") == "powercut":
            proc = self.proc
            if proc is not None and proc.poll() is None:
                self.kills += 1
                os.killpg(proc.pid, signal.SIGKILL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def request(self, op: str, timeout: float = 5.0, **fields: Any) -> Any:
        return super().request(op, timeout * SLOW, **fields)

    def _reap(self, timeout: float) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(5)
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        self.exit_codes.append(proc.returncode)
        self.proc = None

    def power_cut(self) -> None:
        """SIGKILL to QEMU: the CPU stops between two instructions; the PSRAM file keeps
        every store made before."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        self._reap(5.0)

    def stop(self) -> None:
        self.power_cut()  # a board has no orderly stop either: the flash is consistent at any cut

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for QEMU to end (a kill trigger ends it); its exit code."""
        proc = self.proc
        if proc is None:
            return self.exit_codes[-1] if self.exit_codes else None
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reap(1.0)
        return self.exit_codes[-1]
