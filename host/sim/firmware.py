"""The station firmware as the controller runs it, in the engine's virtual time: the real
Supervisor on the simulator's buses (``direct`` or ``wire``), the firmware's own in-memory
flash (``firmware.drivers.mem.MemStorage``) and the controller's own e-stop input."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from firmware.drivers.mem import MemStorage
from host.devices.codes import Device
from host.sim import buses

if TYPE_CHECKING:
    from host.sim.engine import Engine

SPIN_PASSES = 8  # supervisor passes at one virtual ms before the clock is moved on by 1 ms


class SimulationError(RuntimeError):
    """The run could not go on (firmware exception, plant error, a stuck clock)."""


class Firmware:
    """The station firmware as the controller runs it, on simulated buses and storage."""

    def __init__(self, eng: Engine) -> None:
        from firmware.core.supervisor import Supervisor

        self.eng = eng
        cfg = eng.sc.station
        self.storage = MemStorage()
        self.links: list[buses.WireLink] = []
        bus_map: dict[str, Any] = {}
        bay_unit = cfg["buses"]["bay_io"]["unit"]
        lines: dict[str, dict[int, Device]] = {"chargers": eng.devices,
                                                     "bay_io": {bay_unit: eng.bay_device}}
        for name, devices in lines.items():
            b = cfg["buses"][name]
            kw = {"timeout_ms": b["timeout_ms"], "retries": b["retries"], "offline_after": b["offline_after"],
                  "probe_interval_ms": b["probe_interval_ms"], "queue_size": 8}
            if eng.sc.mode == "wire":
                link = buses.WireLink(devices, b["baudrate"], lambda: eng.t_ms, **kw)
                self.links.append(link)
                bus_map[name] = link.master
            else:
                bus_map[name] = buses.DirectBus(devices, **kw)
        self.buses = bus_map
        # The controller's own e-stop input only where a fault opens it (its reading costs a
        # bay write per tick).
        wired = any(f.kind == "estop" and f.input == "controller" for f in eng.sc.faults)
        inputs = {"estop_ok": eng.estop_pin} if wired else None
        # Virtual time starts at local midnight: the firmware's time-of-use bands apply.
        self.sup = Supervisor(cfg, None, self.storage, inputs=inputs, now_ms=eng.ticks(0), masters=bus_map,
                              minute_of_day=lambda: (eng.t_ms // 60000) % 1440)
        self._zero_waits = 0
        self._alarm_keys: set[str] = set()

    def tick(self, t_ms: int) -> int:
        """Run the supervisor once; ms until it wants to run again.

        A board's loop cannot run twice in the same instant for ever: each pass costs
        time. So after a few passes at one virtual millisecond that all asked to run again
        at once, the next pass is one millisecond later (as on a board, where the clock
        moves on while the loop spins)."""
        wait = self.sup.tick(self.eng.ticks(t_ms))
        if wait is None:
            raise SimulationError("supervisor.tick returned no wait time")
        if wait > 0:
            self._zero_waits = 0
            return int(wait)
        self._zero_waits += 1
        if self._zero_waits >= SPIN_PASSES:
            self._zero_waits = 0
            return 1
        return 0

    def after_tick(self, t_ms: int) -> None:
        """The frames the tick sent go on their lines; the alarms it raised are counted."""
        for link in self.links:
            link.sent(t_ms)
        sup = self.sup
        if sup.alarms.keys() != self._alarm_keys:
            now = set(sup.alarms)
            for key in sorted(now - self._alarm_keys):
                self.eng.kpi.alarm(key.split(":", 1)[1])
            self._alarm_keys = now

    def line_due_ms(self) -> int:
        due = [d for d in (link.due_ms() for link in self.links) if d >= 0]
        return min(due) if due else 1 << 62

    def deliver(self, t_ms: int) -> bool:
        landed = False
        for link in self.links:
            d = link.due_ms()
            if 0 <= d <= t_ms:
                link.deliver()
                landed = True
        return landed
