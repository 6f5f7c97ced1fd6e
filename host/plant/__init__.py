"""Plant models of the station: packs, chargers, bay mechanics, vehicles, grid.

- :mod:`host.plant.charging`: :class:`Plant`, packs and chargers of whole racks (struct-of-arrays,
  stepped by the compiled kernel ``_fastplant`` or the pure-Python ``refkernel``), event-time queries.
- :mod:`host.plant.charger_regs`: the charger register table over the plant state (the device
  on the bus is :mod:`host.devices.charger`).
- :mod:`host.plant.expcharge`: the queueing-validation plant (exponential charge work).
- :mod:`host.plant.bay`: the bay remote-I/O module and the mechanics behind it (event-driven).
- :mod:`host.plant.vehicles`: seeded arrivals with a daily profile, fleet mix, balking, reneging.
- :mod:`host.plant.grid`: connection limit, time-of-use prices, outage window.
- :mod:`host.plant.standalone`: plant-only station runs (no firmware), for benchmarks and the
  network twin (:mod:`host.fleet`).
- :mod:`host.plant.params`: pack types, charger and rack parameters.
"""
