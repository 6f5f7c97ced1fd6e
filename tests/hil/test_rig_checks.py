"""The recovery checks of the scenario driver flag what they are meant to flag
(fed recorded evidence, no rig needed)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from firmware.proto import regmap as rm
from hil.rig import ScenarioDriver


class FakeField:
    def __init__(self, coil_writes: list[tuple[float, list[int]]], packs: dict[int, int]) -> None:
        self.bay = SimpleNamespace(coil_writes=coil_writes)
        self._packs = packs

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def pack_ids(self) -> dict[int, int]:
        return dict(self._packs)


class FakeTarget:
    def __init__(self, probes: dict[str, Any], station: dict[str, Any]) -> None:
        self.probes = probes
        self._station = station

    def request(self, op: str, timeout: float = 5.0, **fields: Any) -> Any:
        assert op == "probe"
        return self.probes[fields["what"]]

    def station(self) -> dict[str, Any]:
        return self._station


def driver(coil_writes: list[tuple[float, list[int]]] | None = None, packs: dict[int, int] | None = None,
           probes: dict[str, Any] | None = None, station: dict[str, Any] | None = None) -> ScenarioDriver:
    d = ScenarioDriver.__new__(ScenarioDriver)
    d.field = FakeField(coil_writes or [], packs or {})  # type: ignore[assignment]
    d.target = FakeTarget(probes or {}, station or {"alarms": []})  # type: ignore[assignment]
    return d


def image(*on: int) -> list[int]:
    img = [0] * rm.BAY_COIL_COUNT
    for c in on:
        img[c] = 1
    return img


def test_motion_started_is_a_drive_coil_switched_on_in_the_window() -> None:
    writes = [(1.0, image(rm.BAY_CO_LIFT_UP)), (2.0, image()),  # held: the lift dropped
              (3.0, image(rm.BAY_CO_POSITIONER)),  # a position, not a drive
              (4.0, image(rm.BAY_CO_CARRIER_TO_BAY)), (9.0, image(rm.BAY_CO_LIFT_UP))]
    d = driver(writes)
    assert d.motion_started_between(1.5, 5.0) == ["coil 9 on at +2.500 s"]
    assert d.motion_started_between(1.5, 3.5) == []
    assert d.motion_started_between(0.0, 1.5) == []  # the first write has nothing before it


def test_swap_records_lost_or_duplicated() -> None:
    def problems(numbers: list[int], open_swap: int | None = None) -> list[str]:
        recs = [[10 * n, {"n": n, "o": "ok"}] for n in numbers]
        journal = {"open_swap": None if open_swap is None else {"n": open_swap}}
        return driver(probes={"swaps": recs, "journal": journal}).swap_record_problems()

    assert problems([1, 2, 3]) == []
    assert problems([1, 3]) == ["swap records lost: [2]"]
    assert problems([1, 2, 2]) == ["swap records duplicated: [2]"]
    assert problems([1, 3], open_swap=2) == []  # a swap still open has no record yet: not lost


def test_rack_mismatch_unless_the_station_raised_it() -> None:
    probe = {"slots": [{"slot": 0, "pack": 11}, {"slot": 1, "pack": 12}, {"slot": 2, "pack": None}]}
    d = driver(packs={0: 11, 1: 99, 2: 13}, probes={"rack": probe}, station={"alarms": ["1:pack_mismatch"]})
    assert d.rack_mismatches() == ["slot 2: firmware says None, charger holds 13"]
