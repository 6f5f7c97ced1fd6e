"""The HIL rig's field: the shared field devices (``host.devices``: chargers and the bay
remote-I/O module, backed by the plant models) as Modbus RTU slaves served by pymodbus
on serial lines.

- :mod:`hil.emulators.modbus`: devices of one line behind a pymodbus serial server.
- :mod:`hil.emulators.field`: plant, chargers and bay I/O of a station, on their lines,
  advanced in real time.
"""
