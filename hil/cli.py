"""``swapstation hil``: run a scenario on the HIL rig, show progress, write traces and a summary."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware.core.config import SWAP_STEPS

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
console.log (the target's output). exit codes: 0 the scenario passed, 1 it failed, 2 bad
arguments.
"""


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
    out["swap_records"] = [f for _, f in d.swap_records()]
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


def run(args: argparse.Namespace) -> int:
    from hil.driver import Rig, ScenarioError
    from hil.targets import TargetError

    if args.swaps < 1 or not 0.0 <= args.rate <= 1.0 or args.bay_scale <= 0:
        print("swapstation hil: --swaps >= 1, --rate in 0..1 and --bay-scale > 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        opts = _rig_options(args)
    except ValueError as e:
        print(f"swapstation hil: {e}", file=sys.stderr)
        return EXIT_USAGE
    args.out.mkdir(parents=True, exist_ok=True)
    progress = Progress(args.quiet)
    console = open(args.out / "console.log", "w", buffering=1)  # noqa: SIM115  (closed below)

    def log(line: str) -> None:
        console.write(line + "\n")

    try:
        rig = Rig(opts, log=log)
    except (ValueError, OSError) as e:  # ConfigError is a ValueError
        console.close()
        print(f"swapstation hil: {e}", file=sys.stderr)
        return EXIT_USAGE
    summary: dict[str, Any] = {"scenario": args.scenario, "target": args.target, "args": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"}}
    code = EXIT_FAILURE
    t0 = time.monotonic()
    try:
        progress.say(f"starting the rig ({args.target} target) in {args.out}")
        rig.start(boot=False)
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
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
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
