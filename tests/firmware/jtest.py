"""Journal test helpers for both interpreters: temp directories, a Storage wrapper that
cuts power at the k-th file write, and a swap workload that records what the journal
acknowledged."""

import os

from fwtest import random_tag

from firmware.hal import Storage

_EIO = 5
_counter = [0]


def tempdir(tag):
    """A fresh directory under /tmp (both interpreters run on the same host)."""
    import sys

    rnd = random_tag()
    _counter[0] += 1
    path = f"/tmp/swj-{sys.implementation.name}-{tag}-{rnd}-{_counter[0]}"
    os.mkdir(path)
    return path


def rmtree(path):
    for name in os.listdir(path):
        os.remove(path + "/" + name)
    os.rmdir(path)


def clear_dir(path):
    for name in os.listdir(path):
        os.remove(path + "/" + name)


class CutStorage(Storage):
    """Wraps a Storage. ``cut_after(k)``: k more writes/renames/removes complete; the
    next write lands half its bytes and raises OSError(EIO); from then on every call
    raises, as on a controller that lost power."""

    def __init__(self, inner):
        self.inner = inner
        self.ops = 0
        self._left = -1
        self.dead = False

    def cut_after(self, k):
        self._left = k

    def live(self):
        if self.dead:
            raise OSError(_EIO)

    def step(self):
        """True when this operation is the one the power cut tears."""
        self.live()
        if self._left == 0:
            self.dead = True
            return True
        if self._left > 0:
            self._left -= 1
        self.ops += 1
        return False

    def open(self, name, mode):
        self.live()
        return _CutFile(self, self.inner.open(name, mode))

    def exists(self, name):
        self.live()
        return self.inner.exists(name)

    def size(self, name):
        self.live()
        return self.inner.size(name)

    def remove(self, name):
        if self.step():
            raise OSError(_EIO)
        self.inner.remove(name)

    def rename(self, old, new):
        if self.step():
            raise OSError(_EIO)
        self.inner.rename(old, new)


class _CutFile:
    def __init__(self, st, f):
        self.st = st
        self.f = f

    def write(self, b):
        if self.st.step():
            self.f.write(memoryview(b)[: len(b) // 2])
            self.f.flush()
            raise OSError(_EIO)
        n = self.f.write(b)
        self.f.flush()  # what reached the medium is on disk, nothing more
        return n

    def flush(self):
        self.st.live()
        self.f.flush()

    def close(self):
        self.f.close()

    def seek(self, *a):
        self.st.live()
        return self.f.seek(*a)

    def readinto(self, buf):
        self.st.live()
        return self.f.readinto(buf)

    def read(self, *a):
        self.st.live()
        return self.f.read(*a)


class Tally:
    """What the journal acknowledged, and what the back office received."""

    def __init__(self):
        self.acked = []  # swap numbers whose swap_end returned
        self.inflight = None  # swap number whose swap_end was running
        self.back_office = {}  # swap number -> fields, as uploaded
        self.t = 0


def export(j, tally):
    last = 0
    for seq, f in j.swap_records():
        tally.back_office[f["n"]] = f
        last = seq
    if last:
        j.mark_exported(last)


def swap_workload(j, tally, swaps, export_every=3, budget=3):
    """Run ``swaps`` swaps of 5 records each with rack changes, servicing compaction
    with a small budget after every record so it interleaves with appends."""
    for _ in range(swaps):
        tally.t += 1000
        i = len(tally.acked) + (1 if tally.inflight is not None else 0)
        if j.state.open_swap is not None:  # left open by a power cut: close it as aborted
            n = j.state.open_swap["n"]
            tally.inflight = n
            j.swap_end(n, "aborted", tally.t)
            tally.acked.append(n)
            tally.inflight = None
        n = j.swap_begin(f"V{i:04d}", "NIO-ES6", tally.t, slot=i % 4, pack_in=f"P{i + 100:04d}")
        j.service(budget)
        j.swap_step(n, "unbolt", "ok", tally.t + 10, {"po": f"P{i:04d}", "so": 21.5})
        j.service(budget)
        j.rack_change(i % 4, f"P{i:04d}", "NIO-75", 21.5, 97.0, i, "CHARGING")
        j.service(budget)
        j.swap_step(n, "install", "ok", tally.t + 20)
        j.service(budget)
        tally.inflight = n
        j.swap_end(n, "ok", tally.t + 30, f"P{i:04d}", 21.5, f"P{i + 100:04d}", 95.0, 1.25)
        tally.acked.append(n)
        tally.inflight = None
        j.service(budget)
        if len(tally.acked) % export_every == 0:
            export(j, tally)


def check_after_reboot(j, tally):
    """No acknowledged swap lost, none twice, sequence numbers rising; returns the
    swap numbers in the journal."""
    seen = {}
    last = 0
    for seq, f in j.swap_records(0):
        assert seq > last, (seq, last)
        last = seq
        assert f["n"] not in seen, f"swap {f['n']} twice in the journal"
        seen[f["n"]] = f
    for n in tally.acked:
        assert n in seen or n in tally.back_office, f"swap {n} lost"
    for n in seen:
        assert n in tally.acked or n == tally.inflight, f"swap {n} never acknowledged"
    landed = tally.inflight is not None and (tally.inflight in seen or tally.inflight in tally.back_office)
    total = j.state.swaps_ok + j.state.swaps_failed
    assert total == len(tally.acked) + (1 if landed else 0), (total, len(tally.acked), landed)
    sw = j.state.open_swap
    if sw is not None:
        assert sw["n"] not in seen and sw["n"] not in tally.acked
        assert sw["n"] == j.state.swap_no
    if landed:  # the cut came after the record was whole: it counts as acknowledged now
        tally.acked.append(tally.inflight)
    tally.inflight = None
    return seen
