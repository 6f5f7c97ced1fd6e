"""Event-time queries: the engine jumps time to the next interesting moment instead of ticking."""

import math

import numpy as np
import pytest

from host.plant import params as P
from host.plant.charging import PackRecord, Plant

from .helpers import charging_plant


def _rack() -> Plant:
    plant = Plant(2, 4, watchdog=False)
    for slot, (name, soc) in enumerate(
        [("NIO-75", 0.3), ("NIO-100", 0.55), ("NIO-150", 0.6), ("NIO-100", 0.95)] * 2
    ):
        plant.put_pack(slot, PackRecord(slot, name, soc))
        plant.set_enable(slot, True)
    return plant


def test_time_to_soc_predicts_when_stepping_gets_there():
    plant = _rack()
    before = {k: v.copy() for k, v in plant.arrays.items() if not k.startswith("s_")}
    t, slot = plant.time_to_soc(0.9)
    for k, v in before.items():  # the query ran on a copy
        np.testing.assert_array_equal(v, plant.arrays[k], err_msg=k)
    assert slot in (1, 5)  # the 100 kWh pack at 55 %: same state in both stations, first index wins
    assert slot == 1
    plant.step(t - 1.0)
    assert plant.soc[slot] < 0.9
    plant.step(1.0)
    assert plant.soc[slot] == pytest.approx(0.9, abs=2e-4)
    assert plant.soc[[0, 2]].max() < 0.9  # nothing else got there first


def test_time_to_soc_with_a_slot_mask_and_one_station():
    plant = _rack()
    t_all, _ = plant.time_to_soc(0.9, station=1)
    t_150, slot = plant.time_to_soc(0.9, slots=[2, 6])
    assert slot == 2 and t_150 > t_all
    mask = np.zeros(plant.n_slots, dtype=bool)
    mask[6] = True
    assert plant.time_to_soc(0.9, mask, station=1) == (pytest.approx(t_150), 6)


def test_packs_already_above_the_target_and_stopped_chargers_never_cross():
    plant = _rack()
    assert plant.time_to_soc(0.9, slots=[3]) == (math.inf, -1)
    plant.set_enable(0, False)
    assert plant.time_to_soc(0.5, slots=[0]) == (math.inf, -1)
    assert plant.time_to_soc(0.99, slots=[1], horizon_s=600.0) == (math.inf, -1)


def test_time_to_cc_end_is_when_the_taper_starts():
    plant = charging_plant("NIO-100", 0.5)
    t, slot = plant.time_to_cc_end()
    assert slot == 0
    plant.step(t - 5.0)
    assert plant.phase[0] == P.PHASE_CC
    plant.step(5.0)
    assert plant.phase[0] == P.PHASE_TAPER
    assert plant.soc[0] == pytest.approx(P.CC_KNEE_SOC, abs=0.01)
