"""``swapstation ops STATION COMMAND ...``: sign a remote command, send it, wait for its result.

The MAC is HMAC-SHA256 under the station's key over ``station \\n counter \\n command``
(docs/telemetry.md). The counter is one above the last one this database sent the station;
a station refuses a counter not above the last one it accepted.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import threading
import time
from typing import Any

from host.backend.cli import add_broker_args, broker_from

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_NO_RESULT = 3

COMMANDS = ("status", "maintenance", "grid_cap", "tariff", "slot_out", "slot_back", "quarantine", "ack")


def sign(key: bytes, station: str, ctr: int, cmd: str) -> str:
    return hmac.new(key, f"{station}\n{ctr}\n{cmd}".encode(), hashlib.sha256).hexdigest()


def load_key(path: str, station: str) -> bytes:
    """The station's key from a JSON file {station: hex key}; ValueError says what is wrong."""
    try:
        with open(path) as f:
            keys = json.load(f)
    except OSError as e:
        raise ValueError(f"keys file {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"keys file {path}: not JSON ({e})") from None
    if not isinstance(keys, dict) or station not in keys:
        raise ValueError(f"keys file {path}: no key for station {station!r}")
    try:
        key = bytes.fromhex(keys[station])
    except (TypeError, ValueError):
        raise ValueError(f"keys file {path}: the key of {station!r} is not hex") from None
    if not 32 <= len(key) <= 64:
        raise ValueError(f"keys file {path}: the key of {station!r} must be 32..64 bytes")
    return key


def send_command(broker: Any, station: str, cmd: str, ctr: int, mac: str, timeout_s: float,
                 client_id: str | None = None) -> dict[str, Any] | None:
    """Publish the command and wait for the station's result with the same counter; None
    if none came within ``timeout_s``."""
    from host.backend.service import new_client

    topic = f"swapstation/{station}/"
    got: dict[str, Any] = {}
    done = threading.Event()
    subscribed = threading.Event()
    c = new_client(client_id or f"swapstation-ops-{time.monotonic_ns()}", broker, clean=True)

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(topic + "result", 1)

    def on_subscribe(client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
        subscribed.set()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(doc, dict) and doc.get("ctr") == ctr:
            got.update(doc)
            done.set()

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect_async(broker.host, broker.port, keepalive=30)
    c.loop_start()
    try:
        if not subscribed.wait(timeout_s):
            return None
        payload = json.dumps({"ctr": ctr, "cmd": cmd, "mac": mac})
        c.publish(topic + "cmd", payload, qos=1)
        return got if done.wait(timeout_s) else None
    finally:
        c.disconnect()
        c.loop_stop()


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "ops",
        help="send a signed remote command to a station and wait for its result",
        description=(
            "Sign COMMAND for STATION with its key (HMAC-SHA256 over station, counter and command), "
            "publish it on swapstation/STATION/cmd and wait for the station's result. Commands: status; "
            "maintenance on|off; grid_cap KW; tariff PRICE...; slot_out SLOT; slot_back SLOT; "
            "quarantine PACK; ack ALARM (docs/telemetry.md). Nothing remote starts motion or clears a "
            "stop. "
            "Exit codes: 0 the station carried it out, 1 it refused or does not support it, 2 bad arguments "
            "or keys file, 3 no result within --timeout."
        ),
    )
    p.add_argument("station", help="station id, as in its station.json")
    p.add_argument("command", choices=COMMANDS)
    p.add_argument("args", nargs="*", help="the command's arguments")
    add_broker_args(p, "backend")
    p.add_argument("--keys", required=True, help="JSON file {station: hex key}: keep it secret")
    p.add_argument("--counter", type=int, help="counter to use (default: one above the last sent from --db)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the result (default 30)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sqlite3

    from host.backend.store import Store

    cmd = " ".join([args.command, *args.args])
    try:
        key = load_key(args.keys, args.station)
        broker = broker_from(args)
        store = Store(args.db)
    except (ValueError, OSError, sqlite3.Error) as e:
        print(f"swapstation ops: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        ctr = store.next_counter(args.station)
        if args.counter is not None:
            if not ctr <= args.counter <= 0x7FFFFFFF:
                print(f"swapstation ops: --counter must be in {ctr}..{0x7FFFFFFF}", file=sys.stderr)
                return EXIT_USAGE
            ctr = args.counter
        store.command_sent(args.station, ctr, cmd)
        res = send_command(broker, args.station, cmd, ctr, sign(key, args.station, ctr, cmd), args.timeout)
    finally:
        store.close()
    if res is None:
        print(f"swapstation ops: no result from {args.station} within {args.timeout:g} s", file=sys.stderr)
        return EXIT_NO_RESULT
    print(json.dumps(res, sort_keys=True))
    return EXIT_OK if res.get("result") == "ok" else EXIT_REFUSED
