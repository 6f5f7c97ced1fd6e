"""The emulated field devices, frame by frame over ptys: chargers over the plant, the bay
I/O module over the bay mechanics, silence where a real line is silent, resync after a
torn frame."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from firmware.core import config
from firmware.proto import regmap as rm
from hil.emulators.field import Field, default_packs
from host.plant.bay import scaled_timing
from host.plant.charging import PackRecord

from .ptyio import PtyMaster, read_bits, read_regs, write_coils, write_regs

CFG = config.load()
BAY = int(CFG["buses"]["bay_io"]["unit"])


@pytest.fixture
def lines() -> Iterator[tuple[PtyMaster, PtyMaster]]:
    c, b = PtyMaster(), PtyMaster()
    yield c, b
    c.close()
    b.close()


def make_field(lines: tuple[PtyMaster, PtyMaster], **kw: object) -> Field:
    f = Field(CFG, charger_port=lines[0].path, bay_port=lines[1].path, **kw)  # type: ignore[arg-type]
    f.start()
    return f


def test_charger_status_block_is_the_plant_pack(lines: tuple[PtyMaster, PtyMaster]) -> None:
    f = make_field(lines)
    try:
        regs = read_regs(lines[0], 3, 4, rm.CHG_STATUS_BASE, rm.CHG_STATUS_COUNT)
        assert regs[rm.CHG_IR_PACK_PRESENT] == 1
        assert rm.u32(regs[rm.CHG_IR_PACK_ID_HI], regs[rm.CHG_IR_PACK_ID_LO]) == default_packs(CFG)[2].pack_id
        assert regs[rm.CHG_IR_PACK_TYPE] == rm.PACK_100
        assert regs[rm.CHG_IR_SOC] == 950
        assert regs[rm.CHG_IR_STATUS] in (rm.CHG_ST_READY, rm.CHG_ST_FULL)
        last = len(CFG["slots"])  # the free slot
        regs = read_regs(lines[0], last, 4, rm.CHG_STATUS_BASE, rm.CHG_STATUS_COUNT)
        assert regs[rm.CHG_IR_PACK_PRESENT] == 0 and regs[rm.CHG_IR_STATUS] == rm.CHG_ST_STANDBY
        info = read_regs(lines[0], 3, 4, rm.CHG_INFO_BASE, rm.CHG_INFO_COUNT)
        assert info[0] == rm.CHG_MODEL_CODE and info[rm.CHG_IR_PACK_CAPACITY - rm.CHG_INFO_BASE] == 1000
    finally:
        f.stop()


def test_charger_charges_as_time_passes(lines: tuple[PtyMaster, PtyMaster]) -> None:
    f = make_field(lines, packs={0: PackRecord(42, "NIO-75", 0.30)})
    try:
        soc0 = f.rack()[0]["soc"]
        r = write_regs(lines[0], 1, rm.CHG_CONTROL_BASE, [1, 1800, 4200, 625, 1000, 1])
        assert r[1] == 16, r.hex()
        end = time.monotonic() + 1.5
        hb = 1
        while time.monotonic() < end:  # keep the heartbeat alive as a controller would
            hb += 1
            write_regs(lines[0], 1, rm.CHG_HR_HEARTBEAT, [hb])
            time.sleep(0.1)
        regs = read_regs(lines[0], 1, 4, rm.CHG_STATUS_BASE, rm.CHG_STATUS_COUNT)
        assert regs[rm.CHG_IR_STATUS] in (rm.CHG_ST_CHARGING, rm.CHG_ST_DERATED)
        assert rm.s16(regs[rm.CHG_IR_CURRENT]) > 100  # ramping at 20 A/s: above 10 A by now
        assert rm.s16(regs[rm.CHG_IR_POWER]) > 0
        assert f.rack()[0]["soc"] > soc0
    finally:
        f.stop()


def test_exceptions_and_silence_as_on_a_real_line(lines: tuple[PtyMaster, PtyMaster]) -> None:
    m = lines[0]
    f = make_field(lines)
    try:
        assert m.txn(bytes([1, 4, 0, 16, 0, 2]))[1:3] == bytes([0x84, 2])  # unmapped input register
        assert m.txn(bytes([1, 6, 0, 0, 0, 5]))[1:3] == bytes([0x86, 3])  # enable = 5: out of range
        assert m.txn(bytes([1, 1, 0, 0, 0, 1]))[1:3] == bytes([0x81, 1])  # chargers have no coils
        assert m.txn(bytes([99, 4, 0, 0, 0, 16]), timeout=0.2) == b""  # nobody at unit 99
        f.inject(0, "dropout")
        assert m.txn(bytes([1, 4, 0, 0, 0, 16]), timeout=0.2) == b""
        f.clear(0, "dropout")
        assert len(m.txn(bytes([1, 4, 0, 0, 0, 16]))) == 37
        silent = [r for r in f.lines["chargers"].log.snapshot() if r.silent]
        assert [(r.unit, r.fc) for r in silent] == [(1, 4)]
        assert f.lines["chargers"].foreign == 1
    finally:
        f.stop()


def test_fc06_reply_echoes_the_request(lines: tuple[PtyMaster, PtyMaster]) -> None:
    f = make_field(lines)
    try:
        req = bytes([2, 6, 0, rm.CHG_HR_FAULT_RESET, 0, 1])
        assert lines[0].txn(req)[:6] == req  # fault reset reads 0, but the echo is the request
        assert read_regs(lines[0], 2, 3, rm.CHG_HR_FAULT_RESET, 1) == [0]
    finally:
        f.stop()


def test_torn_frame_is_dropped_after_a_silence(lines: tuple[PtyMaster, PtyMaster]) -> None:
    m = lines[0]
    f = make_field(lines)
    try:
        good = bytes([1, 4, 0, 0, 0, 16])
        from host.devices.rtu import with_crc

        # Glued straight to a torn frame, a request is lost (no receiver timeout in between) ...
        m.send_raw(with_crc(good)[:5] + with_crc(good))
        assert m.recv(0.2) == b""
        # ... but after a gap longer than the resync time the receiver starts afresh.
        m.send_raw(with_crc(good)[:5])
        time.sleep(0.3)  # the emulator's thread must read the torn bytes before the next frame
        before = f.lines["chargers"].resyncs
        assert len(m.txn(good)) == 37
        assert f.lines["chargers"].resyncs == before + 1
    finally:
        f.stop()


def test_bay_vehicle_drives_in_and_is_identified(lines: tuple[PtyMaster, PtyMaster]) -> None:
    b = lines[1]
    f = make_field(lines)
    try:
        assert f.bay is not None
        di = read_bits(b, BAY, 2, 0, rm.BAY_DI_COUNT)
        assert di[rm.BAY_DI_ESTOP_OK] and di[rm.BAY_DI_LIFT_DOWN] and not di[rm.BAY_DI_VEHICLE_PRESENT]
        f.call(f.bay.vehicle_arrives, 4711, 1, PackRecord(777, "NIO-100", 0.15))
        coils = [0] * rm.BAY_COIL_COUNT
        coils[rm.BAY_CO_DOOR_OPEN] = 1
        assert write_coils(b, BAY, 0, coils)[1] == 15
        assert read_bits(b, BAY, 1, 0, rm.BAY_COIL_COUNT) == coils
        deadline = time.monotonic() + 5
        while not read_bits(b, BAY, 2, 0, 19)[rm.BAY_DI_VEHICLE_PRESENT]:
            assert time.monotonic() < deadline, "vehicle never drove in"
            time.sleep(0.05)
        time.sleep(3 * scaled_timing(0.03).identify_s)
        ir = read_regs(b, BAY, 4, 0, 8)
        assert ir[rm.BAY_IR_ID_STATUS] == rm.ID_VALID
        assert rm.u32(ir[rm.BAY_IR_VEHICLE_ID_HI], ir[rm.BAY_IR_VEHICLE_ID_LO]) == 4711
        assert rm.u32(ir[rm.BAY_IR_PACK_ID_HI], ir[rm.BAY_IR_PACK_ID_LO]) == 777
        f.call(f.bay.set_input, "estop_ok", False)
        assert read_bits(b, BAY, 2, 0, 19)[rm.BAY_DI_ESTOP_OK] == 0
        assert f.bay.errors == []
    finally:
        f.stop()


def test_bay_and_chargers_can_share_one_line(lines: tuple[PtyMaster, PtyMaster]) -> None:
    f = Field(CFG, charger_port=lines[0].path, bay_port=lines[0].path)
    f.start()
    try:
        assert list(f.lines) == ["chargers"]
        assert read_bits(lines[0], BAY, 2, rm.BAY_DI_ESTOP_OK, 1) == [1]
        assert len(read_regs(lines[0], 1, 4, 0, 16)) == 16
    finally:
        f.stop()
