"""What the journal's records say now: rack slots, pack assets, alarms, the open swap
and counters. ``Journal`` rebuilds it on boot and keeps it current on every append;
``snapshot()`` gives the checkpoint lines that rebuild it after a compaction."""

from firmware.compat import const, sized_dict

_PACK_HISTORY = const(8)  # departed packs a checkpoint keeps
_PACKS_ROOM = const(64)  # pack records held without growing the table (cleared at compaction)
# Fields a swap step may set on the open swap: what a resume needs.
SWAP_KEYS = ("po", "so", "pi", "si", "rs", "ss", "e")


def _wh(e_kwh):
    """A swap record's energy (kWh to 0.01) in Wh. e * 100 < 2**24 stays exact enough in
    float32 to round to the right 0.01 kWh."""
    return int(round(e_kwh * 100)) * 10 if e_kwh else 0


class JournalState:
    """What the records say now. ``slots``: slot index -> last RK fields
    (p pack id or None, ty type, soc, soh, cy cycles, st state); ``packs``:
    pack id -> [type, cycles, soh, swaps, seq last seen]; ``alarms``: "slot:code" ->
    AL fields; ``open_swap``: SB fields plus the last step (s, r, ts) or None."""

    def __init__(self):
        self.clear()

    def clear(self):
        self.seq = self.ckpt_seq = self.boots = self.swap_no = self.exported = self.closed_n = 0
        self.last_swap_seq = self.swaps_ok = self.swaps_failed = 0
        self.cmd_ctr = 0  # the last remote command counter accepted (RC)
        self.energy_wh = 0  # int: float32 would drift by kWh within a year (big int past 2**30 Wh)
        self.slots, self.alarms = {}, {}
        self.packs = sized_dict(_PACKS_ROOM)
        self.open_swap = None

    def pack_seen(self, seq, pid, ty=None, cy=None, soh=None, swaps=0):
        p = self.packs.get(pid)
        if p is None:
            p = [ty, cy, soh, 0, seq]
            self.packs[pid] = p
        for i, v in ((0, ty), (1, cy), (2, soh)):
            if v is not None:
                p[i] = v
        p[3] += swaps
        p[4] = seq

    def _slot(self, f):
        """Keep a slot's fields. A rack change usually has the same keys as the last
        one: update that dict in place rather than keep the record's, so the state
        does not scatter a new long-lived dict over the heap on every record."""
        slots = self.slots
        d = slots.get(f["s"])
        if d is not None and len(d) == len(f):
            for k in f:
                if k not in d:
                    break
            else:
                d.update(f)
                return
        slots[f["s"]] = f

    def apply(self, seq, kind, f):
        if kind == "RK" or kind == "CS":
            self._slot(f)
            if f.get("p"):
                self.pack_seen(seq, f["p"], f.get("ty"), f.get("cy"), f.get("soh"))
        elif kind == "SS":
            sw = self.open_swap
            if sw is not None and sw["n"] == f["n"]:
                sw["s"], sw["r"], sw["ts"] = f["s"], f["r"], f.get("t")
                for k in SWAP_KEYS:
                    if k in f:
                        sw[k] = f[k]
        elif kind == "SB" or kind == "CO":
            self.open_swap = f
            self.swap_no = max(self.swap_no, f["n"])
        elif kind == "SW":
            if f["n"] <= self.closed_n:
                return False  # a second record of a closed swap (retry after a write error)
            self.closed_n = f["n"]
            if self.open_swap is not None and self.open_swap["n"] == f["n"]:
                self.open_swap = None
            self.swap_no = max(self.swap_no, f["n"])
            if f["o"] == "ok":
                self.swaps_ok += 1
            else:
                self.swaps_failed += 1
            self.energy_wh += _wh(f.get("e"))
            self.last_swap_seq = seq
            for k in ("po", "pi"):
                if f.get(k):
                    self.pack_seen(seq, f[k], swaps=1)
        elif kind == "AL" or kind == "CA":
            key = "%s:%s" % (f["s"], f["c"])
            if f["on"]:
                self.alarms[key] = f
            else:
                self.alarms.pop(key, None)
        elif kind == "EX":
            self.exported = max(self.exported, f["q"])
        elif kind == "RC":
            self.cmd_ctr = max(self.cmd_ctr, f["c"])
        elif kind == "BT":
            self.boots = f["n"]
        elif kind == "CK":
            self.clear()
            self.ckpt_seq = self.seq = f["q"]
            self.boots, self.swap_no, self.exported = f["b"], f["n"], f["x"]
            self.last_swap_seq, self.swaps_ok, self.swaps_failed = f["ls"], f["ok"], f["nf"]
            self.energy_wh = f["ew"] if "ew" in f else int(round(f["e"] * 1000))  # "e": kWh, older
            self.closed_n = f.get("cn", 0)
            self.cmd_ctr = f.get("rc", 0)
        elif kind == "CP":
            self.packs[f["p"]] = [f["ty"], f["cy"], f["soh"], f["sw"], f["q"]]

    def snapshot(self):
        """Checkpoint lines (kind, fields) that rebuild this state."""
        yield "CK", {"q": self.seq, "b": self.boots, "n": self.swap_no, "x": self.exported,
                     "ls": self.last_swap_seq, "ok": self.swaps_ok, "nf": self.swaps_failed,
                     "cn": self.closed_n, "ew": self.energy_wh, "rc": self.cmd_ctr}
        n = 1
        present = {}
        for s in self.slots:
            yield "CS", self.slots[s]
            present[self.slots[s].get("p")] = 1
            n += 1
        sw = self.open_swap
        if sw is not None:
            present[sw.get("po")] = present[sw.get("pi")] = 1
        others = [(p[4], pid) for pid, p in self.packs.items() if pid not in present]
        others.sort()
        for _, pid in others[:-_PACK_HISTORY]:  # departed long ago: the back office has them
            del self.packs[pid]
        for pid, p in self.packs.items():
            yield "CP", {"p": pid, "ty": p[0], "cy": p[1], "soh": p[2], "sw": p[3], "q": p[4]}
            n += 1
        for key in self.alarms:
            yield "CA", self.alarms[key]
            n += 1
        if sw is not None:
            yield "CO", sw
            n += 1
        yield "CE", {"k": n + 1}
