"""The controller's figures of issue #13 from the real RPI_PICO image under rp2040py (the
rig's ``pico`` target): heap, tick times, Modbus transaction times, the share of the CPU
charger polling takes, e-stop to drives-off latency. All in emulated time, which is a real
Pico's time at 125 MHz (the CPU runs ~40x slower than that in wall time). Measures and
prints; asserts nothing.

    .venv/bin/python bench/pico_figures.py                      # ~10-20 min wall on a loaded machine
    .venv/bin/python bench/pico_figures.py --skip-heap-search   # without the smallest-heap boots
    .venv/bin/python bench/pico_figures.py --only-heap-search   # only those

Where each figure comes from (the probe ``ticks`` of hil/unix_target_main.py, the target's
main loop on the Pico):

- heap: ``probe mem`` (``gc.mem_free()`` after a collection) after boot and after the first
  swap; the lowest ``gc.mem_free()`` seen after every 8th tick (uncollected garbage counts as
  used, so it is a floor: ``collect_every`` collects after each 16 KB allocated);
- smallest heap: boots with a ``boot.py`` holding ballast (``PicoTarget.ballast``) and one
  swap each, at most 3 sizes, bisected;
- tick time: ``ticks_us`` around ``Supervisor.tick`` (+ telemetry), into fixed-bucket
  histograms split by whether the bay is in a swap step;
- Modbus transaction: the master's own view, from the request's last byte leaving
  (``_sent_us``) to the reply handled (``_finish`` with no error): reply wire time, the
  device's turnaround and the wait for the master's next poll in the loop;
- charger polling: ``ticks_us`` inside the charger master's ``poll`` and the link's
  ``service``, per second of emulated time, with the station idle and every charger online;
- e-stop: the bay's e-stop input opens while the lift runs (pressed from the console callback,
  between two ticks); the first coil write after it, on the bay line, in emulated time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hil.rig import Rig, RigOptions, ScenarioDriver  # noqa: E402

BAY_SCALE = 0.005  # the 144 s swap's motions in 0.7 s: a swap's cost is the controller's pace
HEAP_GOAL, HEAP_AIM = 128 * 1024, 64 * 1024
SWAP_TICK_GOAL_US = 20_000
POLL_SHARE_GOAL = 0.25
FINE, N = 100, 191  # the histogram layout of unix_target_main.Hist


def bucket_hi(b: int, unit: int) -> int:
    """Upper edge (us) of bucket ``b``; the overflow bucket has none (-1)."""
    if b < FINE:
        return (b + 1) * unit
    if b < N - 1:
        return (FINE + (b - FINE + 1) * 10) * unit
    return -1


def hist_diff(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    """What ``b`` gathered since ``a`` (max_us is ``b``'s, since boot)."""
    if a is None:
        return b
    counts = {k: v - a["counts"].get(k, 0) for k, v in b["counts"].items()}
    return {"unit_us": b["unit_us"], "n": b["n"] - a["n"], "sum_us": b["sum_us"] - a["sum_us"],
            "max_us": b["max_us"], "counts": {k: v for k, v in counts.items() if v}}


def hist_stats(h: dict[str, Any]) -> tuple[int, float, float]:
    """(count, mean us, p99 us: the upper edge of the bucket holding the 99th percentile)."""
    n = h["n"]
    if n == 0:
        return 0, float("nan"), float("nan")
    need, seen = 0.99 * n, 0
    p99 = float(h["max_us"])
    for b in sorted(int(k) for k in h["counts"]):
        seen += h["counts"][str(b)]
        if seen >= need:
            hi = bucket_hi(b, h["unit_us"])
            p99 = float(min(hi, h["max_us"]) if hi > 0 else h["max_us"])
            break
    return n, h["sum_us"] / n, p99


def fmt_hist(name: str, h: dict[str, Any]) -> str:
    n, mean, p99 = hist_stats(h)
    return (f"{name}: n={n} mean {mean / 1000:.2f} ms, p99 {p99 / 1000:.1f} ms "
            f"(max since boot {h['max_us'] / 1000:.1f} ms)")


def kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


def start(workdir: Path, ballast: int, log_path: Path) -> tuple[Rig, ScenarioDriver, Any]:
    log = open(log_path, "a", buffering=1)  # noqa: SIM115  (closed by the caller)
    def write(line: str) -> None:
        log.write(line + "\n")

    rig = Rig(RigOptions(target="pico", workdir=workdir, bay_scale=BAY_SCALE), log=write)
    rig.start(boot=False)
    rig.target.ballast = ballast  # type: ignore[union-attr]
    assert rig.target is not None
    rig.target.start()
    return rig, rig.driver(), log


def module_bytes(rig: Rig, d: ScenarioDriver) -> list[tuple[int, str]]:
    """(.mpy size, module) of every module loaded on the Pico, largest first: importing a .mpy
    from LittleFS puts its bytecode, constants and names on the heap, about its file's size."""
    from hil.targets.pico import read_flash

    flash = getattr(rig.target, "flash", None)
    if flash is None:
        return []
    files = read_flash(flash)
    out = []
    for name in d.target.request("probe", what="modules"):
        base = "/" + name.replace(".", "/")
        for path in (base + ".mpy", base + "/__init__.mpy", base + ".py"):
            if path in files:
                out.append((len(files[path]), name))
                break
    return sorted(out, reverse=True)


def ticks(d: ScenarioDriver) -> dict[str, Any]:
    return dict(d.target.request("probe", what="ticks"))


def estop_latency(d: ScenarioDriver) -> dict[str, Any]:
    """A swap whose lift the e-stop stops (as tests/hil/test_pico_swaps.py does): ms from the
    press to the first coil write after it (the stop image), in emulated time."""
    from host.devices.bay import MOTION_COILS

    bay: Any = d.field.bay  # type: ignore[attr-defined]
    press: dict[str, Any] = {}

    def on_status(msg: dict[str, Any]) -> None:  # on the emulator's thread, between two ticks
        s = msg.get("s") or {}
        if msg.get("k") == "status" and not press and s.get("step") == "lift" and bay.motion_coils_on():
            bay.set_input("estop_ok", False)
            press.update(t=d.field.clock(), coils=bay.motion_coils_on())

    d.target.listeners.append(on_status)
    try:
        d.arrive(soc=0.3)
        d.wait(lambda s: "estop" in s["hold"], 600, "the e-stop latched")
        d.wait_field(lambda: d.motion_coils() == [], 120, "every drive off")
    finally:
        d.target.listeners.remove(on_status)
    writes = d.field.call(lambda: list(bay.coil_writes))
    stop = [(t, img) for t, img in writes if t >= press["t"]]
    t_off, img = stop[0]
    return {"ms": (t_off - press["t"]) * 1000, "coils_before": press["coils"],
            "stop_image_clean": not [c for c in MOTION_COILS if img[c]]}


def figures(workdir: Path, idle_s: float, estop: bool) -> dict[str, Any]:
    """Boot, idle window, one swap, optionally the e-stop swap; prints as it goes."""
    t_wall = time.monotonic()
    rig, d, log = start(workdir / "main", 0, workdir / "main-console.log")
    out: dict[str, Any] = {}
    try:
        d.wait(lambda s: s["rack"]["ready"] >= 15, 600, "the chargers answering")
        mem_boot = d.target.request("probe", what="mem")
        out["mem_boot"] = mem_boot
        try:
            out["modules"] = module_bytes(rig, d)
        except Exception as e:  # an image from before the probe: no attribution, the rest stands
            print(f"no module attribution: {e}")
        print(f"[{time.monotonic() - t_wall:.0f} s] booted: heap free {mem_boot['free']} B, "
              f"alloc {mem_boot['alloc']} B", flush=True)
        d.boot(timeout=300)
        d.wait(lambda s: s["rack"]["offline"] == 0, 600, "every charger online")
        a = ticks(d)
        d.sleep_field(idle_s, timeout=1800)
        b = ticks(d)
        out["idle"] = (a, b)
        print(f"[{time.monotonic() - t_wall:.0f} s] idle window {(b['t'] - a['t']) / 1000:.1f} s emulated",
              flush=True)
        d.arrive(model="NIO-ES6", pack_type="NIO-75", soc=0.18)
        st = d.wait_swaps(1, timeout=1800)
        c = ticks(d)
        out["swap"] = (b, c, st)
        out["mem_swap"] = d.target.request("probe", what="mem")
        print(f"[{time.monotonic() - t_wall:.0f} s] swap done in {st.get('last_swap_ms')} ms emulated",
              flush=True)
        if estop:
            out["estop"] = estop_latency(d)
        out["final"] = ticks(d)
    finally:
        rig.stop()
        log.close()
    out["wall_s"] = time.monotonic() - t_wall
    return out


def one_swap_in(workdir: Path, ballast: int) -> tuple[bool, str, int]:
    """Boot with ``ballast`` bytes held and run one swap: (it ran, why not / heap figures,
    the whole heap: free + alloc after boot, 0 when unknown)."""
    tag = f"ballast-{ballast}"
    try:
        rig, d, log = start(workdir / tag, ballast, workdir / f"{tag}-console.log")
    except Exception as e:
        return False, f"no boot: {e}".splitlines()[0][:200], 0
    total = 0
    try:
        try:
            st = d.wait(lambda s: s["rack"]["ready"] >= 15 or s.get("state") == "config_error", 600,
                        "the chargers answering")
            if st.get("state") == "config_error" or st.get("error"):
                return False, f"station error: {st.get('error')}", 0
            mem = d.target.request("probe", what="mem")
            total = mem["free"] + mem["alloc"]
            print(f"  ballast {kib(ballast)}: booted, heap free {mem['free']} B", flush=True)
            d.boot(timeout=300)
            d.arrive(model="NIO-ES6", pack_type="NIO-75", soc=0.18)
            st = d.wait_swaps(1, timeout=1800)
            ok = st.get("swaps_ok") == 1 and not st.get("error")
            try:  # the probe's reply is the rig's, not the station's: near the edge it may not fit
                low = ticks(d)["mem_low"]
            except Exception as e:
                low = f"not read ({e})".splitlines()[0][:120]
            why = f"free after boot {mem['free']} B, lowest seen {low} B, swaps_ok {st.get('swaps_ok')}"
            return ok, why, total
        except Exception as e:
            return False, f"{type(e).__name__}: {e}".splitlines()[0][:200], total
    finally:
        rig.stop()
        log.close()


def heap_search(workdir: Path, total: int, sizes: list[int], boots: int) -> None:
    """Bisect the ballast over at most ``boots`` boots: first sizes[0], then up by sizes[1]
    while it runs, halving the interval once one failed."""
    lo_ok, hi_bad = 0, None  # largest ballast that ran, smallest that did not
    cand = sizes[0]
    for _ in range(boots):
        t0 = time.monotonic()
        ok, why, whole = one_swap_in(workdir, cand)
        total = total or whole
        print(f"  ballast {kib(cand)} (heap {kib(total - cand)}): {'runs' if ok else 'FAILS'}; {why} "
              f"[{time.monotonic() - t0:.0f} s wall]", flush=True)
        if ok:
            lo_ok = max(lo_ok, cand)
        else:
            hi_bad = cand if hi_bad is None else min(hi_bad, cand)
        if hi_bad is None:
            cand = cand + sizes[1]
        else:
            cand = (lo_ok + hi_bad) // 2 // 1024 * 1024
        if hi_bad is not None and hi_bad - lo_ok <= 2048:
            break
    if hi_bad is None:
        print(f"smallest heap running boot + one swap: <= {kib(total - lo_ok)} (every size tried ran)")
    else:
        print(f"smallest heap running boot + one swap: between {kib(total - hi_bad)} (fails) and "
              f"{kib(total - lo_ok)} (runs)" + ("" if lo_ok else "; no ballast tried ran"))
    print(f"  goal {kib(HEAP_GOAL)} (aim {kib(HEAP_AIM)}); the unix port / qemu (.mpy on LittleFS, as here): "
          f"~180 KiB (docs/architecture.md, bench/qemu_heap.py --smallest)")


def report(f: dict[str, Any]) -> int:
    """Prints the figures; the heap's total size (free + alloc after boot)."""
    mb, ms = f["mem_boot"], f["mem_swap"]
    total = mb["free"] + mb["alloc"]
    low = f["final"]["mem_low"]
    print(f"\n== heap (of {kib(total)}: gc.mem_free + gc.mem_alloc) ==")
    print(f"free after boot {mb['free']} B ({kib(mb['free'])}), after the first swap {ms['free']} B "
          f"({kib(ms['free'])}), lowest seen {low} B ({kib(low)}; every 8th tick, garbage included)")
    print(f"station in use after boot {kib(mb['alloc'])} (code, config, journal, buffers: .mpy loaded from "
          f"LittleFS puts its bytecode on the heap); goal: fits in {kib(HEAP_GOAL)} (aim {kib(HEAP_AIM)}) -> "
          f"{'met' if mb['alloc'] <= HEAP_GOAL else 'missed'}")
    mods = f.get("modules")
    if mods:
        print(f"bytecode of the {len(mods)} loaded modules (.mpy sizes): {kib(sum(n for n, _ in mods))}; "
              "largest: " + ", ".join(f"{m} {kib(n)}" for n, m in mods[:8]))
    a, b = f["idle"]
    b2, c, st = f["swap"]
    idle = hist_diff(a["idle"], b["idle"])
    swap = hist_diff(b2["swap"], c["swap"])
    print("\n== main-loop tick (ticks_us around Supervisor.tick, emulated time) ==")
    print(fmt_hist("idle, every charger online", idle))
    print(fmt_hist(f"in a swap ({st.get('last_swap_ms')} ms swap)", swap))
    _, mean, p99 = hist_stats(swap)
    verdict = ["met" if x < SWAP_TICK_GOAL_US else "missed" for x in (p99, mean)]
    print(f"goal: a swap tick under {SWAP_TICK_GOAL_US / 1000:.0f} ms -> p99 {verdict[0]}, mean {verdict[1]}")
    cpu_b, cpu_c = b2["cpu"], c["cpu"]
    if cpu_b and cpu_c and swap["n"]:
        per = {k: (cpu_c[k] - cpu_b[k]) / swap["n"]
               for k in ("chargers_master", "chargers_link", "bay_master")}
        print("  per swap tick: " + ", ".join(f"{k} {v / 1000:.2f} ms" for k, v in per.items())
              + f", the rest (bay steps, safety, journal, status) {(mean - sum(per.values())) / 1000:.2f} ms")
    print("\n== Modbus transaction (master: request's last byte sent to reply handled, emulated) ==")
    cpu_a, cpu_bb = a["cpu"], b["cpu"]
    if cpu_bb:
        for name in ("chargers", "bay_io"):
            h = f["final"]["cpu"]["tx"].get(name)
            if h:
                print(fmt_hist(f"{name} (since boot)", h))
    print("\n== charger polling (23 chargers, 1 s heartbeat), idle station ==")
    window_us = (b["t"] - a["t"]) * 1000
    if cpu_a and cpu_bb and window_us > 0:
        m = cpu_bb["chargers_master"] - cpu_a["chargers_master"]
        ln = cpu_bb["chargers_link"] - cpu_a["chargers_link"]
        share = (m + ln) / window_us
        print(f"{share * 100:.1f}% of the CPU over {window_us / 1e6:.1f} s emulated: "
              f"master poll {m / window_us * 100:.1f}%, link service {ln / window_us * 100:.1f}%; "
              f"goal under {POLL_SHARE_GOAL * 100:.0f}% -> "
              f"{'met' if share < POLL_SHARE_GOAL else 'missed'}")
        ticks_share = idle["sum_us"] / window_us
        print(f"  the whole loop's ticks took {ticks_share * 100:.1f}% of the window "
              f"(bay master {(cpu_bb['bay_master'] - cpu_a['bay_master']) / window_us * 100:.1f}%)")
    es = f.get("estop")
    if es:
        print("\n== e-stop (input opens in lift) to drives off (first coil write after it, emulated) ==")
        print(f"{es['ms']:.1f} ms; coils on before {es['coils_before']}, "
              f"stop image clean {es['stop_image_clean']}")
    print(f"\n(main run {f['wall_s']:.0f} s wall)")
    return int(total)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-heap-search", action="store_true", help="no smallest-heap boots (3 boots, slow)")
    ap.add_argument("--only-heap-search", action="store_true", help="only the smallest-heap boots")
    ap.add_argument("--idle-s", type=float, default=5.0, help="emulated seconds of the idle window")
    ap.add_argument("--no-estop", action="store_true", help="skip the e-stop swap")
    ap.add_argument("--ballast", type=int, nargs=2, default=[32 * 1024, 4 * 1024], metavar=("FIRST", "STEP"),
                    help="first ballast tried and the step up while sizes run (bytes)")
    ap.add_argument("--boots", type=int, default=3, help="boots of the smallest-heap search")
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="pico-figures-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"console logs in {workdir}", flush=True)
    total = 0
    if not a.only_heap_search:
        total = report(figures(workdir, a.idle_s, not a.no_estop))
    if not a.skip_heap_search:
        print("\n== smallest heap: boot + one swap with ballast held from boot.py ==", flush=True)
        heap_search(workdir, total, a.ballast, a.boots)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
