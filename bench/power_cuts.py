"""Power cuts on the HIL unix target: randomised (or swept) cuts in swap steps. Prints, never asserts.

    .venv/bin/python bench/power_cuts.py [--trials 200] [--seed 1] [--bay-scale 0.02]
    .venv/bin/python bench/power_cuts.py --sweep [--delays 40,400] [--offs 0.2,2.5] [--kinds kill]

Each trial (``hil.power_trials.run_trial``): a vehicle arrives, the controller loses power
``delay_ms`` into a step (SIGKILL) or at that step's journal write (a torn flash write),
stays off for the off-time (a random mix on both sides of the bay module's comm
watchdog, ``comm_wd`` = 1.5 s, and the chargers' 5 s heartbeat watchdog), is powered on,
the operator confirms, and the resumed swap is followed to its end (confirming again after
a hold on a silent bay module, once it answers: counted as a comms hold).

Counted per trial:
- broken invariants: ``check_recovery`` (holds for confirmation, no motion before it,
  rack = chargers or alarmed, swap records 1..n none lost or twice), after the swap the
  same records and rack checks, every pack in exactly one place in the field (rack
  slots, vehicle, carrier, isolation bay, departed vehicles) and no field refusals;
- timeouts: a step that ran more than ``--stall-s`` is read against the field; it is
  *unexplained* when the field shows the step's done condition while the firmware still
  waits (the controller does not see what the field shows), *explained* when it does not
  (the mechanics did not get there, e.g. a precondition a resumed step did not restore).
After a trial that leaves the bay held for an operator, or never ends, the rig restarts
with a blank flash.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firmware.core.config import SWAP_STEPS  # noqa: E402
from hil.power_trials import TrialResult, pack_places, run_trial  # noqa: E402
from hil.rig import Rig, RigOptions, ScenarioDriver  # noqa: E402

COMM_WD_S = 1.5  # the bay module's comm watchdog as the controller sets it (max(1000, 3 * idle_ms))


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def plan(args: argparse.Namespace) -> list[tuple[str, int, float, str]]:
    steps = args.steps.split(",") if args.steps else list(SWAP_STEPS)
    if args.sweep:
        out = []
        for kind in args.kinds.split(","):
            for step in steps:
                if kind == "torn_write" and step == "identify":
                    continue  # identification writes nothing to flash
                for delay in [int(x) for x in _floats(args.delays)]:
                    for off in _floats(args.offs):
                        out.append((step, delay if kind == "kill" else 0, off, kind))
        return out
    rnd = random.Random(args.seed)
    out = []
    for _ in range(args.trials):
        kind = "torn_write" if rnd.random() < 0.25 else "kill"
        step = rnd.choice(steps[1:] if kind == "torn_write" and steps[0] == "identify" else steps)
        delay = rnd.choice((0, 20, 40, 100, 200, 400, 700)) if kind == "kill" else 0
        # half the off-times beyond the bay module's watchdog, some beyond the chargers' too
        off = rnd.choice((0.2, 0.5, 1.0, 2.0, 3.0, 6.0))
        out.append((step, delay, off, kind))
    return out


def _rig(workdir: Path, scale: float, seed: int, trace: bool = False) -> tuple[Rig, ScenarioDriver]:
    rig = Rig(RigOptions(workdir=workdir, bay_scale=scale, seed=seed, trace=trace))
    rig.start()
    d = rig.driver()
    d.boot()
    return rig, d


def _clean(r: TrialResult) -> bool:
    return not r.problems and r.outcome not in (None, "open", "held")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sweep", action="store_true", help="every step x delay x off-time x kind, in order")
    ap.add_argument("--steps", default="", help="comma-separated steps (default: all)")
    ap.add_argument("--delays", default="40,400", help="sweep: ms into the step (kill)")
    ap.add_argument("--offs", default="0.2,2.5", help="sweep: off-times in s")
    ap.add_argument("--kinds", default="kill", help="sweep: kill,torn_write")
    ap.add_argument("--bay-scale", type=float, default=0.02)
    ap.add_argument("--stall-s", type=float, default=4.0,
                    help="a step running longer is read against the field")
    ap.add_argument("--json", type=Path, help="write every trial's result here")
    ap.add_argument("--workdir", type=Path,
                    help="keep flash images, consoles and (with --trace) line traces here")
    ap.add_argument("--trace", action="store_true", help="CSV frame traces of both lines")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    trials = plan(args)
    tmp = args.workdir or Path(tempfile.mkdtemp(prefix="power_cuts-"))
    t0 = time.monotonic()
    results: list[TrialResult] = []
    broken: list[tuple[int, str]] = []
    rigs = 0
    rig, d = _rig(tmp / f"rig{rigs}", args.bay_scale, args.seed, args.trace)
    try:
        for k, (step, delay, off, kind) in enumerate(trials):
            try:
                r = run_trial(d, step, delay, off, kind, stall_s=args.stall_s)
                r.problems += pack_places(d)
            except Exception as e:  # a trial the rig could not finish: counted, the rig restarts
                r = TrialResult(step, delay, off, kind)
                r.problems.append(f"{type(e).__name__}: {e}"[:300] + d.target.console_tail(4)[-300:])
            results.append(r)
            broken += [(k, p) for p in r.recovery + [p for p in r.problems if not p.startswith("no cut")]]
            if not args.quiet:
                st = ", ".join(f"{s.step}{'' if s.resumed else '(before cut)'} {s.ended}"
                               f"{' UNEXPLAINED' if s.unexplained else ''}" for s in r.stalls)
                print(f"{k + 1:4d} {kind:10s} {step:9s} +{delay:3d} ms off {off:4.1f} s: cut in {r.cut_in}, "
                      f"{r.outcome}, {r.seconds:5.1f} s{'; stalls: ' + st if st else ''}"
                      f"{'; comms holds confirmed: ' + ', '.join(r.comms_holds) if r.comms_holds else ''}"
                      f"{'; ' + '; '.join(r.recovery + r.problems) if r.recovery or r.problems else ''}",
                      flush=True)
            if not _clean(r):
                rig.stop()
                rigs += 1
                rig, d = _rig(tmp / f"rig{rigs}", args.bay_scale, args.seed + rigs, args.trace)
    finally:
        rig.stop()
    secs = time.monotonic() - t0
    stalls = [(k, s) for k, r in enumerate(results) for s in r.stalls]
    timeouts = [(k, s) for k, s in stalls if s.ended in ("timeout", "open")]
    unexplained = [(k, s) for k, s in timeouts if s.unexplained]
    other = [(k, s) for k, s in timeouts if s.field_done is None]  # identify, authorise: no mechanics
    print()
    print(f"trials {len(results)} ({'sweep' if args.sweep else f'random, seed {args.seed}'}), "
          f"bay scale {args.bay_scale}, {secs:.0f} s ({secs / max(1, len(results)):.1f} s a trial), "
          f"rig restarts {rigs}")
    print(f"cuts by kind: {dict(Counter(r.kind for r in results))}; "
          f"off-times beyond the bay watchdog ({COMM_WD_S} s): {sum(r.off_s > COMM_WD_S for r in results)}")
    print(f"outcomes of the resumed swaps: {dict(Counter(r.outcome for r in results))}")
    holds = [(k, h) for k, r in enumerate(results) for h in r.comms_holds]
    print(f"comms holds (bay module silent mid-swap; confirmed once it answered): {len(holds)}")
    for k, h in holds[:10]:
        print(f"  trial {k + 1}: {h}")
    print(f"broken invariants: {len(broken)}")
    for k, p in broken[:20]:
        print(f"  trial {k + 1}: {p}")
    print(f"stalls (a step over {args.stall_s} s): {len(stalls)}; ended in a timeout: {len(timeouts)}: "
          f"unexplained (the field showed the step done): {len(unexplained)}, "
          f"explained by the mechanics (the field did not): {len(timeouts) - len(unexplained) - len(other)}, "
          f"in steps without mechanics (identify, authorise: reader, rack): {len(other)}")
    for k, s in timeouts[:30]:
        r = results[k]
        print(f"  trial {k + 1} ({r.kind} {r.step} +{r.delay_ms} ms off {r.off_s} s): {s.plan}/{s.step} "
              f"{'resumed' if s.resumed else 'before the cut'}, {s.ended}, field done {s.field_done}, "
              f"inputs {','.join(s.inputs)}")
    if args.json:
        args.json.write_text(json.dumps([_asdict(r) for r in results], indent=1))


def _asdict(r: TrialResult) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(r)


if __name__ == "__main__":
    main()
