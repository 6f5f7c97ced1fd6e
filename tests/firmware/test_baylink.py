"""Bay link bookkeeping: which sensor readings count as fresh (seen by the outputs the
step commanded) when writes fail and are sent again, and across a controller restart."""

from plant import NoReply
from station import Station

from firmware.core import bay as B
from firmware.proto import regmap as rm

QEMU = True  # also run as test_x[qemu]: Cortex-M3, float32, 31-bit small ints, 128K heap

FC_WRITE_COILS = 15


def _started(**kw):
    s = Station(**kw)
    s.start()
    return s


def _fail_coil_writes(s, when, attempts):
    """The bay module does not answer the next ``attempts`` coil writes for which
    ``when(values)`` holds (a reply lost on the line); returns the list of failed images."""
    dev = s.plant.bay
    orig = dev.write
    failed = []

    def write(fc, address, values):
        if fc == FC_WRITE_COILS and len(failed) < attempts and when(values):
            failed.append(list(values))
            raise NoReply()
        return orig(fc, address, values)

    dev.write = write
    return failed


def test_a_coil_write_that_failed_and_was_sent_again_counts_once_acknowledged():
    # Every attempt of the lift step's first coil write goes unanswered: the link sends
    # the image again, the module takes it, and the step must judge the sensors that
    # follow. Nothing else changes the outputs while the lift travels, so a re-sent write
    # that is never counted leaves the step blind until its 24 s timeout.
    s = _started()
    retries = s.cfg["buses"]["bay_io"]["retries"]
    failed = _fail_coil_writes(s, lambda v: v[rm.BAY_CO_LIFT_UP] == 1, retries + 1)
    s.vehicle()
    assert s.until_step(B.LIFT)
    t0 = s.now()
    assert s.run(20000, until=lambda s: s.sup.bay.step != B.LIFT), s.sup.status()
    assert len(failed) == retries + 1
    assert s.sup.bay.plan == B.P_SWAP and s.sup.bay.step == B.UNBOLT, s.sup.status()
    assert s.since(t0) < 12000 + 3000, s.since(t0)  # the lift's travel and a few poll cycles
    assert s.until_swaps(1) and s.sup.bay.swaps_ok == 1


def test_a_sensor_read_sent_before_a_write_does_not_count_as_seeing_it():
    # The read goes on the bus, then the outputs change outside the link's own cycle (a
    # stop here; also the boot's first image, a write the full queue held back) and are
    # written behind it. Both answers are in by the next service: the read must still
    # count only for the outputs that were on the module when it was taken.
    s = _started()
    s.run(3000)
    sup = s.sup
    link = sup.baylink
    b = sup.bay
    assert not link.reading() and not link._writes
    now = s.now()
    link.poll_now(now)
    link.service(now, False)
    assert link.reading()
    before = b.gen
    b.estop_pin(0)
    assert b.gen != before
    link.write()
    sup.bay_bus.poll(now)
    assert link.finished()
    link.service(now, False)
    assert b.written == b.gen  # the write is acknowledged ...
    assert b.di_gen != b.gen, (b.di_gen, b.gen)  # ... but the read went before it
    link.poll_now(now)
    link.service(now, False)
    sup.bay_bus.poll(now)
    link.service(now, False)  # the next read follows the write
    assert b.di_gen == b.gen
