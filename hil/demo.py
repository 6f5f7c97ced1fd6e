"""``swapstation demo``: the firmware's Modbus master polling emulated chargers.

The HIL rig's field (the station's plant, its chargers as ``host.devices`` devices
served by pymodbus 3.16, the register map of docs/register-map.md) sits behind a
paced pty line (hil.line.PacedLine, 115200 baud). The firmware's ModbusMaster, on the
POSIX serial driver, polls each charger's status block and writes its control block
(enable, 60 kW), so the packs charge in real time; then it prints what it read and
each unit's bus health. One unit is configured but absent from the line, to show a
timeout and the offline state.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from firmware.proto import regmap as rm

ROOT = Path(__file__).resolve().parent.parent
STATION = ROOT / "firmware" / "station.json"
# Packs at staggered SoC over the pack types, so a table of several shows variety.
_TYPES = ("NIO-75", "NIO-100", "NIO-150", "NIO-100")

EXIT_OK = 0
EXIT_FAILURE = 1


def _fmt_row(unit: int, tx_values: Any, age_ms: int) -> list[str]:
    v = list(tx_values)
    status = v[rm.CHG_IR_STATUS]
    name = rm.CHG_ST_NAMES[status] if status < len(rm.CHG_ST_NAMES) else f"?{status}"
    faults = v[rm.CHG_IR_FAULTS]
    fault_names = [n for i, n in enumerate(rm.CHG_FAULT_NAMES) if faults >> i & 1] or ["-"]
    return [
        str(unit), name, f"{rm.u32(v[rm.CHG_IR_PACK_ID_HI], v[rm.CHG_IR_PACK_ID_LO]):08X}",
        (f"{rm.PACK_PARAMS[v[rm.CHG_IR_PACK_TYPE]][0] / 10:.0f} kWh"
         if v[rm.CHG_IR_PACK_TYPE] < len(rm.PACK_PARAMS) else "?"),
        f"{v[rm.CHG_IR_SOC] / 10:.1f} %", f"{v[rm.CHG_IR_SOH] / 10:.1f} %",
        f"{v[rm.CHG_IR_VOLTAGE] / 10:.1f} V", f"{rm.s16(v[rm.CHG_IR_CURRENT]) / 10:+.1f} A",
        f"{rm.s16(v[rm.CHG_IR_POWER]) / 10:+.1f} kW",
        f"{rm.s16(v[rm.CHG_IR_TEMP_MAX]) / 10:.1f}/{rm.s16(v[rm.CHG_IR_TEMP_MIN]) / 10:.1f} °C",
        f"{rm.u32(v[rm.CHG_IR_ENERGY_HI], v[rm.CHG_IR_ENERGY_LO]) / 1000:.1f} kWh",
        ",".join(fault_names), f"{age_ms} ms",
    ]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def demo_config(units: list[int], baudrate: int) -> dict[str, Any]:
    """The default station with one slot per served unit, its chargers at ``baudrate``."""
    cfg = json.loads(STATION.read_text())
    template = cfg["slots"][0]
    cfg["slots"] = [dict(template, id=f"S{k + 1:02d}", charger_unit=u) for k, u in enumerate(units)]
    cfg["buses"]["chargers"]["baudrate"] = baudrate
    return cfg


def run_demo(units: list[int], absent: list[int], cycles: int, baudrate: int, out=print) -> int:
    from firmware.compat import ticks_diff, ticks_ms
    from firmware.drivers.posix_serial import PosixSerialPort
    from firmware.proto import modbus_rtu as mb
    from hil.emulators.field import Field
    from host.plant.charging import PackRecord

    from .line import PacedLine

    logs: list[str] = []
    packs = {k: PackRecord(0x4E000000 + u * 7919, _TYPES[k % len(_TYPES)], 0.2 + (u * 0.097) % 0.6)
             for k, u in enumerate(units)}
    with PacedLine(baudrate) as line, Field(demo_config(units, baudrate), charger_port=line.slave_path,
                                            packs=packs) as field:
        port = PosixSerialPort(line.master_path, baudrate, parity="N")
        bus = mb.ModbusMaster(port, timeout_ms=50, retries=1, offline_after=2, probe_interval_ms=2000,
                              log=lambda m: logs.append(f"[{ticks_ms() % 100000:>5} ms] {m}"))
        latest: dict[int, tuple[list[int], int]] = {}
        t_start = time.perf_counter()
        beat = 0
        try:
            for _ in range(cycles):
                beat = (beat + 1) & 0xFFFF
                for unit in units + absent:
                    reads = bus.read(unit, mb.FC_READ_INPUT_REGISTERS, rm.CHG_STATUS_BASE,
                                     rm.CHG_STATUS_COUNT)
                    control = [1, 1500, 4200, 600, 900, beat]  # enable, 150 A, 420 V, 60 kW, 90 %, heartbeat
                    writes = bus.write(unit, mb.FC_WRITE_MULTIPLE_REGISTERS, rm.CHG_CONTROL_BASE, control)
                    for tx in (reads, writes):
                        while not tx.done:
                            now = ticks_ms()
                            bus.poll(now)
                            if not tx.done:
                                port.wait_input(min(bus.next_poll_ms(now), 5))
                    if reads.ok:
                        latest[unit] = (list(reads.values), reads.time_ms)
                    reads.release()
                    writes.release()
        finally:
            port.close()
        elapsed = time.perf_counter() - t_start
        now = ticks_ms()
        rows = [_fmt_row(u, vals, ticks_diff(now, t)) for u, (vals, t) in sorted(latest.items())]
        served_writes = sum(1 for r in field.lines["chargers"].log.snapshot()
                            if r.fc == mb.FC_WRITE_MULTIPLE_REGISTERS and not r.error and not r.silent)
    out(f"Firmware Modbus master (CPython) -> paced line {baudrate} baud -> pymodbus chargers {units}"
        + (f", units {absent} polled but absent" if absent else ""))
    out(f"{cycles} poll cycles in {elapsed:.2f} s: status block FC04 x{rm.CHG_STATUS_COUNT} and control "
        f"block FC16 x{rm.CHG_CONTROL_COUNT} per unit; chargers took {served_writes} control writes\n")
    out(_table(["unit", "status", "pack", "type", "SoC", "SoH", "voltage", "current", "power", "Tmax/Tmin",
                "energy", "faults", "age"], rows))
    out("")
    hrows = []
    for u in units + absent:
        h = bus.health(u)
        hrows.append([str(u), "online" if h.online else "OFFLINE", str(h.good), str(h.timeouts),
                      str(h.crc_errors), str(h.frame_errors), str(h.exceptions), str(h.consecutive_failures)])
    out(_table(["unit", "state", "good", "timeouts", "crc", "frame", "exceptions", "failing"], hrows))
    if logs:
        out("\nbus log:")
        for m in logs:
            out("  " + m)
    missing = [u for u in units if u not in latest]
    if missing:
        out(f"\nno data from served units {missing}")
        return EXIT_FAILURE
    return EXIT_OK


def _units(text: str) -> list[int]:
    try:
        units = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"units must be comma-separated integers, not {text!r}") from None
    bad = [u for u in units if not 1 <= u <= 247]
    if bad:
        raise argparse.ArgumentTypeError(f"unit IDs must be 1..247, not {bad}")
    return units


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="poll emulated chargers with the firmware's Modbus master over a paced pty line",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--units", type=_units, default=[1, 2, 3, 4],
                   help="charger unit IDs served (default 1,2,3,4)")
    p.add_argument("--absent", type=_units, default=[5],
                   help="unit IDs polled but not on the line (default 5)")
    p.add_argument("--cycles", type=int, default=5, help="poll cycles (default 5)")
    p.add_argument("--baud", type=int, default=115200, choices=[9600, 19200, 38400, 57600, 115200])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.cycles < 1:
        print("demo: --cycles must be at least 1")
        return 2
    if not args.units:
        print("demo: --units needs at least one unit")
        return 2
    overlap = set(args.units) & set(args.absent)
    if overlap:
        print(f"demo: units {sorted(overlap)} cannot be both served and absent")
        return 2
    return run_demo(args.units, args.absent, args.cycles, args.baud)
