"""Nothing that runs a drive reaches the bay module after the controller latched a stop:
an output image still waiting for the bus when the e-stop latches is taken back, and the
stop image goes out first. The bus side: ``withdraw`` of a request not on the wire."""

from rtu_slave import rig, run, settle
from station import Station

from firmware.core import safety as sf
from firmware.proto import regmap as rm

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap

FC_WRITE_COILS = 15


def _fcs(slaves):
    return [r[1] for r in slaves.requests]


def _read_then_write():
    """A sensor read on the wire and a coil write queued behind it."""
    m, port, vt, slaves, _ = rig()
    u = slaves.add(1)
    rd = m.read(1, 2, 0, 8)
    w = m.write(1, 15, 0, [1, 1])
    m.poll(vt.now_ms())
    return m, vt, slaves, u, rd, w


def test_withdraw_takes_back_a_queued_request():
    m, vt, slaves, u, rd, w = _read_then_write()
    assert not m.withdraw(rd)  # on the wire: it ends as usual
    assert m.withdraw(w)
    run(m, vt, slaves, rd)
    assert rd.ok
    settle(m, vt, slaves)
    assert _fcs(slaves) == [2] and list(u.coils[:2]) == [0, 0]
    assert m.idle()


def test_withdraw_takes_back_a_request_waiting_for_line_silence():
    m, vt, slaves, u, rd, w = _read_then_write()
    slaves.step()  # the reply is there at once
    m.poll(vt.now_ms())  # read done; the write waits t3.5 after the reply
    assert rd.done and rd.ok and not w.done
    assert m.withdraw(w)
    settle(m, vt, slaves)
    assert _fcs(slaves) == [2] and list(u.coils[:2]) == [0, 0]
    assert m.idle()
    w2 = m.write(1, 15, 0, [0, 1])  # the pool got the handle back, the bus works on
    run(m, vt, slaves, w2)
    assert w2.ok and list(u.coils[:2]) == [0, 1]


def test_a_withdrawn_request_on_the_wire_is_not_sent_again():
    m, port, vt, slaves, _ = rig(retries=2)
    u = slaves.add(1)
    u.silent = True
    w = m.write(1, 15, 0, [1, 1])
    m.poll(vt.now_ms())
    assert not m.withdraw(w)
    run(m, vt, slaves, w)
    assert w.error == 1 and _fcs(slaves) == [15]  # timed out once, no retry
    w.release()
    w = m.write(1, 15, 0, [1, 1])  # a new request gets its retries again
    run(m, vt, slaves, w)
    assert _fcs(slaves) == [15] * 4


def _manual_with_a_read_on_the_bus():
    s = Station(latency_ms=5)
    s.start()
    assert s.sup.manual(True)
    s.run(300)
    unit = s.cfg["buses"]["bay_io"]["unit"]
    for _ in range(200):  # until the sensor read is the one request on the bay bus
        s.tick()
        if s.sup.baylink.reading() and s.bay_bus.pending() == 1 and not s.sup.baylink.finished():
            break
        s.plant.advance(1)
    else:
        raise AssertionError("no sensor read alone on the bus")
    s.bay_bus.log_writes = []
    s.bay_bus.log_unit = unit
    return s


def _lift_up_writes(s):
    return [v for _, fc, _, v in s.bay_bus.log_writes if fc == FC_WRITE_COILS and v[rm.BAY_CO_LIFT_UP]]


def test_controller_estop_takes_back_a_jog_still_queued():
    # The operator jogs the lift up while a sensor read is on the bus, then presses the
    # controller's e-stop before the jog's write got the bus. The next tick latches the
    # stop: that write must never reach the module, even when the read ends in that tick.
    s = _manual_with_a_read_on_the_bus()
    assert s.sup.jog(rm.BAY_CO_LIFT_UP, True)
    s.estop_pin.value(0)
    s.plant.advance(6)  # the read's answer is due in the tick that latches
    s.run(300)
    assert s.sup.bay.safety.hold & sf.ESTOP
    assert _lift_up_writes(s) == []
    assert s.run_coils() == [] and s.plant.bay.coils[rm.BAY_CO_BEACON_RED] == 1



def test_a_slow_tick_does_not_shorten_the_reply_timeout():
    # A tick that ran long (a slow flash write, a loaded host) polls with the now_ms it
    # started with. The request that poll sends has its whole timeout from when it left:
    # the next tick, 2 ms later, must not call it timed out before the reply came.
    m, port, vt, slaves, _ = rig(timeout_ms=30, retries=0)
    slaves.add(1)
    tick_start = vt.now_ms()
    vt.advance_us(300000)  # the tick spent 300 ms before this poll
    tx = m.read(1, 2, 0, 8)
    m.poll(tick_start)
    vt.advance_us(2000)
    m.poll(vt.now_ms())  # next tick: the reply is not there yet
    slaves.step()
    vt.advance_us(1000)
    m.poll(vt.now_ms())
    assert tx.done and tx.ok, tx
    assert m.health(1).timeouts == 0
