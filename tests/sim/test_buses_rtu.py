"""Slave-side RTU codec of the wire bus, checked against pymodbus's independent client framing."""

import pytest
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadDiscreteInputsRequest,
    WriteMultipleCoilsRequest,
    WriteSingleCoilRequest,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

from firmware.drivers.mem import MemSerialPort
from firmware.proto.crc16 import crc16
from host.devices import codes, rtu
from host.sim import buses


class Table:
    """Dict-backed device: coils, discrete inputs, input and holding registers."""

    def __init__(self) -> None:
        self.coils = [0] * 16
        self.discrete = [(i * 7) & 1 for i in range(64)]
        self.inputs = [1000 + i for i in range(48)]
        self.holding = [0] * 8
        self.offline = False

    def _table(self, fc):
        return {
            1: self.coils,
            2: self.discrete,
            3: self.holding,
            4: self.inputs,
            5: self.coils,
            15: self.coils,
            6: self.holding,
            16: self.holding,
        }[fc]

    def read(self, fc, address, count):
        if self.offline:
            raise codes.NoReply
        t = self._table(fc)
        if address + count > len(t):
            raise codes.ModbusError(codes.EX_ILLEGAL_ADDRESS)
        return t[address : address + count]

    def write(self, fc, address, values):
        if self.offline:
            raise codes.NoReply
        t = self._table(fc)
        if address + len(values) > len(t):
            raise codes.ModbusError(codes.EX_ILLEGAL_ADDRESS)
        if fc in (6, 16) and any(v > 1000 for v in values):
            raise codes.ModbusError(codes.EX_ILLEGAL_VALUE)
        t[address : address + len(values)] = values


def roundtrip(line, request):
    """Encode with pymodbus, answer with RtuLine, decode the reply with pymodbus."""
    frame = FramerRTU(DecodePDU(False)).buildFrame(request)
    line.port.write(frame)
    assert line.take_request(0)
    line.deliver()
    buf = bytearray(300)
    n = line.port.readinto(buf)
    used, pdu = FramerRTU(DecodePDU(False)).handleFrame(bytes(buf[:n]), request.dev_id, 0)
    assert used == n and pdu is not None
    return pdu


@pytest.fixture
def line():
    dev = Table()
    return buses.RtuLine(MemSerialPort(115200), {7: dev})


def test_crc_matches_pymodbus():
    data = bytes(range(40))
    c = crc16(data)
    assert ((c & 0xFF) << 8 | c >> 8) == FramerRTU.compute_CRC(data)  # pymodbus keeps it in wire byte order
    assert crc16(rtu.with_crc(b"\x01\x03\x00\x00\x00\x0a")) == 0


def test_reads(line):
    dev = line.devices[7]
    assert (
        roundtrip(line, ReadInputRegistersRequest(address=2, count=10, dev_id=7)).registers
        == dev.inputs[2:12]
    )
    dev.holding[1] = 4321
    assert roundtrip(line, ReadHoldingRegistersRequest(address=0, count=3, dev_id=7)).registers == [
        0,
        4321,
        0,
    ]
    bits = roundtrip(line, ReadDiscreteInputsRequest(address=3, count=19, dev_id=7)).bits
    assert [int(b) for b in bits[:19]] == dev.discrete[3:22]
    dev.coils[9] = 1
    assert [int(b) for b in roundtrip(line, ReadCoilsRequest(address=8, count=3, dev_id=7)).bits[:3]] == [
        0,
        1,
        0,
    ]


def test_writes(line):
    dev = line.devices[7]
    roundtrip(line, WriteMultipleRegistersRequest(address=0, registers=[1, 100, 200, 300], dev_id=7))
    assert dev.holding[:4] == [1, 100, 200, 300]
    roundtrip(line, WriteSingleRegisterRequest(address=5, registers=[77], dev_id=7))
    assert dev.holding[5] == 77
    roundtrip(line, WriteMultipleCoilsRequest(address=2, bits=[True, False, True] + [True] * 8, dev_id=7))
    assert dev.coils[2:13] == [1, 0, 1] + [1] * 8
    roundtrip(line, WriteSingleCoilRequest(address=2, bits=[False], dev_id=7))
    assert dev.coils[2] == 0


def test_exceptions(line):
    r = roundtrip(line, ReadInputRegistersRequest(address=40, count=10, dev_id=7))
    assert r.function_code == 0x84 and r.exception_code == codes.EX_ILLEGAL_ADDRESS
    r = roundtrip(line, WriteSingleRegisterRequest(address=0, registers=[5000], dev_id=7))
    assert r.function_code == 0x86 and r.exception_code == codes.EX_ILLEGAL_VALUE
    assert line.devices[7].holding[0] == 0
    # unknown function code 0x2b
    line.port.write(rtu.with_crc(bytes((7, 0x2B, 0x0E, 1, 0))))
    assert line.take_request(0)
    line.deliver()
    buf = bytearray(16)
    n = line.port.readinto(buf)
    assert bytes(buf[:n]) == rtu.with_crc(bytes((7, 0xAB, codes.EX_ILLEGAL_FUNCTION)))


def test_pdu_limits():
    dev = Table()
    assert rtu.handle_pdu(dev, bytes((3, 0, 0, 0, 126))) == bytes((0x83, 3))  # > 125 registers
    assert rtu.handle_pdu(dev, bytes((3, 0, 0, 0, 0))) == bytes((0x83, 3))  # zero registers
    assert rtu.handle_pdu(dev, bytes((5, 0, 0, 0x12, 0x34))) == bytes((0x85, 3))  # coil value not 0/FF00
    # FC16 whose byte count disagrees with the register count
    assert rtu.handle_pdu(dev, bytes((16, 0, 0, 0, 2, 2, 0, 1))) == bytes((0x90, 3))


def test_silence_bad_crc_absent_unit_offline_and_broadcast(line):
    dev = line.devices[7]
    good = FramerRTU(DecodePDU(False)).buildFrame(ReadInputRegistersRequest(address=0, count=1, dev_id=7))
    line.port.write(good[:-1] + bytes((good[-1] ^ 1,)))
    assert not line.take_request(0) and line.bad_frames == 1
    line.port.write(
        FramerRTU(DecodePDU(False)).buildFrame(ReadInputRegistersRequest(address=0, count=1, dev_id=9))
    )
    assert not line.take_request(0) and line.unanswered == 1
    dev.offline = True
    line.port.write(good)
    assert not line.take_request(0) and line.unanswered == 2
    dev.offline = False
    line.port.write(rtu.with_crc(bytes((0, 6, 0, 3, 0, 42))))  # broadcast write: acted on, no reply
    assert not line.take_request(0)
    assert dev.holding[3] == 42


def test_reply_due_after_wire_time(line):
    frame = FramerRTU(DecodePDU(False)).buildFrame(ReadInputRegistersRequest(address=0, count=10, dev_id=7))
    line.port.write(frame)
    assert line.take_request(1_000_000)
    # 8-byte request + 25-byte reply at 115200 baud (96 us a character), two 1.75 ms gaps, 0.5 ms turnaround
    assert line.reply_due_us == 1_000_000 + 33 * 96 + 2 * 1750 + 500
