import os

from fwtest import raises
from jtest import CutStorage, Tally, check_after_reboot, clear_dir, export, rmtree, swap_workload, tempdir

from firmware.compat import micropython_heap
from firmware.core import journal
from firmware.core.journal import LOG_NAME, NEW_NAME, Journal
from firmware.drivers.blockdev import CutSwitch, FileBlockDev, RamBlockDev
from firmware.drivers.vfs_storage import VfsStorage

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap
QEMU_EXCLUDE = {
    "test_power_cut_at_every_write_on_directory_storage": (
        "a cut at each of its 138 writes, each rebooted and replayed: over a minute under QEMU "
        "(26 s on the unix port); the torn-record, leftover-file and retry tests run the same "
        "recovery on the board"
    ),
    "test_power_cut_at_every_block_write_on_littlefs": (
        "its medium is a 24 KB RAM block device on the heap, two of them and a copy live at each "
        "reboot: in 128K (and 256K) no 24 KB run is left once the journal's state is spread over "
        "the heap. A board's flash is not on its heap"
    ),
}

try:
    import vfs

    HAVE_LFS = hasattr(vfs, "VfsLfs2")
except ImportError:  # CPython
    HAVE_LFS = False


class _Dir:
    def __init__(self, tag):
        self.path = tempdir(tag)
        self.st = VfsStorage(self.path)

    def journal(self, max_bytes=4096, every=20):
        j = Journal(self.st, max_bytes, every)
        j.open()
        return j

    def log(self):
        with open(self.path + "/" + LOG_NAME, "rb") as f:
            return f.read()

    def put_log(self, data):
        with open(self.path + "/" + LOG_NAME, "wb") as f:
            f.write(data)

    def done(self):
        rmtree(self.path)


def _reopen(d, j, **kw):
    j.close()
    return d.journal(**kw)


def test_crc32_matches_the_standard_check_value():
    assert journal.crc32(b"123456789") == 0xCBF43926
    assert journal.crc32(b"") == 0
    saved = journal._crc32
    try:
        journal._crc32 = None  # the bitwise fallback for ports without binascii.crc32
        assert journal.crc32(b"123456789") == 0xCBF43926
        assert journal.crc32(b"The quick brown fox") == saved(b"The quick brown fox") & 0xFFFFFFFF
    finally:
        journal._crc32 = saved


def test_record_round_trip_and_crc_rejects_damage():
    line = journal.encode(7, "RK", {"s": 3, "p": "P|1", "soc": 55.5})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    seq, kind, f = journal.decode(line[:-1])
    assert (seq, kind, f["s"], f["p"], f["soc"]) == (7, "RK", 3, "P|1", 55.5)
    for i in range(len(line) - 1):
        bad = bytearray(line[:-1])
        bad[i] ^= 0x01
        assert journal.decode(bytes(bad)) is None, i
    assert journal.decode(line[:-5]) is None
    assert journal.decode(b"") is None


def test_fresh_journal_records_boots_and_survives_reopen():
    d = _Dir("fresh")
    j = d.journal()
    assert j.state.boots == 1 and j.state.seq == 1 and j.report.clean
    j = _reopen(d, j)
    assert j.state.boots == 2 and j.state.seq == 2
    j.close()
    d.done()


def test_state_is_rebuilt_on_replay():
    d = _Dir("state")
    j = d.journal()
    j.rack_change(0, "P1", "NIO-75", 88.0, 97.5, 312, "CHARGING")
    j.rack_change(1, "P2", "NIO-100", 95.0, 99.0, 40, "READY")
    j.alarm(0, "OVERTEMP", True, 100, "66.0C")
    j.alarm(1, "SMOKE", True, 110)
    j.alarm(1, "SMOKE", False, 120)
    j.operator("clear_alarm", "op7", 130, "slot 1")
    n = j.swap_begin("LNB123", "NIO-ES6", 1000, slot=1, pack_in="P2")
    j.swap_step(n, "unbolt", "ok", 1100, {"po": "P9", "so": 12.0})
    j.swap_end(n, "ok", 1200, "P9", 12.0, "P2", 95.0, 2.5, wall_s=1760000000)
    j.append("NT", {"text": "door opened", "n": [1, 2]})
    j.rack_change(2, 0xFEDCBA98, "NIO-150", 30.0, 91.0, 800, "CHARGING")  # u32 serial from a charger
    j = _reopen(d, j)
    s = j.state
    assert j.report.clean and j.report.records == 12
    assert s_packs_ok(j.state)
    assert s.slots[0]["p"] == "P1" and s.slots[0]["cy"] == 312 and s.slots[1]["st"] == "READY"
    assert list(s.alarms) == ["0:OVERTEMP"] and s.alarms["0:OVERTEMP"]["d"] == "66.0C"
    assert s.open_swap is None and s.swap_no == 1 and s.swaps_ok == 1 and s.energy_wh == 2500
    assert s.packs["P2"][3] == 1 and s.packs["P9"][3] == 1 and s.packs["P1"][1] == 312
    recs = list(j.swap_records())
    assert len(recs) == 1
    f = recs[0][1]
    assert (f["v"], f["po"], f["so"], f["pi"], f["si"], f["o"], f["t0"], f["t1"]) == (
        "LNB123",
        "P9",
        12.0,
        "P2",
        95.0,
        "ok",
        1000,
        1200,
    )
    assert f["b"] == 1 and f["w"] == 1760000000
    j.close()
    d.done()


def s_packs_ok(s):
    return s.slots[2]["p"] == 0xFEDCBA98 and s.packs[0xFEDCBA98][1] == 800


def test_interrupted_swap_shows_where_it_stopped():
    d = _Dir("open")
    j = d.journal()
    n = j.swap_begin("LNB9", "NIO-ET5", 50, slot=4, pack_in="P44")
    j.swap_step(n, "unbolt", "ok", 60, {"po": "P10", "so": 18.0})
    j.swap_step(n, "remove", "start", 70)
    j = _reopen(d, j)
    sw = j.state.open_swap
    assert sw["n"] == n and sw["s"] == "remove" and sw["r"] == "start" and sw["ts"] == 70
    assert sw["po"] == "P10" and sw["pi"] == "P44" and sw["rs"] == 4 and sw["v"] == "LNB9"
    # the supervisor can now finish or abort it; a second swap cannot start meanwhile
    e = raises(ValueError, j.swap_begin, "X", "NIO-ET5", 80)
    assert "still open" in str(e)
    j.swap_end(n, "aborted", 90, pack_out="P10", soc_out=18.0)
    assert j.state.open_swap is None and j.state.swaps_failed == 1
    j.close()
    d.done()


def test_torn_last_record_at_every_cut_point():
    d = _Dir("torn")
    j = d.journal()
    j.rack_change(2, "P5", "NIO-75", 50.0, 98.0, 10, "CHARGING")
    before = j.size
    j.rack_change(3, "P6", "NIO-75", 60.0, 98.0, 11, "CHARGING")
    j.close()
    whole = d.log()
    for cut in range(before + 1, len(whole) - 1):  # every length that tears the last record
        d.put_log(whole[:cut])
        j = d.journal()
        assert j.report.torn and j.report.corrupt == 0 and j.report.dups == 0, cut
        assert 3 not in j.state.slots and j.state.slots[2]["p"] == "P5"
        seq = j.rack_change(3, "P7", "NIO-75", 61.0, 98.0, 12, "CHARGING")
        j = _reopen(d, j)
        # the torn line stays as one skipped line; nothing after it is lost
        assert j.state.slots[3]["p"] == "P7" and j.state.seq == seq + 1, cut
        assert j.report.gaps == 0 and j.report.dups == 0, cut
        j.close()
    d.put_log(whole[:-1])  # whole record, only its newline lost: kept
    j = d.journal()
    assert not j.report.torn and j.report.unterminated and j.state.slots[3]["p"] == "P6"
    j = _reopen(d, j)
    assert j.report.clean and j.state.slots[3]["p"] == "P6" and j.state.boots == 3
    j.close()
    d.done()


def test_corrupt_record_in_the_middle_is_skipped_and_reported():
    d = _Dir("corrupt")
    j = d.journal()
    for i in range(5):
        j.rack_change(i, f"P{i}", "NIO-75", 50.0, 98.0, i, "CHARGING")
    j.close()
    data = bytearray(d.log())
    lines = bytes(data).split(b"\n")
    off = len(lines[0]) + len(lines[1]) + len(lines[2]) + 3 + 10  # inside slot 2's record
    data[off] ^= 0x20
    d.put_log(bytes(data))
    j = d.journal()
    rep = j.report
    assert rep.corrupt == 1 and rep.gaps == 1 and not rep.torn and not rep.clean
    assert 2 not in j.state.slots and j.state.slots[4]["p"] == "P4" and j.state.slots[1]["p"] == "P1"
    j.close()
    d.done()


def test_bad_inputs_are_refused_and_write_nothing():
    d = _Dir("bad")
    j = d.journal()
    n = j.swap_begin("V1", "NIO-ES6", 0)
    size, seq = j.size, j.state.seq
    cases = [
        (j.append, ("RK", {})),  # typed kinds go through their helper
        (j.append, ("CK", {})),
        (j.append, ("x", {})),
        (j.append, ("NT", [1])),
        (j.append, ("NT", {"a": object()})),
        (j.append, ("NT", {"a": float("nan")})),
        (j.append, ("NT", {"a": float("inf")})),
        (j.append, ("NT", {"a": [1.0, float("-inf")]})),
        (j.append, ("NT", {"a": "x" * 600})),
        (j.append, ("NT", {1: 2})),
        (j.swap_begin, ("V2", "NIO-ES6", 1)),  # one swap at a time
        (j.swap_step, (n + 1, "unbolt", "ok", 1)),
        (j.swap_step, (n, "unbolt", "ok", 1, {"zz": 1})),
        (j.swap_step, (n, "", "ok", 1)),
        (j.swap_end, (n, "ok", 1, "P1", 120.0)),
        (j.swap_end, (n, "ok", 1, None, None, None, None, -1.0)),
        (j.swap_end, (n + 5, "ok", 1)),
        (j.rack_change, (-1, "P1")),
        (j.rack_change, ("1", "P1")),
        (j.rack_change, (1, -5)),
        (j.rack_change, (1, 1 << 32)),
        (j.rack_change, (1, 2.5)),
        (j.rack_change, (1, "P1", "NIO-75", 50.0, 101.0)),
        (j.alarm, (0, "OT", 1, 5)),
        (j.alarm, (-2, "OT", True, 5)),
        (j.alarm, (0, "", True, 5)),
        (j.operator, ("", "op", 5)),
        (j.operator, ("reset", "op", "now")),
        (j.mark_exported, (0,)),
        (j.mark_exported, (seq + 10,)),
    ]
    for fn, args in cases:
        raises(ValueError, fn, *args)
        assert j.size == size and j.state.seq == seq, (fn, args)
    j = _reopen(d, j)
    assert j.report.clean and j.state.open_swap["n"] == n
    raises(ValueError, Journal, d.st, 100, 5)
    raises(ValueError, j.open)  # already open
    j.close()
    raises(ValueError, j.rack_change, 1, "P1")  # closed
    d.done()


def test_compaction_bounds_the_file_and_keeps_unexported_swaps():
    d = _Dir("compact")
    j = d.journal(max_bytes=4096, every=25)
    tally = Tally()
    peak = 0
    for _ in range(8):
        swap_workload(j, tally, 5, export_every=4, budget=4)
        peak = max(peak, j.size)
    j.service(1000)
    assert j.state.ckpt_seq > 0  # compaction ran
    assert peak < 4096 * 3 // 2, peak
    j = _reopen(d, j)
    assert j.report.clean and j.report.records > 0
    seen = check_after_reboot(j, tally)
    assert len(tally.acked) == 40 and j.state.swaps_ok == 40 and j.state.swap_no == 40
    assert len(seen) < 40  # exported ones were dropped
    for n in tally.acked:
        assert n in seen or n in tally.back_office
    assert not d.st.exists(NEW_NAME)
    j.close()
    d.done()


def test_unexported_swaps_survive_compaction_until_exported():
    d = _Dir("keep")
    j = d.journal(max_bytes=4096, every=10)
    tally = Tally()
    swap_workload(j, tally, 12, export_every=1000)
    j.compact()
    assert [f["n"] for _, f in j.swap_records()] == list(range(1, 13))
    j = _reopen(d, j)
    assert j.report.retained == 12 and j.report.clean
    assert [f["n"] for _, f in j.swap_records()] == list(range(1, 13))
    export(j, tally)
    j.compact()
    assert list(j.swap_records(0)) == [] and len(tally.back_office) == 12
    j = _reopen(d, j)
    assert j.state.swaps_ok == 12 and j.state.exported > 0 and list(j.swap_records(0)) == []
    j.close()
    d.done()


def test_compaction_interleaved_with_appends_keeps_order():
    d = _Dir("inter")
    j = d.journal(max_bytes=4096, every=1000)
    for i in range(30):
        j.rack_change(i % 23, f"P{i}", "NIO-75", 40.0, 99.0, i, "CHARGING")
    j._since_ckpt = 1000  # make it due now
    assert not j.service(2) and j.compacting
    steps = 0
    while j.compacting:
        j.alarm(steps % 3, f"T{steps}", True, steps)
        j.service(2)
        steps += 1
    assert steps > 3
    last = j.state.seq
    j = _reopen(d, j)
    assert j.report.clean and j.state.seq == last + 1
    assert len(j.state.alarms) == steps and j.state.slots[6]["p"] == "P29"
    j.close()
    d.done()


def test_leftover_new_file_from_a_cut_compaction():
    d = _Dir("left")
    j = d.journal()
    j.rack_change(0, "P1", "NIO-75", 40.0, 99.0, 1, "CHARGING")
    j.close()
    with open(d.path + "/" + NEW_NAME, "wb") as f:
        f.write(b"0 CK {}|00000000\n")  # half-written compaction
    j = d.journal()
    assert j.report.dropped_new and not d.st.exists(NEW_NAME) and j.state.slots[0]["p"] == "P1"
    j.compact()
    j.close()
    # a filesystem that replaces by remove + rename, cut between the two steps
    os.rename(d.path + "/" + LOG_NAME, d.path + "/" + NEW_NAME)
    j = d.journal()
    assert j.report.recovered_new and j.report.clean and j.state.slots[0]["p"] == "P1"
    j.close()
    d.done()


def _cut_runs(fresh, reboot, swaps, label):
    """Run the workload once to count writes, then again cut at every k; after each
    cut reboot, check, run more swaps and check again. ``fresh(k)`` gives storage on a
    blank medium (cut armed after k writes unless k is None); ``reboot(j)`` gives
    storage on the same medium after the cut, the dead run's handles released."""
    st = fresh(None)
    j = Journal(st, 4096, 12)
    j.open()
    swap_workload(j, Tally(), swaps)
    total = st.ops
    assert j.state.ckpt_seq > 0  # the cuts also land inside compactions and their rename
    j.close()
    assert total > 30, total
    for k in range(total):
        st = fresh(k)
        tally = Tally()
        j = Journal(st, 4096, 12)
        try:
            j.open()
            swap_workload(j, tally, swaps)
            raise AssertionError(f"{label}: no cut at k={k}")
        except OSError:
            pass
        st = reboot(j)
        j = Journal(st, 4096, 12)
        rep = j.open()
        assert rep.dups == 0 and rep.gaps == 0 and rep.corrupt == 0 and not rep.bad_checkpoint, (label, k)
        check_after_reboot(j, tally)
        swap_workload(j, tally, 2)
        j.close()
        j = Journal(st, 4096, 12)
        rep = j.open()
        assert rep.clean or (rep.corrupt == 1 and rep.gaps == 0), (label, k)
        check_after_reboot(j, tally)
        j.close()
    return total


def _close_quietly(j):
    try:
        j.close()
    except OSError:
        pass


def test_power_cut_at_every_write_on_directory_storage():
    path = tempdir("cutdir")

    def fresh(k):
        clear_dir(path)
        st = CutStorage(VfsStorage(path))
        if k is not None:
            st.cut_after(k)
        return st

    def reboot(j):
        _close_quietly(j)
        return VfsStorage(path)

    total = _cut_runs(fresh, reboot, 8, "dir")
    assert total > 60
    rmtree(path)


def test_power_cut_at_every_block_write_on_littlefs():
    """MicroPython: VfsLfs2 on a RAM block device torn at every k-th program/erase.
    CPython has no LittleFS: it replays the directory journal truncated at every byte."""
    if not HAVE_LFS:
        _truncate_every_byte()
        return
    import gc

    dev = [None]

    def fresh(k):
        dev[0] = RamBlockDev(512, 48)
        vfs.VfsLfs2.mkfs(dev[0])
        st = _DevOps(vfs.VfsLfs2(dev[0]), dev[0])
        if k is not None:
            dev[0].cut_after(k)
        return st

    def reboot(j):
        old = dev[0]
        image = old.image()  # the medium as the cut left it
        old.power_on()  # the dead run's handles close into the old bytes, not the image
        _close_quietly(j)
        old.retire()
        gc.collect()  # finalisers of handles that would not close run now, harmlessly
        dev[0] = RamBlockDev(512, 48, image)
        return VfsStorage(vfs.VfsLfs2(dev[0]))

    total = _cut_runs(fresh, reboot, 8, "lfs")
    assert total > 60


class _DevOps(VfsStorage):
    """VfsStorage whose ``ops`` is the block device's write count."""

    def __init__(self, fs, dev):
        super().__init__(fs)
        self._dev = dev
        self._base = dev.writes  # mkfs writes do not count

    @property
    def ops(self):
        return self._dev.writes - self._base


def _truncate_every_byte():
    d = _Dir("trunc")
    j = d.journal(max_bytes=4096, every=12)
    tally = Tally()
    swap_workload(j, tally, 10)
    j.close()
    whole = d.log()
    ends = []
    pos = whole.find(b"\n")
    while pos >= 0:
        ends.append(pos + 1)
        pos = whole.find(b"\n", pos + 1)
    for cut in range(len(whole) + 1):
        d.put_log(whole[:cut])
        j = Journal(d.st, 4096, 12)
        rep = j.open()
        whole_lines = len([e for e in ends if e <= cut + 1])  # a lost newline alone keeps the record
        assert rep.records == whole_lines, (cut, rep.records, whole_lines)
        assert rep.torn == (cut not in ends and cut + 1 not in ends and cut > 0), cut
        assert rep.corrupt == 0 and rep.dups == 0 and rep.gaps == 0, cut
        j.close()
    d.done()


def test_file_block_device_keeps_its_image_across_restarts():
    path = tempdir("fbd")
    img = path + "/flash.img"
    dev = FileBlockDev(img, 512, 32)
    buf = bytearray(512)
    dev.readblocks(3, buf)
    assert buf == bytearray(b"\xff" * 512)
    dev.writeblocks(3, b"abc", 100)
    dev.close()
    dev = FileBlockDev(img, 512, 32)
    dev.readblocks(3, buf)
    assert bytes(buf[100:103]) == b"abc" and buf[99] == 0xFF
    dev.cut_after(1)
    dev.ioctl(6, 3)  # erase: allowed
    e = raises(OSError, dev.writeblocks, 4, b"12345678", 0)
    assert e.args[0] == 5
    raises(OSError, dev.readblocks, 3, buf)  # no power
    dev.power_on()
    dev.readblocks(4, buf)
    assert bytes(buf[:8]) == b"1234\xff\xff\xff\xff"  # torn: half landed
    dev.readblocks(3, buf)
    assert buf[100] == 0xFF
    raises(OSError, dev.readblocks, 32, buf)
    raises(ValueError, FileBlockDev, img, 512, 16)  # image bigger than asked
    dev.close()
    if HAVE_LFS:
        dev = FileBlockDev(img, 512, 32)
        vfs.VfsLfs2.mkfs(dev)
        j = Journal(VfsStorage(vfs.VfsLfs2(dev)), 4096, 50)
        j.open()
        j.rack_change(5, "P55", "NIO-100", 70.0, 96.0, 7, "CHARGING")
        j.close()
        dev.close()
        dev = FileBlockDev(img, 512, 32)
        j = Journal(VfsStorage(vfs.VfsLfs2(dev)), 4096, 50)
        j.open()
        assert j.state.slots[5]["p"] == "P55" and j.state.boots == 2
        j.close()
        dev.close()
    rmtree(path)


def test_ram_block_device_checks_its_arguments():
    raises(ValueError, RamBlockDev, 100, 64)
    raises(ValueError, RamBlockDev, 512, 4)
    raises(ValueError, RamBlockDev, 512, 8, b"123")
    dev = RamBlockDev(512, 8)
    assert dev.ioctl(4, 0) == 8 and dev.ioctl(5, 0) == 512
    raises(OSError, dev.writeblocks, 7, b"x" * 600, 0)  # past the end
    dev.writeblocks(1, b"y" * 512)  # simple protocol: whole block
    copy = RamBlockDev(512, 8, dev.image())
    b = bytearray(4)
    copy.readblocks(1, b, 508)
    assert b == bytearray(b"yyyy") and dev.writes == 2


def test_a_ram_block_device_takes_its_medium_from_the_heap_once():
    """A medium as big as a board's free heap must not need twice its size while it is
    made (a temporary the size of the medium, then the medium): on MicroPython, with the
    collector off, what one device leaves allocated is its medium and little more."""
    dev = RamBlockDev(512, 32)
    assert dev.image() == b"\xff" * 16384  # erased
    if micropython_heap() is None:
        return
    import gc

    image = dev.image()
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        RamBlockDev(512, 32)
        blank = gc.mem_alloc() - before
        before = gc.mem_alloc()
        RamBlockDev(512, 32, image)
        copied = gc.mem_alloc() - before
    finally:
        gc.enable()
    assert 16384 <= blank < 16384 + 2048, blank  # the device itself, its erased block
    assert 16384 <= copied < 16384 + 2048, copied


def test_a_cut_switch_tears_the_first_write_it_is_told_to_in_front_of_a_boards_device():
    """The HIL rig's switch before the qemu board's PSRAM disk: writes pass through to the
    board's device until ``when`` holds; that one lands half, ``on_cut`` hears where, and
    the device is dead until power_on. An erase writes erased bytes, torn too."""
    board = RamBlockDev(512, 16)  # the board's own device: the extended protocol, no switch used
    sw = CutSwitch(board)
    assert sw.ioctl(4, 0) == 16 and sw.ioctl(5, 0) == 512
    sw.writeblocks(2, b"abcd", 8)
    buf = bytearray(4)
    board.readblocks(2, buf, 8)
    assert buf == bytearray(b"abcd")
    now = [False]
    cuts = []
    sw.when = lambda: now[0]
    sw.on_cut = lambda addr, n, erase: cuts.append((addr, n, erase))
    sw.writeblocks(3, b"zzzzzzzz", 0)  # not yet
    now[0] = True
    e = raises(OSError, sw.writeblocks, 3, b"12345678", 0)
    assert e.args[0] == 5 and cuts == [(3 * 512, 8, False)] and sw.when is None
    raises(OSError, sw.readblocks, 2, buf, 8)  # no power
    board.readblocks(3, buf, 0)
    assert buf == bytearray(b"1234") and sw.writes == 2
    board.readblocks(3, buf, 4)
    assert buf == bytearray(b"zzzz")  # the second half never came
    sw.power_on()
    sw.cut_after(0)
    raises(OSError, sw.ioctl, 6, 2)  # the erase is torn
    assert cuts[1] == (2 * 512, 512, True)
    block = bytearray(512)
    board.readblocks(2, block)
    assert bytes(block[:256]) == b"\xff" * 256 and bytes(block[8:12]) != b"abcd"
    sw.power_on()
    raises(OSError, sw.readblocks, 16, buf)  # past the end: the switch checks as a device does
    if HAVE_LFS:  # LittleFS through the switch is LittleFS on the board's device
        vfs.VfsLfs2.mkfs(sw)
        fs = vfs.VfsLfs2(sw)
        with fs.open("x", "wb") as f:
            f.write(b"kept")
        fs.umount()
        with vfs.VfsLfs2(board).open("x", "rb") as f:
            assert f.read() == b"kept"


class _FlakyFile:
    def __init__(self, f, owner):
        self.f, self.owner = f, owner

    def write(self, b):
        return self.f.write(b)

    def flush(self):
        self.f.flush()  # the bytes are on the medium...
        if self.owner.fail_next:
            self.owner.fail_next = False
            raise OSError(5)  # ...but the driver reports an error

    def close(self):
        self.f.close()

    def __getattr__(self, name):
        return getattr(self.f, name)


class _FlakyStorage(VfsStorage):
    fail_next = False

    def open(self, name, mode):
        f = super().open(name, mode)
        return _FlakyFile(f, self) if "a" in mode else f


def test_a_retried_record_after_a_write_error_is_neither_lost_nor_doubled():
    d = _Dir("flaky")
    st = _FlakyStorage(d.path)
    j = Journal(st, 4096, 1000)
    j.open()
    n = j.swap_begin("V1", "NIO-ES6", 0, 2, 77)
    seq_before = j.state.seq
    st.fail_next = True
    raises(OSError, j.swap_end, n, "ok", 10, 5, 20.0, 77, 95.0, 1.0)
    assert j.state.open_swap is not None  # the caller was told it failed...
    j.swap_end(n, "ok", 11, 5, 20.0, 77, 95.0, 1.0)  # ...and retries
    assert j.state.seq == seq_before + 2 and j.state.swaps_ok == 1
    recs = list(j.swap_records())
    assert len(recs) == 1 and recs[0][1]["t1"] == 10  # the first copy landed and counts
    j.close()
    j = Journal(st, 4096, 1000)
    rep = j.open()
    assert rep.dups == 1 and rep.gaps == 0 and j.state.swaps_ok == 1 and j.state.open_swap is None
    j.compact()
    with open(d.path + "/" + LOG_NAME, "rb") as f:
        assert f.read().count(b" SW ") == 1  # compaction keeps one
    j = _reopen(d, j)
    assert j.report.clean and len(list(j.swap_records())) == 1 and j.state.swaps_ok == 1
    j.close()
    d.done()
