"""RTU master liveness: a line that never goes quiet, and replies longer than the timeout."""

from rtu_slave import frame, rig

from firmware.proto import modbus_rtu as mb

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap

MICROPYTHON_HEAPSIZE = "128K"  # a board-sized heap


def _babble(m, port, vt, until, limit_ms, every_us=500):
    """A node that talks all the time: a byte every ``every_us`` (under t3.5), polled
    between bytes, until ``until()`` or ``limit_ms``; returns elapsed ms."""
    start = vt.elapsed_us
    while not until() and vt.elapsed_us - start < limit_ms * 1000:
        port.inject(b"\x55")
        m.poll(vt.now_ms())
        vt.advance_us(every_us)
    return (vt.elapsed_us - start) // 1000


def test_a_line_that_never_goes_quiet_fails_the_request_in_time():
    m, port, vt, slaves, logs = rig(timeout_ms=20, retries=1, offline_after=2)
    slaves.add(1)
    tx = m.read(1, 3, 0, 1)
    ms = _babble(m, port, vt, lambda: tx.done, 1000)
    # Each attempt waited its timeout for t3.5 of silence, then failed like a silent unit.
    assert tx.done and tx.error == mb.ERR_TIMEOUT and len(tx.values) == 0, tx
    assert 40 <= ms <= 42, ms
    assert tx.attempts == 2 and port.take_written() == b""  # nothing was sent into the noise
    h = m.health(1)
    assert h.timeouts == 2 and h.consecutive_failures == 1 and h.online
    assert m.babbling and len(logs) == 1 and "never quiet" in logs[0], logs
    tx.release()
    # The usual offline counting: the unit goes offline, its requests then fail fast.
    tx = m.read(1, 3, 0, 1)
    _babble(m, port, vt, lambda: tx.done, 1000)
    assert tx.error == mb.ERR_TIMEOUT and not h.online and len(logs) == 2 and "offline" in logs[1]
    tx.release()
    # The line goes quiet: the flag stays up for a quiet period (one episode, no flapping) ...
    vt.advance_ms(mb.LINE_QUIET_MS - 100)
    m.poll(vt.now_ms())
    assert m.babbling
    vt.advance_ms(100)
    m.poll(vt.now_ms())
    assert not m.babbling and len(logs) == 3 and "quiet" in logs[2], logs
    # ... and the unit's next probe goes out and brings it back.
    vt.advance_ms(5000)
    slaves.units[1].holding[0] = 4
    tx = m.read(1, 3, 0, 1)
    while not tx.done:
        m.poll(vt.now_ms())
        slaves.step()
        vt.advance_us(200)
    assert tx.ok and tx.values[0] == 4 and h.online


def test_noise_that_keeps_coming_back_is_one_episode():
    m, port, vt, slaves, logs = rig(timeout_ms=20, retries=0, offline_after=100)
    slaves.add(1)
    for _ in range(5):  # 100 ms of babble, then 1 s of quiet, five times
        tx = m.read(1, 3, 0, 1)
        _babble(m, port, vt, lambda: False, 100)
        assert tx.done and tx.error == mb.ERR_TIMEOUT and m.babbling
        tx.release()
        for _ in range(10):
            vt.advance_ms(100)
            m.poll(vt.now_ms())
    assert m.babbling and len(logs) == 1, logs


def test_the_wait_for_the_line_counts_from_the_head_of_the_queue():
    # b waits behind a's whole timeout; its own wait for the line starts only after.
    m, port, vt, slaves, _ = rig(timeout_ms=20, retries=0)
    slaves.add(2).holding[0] = 22
    a = m.read(1, 3, 0, 1)  # no such unit: a times out
    b = m.read(2, 3, 0, 1)
    m.poll(vt.now_ms())
    port.take_written()
    vt.advance_ms(15)
    m.poll(vt.now_ms())
    _babble(m, port, vt, lambda: a.done, 10)
    assert a.error == mb.ERR_TIMEOUT and not b.done
    _babble(m, port, vt, lambda: False, 15)  # 15 ms of noise: less than b's own timeout
    while not b.done:
        m.poll(vt.now_ms())
        m.poll(vt.now_ms())
        vt.advance_us(200)
        if port.peer_rx:
            req = port.take_written()
            port.inject(frame(2, 3, 2, 0, 22))
            assert req[0] == 2
    assert b.ok and b.values[0] == 22 and m.health(2).timeouts == 0


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
