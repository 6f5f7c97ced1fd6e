"""Swap scenarios on the rig: the real firmware, real serial lines, emulated field devices."""

from __future__ import annotations

from hil.driver import ScenarioDriver


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
