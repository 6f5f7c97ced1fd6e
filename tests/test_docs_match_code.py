"""The register map's spec (docs/register-map.md) and the constants every part takes its
addresses from (firmware/proto/regmap.py) say the same thing, row for row."""

from __future__ import annotations

import re
from pathlib import Path

from firmware.proto import regmap

ROOT = Path(__file__).resolve().parent.parent
REGISTER_MAP = ROOT / "docs" / "register-map.md"
# "| 12 | `CHG_IR_FAULTS` |" or "| 32 + b | `BAY_DI_BOLT_RELEASED_BASE` |" (a block of 16 from 32)
ROW = re.compile(r"^\| *(\d+)(?: *\+ *[a-z])? *\| *`([A-Z0-9_]+)`", re.M)
REGISTER_CONSTANT = re.compile(r"^(CHG|BAY)_(IR|HR|DI|CO)_")


def _rows() -> list[tuple[int, str]]:
    return [(int(addr), name) for addr, name in ROW.findall(REGISTER_MAP.read_text())]


def test_every_register_row_of_the_spec_matches_its_constant() -> None:
    rows = _rows()
    assert len(rows) > 80  # the charger's and the bay module's tables were all read
    wrong = [f"{name}: spec {addr}, regmap {getattr(regmap, name, 'missing')}"
             for addr, name in rows if getattr(regmap, name, None) != addr]
    assert not wrong, "docs/register-map.md and regmap.py differ:\n" + "\n".join(wrong)


def test_every_register_constant_is_in_the_spec() -> None:
    text = REGISTER_MAP.read_text()
    in_rows = {name for _, name in _rows()}
    missing = [name for name in dir(regmap) if REGISTER_CONSTANT.match(name)
               and name not in in_rows and not (name.endswith("_COUNT") and f"`{name}`" in text)]
    assert not missing, "register constants the spec does not list: " + ", ".join(sorted(missing))


def test_a_changed_address_would_be_caught() -> None:
    text = REGISTER_MAP.read_text().replace("| 12 | `CHG_IR_FAULTS`", "| 13 | `CHG_IR_FAULTS`")
    rows = [(int(a), n) for a, n in ROW.findall(text)]
    assert (13, "CHG_IR_FAULTS") in rows and regmap.CHG_IR_FAULTS == 12


# ---- docs/config.md against the validator's tables (firmware/core/config.py)

CONFIG_DOC = ROOT / "docs" / "config.md"
FIELD_ROW = re.compile(r"^\| `([a-z_0-9]+)` \|(.*)$")
DOC_TYPES = {"int": "int", "num": "num", "bool": "bool", "str": "string", "window": "`[min, max]`",
             "obj": "object", "list": "list", "idlist": "list"}


def _config_sections() -> dict[str, dict[str, list[str]]]:
    """Section (the ``## `name` `` heading) -> field -> the row's other cells."""
    out: dict[str, dict[str, list[str]]] = {}
    section: str | None = None
    for line in CONFIG_DOC.read_text().splitlines():
        head = re.match(r"^## `([a-z_]+)`", line)
        if head or line.startswith("## "):
            section = head.group(1) if head else None
            if section:
                out[section] = {}
            continue
        row = FIELD_ROW.match(line)
        if section and row:
            out[section].setdefault(row.group(1), [c.strip() for c in row.group(2).split("|")[:-1]])
    return out


def _config_specs() -> dict[str, tuple[tuple, ...]]:
    from firmware.core import config as c

    return {"buses": c._BAY_IO_BUS, "pack_types": c._PACK_TYPE, "slots": c._SLOT,
            "isolation_bay": c._ISOLATION, "limits": c._LIMITS + c._RUNAWAY, "tou": c._TOU,
            "bay": c._BAY, "journal": c._JOURNAL, "compatibility": c._AUTH, "mqtt": c._MQTT}


def _range_problem(lo: object, hi: object, text: str, positive: object) -> str | None:
    if lo is positive:  # or a field the validator checks it against, e.g. "`nominal_v` .. 1500"
        return None if text.startswith(("> 0", "`")) else "the validator wants > 0"
    m = re.match(r"^(-?\d+(?:\.\d+)?)\s*\.\.\s*(-?\d+(?:\.\d+)?)\b(?!\s*[KM]i?B)", text)
    if m and isinstance(lo, int | float) and isinstance(hi, int | float) and not isinstance(lo, bool):
        if (float(m.group(1)), float(m.group(2))) != (float(lo), float(hi)):
            return f"the validator takes {lo}..{hi}"
    return None


def _default_problem(default: object, text: str, required: object) -> str | None:
    if default is required:
        return None if text.startswith("required") else "the validator requires it"
    if isinstance(default, bool):
        return None if text == str(default).lower() else f"the validator's default is {str(default).lower()}"
    if isinstance(default, int | float) and re.fullmatch(r"-?\d+(?:\.\d+)?", text):
        return None if float(text) == float(default) else f"the validator's default is {default}"
    return None


def test_every_config_field_is_documented_with_the_validators_type_range_and_default() -> None:
    from firmware.core import config as c

    sections = _config_sections()
    problems = []
    for section, spec in _config_specs().items():
        rows = sections.get(section, {})
        for name, kind, lo, hi, default in spec:
            where = f"{section}.{name}"
            if name not in rows:
                problems.append(f"{where}: not in docs/config.md")
                continue
            cells = rows[name]
            if not cells[0].startswith(DOC_TYPES[kind]):
                problems.append(f"{where}: type {cells[0]!r}, the validator's is {kind}")
            if kind in ("int", "num") and len(cells) > 1:
                why = _range_problem(lo, hi, cells[1], c._POS)
                if why:
                    problems.append(f"{where}: range {cells[1]!r}, {why}")
            if len(cells) > 3:  # a table with a default column
                why = _default_problem(default, cells[2], c._REQ)
                if why:
                    problems.append(f"{where}: default {cells[2]!r}, {why}")
    assert not problems, "docs/config.md and firmware/core/config.py differ:\n" + "\n".join(problems)


def test_every_swap_step_timeout_and_tou_band_field_is_named() -> None:
    from firmware.core import config as c

    text = CONFIG_DOC.read_text()
    assert ", ".join(c.SWAP_STEPS) in text  # the timeouts_ms list, in procedure order
    for name, *_ in c._TOU_BAND:
        assert f'"{name}"' in text
