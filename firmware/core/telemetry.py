"""The station's link to its operator's platform over MQTT (docs/telemetry.md).

    tel = Telemetry(cfg, sup, now_ms)   # cfg["mqtt"] set; client: an MQTTClient or None
    wait = tel.poll(now_ms)             # from the main loop, beside sup.tick(): never blocks

Topics under ``swapstation/<station>/``:

- ``status`` (retained, QoS 0): every ``mqtt.status_every_s`` and within a second of a
  change (state, bay step, slots summary, grid power, alarms); the broker's last will
  puts ``{"online":false}`` there when the station goes silent.
- ``swaps`` (QoS 1): every swap transaction of the journal, one at a time in journal
  order. The cursor is the journal's EX record: a PUBACK journals ``EX seq``, so records
  made while the broker is away, or before a power cut, go out after the reconnect or
  the reboot. A record sent again after a cut between PUBACK and EX has the same
  (station, swap number): the backend stores it once.
- ``alarms`` (QoS 1): each alarm raised or cleared (held in RAM while offline, the last
  ``_ALARM_Q``; the retained status always lists the active ones).
- ``cmd`` (subscribed): ``{"ctr": n, "cmd": "maintenance on", "mac": hex}``, the MAC an
  HMAC-SHA256 under ``mqtt.key`` over ``station \\n ctr \\n cmd``. A bad MAC is refused
  with alarm ``cmd_bad_mac``; a counter not above the last accepted one with
  ``cmd_replay``. The accepted counter is journalled (RC) before the command acts.
- ``result`` (QoS 1): one per command, ``{"ctr", "cmd", "result", "why", ...}``.

Commands never start motion or clear a stop: those stay at the station by design.
This module uses only the supervisor's public methods and the callbacks it hands.
"""

try:
    import json
except ImportError:  # pragma: no cover
    import ujson as json  # type: ignore

from firmware.compat import const, ticks_add, ticks_diff
from firmware.core.supervisor import RECORD_ALARMS
from firmware.proto.hmac256 import hexlify, hmac_sha256, same, unhex
from firmware.proto.mqtt import MQTTClient

_CHECK_MS = const(1000)  # status looked at for changes this often
_ALARM_Q = const(16)  # alarm events held while the broker is away
_RESULT_Q = const(4)  # command results waiting to go out
_CMD_MAX = const(128)  # the longest command text taken

# Commands the platform may send that this controller cannot carry out remotely, and why.
UNSUPPORTED = {}
HELP = ("commands: status, maintenance on|off, grid_cap KW, tariff PRICE..., slot_out SLOT, "
        "slot_back SLOT, quarantine PACK, ack ALARM")


def _number(text):
    try:
        v = float(text)
    except ValueError:
        return None
    return v if v == v and v not in (float("inf"), float("-inf")) else None


def _int(text):
    try:
        return int(text)
    except ValueError:
        return None


def _index(items, value):
    for i, v in enumerate(items):
        if v == value:
            return i
    return -1


def mac_text(station, ctr, cmd):
    """The bytes a command's MAC covers."""
    return ("%s\n%d\n%s" % (station, ctr, cmd)).encode()


def sign(key, station, ctr, cmd):
    """A command's MAC as hex (the backend's ``ops`` does the same in CPython)."""
    return hexlify(hmac_sha256(key, mac_text(station, ctr, cmd)))


class Telemetry:
    def __init__(self, cfg, sup, now_ms, client=None):
        m = cfg["mqtt"]
        sid = cfg["station_id"]
        self.station = sid
        self.sup = sup
        self.key = unhex(m["key"])
        base = "swapstation/" + sid + "/"
        self.t_status = base + "status"
        self.t_swaps = base + "swaps"
        self.t_alarms = base + "alarms"
        self.t_cmd = base + "cmd"
        self.t_result = base + "result"
        self.every_ms = m["status_every_s"] * 1000
        if client is None:
            client = MQTTClient(sid, m["host"], m["port"], m["user"], m["password"], m["keepalive_s"],
                                self.t_status, b'{"online":false}', max_packet=m["max_packet"],
                                backoff_min_ms=m["backoff_min_ms"], backoff_max_ms=m["backoff_max_ms"],
                                now_ms=now_ms)
        client.on_message = self._message
        client.on_puback = self._puback
        client.subscribe(self.t_cmd, 1)
        self.client = client
        self._up = False
        self._check = now_ms
        self._status_at = now_ms
        self._last = None  # the status text last published
        self._swap_pid = self._swap_seq = 0
        self._scanned = -1  # last_swap_seq when a scan found nothing to send
        self.alarm_q = []
        self.results = []
        self.alarms_dropped = self.commands = self.refused = 0
        self.swaps_sent = 0
        sup.watch_alarms(self._alarm)

    # ---- loop ---------------------------------------------------------------------------
    def poll(self, now):
        c = self.client
        w = c.poll(now)
        if not c.connected:
            self._up = False
            return w
        if not self._up:  # a new session: the retained status is the will's now
            self._up = True
            self._last = None
        self._swaps()
        while self.alarm_q and c.publish(self.t_alarms, self.alarm_q[0], 1):
            self.alarm_q.pop(0)
        while self.results and c.publish(self.t_result, self.results[0], 1):
            self.results.pop(0)
        if ticks_diff(now, self._check) >= 0:
            self._check = ticks_add(now, _CHECK_MS)
            self._status(now)
        c.poll(now)  # what was queued goes out in this call
        return min(w, max(0, ticks_diff(self._check, now)))

    def _swaps(self):
        if self._swap_pid:
            return  # one in flight: in order, each after the last one's PUBACK
        sup = self.sup
        last = sup.last_swap_seq()
        if last <= sup.exported_seq() or last == self._scanned:
            return
        rec = sup.next_swap_record(sup.exported_seq())
        if rec is None:
            self._scanned = last
            return
        seq, f = rec
        d = {"station": self.station, "seq": seq}
        for k in f:
            d[k] = f[k]
        pid = self.client.publish(self.t_swaps, json.dumps(d), 1)
        if pid:
            self._swap_pid, self._swap_seq = pid, seq

    def _puback(self, pid):
        if pid == self._swap_pid:
            self._swap_pid = 0
            self.swaps_sent += 1
            self.sup.swaps_exported(self._swap_seq)

    def status_doc(self):
        st = self.sup.status()
        d = {"online": True, "state": st["state"]}
        if "error" in st:
            d["error"] = st["error"]
            return d
        for k in ("step", "plan", "swap", "queue", "rack", "alarms", "swaps_ok", "swaps_other"):
            d[k] = st[k]
        d["grid_kw"] = self.sup.grid_kw()
        return d

    def _status(self, now):
        doc = self.status_doc()
        kw = doc.get("grid_kw")
        if kw is not None:
            doc["grid_kw"] = int(kw + 0.5)  # a charging taper alone is not news: whole kW
        same = json.dumps(doc)
        if same == self._last and ticks_diff(now, self._status_at) < self.every_ms:
            return
        if kw is not None:
            doc["grid_kw"] = kw
        if self.client.publish(self.t_status, json.dumps(doc), 0, True):
            self._last = same
            self._status_at = now

    # ---- alarms -------------------------------------------------------------------------
    def _alarm(self, slot, code, active, detail):
        if len(self.alarm_q) >= _ALARM_Q:
            self.alarm_q.pop(0)
            self.alarms_dropped += 1
        self.alarm_q.append(json.dumps({"slot": slot, "code": code, "on": active, "detail": detail}))

    # ---- commands -----------------------------------------------------------------------
    def _result(self, ctr, cmd, result, why=None, extra=None):
        d = {"ctr": ctr, "cmd": cmd, "result": result, "why": why}
        if extra is not None:
            d["status"] = extra
        if len(self.results) >= _RESULT_Q:
            self.results.pop(0)
        self.results.append(json.dumps(d))

    def _message(self, topic, payload):
        if topic != self.t_cmd:
            return
        self.commands += 1
        try:
            msg = json.loads(payload)
        except ValueError:
            msg = None
        ctr = msg.get("ctr") if type(msg) is dict else None
        cmd = msg.get("cmd") if type(msg) is dict else None
        mac = msg.get("mac") if type(msg) is dict else None
        if type(ctr) is not int or type(cmd) is not str or type(mac) is not str or \
                not 0 < ctr <= 0x7FFFFFFF or not 0 < len(cmd) <= _CMD_MAX:
            self.refused += 1
            self._result(ctr if type(ctr) is int else None, cmd if type(cmd) is str else None, "rejected",
                         "malformed: expected {ctr: 1..2**31-1, cmd: text, mac: hex}")
            return
        try:
            good = same(unhex(mac), hmac_sha256(self.key, mac_text(self.station, ctr, cmd)))
        except ValueError:
            good = False
        sup = self.sup
        if not good:
            self.refused += 1
            sup.remote_alarm("cmd_bad_mac", "ctr %d: %s" % (ctr, cmd[:40]))
            self._result(ctr, cmd, "rejected", "bad MAC")
            return
        last = sup.command_counter()
        if ctr <= last:
            self.refused += 1
            sup.remote_alarm("cmd_replay", "ctr %d <= %d" % (ctr, last))
            self._result(ctr, cmd, "rejected", "counter %d not above %d" % (ctr, last))
            return
        if not sup.accept_counter(ctr):
            self.refused += 1
            self._result(ctr, cmd, "rejected", "journal unwritable: counter not kept")
            return
        self._run(ctr, cmd)

    def _run(self, ctr, cmd):
        words = cmd.split()
        name = words[0] if words else ""
        sup = self.sup
        if name == "status" and len(words) == 1:
            self._result(ctr, cmd, "ok", None, sup.status())
        elif name == "maintenance" and len(words) == 2 and words[1] in ("on", "off"):
            # Leaving maintenance holds for a local confirm: nothing moves from here.
            ok = sup.manual(words[1] == "on")
            self._result(ctr, cmd, "ok" if ok else "refused", None if ok else sup.state())
            self._last = None  # the status changed: say so at the next check
        elif name == "grid_cap" and len(words) == 2:
            kw = _number(words[1])
            ok = kw is not None and sup.set_grid_cap(kw)
            self._done(ctr, cmd, ok, "a cap from 1 kW up to limits.grid_kw, %s kW"
                       % sup.cfg["limits"]["grid_kw"])
        elif name in ("slot_out", "slot_back") and len(words) == 2:
            slot = _index(sup.rack.ids, words[1])
            if slot < 0:
                self._result(ctr, cmd, "refused", "no slot " + words[1][:16])
            elif name == "slot_out":
                self._done(ctr, cmd, sup.take_out(slot, "out of service"),
                           "the slot is reserved or already out: " + str(sup.rack.reason[slot]))
            else:
                self._done(ctr, cmd, sup.put_back(slot), "not out by a remote command (clear it "
                           "at the station): " + str(sup.rack.reason[slot]))
        elif name == "quarantine" and len(words) == 2:
            pack = _int(words[1])  # not via float: single precision would change a 32-bit serial
            rk = sup.rack
            slot = _index(rk.pack, pack) if pack is not None else -1
            if slot < 0:
                self._result(ctr, cmd, "refused", "pack %s is not in the rack" % words[1][:16])
            else:
                self._done(ctr, cmd, sup.take_out(slot, "pack quarantined"),
                           "its slot is reserved or already out: " + str(rk.reason[slot]))
        elif name == "tariff" and len(words) >= 2:
            prices = [_number(w) for w in words[1:]]
            n = len(sup.dispatch.bands)
            ok = None not in prices and sup.set_tariff(prices)
            self._done(ctr, cmd, ok, "one price per time-of-use band, 0..10000, in the config's order (%d "
                       "bands)" % n if n else "the station has no time-of-use bands (config tou)")
        elif name == "ack" and len(words) == 2:
            code = words[1].split(":", 1)[-1]  # "cmd_bad_mac" or its key "-1:cmd_bad_mac"
            self._done(ctr, cmd, sup.ack_record_alarm(code), "only an active one of %s; holds and "
                       "latches are acknowledged at the station" % ", ".join(RECORD_ALARMS))
        elif name in UNSUPPORTED:
            self._result(ctr, cmd, "unsupported", UNSUPPORTED[name])
        else:
            self._result(ctr, cmd, "unknown", HELP)

    def _done(self, ctr, cmd, ok, why):
        self._result(ctr, cmd, "ok" if ok else "refused", None if ok else why)
        self._last = None  # the status changed: say so at the next check
