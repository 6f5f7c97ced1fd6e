"""Fixtures for the RTU master against pymodbus over real ptys.

One paced line and one pymodbus server per module (chargers 1..3 and the bay
I/O module 100), shared by both interpreters' runs; faults and forced exceptions
are cleared after every test. ``run_fw`` runs tests/modbus/fw_client.py on the
interpreter under test and returns its JSON summary."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from hil.line import PacedLine
from host.demo import BayIoSim, ChargerSim, ModbusLineServer
from tests.mpy_dual import ROOT, micropython_env

CLIENT = Path(__file__).with_name("fw_client.py")
CHARGERS = (1, 2, 3)
BAY = 100
BAUD = 115200


class Field:
    def __init__(self, line: PacedLine, server: ModbusLineServer) -> None:
        self.line = line
        self.server = server
        self.sims = server.sims


@pytest.fixture(scope="module")
def field():
    sims = [ChargerSim(u) for u in CHARGERS] + [BayIoSim(BAY)]
    with PacedLine(BAUD) as line, ModbusLineServer(line.slave_path, sims, BAUD) as server:
        yield Field(line, server)


@pytest.fixture(autouse=True)
def _clean_field(request):
    yield
    if "field" in request.fixturenames:
        f = request.getfixturevalue("field")
        f.line.clear_faults()
        for sim in f.sims.values():
            sim.force_exception = 0


def run_fw(interpreter: list[str], path: str, spec: dict,
           on_pause: Callable[[str], None] | None = None, timeout: float = 30) -> dict:
    """Run the firmware-side client; answer its pauses; return its last JSON line."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    proc = subprocess.Popen(
        interpreter + [str(CLIENT), path, f.name], cwd=str(ROOT), env=micropython_env(),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    last = None
    watchdog = threading.Timer(timeout, proc.kill)  # a hung client must not hang the suite
    watchdog.start()
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            msg = json.loads(line)
            if "pause" in msg:
                if on_pause:
                    on_pause(msg["pause"])
                proc.stdin.write("\n")
                proc.stdin.flush()
            else:
                last = msg
        proc.wait(timeout)
    finally:
        watchdog.cancel()
        os.unlink(f.name)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 0 and last is not None, f"firmware client failed ({proc.returncode}):\n{err}"
    return last
