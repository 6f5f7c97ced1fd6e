"""Shared helpers for the plant tests."""

from __future__ import annotations

from host.plant.charging import PackRecord, Plant


def charging_plant(
    type_name: str = "NIO-100", soc: float = 0.2, *, slots: int = 1, backend: str = "cython", **kw: object
) -> Plant:
    """A one-station plant, watchdog off, with a pack of ``type_name`` in every slot, chargers enabled."""
    plant = Plant(1, slots, backend=backend, watchdog=False, **kw)  # type: ignore[arg-type]
    for slot in range(slots):
        plant.put_pack(slot, PackRecord(100 + slot, type_name, soc))
        plant.set_enable(slot, True)
    return plant


def run_until(plant: Plant, cond, dt: float = 5.0, limit_s: float = 48 * 3600.0) -> float:
    """Step ``plant`` until ``cond(plant)``; return the elapsed simulated seconds."""
    t0 = plant.time_s()
    while not cond(plant):
        if plant.time_s() - t0 > limit_s:
            raise AssertionError("condition not reached")
        plant.step(dt)
    return plant.time_s() - t0
