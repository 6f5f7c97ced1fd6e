"""SQLite storage of what stations report (schema in docs/telemetry.md).

Each swap transaction is stored once, keyed by (station, swap number): a record the
station sends again (no PUBACK before a reconnect or a power cut) only counts a copy.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS status (
    id INTEGER PRIMARY KEY,
    station TEXT NOT NULL,
    received REAL NOT NULL,          -- backend clock, Unix seconds
    online INTEGER NOT NULL,         -- 0: the broker's last will (the station went silent)
    state TEXT,                      -- run, hold, manual, boot, config_error
    step TEXT,                       -- the bay's swap step, or NULL when idle
    grid_kw REAL,
    alarms TEXT,                     -- JSON list of active alarm keys "slot:code"
    doc TEXT NOT NULL                -- the whole status message
);
CREATE INDEX IF NOT EXISTS status_by_station ON status (station, received);
CREATE TABLE IF NOT EXISTS swaps (
    station TEXT NOT NULL,
    n INTEGER NOT NULL,              -- swap number, rises by one per swap at a station
    seq INTEGER NOT NULL,            -- the station journal's sequence number of the record
    vehicle TEXT, model TEXT, outcome TEXT,
    pack_out, soc_out REAL,          -- the pack the vehicle brought (id: int serial or text)
    pack_in, soc_in REAL,            -- the pack it drove off with
    energy_kwh REAL, boot INTEGER, t0 INTEGER, t1 INTEGER,
    received REAL NOT NULL,
    copies INTEGER NOT NULL DEFAULT 1,  -- deliveries of this record; stored once
    doc TEXT NOT NULL,
    PRIMARY KEY (station, n)
);
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY,
    station TEXT NOT NULL,
    received REAL NOT NULL,
    slot INTEGER NOT NULL,           -- -1: station-wide
    code TEXT NOT NULL,
    active INTEGER NOT NULL,         -- 1 raised, 0 cleared
    detail TEXT
);
CREATE TABLE IF NOT EXISTS commands (
    station TEXT NOT NULL,
    ctr INTEGER NOT NULL,            -- the command's counter, above every earlier one
    cmd TEXT NOT NULL,
    sent REAL NOT NULL,
    PRIMARY KEY (station, ctr)
);
CREATE TABLE IF NOT EXISTS command_results (
    station TEXT NOT NULL,
    ctr INTEGER,
    cmd TEXT,
    result TEXT NOT NULL,            -- ok, refused, rejected, unsupported, unknown
    why TEXT,
    received REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    received REAL NOT NULL,
    why TEXT NOT NULL
);
"""

LEAVES = ("status", "swaps", "alarms", "result")


class BadMessage(ValueError):
    pass


class Store:
    """One SQLite file; safe to call from the MQTT client's thread and others."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")  # ops reads while the backend writes
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def handle(self, topic: str, payload: bytes) -> str:
        """Store one message; returns what it was. A message that is not what its topic
        promises is kept in ``rejected`` with the reason, and raises BadMessage."""
        try:
            return self._handle(topic, payload)
        except BadMessage as e:
            with self.lock:
                self.db.execute("INSERT INTO rejected (topic, received, why) VALUES (?, ?, ?)",
                                (topic, time.time(), str(e)))
            raise

    def _handle(self, topic: str, payload: bytes) -> str:
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != "swapstation" or parts[2] not in LEAVES:
            raise BadMessage(f"not a station topic: {topic}")
        station, leaf = parts[1], parts[2]
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadMessage(f"{topic}: not JSON ({e})") from None
        if not isinstance(doc, dict):
            raise BadMessage(f"{topic}: expected a JSON object")
        now = time.time()
        text = json.dumps(doc, sort_keys=True)
        with self.lock:
            if leaf == "status":
                alarms = doc.get("alarms")
                self.db.execute(
                    "INSERT INTO status (station, received, online, state, step, grid_kw, alarms, doc) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (station, now, 1 if doc.get("online") else 0, doc.get("state"), doc.get("step"),
                     doc.get("grid_kw"), json.dumps(alarms) if alarms is not None else None, text))
            elif leaf == "swaps":
                self._swap(station, doc, now, text)
            elif leaf == "alarms":
                if not isinstance(doc.get("code"), str) or not isinstance(doc.get("slot"), int):
                    raise BadMessage(f"{topic}: an alarm needs slot and code")
                self.db.execute(
                    "INSERT INTO alarms (station, received, slot, code, active, detail) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (station, now, doc["slot"], doc["code"], 1 if doc.get("on") else 0, doc.get("detail")))
            else:
                if not isinstance(doc.get("result"), str):
                    raise BadMessage(f"{topic}: a command result needs result")
                self.db.execute(
                    "INSERT INTO command_results (station, ctr, cmd, result, why, received, doc) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (station, doc.get("ctr"), doc.get("cmd"), doc["result"], doc.get("why"), now, text))
        return leaf

    def _swap(self, station: str, d: dict[str, Any], now: float, text: str) -> None:
        if d.get("station") != station:
            raise BadMessage(f"swap record of {d.get('station')!r} on {station}'s topic")
        n, seq = d.get("n"), d.get("seq")
        if not isinstance(n, int) or n < 1 or not isinstance(seq, int):
            raise BadMessage(f"swap record of {station} without a swap number and sequence")
        self.db.execute(
            "INSERT INTO swaps (station, n, seq, vehicle, model, outcome, pack_out, soc_out, pack_in, "
            "soc_in, energy_kwh, boot, t0, t1, received, doc) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (station, n) DO UPDATE SET copies = copies + 1",
            (station, n, seq, d.get("v"), d.get("m"), d.get("o"), d.get("po"), d.get("so"), d.get("pi"),
             d.get("si"), d.get("e"), d.get("b"), d.get("t0"), d.get("t1"), now, text))

    # ---- queries ----------------------------------------------------------------------------
    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return list(self.db.execute(sql, args))

    def next_counter(self, station: str) -> int:
        """Above every counter sent to ``station`` from this database."""
        with self.lock:
            (last,) = self.db.execute("SELECT MAX(ctr) FROM commands WHERE station = ?",
                                      (station,)).fetchone()
        return (last or 0) + 1

    def command_sent(self, station: str, ctr: int, cmd: str) -> None:
        with self.lock:
            self.db.execute("INSERT INTO commands (station, ctr, cmd, sent) VALUES (?, ?, ?, ?)",
                            (station, ctr, cmd, time.time()))
