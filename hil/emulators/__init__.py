"""Emulated field devices for the HIL rig: chargers and the bay remote-I/O module as
Modbus RTU slaves served by pymodbus on serial lines, backed by the plant models.

- :mod:`hil.emulators.modbus`: devices of one line behind a pymodbus serial server.
- :mod:`hil.emulators.charger`: a charger module over one slot of the plant.
- :mod:`hil.emulators.field`: plant, chargers and bay I/O of a station, on their lines,
  advanced in real time.
"""
