import gc

from fwtest import raises
from rtu_slave import MemSlaves, QuietPort, StallingPort, StuckPort, VTime, frame, rig, run, settle

from firmware.compat import ticks_add, ticks_diff, ticks_max
from firmware.drivers.mem import MemSerialPort
from firmware.proto import modbus_rtu as mb

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap

MICROPYTHON_HEAPSIZE = "128K"  # a board-sized heap


def test_request_bytes_follow_the_spec():
    m, port, vt, slaves, _ = rig()
    m.read(1, 3, 0, 10)
    m.poll(vt.now_ms())
    assert port.take_written() == b"\x01\x03\x00\x00\x00\x0a\xc5\xcd"
    m2, port2, vt2, _, _ = rig()
    m2.write(17, 15, 19, [1, 0, 1, 1, 0, 0, 1, 1, 1, 0])
    m2.poll(vt2.now_ms())
    # Spec example: force 10 coils from 20 (address 19): CD 01.
    assert port2.take_written()[:9] == b"\x11\x0f\x00\x13\x00\x0a\x02\xcd\x01"
    m3, port3, vt3, _, _ = rig()
    m3.write(17, 5, 172, 1)
    m3.poll(vt3.now_ms())
    assert port3.take_written()[:6] == b"\x11\x05\x00\xac\xff\x00"


def test_every_function_code_round_trip():
    m, port, vt, slaves, _ = rig()
    u = slaves.add(7)
    u.input_regs[3:6] = [1, 0xFFFF, 4660]
    u.inputs[5:9] = bytes([1, 0, 1, 1])
    tx = m.read(7, 4, 3, 3)
    run(m, vt, slaves, tx)
    assert tx.ok and list(tx.values) == [1, 0xFFFF, 4660]
    tx.release()
    tx = m.read(7, 2, 5, 4)
    run(m, vt, slaves, tx)
    assert tx.ok and list(tx.values) == [1, 0, 1, 1]
    tx.release()
    writes = ((6, 2, [513]), (16, 10, [1, 2, 65535]), (5, 3, [1]), (15, 20, [1, 1, 0, 1, 0, 0, 0, 0, 1]))
    for fc, addr, vals in writes:
        tx = m.write(7, fc, addr, vals)
        run(m, vt, slaves, tx)
        assert tx.ok and tx.error == mb.ERR_NONE and len(tx.values) == 0, (fc, tx)
        tx.release()
    assert u.holding[2] == 513 and u.holding[10:13] == [1, 2, 65535]
    assert u.coils[3] == 1 and list(u.coils[20:29]) == [1, 1, 0, 1, 0, 0, 0, 0, 1]
    tx = m.read(7, 3, 10, 3)
    run(m, vt, slaves, tx)
    assert list(tx.values) == [1, 2, 65535]
    tx.release()
    tx = m.read(7, 1, 18, 12)
    run(m, vt, slaves, tx)
    assert list(tx.values) == [0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 1, 0]
    h = m.health(7)
    assert h.good == 8 and h.timeouts == 0 and h.online


def test_bools_are_coil_values():
    m, port, vt, slaves, _ = rig()
    u = slaves.add(1)
    tx = m.write(1, 15, 0, [True, False, True])
    run(m, vt, slaves, tx)
    assert tx.ok and list(u.coils[:3]) == [1, 0, 1] and [tx.written(i) for i in range(3)] == [1, 0, 1]
    tx.release()
    tx = m.write(1, 5, 4, True)
    run(m, vt, slaves, tx)
    assert tx.ok and u.coils[4] == 1 and tx.written(0) == 1


def test_largest_requests():
    m, port, vt, slaves, _ = rig()
    u = slaves.add(1, 125, bits=2000)
    for i in range(125):
        u.input_regs[i] = i * 3
    tx = m.read(1, 4, 0, 125)
    run(m, vt, slaves, tx)
    assert tx.ok and tx.values[124] == 372
    tx.release()
    tx = m.write(1, 16, 0, list(range(123)))
    run(m, vt, slaves, tx)
    assert tx.ok and u.holding[122] == 122
    tx.release()
    tx = m.write(1, 15, 0, b"\x01" * 1968)
    run(m, vt, slaves, tx)
    assert tx.ok and u.coils[1967] == 1
    tx.release()
    tx = m.read(1, 1, 0, 2000)
    run(m, vt, slaves, tx)
    assert tx.ok and sum(tx.values) == 1968


def test_bad_requests_raise_before_anything_is_sent():
    m, port, vt, slaves, _ = rig()
    cases = (
        (m.read, (1, 3, 0, 126), "1..125"),
        (m.read, (1, 4, 0, 0), "1..125"),
        (m.read, (1, 1, 0, 2001), "1..2000"),
        (m.read, (1, 2, 0, 2001), "1..2000"),
        (m.read, (1, 5, 0, 1), "FC1..FC4"),
        (m.read, (0, 3, 0, 1), "1..247"),
        (m.read, (248, 3, 0, 1), "1..247"),
        (m.read, (1, 3, -1, 1), "0..65535"),
        (m.read, (1, 3, 65536, 1), "0..65535"),
        (m.read, (1, 3, 65530, 10), "passes 65535"),
        (m.read, (1, 3, 0, "2"), "int"),
        (m.write, (1, 16, 0, list(range(124))), "1..123"),
        (m.write, (1, 16, 0, []), "1..123"),
        (m.write, (1, 15, 0, bytes(1969)), "1..1968"),
        (m.write, (1, 6, 0, 65536), "0..65535"),
        (m.write, (1, 16, 0, [1, -1]), "0..65535"),
        (m.write, (1, 5, 0, 2), "0/1"),
        (m.write, (1, 15, 0, [0, 1, 3]), "0/1"),
        (m.write, (1, 6, 0, [1, 2]), "exactly one"),
        (m.write, (1, 16, 0, [1.5]), "not an int"),
        (m.write, (1, 3, 0, [1]), "FC5, FC6"),
        (m.write, (255, 6, 0, 1), "0..247"),
    )
    for fn, args, text in cases:
        e = raises(ValueError, fn, *args)
        assert text in str(e), (args, str(e))
    for _ in range(3):
        m.poll(vt.now_ms())
    assert port.take_written() == b"" and m.idle()
    # Nothing was lost: the whole pool is still there.
    txs = [m.read(1, 3, 0, 1) for _ in range(8)]
    assert None not in txs and m.read(1, 3, 0, 1) is None


def test_queue_full_and_release():
    m, port, vt, slaves, _ = rig(queue_size=2)
    slaves.add(1)
    a = m.read(1, 3, 0, 1)
    b = m.read(1, 3, 1, 1)
    assert m.read(1, 3, 2, 1) is None
    b.release()  # cancels a queued request
    c = m.read(1, 3, 2, 1)
    assert c is b  # the pool handed the object out again
    run(m, vt, slaves, a)
    run(m, vt, slaves, c)
    assert len(slaves.requests) == 2 and c.address == 2
    a.release()
    e = raises(ValueError, a.release)
    assert "released twice" in str(e)


def test_release_while_on_the_wire_frees_at_the_end():
    m, port, vt, slaves, _ = rig(queue_size=1, timeout_ms=20, retries=0)
    tx = m.read(5, 3, 0, 1)
    m.poll(vt.now_ms())
    assert port.take_written() != b""
    tx.release()
    assert m.read(5, 3, 0, 1) is None  # still busy on the wire
    vt.advance_ms(25)
    m.poll(vt.now_ms())
    assert m.read(5, 3, 0, 1) is not None


def test_timeout_with_retries_exposes_no_values():
    m, port, vt, slaves, _ = rig(timeout_ms=50, retries=2)
    u = slaves.add(3)
    u.holding[0] = 99
    tx = m.read(3, 3, 0, 1)
    run(m, vt, slaves, tx)
    assert tx.ok and tx.values[0] == 99
    t_ok = tx.time_ms
    tx.release()
    u.silent = True
    tx2 = m.read(3, 3, 0, 1)
    assert tx2 is tx  # same pooled object: it must not keep the old data
    ms = run(m, vt, slaves, tx2)
    assert tx2.done and not tx2.ok and tx2.error == mb.ERR_TIMEOUT
    assert len(tx2.values) == 0 and tx2.attempts == 3
    assert 150 <= ms <= 160, ms
    assert ticks_diff(tx2.time_ms, t_ok) >= 150
    h = m.health(3)
    assert h.timeouts == 3 and h.consecutive_failures == 1 and h.good == 1


def test_crc_error_is_retried_and_counted():
    m, port, vt, slaves, _ = rig(retries=1)
    u = slaves.add(2)
    u.input_regs[0] = 1234
    tx = m.read(2, 4, 0, 1)
    m.poll(vt.now_ms())
    good = slaves.step(reply=False)
    bad = bytearray(good)
    bad[3] ^= 0x10
    port.inject(bytes(bad))
    m.poll(vt.now_ms())
    assert not tx.done and m.health(2).crc_errors == 0  # not judged before the frame ends
    vt.advance_us(m.frame_gap_us)
    run(m, vt, slaves, tx)
    assert tx.ok and tx.values[0] == 1234 and tx.attempts == 2
    h = m.health(2)
    assert h.crc_errors == 1 and h.good == 1 and h.consecutive_failures == 0


def test_crc_error_on_every_attempt_fails_with_crc():
    m, port, vt, slaves, _ = rig(retries=1)
    slaves.add(2)
    tx = m.read(2, 3, 0, 2)
    while not tx.done:
        m.poll(vt.now_ms())
        r = slaves.step(reply=False)
        if r:
            port.inject(r[:-1] + bytes([r[-1] ^ 1]))
        vt.advance_us(300)
    assert tx.error == mb.ERR_CRC and len(tx.values) == 0 and m.health(2).crc_errors == 2


def test_each_exception_code_is_an_error_not_retried():
    m, port, vt, slaves, _ = rig(retries=3)
    u = slaves.add(9)
    for code in (1, 2, 3, 4, 5, 6, 11):
        u.exception = code
        tx = m.read(9, 3, 0, 4)
        run(m, vt, slaves, tx)
        assert tx.error == mb.ERR_EXCEPTION and tx.exception_code == code and not tx.ok
        assert tx.attempts == 1 and len(tx.values) == 0
        tx.release()
        tx = m.write(9, 16, 0, [1, 2])
        run(m, vt, slaves, tx)
        assert tx.error == mb.ERR_EXCEPTION and tx.exception_code == code
        tx.release()
    h = m.health(9)
    assert h.exceptions == 14 and h.online and h.consecutive_failures == 0


def test_truncated_reply_is_a_frame_error():
    m, port, vt, slaves, _ = rig(retries=0)
    slaves.add(4)
    tx = m.read(4, 4, 0, 8)
    m.poll(vt.now_ms())
    port.inject(slaves.step(reply=False)[:-3])
    for _ in range(20):
        m.poll(vt.now_ms())
        vt.advance_us(200)
    assert tx.done and tx.error == mb.ERR_FRAME and m.health(4).frame_errors == 1


def test_garbage_before_the_reply_in_one_burst():
    m, port, vt, slaves, _ = rig()
    u = slaves.add(1)
    u.input_regs[0:2] = [7, 8]
    tx = m.read(1, 4, 0, 2)
    m.poll(vt.now_ms())
    r = slaves.step(reply=False)
    port.inject(b"\x00\xff\x01\x04\x01" + r)  # noise that even starts like our reply
    m.poll(vt.now_ms())
    assert tx.ok and list(tx.values) == [7, 8]


def test_garbage_frame_then_reply_after_a_gap():
    m, port, vt, slaves, _ = rig()
    u = slaves.add(1)
    u.input_regs[0] = 5
    tx = m.read(1, 4, 0, 1)
    m.poll(vt.now_ms())
    r = slaves.step(reply=False)
    port.inject(b"\x55\xaa\x13")
    m.poll(vt.now_ms())
    vt.advance_us(3000)
    m.poll(vt.now_ms())
    assert not tx.done and m.stray_frames == 1
    port.inject(r)
    m.poll(vt.now_ms())
    assert tx.ok and tx.values[0] == 5 and tx.attempts == 1


def test_reply_from_the_wrong_unit_is_never_data():
    m, port, vt, slaves, _ = rig(timeout_ms=30, retries=0)
    tx = m.read(5, 3, 0, 1)
    m.poll(vt.now_ms())
    port.take_written()
    port.inject(frame(6, 3, 2, 0x12, 0x34))
    run(m, vt, slaves, tx)
    assert not tx.ok and tx.error == mb.ERR_TIMEOUT and len(tx.values) == 0
    assert m.stray_frames == 1 and m.health(6).good == 0


def test_wrong_byte_count_echo_or_function_is_an_error():
    m, port, vt, slaves, _ = rig(timeout_ms=30, retries=0)
    tx = m.read(5, 3, 0, 2)
    m.poll(vt.now_ms())
    port.take_written()
    port.inject(frame(5, 3, 2, 0, 1))  # valid CRC, but 1 register where 2 were asked
    m.poll(vt.now_ms())
    assert tx.done and tx.error == mb.ERR_FRAME
    tx.release()
    tx = m.write(5, 6, 10, 300)
    settle(m, vt, slaves)
    port.take_written()
    port.inject(frame(5, 6, 0, 10, 1, 0x2D))  # echo carries 301, not 300
    m.poll(vt.now_ms())
    assert tx.done and tx.error == mb.ERR_FRAME
    tx.release()
    tx = m.read(5, 4, 0, 1)
    settle(m, vt, slaves)
    port.inject(frame(5, 3, 2, 0, 1))  # FC03 answer to an FC04 request
    run(m, vt, slaves, tx)
    assert not tx.ok and len(tx.values) == 0


def test_reply_in_pieces_and_a_slow_main_loop():
    m, port, vt, slaves, _ = rig()
    u = slaves.add(1)
    u.holding[0:3] = [1, 2, 3]
    tx = m.read(1, 3, 0, 3)
    m.poll(vt.now_ms())
    r = slaves.step(reply=False)
    for i in range(len(r)):  # byte by byte, polled between bytes
        port.inject(r[i : i + 1])
        m.poll(vt.now_ms())
        vt.advance_us(87)
    assert tx.ok and list(tx.values) == [1, 2, 3]
    tx.release()
    # The loop stalls 20 ms mid-reply: no gap is proven, nothing is lost.
    tx = m.read(1, 3, 0, 3)
    settle(m, vt, slaves, 3)
    m.poll(vt.now_ms())
    r = port.take_written() and slaves.reply_for(slaves.requests[-1])
    port.inject(r[:4])
    vt.advance_ms(20)
    port.inject(r[4:])
    m.poll(vt.now_ms())
    assert tx.ok and list(tx.values) == [1, 2, 3]


def test_a_stall_after_the_reply_arrived_does_not_spoil_it():
    vt = VTime()
    port = StallingPort(vt, 10000)  # far longer than t3.5
    m = mb.ModbusMaster(port, us_clock=vt.us, retries=0)
    slaves = MemSlaves(port)
    slaves.add(1).holding[0] = 42
    tx = m.read(1, 3, 0, 1)
    run(m, vt, slaves, tx)
    assert tx.ok and tx.values[0] == 42 and m.health(1).crc_errors == 0


def test_reply_after_a_flood_of_noise():
    m, port, vt, slaves, _ = rig(retries=0)
    slaves.add(1).holding[0] = 9
    tx = m.read(1, 3, 0, 1)
    m.poll(vt.now_ms())
    r = slaves.step(reply=False)
    port.inject(b"\xaa" * 1500 + r)  # more than the receive buffer and one poll's reads
    polls = 0
    while not tx.done:
        m.poll(vt.now_ms())
        polls += 1
        assert polls < 10
    assert tx.ok and tx.values[0] == 9 and polls >= 3 and m.stray_bytes >= 1500


def test_char_gap_inside_a_frame_discards_it_unless_switched_off():
    for gap_check in (True, False):
        kw = {} if gap_check else {"char_gap_us": 0}
        m, port, vt, slaves, _ = rig(retries=0, **kw)
        assert m.char_gap_us == (750 if gap_check else 0) and m.frame_gap_us == 1750
        slaves.add(1)
        tx = m.read(1, 3, 0, 4)
        m.poll(vt.now_ms())
        r = slaves.step(reply=False)
        port.inject(r[:6])
        m.poll(vt.now_ms())
        vt.advance_us(1000)  # > t1.5, < t3.5
        m.poll(vt.now_ms())  # the empty read that proves the gap
        port.inject(r[6:])
        m.poll(vt.now_ms())
        if gap_check:
            assert tx.done and tx.error == mb.ERR_FRAME
        else:
            assert tx.ok


def test_slow_baud_gaps_scale_with_the_character_time():
    m, _, _, _, _ = rig(baud=9600)
    assert m.char_us == 1146 and m.char_gap_us == 1719 and m.frame_gap_us == 4011
    port = MemSerialPort(19200)
    port.rtu_char_gap_us = 0
    port.rtu_frame_gap_us = 20000
    m = mb.ModbusMaster(port, frame_gap_us=5000)
    assert m.char_gap_us == 0 and m.frame_gap_us == 5000 and m.send_gap_us == 2006


def test_broadcast_waits_for_no_reply_then_turnaround():
    m, port, vt, slaves, _ = rig(turnaround_ms=100)
    a = slaves.add(1)
    b = slaves.add(2)
    tx = m.write(0, 16, 0, [42, 43])
    m.poll(vt.now_ms())
    assert tx.done and tx.ok
    slaves.step()
    assert a.holding[0:2] == [42, 43] and b.holding[0:2] == [42, 43]
    assert m.health(0).good == 0  # broadcast is no unit's health
    t0 = vt.now_ms()
    nxt = m.read(1, 3, 0, 2)
    assert m.next_poll_ms(vt.now_ms()) == 101  # strictly after 100 ticks: >= 100 ms of real time
    sent_at = None
    while not nxt.done:
        m.poll(vt.now_ms())
        if sent_at is None and port.peer_rx:
            sent_at = vt.now_ms()
        slaves.step()
        vt.advance_us(500)
    assert ticks_diff(sent_at, t0) >= 100
    assert list(nxt.values) == [42, 43]
    raises(ValueError, m.read, 0, 3, 0, 1)


def test_offline_after_failures_fail_fast_probe_and_recover():
    m, port, vt, slaves, logs = rig(timeout_ms=20, retries=1, offline_after=2, probe_interval_ms=1000)
    u = slaves.add(8)
    u.silent = True
    for _ in range(2):
        tx = m.read(8, 4, 0, 1)
        run(m, vt, slaves, tx)
        assert tx.error == mb.ERR_TIMEOUT
        tx.release()
    h = m.health(8)
    assert not h.online and h.timeouts == 4 and len(logs) == 1 and "offline" in logs[0]
    # Between probes: instant failure, nothing on the wire, no log lines.
    n_req = len(slaves.requests)
    for _ in range(5):
        tx = m.read(8, 4, 0, 1)
        m.poll(vt.now_ms())
        assert tx.done and tx.error == mb.ERR_OFFLINE and len(tx.values) == 0
        tx.release()
        vt.advance_ms(10)
    assert len(slaves.requests) == n_req and len(logs) == 1 and h.timeouts == 4
    # A probe is one attempt, even with retries configured.
    vt.advance_ms(1000)
    tx = m.read(8, 4, 0, 1)
    run(m, vt, slaves, tx)
    assert tx.error == mb.ERR_TIMEOUT and tx.attempts == 1 and tx.probe
    assert len(slaves.requests) == n_req + 1 and len(logs) == 1 and not h.online
    tx.release()
    u.silent = False
    u.input_regs[0] = 77
    tx = m.read(8, 4, 0, 1)
    run(m, vt, slaves, tx)
    assert tx.error == mb.ERR_OFFLINE  # next probe not due yet
    tx.release()
    vt.advance_ms(1000)
    tx = m.read(8, 4, 0, 1)
    run(m, vt, slaves, tx)
    assert tx.ok and tx.values[0] == 77 and h.online and h.consecutive_failures == 0
    assert len(logs) == 2 and "back online" in logs[1]


def test_offline_unit_does_not_hold_up_others():
    m, port, vt, slaves, logs = rig(timeout_ms=20, retries=0, offline_after=1, probe_interval_ms=10000)
    slaves.add(1).silent = True
    slaves.add(2).holding[0] = 5
    tx = m.read(1, 3, 0, 1)
    run(m, vt, slaves, tx)
    tx.release()
    a = m.read(1, 3, 0, 1)
    b = m.read(2, 3, 0, 1)
    ms = run(m, vt, slaves, b)
    assert a.error == mb.ERR_OFFLINE and b.ok and ms < 5


def test_no_log_without_callback_and_fifo_order():
    port = MemSerialPort(115200)
    vt = VTime()
    m = mb.ModbusMaster(port, us_clock=vt.us, timeout_ms=10, retries=0, offline_after=1)
    slaves = MemSlaves(port)
    for unit in (3, 1, 2):
        slaves.add(unit).holding[0] = unit * 10
    txs = [m.read(unit, 3, 0, 1) for unit in (3, 1, 2, 4)]
    run(m, vt, slaves, txs[-1])
    assert [t.values[0] for t in txs[:3]] == [30, 10, 20] and txs[3].error == mb.ERR_TIMEOUT
    assert [r[0] for r in slaves.requests] == [3, 1, 2, 4]
    assert not m.health(4).online


def test_late_reply_of_a_previous_unit_is_not_taken():
    m, port, vt, slaves, _ = rig(timeout_ms=20, retries=0)
    slaves.add(1).holding[0] = 111
    slaves.add(2).holding[0] = 222
    a = m.read(1, 3, 0, 1)
    m.poll(vt.now_ms())
    late = slaves.step(reply=False)
    b = m.read(2, 3, 0, 1)
    vt.advance_ms(21)
    m.poll(vt.now_ms())  # a times out
    assert a.error == mb.ERR_TIMEOUT
    port.inject(late)  # unit 1 answers late, while b waits for the line
    run(m, vt, slaves, b)
    assert b.ok and b.values[0] == 222
    assert m.stray_bytes == len(late)


def test_stray_bytes_in_idle_delay_the_next_request():
    m, port, vt, slaves, _ = rig()
    slaves.add(1)
    port.inject(b"\x01\x02\x03")
    m.poll(vt.now_ms())
    assert m.stray_bytes == 3
    tx = m.read(1, 3, 0, 1)
    m.poll(vt.now_ms())
    assert port.take_written() == b""  # line not quiet for t3.5 yet
    assert m.next_poll_ms(vt.now_ms()) == 2 and m.next_poll_us(vt.now_ms()) == 1750
    vt.advance_us(1000)
    assert m.next_poll_us(vt.now_ms()) == 750
    m.poll(vt.now_ms())
    assert port.take_written() == b""
    vt.advance_us(750)
    m.poll(vt.now_ms())
    assert len(port.take_written()) == 8 and not tx.done


def test_next_poll_ms_guides_a_virtual_time_loop():
    m, port, vt, slaves, _ = rig(timeout_ms=100)
    slaves.add(1)
    assert m.next_poll_ms(vt.now_ms()) == mb.IDLE_POLL_MS and m.idle()
    tx = m.read(1, 4, 0, 10)
    assert m.next_poll_ms(vt.now_ms()) == 0 and not m.idle()
    m.poll(vt.now_ms())
    wait = m.next_poll_ms(vt.now_ms())
    assert 1 <= wait <= 6, wait  # about the reply's wire time, not the timeout
    polls = 0
    while not tx.done:  # jump virtual time by what the master asks for
        vt.advance_ms(max(1, m.next_poll_ms(vt.now_ms())))
        slaves.step()
        m.poll(vt.now_ms())
        polls += 1
    assert tx.ok and polls <= 3
    slaves.units[1].silent = True
    tx.release()
    tx = m.read(1, 4, 0, 10)
    polls = 0
    while not tx.done:
        m.poll(vt.now_ms())
        slaves.step()
        vt.advance_ms(max(1, m.next_poll_ms(vt.now_ms())))
        polls += 1
    # Past the reply's wire time it asks for a poll every ms until the deadline.
    assert tx.error == mb.ERR_TIMEOUT and polls <= 2 * 105, polls


def test_time_wraparound():
    top = ticks_max()
    m, port, vt, slaves, _ = rig(start_ms=ticks_add(top, -30), start_us=ticks_add(top, -400), timeout_ms=50,
                                 retries=0)
    u = slaves.add(1)
    u.holding[0] = 3
    tx = m.read(1, 3, 0, 1)
    run(m, vt, slaves, tx)
    assert tx.ok
    tx.release()
    u.silent = True
    tx = m.read(1, 3, 0, 1)
    ms = run(m, vt, slaves, tx)
    assert tx.error == mb.ERR_TIMEOUT and 50 <= ms <= 53, ms
    assert vt.now_ms() < 1000  # the clock did wrap during the test


def test_partial_writes_and_a_port_that_never_finishes():
    port = StuckPort()
    vt = VTime()
    m = mb.ModbusMaster(port, us_clock=vt.us, timeout_ms=20, retries=0)
    slaves = MemSlaves(port)
    slaves.add(1).holding[0] = 6
    tx = m.read(1, 3, 0, 1)
    for _ in range(10):
        m.poll(vt.now_ms())
    assert len(port.peer_rx) == 8
    run(m, vt, slaves, tx)
    assert tx.ok and tx.values[0] == 6
    port.stuck = True
    tx.release()
    tx = m.read(1, 3, 0, 1)
    run(m, vt, slaves, tx, reply=False)
    assert tx.error == mb.ERR_TIMEOUT


def test_transaction_pool_keeps_the_heap_quiet():
    if not hasattr(gc, "mem_alloc"):
        return  # CPython
    replies = {}
    for unit in (1, 2, 3):
        replies[unit] = frame(*([unit, 4, 32] + [unit] * 32))
    port = QuietPort(lambda req: replies.get(req[0]))
    vt = VTime()
    m = mb.ModbusMaster(port, us_clock=vt.us)

    def cycle():
        for unit in (1, 2, 3):
            t = m.read(unit, 4, 0, 16)
            m.poll(vt.now_ms())
            assert t.ok and t.values[15] == unit * 257, t
            t.release()
            vt.advance_us(2000)

    cycle()  # warm up: each pooled Transaction sizes its value list once
    cycle()
    gc.collect()
    before = gc.mem_alloc()
    gc.disable()
    try:
        for _ in range(10):
            cycle()
        used = gc.mem_alloc() - before
    finally:
        gc.enable()
    # One small memoryview per request; a 16-register reply alone would be 150+ bytes.
    assert used <= 30 * 48, used
