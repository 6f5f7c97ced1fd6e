"""HIL ``unix`` target: the station firmware under the MicroPython unix port.

Run by the rig as ``micropython hil/unix_target_main.py args.json`` (or the JSON
itself as the argument, if shorter than 256 bytes) with ``MICROPYPATH`` at the
repository root. It does what a controller does at boot, with
the desktop's stand-ins for the hardware:

- flash: a LittleFS image (``vfs.VfsLfs2``) on a file-backed block device, formatted on
  first use, so the journal survives a restart; ``cut`` tears the k-th next flash write
  and stops the process on the spot (SIGKILL to itself), like a power cut mid-write (on
  the qemu board, ``cut_board_flash`` puts the same switch in front of its PSRAM disk; the
  CPU then spins and the rig kills QEMU);
- RS-485 lines: the line emulator's ptys, through the POSIX serial driver;
- controller inputs (e-stop pin ...): in-memory pins the operator channel sets;
- the supervisor from the station config, ticked on real time.

Operator/status channel: one JSON object per line. The rig writes requests on stdin,
``{"id": 3, "op": "ack"}``; the target answers on stdout with lines starting with
``@@HIL `` followed by JSON: ``{"k": "reply", "id": 3, "ok": true, "r": ...}``,
``{"k": "status", ...}`` (pushed every ``status_ms`` and after every request),
``{"k": "boot", ...}``, ``{"k": "fatal", ...}`` (cannot start), ``{"k": "powercut", ...}``.
``{"op": "hang", "ms": n}`` stops the loop for ``n`` ms (a hung station: nothing feeds the
watchdog).
End of stdin (the rig went away) stops the target.

Arguments (JSON object): ``config`` (station.json path), ``image`` (flash image path),
``block_size``, ``block_count``, ``buses`` ({"chargers": pty path, "bay_io": pty path}),
``inputs`` ({name: initial level}), ``status_ms``, ``cut_after`` (arm a flash cut at boot),
``max_idle_ms``.
"""

import sys

try:
    import json
except ImportError:  # pragma: no cover
    import ujson as json  # type: ignore

import os
import select
from array import array

from firmware.compat import ticks_diff, ticks_ms, ticks_us
from firmware.drivers.blockdev import CutSwitch, FileBlockDev

_TAIL_BYTES = 2048  # the "tail" probe: about a dozen journal lines

TAG = "@@HIL "
EXIT_FATAL = 3  # the station could not start (bad config, missing port ...)
EXIT_EOF = 0  # stdin closed: the rig stopped us
# Set by a rig that cuts the power itself when it reads a kill trigger's line (the qemu
# target): the loop then stops in place and waits for the cut.
KILL_BY_HOST = False
# The flash's block device with its power-cut switch: the unix target's image file, or on the
# qemu board the PSRAM disk behind a ``CutSwitch`` (``cut_board_flash``); None on a real board.
FLASH = None
PID = None  # this process's id on the unix port: a power cut is SIGKILL to itself
# Set by a rig whose board has no controller pins (the qemu target): {input: level at power-on}.
# ``serve_station`` wires in-memory stand-ins for them and for the outputs, as the unix target
# has, and counts the bytes written per bus.
HIL_PINS = None


def emit(kind, fields=None):
    out = {"k": kind}
    if fields:
        for key in fields:
            out[key] = fields[key]
    sys.stdout.write(TAG + json.dumps(out) + "\n")


def _own_pid():
    try:
        with open("/proc/self/stat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError):
        return None


def halt():
    """Stop at once, as a supply failing: no finally block, no last write. The unix target
    kills its own process; on a rig that cuts the power itself (``KILL_BY_HOST``, the qemu
    target) the CPU spins here until QEMU is killed on the line just printed."""
    if KILL_BY_HOST:
        while True:
            pass
    if PID is not None:
        os.system(f"kill -9 {PID}")


def _arm(bdev):
    """``bdev`` is the flash: at its torn write, say where, then nothing more runs."""
    global FLASH

    def torn(addr, n, erase):  # the torn half has landed
        emit("powercut", {"writes": bdev.writes, "addr": addr, "n": n, "erase": erase})
        halt()

    FLASH = bdev
    bdev.on_cut = torn
    return bdev


def mount_flash(path, block_size, block_count):
    """The flash filesystem on ``path``: (VFS object, block device, formatted now?)."""
    import vfs

    global PID
    PID = _own_pid()
    bdev = _arm(FileBlockDev(path, block_size, block_count))
    try:
        fs = vfs.VfsLfs2(bdev)
        fresh = False
    except OSError:
        vfs.VfsLfs2.mkfs(bdev)
        fs = vfs.VfsLfs2(bdev)
        fresh = True
    return fs, bdev, fresh


def cut_board_flash():
    """The qemu board: mount its LittleFS (``drivers/mps2.py``) on the PSRAM disk behind a
    power-cut switch, before ``main.main`` opens the board (it finds ``/`` mounted)."""
    from firmware.drivers import mps2

    mps2.mount_flash(_arm(CutSwitch(mps2.PsramDisk())))


class LoopWatchdog:
    """Records feeds; the status reports the longest gap (a board's WDT would reset there)."""

    def __init__(self):
        self.last = ticks_ms()
        self.longest_ms = 0
        self.feeds = 0

    def feed(self):
        now = ticks_ms()
        gap = ticks_diff(now, self.last)
        if gap > self.longest_ms:
            self.longest_ms = gap
        self.last = now
        self.feeds += 1


class UnixBoard:
    """What ``firmware.main.make_station`` needs from a board."""

    def __init__(self, buses, inputs, outputs, storage):
        self.buses = buses
        self.inputs = inputs
        self.outputs = outputs
        self.storage = storage
        self.led = None
        self.watchdog = None

    def start_watchdog(self):
        if self.watchdog is None:
            self.watchdog = LoopWatchdog()
        return self.watchdog

    def close(self):
        for name in self.buses:
            self.buses[name].close()


def _jsonable(v, depth=0):
    """A JSON-safe copy of a status value (tuples become lists, unknown objects text)."""
    t = type(v)
    if v is None or t is bool or t is int or t is str:
        return v
    if t is float:
        return v if -1e300 < v < 1e300 else None
    if depth > 8:
        return str(v)
    if t is dict:
        out = {}
        for k in v:
            out[str(k)] = _jsonable(v[k], depth + 1)
        return out
    if t is list or t is tuple:
        return [_jsonable(x, depth + 1) for x in v]
    if t is bytes or t is bytearray:
        return list(v)
    return str(v)


class Channel:
    """Operator/status line protocol on stdin/stdout."""

    def __init__(self, target, status_ms, wake_fds=()):
        self.target = target  # a Station
        self.status_ms = status_ms
        self.poll = select.poll()
        self.poll.register(sys.stdin, select.POLLIN)
        for fd in wake_fds:  # serial ports: a reply arriving ends the wait at once
            self.poll.register(fd, select.POLLIN)
        self.buf = bytearray()
        self.last_status = ticks_ms()
        self.eof = False
        self.requests = 0

    def wait(self, ms):
        """Wait up to ``ms`` for a request and handle it. True if one was. One request per
        wait: the station ticks between two requests, however fast they come (a host
        repeating ``ack`` faster than a slow controller answers must not stop its loop)."""
        events = self.poll.poll(ms if ms > 0 else 0)
        while events:
            if not self._stdin(events):
                return False  # only the serial ports: back to the station
            b = sys.stdin.buffer.read(1)
            if not b:
                self.eof = True
                return False
            if b == b"\n":
                line = bytes(self.buf)
                self.buf = bytearray()
                if line.strip():
                    self.handle(line)
                    return True
            else:
                self.buf.extend(b)
            events = self.poll.poll(0)
        return False

    @staticmethod
    def _stdin(events):
        for obj, _ in events:
            if type(obj) is not int:
                return True
        return False

    def handle(self, line):
        self.requests += 1
        rid = None
        try:
            req = json.loads(line)
            rid = req.get("id")
            result = self.target.request(req.get("op"), req)
            emit("reply", {"id": rid, "ok": True, "r": _jsonable(result)})
        except Exception as e:  # a bad request must not stop the station
            emit("reply", {"id": rid, "ok": False, "error": f"{type(e).__name__}: {e}"})
        self.push_status()

    def push_status(self):
        self.last_status = ticks_ms()
        emit("status", self.target.status())

    def due(self, now):
        return ticks_diff(now, self.last_status) >= self.status_ms


class Station:
    """The running station with its stand-in (or real) hardware, and the operator requests."""

    def __init__(self, station, board, flash=None, max_idle_ms=20):
        self.station = station
        self.board = board
        self.flash = flash  # the flash with its cut switch (unix, qemu); None on a board
        self.max_idle_ms = max_idle_ms
        self.boot_ms = ticks_ms()
        self.ticks = 0
        self.tick_us_max = 0
        self.quit = False
        self._sig = None
        self.triggers = []  # [step, plan or None, action dict, fired-at ticks or None]
        # Loop figures (probe ``ticks``): tick times idle / in a swap step, the lowest
        # gc.mem_free() seen after every 8th tick (garbage not yet collected counts as used).
        self.hist_idle = Hist(1000)
        self.hist_swap = Hist(1000)
        import gc

        self._mem_free = getattr(gc, "mem_free", None)
        self.mem_low = None
        self.meter = _instrument(station)

    def _signature(self):
        """What a test waits for: a change of it pushes a status line at once, so no
        swap step or hold goes unseen between two periodic lines."""
        st = self.station
        bay = getattr(st, "bay", None)
        if bay is None:
            return None
        return (bay.step, bay.plan, bay.safety.hold, getattr(st, "_booting", False), len(st.alarms),
                bay.swaps_ok, bay.swaps_other)

    # ---- operator requests --------------------------------------------------------
    def request(self, op, req):
        if op == "status":
            return None  # the status line follows every reply
        if op == "pin":
            pin = self.board.inputs[req["name"]]
            pin.value(req["value"])
            return pin.value()
        if op == "cut":
            if self.flash is None:
                raise ValueError("this target has no flash cut switch")
            self.flash.cut_after(int(req.get("after", 0)))
            return self.flash.writes
        if op == "quit":
            self.quit = True
            return None
        if op == "hang":
            # The loop stops for ``ms`` without a tick: nothing feeds the watchdog. On a
            # board whose watchdog_ms is shorter the chip resets here; no reply comes.
            from firmware.compat import sleep_ms

            sleep_ms(int(req.get("ms", 0)))
            return None
        if op == "probe":
            return self.probe(req["what"])
        if op == "trigger":
            return self.arm(req)
        if op == "call":
            # Operator actions are supervisor methods: ack, confirm, manual, jog, abort_swap ...
            name = req["name"]
            if name.startswith("_") or name == "tick":
                raise ValueError("not an operator action: " + name)
            return getattr(self.station, name)(*req.get("args", ()))
        raise ValueError(f"unknown op {op!r}")

    def arm(self, req):
        """Act when the bay enters ``step`` (of ``plan``, if given), ``delay_ms`` later:
        ``do`` = ``pin`` (set input ``name`` to ``value``), ``kill`` (power cut), or
        ``cut_write`` (tear the first flash write made in that step: its journal record)."""
        step = req["step"]
        from firmware.core.config import SWAP_STEPS

        if step not in SWAP_STEPS:
            raise ValueError(f"unknown step {step!r}")
        act = req["do"]
        if act not in ("pin", "kill", "cut_write"):
            raise ValueError(f"unknown trigger action {act!r}")
        if act == "kill" and self.flash is None and not KILL_BY_HOST:
            raise ValueError("this target cannot cut its own power")
        if act == "cut_write":
            if self.flash is None:
                raise ValueError("this target has no flash cut switch")
            want = SWAP_STEPS.index(step)
            plan = req.get("plan")
            bay = self.station.bay
            from firmware.core import bay_steps

            def when():
                return bay.step == want and (plan is None or bay_steps.PLAN_NAMES[bay.plan] == plan)

            self.flash.when = when
            return None
        self.triggers.append([SWAP_STEPS.index(step), req.get("plan"), req, None])
        return len(self.triggers)

    def _fire(self, now):
        bay = getattr(self.station, "bay", None)
        if bay is None or not self.triggers:
            return
        from firmware.core import bay_steps

        for tr in self.triggers:
            step, plan, req, at = tr
            if at is None:
                if bay.step == step and (plan is None or bay_steps.PLAN_NAMES[bay.plan] == plan):
                    tr[3] = at = now
                else:
                    continue
            if ticks_diff(now, at) < req.get("delay_ms", 0):
                continue
            self.triggers.remove(tr)
            emit("trigger", {"step": req["step"], "do": req["do"], "t": ticks_diff(now, self.boot_ms),
                             "sent": self.bytes_sent()})
            if req["do"] == "kill":
                halt()  # nothing more runs (on qemu the rig cuts the power on the line above)
            else:
                self.board.inputs[req["name"]].value(req["value"])
            return

    def bytes_sent(self):
        """Bytes written so far per bus (None where the port does not count them)."""
        out = {}
        buses = self.board.buses
        for name in buses:
            out[name] = getattr(buses[name], "sent", None)
        return out

    def probe(self, what):
        """Test probes into the station's own view (read only): ``rack`` (pack and state
        per slot), ``swaps`` (every swap transaction in the journal), ``journal``, ``sent``
        (bytes written so far per bus), ``mem`` (heap free and used after a collection),
        ``buses`` (each bus master's good, timed-out, CRC- and frame-failed attempts),
        ``ticks`` (tick-time histograms idle and in a swap, lowest heap free seen, time in
        the charger master/link and bay master, transaction times per master), ``modules``
        (the names in ``sys.modules``: whose bytecode is on the heap)."""
        st = self.station
        if what == "rack":
            rk = st.rack
            from firmware.core.rack import STATE_NAMES

            out = []
            for k in range(rk.n):
                out.append({"slot": k, "pack": rk.pack[k], "state": STATE_NAMES[rk.state[k]],
                            "soc": rk.soc[k], "online": rk.online[k], "reason": rk.reason[k]})
            return {"slots": out, "isolation": list(rk.isolation)}
        if what == "swaps":
            return [[seq, fields] for seq, fields in st.journal.swap_records(0)]
        if what == "journal":
            js = st.journal.state
            rep = st.replay
            return {"seq": js.seq, "boots": js.boots, "swap_no": js.swap_no, "ok": js.swaps_ok,
                    "failed": js.swaps_failed, "open_swap": js.open_swap,
                    "replay": None if rep is None else {"records": rep.records, "torn": rep.torn,
                                                         "corrupt": rep.corrupt, "clean": rep.clean}}
        if what == "sent":
            return self.bytes_sent()
        if what == "mem":
            return heap()
        if what == "tail":  # the journal file's last bytes, as the live view shows them
            return self._journal_tail()
        if what == "buses":
            return {"chargers": _bus_counts(st.chargers.bus), "bay_io": _bus_counts(st.bay_bus)}
        if what == "modules":
            return sorted(sys.modules)
        if what == "ticks":
            return {"t": ticks_diff(ticks_ms(), self.boot_ms), "ticks": self.ticks,
                    "idle": self.hist_idle.dump(), "swap": self.hist_swap.dump(), "mem_low": self.mem_low,
                    "cpu": None if self.meter is None else self.meter.dump()}
        raise ValueError(f"unknown probe {what!r}")

    def _journal_tail(self):
        from firmware.core.journal import LOG_NAME

        storage = self.station.journal.storage
        n = storage.size(LOG_NAME)
        f = storage.open(LOG_NAME, "rb")
        try:
            if n > _TAIL_BYTES:
                f.seek(n - _TAIL_BYTES)
            return f.read().decode()
        finally:
            f.close()

    def status(self):
        st = self.station
        wd = self.board.watchdog
        outs = self.board.outputs
        return {
            "t": ticks_diff(ticks_ms(), self.boot_ms),
            "s": _jsonable(st.status()),
            "ticks": self.ticks,
            "tick_us_max": self.tick_us_max,
            "flash_writes": self.flash.writes if self.flash is not None else None,
            "wd_gap_ms": wd.longest_ms if isinstance(wd, LoopWatchdog) else None,
            "outputs": {n: outs[n].value() for n in outs},
        }

    def run(self, channel):
        """The controller's main loop (as ``firmware.main.run``), waiting on the channel
        instead of sleeping so a request is served at once."""
        wdt = self.board.start_watchdog()
        feed_here = getattr(self.board, "watchdog_gate", None) is None
        st = self.station
        tel = st.telemetry
        bay = getattr(st, "bay", None)
        mem_free = self._mem_free
        while not self.quit:
            t0 = ticks_us()
            now = ticks_ms()
            wait = st.tick(now)
            if tel is not None:
                w = tel.poll(now)
                if wait is None or w < wait:
                    wait = w
            self.ticks += 1
            dt = ticks_diff(ticks_us(), t0)
            if dt > self.tick_us_max:
                self.tick_us_max = dt
            if bay is not None and bay.step >= 0:
                self.hist_swap.add(dt)
            else:
                self.hist_idle.add(dt)
            if mem_free is not None and not self.ticks & 7:  # a heap walk: every 8th tick
                free = mem_free()
                if self.mem_low is None or free < self.mem_low:
                    self.mem_low = free
            if feed_here:
                wdt.feed()
            self._fire(now)
            sig = self._signature()
            if sig != self._sig or channel.due(now):
                self._sig = sig
                channel.push_status()
            if wait is None or wait > self.max_idle_ms:
                wait = self.max_idle_ms
            spent = ticks_diff(ticks_ms(), now)
            channel.wait(wait - spent if wait > spent else 0)
            if channel.eof:
                break


def _read_config(path):
    """The station config as parsed JSON, unvalidated: judging it is the supervisor's job
    (a wrong config must put the station in its safe state, not crash the launcher)."""
    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError:
        return text  # not an object: the supervisor refuses it and says so


def _baudrate(raw, bus):
    try:
        return int(raw["buses"][bus]["baudrate"])
    except (KeyError, TypeError, ValueError):
        return 115200


def start_unix(args):
    """Mount the flash image, open the ptys, build the supervisor: a ``Station``."""
    from firmware.drivers.mem import MemPin
    from firmware.drivers.posix_serial import PosixSerialPort
    from firmware.drivers.vfs_storage import VfsStorage
    from firmware.main import make_station

    fs, flash, fresh = mount_flash(args["image"], args.get("block_size", 4096), args.get("block_count", 256))
    if args.get("cut_after") is not None:
        flash.cut_after(args["cut_after"])
    raw = _read_config(args["config"])

    class CountingPort(PosixSerialPort):
        """Counts the bytes written: the rig places the controller's own moments (a
        trigger firing) in a line's trace, whose requests keep the bytes' order."""

        sent = 0

        def write(self, buf):
            n = PosixSerialPort.write(self, buf)
            self.sent += n or 0
            return n

    buses = {}
    for name in args["buses"]:
        buses[name] = CountingPort(args["buses"][name], _baudrate(raw, name), args.get("parity", "E"))
    inputs = {}
    for name in args.get("inputs", {}):
        inputs[name] = MemPin(args["inputs"][name])
    outputs = {}
    for name in args.get("outputs", ()):
        outputs[name] = MemPin(0)
    board = UnixBoard(buses, inputs, outputs, VfsStorage(fs))
    station = make_station(raw, board)
    if station.error is None:  # with an mqtt section: the station's telemetry, polled in run()
        from firmware.main import make_telemetry

        station.telemetry = make_telemetry(station.cfg, station)
    st = station.status()
    emit("boot", {"fresh_flash": fresh, "pid": PID, "flash_writes": flash.writes,
                  "error": st.get("error") if type(st) is dict else None})
    return Station(station, board, flash, args.get("max_idle_ms", 20))


def serve(station, status_ms):
    fds = []
    for name in station.board.buses:
        fileno = getattr(station.board.buses[name], "fileno", None)
        if fileno is not None:
            fds.append(fileno())
    channel = Channel(station, status_ms, fds)
    channel.push_status()
    station.run(channel)
    station.board.close()


def board_main(status_ms=100):
    """On a controller: open the board as ``main.py`` does and serve the channel on the
    USB serial (the REPL's stdin/stdout). The rig types this at the REPL."""
    import main as fw_main  # the image's main.py

    try:
        manifest, board, station = fw_main.start()
    except Exception as e:
        emit("fatal", {"error": f"{type(e).__name__}: {e}"})
        return
    serve_station(manifest, board, station, status_ms)


def serve_station(manifest, board, station, status_ms=100):
    """The channel on the USB serial for a station ``main.py`` started: what it calls when
    board.json names this module as its ``channel`` (the emulated Pico boots this way)."""
    if HIL_PINS is not None:
        _stand_in_pins(board, station, HIL_PINS)
    emit("boot", {"image": manifest["image_sha256"][:12], "error": station.status().get("error"),
                  "reset_cause": _reset_cause()})
    serve(Station(station, board, FLASH), status_ms)


def _stand_in_pins(board, station, levels):
    """In-memory pins for a board that has none, wired into the running supervisor (it reads
    its inputs and writes its outputs through these dicts every tick): the rig sets the inputs
    through the channel and reads the outputs in the status, as on the unix target."""
    from firmware.drivers.mem import MemPin

    for name in levels:
        if name not in board.inputs:
            board.inputs[name] = MemPin(levels[name])
    for name in ("motion_enable", "fault"):
        if name not in board.outputs:
            board.outputs[name] = MemPin(0)
    station.inputs = board.inputs
    station.outputs = board.outputs
    for name in board.buses:
        _count_sent(board.buses[name])


def _count_sent(port):
    """Count the bytes a port's ``write`` takes (``sent``, as the unix target's ports do): the
    rig places the controller's own moments (a trigger firing) in the line's trace by them."""
    if hasattr(port, "sent"):
        return
    write = port.write
    port.sent = 0

    def counted(buf):
        n = write(buf)
        port.sent += n or 0
        return n

    port.write = counted


def _bus_counts(bus):
    """A bus master's attempts summed over its units: what the line cost the station."""
    out = {"good": 0, "timeouts": 0, "crc_errors": 0, "frame_errors": 0, "offline": 0}
    for unit in bus.units():
        h = bus.health(unit)
        out["good"] += h.good
        out["timeouts"] += h.timeouts
        out["crc_errors"] += h.crc_errors
        out["frame_errors"] += h.frame_errors
        out["offline"] += 0 if h.online else 1
    return out


def heap():
    """Heap bytes free and in use after a collection (MicroPython), None elsewhere."""
    import gc

    gc.collect()
    free = getattr(gc, "mem_free", None)
    alloc = getattr(gc, "mem_alloc", None)
    if free is None or alloc is None:
        return None
    return {"free": free(), "alloc": alloc()}


_HIST_FINE = 100  # buckets one unit wide below this many units ...
_HIST_N = 191  # ... then ten units wide up to 1000 units; the last bucket takes the rest


class Hist:
    """Durations in fixed buckets (``unit_us`` wide below 100 units, 10 units wide up to
    1000, then one overflow bucket), with their exact sum and the longest: what the host
    takes mean and p99 from. Preallocated; ``add`` allocates nothing (the sum carries into
    whole seconds before it leaves the small ints of a 32-bit board)."""

    def __init__(self, unit_us):
        self.unit = unit_us
        self.counts = array("I", [0] * _HIST_N)
        self.n = 0
        self.sum_s = 0
        self.sum_us = 0
        self.max_us = 0

    def add(self, us):
        u = us // self.unit
        if u >= _HIST_FINE:
            u = _HIST_FINE + (u - _HIST_FINE) // 10
            if u >= _HIST_N:
                u = _HIST_N - 1
        self.counts[u] += 1
        self.n += 1
        s = self.sum_us + us
        if s >= 1000000:
            self.sum_s += s // 1000000
            s %= 1000000
        self.sum_us = s
        if us > self.max_us:
            self.max_us = us

    def dump(self):
        counts = {}
        c = self.counts
        for k in range(_HIST_N):
            if c[k]:
                counts[str(k)] = c[k]
        return {"unit_us": self.unit, "n": self.n, "sum_us": self.sum_s * 1000000 + self.sum_us,
                "max_us": self.max_us, "counts": counts}


class CpuMeter:
    """Time spent inside a few of the station's calls (charger master and link, bay
    master), summed in us with a carry into seconds; transaction times per bus master."""

    def __init__(self):
        self.us = [0, 0, 0]
        self.s = [0, 0, 0]
        self.tx = {}

    def add(self, k, dt):
        v = self.us[k] + dt
        if v >= 1000000:
            self.s[k] += 1
            v -= 1000000
        self.us[k] = v

    def wrap(self, obj, name, k):
        """``obj.name(arg)`` timed into slot ``k`` (an instance attribute shadows the method)."""
        fn = getattr(obj, name)
        meter = self

        def timed(now):
            t0 = ticks_us()
            r = fn(now)
            meter.add(k, ticks_diff(ticks_us(), t0))
            return r

        setattr(obj, name, timed)

    def time_transactions(self, bus, name):
        """Request sent (its last byte left, the master's ``_sent_us``) to the reply handled
        (``_finish`` with no error): the master's own view of a transaction."""
        fin = getattr(bus, "_finish", None)
        if fin is None or not hasattr(bus, "_sent_us"):
            return
        hist = self.tx[name] = Hist(100)

        def timed(tx, err, now_ms, exc=0):
            r = fin(tx, err, now_ms, exc)
            if err == 0 and tx.unit:
                hist.add(ticks_diff(ticks_us(), bus._sent_us))
            return r

        bus._finish = timed

    def dump(self):
        tx = {}
        for name in self.tx:
            tx[name] = self.tx[name].dump()
        s, us = self.s, self.us
        return {"chargers_master": s[0] * 1000000 + us[0], "chargers_link": s[1] * 1000000 + us[1],
                "bay_master": s[2] * 1000000 + us[2], "tx": tx}


def _instrument(st):
    """A CpuMeter hooked into the supervisor's charger link and bus masters, None when the
    station did not start (no buses)."""
    ch = getattr(st, "chargers", None)
    bay_bus = getattr(st, "bay_bus", None)
    if ch is None or bay_bus is None:
        return None
    m = CpuMeter()
    m.wrap(ch.bus, "poll", 0)
    m.wrap(ch, "service", 1)
    m.wrap(bay_bus, "poll", 2)
    m.time_transactions(ch.bus, "chargers")
    m.time_transactions(bay_bus, "bay_io")
    return m


def _reset_cause():
    """``machine.reset_cause()`` (rp2: 1 power-on, 3 watchdog), None where there is none."""
    try:
        import machine

        return machine.reset_cause()
    except (ImportError, AttributeError):
        return None


def main(argv):
    if len(argv) < 2:
        emit("fatal", {"error": "usage: unix_target_main.py <args.json | '<json args>'>"})
        return EXIT_FATAL
    text = argv[1]
    if not text.startswith("{"):
        # A file: the unix port of MicroPython 1.29 aborts on an argument of 256 bytes or more.
        with open(text) as f:
            text = f.read()
    args = json.loads(text)
    try:
        station = start_unix(args)
    except Exception as e:  # cannot start at all (no image, no pty): say why
        emit("fatal", {"error": f"{type(e).__name__}: {e}"})
        return EXIT_FATAL
    serve(station, args.get("status_ms", 200))
    return EXIT_EOF


if __name__ == "__main__":
    sys.exit(main(sys.argv))
