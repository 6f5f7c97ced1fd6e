"""One booted station on the emulated Pico for a test module ([pico] scenarios).

A power-on costs ~2 s of emulated time, 40-80 s of wall time: each module boots once
and its tests run in order on that station. The console (status lines included) goes to
``console.log`` in the module's temporary folder.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hil.rig import Rig, RigOptions, ScenarioDriver


@contextmanager
def pico_station(workdir: Path, **options: Any) -> Iterator[ScenarioDriver]:
    """A started rig on the pico target (``options``: ``RigOptions`` fields); its driver."""
    log = open(workdir / "console.log", "a", buffering=1)  # noqa: SIM115  (closed below)
    rig = Rig(RigOptions(target="pico", workdir=workdir, **options), log=lambda line: log.write(line + "\n"))
    t0 = time.monotonic()
    try:
        rig.start()
        d = rig.driver()
        d.marks["module_start"] = t0
        yield d
    finally:
        rig.stop()
        log.close()


def figures(d: ScenarioDriver, t_wall: float, t_field: float) -> str:
    """Wall and field (emulated) seconds since ``t_wall`` / ``t_field``."""
    return f"{time.monotonic() - t_wall:.1f} s wall, {d.field.clock() - t_field:.2f} s emulated"
