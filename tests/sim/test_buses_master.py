"""The firmware's ModbusMaster over the wire bus, and the direct bus, give the same results."""

import pytest

from firmware.proto import modbus_rtu as mb
from host.sim import buses
from tests.sim.test_buses_rtu import Table


class Clock:
    def __init__(self) -> None:
        self.ms = 0


def wire_bus(dev, clock):
    link = buses.WireLink({7: dev}, 115200, lambda: clock.ms, timeout_ms=50, retries=2, offline_after=3,
                          probe_interval_ms=1000)
    return link.master, link


def direct_bus(dev, clock):
    return buses.DirectBus({7: dev}, timeout_ms=50, retries=2, offline_after=3, probe_interval_ms=1000), None


def run(bus, link, clock, tx, limit_ms=10_000):
    """Pump the bus in virtual time, waking when it asks or when a reply lands, until tx is done."""
    start = clock.ms
    while not tx.done:
        bus.poll(clock.ms)
        if link is not None:
            link.sent(clock.ms)
        if tx.done:
            break
        wake = clock.ms + max(1, bus.next_poll_ms(clock.ms))
        if link is not None and link.due_ms() >= 0:
            if link.due_ms() <= wake:
                wake = max(clock.ms, link.due_ms())
                clock.ms = wake
                link.deliver()
                continue
        clock.ms = wake
        assert clock.ms - start < limit_ms, "transaction never finished"
    return clock.ms - start


def outcome(tx):
    r = (tx.ok, tx.error, tx.exception_code, list(tx.values))
    tx.release()
    return r


@pytest.mark.parametrize("make", [wire_bus, direct_bus], ids=["wire", "direct"])
def test_same_results_both_buses(make):
    dev = Table()
    clock = Clock()
    bus, link = make(dev, clock)
    results = []
    script = [
        lambda: bus.read(7, mb.FC_READ_INPUT_REGISTERS, 0, 10),
        lambda: bus.write(7, mb.FC_WRITE_MULTIPLE_REGISTERS, 0, [1, 2, 3]),
        lambda: bus.read(7, mb.FC_READ_HOLDING_REGISTERS, 0, 4),
        lambda: bus.write(7, mb.FC_WRITE_MULTIPLE_COILS, 0, [1, 0, 1, 1]),
        lambda: bus.read(7, mb.FC_READ_COILS, 0, 5),
        lambda: bus.read(7, mb.FC_READ_DISCRETE_INPUTS, 0, 20),
        lambda: bus.read(7, mb.FC_READ_INPUT_REGISTERS, 45, 10),  # exception 02
        lambda: bus.write(7, mb.FC_WRITE_SINGLE_REGISTER, 2, 5000),  # exception 03
    ]
    for make_tx in script:
        tx = make_tx()
        run(bus, link, clock, tx)
        results.append(outcome(tx))
    assert results[0] == (True, mb.ERR_NONE, 0, dev.inputs[:10])
    assert results[2][3] == [1, 2, 3, 0]
    assert results[4][3] == [1, 0, 1, 1, 0]
    assert results[5][3] == dev.discrete[:20]
    assert results[6] == (False, mb.ERR_EXCEPTION, mb.EXC_ILLEGAL_ADDRESS, [])
    assert results[7] == (False, mb.ERR_EXCEPTION, mb.EXC_ILLEGAL_VALUE, [])
    assert dev.holding[2] == 3

    # A device off the bus: each transaction takes 3 attempts of 50 ms, the unit goes
    # offline after 3 failed transactions; then requests fail at once until a probe.
    dev.offline = True
    for _ in range(3):
        tx = bus.read(7, mb.FC_READ_INPUT_REGISTERS, 0, 1)
        took = run(bus, link, clock, tx)
        assert 150 <= took < 170
        assert outcome(tx)[1] == mb.ERR_TIMEOUT
    h = bus.health(7)
    assert not h.online and h.timeouts == 9
    tx = bus.read(7, mb.FC_READ_INPUT_REGISTERS, 0, 1)
    assert run(bus, link, clock, tx) == 0
    assert outcome(tx)[1] == mb.ERR_OFFLINE
    dev.offline = False
    clock.ms += 1000  # probe interval
    tx = bus.read(7, mb.FC_READ_INPUT_REGISTERS, 0, 1)
    run(bus, link, clock, tx)
    assert outcome(tx)[0] is True and bus.health(7).online


def test_wire_takes_wire_time_direct_none():
    dev, clock = Table(), Clock()
    bus, link = wire_bus(dev, clock)
    tx = bus.read(7, mb.FC_READ_INPUT_REGISTERS, 0, 10)
    took = run(bus, link, clock, tx)
    # request 8 + reply 25 bytes at 115200 baud, two t3.5 gaps and turnaround: 6.7 ms on the line
    assert 6 <= took <= 9
    assert link.line.frames == 1
    bus2, _ = direct_bus(dev, clock)
    tx = bus2.read(7, mb.FC_READ_INPUT_REGISTERS, 0, 10)
    assert run(bus2, None, clock, tx) == 0
