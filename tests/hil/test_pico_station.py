"""The station on the emulated Pico ([pico]): ``main.py`` starts it with the shipped board
driver and pico.json (plus ``channel: hil_target``), the rig's chargers and bay I/O module
answer on UART0/UART1 in emulated time (hil/targets/pico_field.py).

One booted station for the module: a power-on costs ~2 s of emulated time, ~60 s of wall
time here. Every item is marked ``pico``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.driver import Rig, RigOptions, ScenarioDriver

pytestmark = pytest.mark.pico


@pytest.fixture(scope="module")
def pico_driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScenarioDriver]:
    rig = Rig(RigOptions(target="pico", workdir=Path(tmp_path_factory.mktemp("pico-rig"))))
    rig.start()
    try:
        yield rig.driver()
    finally:
        rig.stop()


def test_main_py_boots_the_station_and_polls_the_chargers_and_the_bay(pico_driver: ScenarioDriver) -> None:
    d = pico_driver
    target = d.target
    boot = target.boots[0]  # type: ignore[attr-defined]
    assert boot["emulated_s"] < 3.0, boot  # main.py to the channel's boot line
    st = d.wait(lambda s: s["rack"]["ready"] >= 15, 120, "the chargers answering")
    assert st["alive"] and st["hold"] == ["confirm"]  # power-loss hold: confirm before motion
    assert st["rack"]["offline"] < 23
    slaves = d.field.slaves  # type: ignore[attr-defined]
    for name in ("chargers", "bay_io"):
        line = slaves[name]
        assert line.replies > 0 and line.bad_crc == 0 and line.foreign == 0, name
        assert line.de_low_bytes == 0, f"{name}: bytes sent with the driver disabled"
    reads = [r for r in d.field.rack() if r["reads"]]
    assert len(reads) >= 15


def test_the_driver_is_released_before_a_reply_starts(pico_driver: ScenarioDriver) -> None:
    d = pico_driver
    d.wait(lambda s: s["rack"]["ready"] >= 15, 120, "the chargers answering")
    slaves = d.field.slaves  # type: ignore[attr-defined]
    assert [slaves[n].de_high_replies for n in ("chargers", "bay_io")] == [0, 0]
