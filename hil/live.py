"""The live view on the HIL rig: the same page as the simulator's, fed from the rig.

The controller runs in its own process (or on a board), so its state comes from the status
it already sends the rig several times a second (``Target.station()``: the supervisor's
``status()``), the field's own state (the chargers' packs, the bay's coils and queue) and,
once a second of field time, the ``rack`` and ``tail`` probes (the firmware's slot states,
the journal's last records).
A poller thread builds a snapshot every ``EVERY_S`` and hands it to the server. The page's
operator actions go through the ScenarioDriver, the path the rig's tests use, so the page
can do nothing the rig cannot: acknowledge, confirm, e-stop press and release, a charger
dropout and its end.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from firmware.core.config import SWAP_STEPS
from hil.rig import ScenarioDriver
from host.live.snapshot import HISTORY_EVERY_S, HISTORY_S, clock, journal_tail

EVERY_S = 0.2  # wall time between two snapshots
# Field seconds between two reads of the firmware's rack and journal tail (channel probes the
# target answers between ticks): field time, so the emulated Pico, ~40x slow, is asked as
# seldom per tick of its own as a fast target.
FIRMWARE_EVERY_S = 1.0


class HilView:
    """Snapshots of a running rig, and the page's operator actions on it."""

    def __init__(self, d: ScenarioDriver, publish: Callable[[dict[str, Any]], None],
                 name: str = "hil") -> None:
        self.d = d
        self.publish = publish
        self.name = name
        self.cfg = d.cfg
        self.slot_ids = [s["id"] for s in self.cfg["slots"]]
        self.t0 = time.monotonic()
        self.grid: deque[tuple[float, float]] = deque()
        self.seq = 0
        self._step: tuple[Any, Any, float] | None = None  # (swap, step, host time first seen)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="hil-live", daemon=True)
        self.finished = False
        self.errors = 0
        self._fw_at: float | None = None  # field time of the last firmware read
        self._fw_slots: list[dict[str, Any]] = []  # the firmware's rack probe, per slot
        self._journal: list[dict[str, Any]] = []

    # --- the page's actions (the server's thread) ---
    def _slot(self, msg: dict[str, Any]) -> int:
        sid = msg.get("slot")
        if sid not in self.slot_ids:
            raise ValueError(f"unknown slot {sid!r}; one of {self.slot_ids[0]}..{self.slot_ids[-1]}")
        return self.slot_ids.index(sid)

    def controls(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        d = self.d

        def estop(msg: dict[str, Any]) -> bool:
            pressed = msg.get("pressed")
            if not isinstance(pressed, bool):
                raise ValueError('"pressed" must be true or false')
            d.estop(pressed)
            return pressed

        def dropout(msg: dict[str, Any]) -> str:
            k = self._slot(msg)
            on = msg.get("on", True)
            if not isinstance(on, bool):
                raise ValueError('"on" must be true or false')
            (d.field.inject if on else d.field.clear)(k, "dropout")
            return self.slot_ids[k]

        return {"ack": lambda msg: d.ack(), "confirm": lambda msg: d.confirm(), "estop": estop,
                "charger_dropout": dropout}

    # --- snapshots ---
    def _firmware(self) -> None:
        """The firmware's own slot states and its journal's tail, every FIRMWARE_EVERY_S of
        field time; a probe that fails (a target between two lives) keeps the last ones."""
        t = self.d.field.clock()
        if self._fw_at is not None and t - self._fw_at < FIRMWARE_EVERY_S:
            return
        self._fw_at = t
        self._fw_slots = list(self.d.rack_probe()["slots"])
        self._journal = journal_tail(str(self.d.target.request("probe", what="tail")).encode())

    def snapshot(self) -> dict[str, Any]:
        d = self.d
        try:
            self._firmware()
        except Exception:  # noqa: BLE001  a target between two lives (power cut, reboot)
            self.errors += 1
        now = time.monotonic()
        t_s = now - self.t0
        st = d.station()
        rack = d.field.rack()
        coils = d.motion_coils()
        queue = d.queued()
        step = st.get("step")
        index = SWAP_STEPS.index(step) if step in SWAP_STEPS else -1
        key = (st.get("swap"), step)
        if self._step is None or self._step[:2] != key:
            self._step = (key[0], key[1], now)
        timeouts = self.cfg["timeouts_ms"]
        last_ms = st.get("last_step_ms")
        slots = []
        grid_kw = 0.0
        fw = {f["slot"]: f for f in self._fw_slots}
        for r in rack:
            k = r["slot"]
            grid_kw += r["p_kw"]
            status = r["status"]
            f = fw.get(k)
            # The firmware's state once read (reserved and quarantined exist only there), else
            # the charger's own.
            state = f["state"].lower() if f is not None else "empty" if r["pack"] is None else \
                "fault" if status in ("fault", "watchdog") else \
                "charging" if status in ("charging", "derated") else "ready"
            slots.append({
                "id": self.slot_ids[k], "pack": r["pack"], "type": r["type"] if r["pack"] else None,
                "soc": round(r["soc"], 1) if r["pack"] else 0.0, "temp": round(r["temp"] or 0.0, 1),
                "state": state, "kw": round(r["p_kw"], 1),
                "online": bool(f["online"]) if f is not None else True,
                "reason": f["reason"] if f is not None else None,
                "reserved": state == "reserved", "for_bay": state == "reserved" and step is not None,
            })
        g = self.grid
        if not g or t_s - g[-1][0] >= HISTORY_EVERY_S:
            g.append((t_s, grid_kw))
        while g and g[0][0] < t_s - HISTORY_S:
            g.popleft()
        self.seq += 1
        alarms = []
        for akey in st.get("alarms") or []:
            slot, _, code = str(akey).partition(":")
            k = int(slot) if slot.lstrip("-").isdigit() else -1
            alarms.append({"key": akey, "slot": self.slot_ids[k] if 0 <= k < len(self.slot_ids) else None,
                           "code": code, "detail": None})
        return {
            "seq": self.seq, "t_s": round(t_s, 3), "clock": clock(t_s), "scenario": self.name,
            "end_s": None, "state": st.get("state", "boot"), "hold": st.get("hold") or [],
            "steps": SWAP_STEPS,
            "bay": {
                "step": step, "step_index": index,
                "in_step_s": round(now - self._step[2], 1) if index >= 0 else None,
                "timeout_s": timeouts[step] / 1000.0 if index >= 0 else None,
                "plan": st.get("plan"), "fault": st.get("fault"), "swap": st.get("swap"),
                "vehicle": st.get("vehicle"), "vehicle_pack": None, "new_pack": None, "fetch_slot": None,
                "last_step_s": [round(ms / 1000.0, 1) for ms in last_ms] if last_ms else None,
                "last_swap_s": round(st["last_swap_ms"] / 1000.0, 1) if st.get("last_swap_ms") else None,
                "coils": coils,
            },
            "slots": slots, "isolation": (st.get("rack") or {}).get("isolation", 0),
            "grid": {"kw": round(grid_kw, 1), "cap_kw": float(self.cfg["limits"]["grid_kw"]),
                     "history": [[round(t, 1), round(p, 1)] for t, p in g], "price": None, "band": None,
                     "slowed": False},
            "alarms": alarms, "journal": self._journal,
            "kpi": {"arrived": len(d.vehicles), "swaps": st.get("swaps_ok", 0), "balked": 0, "reneged": 0,
                    "not_swapped": st.get("swaps_other", 0), "mean_wait_s": None, "grid_kwh": None,
                    "peak_kw": None, "cost": None},
            "queue": [{"vehicle": v, "waiting_s": None} for v in queue],
            "speed": None, "paused": False, "finished": self.finished, "mode": "hil",
        }

    def _poll(self) -> None:
        while not self._stop.wait(EVERY_S):
            try:
                self.publish(self.snapshot())
            except Exception:  # noqa: BLE001  a target between two lives (power cut, reboot)
                self.errors += 1

    def start(self) -> HilView:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.finished = True
        self._stop.set()
        self._thread.join(10.0)
        try:
            self.publish(self.snapshot())
        except Exception:  # noqa: BLE001  the rig may be gone already
            pass
