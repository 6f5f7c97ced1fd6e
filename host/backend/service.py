"""The backend's MQTT side: one paho-mqtt client subscribed to every station's reports.

It connects with a persistent session (clean_session off, QoS 1 subscriptions): while it
is away the broker keeps station records for it, so a record the broker acknowledged to
a station (which then moves its journal cursor past it) reaches the database later. The
broker must keep sessions across its own restarts too (Mosquitto: ``persistence true``).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import paho.mqtt.client as mqtt

from host.backend.store import BadMessage, Store

log = logging.getLogger("swapstation.backend")

TOPICS = [(f"swapstation/+/{leaf}", 1) for leaf in ("status", "swaps", "alarms", "result")]


class BrokerArgs:
    def __init__(self, host: str, port: int, user: str | None, password: str | None) -> None:
        self.host, self.port, self.user, self.password = host, port, user, password


def parse_broker(text: str) -> tuple[str, int]:
    """HOST or HOST:PORT -> (host, port)."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "1883")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"broker {text!r}: expected HOST or HOST:PORT")
    return host, int(port)


def password_from(path: str | None) -> str | None:
    """The MQTT password: from a file (first line), else $SWAPSTATION_MQTT_PASSWORD, else None."""
    if path:
        with open(path) as f:
            return f.readline().rstrip("\n")
    return os.environ.get("SWAPSTATION_MQTT_PASSWORD")


def new_client(client_id: str, broker: BrokerArgs, clean: bool) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    if broker.user is not None:
        c.username_pw_set(broker.user, broker.password)
    c.reconnect_delay_set(1, 5)
    return c


class Backend:
    def __init__(self, store: Store, broker: BrokerArgs, client_id: str = "swapstation-backend") -> None:
        self.store = store
        self.client = new_client(client_id, broker, clean=False)
        self.broker = broker
        self.client.on_connect = self._connected
        self.client.on_message = self._message
        self.connected = threading.Event()
        self.stored = self.bad = 0

    def _connected(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the backend: %s", reason)
            return
        client.subscribe(TOPICS)  # again on every connect: a broker without our session forgot them
        self.connected.set()

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.store.handle(msg.topic, bytes(msg.payload))
            self.stored += 1
        except BadMessage as e:
            self.bad += 1
            log.warning("rejected: %s", e)

    def start(self) -> None:
        """Connect and run the client's network thread."""
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def serve_forever(self) -> None:
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_forever(retry_first_connection=True)
