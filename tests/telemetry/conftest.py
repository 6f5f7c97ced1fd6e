from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.telemetry.broker import MOSQUITTO, Broker

USERS = {"backend": "backend-pw", "PSS4-DEMO-001": "station-pw", "PSS-OTHER": "other-pw"}


@pytest.fixture(scope="session")
def mosquitto() -> str:
    from host.deploy import debian

    debian.ensure({"mosquitto": MOSQUITTO}, "the MQTT tests")
    return MOSQUITTO


@pytest.fixture
def broker(mosquitto: str, tmp_path: Path) -> Iterator[Broker]:
    folder = tmp_path / "broker"
    folder.mkdir()
    b = Broker(folder, USERS)
    b.start()
    yield b
    b.stop()
