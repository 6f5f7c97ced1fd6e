"""Register maps of the station's Modbus devices: the charger modules and the
bay remote-I/O module. docs/register-map.md is the spec; this module holds the
same numbers for firmware, simulator and HIL emulators alike.

Addresses are PDU addresses (0-based, as sent on the wire). Scaled values are
integers: ``raw = round(value / scale)``; a ``_SCALE`` constant names the unit
step (e.g. SCALE_DECI: 0.1). 32-bit values take two registers, high word first.
"""

from firmware.compat import const

# ---- Unit IDs on the field bus ----------------------------------------------
CHARGER_UNIT_FIRST = const(1)  # chargers are 1..CHARGER_UNIT_LAST, one per rack slot
CHARGER_UNIT_LAST = const(40)
BAY_IO_UNIT_FIRST = const(100)  # bay k (0-based) is unit 100 + k
BROADCAST = const(0)

# ---- Charger: input registers (FC04) -------------------------------------------
# Status block: one FC04 read of CHG_STATUS_COUNT registers from CHG_STATUS_BASE.
CHG_STATUS_BASE = const(0)
CHG_IR_STATUS = const(0)  # enum CHG_ST_*
CHG_IR_PACK_PRESENT = const(1)  # 0/1
CHG_IR_PACK_ID_HI = const(2)  # u32 pack serial, high word
CHG_IR_PACK_ID_LO = const(3)
CHG_IR_PACK_TYPE = const(4)  # enum PACK_*
CHG_IR_SOC = const(5)  # u16, 0.1 %
CHG_IR_SOH = const(6)  # u16, 0.1 %
CHG_IR_VOLTAGE = const(7)  # u16, 0.1 V, pack terminal voltage
CHG_IR_CURRENT = const(8)  # s16, 0.1 A, + = into the pack
CHG_IR_POWER = const(9)  # s16, 0.1 kW, + = into the pack
CHG_IR_TEMP_MAX = const(10)  # s16, 0.1 degC, hottest cell
CHG_IR_TEMP_MIN = const(11)  # s16, 0.1 degC, coldest cell
CHG_IR_FAULTS = const(12)  # bits CHG_FAULT_*
CHG_IR_ENERGY_HI = const(13)  # u32 Wh delivered into packs since manufacture, wraps
CHG_IR_ENERGY_LO = const(14)
CHG_IR_HEARTBEAT = const(15)  # u16, charger's own counter, +1 every 1000 ms, wraps
CHG_STATUS_COUNT = const(16)

# Info block: rated values and pack details, read once per pack or on start-up.
CHG_INFO_BASE = const(32)
CHG_IR_MODEL = const(32)  # u16 model code
CHG_IR_FW_VERSION = const(33)  # major << 8 | minor
CHG_IR_RATED_POWER = const(34)  # u16, 0.1 kW (625 = 62.5 kW)
CHG_IR_RATED_V_MAX = const(35)  # u16, 0.1 V
CHG_IR_RATED_V_MIN = const(36)  # u16, 0.1 V
CHG_IR_RATED_I_MAX = const(37)  # u16, 0.1 A
CHG_IR_PACK_CAPACITY = const(38)  # u16, 0.1 kWh nominal capacity of the pack present
CHG_IR_PACK_CYCLES = const(39)  # u16, full-equivalent cycles reported by the pack BMS
CHG_IR_COOLANT_TEMP = const(40)  # s16, 0.1 degC, module coolant outlet
CHG_INFO_COUNT = const(9)

# ---- Charger: holding registers (FC03/06/16) --------------------------------------
# Control block: one FC16 write of CHG_CONTROL_COUNT registers sets enable,
# limits and heartbeat together.
CHG_CONTROL_BASE = const(0)
CHG_HR_ENABLE = const(0)  # 0 stop, 1 charge; other values -> exception 03
CHG_HR_I_LIMIT = const(1)  # u16, 0.1 A, 0..rated
CHG_HR_V_LIMIT = const(2)  # u16, 0.1 V, 0..rated
CHG_HR_P_LIMIT = const(3)  # u16, 0.1 kW, 0..rated
CHG_HR_TARGET_SOC = const(4)  # u16, 0.1 %, charging stops here (status FULL)
CHG_HR_HEARTBEAT = const(5)  # u16, controller writes a changing value
CHG_CONTROL_COUNT = const(6)
CHG_HR_WATCHDOG_MS = const(6)  # u16 ms, 500..60000, default 5000
CHG_HR_FAULT_RESET = const(7)  # write 1 to clear latched faults; reads 0
CHG_HOLDING_COUNT = const(8)
CHG_WATCHDOG_DEFAULT_MS = const(5000)
CHG_WATCHDOG_MIN_MS = const(500)
CHG_WATCHDOG_MAX_MS = const(60000)

# Charger status codes (CHG_IR_STATUS)
CHG_ST_STANDBY = const(0)  # no pack
CHG_ST_READY = const(1)  # pack present, not charging
CHG_ST_CHARGING = const(2)
CHG_ST_FULL = const(3)  # target SoC reached, output off
CHG_ST_DERATED = const(4)  # charging below the limits (temperature, taper)
CHG_ST_FAULT = const(5)  # output off, see CHG_IR_FAULTS
CHG_ST_WATCHDOG = const(6)  # output off: heartbeat unchanged for CHG_HR_WATCHDOG_MS
CHG_ST_NAMES = ("standby", "ready", "charging", "full", "derated", "fault", "watchdog")

# Charger fault bits (CHG_IR_FAULTS). Any bit set means the output is off.
CHG_FAULT_OVER_VOLTAGE = const(0x0001)
CHG_FAULT_OVER_CURRENT = const(0x0002)
CHG_FAULT_OVER_TEMP = const(0x0004)  # cell above the no-charge limit
CHG_FAULT_UNDER_TEMP = const(0x0008)
CHG_FAULT_COOLANT = const(0x0010)  # coolant flow or temperature
CHG_FAULT_ISOLATION = const(0x0020)  # HV insulation resistance low
CHG_FAULT_BMS_COMM = const(0x0040)  # charger lost its link to the pack BMS
CHG_FAULT_THERMAL_RUNAWAY = const(0x0080)  # GB/T 51077-2024 12.4: stop charging, isolate pack
CHG_FAULT_CONNECTOR = const(0x0100)  # pack connector not mated or overheated
CHG_FAULT_HEARTBEAT = const(0x0200)  # latched when the watchdog stopped charging
CHG_FAULT_INTERNAL = const(0x0400)
CHG_FAULT_GRID = const(0x0800)  # AC input out of range
CHG_FAULT_CELL_IMBALANCE = const(0x1000)
CHG_FAULT_NAMES = (
    "over_voltage", "over_current", "over_temp", "under_temp", "coolant", "isolation",
    "bms_comm", "thermal_runaway", "connector", "heartbeat", "internal", "grid", "cell_imbalance",
)

# Pack types (CHG_IR_PACK_TYPE, BAY_IR_PACK_TYPE).
PACK_NONE = const(0)
PACK_75 = const(1)  # 75 kWh, 400 V class
PACK_100 = const(2)  # 100 kWh, 400 V class
PACK_150 = const(3)  # 150 kWh, 400 V class
PACK_100_HV = const(4)  # 100 kWh, 800 V class
PACK_STD_60 = const(5)  # 60 kWh standardised partner pack, 400 V class (108s)
# Per pack type: (capacity 0.1 kWh, V min 0.1 V, V nominal 0.1 V, V max 0.1 V); index = type.
PACK_PARAMS = (
    (0, 0, 0, 0),
    (750, 3200, 3700, 4200),
    (1000, 3200, 3700, 4200),
    (1500, 3200, 3700, 4200),
    (1000, 6000, 7200, 8000),
    (600, 3240, 4000, 4536),
)

# Rated values of the modelled charger module (62.5 kW, liquid-cooled, 98 % peak).
CHG_MODEL_CODE = const(0x0625)
CHG_RATED_POWER = const(625)  # 0.1 kW
CHG_RATED_V_MAX = const(8000)  # 0.1 V
CHG_RATED_V_MIN = const(2000)  # 0.1 V
CHG_RATED_I_MAX = const(2000)  # 0.1 A
CHG_PEAK_EFFICIENCY = const(980)  # 0.1 %

# ---- Bay remote-I/O module: coils (FC01/05/15), outputs ---------------------------
# Every coil falls to 0 when the module's comm watchdog (BAY_HR_COMM_WATCHDOG_MS) expires.
BAY_CO_LIFT_UP = const(0)  # run vehicle lift up (stops itself at the up limit)
BAY_CO_LIFT_DOWN = const(1)  # run vehicle lift down
BAY_CO_POSITIONER = const(2)  # 1 engage centring rollers/push rods, 0 retract
BAY_CO_RGV_RAISE = const(3)  # 1 raise swap platform (tool + carrier) to the pack, 0 lower
BAY_CO_TOOL_UNBOLT = const(4)  # run all nutrunners in the loosen direction
BAY_CO_TOOL_BOLT = const(5)  # run all nutrunners in the tighten direction
BAY_CO_TOOL_LOCK_SPEED = const(6)  # 0 docking speed (fast, low torque), 1 locking speed
BAY_CO_PACK_GRIP = const(7)  # 1 lock the pack onto the carrier
BAY_CO_CARRIER_TO_RACK = const(8)  # carry to the rack slot in BAY_HR_TARGET_SLOT
BAY_CO_CARRIER_TO_BAY = const(9)  # fetch from the rack slot in BAY_HR_TARGET_SLOT to the bay
BAY_CO_DOOR_OPEN = const(10)  # entry door / barrier
BAY_CO_EXIT_OPEN = const(11)  # exit barrier
BAY_CO_BEACON_GREEN = const(12)  # drive in / drive off
BAY_CO_BEACON_AMBER = const(13)  # swap in progress, stay in the car
BAY_CO_BEACON_RED = const(14)  # stop / fault
BAY_CO_VENTILATION = const(15)  # forced ventilation (smoke alarm, GB/T 51077)
BAY_CO_CARRIER_HOME = const(16)  # bring the carrier back to the bay (empty after an isolation move)
BAY_COIL_COUNT = const(17)

# ---- Bay remote-I/O module: discrete inputs (FC02), sensors ----------------------
BAY_DI_VEHICLE_PRESENT = const(0)
BAY_DI_VEHICLE_POSITIONED = const(1)  # wheels in the V-grooves, positioner closed
BAY_DI_LIFT_UP = const(2)  # up limit switch
BAY_DI_LIFT_DOWN = const(3)  # down limit switch
BAY_DI_RGV_UP = const(4)  # platform at the pack
BAY_DI_RGV_DOWN = const(5)
BAY_DI_PACK_ON_CARRIER = const(6)
BAY_DI_PACK_GRIPPED = const(7)
BAY_DI_PACK_SEATED = const(8)  # pack fully docked in the vehicle
BAY_DI_CARRIER_AT_BAY = const(9)
BAY_DI_CARRIER_AT_RACK = const(10)
BAY_DI_ELECTRICAL_OK = const(11)  # vehicle self-check: HV/LV connector mated
BAY_DI_ESTOP_OK = const(12)  # NC chain: 1 healthy, 0 pressed or wire broken
BAY_DI_DOOR_CLOSED = const(13)
BAY_DI_CURTAIN_CLEAR = const(14)  # light curtain unbroken
BAY_DI_SMOKE_CLEAR = const(15)  # NC detector contact: 1 no smoke, 0 alarm or wire broken
BAY_DI_MANUAL_MODE = const(16)  # key switch in manual (GB/T 29772 manual mode)
BAY_DI_TOOL_BUSY = const(17)  # nutrunners running
BAY_DI_POSITIONER_OPEN = const(18)  # positioner fully retracted
BAY_DI_BOLT_RELEASED_BASE = const(32)  # + bolt index: bolt fully out of its thread
BAY_DI_BOLT_TORQUE_OK_BASE = const(48)  # + bolt index: last tightening ended in its window
BAY_DI_COUNT = const(64)  # one FC02 read of 0..63 gets every sensor
BOLT_COUNT = const(8)  # bolts per pack in this design (map has room for 16)
BOLT_MAX = const(16)

# ---- Bay remote-I/O module: input registers (FC04) --------------------------------
# Identity of the vehicle in the bay, from the RFID/ANPR reader.
BAY_IR_ID_STATUS = const(0)  # enum ID_*
BAY_IR_ID_SEQ = const(1)  # u16, +1 on every new identification
BAY_IR_VEHICLE_ID_HI = const(2)  # u32 vehicle ID, high word
BAY_IR_VEHICLE_ID_LO = const(3)
BAY_IR_VEHICLE_MODEL = const(4)  # u16 model code
BAY_IR_PACK_ID_HI = const(5)  # u32 serial of the pack in the vehicle
BAY_IR_PACK_ID_LO = const(6)
BAY_IR_PACK_TYPE = const(7)  # enum PACK_*
BAY_IR_ID_FLAGS = const(8)  # bit set ID_FLAG_*, from the operator's back end via the reader
BAY_ID_COUNT = const(9)
# Nutrunner results of the last run, per bolt.
BAY_IR_TORQUE_BASE = const(16)  # + bolt: u16, 0.1 N*m, peak torque of the last run
BAY_IR_ANGLE_BASE = const(32)  # + bolt: u16, 1 degree turned in the last run
BAY_IR_COUNT = const(48)  # one FC04 read of 0..47 gets identity and every bolt
ID_NONE = const(0)  # no tag read yet (or vehicle left)
ID_VALID = const(1)
ID_UNKNOWN = const(2)  # tag read but not decodable
ID_FLAG_SUBSCRIBED = const(1)  # the vehicle has an active battery subscription

# ---- Bay remote-I/O module: holding registers (FC03/06/16) ------------------------
BAY_HR_TARGET_SLOT = const(0)  # rack slot for the next carrier move (0-based)
BAY_HR_TORQUE_TARGET = const(1)  # 0.1 N*m: nutrunners stop locking at this torque
BAY_HR_COMM_WATCHDOG_MS = const(2)  # u16 ms; coils drop to 0 after this silence (0 = off)
BAY_HR_DOCK_RPM = const(3)  # nutrunner speed while docking (TOOL_LOCK_SPEED 0), rpm; 0 = its own
BAY_HR_LOCK_RPM = const(4)  # nutrunner speed while locking to the torque target, rpm; 0 = its own
BAY_HOLDING_COUNT = const(5)


# ---- Conversions -------------------------------------------------------------------
def s16(raw):
    """Register value (0..65535) as a signed 16-bit integer."""
    return raw - 0x10000 if raw & 0x8000 else raw


def u16(value):
    """Signed integer (-32768..65535) as a register value."""
    if value < -0x8000 or value > 0xFFFF:
        raise ValueError("value does not fit in 16 bits")
    return value & 0xFFFF


def u32(hi, lo):
    """Two registers, high word first, as an unsigned 32-bit integer."""
    return (hi << 16) | lo


def split32(value):
    """Unsigned 32-bit integer as (high word, low word)."""
    if value < 0 or value > 0xFFFFFFFF:
        raise ValueError("value does not fit in 32 bits")
    return (value >> 16) & 0xFFFF, value & 0xFFFF
