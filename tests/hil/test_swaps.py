"""Swap scenarios on the rig: the real firmware, real serial lines, emulated field devices."""

from __future__ import annotations

import pytest

from hil.rig import ScenarioDriver


def test_one_full_swap(hil_driver: ScenarioDriver) -> None:
    d = hil_driver
    before = d.field.pack_ids()
    v = d.arrive(model="NIO-ES6", pack_type="NIO-75", soc=0.18)
    st = d.wait_swaps(1, timeout=60)
    assert st["swaps_ok"] == 1 and st["swaps_other"] == 0
    assert all(ms > 0 for ms in st["last_step_ms"]), st["last_step_ms"]
    left = d.departed()
    assert [x["vehicle"] for x in left] == [v.vehicle_id]
    new_pack = left[0]["pack"]
    assert new_pack != v.pack_id and new_pack in before.values()
    after = d.field.pack_ids()
    # The vehicle's own pack went into the free slot; the pack it left with is gone from the rack.
    assert v.pack_id in after.values() and new_pack not in after.values()
    recs = d.swap_records()
    assert [(f["n"], f["o"], f["v"], f["po"], f["pi"]) for _, f in recs] == \
        [(1, "ok", str(v.vehicle_id), v.pack_id, new_pack)]
    assert d.rack_mismatches() == []
    assert d.field_errors() == []


@pytest.mark.hil_rig(bay_scale=0.01)  # 144 s of mechanics in 1.4 s: the firmware's own pace shows
@pytest.mark.hil_slow_on("qemu")  # ~95 s there, ~55 s on unix
def test_ten_swaps_back_to_back(hil_driver: ScenarioDriver) -> None:
    d = hil_driver
    handover = float(d.cfg["limits"]["handover_soc"])
    vehicles = [d.arrive(model=m, soc=0.1 + 0.05 * k)
                for k, m in enumerate(["NIO-ES6", "NIO-ES8", "NIO-ET5", "NIO-ET7"] * 3)][:10]
    st = d.wait_swaps(10, timeout=240)
    assert st["swaps_ok"] == 10 and st["swaps_other"] == 0 and st["queue"] == 0
    left = d.departed()
    assert [x["vehicle"] for x in left] == [v.vehicle_id for v in vehicles]  # served in arrival order
    got = [x["pack"] for x in left]
    assert len(set(got)) == 10 and not set(got) & {v.pack_id for v in vehicles}
    recs = d.swap_records()
    assert [f["n"] for _, f in recs] == list(range(1, 11))
    assert all(f["o"] == "ok" and f["si"] >= handover for _, f in recs)
    assert {f["po"] for _, f in recs} == {v.pack_id for v in vehicles}
    rack = d.field.pack_ids()
    assert {v.pack_id for v in vehicles} <= set(rack.values())  # every returned pack is in the rack
    assert d.rack_mismatches() == [] and d.field_errors() == []
