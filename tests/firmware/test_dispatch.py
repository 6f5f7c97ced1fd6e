from fwtest import raises
from jtest import rmtree, tempdir
from racktest import fill, station_cfg, status_regs

from firmware.compat import micropython_heap
from firmware.core import config
from firmware.core.dispatch import (
    ALARM,
    EMPTY,
    FAULT,
    FULL,
    GRID,
    OK,
    RESERVED,
    STALE,
    TEMP,
    TOU,
    UNKNOWN_TYPE,
    WHY_NAMES,
    Dispatch,
)
from firmware.core.journal import Journal
from firmware.core.rack import Rack
from firmware.core.thermal import Thermal
from firmware.drivers.blockdev import FileBlockDev
from firmware.drivers.vfs_storage import VfsStorage
from firmware.proto import regmap as rm

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap
QEMU_EXCLUDE = {
    "test_an_hour_of_charging_and_swaps_with_bounded_memory": (
        "3600 rounds of 23 reads and a dispatch: ~75 s under QEMU (10 s on the unix port); "
        "test_station_hour[qemu] runs the dispatch inside the supervisor for an hour in 128K"
    ),
    "test_no_pack_waits_longer_than_its_first_in_first_charged_turn": (
        "60000 dispatch rounds: ~55 s under QEMU (11 s on the unix port); the order tests above "
        "check the same tie-breaking on the board"
    ),
}

CFG = station_cfg()  # grid 1000 kW, chargers 62.5 kW, NIO packs 62.5 kW / 180 A / 420 V


def _station(cfg=CFG, packs=None, now=0, thermal=True):
    r = Rack(cfg, thermal=Thermal(cfg) if thermal else None)
    fill(r, now, packs or {})
    return r, Dispatch(cfg, r)


def test_empty_rack_charges_nothing():
    r, d = _station()
    assert d.update(0) == 0 and d.total_dkw == 0
    assert all(d.why[i] == EMPTY and not d.enable[i] for i in range(d.n))


def test_grid_limit_is_shared_and_nearest_to_handover_go_first():
    packs = {i: dict(pack=100 + i, code=1, soc=20.0 + 3 * i, volt=400.0) for i in range(23)}
    r, d = _station(packs=packs)
    on = d.update(0)
    assert d.total_dkw <= 10000 and on == 16  # 16 x 62.5 kW fill 1000 kW
    for i in range(23):
        if d.enable[i]:
            assert d.p_dkw[i] == 625 and d.why[i] == OK
    # the 16 packs nearest to hand-over (highest SoC) charge, the 7 lowest wait for the grid
    assert [i for i in range(23) if not d.enable[i]] == list(range(7))
    assert all(d.why[i] == GRID for i in range(7))
    d.update(0, other_kw=400.0)  # the bay and site loads take 400 kW
    assert d.total_dkw == 6000 and sum(d.enable) == 10  # nine at 62.5 kW, the tenth gets the rest
    assert d.p_dkw[13] == 375 and d.p_dkw[14] == 625
    raises(ValueError, d.update, 0, None, None, -1)


def test_per_charger_pack_and_current_limits():
    def mutate(raw):
        raw["slots"][1]["charger_kw"] = 30

    cfg = station_cfg(mutate)
    packs = {
        0: dict(pack=1, code=1, soc=50.0, volt=400.0),
        1: dict(pack=2, code=1, soc=50.0, volt=400.0),
        2: dict(pack=3, code=5, soc=50.0, volt=400.0),  # STD-A-60: 50 kW, 125 A
        3: dict(pack=4, code=5, soc=50.0, volt=300.0),
    }  # 125 A x 300 V = 37.5 kW
    r, d = _station(cfg, packs)
    d.update(0)
    assert (d.p_dkw[0], d.p_dkw[1], d.p_dkw[2], d.p_dkw[3]) == (625, 300, 500, 375)
    assert d.i_da[0] == 1800 and d.v_dv[0] == 4200 and d.i_da[2] == 1250 and d.target_d[0] == 1000


def test_jeita_factor():
    r, d = _station()
    nio75 = d.ptypes["NIO-75"]  # cells 0..58 degC; station stops above 55
    cases = [
        (250, 230, 1000),
        (450, 400, 1000),
        (500, 400, 625),
        (550, 500, 250),
        (551, 500, 0),
        (300, 90, 500),
        (300, 0, 500),
        (300, -1, 0),
        (600, 300, 0),
    ]
    for t_max, t_min, want in cases:
        assert d.jeita_pm(t_max, t_min, nio75[3], nio75[4]) == want, (t_max, t_min)
    nio150 = d.ptypes["NIO-150"]
    assert d.jeita_pm(500, 300, 0, 500) == 250  # a pack whose cells stop at 50 degC: floor there
    assert d.jeita_pm(501, 300, 0, 500) == 0
    assert nio150[4] == 550
    packs = {
        0: dict(pack=1, soc=50.0, t_max=50.0, volt=400.0),
        1: dict(pack=2, soc=50.0, t_max=56.0),
        2: dict(pack=3, soc=50.0, t_max=20.0, t_min=-2.0),
        3: dict(pack=4, soc=50.0, t_max=12.0, t_min=5.0),
    }
    r, d = _station(packs=packs, thermal=False)
    d.update(0)
    assert d.p_dkw[0] == 625 * 625 // 1000 and d.enable[0]
    assert d.why[1] == TEMP and d.why[2] == TEMP and not d.enable[1] and not d.enable[2]
    assert d.p_dkw[3] == 312 and d.i_da[3] == 900


def test_never_charges_a_faulted_alarmed_stale_reserved_unknown_or_full_slot():
    packs = {
        0: dict(pack=1, soc=50.0),
        1: dict(pack=2, soc=50.0, faults=rm.CHG_FAULT_ISOLATION),
        2: dict(pack=3, soc=50.0, t_max=70.0),
        3: dict(pack=4, soc=95.0),
        4: dict(pack=5, soc=50.0, code=9),
        5: dict(pack=6, soc=100.0),
        6: dict(pack=7, soc=50.0),
        7: dict(pack=8, soc=50.0),
    }
    r, d = _station(packs=packs)
    assert r.reserve_slot(3)
    r.charger_offline(6)
    r.quarantine(7, "operator")
    d.update(0)
    want = [OK, FAULT, ALARM, RESERVED, UNKNOWN_TYPE, FULL, STALE, ALARM]
    assert [d.why[i] for i in range(8)] == want, [WHY_NAMES[d.why[i]] for i in range(8)]
    assert [d.enable[i] for i in range(8)] == [1, 0, 0, 0, 0, 0, 0, 0]


def test_charging_stops_when_telemetry_goes_stale_or_an_alarm_latches():
    r, d = _station(packs={0: dict(pack=1, soc=50.0), 1: dict(pack=2, soc=50.0)})
    d.update(0)
    assert d.enable[0] and d.enable[1]
    r.update_from_charger(1, status_regs(2, soc=51.0), 4000)
    d.update(5001)  # slot 0 last read at 0: stale (5000 ms)
    assert not d.enable[0] and d.why[0] == STALE and d.enable[1]
    r.thermal.smoke(True)  # store-wide smoke: everything stops
    d.update(5001)
    assert not any(d.enable) and d.why[1] == ALARM


def test_time_of_use_slows_down_only_with_enough_ready_packs():
    # tou: expensive above 1.0, min_ready 4, 30 %
    packs = {i: dict(pack=10 + i, soc=95.0) for i in range(3)}
    packs[5] = dict(pack=50, soc=40.0, volt=400.0)
    r, d = _station(packs=packs)
    d.update(0, price=1.05)
    assert d.p_dkw[5] == 625 and not d.slowed  # only 3 ready: keep charging hard
    r.update_from_charger(3, status_regs(13, soc=95.0), 0)
    d.update(0, price=1.05)
    assert d.slowed and d.p_dkw[5] == 625 * 300 // 1000
    d.update(0, price=0.31)
    assert not d.slowed and d.p_dkw[5] == 625


def test_tou_cap_below_a_kilowatt_switches_off():
    def mutate(raw):
        raw["tou"]["expensive_pct"] = 1

    r, d = _station(station_cfg(mutate), {i: dict(pack=10 + i, soc=95.0) for i in range(4)})
    r.update_from_charger(5, status_regs(50, soc=40.0), 0)
    d.update(0, price=2.0)
    assert d.why[5] == TOU and not d.enable[5]


def test_demand_puts_the_short_pack_type_first():
    def mutate(raw):
        raw["limits"]["grid_kw"] = 100

    packs = {0: dict(pack=1, code=1, soc=85.0), 1: dict(pack=2, code=5, soc=30.0, volt=400.0)}
    r, d = _station(station_cfg(mutate), packs)
    d.update(0)
    assert d.p_dkw[0] == 625 and d.p_dkw[1] == 375  # NIO pack is nearer hand-over
    d.update(0, demand={"STD-A-60": 2})  # two partner cars queued, none of their packs ready
    assert d.p_dkw[1] == 500 and d.p_dkw[0] == 500


def test_control_block_matches_the_register_map():
    r, d = _station(packs={2: dict(pack=1, soc=50.0, volt=400.0)})
    d.update(0)
    regs = d.control_regs(2, 0x12345)
    assert len(regs) == rm.CHG_CONTROL_COUNT
    assert regs[rm.CHG_HR_ENABLE] == 1 and regs[rm.CHG_HR_P_LIMIT] == 625 and regs[rm.CHG_HR_I_LIMIT] == 1800
    assert regs[rm.CHG_HR_V_LIMIT] == 4200 and regs[rm.CHG_HR_TARGET_SOC] == 1000
    assert regs[rm.CHG_HR_HEARTBEAT] == 0x2345
    off = d.control_regs(0, 7, [0] * 6)
    assert off == [0, 0, 0, 0, 1000, 7]
    raises(ValueError, d.control_regs, 23, 0)
    raises(ValueError, d.control_regs, "1", 0)


def test_update_does_not_allocate():
    packs = {i: dict(pack=100 + i, soc=20.0 + 3 * i, volt=400.0) for i in range(23)}
    r, d = _station(packs=packs)
    demand = {"NIO-100": 1}
    d.update(0, price=1.05, demand=demand)
    if micropython_heap() is None:  # CPython: behaviour only
        for _ in range(20):
            assert d.update(100, 1.05, demand) == 16
        return
    import gc

    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(20):
            d.update(100, None, demand)
        grew = gc.mem_alloc() - before
    finally:
        gc.enable()
    assert grew == 0, grew


def _heap_now():
    if micropython_heap() is None:
        return 0
    import gc

    gc.collect()
    return gc.mem_alloc()


def test_an_hour_of_charging_and_swaps_with_bounded_memory():
    """Rack, thermal, dispatch and journal together for a simulated hour: a read of
    every charger and a dispatch each second, a swap every three minutes, the journal
    on LittleFS under MicroPython. Under MicroPython the objects' own heap (code
    excluded: a board runs it frozen or as .mpy) stays small and does not grow."""
    path = tempdir("hour")
    dev = None
    base = _heap_now()
    try:
        import vfs

        # flash in a host file: on a board the medium is not in the heap either
        dev = FileBlockDev(path + "/flash.img", 512, 48)
        vfs.VfsLfs2.mkfs(dev)
        storage = VfsStorage(vfs.VfsLfs2(dev))
    except ImportError:  # CPython has no LittleFS: a host directory
        storage = VfsStorage(path)
    j = Journal(storage, 8192, 100)
    j.open()
    th = Thermal(CFG)
    r = Rack(CFG, thermal=th, on_change=j.rack_change)
    d = Dispatch(CFG, r)
    n = r.n
    soc = [50.0 + 2 * i for i in range(n)]
    serial = [1000 + i for i in range(n)]
    regs = [status_regs(serial[i], soc=soc[i], volt=380.0) for i in range(n)]
    footprint = _heap_now() - base
    samples = []
    next_serial = 5000
    swaps = 0
    for sec in range(3600):
        now = sec * 1000
        for i in range(n):
            if d.enable[i]:  # plant: energy in raises SoC
                soc[i] = min(100.0, soc[i] + d.p_dkw[i] / 10 / 3600 / 75 * 100)
            rg = regs[i]
            rg[rm.CHG_IR_SOC] = int(soc[i] * 10)
            r.update_from_charger(i, rg, now)
        d.update(now)
        for i in range(n):
            d.control_regs(i, sec)
        j.service(8)
        if sec % 180 == 90:
            slot = r.reserve_for("NIO-ES6", now)
            assert slot is not None, sec
            k = j.swap_begin(f"V{sec}", "NIO-ES6", now, slot, serial[slot])
            out = next_serial
            next_serial += 1
            j.swap_step(k, "unbolt", "ok", now, {"po": out, "so": 15.0})
            given = r.take(slot, now)
            r.insert_pack(slot, out)  # the vehicle's pack goes into the slot just emptied
            serial[slot] = out
            soc[slot] = 15.0
            regs[slot] = status_regs(out, soc=15.0, volt=380.0)
            j.swap_end(k, "ok", now + 140000, out, 15.0, given, 95.0, 1.0)
            swaps += 1
            if swaps % 5 == 0:
                last = 0
                for seq, _ in j.swap_records():
                    last = seq
                j.mark_exported(last)
        if sec % 600 == 599:
            samples.append(_heap_now() - base)
    assert swaps == 20 and j.state.swaps_ok == 20
    assert j.size < 8192 * 3 // 2 and j.state.ckpt_seq > 0
    assert d.total_dkw <= d.grid_dkw
    if micropython_heap() is not None:
        # 64-bit unix port; a 32-bit board needs about half
        assert footprint < 32 * 1024, footprint
        assert max(samples) - min(samples) < 4096, samples
        assert max(samples) < 48 * 1024, samples  # working set: journal state, assets
    j.close()
    j = Journal(storage, 8192, 100)
    assert j.open().clean and j.state.swaps_ok == 20
    j.close()
    if dev is not None:
        dev.close()
    rmtree(path)


def test_price_at_follows_the_configured_bands():
    cfg = station_cfg()
    _, d = _station()
    for m in range(0, 1440 * 2, 7):
        assert d.price_at(m) == config.tou_price(cfg, m), m
    assert d.price_at(600) == 1.05 and d.price_at(60) == 0.31


# --- order among packs waiting for the grid ------------------------------------------------------


def _tie_cfg(chargers, slots, min_on=None):
    """``slots`` slots, a grid for ``chargers`` full 62.5 kW chargers, hand-over = full = 80 %
    (the queueing-validation set-up), no time-of-use."""

    def mutate(raw):
        raw["slots"] = raw["slots"][:slots]
        raw["limits"]["grid_kw"] = 62.5 * chargers
        raw["limits"]["handover_soc"] = raw["limits"]["full_soc"] = 80
        raw["tou"] = None
        if min_on is not None:
            raw["limits"]["charge_min_on_ms"] = min_on

    return station_cfg(mutate)


def _at(pack, soc):
    return dict(pack=pack, soc=soc, volt=400.0)


def _read(r, slot, now_ms, pack=None, soc=20.0, code=1):
    r.update_from_charger(slot, status_regs(pack, code=code, soc=soc, volt=400.0), now_ms)


def test_a_waiting_pack_keeps_its_turn_against_a_later_pack_in_a_lower_slot():
    # One charger's worth of grid. Slot 2 waits at 20.0 % while slot 3 charges; a returned pack
    # at the same 20.0 % arrives in slot 0 later. When slot 3 is done, slot 2 was first.
    r, d = _station(_tie_cfg(1, 4), {2: _at(2, 20.0), 3: _at(3, 50.0)})
    d.update(0)
    assert d.enable[3] and not d.enable[2] and d.why[2] == GRID
    _read(r, 2, 10000, 2, 20.0)
    _read(r, 3, 10000, 3, 51.0)
    _read(r, 0, 10000, 100, 20.0)  # the returned pack
    d.update(10000)
    assert d.enable[3] and not d.enable[0] and not d.enable[2]
    _read(r, 3, 20000, 3, 80.0)  # slot 3 full
    _read(r, 2, 20000, 2, 20.0)
    _read(r, 0, 20000, 100, 20.0)
    d.update(20000)
    assert d.why[3] == FULL
    assert d.enable[2] and not d.enable[0], "slot 2 waited since boot, slot 0's pack came at 10 s"


def test_a_charger_just_switched_on_is_not_handed_to_a_tied_newcomer():
    # Slot 3 gets the only charger at 10 s; 2 s later a returned pack reading the same 20.0 %
    # arrives in slot 0. Slot 3's pack has not moved a tenth of a percent yet: it keeps charging.
    r, d = _station(_tie_cfg(1, 4), {1: _at(1, 50.0), 3: _at(3, 20.0)})
    d.update(0)
    assert d.enable[1] and not d.enable[3]
    _read(r, 1, 10000, 1, 80.0)
    _read(r, 3, 10000, 3, 20.0)
    d.update(10000)
    assert d.enable[3] and d.why[1] == FULL
    _read(r, 1, 12000, None)  # the vehicle took slot 1's pack ...
    _read(r, 0, 12000, 100, 20.0)  # ... and its returned pack went into slot 0
    _read(r, 3, 12000, 3, 20.0)
    d.update(12000)
    assert d.enable[3] and not d.enable[0] and d.why[0] == GRID


class _SwapRun:
    """Packs in slots 0..packs-1 at 20.0 %, one free slot, a grid for ``chargers`` full chargers.
    A pack gains 0.1 % per 10 s at 62.5 kW (20 -> 80 % in T = 6000 s at full power); 3 s after
    a pack reads full a vehicle takes it and its returned pack, at 20.0 % like every other,
    goes into the free slot (the emptied slot is the next free one). A read of every charger
    and a dispatch each second."""

    T_S = 6000

    def __init__(self, chargers, packs, min_on=None):
        cfg = _tie_cfg(chargers, packs + 1, min_on)
        self.r = r = Rack(cfg, thermal=Thermal(cfg))
        self.d = Dispatch(cfg, r)
        n = self.n = packs + 1
        self.regs = [status_regs(100 + i, soc=20.0, volt=400.0) for i in range(packs)] + [status_regs()]
        self.work = [0] * n  # 0.1 kW x s received since the last 0.1 % step
        self.arrived = [0] * packs + [-1]  # second the slot's pack arrived; -1: no pack
        self.started = [False] * packs + [True]
        self.full_at = [-1] * n
        self.on_at = [0] * n
        self.was_on = bytearray(n)
        self.free = packs
        self.next_pack = 1000
        self.waits = []  # seconds from a pack's arrival to its first charge
        self.ons = 0  # charger switch-ons
        self.handed = []  # seconds a charger was on before it went to another slot, the pack not full
        self.t = 0

    def step(self):
        t = self.t
        r, d, regs = self.r, self.d, self.regs
        for i in range(self.n):
            r.update_from_charger(i, regs[i], t * 1000)
        d.update(t * 1000)
        for i in range(self.n):
            on = d.enable[i]
            if on and not self.was_on[i]:
                self.ons += 1
                self.on_at[i] = t
                if not self.started[i]:
                    self.started[i] = True
                    self.waits.append(t - self.arrived[i])
            elif self.was_on[i] and not on and d.why[i] == GRID:
                self.handed.append(t - self.on_at[i])
            self.was_on[i] = on
            if on:
                self.work[i] += d.p_dkw[i]
                while self.work[i] >= 6250:
                    self.work[i] -= 6250
                    regs[i][rm.CHG_IR_SOC] += 1
            if self.full_at[i] < 0 and regs[i][rm.CHG_IR_PACK_PRESENT] and regs[i][rm.CHG_IR_SOC] >= 800:
                self.full_at[i] = t
        for i in range(self.n):
            if self.full_at[i] >= 0 and t - self.full_at[i] >= 3:  # a vehicle swaps
                self.regs[i] = status_regs()
                self.full_at[i] = -1
                self.arrived[i] = -1
                self.work[i] = 0
                f = self.free
                self.regs[f] = status_regs(self.next_pack, soc=20.0, volt=400.0)
                self.next_pack += 1
                self.arrived[f] = t
                self.started[f] = False
                self.free = i
        self.t = t + 1

    def longest_wait(self):
        """The longest wait so far, counting packs still waiting."""
        w = max(self.waits) if self.waits else 0
        for i in range(self.n):
            if not self.started[i]:
                w = max(w, self.t - self.arrived[i])
        return w


def test_no_pack_waits_longer_than_its_first_in_first_charged_turn():
    """5 packs, 2 chargers' worth of grid, every returned pack at the same 20.0 %.

    The bound: a pack that arrives finds at most N - 1 = 4 packs ahead of it, and no later
    pack ever goes ahead (first in, first charged; a charger is not taken from a pack that
    is charging). K = 2 of those ahead charge; the pack has a charger once no more than
    K - 1 are left ahead, so after ceil((N - K) / K) = 2 charges in a row on each charger.
    A charge takes T = 6000 s at full power; a charger is seen free at the next read (1 s)
    and handed on in the same dispatch: wait <= 2 * (T + 1 s) = 12002 s. Over 10 T
    (about 20 charges) every pack meets it, and no charger goes to another slot before its
    pack is full."""
    run = _SwapRun(2, 5)
    bound = 2 * (run.T_S + 1)
    while run.t < 10 * run.T_S:
        run.step()
    assert len(run.waits) >= 18, run.waits
    assert run.longest_wait() <= bound, (run.longest_wait(), bound)
    assert run.handed == [], run.handed
    assert run.ons == len(run.waits)  # one switch-on per charge
    assert run.d.switches == run.ons


def test_a_charger_stays_on_for_its_minimum_on_time_then_yields_to_demand():
    # One charger's worth of grid. Slot 0 (NIO-75) is switched on at 0; 1 s later a queued car
    # wants a NIO-100, none is ready, so slot 1's NIO-100 comes first: after slot 0's minimum
    # on-time (default 60 s), or at once with charge_min_on_ms = 0.
    demand = {"NIO-100": 1}
    for min_on, handover_ms in ((None, 60000), (0, 1000), (5000, 5000)):
        r, d = _station(_tie_cfg(1, 4, min_on))
        assert d.min_on_ms == (60000 if min_on is None else min_on)
        _read(r, 0, 0, 1, 50.0, code=1)
        _read(r, 1, 0, 2, 50.0, code=2)
        d.update(0)
        assert d.enable[0] and not d.enable[1]  # nearer to hand-over (75 kWh)
        now = 1000
        while now <= 61000:
            _read(r, 0, now, 1, 50.0, code=1)
            _read(r, 1, now, 2, 50.0, code=2)
            d.update(now, demand=demand)
            first = 1 if now >= handover_ms else 0
            assert d.enable[first] and not d.enable[1 - first], (min_on, now)
            assert d.total_dkw <= d.grid_dkw
            now += 1000
        assert d.switches == 2


def test_the_minimum_on_time_never_overrides_the_grid_or_a_stop():
    r, d = _station(_tie_cfg(2, 4), {0: _at(1, 50.0), 1: _at(2, 50.0)})
    d.update(0)
    assert d.enable[0] and d.enable[1] and d.switches == 2
    fill(r, 1000, {0: _at(1, 50.0), 1: _at(2, 50.0)})
    d.update(1000, other_kw=62.5)  # the site takes one charger's power: one slot must go
    assert d.total_dkw == 625 and d.enable[0] and not d.enable[1] and d.why[1] == GRID
    r.thermal.smoke(True)
    d.update(1000)
    assert not any(d.enable) and d.why[0] == ALARM
