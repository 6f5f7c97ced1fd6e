"""The emulated Pico (hil/targets/pico.py): the real RPI_PICO MicroPython v1.28.0 image under
rp2040py 0.3.6, reached as a bench reaches a board: its USB console on a pty (the real
mpremote), its UARTs, its GPIO, its flash, its watchdog.

Every item is ``[pico]`` and marked ``pico``. rp2040py comes with the dev extra; without it,
or without the image (``SWAPSTATION_PICO_UF2``, default ``../shared/micropython/``), the items
fail with what to install or where to point: skips are for absent hardware only.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.targets import pico_rp2040py
from hil.targets.pico import FS_BLOCK_COUNT, FS_BLOCK_SIZE, EmulatedPico, PicoError, read_flash
from host.deploy import tools

pytestmark = pytest.mark.pico


@pytest.fixture(scope="module", params=["pico"])
def pico(request: pytest.FixtureRequest) -> Iterator[EmulatedPico]:
    """One booted Pico for the module (a boot costs ~0.3 s, the tests share its flash)."""
    with EmulatedPico() as p:
        yield p


@pytest.fixture(params=["pico"])
def fresh_pico() -> Iterator[EmulatedPico]:
    """A Pico of its own, for a test that resets it."""
    with EmulatedPico() as p:
        yield p


def mpremote(pico: EmulatedPico, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = [*tools.command("mpremote"), "connect", pico.console_path, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_the_real_pico_image_boots_as_a_32_bit_rp2040(pico: EmulatedPico) -> None:
    machine, word, floats, free, version = pico.exec(
        "import sys, gc\n"
        "print(sys.implementation._machine)\n"
        "print(sys.maxsize)\n"
        "print(16777217.0 == 16777216.0)\n"
        "gc.collect(); print(gc.mem_free())\n"
        "print(sys.implementation.version[:3], sys.implementation._mpy & 0xff)\n").splitlines()
    assert machine == "Raspberry Pi Pico with RP2040"
    assert word == str(2**31 - 1)
    assert floats == "True"  # single precision, as every station build
    assert 200_000 < int(free) < 264 * 1024
    assert version == "(1, 28, 0) 6"
    assert pico.boot_wall_s < 10  # ~0.3 s here; the emulated part is ~20 ms


def test_idle_time_is_skipped_so_sleeping_costs_no_wall_time(pico: EmulatedPico) -> None:
    """The USB-CDC work-around: the console no longer spins the CPU while the host is silent."""
    t0, e0 = time.monotonic(), pico.emulated_s
    code = "import time\nt = time.ticks_ms()\ntime.sleep(5)\nprint(time.ticks_diff(time.ticks_ms(), t))"
    assert pico.exec(code, timeout=60).strip() == "5000"
    assert pico.emulated_s - e0 >= 5.0
    assert time.monotonic() - t0 < 5.0  # ~0.1 s here; 51 s per emulated second without the work-around


def test_the_engine_cannot_starve_the_other_threads_of_the_gil(pico: EmulatedPico) -> None:
    """Work-around 3: rp2040py's engine drops the GIL briefly every 5 ms batch, which kept
    resetting a waiting thread's 5 ms switch timer; boots here took 0.2 s to over 100 s at
    random. A switch interval below the batch makes the waiter win at the batch's end."""
    assert sys.getswitchinterval() <= pico_rp2040py.SWITCH_INTERVAL_S < 0.005
    old = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.0002)
        pico_rp2040py.shorten_switch_interval()
        assert sys.getswitchinterval() == pytest.approx(0.0002)  # only ever lowered
    finally:
        sys.setswitchinterval(old)


def test_errors_come_back_with_their_traceback(pico: EmulatedPico) -> None:
    with pytest.raises(PicoError, match="ZeroDivisionError"):
        pico.exec("print('before')\n1/0")
    assert pico.eval("6 * 7") == 42  # the REPL is usable afterwards


def test_the_real_mpremote_copies_a_file_and_runs_code_against_it(pico: EmulatedPico, tmp_path: Path) -> None:
    src = tmp_path / "greet.py"
    src.write_text("def hello(who):\n    return 'hello ' + who\n")
    res = mpremote(pico, "fs", "cp", str(src), ":greet.py",
                   "+", "exec", "import greet; print(greet.hello('pico'))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == "hello pico"
    res = mpremote(pico, "fs", "sha256sum", ":greet.py")
    assert res.returncode == 0, res.stderr
    import hashlib

    assert hashlib.sha256(src.read_bytes()).hexdigest() in res.stdout
    assert pico.eval("__import__('os').stat('greet.py')[6]") == src.stat().st_size  # our exec sees it too


def test_the_flash_survives_a_power_cut_and_boots_again(pico: EmulatedPico) -> None:
    pico.exec("import os\ntry:\n    os.mkdir('data')\nexcept OSError:\n    pass\n"
              "with open('data/note.txt', 'w') as f:\n    f.write('kept across boots')\n")
    image = pico.flash_image()
    assert len(image) == FS_BLOCK_SIZE * FS_BLOCK_COUNT
    assert read_flash(image)["/data/note.txt"] == b"kept across boots"  # readable on the host
    with EmulatedPico(flash=image) as again:
        assert again.exec("print(open('data/note.txt').read())").strip() == "kept across boots"
        again.exec("with open('data/note.txt', 'a') as f:\n    f.write(', twice')")
        cut = again.power_cut()
        assert not again.alive()
    assert read_flash(cut)["/data/note.txt"] == b"kept across boots, twice"


def test_a_flash_image_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PicoError, match="expected exactly"):
        EmulatedPico(flash=b"\xff" * 4096).boot()


def test_uart_bytes_and_gpio_reach_the_host_and_a_device_answers_in_its_callback(pico: EmulatedPico) -> None:
    """The UART work-around: machine.UART no longer hangs in a TX interrupt storm. A device
    model answers inside the emulator's callback, so its reply timing is emulated time."""
    bridge = pico.uart(0)
    bridge.written.clear()
    de_while_sending: list[bool] = []

    def device(b: int) -> None:
        de_while_sending.append(pico.pin(2))
        if b == ord("\n"):
            bridge.send(b"pong\n")

    bridge.on_byte = device
    try:
        out = pico.exec(
            "import machine, time\n"
            "de = machine.Pin(2, machine.Pin.OUT, value=0)\n"
            "u = machine.UART(0, 115200, tx=machine.Pin(0), rx=machine.Pin(1), timeout=0)\n"
            "t = time.ticks_us()\n"
            "de.value(1); u.write(b'ping\\n')\n"
            "while not u.txdone(): pass\n"
            "de.value(0)\n"
            "while u.any() < 5 and time.ticks_diff(time.ticks_us(), t) < 100000: pass\n"
            "took = time.ticks_diff(time.ticks_us(), t)\n"
            "print(u.read(), took)\n")
    finally:
        bridge.on_byte = None
    reply, took_us = out.split()
    assert reply == "b'pong\\n'"
    assert bytes(bridge.written) == b"ping\n"
    assert de_while_sending == [True] * 5  # DE was up for every byte the UART sent
    assert not pico.pin(2)
    # The request leaves at once (rp2040py models no TX wire time); the reply's 5 characters
    # of 10 bits (8N1) at 115200 baud take 434 us, in emulated time, whatever the host's load.
    assert bridge.char_ns() == 86_822  # 10 bits; the divisor for 115200 gives 115179 baud
    assert 5 * 86.8 <= int(took_us) < 1000, took_us
    assert bridge.overruns == 0


def test_an_unfed_watchdog_resets_the_chip_and_main_py_runs_again(fresh_pico: EmulatedPico) -> None:
    pico = fresh_pico
    main = (
        "import machine, time\n"
        "try:\n    n = int(open('boots').read()) + 1\nexcept OSError:\n    n = 1\n"
        "with open('boots', 'w') as f:\n    f.write(str(n))\n"
        "with open('cause%d' % n, 'w') as f:\n    f.write(str(machine.reset_cause()))\n"
        "if n == 1:\n"
        "    machine.WDT(timeout=1000)\n"
        "    while True:\n"
        "        time.sleep_ms(100)  # a hung loop: nothing feeds the watchdog\n")
    pico.exec(f"with open('main.py', 'w') as f:\n    f.write({main!r})")
    pico.reset()  # RESET pressed: main.py runs (boot 1), starts the watchdog and hangs
    t0, e0 = time.monotonic(), pico.emulated_s
    assert pico.wait_resets(1, timeout=30), "the watchdog did not reset the chip"
    took = pico.emulated_s - e0
    files: dict[str, bytes] = {}
    while time.monotonic() - t0 < 60:  # boot 2 writes its files soon after the console is up
        files = read_flash(pico.flash_image())
        if files.get("/cause2"):  # written, not only opened: a dump can fall in between
            break
        time.sleep(0.05)
    assert files.get("/cause1") == b"1"  # machine.PWRON_RESET: the RESET pin
    assert files.get("/cause2") == b"3"  # machine.WDT_RESET
    assert 1.0 <= took < 3.0  # the 1 s timeout, in emulated time


def test_reset_stops_a_running_watchdog_as_on_silicon(fresh_pico: EmulatedPico) -> None:
    """A station feeds its watchdog; RESET is pressed, and the next boot idles at the REPL
    for longer than the timeout: nothing resets the chip again (rp2040py 0.3.6 left the
    timer running, so an mpremote command after a RESET met a watchdog reset half-way and
    waited for ever)."""
    pico = fresh_pico
    main = (
        "import machine, time\n"
        "try:\n    n = int(open('boots').read()) + 1\nexcept OSError:\n    n = 1\n"
        "with open('boots', 'w') as f:\n    f.write(str(n))\n"
        "if n == 1:\n"
        "    w = machine.WDT(timeout=1000)\n"
        "    open('feeding', 'w').close()\n"
        "    while True:\n"
        "        w.feed()\n"
        "        time.sleep_ms(50)\n")
    pico.exec(f"with open('main.py', 'w') as f:\n    f.write({main!r})")
    pico.reset()  # boot 1: the watchdog runs, fed
    t0 = time.monotonic()
    while "/feeding" not in read_flash(pico.flash_image()):
        assert time.monotonic() - t0 < 60, "main.py did not start feeding its watchdog"
        time.sleep(0.05)
    pico.reset()  # boot 2: main.py (or the Ctrl-C that exec sends) leaves the chip at the REPL
    e0 = pico.emulated_s
    assert pico.exec("import time\ntime.sleep(5)\nprint('slept')", timeout=120).strip() == "slept"
    assert pico.emulated_s - e0 >= 5.0 and pico.resets == 0
    # The watchdog's own reset is untouched: a started, unfed one still resets the chip.
    pico.exec("import machine\nw = machine.WDT(timeout=1000)")
    assert pico.wait_resets(1, timeout=60), "the watchdog no longer resets the chip"


def test_a_station_with_its_watchdog_running_is_reached_through_reset_and_ctrl_c_only(
        fresh_pico: EmulatedPico, tmp_path: Path) -> None:
    """A main.py that starts and feeds a 1 s watchdog, as a station does. The flasher's first mpremote
    command interrupts it and the watchdog, still running, resets the chip half-way through
    the command (the emulator skips the idle time mpremote's pauses leave); the pty stays, so
    mpremote would wait for ever: the flasher stops it at its time limit and says so.
    ``stop_at_repl`` (RESET, Ctrl-C, checked) leaves a REPL that idles past the timeout."""
    from host.deploy.build import build_image
    from host.deploy.flash import Flasher, NoAnswer

    pico = fresh_pico
    main = (
        "import machine, time\n"
        "for _ in range(20000):\n"
        "    pass  # the station's start (imports, checks) before its watchdog: ~4 s of wall time\n"
        "w = machine.WDT(timeout=1000)\n"
        "open('feeding', 'w').close()\n"
        "while True:\n"
        "    w.feed()\n"
        "    time.sleep_ms(50)\n")
    pico.exec(f"with open('main.py', 'w') as f:\n    f.write({main!r})")
    pico.reset()
    t0 = time.monotonic()
    while "/feeding" not in read_flash(pico.flash_image()):
        assert time.monotonic() - t0 < 60, "main.py did not start feeding its watchdog"
        time.sleep(0.05)
    assert pico.watchdog_running()
    image = tmp_path / "image"
    build_image(image, "pico", micropython="1.28")
    flasher = Flasher(image, pico.console_path, tools.command("mpremote"), log=lambda m: None,
                      command_timeout_s=30.0)
    with pytest.raises(NoAnswer, match="asking the board what it is: the board on .* stopped answering") as e:
        flasher.flash()
    assert e.value.state == "nothing was written to the board"
    assert pico.resets >= 1  # the watchdog reset the chip under the command

    pico.stop_at_repl()
    assert not pico.watchdog_running()
    resets, e0 = pico.resets, pico.emulated_s
    assert pico.exec("import time\ntime.sleep(3)\nprint('slept')", timeout=120).strip() == "slept"
    assert pico.emulated_s - e0 >= 3.0 and pico.resets == resets


def test_other_rp2040py_versions_are_refused() -> None:
    pico_rp2040py.check_version()  # the installed one is the pinned one
    assert pico_rp2040py.version_problem("0.3.6") is None
    assert "rp2040py 0.3.7 is installed" in (pico_rp2040py.version_problem("0.3.7") or "")
    assert "for 0.3.6 only" in (pico_rp2040py.version_problem("0.3.7") or "")
    assert "rp2040py is not installed" in (pico_rp2040py.version_problem(None) or "")


def test_a_missing_image_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWAPSTATION_PICO_UF2", str(tmp_path / "nope.uf2"))
    with pytest.raises(PicoError, match="SWAPSTATION_PICO_UF2"):
        EmulatedPico()


def test_the_bench_command_names_a_missing_image(tmp_path: Path) -> None:
    got = subprocess.run([sys.executable, "-m", "hil.targets.pico", "--uf2", str(tmp_path / "nope.uf2")],
                         capture_output=True, text=True, cwd=tools.ROOT, timeout=60)
    assert got.returncode == 2 and "nope.uf2" in got.stderr
