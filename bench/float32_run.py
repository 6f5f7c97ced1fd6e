"""Days of a station on the float32 qemu board: the journal's swap and energy totals
against the plant's own account. Prints, never asserts (exit status 1 if they disagree).

    .venv/bin/python bench/float32_run.py [--days 7] [--per-day 150] [--heap 256] [--on qemu]

The station is test_station_hour's (tests/firmware/station.py and plant.py, put on the
board's ROMFS by path): 23 slots, 22 packs of 75/100/150 kWh, chargers of 62.5 kW, the real
Supervisor with its journal on LittleFS, in virtual time. Demand follows a daily profile
(night trough, morning and evening peaks), ``--per-day`` vehicles a day on average as
Poisson arrivals, each bringing a pack at 8-32 % SoC. The journal starts from the checkpoint
of an old station (``--start-mwh``, default 900 MWh sold: 64 Wh steps in a float32), and a
back office takes the swap records every simulated hour (``swaps_exported``), as the
telemetry link does, so compaction may drop them.

The plant counts each swap that sent a vehicle off with another pack and the energy it
drove off with beyond what it brought, in ints (mWh; ``Plant.sold_*``). The tolerance is
from first principles: the firmware reads each SoC as a 0.1 % register (truncated), so a
swap's energy may be off by 0.1 % of each pack's capacity, plus 5 Wh of rounding to the
0.01 kWh the record keeps; summed over the swaps (``Plant.sold_bound_wh``). Also checked:
the journal's running total ``ew`` is exactly the sum of the swap records (their text, in
Wh), so nothing drifts as it accumulates.

``--wall-min M`` stops the run after M minutes of wall time, at the end of the last whole
simulated hour, and reports the totals up to it (a week is hours of qemu).

``--on cpython`` / ``--on unix`` run the same script on the host's interpreters (a check of
the script, ~15x faster than qemu).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from host.deploy import qemu_build, qemu_run  # noqa: E402

# Share of a day's vehicles in each hour, 00:00 to 23:00: a city station's two peaks.
PROFILE = (1, 1, 1, 1, 1, 2, 4, 7, 8, 6, 5, 5, 6, 5, 5, 6, 8, 9, 8, 6, 5, 4, 3, 2)

# The board's side. Prints one line per event: @S swap record, @P plant sale, @H hour.
BOARD = r"""
import gc, json, math, os
if not hasattr(gc, "mem_free"):  # CPython: no heap figure
    gc.mem_free = lambda: 0
from plant import Pack, Vehicle
from station import Station
from firmware.core.journal import LOG_NAME, encode
from firmware.drivers.vfs_storage import VfsStorage
from firmware.proto import regmap as rm
DAYS = {days}
PER_DAY = {per_day}
PROFILE = {profile!r}
OLD_WH = {old_wh}
DIR = {dir!r}
TYPES = (rm.PACK_75, rm.PACK_100, rm.PACK_150)
HOUR = 3600000
os.mkdir(DIR)
storage = VfsStorage(DIR)
if OLD_WH:
    f = storage.open(LOG_NAME, "wb")
    f.write(encode(1, "CK", {{"q": 1, "b": 0, "n": 0, "x": 0, "ls": 0, "ok": 0, "nf": 0, "cn": 0,
                              "ew": OLD_WH, "rc": 0}}))
    f.write(encode(1, "CE", {{"k": 2}}))
    f.close()
s = Station(storage=storage, packs=[Pack(1000 + k, TYPES[k % 3], soc=95.0, bolts=8) for k in range(22)])
s.start()
plant = s.plant
sup = s.sup
js = sup.journal.state
plant.sales = []
print("@B", json.dumps({{"ew": js.energy_wh, "free": gc.mem_free()}}))
seed = [{seed}]
def rnd():
    seed[0] = (seed[0] * 1103515245 + 12345) & 0x7FFFFFFF
    return seed[0]
weight = 0
for w in PROFILE:
    weight += w
t0 = plant.now
i = 0
for h in range(DAYS * 24):
    end = t0 + (h + 1) * HOUR
    mean_gap = HOUR * weight / (PER_DAY * PROFILE[h % 24])
    t = t0 + h * HOUR
    while True:
        t += int(-math.log((rnd() + 1) / 2147483649) * mean_gap)
        if t >= end:
            break
        s.run(t - plant.now)
        p = Pack(900000 + i, TYPES[i % 3], soc=8.0 + rnd() % 25, bolts=8)
        plant.arrive(Vehicle(50000 + i, 1 + i % 4, p))
        i += 1
    s.run(end - plant.now)
    last = 0
    for seq, f in sup.journal.swap_records():
        print("@S", f["n"], f["o"], repr(f["e"]))
        last = seq
    if last:
        sup.swaps_exported(last)
    for e, bound in plant.sales:
        print("@P", e, bound)
    del plant.sales[:]
    del plant.departed[:]
    st = sup.status()
    gc.collect()
    print("@H", json.dumps({{"h": h + 1, "ok": js.swaps_ok, "nf": js.swaps_failed, "ew": js.energy_wh,
                            "sold": plant.sold, "kwh": plant.sold_kwh, "mwh": plant.sold_mwh,
                            "bound": plant.sold_bound_wh, "arrived": i, "queue": len(plant.waiting),
                            "alarms": len(st["alarms"]), "jerr": sup.journal_errors, "free": gc.mem_free(),
                            "jsize": storage.size(LOG_NAME)}}))
"""


def text_wh(t: str) -> int:
    """A decimal kWh text to Wh, rounded half up, in ints (4 decimals read): "53.33" -> 53330."""
    whole, _, frac = t.partition(".")
    n = int(whole) * 10000 + int((frac + "0000")[:4])
    return (n + 5) // 10


class WallLimit(Exception):
    pass


class Tally:
    """What the board reported, line by line, with the wall time of each simulated hour."""

    def __init__(self, days: int, wall_s: float | None = None) -> None:
        self.days = days
        self.t0 = time.monotonic()
        self.wall_s = wall_s
        self.last = self.t0
        self.start_wh: int | None = None
        self.records: list[tuple[int, str, int]] = []  # (n, outcome, Wh)
        self.sales: list[tuple[int, int]] = []  # (mWh, bound Wh)
        self.hours: list[dict] = []
        self.hour_s: list[float] = []
        self.other: list[str] = []

    def line(self, text: str) -> None:
        kind, _, rest = text.partition(" ")
        if kind == "@B":
            self.start_wh = json.loads(rest)["ew"]
            self.last = time.monotonic()
        elif kind == "@S":
            n, o, e = rest.split()
            self.records.append((int(n), o, text_wh(e)))
        elif kind == "@P":
            e, b = rest.split()
            self.sales.append((int(e), int(b)))
        elif kind == "@H":
            h = json.loads(rest)
            now = time.monotonic()
            self.hours.append(h)
            self.hour_s.append(now - self.last)
            self.last = now
            if h["h"] % 6 == 0 or h["h"] == 1:
                print(f"  day {h['h'] / 24:5.2f}: {h['ok']} swaps, {h['arrived']} vehicles, "
                      f"queue {h['queue']}, "
                      f"{(h['ew'] - (self.start_wh or 0)) / 1000:.2f} kWh journalled, heap free "
                      f"{h['free'] // 1024} KiB, journal {h['jsize'] // 1024} KiB; "
                      f"{sum(self.hour_s[-24:]) / len(self.hour_s[-24:]):.1f} s/hour", flush=True)
            if self.wall_s is not None and now - self.t0 > self.wall_s:
                raise WallLimit(f"stopped after {h['h']} simulated hours: --wall-min reached")
        elif text.strip():
            self.other.append(text)

    def report(self) -> bool:
        if not self.hours or self.start_wh is None:
            print("no hour finished; the board said:\n" + "\n".join(self.other[-20:]))
            return False
        h = self.hours[-1]
        rec_wh = sum(w for _, _, w in self.records)
        ok_records = sum(1 for _, o, _ in self.records if o == "ok")
        ns = [n for n, _, _ in self.records]
        journal_wh = h["ew"] - self.start_wh
        plant_mwh = h["kwh"] * 1000000 + h["mwh"]
        diff_mwh = journal_wh * 1000 - plant_mwh
        ok_wh = [w for _, o, w in self.records if o == "ok"]  # a failed swap sells nothing
        worst = max((abs(w * 1000 - e) / (b * 1000), w * 1000 - e, b)
                    for w, (e, b) in zip(ok_wh, self.sales, strict=False)) if self.sales else (0, 0, 0)
        per_hour = sum(self.hour_s) / len(self.hour_s)
        agree = (h["ok"] == h["sold"] == ok_records and journal_wh == rec_wh
                 and abs(diff_mwh) <= h["bound"] * 1000 and ns == list(range(1, len(ns) + 1))
                 and h["jerr"] == 0 and worst[0] <= 1)
        print(f"\n{h['h']} simulated hours ({h['h'] / 24:.2f} days), {h['arrived']} vehicles arrived, "
              f"{h['queue']} still queued, {h['alarms']} alarms raised at the end, "
              f"journal errors {h['jerr']}")
        print(f"  {'':32s} {'journal':>16s} {'plant':>16s}")
        print(f"  {'swaps (ok)':32s} {h['ok']:16d} {h['sold']:16d}   "
              f"(failed {h['nf']}, SW records {len(ns)})")
        print(f"  {'energy sold, kWh':32s} {journal_wh / 1000:16.3f} {plant_mwh / 1e6:16.6f}")
        print(f"  {'difference, Wh':32s} {diff_mwh / 1000:16.3f}   tolerance +-{h['bound']} Wh "
              f"({h['bound'] / max(1, h['sold']):.0f} Wh a swap: 0.1 % of both packs + 5 Wh)")
        print(f"  {'worst swap':32s} {worst[1] / 1000:16.3f} Wh of +-{worst[2]} Wh")
        print(f"  {'ew - sum of SW records, Wh':32s} {journal_wh - rec_wh:16d}   "
              f"(total ew {h['ew']} Wh)")
        print(f"  wall: {sum(self.hour_s):.0f} s for {h['h']} h, {per_hour:.1f} s a simulated hour "
              f"({per_hour * 24 / 60:.1f} min a day, {per_hour * 168 / 3600:.2f} h a week); "
              f"heap free after the last hour {h['free'] // 1024} KiB")
        print("AGREE" if agree else "DISAGREE")
        return agree


def _script(a: argparse.Namespace, tmp: str) -> str:
    return BOARD.format(days=a.days, per_day=a.per_day, profile=PROFILE, old_wh=a.start_mwh * 1000000,
                        dir=tmp, seed=a.seed)


def run_qemu(a: argparse.Namespace, tally: Tally) -> None:
    qemu_build.ensure_packages()
    with tempfile.TemporaryDirectory(prefix="float32-run-") as tmp:
        romfs = qemu_run.build_romfs(qemu_run.qemu_romfs_files(), Path(tmp) / "run.romfs")
        elf = qemu_build.firmware_elf(a.heap * 1024, log=print)
        script = qemu_run.QEMU_BOOT + _script(a, "/tmp/run")
        t0 = time.monotonic()
        try:
            res = qemu_run.run_script(elf, script, romfs=romfs, timeout_s=a.days * 24 * 600 + 600,
                                      on_line=tally.line)
        except qemu_run.QemuTimeout as e:
            print(f"qemu: {e}")
            return
        except WallLimit as e:
            print(e)
            return
        if res.error:
            print(f"the board stopped after {time.monotonic() - t0:.0f} s:\n{res.error.strip()}")


def run_local(a: argparse.Namespace, tally: Tally) -> None:
    """The same script on CPython or the unix port, from the checkout."""
    with tempfile.TemporaryDirectory(prefix="float32-run-") as tmp:
        prelude = f"import sys\nsys.path[:0] = [{str(ROOT / 'tests' / 'firmware')!r}, {str(ROOT)!r}]\n"
        path = Path(tmp) / "run.py"
        path.write_text(prelude + _script(a, tmp + "/j"))
        if a.on == "cpython":
            cmd = [sys.executable, str(path)]
        else:
            exe = Path(sys.executable).parent / "micropython"
            cmd = [str(exe), "-X", "heapsize=512K", str(path)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=str(ROOT), env=dict(os.environ, MICROPYPATH=""))
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                tally.line(line.rstrip("\n"))
        except WallLimit as e:
            print(e)
            proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=7, help="simulated days (default 7)")
    ap.add_argument("--per-day", type=int, default=150, help="vehicles a day on average (default 150)")
    # 256: the test plant's data shares the heap with the firmware's (a board's plant is not
    # on it); in 128 KiB a run fails after ~18 simulated hours (1 KiB for the export's reader).
    ap.add_argument("--heap", type=int, default=256, help="heap of the qemu build, KiB (default 256)")
    ap.add_argument("--start-mwh", type=int, default=900, help="energy the station sold before, MWh")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--wall-min", type=float,
                    help="stop after this many minutes of wall time, at an hour's end")
    ap.add_argument("--on", choices=("qemu", "cpython", "unix"), default="qemu")
    a = ap.parse_args()
    if a.days < 1 or a.per_day < 1 or not 0 <= a.start_mwh <= 1000:
        ap.error("--days and --per-day must be 1 or more, --start-mwh 0..1000 (a small int on the board)")
    print(f"{a.days} simulated days on {a.on}, {a.per_day} vehicles a day, journal from {a.start_mwh} MWh"
          + (f", {a.heap} KiB heap" if a.on == "qemu" else ""), flush=True)
    tally = Tally(a.days, a.wall_min * 60 if a.wall_min else None)
    if a.on == "qemu":
        run_qemu(a, tally)
    else:
        run_local(a, tally)
    sys.exit(0 if tally.report() else 1)


if __name__ == "__main__":
    main()
