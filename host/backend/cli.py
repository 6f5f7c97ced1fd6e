"""``swapstation backend``: store every station's status, swaps, alarms and command results."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def add_broker_args(p: argparse.ArgumentParser, user_default: str) -> None:
    p.add_argument("--broker", default="127.0.0.1:1883",
                   help="MQTT broker, HOST[:PORT] (default %(default)s)")
    p.add_argument("--user", default=user_default, help="MQTT user name (default %(default)s)")
    p.add_argument("--password-file", help="file whose first line is the MQTT password "
                   "(default: $SWAPSTATION_MQTT_PASSWORD)")
    p.add_argument("--db", default="swapstation-backend.sqlite",
                   help="SQLite database (created if missing; default %(default)s)")


def broker_from(args: argparse.Namespace) -> Any:
    from host.backend.service import BrokerArgs, parse_broker, password_from

    host, port = parse_broker(args.broker)
    return BrokerArgs(host, port, args.user, password_from(args.password_file))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "backend",
        help="subscribe to every station over MQTT and store what they report in SQLite",
        description=(
            "Subscribe to swapstation/+/{status,swaps,alarms,result} with a persistent session and store "
            "status history, swap transactions (each once, keyed by station and swap number), alarms and "
            "command results in a SQLite database (schema: docs/telemetry.md). Runs until interrupted. "
            "Exit codes: 0 stopped, 2 bad arguments or database, 130 interrupted."
        ),
    )
    add_broker_args(p, "backend")
    p.add_argument("--client-id", default="swapstation-backend", help="MQTT client id (its session is kept)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sqlite3

    from host.backend.service import Backend
    from host.backend.store import Store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        broker = broker_from(args)
        store = Store(args.db)
    except (ValueError, OSError, sqlite3.Error) as e:
        print(f"swapstation backend: {e}", file=sys.stderr)
        return EXIT_USAGE
    backend = Backend(store, broker, args.client_id)
    print(f"swapstation backend: {broker.host}:{broker.port} -> {args.db}", flush=True)
    try:
        backend.serve_forever()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        store.close()
    return EXIT_OK
