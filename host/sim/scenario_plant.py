"""What a scenario puts on the plant: the plant itself with its chargers as field devices
(the plant kernels, or under ``[queueing]`` the queueing-validation plant), the rack as
stocked at the start, and the vehicles (the demand's and the listed ones).

The engine and the HIL rig build their stations from these, so a scenario file means the
same station on ``sim`` and ``hil``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from host.devices.charger import ChargerDevice, ExpChargerDevice
from host.devices.codes import Device
from host.plant.charging import PackRecord, Plant
from host.plant.expcharge import ExpChargeRack
from host.plant.params import PACK_TYPES, RackParams
from host.plant.vehicles import NIO_FLEET, PARTNER_MODELS, Arrival, ArrivalProcess, VehicleModel
from host.sim.scenario import Scenario, random_streams

LISTED_VEHICLE_ID = 800_001  # [[arrivals]] vehicles: ids (and their packs') apart from the demand's
LISTED_PACK_ID = 800_001


def plant_for(sc: Scenario, plant: str = "fast") -> tuple[Any, str, dict[int, Device]]:
    """(plant, its name in the summary, charger unit -> device). ``plant`` picks the plant
    kernels: "fast" (Cython) or "python"; a ``[queueing]`` scenario gets the
    queueing-validation plant (exponential charge work) instead."""
    slots = sc.station["slots"]
    q = sc.queueing
    if q is not None:
        full = sc.station["limits"]["full_soc"] / 100.0
        exp = ExpChargeRack(len(slots), 3600.0 / q.mu_per_hour, full, slots[0]["charger_kw"] * 1000.0,
                            seed=random_streams(sc.seed)["charge"])
        devices: dict[int, Device] = {s["charger_unit"]: ExpChargerDevice(exp, i)
                                      for i, s in enumerate(slots)}
        return exp, "exp-charge", devices
    backend = "cython" if plant == "fast" else "python"
    p = Plant.for_station(sc.station, grid_limit_kw=sc.grid_capacity_kw, backend=backend,
                          rack=RackParams(t_amb_c=sc.ambient_c))
    return p, plant, {s["charger_unit"]: ChargerDevice(p, i) for i, s in enumerate(slots)}


def fleet_for(sc: Scenario) -> list[VehicleModel]:
    """The plant's vehicle models, weighted as the scenario's demand says."""
    known = {m.name: m for m in (*NIO_FLEET, *PARTNER_MODELS)}
    codes = {name: code for code, name in sc.station.get("model_by_code", {}).items()}
    out: list[VehicleModel] = []
    for name, w in sc.demand.models.items():
        base = known.get(name)
        if base is None:  # a model from a custom config: it brings its first compatible pack type
            types = [t for t in sc.station["compatibility"][name] if t in PACK_TYPES]
            base = VehicleModel(name, 0, 1.0, {types[0]: 1.0})
        packs = {sc.rack[0].pack_type: 1.0} if sc.queueing is not None else base.packs
        if w > 0:
            out.append(VehicleModel(base.name, codes.get(name, base.code), w, packs))
    return out


def stock_rack(sc: Scenario) -> dict[int, PackRecord]:
    """Slot -> pack at the start, as ``[rack]`` says (SoC drawn from the run's "stock" stream)."""
    rng = np.random.Generator(np.random.PCG64(random_streams(sc.seed)["stock"]))
    out: dict[int, PackRecord] = {}
    slot = 0
    for group in sc.rack:
        lo, hi = group.soc
        for _ in range(group.count):
            soc = (lo + (hi - lo) * float(rng.random())) / 100.0
            out[slot] = PackRecord(slot + 1, group.pack_type, soc, temp_c=sc.ambient_c)
            slot += 1
    return out


def arrival_process(sc: Scenario) -> ArrivalProcess:
    """The demand's vehicles (``[demand]``): times, models, packs, patience and balking draws."""
    d = sc.demand
    rates = list(d.rate_per_hour) * (24 if len(d.rate_per_hour) == 1 else 1)
    patient = sc.queueing is not None or d.patience_s <= 0
    return ArrivalProcess(
        seed=random_streams(sc.seed)["arrivals"], rates_per_hour=[r * d.scale for r in rates],
        fleet=fleet_for(sc),
        soc_lo=d.arrival_soc[0] / 100.0, soc_hi=d.arrival_soc[1] / 100.0,
        patience_mean_s=math.inf if patient else d.patience_s,
        balk_from=d.balk_from if d.balk_from else 10**9, balk_all=max(d.balk_all, d.balk_from + 1),
    )


def listed_arrivals(sc: Scenario) -> list[Arrival]:
    """The vehicles of ``[[arrivals]]``: patient, never balking."""
    codes = {name: int(code) for code, name in sc.station.get("model_by_code", {}).items()}
    known = {m.name: m.code for m in (*NIO_FLEET, *PARTNER_MODELS)}
    out = []
    for k, v in enumerate(sc.arrivals):
        model = VehicleModel(v.model, codes.get(v.model, known.get(v.model, 0)), 1.0, {v.pack_type: 1.0})
        pack = PackRecord(LISTED_PACK_ID + k, v.pack_type, v.soc / 100.0, temp_c=30.0)
        out.append(Arrival(v.at_s, LISTED_VEHICLE_ID + k, model, pack, math.inf, 1.0))
    return out
