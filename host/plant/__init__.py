"""Plant models of the station: packs, chargers, bay mechanics, vehicles, grid.

- :mod:`host.plant.rack`: :class:`Plant`, packs and chargers of whole racks (struct-of-arrays,
  stepped by the compiled kernel ``_fastplant`` or the pure-Python ``refkernel``).
- :mod:`host.plant.charger_regs`: the charger register map over the plant state.
- :mod:`host.plant.params`: pack types, charger and rack parameters.
"""
