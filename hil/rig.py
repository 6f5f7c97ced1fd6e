"""The HIL rig and its scenario driver.

:class:`Rig` wires one station: the field (emulated chargers and bay I/O, ``hil.emulators``)
on one side, the firmware on a target (``hil.targets``) on the other, and between them
the paced line emulator of ``hil.line`` (unix and qemu targets) or real RS-485 wiring (board).

:class:`ScenarioDriver` is what a scenario test talks to: vehicles arrive at the bay,
the operator acknowledges, confirms and switches manual mode, e-stop and the other
safety inputs change, power is cut; the station's state comes back as the firmware's
status and probes, and the field's state as the emulators see it. ``check_recovery``
judges a restart after a power cut against the recovery invariants.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.core import config as config_mod
from hil.emulators.field import Field
from hil.line import PacedLine
from hil.targets import BoardTarget, Target, TargetError, UnixTarget
from host.devices.bay import MOTION_COILS
from host.plant.charging import PackRecord
from host.sim.scenario import random_streams

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "firmware" / "station.json"
BUS_NAMES = ("chargers", "bay_io")


class ScenarioError(AssertionError):
    """The station did not do what the scenario expected (with the evidence)."""


@dataclass
class BoardOptions:
    """A bench: the controller's USB serial and the USB-RS485 adapters wired to its lines."""

    port: str
    chargers_adapter: str
    bay_adapter: str
    board: str = "pico"
    reset: str = "dtr"
    deploy: bool = True
    parity: str = "E"


@dataclass
class Vehicle:
    vehicle_id: int
    model: str
    pack_id: int
    pack_type: str
    soc: float
    arrived_at: float


@dataclass
class RigOptions:
    config: Path = DEFAULT_CONFIG  # what the field is built from (the physical station)
    target_config: Path | None = None  # what the firmware is given (default: ``config``)
    workdir: Path = ROOT / "out" / "hil"
    target: str = "unix"
    board: BoardOptions | None = None
    bay_scale: float = 0.02  # 144 s swap -> about 2.9 s of mechanics
    seed: int = 0
    packs: Mapping[int, PackRecord] | None = None
    status_ms: int = 100
    grid_kw: float | None = None  # the grid connection's physical limit (default: the config's)
    ambient_c: float | None = None  # the rack's ambient temperature (default: the plant's 25 degC)
    trace: bool = True  # CSV frame traces of the lines (unix target)
    fresh_flash: bool = True  # start from a blank flash image (the field starts fresh too)


class Rig:
    """One station on the rig: field, line(s) and target. Use as a context manager."""

    def __init__(self, options: RigOptions | None = None, *,
                 log: Callable[[str], None] | None = None) -> None:
        self.opt = o = options or RigOptions()
        self.cfg = config_mod.load(str(o.config))
        self.workdir = Path(o.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.image = self.workdir / "flash.img"
        self.log = log
        self.lines: dict[str, PacedLine] = {}
        self.field: Field | None = None
        self.target: Target | None = None
        self.started = False

    # ---- life cycle ---------------------------------------------------------------------
    def start(self, boot: bool = True) -> None:
        o = self.opt
        target_cfg = o.target_config or o.config
        streams = random_streams(o.seed)  # the bay's jitter and the lines' fault picks draw apart
        bay_seed, line_seed = streams["bay"], int(streams["line"].generate_state(1)[0])
        if o.fresh_flash and self.image.exists():
            self.image.unlink()
        if o.target in ("unix", "qemu"):
            for k, name in enumerate(BUS_NAMES):
                baud = int(self.cfg["buses"][name]["baudrate"])
                trace = self.workdir / f"{name}.csv" if o.trace else None
                self.lines[name] = PacedLine(baud, trace_path=trace, seed=line_seed + k).start()
            self.field = Field(self.cfg, charger_port=self.lines["chargers"].slave_path,
                               bay_port=self.lines["bay_io"].slave_path, packs=o.packs,
                               bay_scale=o.bay_scale, seed=bay_seed, grid_limit_kw=o.grid_kw,
                               ambient_c=o.ambient_c)
            masters = {n: self.lines[n].master_path for n in BUS_NAMES}
            if o.target == "unix":
                self.target = UnixTarget(target_cfg, self.image, masters, status_ms=o.status_ms, log=self.log)
            else:
                from hil.targets.qemu import QemuTarget

                self.target = QemuTarget(o.target_config, self.image, masters, log=self.log)
        elif o.target == "board":
            b = o.board
            if b is None:
                raise ValueError("the board target needs BoardOptions (--hil-port and the adapters)")
            self.field = Field(self.cfg, charger_port=b.chargers_adapter, bay_port=b.bay_adapter,
                               packs=o.packs, bay_scale=o.bay_scale, seed=bay_seed, parity=b.parity,
                               grid_limit_kw=o.grid_kw, ambient_c=o.ambient_c)
            self.target = BoardTarget(b.port, board=b.board, config=target_cfg, reset=b.reset,
                                      deploy=b.deploy, workdir=self.workdir, log=self.log)
        elif o.target == "pico":
            from hil.targets.pico_field import EmulatedField
            from hil.targets.pico_target import PicoTarget

            self.field = EmulatedField(self.cfg, packs=o.packs, bay_scale=o.bay_scale, seed=bay_seed)
            self.target = PicoTarget(self.field, config=target_cfg, workdir=self.workdir, log=self.log)
        else:
            raise ValueError(f"unknown target {o.target!r} (unix, qemu, board or pico)")
        self.field.start()
        self.started = True
        if boot:
            self.target.start()

    def stop(self) -> None:
        if self.target is not None:
            try:
                self.target.stop()
            except TargetError:
                pass
        if self.field is not None:
            self.field.stop()
        for ln in self.lines.values():
            ln.stop()
        self.lines.clear()
        self.started = False

    def __enter__(self) -> Rig:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def driver(self) -> ScenarioDriver:
        return ScenarioDriver(self)


class ScenarioDriver:
    """Vehicles, operator and environment on one side; the station's state on the other."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        assert rig.field is not None and rig.target is not None, "start the rig first"
        self.field: Field = rig.field
        self.target: Target = rig.target
        self.cfg = rig.cfg
        self._next_vehicle = 900_001
        self._next_pack = 800_001
        self.vehicles: list[Vehicle] = []
        self.marks: dict[str, float] = {}  # named host times (power cut, restart, confirm ...)
        self.confirms: list[float] = []

    # ---- vehicles -------------------------------------------------------------------------
    def arrive(self, model: str = "NIO-ES6", pack_type: str | None = None, soc: float = 0.2,
               known: bool = True, vehicle_id: int | None = None, pack_id: int | None = None) -> Vehicle:
        """A vehicle queues at the entry; it drives in when the door opens."""
        codes = {name: code for code, name in self.cfg["model_by_code"].items()}
        if model not in codes:
            raise ValueError(f"model {model!r} has no reader code in the config (model_codes)")
        ptype = pack_type or self.cfg["compatibility"][model][0]
        vid = vehicle_id if vehicle_id is not None else self._next_vehicle
        self._next_vehicle = max(self._next_vehicle, vid) + 1
        pid = self._next_pack if pack_id is None else pack_id
        self._next_pack = max(self._next_pack, pid) + 1
        bay = self._bay()
        self.field.call(bay.vehicle_arrives, vid, int(codes[model]), PackRecord(pid, ptype, soc), known)
        v = Vehicle(vid, model, pid, ptype, soc, time.monotonic())
        self.vehicles.append(v)
        return v

    def _bay(self) -> Any:
        if self.field.bay is None:
            raise ScenarioError("this rig has no bay I/O module")
        return self.field.bay

    def departed(self) -> list[dict[str, Any]]:
        """Vehicles that drove off: id and the pack they left with."""
        snap = self.field.call(self._bay().snapshot)
        return [{"t": t, "vehicle": v, "pack": p} for t, v, p in snap["departed"]]

    # ---- operator ------------------------------------------------------------------------------
    def ack(self) -> bool:
        return bool(self.target.call("ack"))

    def ack_when_clear(self, timeout: float = 5.0) -> None:
        """Acknowledge as an operator does: again until the station has seen the cause gone."""
        end = time.monotonic() + timeout
        while not self.ack():
            if time.monotonic() > end:
                raise ScenarioError(f"ack refused for {timeout} s; status {json.dumps(self.station())}")
            time.sleep(0.05)

    def confirm(self) -> bool:
        ok = bool(self.target.call("confirm"))
        if ok:
            self.confirms.append(time.monotonic())
        return ok

    def manual(self, on: bool) -> bool:
        return bool(self.target.call("manual", bool(on)))

    def abort_swap(self) -> bool:
        return bool(self.target.call("abort_swap"))

    def clear_slot(self, slot: int) -> bool:
        return bool(self.target.call("clear_slot", slot))

    # ---- environment -----------------------------------------------------------------------------
    def estop(self, pressed: bool = True) -> float:
        """The bay's e-stop chain (wired to the bay I/O module); returns the host time of the change."""
        self.field.call(self._bay().set_input, "estop_ok", not pressed)
        return time.monotonic()

    def controller_estop(self, pressed: bool = True) -> None:
        """The e-stop input wired to the controller itself."""
        self.target.set_pin("estop_ok", 0 if pressed else 1)

    def env(self, name: str, value: bool) -> None:
        """``curtain_clear``, ``smoke_clear``, ``door_closed``, ``manual_mode`` of the bay module."""
        self.field.call(self._bay().set_input, name, value)

    def inject_bay(self, failure: str, bolt: int | None = None) -> None:
        self.field.call(self._bay().inject, failure, bolt)

    def queued(self) -> list[int]:
        """Vehicles waiting at the entry, first in line first."""
        bay = self._bay()
        return self.field.call(lambda: [v.vehicle_id for v in bay.model.queue])

    def leave_queue(self, vehicle_id: int) -> bool:
        """A waiting driver gives up (reneges); False if the vehicle is no longer in the queue."""
        bay = self._bay()

        def go() -> bool:
            q = bay.model.queue
            kept = [v for v in q if v.vehicle_id != vehicle_id]
            gone = len(kept) != len(q)
            q[:] = kept
            return gone

        return self.field.call(go)

    def in_bay(self) -> int | None:
        """The vehicle in the bay (driving in, being swapped or driving out), if any."""
        bay = self._bay()
        return self.field.call(lambda: None if bay.model.vehicle is None else bay.model.vehicle.vehicle_id)

    # ---- station state -------------------------------------------------------------------------------
    def station(self) -> dict[str, Any]:
        return self.target.station()

    def outputs(self) -> dict[str, Any]:
        out = self.target.status().get("outputs")
        return out if isinstance(out, dict) else {}

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        """The first supervisor status for which ``pred`` holds."""
        try:
            st = self.target.wait_status(lambda s: bool(pred(s.get("s") or {})), timeout, what)
        except TargetError as e:
            raise ScenarioError(str(e)) from None
        return st.get("s") or {}

    def wait_state(self, state: str, timeout: float = 20.0) -> dict[str, Any]:
        return self.wait(lambda s: s.get("state") == state, timeout, f"state {state}")

    def wait_step(self, step: str, timeout: float = 30.0, plan: str | None = None) -> dict[str, Any]:
        return self.wait(lambda s: s.get("step") == step and (plan is None or s.get("plan") == plan),
                         timeout, f"step {step}" + (f" of plan {plan}" if plan else ""))

    def wait_swaps(self, ok: int, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait(lambda s: s.get("swaps_ok", 0) >= ok and s.get("step") is None, timeout,
                         f"{ok} completed swap(s)")

    def wait_field(self, pred: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
        """Poll the field (plant, bay) until ``pred()`` holds."""
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end:
                raise ScenarioError(f"the field never showed {what} within {timeout} s")
            time.sleep(every)

    def charger(self, slot: int) -> dict[str, Any]:
        """What the charger of ``slot`` does now (plant view)."""
        return self.field.rack()[slot]

    def wait_idle(self, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait(lambda s: s.get("step") is None and s.get("state") == "run", timeout, "an idle bay")

    def wait_bay_answers(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait, as an operator does before confirming, until the station can see its bay: a
        confirm while the bay module has not answered since a boot is refused, rightly (a
        loaded host delays that answer)."""
        return self.wait(lambda s: "-1:bay_io_offline" not in (s.get("alarms") or []), timeout,
                         "the bay module answering")

    def boot(self, confirm: bool = True, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for the station to finish booting (it then holds for confirmation) and confirm."""
        st = self.wait(lambda s: s.get("state") not in (None, "boot"), timeout, "boot to finish")
        if st.get("state") == "config_error" or not confirm:
            return st
        if "confirm" in (st.get("hold") or []):
            self.wait_bay_answers()
            if not self.confirm():
                raise ScenarioError(f"confirm refused after boot; status {json.dumps(self.station())}")
        return self.wait(lambda s: "confirm" not in (s.get("hold") or []), timeout, "confirm to take effect")

    def rack_probe(self) -> dict[str, Any]:
        return dict(self.target.request("probe", what="rack"))

    def swap_records(self) -> list[tuple[int, dict[str, Any]]]:
        return [(int(seq), dict(f)) for seq, f in self.target.request("probe", what="swaps")]

    def journal_probe(self) -> dict[str, Any]:
        return dict(self.target.request("probe", what="journal"))

    def motion_coils(self) -> list[int]:
        return list(self.field.call(self._bay().motion_coils_on))

    def trigger(self, step: str, do: str, plan: str | None = None, delay_ms: int = 0, **fields: Any) -> None:
        """Arm an action in the target for when the bay enters ``step``: ``pin`` (``name``,
        ``value``), ``kill`` (a power cut ``delay_ms`` into the step) or ``cut_write``
        (tear the first flash write of that step)."""
        self.target.request("trigger", step=step, do=do, plan=plan, delay_ms=delay_ms, **fields)

    def triggered(self) -> list[dict[str, Any]]:
        ch = self.target.channel
        return [] if ch is None else [e for e in ch.events if e.get("k") == "trigger"]

    # ---- power -----------------------------------------------------------------------------------------
    def power_cut(self) -> None:
        self.marks["cut"] = time.monotonic()
        self.target.power_cut()

    def flash_cut(self, after: int = 0, timeout: float = 20.0) -> None:
        """Tear the ``after``-th next flash write: the target stops there as in a power cut."""
        self.target.arm_flash_cut(after)
        if self.target.wait_exit(timeout) is None:
            raise ScenarioError(f"no flash write within {timeout} s after arming the cut")
        self.marks["cut"] = time.monotonic()

    def power_on(self, boot_timeout: float = 30.0, off_s: float = 0.2) -> dict[str, Any]:
        """Power returns after ``off_s``: long enough for the frames the dead controller
        had already handed to the line to finish, so they are not taken for the new boot's."""
        time.sleep(off_s)
        self.marks["power_on"] = time.monotonic()
        self.marks["power_on_field"] = self.field.clock()
        return self.target.start(boot_timeout)

    def sleep_field(self, seconds: float, timeout: float = 600.0) -> None:
        """Let ``seconds`` of field time pass (wall time on the unix target and a bench,
        emulated time on the emulated Pico)."""
        end = self.field.clock() + seconds
        self.wait_field(lambda: self.field.clock() >= end, timeout, f"{seconds} s of field time")

    # ---- invariants ----------------------------------------------------------------------------------
    def motion_started_between(self, t0: float, t1: float) -> list[str]:
        """Motion coils switched on (0 -> 1) by writes between field times ``t0`` and ``t1``
        (``field.clock()``)."""
        bay = self._bay()
        writes = self.field.call(lambda: list(bay.coil_writes))
        prev: list[int] | None = None
        out = []
        for t, image in writes:
            if t0 <= t <= t1 and prev is not None:
                for c in MOTION_COILS:
                    if image[c] and not prev[c]:
                        out.append(f"coil {c} on at +{t - t0:.3f} s")
            prev = image
        return out

    def rack_mismatches(self) -> list[str]:
        """Slots where the firmware's rack disagrees with the pack its charger holds, and
        raised no alarm for it."""
        probe = self.rack_probe()
        field_packs = self.field.pack_ids()
        alarms = set(self.station().get("alarms") or [])
        out = []
        for s in probe["slots"]:
            k = s["slot"]
            have = field_packs.get(k)
            if s["pack"] != have and not (alarms & {f"{k}:pack_mismatch", f"{k}:pack_missing"}):
                out.append(f"slot {k}: firmware says {s['pack']}, charger holds {have}")
        return out

    def swap_record_problems(self) -> list[str]:
        """Swap transactions lost (a number missing) or duplicated (a number twice)."""
        recs = self.swap_records()
        nums = [f["n"] for _, f in recs]
        out = []
        dup = sorted({n for n in nums if nums.count(n) > 1})
        if dup:
            out.append(f"swap records duplicated: {dup}")
        if nums:
            missing = sorted(set(range(1, max(nums) + 1)) - set(nums))
            open_swap = self.journal_probe().get("open_swap")
            if open_swap is not None and open_swap.get("n") in missing:
                missing.remove(open_swap["n"])
            if missing:
                out.append(f"swap records lost: {missing}")
        return out

    def check_recovery(self, confirm_timeout: float = 90.0) -> list[str]:
        """After ``power_on``: wait for boot, check the station holds safely and moves
        nothing, confirm, then check the rack and the swap records. Returns violations.
        The boot ends once every charger has answered: on a host at load 6 that took over
        30 s of wall time for qemu (chargers taken offline by late replies first)."""
        problems: list[str] = []
        st = self.wait(lambda s: s.get("state") not in (None, "boot"), confirm_timeout, "boot after power on")
        if st.get("state") != "hold" or "confirm" not in (st.get("hold") or []):
            problems.append(f"after power on the station is {st.get('state')} with holds {st.get('hold')}, "
                            "not holding for confirmation")
        if self.outputs().get("motion_enable"):
            problems.append("motion_enable is on before the operator confirmed")
        self.sleep_field(0.5)  # a few bay cycles: anything that would move unconfirmed does so now
        t_on = self.marks.get("power_on_field", 0.0)
        moved = self.motion_started_between(t_on, self.field.clock())
        problems += [f"motion before confirm: {m}" for m in moved]
        problems += self.rack_mismatches()
        problems += self.swap_record_problems()
        return problems

    def field_errors(self) -> list[str]:
        bay = self.field.bay
        return [] if bay is None else list(bay.errors)

