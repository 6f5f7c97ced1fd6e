"""Station configuration: one JSON file, validated once at boot.

``validate(cfg) -> normalised dict`` checks every field and fills defaults;
``ConfigError`` names the field path and the reason, e.g.
``slots[3].charger_unit: duplicate address 4``. The schema is in docs/config.md.
Unknown fields are errors (they are usually typos); keys starting with ``_`` are
comments and are dropped. ``validate(cfg, warn)`` also calls ``warn(path, reason)`` for
each limit the controller would write above what the register map's charger takes.
"""

try:
    import json
except ImportError:  # some MicroPython builds still name it ujson
    import ujson as json  # type: ignore

from firmware.hal import char_time_us, frame_gap_us
from firmware.proto import fieldbus as fb
from firmware.proto import regmap as rm


class ConfigError(ValueError):
    def __init__(self, path, reason):
        super().__init__(path + ": " + reason)
        self.path = path
        self.reason = reason


_REQ = object()  # marks a required field in a spec
_POS = object()  # lower bound: strictly greater than zero

# Swap steps in procedure order; each needs a timeout.
SWAP_STEPS = (
    "identify", "authorise", "position", "lift", "unbolt", "remove", "store",
    "fetch", "install", "bolt", "verify", "lower", "release",
)

MODBUS_MIN_UNIT = 1
MODBUS_MAX_UNIT = 247

# (name, kind, low, high, default). kind: int, num, str, bool. Bounds inclusive.
_BUS = (
    ("baudrate", "int", 1200, 1000000, _REQ),
    ("timeout_ms", "int", 1, 10000, _REQ),
    ("retries", "int", 0, 10, 2),
    ("offline_after", "int", 1, 100, 3),
    ("probe_interval_ms", "int", 10, 600000, 5000),
)
_BAY_IO_BUS = _BUS + (("unit", "int", MODBUS_MIN_UNIT, MODBUS_MAX_UNIT, _REQ),)
# The reads the controller makes on each line (function, count): firmware.core.chargers
# and firmware.core.baylink. The bus timeout must cover the longest reply's wire time.
_BUS_READS = {
    "chargers": ((fb.FC_READ_INPUT_REGISTERS, rm.CHG_STATUS_COUNT),
                 (fb.FC_READ_INPUT_REGISTERS, rm.CHG_INFO_COUNT)),
    "bay_io": ((fb.FC_READ_COILS, rm.BAY_COIL_COUNT), (fb.FC_READ_DISCRETE_INPUTS, rm.BAY_DI_COUNT),
               (fb.FC_READ_INPUT_REGISTERS, rm.BAY_IR_COUNT)),
}

_PACK_TYPE = (
    ("code", "int", 1, 65535, None),  # the charger's / reader's pack type code (regmap PACK_*)
    ("capacity_kwh", "num", _POS, 1000, _REQ),
    ("nominal_v", "num", _POS, 1500, _REQ),
    ("max_charge_v", "num", _POS, 1500, None),  # None: nominal_v * 1.15
    ("max_charge_kw", "num", _POS, 1000, _REQ),
    ("max_charge_a", "num", _POS, 2000, _REQ),
    ("cell_temp_min_c", "num", -40, 40, 0),
    ("cell_temp_max_c", "num", 20, 90, 60),
)

_SLOT = (
    ("id", "str", 1, 16, _REQ),
    ("charger_unit", "int", MODBUS_MIN_UNIT, MODBUS_MAX_UNIT, _REQ),
    ("charger_kw", "num", _POS, 1000, None),  # None: limits.charger_kw
)

_ISOLATION = (
    ("id", "str", 1, 16, _REQ),
    ("capacity", "int", 1, 8, 1),
)

_RUNAWAY = (
    ("over_temp_c", "num", 30, 150, _REQ),
    ("rise_c_per_min", "num", _POS, 600, _REQ),
    ("rise_window_ms", "int", 1000, 600000, 30000),
    ("smoke_latch", "bool", None, None, True),
)

_LIMITS = (
    ("grid_kw", "num", _POS, 100000, _REQ),
    ("charger_kw", "num", _POS, 1000, _REQ),
    ("handover_soc", "num", _POS, 100, _REQ),
    ("full_soc", "num", _POS, 100, 100),
    ("stop_below_c", "num", -40, 40, 0),
    ("cold_full_c", "num", -40, 40, 10),
    ("cold_derate_pct", "num", 0, 100, 50),
    ("derate_from_c", "num", 0, 90, 45),
    ("derate_min_pct", "num", 0, 100, 25),
    ("stop_above_c", "num", 0, 90, 55),
    ("charge_min_on_ms", "int", 0, 3600000, 60000),  # a charger switched on stays on this long
    ("runaway", "obj", _RUNAWAY, None, _REQ),
    ("heartbeat_ms", "int", 100, 60000, _REQ),
    ("telemetry_stale_ms", "int", 100, 600000, _REQ),
)

_TOU_BAND = (
    ("start_min", "int", 0, 1439, _REQ),
    ("end_min", "int", 1, 1440, _REQ),
    ("price", "num", 0, 1000000, _REQ),
)

_TOU = (
    ("bands", "list", _TOU_BAND, None, _REQ),
    ("expensive_above", "num", 0, 1000000, _REQ),
    ("min_ready", "int", 0, 64, 2),
    ("expensive_pct", "num", 0, 100, 30),
)

_BAY = (
    ("bolt_count", "int", 1, 16, _REQ),  # the bay I/O map has room for 16
    ("torque_nm", "window", 0, 2000, _REQ),
    ("angle_deg", "window", 0, 36000, _REQ),
    ("breakaway_nm", "window", 0, 4000, None),  # unbolting; None: 0.5x min .. 1.5x max of torque_nm
    ("docking_rpm", "num", _POS, 10000, _REQ),
    ("locking_rpm", "num", _POS, 10000, _REQ),
    ("pack_wait_ms", "int", 0, 3600000, 0),  # an authorised vehicle waits this long for a charged pack
)

_TIMEOUTS = tuple((s, "int", 100, 600000, _REQ) for s in SWAP_STEPS)

_JOURNAL = (
    ("max_bytes", "int", 4096, 16 * 1024 * 1024, 32768),
    ("checkpoint_every", "int", 1, 100000, 200),
)

_MQTT = (
    ("host", "str", 1, 64, _REQ),
    ("port", "int", 1, 65535, 1883),
    ("user", "str", 1, 64, None),
    ("password", "str", 1, 64, None),
    ("key", "str", 64, 128, _REQ),  # hex: the command MAC key, 32..64 bytes
    ("keepalive_s", "int", 10, 3600, 60),
    ("status_every_s", "int", 5, 86400, 60),
    ("backoff_min_ms", "int", 100, 60000, 1000),
    ("backoff_max_ms", "int", 1000, 3600000, 60000),
    ("max_packet", "int", 512, 16384, 2048),
)
_HEX = "0123456789abcdefABCDEF"

_AUTH = (
    ("subscription", "bool", None, None, False),
    ("allow", "idlist", 1, 32, ()),
)


def _num_type(v):
    t = type(v)
    return t is int or t is float  # bool is excluded: type(True) is bool


def _check_bounds(v, path, lo, hi):
    if lo is _POS:
        if not v > 0:
            raise ConfigError(path, "must be > 0 (got %r)" % (v,))
    elif lo is not None and v < lo:
        raise ConfigError(path, "must be >= %r (got %r)" % (lo, v))
    if hi is not None and v > hi:
        raise ConfigError(path, "must be <= %r (got %r)" % (hi, v))


def _str(v, path, lo, hi):
    if type(v) is not str:
        raise ConfigError(path, "expected a string")
    if not (lo <= len(v) <= hi):
        raise ConfigError(path, "length must be %d..%d" % (lo, hi))
    return v


def _seq(v):
    # JSON gives lists; validate's own output has tuples, and must validate again
    return type(v) is list or type(v) is tuple


def _value(v, path, kind, lo, hi):
    if kind == "int":
        if type(v) is not int:
            raise ConfigError(path, "expected an integer")
        _check_bounds(v, path, lo, hi)
        return v
    if kind == "num":
        if not _num_type(v):
            raise ConfigError(path, "expected a number")
        _check_bounds(v, path, lo, hi)
        return float(v)
    if kind == "str":
        return _str(v, path, lo, hi)
    if kind == "bool":
        if type(v) is not bool:
            raise ConfigError(path, "expected true or false")
        return v
    if kind == "obj":
        return _fields(v, path, lo)
    if kind == "list":
        if not _seq(v):
            raise ConfigError(path, "expected a list")
        return [_fields(item, "%s[%d]" % (path, i), lo) for i, item in enumerate(v)]
    if kind == "window":
        if not _seq(v) or len(v) != 2:
            raise ConfigError(path, "expected [min, max]")
        a = _value(v[0], path + "[0]", "num", lo, hi)
        b = _value(v[1], path + "[1]", "num", lo, hi)
        if not a < b:
            raise ConfigError(path, "min must be below max")
        return (a, b)
    if kind == "idlist":
        if not _seq(v):
            raise ConfigError(path, "expected a list")
        seen = set()
        for i, item in enumerate(v):
            s = _str(item, "%s[%d]" % (path, i), lo, hi)
            if s in seen:
                raise ConfigError("%s[%d]" % (path, i), "duplicate %r" % s)
            seen.add(s)
        return tuple(v)
    raise ConfigError(path, "internal: unknown kind " + kind)


def _obj(v, path):
    if type(v) is not dict:
        raise ConfigError(path, "expected an object")


def _join(path, key):
    return path + "." + key if path else key


def _fields(src, path, spec):
    _obj(src, path or "config")
    for key in src:
        if type(key) is str and key.startswith("_"):
            continue
        for f in spec:
            if f[0] == key:
                break
        else:
            raise ConfigError(_join(path, str(key)), "unknown field")
    out = {}
    for name, kind, lo, hi, default in spec:
        p = _join(path, name)
        if name not in src or (default is None and src[name] is None):  # null: the optional default
            if default is _REQ:
                raise ConfigError(p, "missing")
            out[name] = default
        else:
            out[name] = _value(src[name], p, kind, lo, hi)
    return out


def _ident(v, path):
    return _str(v, path, 1, 32)


def _keyed(src, path, what):
    _obj(src, path)
    if not src:
        raise ConfigError(path, "at least one %s is needed" % what)


def _pack_types(src):
    _keyed(src, "pack_types", "pack type")
    out = {}
    by_code = {}
    for tid in sorted(src):  # sorted: the same error on every interpreter
        p = "pack_types." + tid
        _ident(tid, p)
        pt = _fields(src[tid], p, _PACK_TYPE)
        if pt["cell_temp_min_c"] >= pt["cell_temp_max_c"]:
            raise ConfigError(p + ".cell_temp_min_c", "must be below cell_temp_max_c")
        if pt["max_charge_v"] is None:
            pt["max_charge_v"] = pt["nominal_v"] * 1.15
        elif pt["max_charge_v"] < pt["nominal_v"]:
            raise ConfigError(p + ".max_charge_v", "must not be below nominal_v")
        _unique_code(by_code, pt["code"], tid, p + ".code")
        out[tid] = pt
    return out, by_code


def _unique_code(by_code, code, name, path):
    if code is None:
        return
    if code in by_code:
        raise ConfigError(path, "duplicate code %d (also %s)" % (code, by_code[code]))
    by_code[code] = name


def _model_codes(src, compat):
    _obj(src, "model_codes")
    by_code = {}
    for model in sorted(src):
        p = "model_codes." + model
        if model not in compat:
            raise ConfigError(p, "unknown vehicle model (not in compatibility)")
        _unique_code(by_code, _value(src[model], p, "int", 1, 65535), model, p)
    return by_code


def _compatibility(src, pack_types):
    _keyed(src, "compatibility", "vehicle model")
    out = {}
    for model in sorted(src):
        p = "compatibility." + model
        _ident(model, p)
        types = src[model]
        if not _seq(types) or not types:
            raise ConfigError(p, "expected a non-empty list of pack types")
        for i, t in enumerate(types):
            tp = "%s[%d]" % (p, i)
            if type(t) is not str:
                raise ConfigError(tp, "expected a pack type id")
            if t not in pack_types:
                raise ConfigError(tp, "unknown pack type %r" % t)
            if t in types[:i]:
                raise ConfigError(tp, "duplicate pack type %r" % t)
        out[model] = tuple(types)
    return out


def _slots(src, limits):
    if not _seq(src):
        raise ConfigError("slots", "expected a list")
    if not 1 <= len(src) <= 64:
        raise ConfigError("slots", "need 1..64 slots (got %d)" % len(src))
    ids = {}
    units = {}
    out = []
    for i, s in enumerate(src):
        p = "slots[%d]" % i
        slot = _fields(s, p, _SLOT)
        if slot["id"] in ids:
            raise ConfigError(p + ".id", "duplicate id %r (also slots[%d])" % (slot["id"], ids[slot["id"]]))
        u = slot["charger_unit"]
        if u in units:
            raise ConfigError(p + ".charger_unit", "duplicate address %d (also slots[%d])" % (u, units[u]))
        ids[slot["id"]] = i
        units[u] = i
        if slot["charger_kw"] is None:
            slot["charger_kw"] = limits["charger_kw"]
        out.append(slot)
    return out


def _below(lim, a, b, strict=True):
    if lim[a] > lim[b] or (strict and lim[a] == lim[b]):
        raise ConfigError("limits." + a, "must be below limits.%s (%r vs %r)" % (b, lim[a], lim[b]))


def _check_limits(lim):
    # JEITA bands in order: none < stop_below_c <= cold derate < cold_full_c .. derate_from_c < hot
    _below(lim, "stop_below_c", "cold_full_c", strict=False)
    _below(lim, "cold_full_c", "derate_from_c")
    _below(lim, "derate_from_c", "stop_above_c")
    if lim["handover_soc"] > lim["full_soc"]:
        raise ConfigError("limits.handover_soc", "must not exceed limits.full_soc")
    if lim["runaway"]["over_temp_c"] <= lim["stop_above_c"]:
        raise ConfigError("limits.runaway.over_temp_c", "must be above limits.stop_above_c")
    if lim["heartbeat_ms"] >= lim["telemetry_stale_ms"]:
        raise ConfigError("limits.heartbeat_ms", "must be below limits.telemetry_stale_ms")


def _check_bus_timeout(name, bus):
    """Refuse a timeout that cannot cover the line's longest reply: the device answers
    after t3.5 of silence at the earliest, and then the reply takes its wire time."""
    baud = bus["baudrate"]
    n = 0
    for fc, count in _BUS_READS[name]:
        n = max(n, fb.reply_len(fc, count))
    wire_us = n * char_time_us(baud)
    need = (wire_us + frame_gap_us(baud) + 999) // 1000
    if bus["timeout_ms"] < need:
        raise ConfigError(
            "buses.%s.timeout_ms" % name,
            "%d ms cannot cover the line's longest reply (%d bytes, %d ms on the wire at %d baud) "
            "after t3.5 (%d us) of silence: at least %d ms" % (
                bus["timeout_ms"], n, (wire_us + 999) // 1000, baud, frame_gap_us(baud), need))


def _check_tou(tou):
    bands = sorted(tou["bands"], key=lambda b: b["start_min"])
    for i, b in enumerate(tou["bands"]):
        if b["end_min"] <= b["start_min"]:
            raise ConfigError("tou.bands[%d].end_min" % i, "must be after start_min")
    for i in range(1, len(bands)):
        if bands[i]["start_min"] < bands[i - 1]["end_min"]:
            raise ConfigError("tou.bands", "bands overlap at minute %d" % bands[i]["start_min"])
    tou["bands"] = bands


def _check_mqtt(mq):
    key = mq["key"]
    if len(key) % 2:
        raise ConfigError("mqtt.key", "an even number of hex digits (whole bytes)")
    for i, ch in enumerate(key):
        if ch not in _HEX:
            raise ConfigError("mqtt.key", "not a hex digit at position %d" % i)
    if mq["password"] is not None and mq["user"] is None:
        raise ConfigError("mqtt.password", "needs mqtt.user (MQTT sends no password without a user name)")
    if mq["backoff_max_ms"] < mq["backoff_min_ms"]:
        raise ConfigError("mqtt.backoff_max_ms", "must not be below mqtt.backoff_min_ms")


# Keys validate adds to its output; recomputed (not trusted) when its output comes back.
_DERIVED = ("pack_type_by_code", "model_by_code")


def _setpoint_warnings(out, warn):
    """Limits the controller would write above the range the register map gives the
    charger's limit registers (0 up to the rating of its 62.5 kW, 200 A, 800 V module, in
    16 bits). Warnings, not errors: a charger of another rating reports it, and the
    controller keeps each charger within what it reports (docs/register-map.md)."""
    from firmware.proto import regmap as rm

    pts = out["pack_types"]
    pack_kw = 0
    for pt in pts.values():
        pack_kw = max(pack_kw, pt["max_charge_kw"])  # no power setpoint goes above it
    kw = out["limits"]["charger_kw"]
    _above(warn, "limits.charger_kw", min(kw, pack_kw), "kW", rm.CHG_RATED_POWER, "CHG_HR_P_LIMIT")
    for i, s in enumerate(out["slots"]):
        if s["charger_kw"] != kw:
            _above(warn, "slots[%d].charger_kw" % i, min(s["charger_kw"], pack_kw), "kW", rm.CHG_RATED_POWER,
                   "CHG_HR_P_LIMIT")
    for name in sorted(pts):
        p = "pack_types." + name
        pt = pts[name]
        _above(warn, p + ".max_charge_a", pt["max_charge_a"], "A", rm.CHG_RATED_I_MAX, "CHG_HR_I_LIMIT")
        _above(warn, p + ".max_charge_v", pt["max_charge_v"], "V", rm.CHG_RATED_V_MAX, "CHG_HR_V_LIMIT")


def _above(warn, path, value, unit, rated, reg):
    if round(value * 10) > rated:  # the limit registers count tenths
        warn(path, "setpoints up to %g %s, above the %g %s the register map's charger takes (%s 0..%d): "
                   "each charger is held to the rating it reports" % (value, unit, rated / 10, unit, reg,
                                                                      rated))


def validate(cfg, warn=None):
    """Check a parsed config dict; return a normalised copy (defaults filled,
    numbers as float where fractional values make sense). Raises ConfigError.
    The copy validates again to an equal copy. ``warn(path, reason)``, if given, hears
    what is valid but will not work as written (``_setpoint_warnings``)."""
    _obj(cfg, "config")
    known = (
        "station_id", "buses", "pack_types", "compatibility", "model_codes", "authorisation", "slots",
        "isolation_bay", "limits", "tou", "bay", "timeouts_ms", "journal", "mqtt",
    )
    for key in cfg:
        if key not in known and key not in _DERIVED and not (type(key) is str and key.startswith("_")):
            raise ConfigError(str(key), "unknown field")
    for key in known:
        if key not in cfg and key not in ("tou", "journal", "authorisation", "model_codes", "mqtt"):
            raise ConfigError(key, "missing")
    out = {}
    out["station_id"] = _str(cfg["station_id"], "station_id", 1, 32)
    buses = cfg["buses"]
    _obj(buses, "buses")
    for key in buses:
        if key not in ("chargers", "bay_io") and not key.startswith("_"):
            raise ConfigError("buses." + key, "unknown field")
    for key in ("chargers", "bay_io"):
        if key not in buses:
            raise ConfigError("buses." + key, "missing")
    out["buses"] = {
        "chargers": _fields(buses["chargers"], "buses.chargers", _BUS),
        "bay_io": _fields(buses["bay_io"], "buses.bay_io", _BAY_IO_BUS),
    }
    for key in ("chargers", "bay_io"):
        _check_bus_timeout(key, out["buses"][key])
    out["pack_types"], out["pack_type_by_code"] = _pack_types(cfg["pack_types"])
    out["compatibility"] = _compatibility(cfg["compatibility"], out["pack_types"])
    out["model_by_code"] = _model_codes(cfg.get("model_codes", {}), out["compatibility"])
    out["model_codes"] = {m: c for c, m in out["model_by_code"].items()}
    auth = _fields(cfg.get("authorisation", {}), "authorisation", _AUTH)
    if not auth["subscription"] and not auth["allow"]:
        raise ConfigError("authorisation", "no vehicle could be authorised: set subscription or allow")
    out["authorisation"] = auth
    lim = _fields(cfg["limits"], "limits", _LIMITS)
    _check_limits(lim)
    out["limits"] = lim
    out["slots"] = _slots(cfg["slots"], lim)
    iso = _fields(cfg["isolation_bay"], "isolation_bay", _ISOLATION)
    for i, s in enumerate(out["slots"]):
        if s["id"] == iso["id"]:
            raise ConfigError("isolation_bay.id", "same id as slots[%d]" % i)
    out["isolation_bay"] = iso
    tou = cfg.get("tou")
    if tou is not None:
        tou = _fields(tou, "tou", _TOU)
        _check_tou(tou)
    out["tou"] = tou
    out["bay"] = _fields(cfg["bay"], "bay", _BAY)
    out["timeouts_ms"] = _fields(cfg["timeouts_ms"], "timeouts_ms", _TIMEOUTS)
    out["journal"] = _fields(cfg.get("journal", {}), "journal", _JOURNAL)
    mq = cfg.get("mqtt")
    if mq is not None:
        mq = _fields(mq, "mqtt", _MQTT)
        _check_mqtt(mq)
    out["mqtt"] = mq
    if warn is not None:
        _setpoint_warnings(out, warn)
    return out


def loads(text, source="<text>", warn=None):
    """Parse JSON text and validate it. A syntax error is a ConfigError too."""
    try:
        cfg = json.loads(text)
    except ValueError as e:
        raise ConfigError(source, "invalid JSON (%s)" % (e,)) from None
    return validate(cfg, warn)


def default_path():
    """firmware/station.json next to this package (works on boards and CPython)."""
    f = globals().get("__file__")
    if f:
        i = f.rfind("/core/")
        if i >= 0:
            return f[:i] + "/station.json"
    return "firmware/station.json"


def load(path=None, warn=None):
    """Read and validate a config file (path or open text file; default station.json)."""
    if path is None:
        path = default_path()
    if hasattr(path, "read"):
        return loads(path.read(), "<file>", warn)
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(path, "cannot read (%s)" % (e,)) from None
    return loads(text, path, warn)


def tou_price(cfg, minute_of_day):
    """Price of the band holding ``minute_of_day`` (0..1439), or None without bands."""
    tou = cfg.get("tou")
    if not tou:
        return None
    m = minute_of_day % 1440
    for b in tou["bands"]:
        if b["start_min"] <= m < b["end_min"]:
            return b["price"]
    return None


def release():
    """Boot is done with the validator: drop this module so its code and schema tables
    become garbage (about 18 KiB of heap on the MicroPython unix port, less on a board).
    Anything that needs it later imports it again. References kept elsewhere (a
    ``from ... import`` of a function or of ConfigError, as board_config has) keep it
    alive: boot code forgets those modules too. A no-op on CPython."""
    from firmware.compat import forget

    forget("firmware.core.config")
