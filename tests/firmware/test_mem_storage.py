"""MemStorage (firmware/drivers/mem.py): the in-memory flash the simulator hands the
firmware. The journal runs on it as on LittleFS: appends, compaction, replay."""

from fwtest import raises
from jtest import Tally, check_after_reboot, swap_workload

from firmware.core.journal import LOG_NAME, NEW_NAME, Journal
from firmware.drivers.mem import MemStorage

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap


def test_a_missing_file_is_enoent_for_every_call():
    st = MemStorage()
    for fn, args in ((st.open, ("nope", "rb")), (st.size, ("nope",)), (st.remove, ("nope",)),
                     (st.rename, ("nope", "other"))):
        e = raises(OSError, fn, *args)
        assert e.args[0] == 2, (fn, e.args)
    assert not st.exists("nope") and not st.exists("other")


def test_write_append_truncate_and_read_back():
    st = MemStorage()
    f = st.open("a", "wb")
    assert f.write(b"hello ") == 6
    f.write(memoryview(b"world!")[:5])  # the journal writes slices of its buffers
    f.flush()
    f.close()
    f = st.open("a", "ab")
    f.write(b"\n")
    f.close()
    assert st.size("a") == 12
    f = st.open("a", "rb")
    buf = bytearray(4)
    assert f.readinto(buf) == 4 and bytes(buf) == b"hell"
    assert f.seek(6) == 6
    assert f.read(5) == b"world"
    assert f.read() == b"\n" and f.read() == b""
    assert f.readinto(buf) == 0
    f.close()
    st.open("a", "wb").close()  # "wb" empties the file
    assert st.size("a") == 0 and st.open("a", "rb").read() == b""


def test_a_reader_sees_the_file_as_it_was_opened():
    """Compaction copies the log with a reader while appends go on through a writer."""
    st = MemStorage()
    w = st.open("log", "ab")
    w.write(b"one\n")
    r = st.open("log", "rb")
    w.write(b"two\n")
    assert r.read() == b"one\n"
    assert st.open("log", "rb").read() == b"one\ntwo\n"


def test_closed_and_read_only_files_refuse_writes():
    st = MemStorage()
    f = st.open("x", "wb")
    f.close()
    raises(ValueError, f.write, b"late")
    r = st.open("x", "rb")
    e = raises(OSError, r.write, b"no")
    assert e.args[0] == 9
    assert st.size("x") == 0


def test_rename_replaces_and_remove_deletes():
    st = MemStorage()
    with st.open("new", "wb") as f:
        f.write(b"fresh")
    with st.open("old", "wb") as f:
        f.write(b"stale")
    st.rename("new", "old")
    assert not st.exists("new") and st.open("old", "rb").read() == b"fresh"
    st.remove("old")
    assert not st.exists("old")


def test_the_journal_compacts_and_replays_on_it():
    st = MemStorage()
    j = Journal(st, 4096, 25)
    j.open()
    tally = Tally()
    for _ in range(6):
        swap_workload(j, tally, 5, export_every=4, budget=4)
    j.service(1000)
    assert j.state.ckpt_seq > 0  # compaction ran, through a rename of journal.new
    assert not st.exists(NEW_NAME) and st.size(LOG_NAME) == j.size
    j.close()
    j = Journal(st, 4096, 25)
    j.open()  # a reboot on the same flash
    assert j.report.clean and j.report.records > 0
    check_after_reboot(j, tally)
    assert j.state.swaps_ok == 30
    j.close()
