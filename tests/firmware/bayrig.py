"""Bay-only test rig: the swap-bay state machine wired straight to the plant's bay
module (no bus, no supervisor), with a rack port that reads the plant's slots.
MicroPython-compatible."""

import json

from plant import Pack, Plant, SlaveError, Vehicle

from firmware.core import bay as bay_mod
from firmware.proto import regmap as rm

NIO_ES6 = 1  # model codes of firmware/station.json
PARTNER_A_SUV = 11


def station_cfg(mutate=None):
    """A fresh, validated copy of the default station config. The validator is
    imported here, not held by this module, so a caller may drop it after boot."""
    from firmware.core import config

    try:
        f = open(config.default_path())
    except OSError:  # firmware loaded from a compiled image: station.json is not beside it
        f = open("firmware/station.json")
    with f:
        raw = json.loads(f.read())
    if mutate is not None:
        mutate(raw)
    return config.validate(raw)


class RackPort:
    """The rack as the bay sees it, answered from the plant (tests only)."""

    def __init__(self, plant, handover_soc=90):
        self.plant = plant
        self.handover = handover_soc
        self.reserved = set()
        self.faulty = set()
        self.isolated = []

    def reserve_for(self, model, now):
        for k, p in enumerate(self.plant.slots):
            if p is not None and k not in self.reserved and k not in self.faulty and p.soc >= self.handover:
                self.reserved.add(k)
                return k
        return None

    def reserve_slot(self, slot):
        self.reserved.add(slot)
        return True

    def release(self, slot):
        self.reserved.discard(slot)

    def free_slot(self):
        for k, p in enumerate(self.plant.slots):
            if p is None and k not in self.reserved:
                return k
        return None

    @property
    def pack(self):
        return [p.id if p is not None else None for p in self.plant.slots]

    def insert_pack(self, slot, pack):
        pass

    def holds(self, slot, pack):
        p = self.plant.slots[slot]
        return p is not None and p.id == pack

    def take(self, slot, now):
        self.reserved.discard(slot)
        return self.plant.bay.carrier_pack.id

    def set_fault(self, slot, why):
        self.faulty.add(slot)

    def to_isolation(self, pack, now):
        self.isolated.append(pack)


class BayRig:
    def __init__(self, packs=None, cfg=None, n_slots=23, now=0):
        self.cfg = cfg or station_cfg()
        self.plant = Plant(n_slots=n_slots, bolts=self.cfg["bay"]["bolt_count"], now=now)
        if packs is None:
            bolts = self.plant.bolts
            packs = [Pack(1000 + k, rm.PACK_100, soc=95.0, bolts=bolts) for k in range(n_slots - 1)]
        self.plant.fill(packs)
        self.rack = RackPort(self.plant)
        self.events = []
        self.bay = bay_mod.Bay(self.cfg, self.rack, self._emit)
        self.n = 0
        self.dev = self.plant.bay
        self._hr_sent = None

    def _emit(self, kind, a, b):
        if kind == "begin":
            self.n += 1
            a.n = self.n
        if kind == "step":
            self.events.append(("step", bay_mod.PLAN_NAMES[self.bay.plan], bay_mod.SWAP_STEPS[self.bay.step]))
        elif kind == "end":
            self.events.append(("end", b, a.ms))
        elif kind == "begin":
            self.events.append(("begin", a.n))
        else:
            self.events.append((kind, a, b))

    def _write(self):
        b = self.bay
        if b.written == b.gen:
            return
        g = b.gen
        if self._hr_sent != b.hr:
            self._hr_sent = list(b.hr)
            try:
                h = b.hr
                self.dev.write(16, 0, (h[0], h[1], 0, h[2], h[3]))  # no comm watchdog on this rig
                b.hr_refused = None
            except SlaveError:  # refused values are not sent again (as the bay link does)
                b.hr_refused = b.hr[0]
                g = -1
        self.dev.write(15, 0, b.coils)
        b.outputs_written(g)

    def cycle(self):
        """One control cycle: inputs in, sequence, outputs out (same cycle)."""
        b = self.bay
        self._write()
        di = self.dev.read(2, 0, rm.BAY_DI_COUNT)
        ir = self.dev.read(4, 0, rm.BAY_IR_COUNT)
        b.set_inputs(di, ir)
        b.update(self.plant.now)
        self._write()

    def run(self, ms, period=100, until=None):
        end = self.plant.now + ms
        while self.plant.now < end:
            self.cycle()
            if until is not None and until(self):
                return True
            self.plant.advance(period)
        return False

    def vehicle(self, vid=7001, model=NIO_ES6, pack_id=555, soc=12.0, ptype=rm.PACK_100, subscribed=True):
        v = Vehicle(vid, model, Pack(pack_id, ptype, soc=soc, bolts=self.plant.bolts), subscribed)
        self.plant.arrive(v)
        return v

    def confirm(self):
        self.cycle()
        assert self.bay.confirm()

    def outcomes(self):
        return [e[1] for e in self.events if e[0] == "end"]

    def steps(self):
        return [(e[1], e[2]) for e in self.events if e[0] == "step"]

    def alarms(self):
        return [(e[1], e[2]) for e in self.events if e[0] == "alarm"]
