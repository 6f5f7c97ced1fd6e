"""HIL latency: the firmware on the unix target, 20 chargers on the paced line. Prints, never asserts.

    .venv/bin/python bench/hil_latency.py [--seconds 10] [--estops 20] [--baud 115200]

1. Charger poll cycle: the time between two status reads (FC04, 16 registers) of the
   same charger, from the charger line's frame trace, against the wire-time lower bound
   of one round of reads, sum over chargers of (13 + 2N) * 11 / baud + 2 * t3.5 (N = 16),
   and of a round of reads plus control writes (FC16, 6 registers). Measured twice: with
   the station's ``limits.heartbeat_ms`` (the cycle it is asked for) and with the
   smallest allowed, 100 ms, where the line is the limit.
2. E-stop latency: the bay's e-stop chain opens (the bay I/O module's input changes)
   while a drive runs (manual mode, lift jogged up); the time until the write that turns
   every drive coil off reaches the module. Also from the controller's own e-stop input
   (the request on the operator channel) to that write.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firmware.core import config  # noqa: E402
from firmware.proto import regmap as rm  # noqa: E402
from hil.rig import Rig, RigOptions, ScenarioDriver  # noqa: E402
from host.devices.bay import MOTION_COILS  # noqa: E402

N_CHARGERS = 20


def station_json(tmp: Path, heartbeat_ms: int | None, baud: int) -> Path:
    raw = json.loads(Path(config.default_path()).read_text())
    raw["slots"] = raw["slots"][:N_CHARGERS]
    for bus in ("chargers", "bay_io"):
        raw["buses"][bus]["baudrate"] = baud
    if heartbeat_ms is not None:
        raw["limits"]["heartbeat_ms"] = heartbeat_ms
    p = tmp / f"station-{heartbeat_ms}.json"
    p.write_text(json.dumps(raw))
    return p


def t35_s(baud: int) -> float:
    return 3.5 * 11 / baud if baud <= 19200 else 0.00175


def wire_bounds(baud: int, n: int) -> tuple[float, float]:
    """(reads only, reads + control writes) of one round over n chargers, in seconds."""
    tc = 11 / baud
    read = (13 + 2 * rm.CHG_STATUS_COUNT) * tc + 2 * t35_s(baud)
    # FC16 of 6 registers: request 9 + 12 bytes, reply 8 bytes.
    write = (9 + 2 * rm.CHG_CONTROL_COUNT + 8) * tc + 2 * t35_s(baud)
    return n * read, n * (read + write)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def poll_cycle(baud: int, heartbeat_ms: int | None, seconds: float, tmp: Path) -> dict[str, float]:
    cfg = station_json(tmp, heartbeat_ms, baud)
    work = tmp / f"poll-{heartbeat_ms}"
    rig = Rig(RigOptions(config=cfg, workdir=work, trace=False))
    rig.start()
    try:
        d = rig.driver()
        d.boot()
        line = rig.lines["chargers"]
        time.sleep(1.0)  # past the first rounds after boot
        start = len(line.frames)
        time.sleep(seconds)
        frames = list(line.frames)[start:]
    finally:
        rig.stop()
    last: dict[int, float] = {}
    gaps: list[float] = []
    for f in frames:
        if f.direction == "request" and f.fc == 4 and f.sent[2:6] == bytes([0, 0, 0, rm.CHG_STATUS_COUNT]):
            if f.unit in last:
                gaps.append(f.t - last[f.unit])
            last[f.unit] = f.t
    return {"cycles": len(gaps), "mean": statistics.fmean(gaps), "p50": pct(gaps, 0.5),
            "p95": pct(gaps, 0.95), "max": max(gaps), "frames_per_s": len(frames) / seconds}


def estop_latency(baud: int, samples: int, tmp: Path) -> dict[str, list[float]]:
    cfg = station_json(tmp, None, baud)
    rig = Rig(RigOptions(config=cfg, workdir=tmp / "estop", trace=False))
    rig.start()
    out: dict[str, list[float]] = {"bay_chain": [], "controller_pin": []}
    try:
        d = rig.driver()
        d.boot()
        bay = d.field.bay
        assert bay is not None
        d.manual(True)
        d.target.call("jog", rm.BAY_CO_LIFT_UP, True)
        for k in range(2 * samples):
            d.wait_field(lambda: bool(d.motion_coils()), 10, "the lift jogged up")
            time.sleep(0.05 + 0.013 * (k % 8))  # spread the change over the module's poll phase
            n_writes = len(bay.coil_writes)
            if k % 2 == 0:
                t0 = d.estop(True)
            else:
                t0 = time.monotonic()
                d.controller_estop(True)
            d.wait_field(lambda: not d.motion_coils(), 5, "every drive off")
            t_off = next(t for t, img in bay.coil_writes[n_writes:] if not any(img[c] for c in MOTION_COILS))
            out["bay_chain" if k % 2 == 0 else "controller_pin"].append(t_off - t0)
            if k % 2 == 0:
                d.estop(False)
            else:
                d.controller_estop(False)
            d.ack_when_clear()
            _reassert_jog(d)
    finally:
        rig.stop()
    return out


def _reassert_jog(d: ScenarioDriver) -> None:
    """After the ack, the held manual image runs again; jog the lift if it does not."""
    end = time.monotonic() + 2
    while time.monotonic() < end and not d.motion_coils():
        time.sleep(0.05)
    if not d.motion_coils():
        d.target.call("jog", rm.BAY_CO_LIFT_UP, True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="measuring time per poll-cycle run")
    ap.add_argument("--estops", type=int, default=20, help="e-stop samples per input")
    ap.add_argument("--baud", type=int, default=115200)
    a = ap.parse_args()
    base_hb = config.load()["limits"]["heartbeat_ms"]
    reads, both = wire_bounds(a.baud, N_CHARGERS)
    print(f"HIL latency: firmware on the MicroPython unix port, {N_CHARGERS} chargers, "
          f"paced line at {a.baud} baud")
    print(f"wire-time lower bound of one round: reads {reads * 1000:.1f} ms "
          f"(per read {(reads / N_CHARGERS) * 1000:.2f} ms), reads + control writes {both * 1000:.1f} ms")
    with tempfile.TemporaryDirectory(prefix="hil-bench-") as tmpname:
        tmp = Path(tmpname)
        for hb in (base_hb, 100):
            r = poll_cycle(a.baud, hb, a.seconds, tmp)
            print(f"poll cycle with heartbeat_ms={hb}: mean {r['mean'] * 1000:.1f} ms, "
                  f"p50 {r['p50'] * 1000:.1f}, p95 {r['p95'] * 1000:.1f}, max {r['max'] * 1000:.1f} ms "
                  f"over {r['cycles']} cycles; "
                  f"{r['mean'] / reads:.2f}x the reads bound, {r['mean'] / both:.2f}x reads + writes; "
                  f"{r['frames_per_s']:.0f} frames/s on the line")
        lat = estop_latency(a.baud, a.estops, tmp)
        for name, xs in lat.items():
            ms = [x * 1000 for x in xs]
            print(f"e-stop ({name}) -> drive coils off: n={len(ms)} min {min(ms):.1f} ms, mean "
                  f"{statistics.fmean(ms):.1f}, p95 {pct(ms, 0.95):.1f}, max {max(ms):.1f} ms")


if __name__ == "__main__":
    main()
