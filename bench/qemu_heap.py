"""The station's heap on the qemu Cortex-M3 board in three deployment modes. Prints, never asserts.

    .venv/bin/python bench/qemu_heap.py [--heap KIB] [--modes littlefs,romfs,frozen] [--smallest]

The run is test_station_hour's: a 23-slot station boots against the test plant, is confirmed,
and runs one simulated hour (15 vehicles, mixed pack types, a charger off the bus for two
minutes, the journal compacting on LittleFS in /tmp, outside the heap). On the MicroPython
``qemu`` port for ``mps2-an385`` (single-precision floats, 31-bit small ints), one QEMU per
run, built with a ``--heap`` KiB heap (default 256: mode littlefs does not fit in 128).

Modes, for the firmware package only (the test plant always runs from the ROMFS):

- littlefs: the firmware's .mpy files copied to LittleFS (/tmp) and imported from there, as a
  board's flash filesystem holds an image that ``swapstation flash`` wrote: the bytecode is
  loaded into the heap.
- romfs: the .mpy files on a ROMFS image at /rom (the [qemu] tests' way): the bytecode runs in
  place, off the heap.
- frozen: the firmware frozen into the MicroPython image (``qemu_build.firmware_elf(frozen=)``,
  a build of its own, ~30 s of CPU once per firmware change): bytecode and constants in flash.

The imports happen after ``collect_every()``, as in ``main.start``. Figures per mode:
``gc.mem_free()`` at start, after the imports (collected; with the largest free run, from
``micropython.mem_info()``: 16-byte blocks on a 32-bit build), after boot (after the
confirmation, collected), after the hour (collected, the station still alive), and the lowest
seen (sampled after every tick, not collected: live data plus the garbage since the last
collection, which ``collect_every`` keeps near 16 KiB). ``--smallest`` also bisects, in 4 KiB
steps, the largest ballast (a bytearray allocated first thing, held all run) with which the
hour still runs: the smallest heap that runs it is about the heap less that ballast. Each hour
takes one to two minutes of QEMU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from host.deploy import qemu_build, qemu_run  # noqa: E402
from host.deploy.qemu_run import QEMU_BOOT, qemu_romfs_files  # noqa: E402

MODES = ("littlefs", "romfs", "frozen")

# Runs on the board after QEMU_BOOT (which mounts /tmp and sets sys.path to the ROMFS).
PROBE = r"""
ballast = bytearray({ballast})  # first of all: the heap the run gets is this much smaller
import gc, os, sys, json
gc.collect()
start_free = gc.mem_free()
MODE = {mode!r}
if MODE == "littlefs":
    _buf = bytearray(512)
    def _copy(src, dst):
        os.mkdir(dst)
        for name in os.listdir(src):
            s = src + "/" + name
            d = dst + "/" + name
            if os.stat(s)[0] & 0x4000:
                _copy(s, d)
                continue
            fi = open(s, "rb")
            fo = open(d, "wb")
            while True:
                n = fi.readinto(_buf)
                if not n:
                    break
                fo.write(memoryview(_buf)[:n])
            fi.close()
            fo.close()
    os.mkdir("/tmp/fw")
    _copy("/rom/firmware", "/tmp/fw/firmware")
    del _copy, _buf
    sys.path[:] = ["/tmp/fw", "/rom/tests/firmware"]
elif MODE == "romfs":
    sys.path[:] = ["/rom", "/rom/tests/firmware"]
else:
    sys.path[:] = [".frozen", "/rom/tests/firmware"]
from firmware.compat import collect_every
collect_every()  # before the imports, as main.start does: their garbage is collected as it goes
import test_station_hour as H
from plant import Pack, Vehicle
from station import Station
from firmware.drivers.vfs_storage import VfsStorage
import firmware.drivers.vfs_storage as _where
import micropython
gc.collect()
imported = gc.mem_free()
micropython.mem_info()  # its "max free sz" line: the largest free run, read on the host
low = [gc.mem_free()]
_tick = Station.tick
def _sampled(self):
    w = _tick(self)
    f = gc.mem_free()
    if f < low[0]:
        low[0] = f
    return w
Station.tick = _sampled
def run():
    os.mkdir("/tmp/hour")
    packs = [Pack(1000 + k, H._TYPES[k % 3], soc=95.0 if k < 15 else 70.0, bolts=8) for k in range(22)]
    s = Station(storage=VfsStorage("/tmp/hour"), packs=packs)
    s.start()
    gc.collect()
    boot = gc.mem_free()
    plant = s.plant
    dropout = plant.chargers[10]
    for t, vid, model, pid, ptype, soc in H._arrivals():
        s.run(t - plant.now)
        plant.arrive(Vehicle(vid, model, Pack(pid, ptype, soc=soc, bolts=8)))
        if 1200000 <= plant.now < 1500000 and not dropout.offline and dropout.writes:
            dropout.offline = True
        elif plant.now >= 1500000:
            dropout.offline = False
    s.run(H.HOUR_MS - plant.now)
    gc.collect()
    st = s.sup.status()
    return boot, gc.mem_free(), st["swaps_ok"], len(plant.departed), s.sup.journal_errors
boot, hour, ok, departed, jerr = run()
print("@@" + json.dumps({{"start": start_free, "imported": imported, "boot": boot, "hour": hour,
                          "low": low[0], "swaps_ok": ok, "departed": departed, "journal_errors": jerr,
                          "from": _where.__file__}}))
"""


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


class Board:
    def __init__(self, heap_kib: int, modes: tuple[str, ...], workdir: Path):
        heap = heap_kib * 1024
        self.heap_kib = heap_kib
        qemu_build.ensure_packages()
        self.romfs = qemu_run.build_romfs(qemu_romfs_files(), workdir / "bench.romfs")
        self.elfs = {}
        for mode in modes:
            frozen = qemu_build.firmware_package() if mode == "frozen" else None
            t0 = time.monotonic()
            self.elfs[mode] = qemu_build.firmware_elf(heap, frozen=frozen, log=print)
            if time.monotonic() - t0 > 5:
                print(f"  (built in {time.monotonic() - t0:.0f} s)", flush=True)

    def run(self, mode: str, ballast: int = 0) -> tuple[dict | None, str, float]:
        """(figures or None, what went wrong, wall seconds)."""
        script = QEMU_BOOT + PROBE.format(mode=mode, ballast=ballast)
        t0 = time.monotonic()
        try:
            res = qemu_run.run_script(self.elfs[mode], script, romfs=self.romfs, timeout_s=1200)
        except qemu_run.QemuTimeout as e:
            return None, str(e), time.monotonic() - t0
        run = None
        for line in res.stdout.splitlines():
            if "max free sz:" in line and run is None:
                run = int(line.rsplit("max free sz:", 1)[1]) * 16  # blocks of 4 words
            if line.startswith("@@"):
                f = json.loads(line[2:])
                f["run"] = run
                return f, "", res.seconds
        last = (res.error.strip().splitlines() or ["no figures"])[-1]
        return None, last, res.seconds


def _ran(f: dict | None) -> bool:
    # test_station_hour's own bar: at least 12 swaps, every departure a swap, no journal error
    return f is not None and f["swaps_ok"] >= 12 and f["journal_errors"] == 0


def _smallest(board: Board, mode: str, low: int) -> None:
    """Bisect the largest ballast (4 KiB steps) the hour still runs with. It cannot run with
    more ballast than the lowest free seen plus the garbage then (under 20 KiB); the first
    try is 16 KiB below the lowest free seen, which usually runs: four or five hours a mode."""
    step = 4096
    good, bad = 0, (low + 20 * 1024) // step * step
    mid = (low - 16 * 1024) // step * step
    while bad - good > step:
        if not good < mid < bad:
            mid = (good + bad) // 2 // step * step
        f, why, secs = board.run(mode, mid)
        ok = _ran(f)
        print(f"    ballast {mid // 1024} KiB: {'runs' if ok else 'fails (' + why[:70] + ')'} [{secs:.0f} s]",
              flush=True)
        if ok:
            good = mid
        else:
            bad = mid
        mid = -1
    print(f"  -> runs with {good // 1024} KiB of ballast, not with {bad // 1024} KiB: smallest heap about "
          f"{board.heap_kib - good // 1024} KiB (fragmentation decides near the edge: read it as +-8 KiB)",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heap", type=int, default=256, help="heap of the qemu build, KiB (default 256)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--smallest", action="store_true", help="also bisect the smallest heap (ballast)")
    a = ap.parse_args()
    modes = tuple(m for m in a.modes.split(",") if m)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"unknown mode(s): {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="qemu-heap-") as tmp:
        board = Board(a.heap, modes, Path(tmp))
        print(f"qemu mps2-an385 (Cortex-M3, float32), {a.heap} KiB heap; boot + 1 simulated hour "
              "(test_station_hour); gc.mem_free():", flush=True)
        print(f"  {'mode':9s} {'at start':>10s} {'imported (largest run)':>24s} {'after boot':>11s} "
              f"{'after hour':>11s} {'lowest seen':>12s}  swaps  wall", flush=True)
        lows = {}
        for mode in modes:
            f, why, secs = board.run(mode)
            if f is None or not _ran(f):
                print(f"  {mode:9s} did not run the hour: {why or f}", flush=True)
                continue
            lows[mode] = f["low"]
            imported = f"{_kib(f['imported'])} ({_kib(f['run'] or 0)})"
            print(f"  {mode:9s} {_kib(f['start']):>10s} {imported:>24s} {_kib(f['boot']):>11s} "
                  f"{_kib(f['hour']):>11s} {_kib(f['low']):>12s}  {f['swaps_ok']:5d}  {secs:.0f} s   "
                  f"(firmware from {f['from']})", flush=True)
        if a.smallest:
            for mode in lows:
                print(f"smallest heap, {mode}:", flush=True)
                _smallest(board, mode, lows[mode])


if __name__ == "__main__":
    main()
