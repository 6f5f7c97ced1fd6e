"""Fixtures for the RTU master against pymodbus over real ptys.

One paced line per module carrying the rig's field (``hil.emulators.field.Field``: the
shared ``host.devices`` chargers 1..3 and bay I/O module 100, on the plant, served by
pymodbus), shared by both interpreters' runs. The plant is not stepped, so a register read
twice gives the same value, heartbeat aside; tests compare the firmware's reads with the
device's own. Faults and forced exceptions are cleared after every test. ``run_fw`` runs
tests/modbus/fw_client.py on the interpreter under test and returns its JSON summary."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from hil.emulators.field import Field
from hil.emulators.modbus import LineServer
from hil.line import PacedLine
from tests.mpy_dual import ROOT, micropython_env

CLIENT = Path(__file__).with_name("fw_client.py")
CHARGERS = (1, 2, 3)
BAY = 100
BAUD = 115200


def line_config(chargers: int) -> dict:
    """The default station with its first ``chargers`` slots, every unit on one line."""
    cfg = json.loads((ROOT / "firmware" / "station.json").read_text())
    cfg["slots"] = cfg["slots"][:chargers]
    for bus in cfg["buses"].values():
        bus["baudrate"] = BAUD
    return cfg


class OneLine:
    """The paced line, and the field on it."""

    def __init__(self, line: PacedLine, field: Field) -> None:
        self.line = line
        self.field = field
        self.server: LineServer = field.lines["chargers"]

    def read(self, unit: int, fc: int, address: int, count: int) -> list[int]:
        """What device ``unit`` holds, read in the field's loop (not over the line)."""
        dev = self.field.bay if unit == BAY else self.field.chargers[unit]
        assert dev is not None
        return self.field.call(dev.read, fc, address, count)

    def writes(self, unit: int) -> list[tuple[int, int, list[int]]]:
        """(fc, address, values) of every write ``unit`` took, oldest first."""
        return [(r.fc, r.address, r.values or []) for r in self.server.log.snapshot()
                if r.unit == unit and r.values is not None and r.fc in (5, 6, 15, 16) and not r.error]


@pytest.fixture(scope="module")
def field():
    with PacedLine(BAUD) as line:
        # A step longer than any module: the plant stands still.
        f = Field(line_config(len(CHARGERS)), charger_port=line.slave_path, bay_port=line.slave_path,
                  step_s=3600.0)
        with f:
            yield OneLine(line, f)


@pytest.fixture(autouse=True)
def _clean_field(request):
    yield
    if "field" in request.fixturenames:
        f = request.getfixturevalue("field")
        f.line.clear_faults()
        f.server.force_exception.clear()


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
