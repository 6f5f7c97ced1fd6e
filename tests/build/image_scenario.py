# A station scenario run from a built image under the MicroPython unix port:
#   micropython image_scenario.py IMAGE DATA   with MICROPYPATH=IMAGE:tests/firmware
# Every firmware module comes from the image's .mpy files. The board is a Pico with a
# fake `machine`; its two UARTs are bridged, frame by frame, to the test plant's chargers
# and bay I/O module (tests/firmware/plant.py). Time is virtual: the plant's clock.
# It boots, waits for the operator's confirmation, serves one vehicle and prints tagged
# results for tests/build/test_image_runs.py.
import sys

import fakemachine

IMAGE = sys.argv[1]
DATA = sys.argv[2]
board_driver = fakemachine.install()

import main  # noqa: E402  the image's main.py, as the board runs it
from plant import NoReply, Pack, Plant, SlaveError, Vehicle  # noqa: E402

from firmware.boards import board_config, image  # noqa: E402
from firmware.compat import ticks_add  # noqa: E402
from firmware.core import config  # noqa: E402
from firmware.drivers.vfs_storage import VfsStorage  # noqa: E402
from firmware.proto import regmap as rm  # noqa: E402
from firmware.proto.crc16 import append_crc, crc16  # noqa: E402
from firmware.proto.modbus_rtu import ModbusMaster  # noqa: E402

NIO_ES6 = 1  # model code of firmware/station.json
ROOT = IMAGE + "/"


def out(tag, *values):
    print("@@" + tag, *values)


class Line:
    """One fake UART's far end: answers each request frame from the plant's devices."""

    def __init__(self, uart, devices):
        self.uart = uart
        self.devices = devices
        self.frames = 0
        self.bad = 0

    def serve(self):
        req = bytes(self.uart.wire)
        if not req:
            return
        self.uart.wire = bytearray()
        self.uart.done = True  # the last stop bit has left
        if len(req) < 4 or crc16(req, 0, len(req) - 2) != req[-2] | (req[-1] << 8):
            self.bad += 1
            return
        self.frames += 1
        unit, fc = req[0], req[1]
        dev = self.devices.get(unit)
        if dev is None:
            return
        addr = (req[2] << 8) | req[3]
        try:
            if fc in (1, 2, 3, 4):
                count = (req[4] << 8) | req[5]
                vals = dev.read(fc, addr, count)
                if fc <= 2:
                    body = bytearray((count + 7) // 8)
                    for i in range(count):
                        if vals[i]:
                            body[i >> 3] |= 1 << (i & 7)
                else:
                    body = bytearray()
                    for v in vals:
                        body.append((v >> 8) & 0xFF)
                        body.append(v & 0xFF)
                reply = bytearray([unit, fc, len(body)]) + body
            elif fc in (5, 6):
                v = (req[4] << 8) | req[5]
                dev.write(fc, addr, [1 if (fc == 5 and v) else v] if fc == 6 else [1 if v else 0])
                reply = bytearray(req[:6])
            elif fc in (15, 16):
                count = (req[4] << 8) | req[5]
                data = req[7:-2]
                if fc == 16:
                    vals = [(data[2 * i] << 8) | data[2 * i + 1] for i in range(count)]
                else:
                    vals = [(data[i >> 3] >> (i & 7)) & 1 for i in range(count)]
                dev.write(fc, addr, vals)
                reply = bytearray(req[:6])
            else:
                raise SlaveError(1)
        except NoReply:
            return
        except SlaveError as e:
            reply = bytearray([unit, fc | 0x80, e.code])
        buf = bytearray(len(reply) + 2)
        buf[: len(reply)] = reply
        append_crc(buf, len(reply))
        self.uart.rx.extend(buf)


manifest = image.check(ROOT)
bcfg = board_config.load(ROOT + "board.json")
scfg = config.load(ROOT + "firmware/station.json")
plant = Plant(n_slots=len(scfg["slots"]), bolts=scfg["bay"]["bolt_count"])
plant.fill([Pack(1000 + k, rm.PACK_100, soc=95.0, bolts=plant.bolts) for k in range(len(scfg["slots"]) - 1)])
base = ticks_add(0, -90000)  # virtual ticks start near the wrap


def now_us():
    return (plant.now * 1000) & 0x3FFFFFFF


board = board_driver.open_board(bcfg, scfg, lambda root: VfsStorage(DATA), clock_us=now_us)
# The masters the supervisor would build, but on virtual microseconds for the line gaps.
masters = {}
for name in board.buses:
    c = scfg["buses"][name]
    masters[name] = ModbusMaster(board.buses[name], c["timeout_ms"], c["retries"], c["offline_after"],
                                 c["probe_interval_ms"], us_clock=now_us)
ports = board.buses
uart_of = {}
for o in fakemachine.created:
    if isinstance(o, fakemachine.UART):
        uart_of[o.id] = o
chargers = {}
for k, s in enumerate(scfg["slots"]):
    chargers[s["charger_unit"]] = plant.chargers[k]
lines = [
    Line(uart_of[bcfg["buses"]["chargers"]["uart"]], chargers),
    Line(uart_of[bcfg["buses"]["bay_io"]["uart"]], {scfg["buses"]["bay_io"]["unit"]: plant.bay}),
]
station = main.make_station(scfg, board, ticks_add(base, plant.now), masters=masters)


def clock():
    for line in lines:
        line.serve()
    t = ticks_add(base, plant.now)
    plant.advance(1)  # a tick takes about a millisecond on a board
    return t


def sleep(ms):
    for line in lines:
        line.serve()
    plant.advance(ms)


def run_until(cond, limit_ms):
    end = plant.now + limit_ms
    while plant.now < end:
        main.run(board, station, loops=50, clock=clock, sleep=sleep)
        if cond():
            return True
    return False


out("boot", manifest["image_sha256"])
out("hold", run_until(lambda: station.state() == "hold", 30000))
out("confirm", station.confirm())
vehicle = Vehicle(7001, NIO_ES6, Pack(555, rm.PACK_100, soc=12.0, bolts=plant.bolts))
plant.arrive(vehicle)
t0 = plant.now
out("swapped", run_until(lambda: station.bay.swaps_ok >= 1, 400000))
out("swap_s", (plant.now - t0) // 1000)
out("vehicle_pack", vehicle.pack.id)
out("departed", vehicle in plant.departed)
wdt = [o for o in fakemachine.created if isinstance(o, fakemachine.WDT)][0]
out("wdt_feeds", wdt.feeds)
de = [o for o in fakemachine.created if isinstance(o, fakemachine.Pin) and o.id in (2, 6)]
out("de_rises", [p.rises for p in de])
out("frames", [line.frames for line in lines], [line.bad for line in lines])
sw = 0
with open(DATA + "/journal.log") as f:
    for ln in f:  # line by line: the journal is larger than a small heap
        if ln.count(" ") >= 2 and ln.split(" ", 2)[1] == "SW":
            sw += 1
out("journal_sw", sw)
