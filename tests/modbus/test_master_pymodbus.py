"""The firmware's RTU master, on MicroPython and on CPython, against pymodbus 3.16 over
a paced pseudo-terminal line serving three chargers and a bay I/O module: the rig's
shared field devices, so every value read is checked against the device's own."""

from __future__ import annotations

import time

from firmware.proto import modbus_rtu as mb
from firmware.proto import regmap as rm

from .conftest import BAY, run_fw

# Room for a loaded machine (load 6 and more while other jobs run): the good replies must beat it.
# What must not wait for the timeout is checked against a fraction of it.
FAST = {"timeout_ms": 1000, "retries": 1}


def test_every_function_code_reads_and_writes(field, fw_interpreter):
    control = [1, 1500, 4200, 600, 900, 7]
    ops = [
        ["read", 1, mb.FC_READ_INPUT_REGISTERS, rm.CHG_STATUS_BASE, rm.CHG_STATUS_COUNT],
        ["read", 2, mb.FC_READ_INPUT_REGISTERS, rm.CHG_INFO_BASE, rm.CHG_INFO_COUNT],
        ["write", 3, mb.FC_WRITE_MULTIPLE_REGISTERS, rm.CHG_CONTROL_BASE, control],
        ["write", 3, mb.FC_WRITE_SINGLE_REGISTER, rm.CHG_HR_WATCHDOG_MS, 2500],
        ["read", 3, mb.FC_READ_HOLDING_REGISTERS, 0, rm.CHG_HOLDING_COUNT],
        ["write", BAY, mb.FC_WRITE_SINGLE_COIL, rm.BAY_CO_BEACON_AMBER, 1],
        # beacons and ventilation: coils that start no motion in the bay model
        ["write", BAY, mb.FC_WRITE_MULTIPLE_COILS, rm.BAY_CO_BEACON_GREEN, [1, 0, 1, 1]],
        ["read", BAY, mb.FC_READ_COILS, 0, rm.BAY_COIL_COUNT],
        ["read", BAY, mb.FC_READ_DISCRETE_INPUTS, 0, rm.BAY_DI_COUNT],
        ["read", BAY, mb.FC_READ_INPUT_REGISTERS, 0, rm.BAY_IR_COUNT],
    ]
    out = run_fw(fw_interpreter, field.line.master_path, {"config": dict(FAST), "ops": ops})
    r = out["results"]
    assert all(x["ok"] and x["attempts"] == 1 for x in r), repr(out["health"])
    status = field.read(1, mb.FC_READ_INPUT_REGISTERS, rm.CHG_STATUS_BASE, rm.CHG_STATUS_COUNT)
    assert r[0]["values"] == status and status[rm.CHG_IR_PACK_PRESENT] == 1
    info = r[1]["values"]
    assert info == field.read(2, mb.FC_READ_INPUT_REGISTERS, rm.CHG_INFO_BASE, rm.CHG_INFO_COUNT)
    assert info[0] == rm.CHG_MODEL_CODE and info[2] > 0  # model and rated power
    assert r[4]["values"][: rm.CHG_CONTROL_COUNT] == control and r[4]["values"][rm.CHG_HR_WATCHDOG_MS] == 2500
    assert (16, 0, control) in field.writes(3)
    coils = r[7]["values"]
    assert coils[rm.BAY_CO_BEACON_GREEN: rm.BAY_CO_VENTILATION + 1] == [1, 0, 1, 1]
    assert not any(coils[: rm.BAY_CO_BEACON_GREEN])
    inputs = r[8]["values"]
    assert len(inputs) == 64 and inputs[rm.BAY_DI_ESTOP_OK] == 1
    assert inputs == field.read(BAY, mb.FC_READ_DISCRETE_INPUTS, 0, rm.BAY_DI_COUNT)
    ir = r[9]["values"]
    assert len(ir) == rm.BAY_IR_COUNT
    assert ir == field.read(BAY, mb.FC_READ_INPUT_REGISTERS, 0, rm.BAY_IR_COUNT)
    for unit in ("1", "2", "3", str(BAY)):
        h = out["health"][unit]
        assert h["online"] and h["timeouts"] == h["crc"] == h["frame"] == 0
    assert out["stray_frames"] == 0 and out["stray_bytes"] == 0


def test_each_exception_code_from_pymodbus(field, fw_interpreter):
    field.server.force_exception.update({2: 4, 3: 5, BAY: 6})  # device failure, acknowledge, busy
    ops = [
        ["read", 1, mb.FC_READ_COILS, 0, 1],  # chargers have no coils: 01
        ["read", 1, mb.FC_READ_INPUT_REGISTERS, 20, 1],  # unmapped: 02
        ["write", 1, mb.FC_WRITE_SINGLE_REGISTER, rm.CHG_HR_ENABLE, 5],  # enable is 0/1: 03
        ["read", 2, mb.FC_READ_INPUT_REGISTERS, 0, 4],
        ["write", 3, mb.FC_WRITE_MULTIPLE_REGISTERS, 0, [0, 0]],
        ["read", BAY, mb.FC_READ_DISCRETE_INPUTS, 0, 8],
    ]
    out = run_fw(fw_interpreter, field.line.master_path, {"config": dict(FAST, retries=2), "ops": ops})
    codes = [(x["err"], x["exc"], x["attempts"], x["values"]) for x in out["results"]]
    assert codes == [("exception", c, 1, []) for c in (1, 2, 3, 4, 5, 6)]
    assert out["health"]["1"]["exceptions"] == 3 and out["health"]["1"]["online"]
    assert all(h["failing"] == 0 for h in out["health"].values())


def test_silent_device_times_out_and_exposes_nothing(field, fw_interpreter):
    ops = [["read", 9, mb.FC_READ_INPUT_REGISTERS, 0, 16], ["read", 1, mb.FC_READ_INPUT_REGISTERS, 0, 2]]
    cfg = {"timeout_ms": 40, "retries": 1, "offline_after": 3}
    out = run_fw(fw_interpreter, field.line.master_path, {"config": cfg, "ops": ops})
    silent, other = out["results"]
    assert silent["err"] == "timeout" and silent["values"] == [] and silent["attempts"] == 2
    assert silent["ms"] >= 80
    assert other["ok"]
    assert out["health"]["9"] == {"online": True, "good": 0, "timeouts": 2, "crc": 0, "frame": 0,
                                  "exceptions": 0, "failing": 1}


def test_corrupted_crc_is_retried_then_reported(field, fw_interpreter):
    field.line.inject("bitflip", unit=1, pos=5, bit=2)
    ops = [["read", 1, mb.FC_READ_INPUT_REGISTERS, 0, 4], ["read", 2, mb.FC_READ_INPUT_REGISTERS, 0, 4]]
    out = run_fw(fw_interpreter, field.line.master_path, {"config": dict(FAST), "ops": ops})
    first = out["results"][0]
    assert first["ok"] and first["attempts"] == 2
    assert first["values"] == field.read(1, mb.FC_READ_INPUT_REGISTERS, 0, 4)
    assert out["health"]["1"]["crc"] == 1
    field.line.inject("bitflip", unit=2, count=2)
    out = run_fw(fw_interpreter, field.line.master_path, {"config": dict(FAST), "ops": ops[1:]})
    bad = out["results"][0]
    assert bad["err"] == "crc" and bad["values"] == [] and out["health"]["2"]["crc"] == 2, out


def test_truncated_frame_is_a_frame_error(field, fw_interpreter):
    field.line.inject("truncate", unit=3, keep=9)
    ops = [["read", 3, mb.FC_READ_INPUT_REGISTERS, 0, 16], ["read", 3, mb.FC_READ_INPUT_REGISTERS, 0, 16]]
    out = run_fw(fw_interpreter, field.line.master_path, {"config": dict(FAST, retries=0), "ops": ops})
    cut, whole = out["results"]
    # Judged at the frame's end, not at the timeout.
    assert cut["err"] == "frame" and cut["values"] == [] and cut["ms"] < FAST["timeout_ms"] / 2
    assert whole["ok"] and out["health"]["3"]["frame"] == 1


def test_garbage_before_a_frame_is_skipped(field, fw_interpreter):
    field.line.inject("garbage", unit=1, n=5)  # same burst as the reply
    field.line.inject("garbage", unit=2, n=3, gap_s=0.012)  # a frame of its own, then the reply
    ops = [["read", 1, mb.FC_READ_INPUT_REGISTERS, 0, 3], ["read", 2, mb.FC_READ_INPUT_REGISTERS, 0, 3]]
    out = run_fw(fw_interpreter, field.line.master_path, {"config": dict(FAST), "ops": ops})
    a, b = out["results"]
    assert a["ok"] and a["attempts"] == 1 and a["values"] == field.read(1, mb.FC_READ_INPUT_REGISTERS, 0, 3)
    assert b["ok"] and b["attempts"] == 1 and b["values"] == field.read(2, mb.FC_READ_INPUT_REGISTERS, 0, 3)
    assert out["stray_bytes"] + 2 * out["stray_frames"] >= 5
    assert field.line.armed() == 0


def test_broadcast_write_reaches_every_unit_and_waits_turnaround(field, fw_interpreter):
    ops = [
        ["write", 0, mb.FC_WRITE_SINGLE_REGISTER, rm.CHG_HR_TARGET_SOC, 850],
        ["read", 1, mb.FC_READ_HOLDING_REGISTERS, rm.CHG_HR_TARGET_SOC, 1],
        ["read", 2, mb.FC_READ_HOLDING_REGISTERS, rm.CHG_HR_TARGET_SOC, 1],
        ["read", 3, mb.FC_READ_HOLDING_REGISTERS, rm.CHG_HR_TARGET_SOC, 1],
        ["write", 0, mb.FC_WRITE_SINGLE_REGISTER, rm.CHG_HR_TARGET_SOC, 900],
        ["idle", 150],
    ]
    t0 = field.line.now()
    spec = {"config": dict(FAST, turnaround_ms=100), "ops": ops}
    out = run_fw(fw_interpreter, field.line.master_path, spec)
    r = out["results"]
    assert r[0]["ok"] and r[0]["values"] == [] and r[0]["ms"] < FAST["timeout_ms"] / 2  # no reply awaited
    assert [x["values"] for x in r[1:4]] == [[850], [850], [850]]
    assert r[4]["ok"] and "0" not in out["health"]
    frames = field.line.frames_since(t0)
    bcast = next(f for f in frames if f.unit == 0)
    after = next(f for f in frames if f.t > bcast.t and f.direction == "request")
    # Line timestamps carry the line thread's wake-up jitter; exact turnaround is unit-tested.
    assert after.t - bcast.t >= 0.1 - 0.005
    assert not any(f.direction == "reply" and f.unit == 0 for f in frames)


def test_device_goes_offline_and_comes_back(field, fw_interpreter):
    field.line.silence(2)
    read = ["read", 2, mb.FC_READ_INPUT_REGISTERS, 0, 2]
    # The probe interval outlasts the pause (host time, long on a loaded machine), so the read
    # right after it is still refused offline; the idle then outlasts the probe interval.
    ops = [read, read, read, ["pause", "restore"], read, ["idle", 1600], read, read]
    cfg = dict(FAST, offline_after=2, probe_interval_ms=1500)
    requests_to_2 = []
    t0 = field.line.now()

    def restore(label):
        def seen():
            return sum(1 for f in field.line.frames_since(t0) if f.unit == 2)

        # The line's thread records frames after the master sent them: let it catch up.
        deadline = time.monotonic() + 3
        while seen() < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        requests_to_2.append(seen())
        field.line.restore(2)

    out = run_fw(fw_interpreter, field.line.master_path, {"config": cfg, "ops": ops}, on_pause=restore)
    r = [x for x in out["results"] if x is not None]
    assert [x["err"] for x in r] == ["timeout", "timeout", "offline", "offline", "ok", "ok"]
    assert r[2]["ms"] < FAST["timeout_ms"] / 4 and r[2]["values"] == [] and r[2]["attempts"] == 0
    assert requests_to_2 == [4]  # 2 transactions x 2 attempts; the offline one never went out
    assert out["logs"] == ["unit 2 offline after 2 failed requests (last: timeout)", "unit 2 back online"]
    h = out["health"]["2"]
    assert h["online"] and h["good"] == 2 and h["timeouts"] == 4 and h["failing"] == 0


def test_serial_driver_refuses_bad_ports(field, fw_interpreter, tmp_path):
    plain = tmp_path / "not-a-tty"
    plain.write_text("x")
    ops = [
        ["port_error", "/nonexistent/ttyX", 115200, "N"],
        ["port_error", field.line.master_path, 12345, "N"],
        ["port_error", field.line.master_path, 9600, "Q"],
        ["port_error", str(plain), 9600, "E"],
        ["read", 1, mb.FC_READ_INPUT_REGISTERS, 0, 1],
    ]
    out = run_fw(fw_interpreter, field.line.master_path, {"config": dict(FAST), "ops": ops})
    r = out["results"]
    assert r[0]["error"] == "OSError" and "cannot open serial port /nonexistent/ttyX" in r[0]["message"]
    assert r[1]["error"] == "ValueError" and "unsupported baud rate 12345" in r[1]["message"]
    assert r[2]["error"] == "ValueError" and "parity 'Q'" in r[2]["message"]
    assert r[3]["error"] == "OSError" and "not a tty" in r[3]["message"]
    assert r[4]["ok"]  # the port in use was not disturbed


def test_bad_requests_are_refused_on_the_controller(field, fw_interpreter):
    ops = [
        ["read", 1, mb.FC_READ_HOLDING_REGISTERS, 0, 126],
        ["write", 1, mb.FC_WRITE_MULTIPLE_REGISTERS, 0, list(range(124))],
        ["write", 1, mb.FC_WRITE_MULTIPLE_COILS, 0, [0] * 1969],
        ["read", 1, mb.FC_READ_COILS, 0, 2001],
        ["read", 1, mb.FC_READ_INPUT_REGISTERS, 0, 1],
    ]
    t0 = field.line.now()
    out = run_fw(fw_interpreter, field.line.master_path, {"config": dict(FAST), "ops": ops})
    r = out["results"]
    assert ["1..125" in r[0]["refused"], "1..123" in r[1]["refused"], "1..1968" in r[2]["refused"],
            "1..2000" in r[3]["refused"]] == [True] * 4
    assert r[4]["ok"]
    # The master has the reply before the line closes its frame (a t3.5 silence later).
    assert field.line.wait_frames(2, timeout=5, since=t0)
    assert [f.direction for f in field.line.frames_since(t0)] == ["request", "reply"]  # only the good one
