# Protocols spoken by the controller: CRC-16 and the Modbus RTU master.
