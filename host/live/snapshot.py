"""A small view of a running station for the live page: plain values, built in a few
hundred microseconds, between two engine steps (never inside the firmware's tick).

It reads the firmware's public state (``Supervisor.status``, the rack's per-slot lists, the
bay's swap and ``in_step_ms``, the active alarms, the journal's last lines on its flash) and
the plant's (the grid meter, the bay queue).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from firmware.core import journal as jn
from firmware.core.config import SWAP_STEPS
from firmware.core.rack import STATE_NAMES

HISTORY_S = 3600.0  # the grid chart's span
HISTORY_EVERY_S = 10.0  # one chart point per 10 s of virtual time at most: <= 360 points
JOURNAL_TAIL = 12  # lines of the journal shown
_TAIL_BYTES = 4096  # read from the journal's end: enough for JOURNAL_TAIL lines


def clock(t_s: float) -> str:
    """Virtual time as the page shows it: day and time of day (the run starts at midnight)."""
    s = int(t_s)
    return f"day {s // 86400} {s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def journal_tail(data: bytes | bytearray, n: int = JOURNAL_TAIL) -> list[dict[str, Any]]:
    """The last ``n`` good records of a journal file's bytes: seq, kind and fields."""
    tail = bytes(data[-_TAIL_BYTES:])
    if len(data) > _TAIL_BYTES:
        tail = tail[tail.find(b"\n") + 1:]  # the first line is cut
    out = []
    for line in tail.split(b"\n")[::-1]:
        rec = jn.decode(line) if line else None
        if rec is not None:
            out.append({"seq": rec[0], "kind": rec[1], "fields": rec[2]})
            if len(out) == n:
                break
    return out[::-1]


class Snapshotter:
    """Builds snapshots of one engine run; keeps the grid chart's last hour between them."""

    def __init__(self, eng: Any) -> None:
        self.eng = eng
        self.grid: deque[tuple[float, float]] = deque()
        self.seq = 0

    def _grid(self, t_s: float, kw: float) -> list[list[float]]:
        g = self.grid
        if not g or t_s - g[-1][0] >= HISTORY_EVERY_S:
            g.append((t_s, kw))
        while g and g[0][0] < t_s - HISTORY_S:
            g.popleft()
        return [[round(t, 1), round(p, 1)] for t, p in g]

    def __call__(self, **extra: Any) -> dict[str, Any]:
        eng = self.eng
        sup = eng.fw.sup
        rk = sup.rack
        bay = sup.bay
        sw = bay.swap
        now = sup.now
        t_s = eng.t_s
        st = sup.status()
        step = bay.step if sw is not None and bay.step >= 0 else -1
        bay_view: dict[str, Any] = {
            "step": SWAP_STEPS[step] if step >= 0 else None,
            "step_index": step,
            "in_step_s": round(bay.in_step_ms(now) / 1000.0, 1) if step >= 0 else None,
            "timeout_s": round(bay.timeouts[step] / 1000.0, 1) if step >= 0 else None,
            "plan": st.get("plan"),
            "fault": bay.fault,
            "swap": st.get("swap"),
            "vehicle": sw.vehicle if sw is not None else None,
            "vehicle_pack": sw.pack if sw is not None else None,
            "new_pack": sw.new_pack if sw is not None else None,
            "fetch_slot": rk.ids[sw.fetch_slot] if sw is not None and sw.fetch_slot >= 0 else None,
            "last_step_s": [round(ms / 1000.0, 1) for ms in bay.last_step_ms] if bay.last_step_ms else None,
            "last_swap_s": round(bay.last_swap_ms / 1000.0, 1) if bay.last_swap_ms else None,
        }
        reserved = sw.fetch_slot if sw is not None and sw.reserved else -1
        a = eng.plant.arrays
        slots = []
        for i in range(rk.n):
            slots.append({
                "id": rk.ids[i],
                "pack": rk.pack[i],
                "type": rk.ptype[i],
                "soc": rk.soc[i] / 10.0,
                "temp": rk.t_max[i] / 10.0,
                "state": STATE_NAMES[rk.state[i]].lower(),
                "kw": rk.power[i] / 10.0,
                "online": bool(rk.online[i]),
                "reason": rk.reason[i],
                "reserved": i == reserved or rk.state[i] == 3,
                "for_bay": i == reserved,
            })
        grid_kw = float(a["p_sta"][0]) / 1000.0
        dis = sup.dispatch
        minute = int(t_s // 60) % 1440
        price = dis.price_at(minute) if dis.bands else None
        kpi = eng.kpi
        waits = kpi.waits_s
        fw_storage = eng.fw.storage
        log = fw_storage.files.get(jn.LOG_NAME, b"") if hasattr(fw_storage, "files") else b""
        self.seq += 1
        snap: dict[str, Any] = {
            "seq": self.seq,
            "t_s": round(t_s, 3),
            "clock": clock(t_s),
            "scenario": eng.sc.name,
            "end_s": eng.end_ms / 1000.0,
            "state": st["state"],
            "hold": st.get("hold", []),
            "steps": SWAP_STEPS,
            "bay": bay_view,
            "slots": slots,
            "isolation": len(rk.isolation),
            "grid": {
                "kw": round(grid_kw, 1),
                "cap_kw": float(eng.sc.grid_capacity_kw),
                "fw_cap_kw": dis.grid_dkw / 10.0,
                "history": self._grid(t_s, grid_kw),
                "price": price,
                "band": ("expensive" if dis.tou is not None and price is not None
                         and price > dis.tou[0] else "normal") if price is not None else None,
                "slowed": bool(dis.slowed),
            },
            "alarms": [{"key": k, "slot": _slot_name(rk, k), "code": k.split(":", 1)[1], "detail": d}
                       for k, d in sorted(sup.alarms.items())],
            "journal": journal_tail(log),
            "kpi": {
                "arrived": kpi.arrived,
                "swaps": kpi.swaps,
                "balked": kpi.balked,
                "reneged": kpi.reneged,
                "not_swapped": kpi.left_unswapped,
                "mean_wait_s": round(sum(waits) / len(waits), 1) if waits else None,
                "grid_kwh": round(kpi.grid_kwh, 2),
                "peak_kw": round(kpi.peak_grid_kw, 1),
                "cost": round(kpi.cost, 2) if math.isfinite(kpi.cost) else None,
            },
            "queue": [{"vehicle": vid, "waiting_s": round(w, 1)} for vid, w in eng.waiting()],
        }
        snap.update(extra)
        return snap


def _slot_name(rk: Any, key: str) -> str | None:
    """The slot id of an alarm key "slot:code" (None: station-wide, slot -1)."""
    try:
        i = int(key.split(":", 1)[0])
    except ValueError:
        return None
    return rk.ids[i] if 0 <= i < rk.n else None
