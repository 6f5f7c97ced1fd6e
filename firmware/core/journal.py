"""Append-only station journal on flash: one CRC-checked text line per record,
``<seq> <kind> <compact JSON fields>|<crc32 hex of what precedes '|'>``.

``seq`` rises by one per record across boots and compactions. Typed kinds (fields in
docs/config.md): BT boot, SB/SS/SW swap begin/step/transaction, RK rack change, AL
alarm, OP operator action, EX exported-up-to, RC remote command counter; C* lines are a checkpoint. ``open()``
streams the file, skips lines whose CRC fails (a bad last line is the record a power
cut tore) and rebuilds ``JournalState`` for the supervisor to reconcile. Compaction,
a few lines per ``service()``, writes a checkpoint plus the unexported swap
transactions and newer records to journal.new and renames it over journal.log: a cut
leaves the old or the new file. SW records stay until ``mark_exported``.
"""

try:
    import json
except ImportError:
    import ujson as json  # type: ignore

from firmware.compat import const
from firmware.core.journal_state import SWAP_KEYS as _SWAP_KEYS
from firmware.core.journal_state import JournalState

try:
    from binascii import crc32 as _bin_crc32
except ImportError:  # some ports build binascii without crc32
    _bin_crc32 = None  # type: ignore[assignment]
_crc32 = _bin_crc32

LOG_NAME = "journal.log"
NEW_NAME = "journal.new"
LINE_MAX = const(512)  # longest record an append accepts
_BUF_LEN = const(1024)  # reader buffer; checkpoint lines may be longer than LINE_MAX

# Typed kinds: append() refuses them, so their fields always pass a helper's checks.
_TYPED = {"BT": "open", "SB": "swap_begin", "SS": "swap_step", "SW": "swap_end",
          "RK": "rack_change", "AL": "alarm", "OP": "operator", "EX": "mark_exported",
          "RC": "command_counter"}


def crc32(data, crc=0):
    if _crc32 is not None:
        return _crc32(data, crc) & 0xFFFFFFFF
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def encode(seq, kind, fields):
    body = ("%d %s " % (seq, kind)).encode() + json.dumps(fields, separators=(",", ":")).encode()
    return body + ("|%08x\n" % crc32(body)).encode()


def split_line(line):
    """(seq, kind, JSON bytes) of a line whose CRC holds, else None."""
    i = line.rfind(b"|")
    if i < 0 or len(line) - i != 9:
        return None
    try:
        crc = int(line[i + 1 :], 16)
    except ValueError:
        return None
    body = line[:i]
    if crc32(body) != crc:
        return None
    parts = body.split(b" ", 2)
    if len(parts) != 3:
        return None
    try:
        return int(parts[0]), parts[1].decode(), parts[2]
    except ValueError:
        return None


def _swap_no(line):
    """The "n" field of a whole SW line, without decoding its JSON (a transient of
    about 1.4 KiB on MicroPython, in the middle of a long run). In JSON text '"n":' can
    only be that key: a quote inside a string value is always escaped."""
    i = line.find(b'"n":')
    if i < 0:
        return 0
    i += 4
    j = i
    while j < len(line) and 48 <= line[j] <= 57:
        j += 1
    return int(line[i:j]) if j > i else 0


def decode(line):
    """(seq, kind, fields dict) of a good line, else None."""
    rec = split_line(line)
    if rec is None:
        return None
    try:
        fields = json.loads(rec[2])
    except ValueError:
        return None
    if type(fields) is not dict:
        return None
    return rec[0], rec[1], fields


class _Reader:
    """Lines through one preallocated buffer; ``complete`` is False for a last line
    with no newline; an over-long line comes back as b"\\x00" (never valid)."""

    def __init__(self, buf):
        self.buf = buf
        self.mv = memoryview(buf)

    def start(self, f, offset):
        self.f = f
        self.lo = self.hi = 0
        self.off = offset  # file offset of the next unread line
        self.eof = False
        self.complete = True
        self._skip = False

    def line(self):
        buf = self.buf
        while True:
            i = buf.find(b"\n", self.lo, self.hi)
            if i >= 0:
                out = b"\x00" if self._skip else bytes(self.mv[self.lo : i])
                self._skip = False
                self.off += i + 1 - self.lo
                self.lo = i + 1
                self.complete = True
                return out
            n = self.hi - self.lo
            if self.eof:
                if n == 0 and not self._skip:
                    return None
                out = b"\x00" if self._skip else bytes(self.mv[self.lo : self.hi])
                self._skip = False
                self.off += n
                self.lo = self.hi
                self.complete = False
                return out
            if n == len(buf):  # no newline in a full buffer: drop it, resync at the next one
                self._skip = True
                self.off += n
                n = 0
            elif n:
                buf[:n] = self.mv[self.lo : self.hi]
            self.lo, self.hi = 0, n
            got = self.f.readinto(self.mv[n:])
            if not got:
                self.eof = True
            else:
                self.hi += got


class ReplayReport:
    """records: good lines; corrupt: bad lines before good ones; torn: the last line
    was bad; unterminated: no final newline; dups/gaps: sequence numbers repeated or
    missing; retained: swap transactions from before the checkpoint; bad_fields: good
    CRC, unusable fields; dropped_new/recovered_new: what boot did with journal.new."""

    def __init__(self):
        self.records = self.corrupt = self.dups = self.gaps = self.retained = self.bad_fields = 0
        self.torn = self.unterminated = self.bad_checkpoint = False
        self.dropped_new = self.recovered_new = False

    @property
    def clean(self):
        return not (self.corrupt or self.torn or self.gaps or self.dups or self.bad_checkpoint
                    or self.bad_fields)


def _plain(v, depth=0):
    """JSON-safe value (MicroPython's json.dumps writes repr() for anything else)."""
    t = type(v)
    if v is None or t is bool or t is int or t is str:
        return True
    if t is float:
        # Finite: inf - inf and nan - nan are nan. No big literal bound: 1e300 is inf in
        # single precision, and an image with the firmware frozen cannot hold it at all.
        return v - v == 0.0
    if (t is list or t is tuple) and not depth:
        for x in v:
            if not _plain(x, 1):
                return False
        return True
    return False


def _text(v, path, max_len=32, none_ok=False):
    if v is None and none_ok:
        return None
    if type(v) is not str or not 1 <= len(v) <= max_len:
        raise ValueError("%s: expected a string of 1..%d characters" % (path, max_len))
    return v


def _pid(v, path):
    """A pack id: the u32 serial chargers report, or a string; None for no pack."""
    if type(v) is int and 0 <= v <= 0xFFFFFFFF:
        return v
    return _text(v, path, none_ok=True)


def _num(v, path, lo, hi, none_ok=True):
    if v is None and none_ok:
        return None
    if type(v) not in (int, float) or not lo <= v <= hi:
        raise ValueError("%s: expected a number in %r..%r" % (path, lo, hi))
    return v


def _t(now_ms):
    return _num(now_ms, "now_ms", -(1 << 62), 1 << 62, False)


def _idx(v, lo, path):
    if type(v) is not int or v < lo:
        raise ValueError("%s: expected an index >= %d" % (path, lo))
    return v


class Journal:
    def __init__(self, storage, max_bytes=32768, checkpoint_every=200):
        if max_bytes < 4096 or checkpoint_every < 1:
            raise ValueError("max_bytes must be >= 4096 and checkpoint_every >= 1")
        self.storage, self.max_bytes, self.checkpoint_every = storage, max_bytes, checkpoint_every
        self.state = JournalState()
        self.report = self._f = self._new = None  # _new: journal.new while compacting
        self._reader = _Reader(bytearray(_BUF_LEN))
        self.size = self._since_ckpt = self._copy_off = self._new_size = self._new_since = 0
        self._ck = self._ck_x = self._copy_n = 0  # compaction: start seq, exported seq, last swap
        self._fix_tail = False  # the file ends inside a line: write a newline first
        self._compact_at = max_bytes

    @classmethod
    def from_config(cls, storage, cfg):
        j = cfg["journal"]
        return cls(storage, j["max_bytes"], j["checkpoint_every"])

    # -- boot
    def open(self):
        """Replay the journal, append a boot record, return the ReplayReport."""
        if self._f is not None:
            raise ValueError("journal is already open")
        st = self.storage
        rep = ReplayReport()
        if st.exists(NEW_NAME):
            if st.exists(LOG_NAME):
                st.remove(NEW_NAME)
                rep.dropped_new = True
            else:  # a rename that replaces in two steps was cut between them
                st.rename(NEW_NAME, LOG_NAME)
                rep.recovered_new = True
        if not st.exists(LOG_NAME):
            st.open(LOG_NAME, "wb").close()
        self._replay(rep)
        self.report = rep
        self.size = st.size(LOG_NAME)
        self._fix_tail = rep.unterminated
        self._f = st.open(LOG_NAME, "ab")
        self._append("BT", {"n": self.state.boots + 1})
        return rep

    def _replay(self, rep):
        s = self.state
        s.clear()
        self._since_ckpt = bad = in_ck = 0  # in_ck: checkpoint lines so far, inside one
        r = self._reader
        for line in self._scan(r):
            if not line and r.complete:
                continue  # a newline written to close a torn record
            rep.unterminated = not r.complete  # a whole record missing its newline is kept
            rec = decode(line)
            if rec is None:
                bad += 1
                continue
            rep.corrupt += bad
            bad = 0
            seq, kind, fields = rec
            if kind == "CK" and not rep.records:
                in_ck = 1
                self._apply(rep, seq, kind, fields)
            elif kind.startswith("C"):  # kind[0] would intern a qstr on MicroPython
                if in_ck and kind != "CK" and seq == s.ckpt_seq:
                    in_ck += 1
                    self._apply(rep, seq, kind, fields)
                    if kind == "CE":
                        rep.bad_checkpoint |= fields.get("k") != in_ck
                        in_ck = 0
                else:
                    rep.bad_checkpoint = True
            elif seq <= s.ckpt_seq and kind == "SW":  # kept by compaction until exported
                rep.retained += 1
                s.last_swap_seq = max(s.last_swap_seq, seq)
            elif seq <= s.seq:
                rep.dups += 1
            else:
                if s.seq and seq != s.seq + 1:
                    rep.gaps += seq - s.seq - 1
                self._apply(rep, seq, kind, fields)
                s.seq = seq
                self._since_ckpt += 1
            rep.records += 1
        rep.bad_checkpoint |= in_ck > 0
        if bad:
            rep.torn = True
            rep.corrupt += bad - 1

    def _apply(self, rep, seq, kind, fields):
        try:
            if self.state.apply(seq, kind, fields) is False:
                rep.dups += 1
        except (KeyError, TypeError, ValueError, AttributeError):
            rep.bad_fields += 1

    # -- writing
    def _append(self, kind, fields):
        if self._f is None:
            raise ValueError("journal is not open")
        seq = self.state.seq + 1
        line = encode(seq, kind, fields)
        if len(line) > LINE_MAX:
            raise ValueError("record too long (%d bytes, limit %d)" % (len(line), LINE_MAX))
        if self._fix_tail:
            self._f.write(b"\n")
            self.size += 1
        self._fix_tail = True  # until this line is whole on flash
        try:
            self._f.write(line)
            self._f.flush()
        except Exception:
            # The line may have landed: never hand its number out again.
            self.state.seq = seq
            raise
        self._fix_tail = False
        self.size += len(line)
        self.state.apply(seq, kind, fields)
        self.state.seq = seq
        self._since_ckpt += 1
        return seq

    def append(self, kind, fields):
        """Append a free-form history record; returns its sequence number."""
        if type(kind) is not str or not 2 <= len(kind) <= 3 or not kind.isupper() or kind.startswith("C"):
            raise ValueError("kind must be 2..3 capitals not starting with C: %r" % (kind,))
        if kind in _TYPED:
            raise ValueError("kind %s is written by %s()" % (kind, _TYPED[kind]))
        if type(fields) is not dict:
            raise ValueError("fields must be a dict")
        for k in fields:
            if type(k) is not str or not _plain(fields[k]):
                raise ValueError("field %r: only str keys and None/bool/int/float/str values "
                                 "or flat lists of them" % (k,))
        return self._append(kind, fields)

    def swap_begin(self, vehicle_id, model, now_ms, slot=None, pack_in=None):
        """Open a swap transaction; returns its swap number. One swap at a time."""
        if self.state.open_swap is not None:
            raise ValueError("swap %d is still open" % self.state.open_swap["n"])
        f = {"n": self.state.swap_no + 1, "v": _text(vehicle_id, "vehicle_id"), "m": _text(model, "model"),
             "t": _t(now_ms), "rs": None if slot is None else _idx(slot, 0, "slot"),
             "pi": _pid(pack_in, "pack_in")}
        self._append("SB", f)
        return f["n"]

    def _open(self, n):
        sw = self.state.open_swap
        if sw is None or sw["n"] != n:
            raise ValueError("swap %r is not the open swap" % (n,))
        return sw

    def swap_step(self, n, step, result, now_ms, extra=None):
        """A step of the open swap (result start/ok/fail/...); ``extra`` may carry
        po/so/pi/si/rs/ss/e as the packs and SoCs become known."""
        self._open(n)
        f = {"n": n, "s": _text(step, "step", 16), "r": _text(result, "result", 16), "t": _t(now_ms)}
        for k in extra or ():
            if k not in _SWAP_KEYS or not _plain(extra[k], 1):
                raise ValueError("extra[%r]: allowed keys %s, plain values" % (k, ",".join(_SWAP_KEYS)))
            f[k] = extra[k]
        return self._append("SS", f)

    def swap_end(self, n, outcome, now_ms, pack_out=None, soc_out=None, pack_in=None,
                 soc_in=None, energy_kwh=0.0, wall_s=None):
        """Close the open swap with its transaction record (outcome "ok" or a reason)."""
        sw = self._open(n)
        f = {"n": n, "v": sw["v"], "m": sw["m"], "o": _text(outcome, "outcome", 16),
             "po": _pid(pack_out, "pack_out"), "so": _num(soc_out, "soc_out", 0, 100),
             "pi": _pid(pack_in, "pack_in"), "si": _num(soc_in, "soc_in", 0, 100),
             "e": _num(energy_kwh, "energy_kwh", 0, 10000, False), "t0": sw["t"], "t1": _t(now_ms),
             "b": self.state.boots, "w": _num(wall_s, "wall_s", 0, 1 << 40)}
        return self._append("SW", f)

    def rack_change(self, slot, pack_id, pack_type=None, soc=None, soh=None, cycles=None, state="EMPTY"):
        f = {"s": _idx(slot, 0, "slot"), "p": _pid(pack_id, "pack_id"),
             "ty": _text(pack_type, "pack_type", none_ok=True), "soc": _num(soc, "soc", 0, 100),
             "soh": _num(soh, "soh", 0, 100), "cy": _num(cycles, "cycles", 0, 1000000),
             "st": _text(state, "state", 12)}
        return self._append("RK", f)

    def alarm(self, slot, code, active, now_ms, detail=None):
        """Raise (active=True) or clear an alarm; slot -1 is station-wide."""
        if type(active) is not bool:
            raise ValueError("active: expected True or False")
        f = {"s": _idx(slot, -1, "slot"), "c": _text(code, "code", 16), "on": active, "t": _t(now_ms),
             "d": _text(detail, "detail", 64, none_ok=True)}
        return self._append("AL", f)

    def operator(self, action, user, now_ms, detail=None):
        f = {"a": _text(action, "action", 24), "u": _text(user, "user"), "t": _t(now_ms),
             "d": _text(detail, "detail", 64, none_ok=True)}
        return self._append("OP", f)

    def mark_exported(self, seq):
        """The back office holds every swap transaction up to ``seq``; compaction may drop them."""
        if type(seq) is not int or not self.state.exported < seq <= self.state.seq:
            raise ValueError("seq must be in %d..%d" % (self.state.exported + 1, self.state.seq))
        return self._append("EX", {"q": seq})

    def command_counter(self, n):
        """A remote command with counter ``n`` was accepted: later ones must be above it,
        after a reboot too (firmware/core/telemetry.py)."""
        if type(n) is not int or not self.state.cmd_ctr < n <= 0x7FFFFFFF:
            raise ValueError("counter must be in %d..%d" % (self.state.cmd_ctr + 1, 0x7FFFFFFF))
        return self._append("RC", {"c": n})

    def swap_records(self, after=None):
        """Stream (seq, fields) of swap transactions with seq > after (default: not
        yet exported), in sequence order. Do not append or service while iterating."""
        if after is None:
            after = self.state.exported
        last_n = 0
        for line in self._scan(_Reader(bytearray(_BUF_LEN))):
            if line[:1] != b"\x00" and b" SW " in line:
                rec = decode(line)
                if rec is not None and rec[1] == "SW" and rec[2].get("n", 0) > last_n:
                    last_n = rec[2]["n"]  # a retried record of the same swap comes once
                    if rec[0] > after:
                        yield rec[0], rec[2]

    def _scan(self, r):
        f = self.storage.open(LOG_NAME, "rb")
        r.start(f, 0)
        try:
            while True:
                line = r.line()
                if line is None:
                    return
                yield line
        finally:
            f.close()

    # -- compaction
    def compaction_due(self):
        return self._since_ckpt >= self.checkpoint_every or self.size >= self._compact_at

    @property
    def compacting(self):
        return self._new is not None

    def service(self, budget=32):
        """Advance compaction by at most ``budget`` lines; True when there is nothing to do."""
        if self._f is None:
            return True
        if self._new is None:
            if not self.compaction_due():
                return True
            self._guard(self._start_compaction)
            return False
        self._guard(self._copy, budget)
        return self._new is None

    def compact(self):
        """Run a whole compaction now (boot, tests, an idle station); one already
        under way is finished first."""
        if self._f is None:
            raise ValueError("journal is not open")
        for _ in range(2 if self._new is not None else 1):
            if self._new is None:
                self._guard(self._start_compaction)
            while self._new is not None:
                self._guard(self._copy, 256)

    def _guard(self, fn, *args):
        try:
            fn(*args)
        except Exception:
            self._abort()
            raise

    def _abort(self):
        err = self._drop_new()
        if self._f is None:  # failed between close and reopen
            self._f = self.storage.open(LOG_NAME, "ab")
            self._fix_tail = True
        return err

    def _drop_new(self):
        new, self._new = self._new, None
        err = None
        if new is not None:
            try:
                new.close()
                self.storage.remove(NEW_NAME)
            except OSError as e:
                err = e  # boot removes it
        return err

    def _start_compaction(self):
        st = self.storage
        if st.exists(NEW_NAME):
            st.remove(NEW_NAME)
        s = self.state
        self._ck, self._ck_x = s.seq, s.exported
        self._new = st.open(NEW_NAME, "wb")
        n = 0
        for kind, fields in s.snapshot():
            line = encode(self._ck, kind, fields)
            self._new.write(line)
            n += len(line)
        self._new_size = n
        self._new_since = self._copy_off = self._copy_n = 0

    def _copy(self, budget):
        f = self.storage.open(LOG_NAME, "rb")
        r = self._reader
        try:
            f.seek(self._copy_off)
            r.start(f, self._copy_off)
            for _ in range(budget):
                line = r.line()
                if line is None or not r.complete:
                    self._finish()  # the same call: no append can slip in between
                    return
                rec = split_line(line)
                if rec is None or rec[1].startswith("C"):
                    continue
                if rec[1] == "SW":
                    n = _swap_no(line)
                    if n <= self._copy_n:
                        continue  # a retried record of a swap already copied
                    self._copy_n = n
                if rec[0] > self._ck or (rec[1] == "SW" and rec[0] > self._ck_x):
                    self._new.write(line)
                    self._new.write(b"\n")
                    self._new_size += len(line) + 1
                    if rec[0] > self._ck:
                        self._new_since += 1
            self._copy_off = r.off
        finally:
            f.close()

    def _finish(self):
        self._new.flush()
        self._new.close()
        self._f.close()
        self._f = None
        self.storage.rename(NEW_NAME, LOG_NAME)
        self._new = None
        self._f = self.storage.open(LOG_NAME, "ab")
        self._fix_tail = False
        self.size = self._new_size
        self.state.ckpt_seq = self._ck
        self._since_ckpt = self._new_since
        # Unexported swaps may keep the file big: wait for real growth before the next run.
        self._compact_at = max(self.max_bytes, self.size + self.max_bytes // 4)

    def close(self):
        """Close the files, dropping an unfinished compaction. Every handle is closed
        even when one fails (after a power cut); then the first error is raised."""
        err = self._drop_new()
        f, self._f = self._f, None
        if f is not None:
            try:
                f.close()
            except OSError as e:
                err = e
        if err is not None:
            raise err
