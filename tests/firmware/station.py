"""A whole station for supervisor tests: the plant's chargers and bay module behind
in-memory buses, an in-memory flash, a watchdog, and the real Supervisor in virtual
time. ``reboot()`` is a power loss of the controller: a new Supervisor (and new bus
masters) on the same flash and the same plant. MicroPython-compatible."""

from bayrig import NIO_ES6, station_cfg
from plant import MemBus, Pack, Plant, Vehicle

from firmware.compat import collect_every, ticks_add, ticks_diff
from firmware.core import bay as B
from firmware.core.supervisor import Supervisor
from firmware.drivers.mem import MemPin
from firmware.hal import Storage
from firmware.proto import regmap as rm

# ---- flash ------------------------------------------------------------------------------


class _File:
    """Appends go to a list of small chunks (no big buffer to grow and fragment the
    MicroPython heap); a file opened for reading is joined once."""

    def __init__(self, store, name, mode):
        self.store = store
        self.name = name
        if "w" in mode:
            store.files[name] = []
        elif name not in store.files:
            if "a" not in mode:
                raise OSError(2)
            store.files[name] = []
        self.data = b"".join(store.files[name]) if "r" in mode else None
        self.pos = 0

    def readinto(self, buf):
        d = self.data
        n = min(len(buf), len(d) - self.pos)
        if n > 0:
            buf[:n] = d[self.pos:self.pos + n]
            self.pos += n
            return n
        return 0

    def read(self, n=-1):
        d = self.data
        end = len(d) if n < 0 else min(len(d), self.pos + n)
        out = d[self.pos:end]
        self.pos = end
        return out

    def write(self, b):
        st = self.store
        st.writes += 1
        if st.cut is not None:
            if st.cut == 0:
                st.files[self.name].append(bytes(b[:len(b) // 2]))  # torn: half reaches flash
                st.cut = None
                st.dead = True
                raise OSError(5)
            st.cut -= 1
        if st.dead:
            raise OSError(5)
        st.files[self.name].append(bytes(b))
        return len(b)

    def seek(self, pos, whence=0):
        self.pos = pos if whence == 0 else (self.pos + pos if whence == 1 else len(self.data) + pos)
        return self.pos

    def flush(self):
        pass

    def close(self):
        self.data = None


class MemStorage(Storage):
    """Flat in-memory files. ``cut_after(k)``: the k-th next write lands half its bytes
    and fails, and every write after it fails too (power is gone)."""

    def __init__(self):
        self.files = {}
        self.writes = 0
        self.cut = None
        self.dead = False

    def open(self, name, mode):
        return _File(self, name, mode)

    def exists(self, name):
        return name in self.files

    def size(self, name):
        if name not in self.files:
            raise OSError(2)
        n = 0
        for c in self.files[name]:
            n += len(c)
        return n

    def remove(self, name):
        if name not in self.files:
            raise OSError(2)
        del self.files[name]

    def rename(self, old, new):
        if self.dead:
            raise OSError(5)
        self.files[new] = self.files.pop(old)

    def cut_after(self, k):
        self.cut = k

    def power_on(self):
        self.cut = None
        self.dead = False

    def records(self, kind):
        """Decoded journal records of one kind, in file order."""
        import json

        out = []
        for line in b"".join(self.files.get("journal.log", ())).split(b"\n"):
            parts = line.split(b" ", 2)
            if len(parts) == 3 and parts[1] == kind.encode():
                body = parts[2]
                out.append(json.loads(body[:body.rfind(b"|")]))
        return out


# ---- watchdog and clock ---------------------------------------------------------------------


class Watchdog:
    def __init__(self, station, timeout_ms=2000):
        self.station = station
        self.timeout_ms = timeout_ms
        self.last = station.plant.now
        self.feeds = 0
        self.longest = 0

    def feed(self):
        gap = self.station.plant.now - self.last
        if gap > self.longest:
            self.longest = gap
        self.last = self.station.plant.now
        self.feeds += 1

    def starved_ms(self):
        return self.station.plant.now - self.last


def _release_config():
    import sys

    m = sys.modules.get("firmware.core.config")
    if m is not None:
        m.release()


# ---- the station ----------------------------------------------------------------------------


class Station:
    def __init__(self, n_slots=23, n_packs=None, cfg=None, mutate=None, soc=95.0, base=None,
                 latency_ms=0, storage=None, packs=None, **sup_opts):
        collect_every()  # as main.py does before it loads the config: boot garbage stays low
        self.cfg = cfg if cfg is not None else station_cfg(mutate)
        _release_config()  # as a board's boot does once the config is validated
        if len(self.cfg["slots"]) != n_slots:
            self.cfg["slots"] = self.cfg["slots"][:n_slots]
        self.plant = Plant(n_slots=n_slots, bolts=self.cfg["bay"]["bolt_count"])
        bolts = self.plant.bolts
        if packs is None:
            if n_packs is None:
                n_packs = n_slots - 1
            packs = [Pack(1000 + k, rm.PACK_100, soc=soc, bolts=bolts) for k in range(n_packs)]
        self.plant.fill(packs)
        self.storage = MemStorage() if storage is None else storage
        # Virtual ticks start close to the wrap on purpose.
        self.base = ticks_add(0, -90000) if base is None else base
        self.latency_ms = latency_ms
        self.sup_opts = sup_opts
        self.estop_pin = MemPin(1)
        self.motion = MemPin(0)
        self.fault_pin = MemPin(0)
        self.boots = 0
        self.boot()

    def now(self):
        return ticks_add(self.base, self.plant.now)

    def boot(self):
        """Start (or restart after a power loss) the controller on the same flash."""
        c = self.cfg["buses"]["chargers"]
        units = {}
        for k, s in enumerate(self.cfg["slots"]):
            units[s["charger_unit"]] = self.plant.chargers[k]
        self.chg_bus = MemBus(units, self.latency_ms, c["timeout_ms"], c["retries"], c["offline_after"],
                              c["probe_interval_ms"])
        b = self.cfg["buses"]["bay_io"]
        self.bay_bus = MemBus({b["unit"]: self.plant.bay}, self.latency_ms, b["timeout_ms"], b["retries"],
                              b["offline_after"], b["probe_interval_ms"])
        self.wdt = Watchdog(self)
        self.boots += 1
        self.sup = Supervisor(self.cfg, None, self.storage,
                              {"estop_ok": self.estop_pin},
                              {"motion_enable": self.motion, "fault": self.fault_pin}, self.wdt,
                              self.now(), masters=self.masters(), **self.sup_opts)
        self.waits = []
        return self.sup

    def masters(self):
        return {"chargers": self.chg_bus, "bay_io": self.bay_bus}

    def reboot(self, outage_ms=0):
        """Power loss: the controller stops between two ticks and starts again."""
        self.plant.advance(outage_ms)
        return self.boot()

    def tick(self):
        w = self.sup.tick(self.now())
        assert w >= 0
        return w

    def run(self, ms, until=None, max_step=1000):
        """Tick in virtual time, jumping by what tick() asks. True if ``until`` came true."""
        end = self.plant.now + ms
        p = self.plant
        while p.now < end:
            w = self.tick()
            if until is not None and until(self):
                return True
            p.advance(max(1, min(w, max_step, end - p.now)))
        return False

    def vehicle(self, vid=7001, model=NIO_ES6, pack_id=555, soc=12.0, ptype=rm.PACK_100):
        v = Vehicle(vid, model, Pack(pack_id, ptype, soc=soc, bolts=self.plant.bolts))
        self.plant.arrive(v)
        return v

    def start(self):
        """Boot until the supervisor holds for confirmation, then confirm."""
        assert self.run(30000, until=lambda s: s.sup.state() == "hold"), self.sup.status()
        assert self.sup.confirm(), self.sup.status()

    def until_swaps(self, n, ms=400000):
        b = self.sup.bay
        return self.run(ms, until=lambda s: b.swaps_ok + b.swaps_other >= n)

    def until_step(self, step, ms=400000):
        return self.run(ms, until=lambda s: s.sup.bay.step == step)

    def rack_matches_plant(self):
        """Every slot's rack entry equals what the plant holds (serial or None)."""
        r = self.sup.rack
        out = []
        for k in range(r.n):
            p = self.plant.slots[k]
            if r.pack[k] != (p.id if p is not None else None):
                out.append((k, r.pack[k], p.id if p is not None else None))
        return out

    def run_coils(self):
        c = self.plant.bay.coils
        return [i for i in B.RUN if c[i]]

    def since(self, t):
        return ticks_diff(self.now(), t)
