"""RTU master liveness: replies longer than the timeout on the wire."""

from rtu_slave import rig

from firmware.proto import modbus_rtu as mb

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap

MICROPYTHON_HEAPSIZE = "128K"  # a board-sized heap


def _stream(m, port, vt, reply, turnaround_us):
    """The device answers ``turnaround_us`` after the request, at the line's own pace."""
    vt.advance_us(turnaround_us)
    m.poll(vt.now_ms())
    for i in range(len(reply)):
        vt.advance_us(m.char_us)
        port.inject(reply[i : i + 1])
        m.poll(vt.now_ms())


def test_a_reply_longer_than_the_timeout_on_the_wire_is_taken():
    # The bay module's 48-register read at 19200 baud: 101 bytes, 58 ms on the wire,
    # with station.json's 30 ms bay_io timeout.
    m, port, vt, slaves, _ = rig(baud=19200, timeout_ms=30, retries=1)
    u = slaves.add(100, 48)
    for i in range(48):
        u.input_regs[i] = 1000 + i
    tx = m.read(100, 4, 0, 48)
    m.poll(vt.now_ms())
    reply = slaves.reply_for(port.take_written())
    assert len(reply) == 101 and len(reply) * m.char_us > 30000
    _stream(m, port, vt, reply, m.send_gap_us)
    assert tx.ok and tx.attempts == 1 and tx.values[47] == 1047, tx
    assert port.take_written() == b""  # no retry went out over the reply
    # The timeout itself is unchanged: a device that does not start answering still
    # fails after timeout_ms plus the reply's wire time, not later.
    tx.release()
    u.silent = True
    tx = m.read(100, 4, 0, 48)
    start = vt.elapsed_us
    while not tx.done:
        m.poll(vt.now_ms())
        slaves.step()
        vt.advance_us(200)
    per_attempt = (vt.elapsed_us - start) / 2000
    assert tx.error == mb.ERR_TIMEOUT and tx.attempts == 2
    assert 30 + 58 <= per_attempt <= 30 + 58 + 3, per_attempt


def test_an_exception_answer_to_a_long_read_still_ends_it_at_once():
    m, port, vt, slaves, _ = rig(baud=19200, timeout_ms=30, retries=1)
    slaves.add(100, 48).exception = mb.EXC_DEVICE_BUSY
    tx = m.read(100, 4, 0, 48)
    m.poll(vt.now_ms())
    reply = slaves.reply_for(port.take_written())
    assert len(reply) == 5
    _stream(m, port, vt, reply, m.send_gap_us)
    assert tx.done and tx.error == mb.ERR_EXCEPTION and tx.exception_code == mb.EXC_DEVICE_BUSY
