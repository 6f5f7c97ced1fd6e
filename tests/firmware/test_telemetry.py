"""Telemetry on the whole station in virtual time, with an in-memory stand-in for the
MQTT client (the real client and broker: tests/telemetry/)."""

import json

from station import Station

from firmware.core import telemetry as T
from firmware.core.config import ConfigError, validate

KEY = "a5" * 32
SID = "PSS4-DEMO-001"  # firmware/station.json


class MemClient:
    """What Telemetry needs of MQTTClient; PUBACKs only when the test says so."""

    def __init__(self):
        self.connected = True
        self.on_message = self.on_puback = None
        self.subs = []
        self.out = []  # (topic, payload str, qos, retain, pid)
        self.inflight = {}
        self._pid = 0

    def subscribe(self, topic, qos=1):
        self.subs.append(topic)

    def publish(self, topic, payload, qos=0, retain=False):
        if not self.connected or (qos and len(self.inflight) >= 8):
            return 0
        self._pid += 1
        self.out.append((topic, payload, qos, retain, self._pid))
        if qos:
            self.inflight[self._pid] = topic
        return self._pid

    def poll(self, now):
        return 50

    def ack_all(self):
        for pid in sorted(self.inflight):
            del self.inflight[pid]
            self.on_puback(pid)

    def lose(self):
        """The connection drops: nothing in flight was acknowledged."""
        self.connected = False

    def sent(self, leaf):
        return [json.loads(p) for t, p, q, r, i in self.out if t == f"swapstation/{SID}/{leaf}"]


def _mqtt(raw):
    raw["mqtt"] = {"host": "127.0.0.1", "key": KEY}


class Rig:
    def __init__(self):
        self.st = Station(n_slots=6, mutate=_mqtt)
        self.client = MemClient()
        self.attach()

    def attach(self):
        self.tel = T.Telemetry(self.st.cfg, self.st.sup, self.st.now(), self.client)

    def run(self, ms, until=None):
        st = self.st
        end = st.plant.now + ms
        while st.plant.now < end:
            w = min(st.tick(), self.tel.poll(st.now()))
            if until is not None and until():
                return True
            st.plant.advance(max(1, min(w, 1000, end - st.plant.now)))
        return False

    def swaps(self, n):
        self.st.start()
        for k in range(n):
            self.st.vehicle(vid=7001 + k, pack_id=555 + k, soc=12.0)
            assert self.run(400000, lambda want=k + 1: self.done() >= want)

    def done(self):
        b = self.st.sup.bay
        return b.swaps_ok + b.swaps_other

    def reboot(self):
        self.st.reboot()
        self.attach()

    def command(self, ctr, cmd, key=KEY):
        from firmware.proto.hmac256 import unhex

        mac = T.sign(unhex(key), SID, ctr, cmd)
        body = json.dumps({"ctr": ctr, "cmd": cmd, "mac": mac}).encode()
        self.client.on_message(f"swapstation/{SID}/cmd", body)
        self.run(100)
        return self.client.sent("result")[-1]


def test_swaps_go_out_in_order_one_at_a_time_and_the_cursor_is_journalled():
    r = Rig()
    r.swaps(2)
    r.run(2000)
    sw = r.client.sent("swaps")
    assert [s["n"] for s in sw] == [1]  # the second waits for the first one's PUBACK
    r.client.ack_all()
    r.run(2000)
    sw = r.client.sent("swaps")
    assert [s["n"] for s in sw] == [1, 2]
    assert sw[0]["station"] == SID and sw[0]["o"] == "ok" and sw[0]["v"] == "7001" and sw[0]["po"] == 555
    journal = r.st.storage.records("SW")
    assert sw[0]["seq"] < sw[1]["seq"] and [j["n"] for j in journal] == [1, 2]
    assert sw[0]["e"] == journal[0]["e"] and sw[1]["pi"] == journal[1]["pi"]
    r.client.ack_all()
    r.run(1000)
    assert r.st.sup.exported_seq() == sw[1]["seq"]  # EX: the cursor on flash
    assert r.st.storage.records("EX")[-1]["q"] == sw[1]["seq"]


def test_records_made_offline_and_one_unacknowledged_at_a_power_cut_go_out_after_reboot():
    r = Rig()
    r.client.lose()
    r.swaps(2)
    assert r.client.sent("swaps") == []
    r.client.connected = True
    r.run(1000)
    assert [s["n"] for s in r.client.sent("swaps")] == [1]
    r.reboot()  # power cut before its PUBACK: not exported
    r.client.out = []
    r.client.inflight = {}
    r.run(1000)
    assert [s["n"] for s in r.client.sent("swaps")] == [1]  # sent again: the backend keeps it once
    r.client.ack_all()
    r.run(1000)
    r.client.ack_all()
    r.run(1000)
    assert [s["n"] for s in r.client.sent("swaps")] == [1, 2]
    r.reboot()
    r.client.out = []
    r.run(2000)
    assert r.client.sent("swaps") == []  # all acknowledged before this boot


def test_status_is_retained_and_published_on_change():
    r = Rig()
    r.run(3000)
    st = [(t, p, q, ret) for t, p, q, ret, i in r.client.out if t.endswith("/status")]
    assert st and all(ret for _, _, _, ret in st)
    doc = json.loads(st[-1][1])
    assert doc["online"] is True and doc["rack"]["ready"] + doc["rack"]["charging"] >= 1
    assert "grid_kw" in doc and "-1:boot" in doc["alarms"]
    n = len(st)
    r.run(3000)  # nothing changed: no new status before status_every_s
    assert len([1 for t, *_ in r.client.out if t.endswith("/status")]) in (n, n + 1)
    r.st.start()
    r.run(2000)
    doc = r.client.sent("status")[-1]
    assert doc["state"] == "run" and "-1:boot" not in doc["alarms"]
    al = r.client.sent("alarms")
    assert {"slot": -1, "code": "boot", "on": False, "detail": None} in al


def test_maintenance_command_runs_and_leaving_it_needs_a_local_confirm():
    r = Rig()
    r.st.start()
    r.run(1000)
    res = r.command(1, "maintenance on")
    assert res == {"ctr": 1, "cmd": "maintenance on", "result": "ok", "why": None}
    assert r.st.sup.state() == "manual"
    res = r.command(2, "maintenance off")
    assert res["result"] == "ok"
    assert r.st.sup.state() == "hold"  # no motion until someone at the station confirms
    res = r.command(3, "status")
    assert res["result"] == "ok" and res["status"]["state"] == "hold"


def test_unknown_commands_say_what_there_is():
    r = Rig()
    assert T.UNSUPPORTED == {}  # every command of the platform's list is carried out
    for i, cmd in enumerate(("start_swap", "estop off", "tariff", "ack")):
        res = r.command(50 + i, cmd)
        assert res["result"] == "unknown" and res["why"] == T.HELP, res


def test_forged_command_is_refused_and_alarmed():
    r = Rig()
    r.st.start()
    res = r.command(5, "maintenance on", key="5a" * 32)
    assert res["result"] == "rejected" and res["why"] == "bad MAC"
    assert r.st.sup.state() == "run" and "-1:cmd_bad_mac" in r.st.sup.alarms
    assert r.st.sup.command_counter() == 0
    assert any(a["code"] == "cmd_bad_mac" and a["on"] for a in r.client.sent("alarms"))


def test_replayed_counter_is_refused_also_after_a_reboot():
    r = Rig()
    r.st.start()
    assert r.command(7, "status")["result"] == "ok"
    res = r.command(7, "maintenance on")
    assert res["result"] == "rejected" and "not above 7" in res["why"]
    assert "-1:cmd_replay" in r.st.sup.alarms and r.st.sup.state() == "run"
    r.reboot()
    r.run(20000, lambda: r.st.sup.state() == "hold")
    assert r.st.sup.command_counter() == 7
    res = r.command(6, "maintenance on")
    assert res["result"] == "rejected" and r.st.sup.state() == "hold"
    r.st.sup.journal.compact()  # the counter is in the checkpoint too
    r.reboot()
    assert r.st.sup.command_counter() == 7
    assert r.command(8, "maintenance on")["result"] == "ok"


def test_malformed_command_is_rejected_without_effect():
    r = Rig()
    for body in (b"not json", b"[1]", b'{"ctr":"1","cmd":"status","mac":"00"}', b'{"ctr":1,"cmd":"status"}'):
        r.client.on_message(f"swapstation/{SID}/cmd", body)
        r.run(100)
        assert r.client.sent("result")[-1]["result"] == "rejected"
    assert r.st.sup.command_counter() == 0


def test_mqtt_config_errors_name_the_field():
    from bayrig import station_cfg

    base = station_cfg()
    cases = (
        ({"key": KEY}, "mqtt.host: missing"),
        ({"host": "h", "key": "zz" * 32}, "mqtt.key: not a hex digit at position 0"),
        ({"host": "h", "key": "a" * 65}, "mqtt.key: an even number of hex digits"),
        ({"host": "h", "key": "ab"}, "mqtt.key: length must be 64..128"),
        ({"host": "h", "key": KEY, "port": 0}, "mqtt.port: must be >= 1"),
        ({"host": "h", "key": KEY, "password": "p"}, "mqtt.password: needs mqtt.user"),
        ({"host": "h", "key": KEY, "backoff_min_ms": 5000, "backoff_max_ms": 1000},
         "mqtt.backoff_max_ms: must not be below"),
        ({"host": "h", "key": KEY, "qos": 2}, "mqtt.qos: unknown field"),
    )
    for mq, want in cases:
        raw = dict(base)
        raw["mqtt"] = mq
        try:
            validate(raw)
        except ConfigError as e:
            assert str(e).startswith(want), (str(e), want)
            continue
        raise AssertionError(want)
    raw = dict(base)
    raw["mqtt"] = {"host": "h", "key": KEY}
    out = validate(raw)
    assert out["mqtt"]["port"] == 1883 and out["mqtt"]["keepalive_s"] == 60
    assert validate(out) == out
    assert base["mqtt"] is None  # no mqtt section: no network side


def test_malformed_and_oversized_packets_drop_the_link_and_the_station_swaps_on():
    from fakebroker import Peer, listen

    from firmware.proto import mqtt as M
    from firmware.proto.mqtt import MQTTClient

    server, port = listen()
    st = Station(n_slots=6, mutate=_mqtt)
    client = MQTTClient(SID, "127.0.0.1", port, keepalive_s=3600, backoff_min_ms=100, backoff_max_ms=100,
                        now_ms=st.now())
    tel = T.Telemetry(st.cfg, st.sup, st.now(), client)

    def pump():
        w = min(st.tick(), tel.poll(st.now()))
        st.plant.advance(max(1, min(w, 200)))

    def session():
        for _ in range(100):
            pump()
            if client.state != M.DOWN:  # connecting: accept() finds it
                break
        p = Peer(server, pump)
        assert p.packet()[0] == 0x10
        p.send(b"\x20\x02\x00\x00")
        assert p.packet()[0] == 0x82
        return p

    p = session()
    st.start()
    p.send(b"\x30\xff\xff\xff\xff\x01")  # a remaining length of five bytes
    assert p.closed() and "malformed" in client.last_error
    p.close()
    p = session()
    st.vehicle()
    for _ in range(20000):
        pump()
        if st.sup.bay.swaps_ok:
            break
    assert st.sup.bay.swaps_ok == 1  # the station swaps on after the drop and the reconnect
    p.send(b"\x30\x81\x40")  # a PUBLISH of 8193 bytes announced: over max_packet
    assert p.closed() and "max_packet" in client.last_error
    p.close()
    p = session()
    assert client.drops == 2 and client.connects == 3 and st.sup.alive and st.sup.state() == "run"
    p.close()
    server.close()


def test_blank_command_is_unknown_and_a_handler_error_does_not_stop_the_client():
    r = Rig()
    assert r.command(1, "   ")["result"] == "unknown"
    from firmware.proto import mqtt as M

    c = M.MQTTClient(SID, "127.0.0.1", 1, on_message=lambda t, p: 1 // 0)
    c.state = M.UP
    c._rx[:8] = b"\x30\x06\x00\x01tabc"  # a whole PUBLISH already in the receive buffer
    c._rn = 8
    c._parse(0)
    assert c.handler_errors == 1 and c.state == M.UP and c._rn == 0


def test_main_makes_telemetry_only_with_an_mqtt_section():
    from firmware.main import make_telemetry

    st = Station(n_slots=6)
    assert make_telemetry(st.cfg, st.sup, 0) is None
    st = Station(n_slots=6, mutate=_mqtt)
    tel = make_telemetry(st.cfg, st.sup, 0)
    assert tel.client.client_id == SID and tel.client.addr == ("127.0.0.1", 1883)
    assert tel.client.subs == [(f"swapstation/{SID}/cmd", 1)]


def test_a_power_cut_tearing_the_cursor_write_sends_that_record_again_after_reboot():
    r = Rig()
    r.swaps(1)
    r.run(1000)
    [sw] = r.client.sent("swaps")
    r.st.storage.cut_after(0)  # the EX write the PUBACK brings is torn by a power cut
    r.client.ack_all()
    assert r.st.sup.exported_seq() < sw["seq"]
    r.st.storage.power_on()
    r.reboot()
    r.client.out = []
    r.client.inflight = {}
    r.run(1000)
    assert r.client.sent("swaps") == [sw]  # the same record again: the backend keeps one
    r.client.ack_all()
    r.run(1000)
    assert r.st.sup.exported_seq() == sw["seq"]


def test_a_command_whose_counter_cannot_be_journalled_does_not_act():
    r = Rig()
    r.st.start()
    r.st.storage.cut_after(0)
    res = r.command(3, "maintenance on")
    assert res["result"] == "rejected" and "journal" in res["why"]
    assert r.st.sup.state() == "run"


def test_grid_cap_lowers_the_charging_power_until_the_next_boot():
    r = Rig()
    r.st.start()
    r.st.plant.slots[0].soc = 20.0  # something to charge
    r.st.plant.slots[1].soc = 20.0
    r.run(20000)
    top = r.st.cfg["limits"]["grid_kw"]
    for i, bad in enumerate(("0", str(top + 1), "abc", "nan")):
        res = r.command(1 + i, "grid_cap " + bad)
        assert res["result"] == "refused" and str(top) in res["why"], res
    assert r.command(10, "grid_cap 30")["result"] == "ok"
    r.run(20000)
    assert r.st.sup.grid_kw() <= 30.0 and sum(c.power_kw for c in r.st.plant.chargers) <= 30.5
    assert [x["a"] for x in r.st.storage.records("OP")][-1] == "grid_cap"
    r.reboot()
    assert r.st.sup.dispatch.grid_dkw == round(top * 10)  # the config's again


def test_slot_out_and_back_stop_charging_there_and_move_nothing():
    r = Rig()
    r.st.start()
    r.st.plant.slots[2].soc = 20.0
    r.run(20000)
    sup, rk = r.st.sup, r.st.sup.rack
    slot = rk.ids[2]
    assert r.st.plant.chargers[2].power_kw > 0
    assert r.command(1, "slot_out " + slot)["result"] == "ok"
    r.run(60000)
    assert rk.reason[2] == "out of service" and r.st.plant.chargers[2].power_kw == 0.0
    assert r.st.plant.slots[2] is not None and sup.bay.swap is None  # no isolation move
    assert r.st.storage.records("IS") == []
    assert r.command(2, "slot_out " + slot)["result"] == "refused"  # already out
    assert r.command(3, "slot_out S99")["why"] == "no slot S99"
    doc = r.command(4, "status")["status"]
    assert doc["rack"]["quarantined"] == 1
    assert r.command(5, "slot_back " + slot)["result"] == "ok"
    r.run(20000)
    assert rk.reason[2] is None and r.st.plant.chargers[2].power_kw > 0
    assert r.command(6, "slot_back " + slot)["result"] == "refused"  # not out


def test_a_quarantined_pack_stays_put_but_a_thermal_alarm_there_still_isolates_it():
    r = Rig()
    r.st.start()
    r.run(5000)
    rk = r.st.sup.rack
    pack = r.st.plant.slots[3].id
    assert r.command(1, "quarantine 424242")["result"] == "refused"
    assert r.command(2, f"quarantine {pack}")["result"] == "ok"
    r.run(60000)
    assert rk.reason[3] == "pack quarantined" and r.st.plant.slots[3].id == pack
    assert r.st.storage.records("IS") == []
    # The pack then runs away: the station isolates it as ever, and the platform cannot
    # hand the slot back (a person clears it at the station).
    p = r.st.plant.slots[3]
    p.soc, p.runaway = 60.0, True
    assert r.run(120000, lambda: "3:runaway" in r.st.sup.alarms)
    assert r.run(240000, lambda: bool(r.st.plant.isolation) and r.st.sup.bay.swap is None)
    assert [q.id for q in r.st.plant.isolation] == [pack]
    assert r.command(3, "slot_back " + rk.ids[3])["result"] == "refused"


def test_tariff_sets_the_bands_prices_and_an_expensive_band_slows_charging():
    r = Rig()
    r.st.start()
    bands = r.st.sup.dispatch.bands
    n = len(bands)
    assert n == 6  # firmware/station.json's tou
    for i, bad in enumerate(("1 2", " ".join(["x"] * n), " ".join(["-1"] * n), " ".join(["20000"] * n))):
        res = r.command(1 + i, "tariff " + bad)
        assert res["result"] == "refused" and "6 bands" in res["why"], res
    assert r.st.sup.dispatch.bands == bands
    prices = ["2.5"] * n  # every band above tou.expensive_above (1.0): expensive all day
    assert r.command(10, "tariff " + " ".join(prices))["result"] == "ok"
    assert [b[2] for b in r.st.sup.dispatch.bands] == [2.5] * n
    assert [b[:2] for b in r.st.sup.dispatch.bands] == [b[:2] for b in bands]  # the times stay
    assert r.st.sup.dispatch.price_at(0) == 2.5
    r.reboot()
    assert r.st.sup.dispatch.bands == bands  # the config's again


def test_ack_clears_a_record_alarm_and_never_a_latch():
    r = Rig()
    r.st.start()
    r.command(5, "status", key="5a" * 32)  # forged: raises cmd_bad_mac
    assert "-1:cmd_bad_mac" in r.st.sup.alarms
    r.st.estop_pin.value(0)  # the e-stop chain opens
    r.run(2000)
    assert r.st.sup.state() == "hold"
    r.st.estop_pin.value(1)
    r.run(2000)
    res = r.command(6, "ack estop")
    assert res["result"] == "refused" and "at the station" in res["why"]
    assert r.command(7, "ack -1:cmd_bad_mac")["result"] == "ok"
    assert "-1:cmd_bad_mac" not in r.st.sup.alarms
    assert r.command(8, "ack cmd_bad_mac")["result"] == "refused"  # not active any more
    assert r.st.sup.state() == "hold"  # the e-stop latch waits for the person at the station
    assert [x["a"] for x in r.st.storage.records("OP")][-1] == "ack_record_alarm"
