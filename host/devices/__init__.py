"""The station's field devices as Modbus slaves, backed by the plant: one layer that the
simulator's buses (``host.sim.buses``: ``direct`` and ``wire``) and the HIL rig's line
servers (``hil.emulators``, ``hil.targets.pico_field``) all sit on.

- :mod:`host.devices.codes`: function and exception codes, ``ModbusError`` and
  ``NoReply``, and the ``Device`` interface every device implements.
- :mod:`host.devices.rtu`: the slave side of Modbus RTU (request framing, PDU dispatch).
- :mod:`host.devices.charger_regs`: the charger's register table over the plant's arrays.
- :mod:`host.devices.charger`: a charger module over one slot of the plant.
- :mod:`host.devices.bay`: the bay remote-I/O module over the bay mechanics.
"""
