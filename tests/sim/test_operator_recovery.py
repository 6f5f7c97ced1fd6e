"""The simulated operator's manual recovery (docs/operations.md) with the real firmware:
a swap held twice is cleared by jogs in manual mode before it is closed, never with a
vehicle or a raised platform still in the bay, and the station swaps on afterwards."""

from typing import Any

from firmware.proto import regmap as R
from host.sim import engine, scenario


def test_held_swaps_are_closed_only_once_the_operator_has_cleared_the_bay() -> None:
    sc = scenario.load("pss4-urban-day")
    sc.duration_s = 8 * 3600.0
    e = engine.Engine(sc)
    seen: list[tuple[Any, ...]] = []
    start = e._start

    def started() -> None:
        start()
        # A pack that fails the vehicle's self-check twice (its own too, after the roll-back)
        # leaves the vehicle on the lift for an operator.
        e.bay.failure_rates.update({"electrical": 0.3, "bolt_torque": 0.05})
        sup = e.fw.sup
        abort = sup.abort_swap

        def checked() -> bool:
            n = sup.status()["swap"]
            ok: bool = abort()
            if ok:
                b = e.bay
                seen.append((b.vehicle is None, b.inputs[R.BAY_DI_LIFT_DOWN], b.inputs[R.BAY_DI_RGV_DOWN],
                             b.inputs[R.BAY_DI_POSITIONER_OPEN], _through(sup), n))
            return ok

        sup.abort_swap = checked  # type: ignore[method-assign]

    e._start = started  # type: ignore[method-assign]
    s = e.run().summary
    acts = s["operator_actions"]
    assert acts.get("abort_swap", 0) >= 1 and acts.get("jog", 0) >= 5 and acts.get("manual", 0) >= 2, acts
    assert seen and all(v[:4] == (True, 1, 1, 1) for v in seen), seen
    # The bay took the next vehicle after the last one: finished with it, or busy with it.
    st = e.fw.sup.status()
    assert _through(e.fw.sup) > seen[-1][4] or (st["swap"] or 0) > seen[-1][5], (st, seen)


def _through(sup: Any) -> int:
    """Vehicles the bay has finished with, whatever the outcome."""
    st = sup.status()
    return int(st["swaps_ok"] + st["swaps_other"])
