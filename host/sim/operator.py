"""The simulator's operator: who comes to a held station and what they do there
(docs/operations.md). They act only through the supervisor's public methods, as a person
at the station's panel would, and judge the bay on the sensors as the controller reads them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from firmware.proto import regmap as R

ACK_HOLDS = frozenset({"estop", "interlock", "smoke", "comms"})  # holds an operator resets with ack


def wants_ack(status: Mapping[str, Any]) -> bool:
    """At a held station (``Supervisor.status()``, read directly or over the rig's channel)
    the operator presses acknowledge before confirming: a latched stop or comms hold, or a
    journal that replay found damaged. The simulator's operator and the rig's share it."""
    held = set(status.get("hold") or ())
    return bool(held & ACK_HOLDS) or "-1:journal_replay" in (status.get("alarms") or ())


class Operator:
    """Watches the supervisor after each tick; a hold brings a visit ``response_ms`` later
    (at once at start-up, when the operator is on site). ``at(t_ms, fn)`` schedules on the
    run's clock, ``now_ms()`` reads it. ``actions`` counts what was done, by name."""

    def __init__(self, sup: Any, at: Callable[[int, Callable[[], None]], None], now_ms: Callable[[], int],
                 response_ms: int) -> None:
        self.sup = sup
        self._at = at
        self._now_ms = now_ms
        self.response_ms = response_ms
        self.actions: dict[str, int] = {}
        self._visit_due = False
        self._booted = False
        self._held_swap: Any = None
        self._rebolt_runs: dict[Any, int] = {}
        self._jog_waits = 0

    def watch(self, t_ms: int) -> None:
        """After a tick at ``t_ms``: a held station with no visit on the way gets one."""
        if not self._visit_due and self.sup.state() == "hold":
            # The operator is on site at start-up; later a held station waits for someone to come.
            delay = self.response_ms if self._booted else 0
            self._visit_due = True
            self._at(t_ms + delay, self.visit)

    def _act(self, name: str, ok: bool) -> None:
        if ok:
            self.actions[name] = self.actions.get(name, 0) + 1

    def visit(self) -> None:
        """What an operator does at a held station: reset latches whose cause is gone and
        acknowledge a damaged journal, confirm (a held swap then retries its step); a swap
        still held at the next visit, its vehicle with a pack, gets the manual recovery of
        docs/operations.md, one jog per visit a second apart, each once the sensors show the
        one before has taken."""
        self._visit_due = False
        sup = self.sup
        st = sup.status()
        recovering = st["state"] == "manual" and self._held_swap is not None and st["swap"] == self._held_swap
        if st["state"] != "hold" and not recovering:
            return
        if wants_ack(st):
            self._act("ack", sup.ack())
        di = sup.bay.di
        no_pack = di[R.BAY_DI_VEHICLE_PRESENT] and not di[R.BAY_DI_PACK_SEATED]
        if st["swap"] is not None and (st["fault"] or recovering):
            # A vehicle without a pack is not driven out: its swap is retried instead.
            if self._held_swap == st["swap"] and (recovering or not no_pack):
                if not recovering:
                    self._act("manual", sup.manual(True))
                if self._recovery_jog():
                    self._visit_due = True
                    self._at(self._now_ms() + 1000, self.visit)
                    return
                self._act("abort_swap", sup.abort_swap())
                self._act("manual", sup.manual(False))
            self._held_swap = st["swap"]
        ok = sup.confirm()
        self._act("confirm", ok)
        if ok:
            self._booted = True

    def _recovery_jog(self) -> bool:
        """The next jog of the manual recovery (docs/operations.md), judged on the bay's
        sensors as the controller reads them; False once the bay is clear."""
        sup = self.sup
        di = sup.bay.di
        co = sup.bay.coils
        bolts = sup.cfg["bay"]["bolt_count"]
        jog: tuple[int, int] | None = None
        tight = all(di[R.BAY_DI_BOLT_TORQUE_OK_BASE + b] for b in range(bolts))
        loose = di[R.BAY_DI_PACK_SEATED] and not tight
        runs = self._rebolt_runs.get(self._held_swap, 0)
        if di[R.BAY_DI_TOOL_BUSY]:
            return True
        if loose and runs < 4 and di[R.BAY_DI_VEHICLE_PRESENT]:
            if not co[R.BAY_CO_RGV_RAISE] or not di[R.BAY_DI_RGV_UP]:
                jog = (R.BAY_CO_RGV_RAISE, 1)
            elif not co[R.BAY_CO_PACK_GRIP] or not di[R.BAY_DI_PACK_GRIPPED]:
                jog = (R.BAY_CO_PACK_GRIP, 1)
            elif co[R.BAY_CO_TOOL_BOLT]:
                jog = (R.BAY_CO_TOOL_BOLT, 0)  # a run ended
            else:
                released = any(di[R.BAY_DI_BOLT_RELEASED_BASE + b] for b in range(bolts))
                want = 0 if released else 1  # docking run first, then locking
                if co[R.BAY_CO_TOOL_LOCK_SPEED] != want:
                    jog = (R.BAY_CO_TOOL_LOCK_SPEED, want)
                else:
                    jog = (R.BAY_CO_TOOL_BOLT, 1)
                    self._rebolt_runs = {self._held_swap: runs + 1}
        elif co[R.BAY_CO_TOOL_BOLT] or co[R.BAY_CO_TOOL_LOCK_SPEED]:
            jog = (R.BAY_CO_TOOL_BOLT if co[R.BAY_CO_TOOL_BOLT] else R.BAY_CO_TOOL_LOCK_SPEED, 0)
        elif co[R.BAY_CO_PACK_GRIP] or di[R.BAY_DI_PACK_GRIPPED]:
            jog = (R.BAY_CO_PACK_GRIP, 0)
        elif not di[R.BAY_DI_RGV_DOWN]:
            jog = (R.BAY_CO_RGV_RAISE, 0)
        elif not di[R.BAY_DI_LIFT_DOWN]:
            jog = (R.BAY_CO_LIFT_DOWN, 1)
        elif co[R.BAY_CO_LIFT_DOWN]:
            jog = (R.BAY_CO_LIFT_DOWN, 0)
        elif not di[R.BAY_DI_POSITIONER_OPEN]:
            jog = (R.BAY_CO_POSITIONER, 0)
        elif di[R.BAY_DI_VEHICLE_PRESENT]:
            jog = (R.BAY_CO_EXIT_OPEN, 1)
        elif co[R.BAY_CO_EXIT_OPEN]:
            jog = (R.BAY_CO_EXIT_OPEN, 0)
        elif not di[R.BAY_DI_CARRIER_AT_BAY]:
            jog = (R.BAY_CO_CARRIER_HOME, 1)
        elif co[R.BAY_CO_CARRIER_HOME]:
            jog = (R.BAY_CO_CARRIER_HOME, 0)
        if jog is None:
            return False
        waited = self._jog_waits
        if co[jog[0]] != jog[1]:
            self._act("jog", sup.jog(jog[0], jog[1]))
            waited = 0
        elif waited >= 60:
            # A minute without effect (a stalled drive): off, and on again at the next visit.
            self._act("jog", sup.jog(jog[0], 1 - jog[1]))
            waited = 0
        else:
            waited += 1
        self._jog_waits = waited
        return True
