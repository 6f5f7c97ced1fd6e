"""Block devices for ``vfs.VfsLfs2``: one in RAM, one backed by a file, and a switch in
front of a board's own, all with a power-cut switch.

They implement MicroPython's extended block protocol (``readblocks`` and
``writeblocks`` with a byte offset, ``ioctl`` 4/5/6 for count, size and erase), so
LittleFS runs on them as it does on a board's flash. The file-backed one keeps a
controller flash image across restarts (HIL rig, simulator).

Power cut: ``cut_after(k)`` lets ``k`` more program/erase operations complete. The
next one is torn: only the first half of its bytes reach the medium, then it raises
``OSError(EIO)``. Every operation after that, reads included, raises too, as on a
board with no power, until ``power_on()``. ``writes`` counts program and erase
operations, so a test can run a workload once and then cut it at every k.
``when``, a predicate, tears the first operation for which it holds instead (a HIL rig:
"the first write in this swap step"). ``on_cut(addr, n, erase)``, if set, is called
once the torn half of that n-byte operation has landed, before the error: a rig stops the
machine there, so nothing after the cut runs.
"""

from firmware.compat import const

_IOCTL_INIT = const(1)
_IOCTL_DEINIT = const(2)
_IOCTL_SYNC = const(3)
_IOCTL_BLOCK_COUNT = const(4)
_IOCTL_BLOCK_SIZE = const(5)
_IOCTL_BLOCK_ERASE = const(6)
_EIO = const(5)
_ERASED = const(0xFF)


class _CutBlockDev:
    def __init__(self, block_size, block_count):
        if block_size < 128 or block_size & (block_size - 1):
            raise ValueError("block_size must be a power of two >= 128")
        if block_count < 8:
            raise ValueError("block_count must be >= 8")
        self.block_size = block_size
        self.block_count = block_count
        self.writes = 0  # program + erase operations that reached the medium
        self._left = -1  # operations still allowed before the cut; -1: no cut armed
        self._dead = False
        self._retired = False
        self.when = None  # predicate: tear the first operation for which it holds
        self.on_cut = None  # called with the torn operation (the machine stops there)
        self._blank = memoryview(bytes([_ERASED]) * block_size)

    # -- power-cut switch
    def cut_after(self, k):
        if k < 0:
            raise ValueError("k must be >= 0")
        self._left = k

    def power_on(self):
        self._left = -1
        self._dead = False

    def retire(self):
        """After a simulated cut: the image was copied to a new device, and this one
        only absorbs the dead run's late I/O (file finalisers) without allocating."""
        self._retired = True

    @property
    def powered(self):
        return not self._dead

    def _modify(self, addr, data, n):
        """Write ``data`` (or erased bytes when None) of length n at addr, honouring the cut."""
        if self._dead:
            raise OSError(_EIO)
        when = self.when
        if when is not None and when():
            self.when = None
            self._left = 0
        if self._left == 0:
            self._dead = True
            self._put(addr, data, n // 2)  # torn: half of it lands
            if self.on_cut is not None:
                self.on_cut(addr, n, data is None)
            raise OSError(_EIO)
        if self._left > 0:
            self._left -= 1
        self._put(addr, data, n)
        self.writes += 1

    def _check(self, block_num, offset, n):
        if self._dead:
            raise OSError(_EIO)
        if block_num < 0 or offset < 0 or (block_num * self.block_size + offset + n
                                           > self.block_count * self.block_size):
            raise OSError(_EIO)
        return block_num * self.block_size + offset

    def _get(self, addr, buf):
        raise NotImplementedError

    def _put(self, addr, data, n):
        raise NotImplementedError

    # -- MicroPython block protocol
    def readblocks(self, block_num, buf, offset=0):
        if self._retired:
            return
        self._get(self._check(block_num, offset, len(buf)), buf)

    def writeblocks(self, block_num, buf, offset=None):
        if self._retired:
            return
        if offset is None:  # simple protocol: whole blocks, erase implied
            addr = self._check(block_num, 0, len(buf))
            for i in range(len(buf) // self.block_size):
                self._modify(addr + i * self.block_size, None, self.block_size)
            offset = 0
        self._modify(self._check(block_num, offset, len(buf)), buf, len(buf))

    def ioctl(self, op, arg):
        if self._retired:
            return 0
        if op == _IOCTL_BLOCK_COUNT:
            return self.block_count
        if op == _IOCTL_BLOCK_SIZE:
            return self.block_size
        if op == _IOCTL_BLOCK_ERASE:
            self._modify(self._check(arg, 0, self.block_size), None, self.block_size)
            return 0
        if op in (_IOCTL_INIT, _IOCTL_DEINIT, _IOCTL_SYNC):
            if self._dead:
                raise OSError(_EIO)
            return 0
        return None


class RamBlockDev(_CutBlockDev):
    """Flash image in a bytearray. ``image()`` and ``RamBlockDev(..., image=...)`` copy it,
    so a test can snapshot the medium and "reboot" onto the copy."""

    def __init__(self, block_size=512, block_count=64, image=None):
        super().__init__(block_size, block_count)
        n = block_size * block_count
        if image is not None and len(image) != n:
            raise ValueError("image is %d bytes, expected %d" % (len(image), n))
        # One allocation of the medium's size, filled in place: building it from a
        # temporary ``bytes`` of the same size needed twice that in one heap run.
        self._data = bytearray(n)
        self._mv = mv = memoryview(self._data)
        if image is None:
            for a in range(0, n, block_size):
                mv[a : a + block_size] = self._blank
        else:
            mv[:] = image

    def image(self):
        return bytes(self._data)

    def _get(self, addr, buf):
        buf[:] = self._mv[addr : addr + len(buf)]

    def _put(self, addr, data, n):
        if n:
            self._mv[addr : addr + n] = (self._blank if data is None else memoryview(data))[:n]


class FileBlockDev(_CutBlockDev):
    """Flash image in a host file, created (erased) or grown to size on first use.
    Every write is flushed, so a killed process leaves what a power cut would."""

    def __init__(self, path, block_size=4096, block_count=256):
        super().__init__(block_size, block_count)
        self.path = path
        n = block_size * block_count
        try:
            f = open(path, "r+b")
        except OSError:
            f = open(path, "w+b")
        f.seek(0, 2)
        have = f.tell()
        if have > n:
            f.close()
            raise ValueError("%s holds %d bytes, more than %d" % (path, have, n))
        while have < n:
            k = min(block_size, n - have)
            f.write(self._blank[:k])
            have += k
        f.flush()
        self._f = f

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    def _get(self, addr, buf):
        self._f.seek(addr)
        got = self._f.readinto(buf)
        if got != len(buf):
            raise OSError(_EIO)

    def _put(self, addr, data, n):
        if not n:
            return
        self._f.seek(addr)
        self._f.write((self._blank if data is None else memoryview(data))[:n])
        self._f.flush()


class CutSwitch(_CutBlockDev):
    """A power-cut switch in front of a board's own block device (extended protocol, as
    ``drivers/mps2.py``'s ``PsramDisk``): the HIL rig tears a write on the qemu board's
    flash with it. Erase writes erased bytes through, as a flash would hold them."""

    def __init__(self, dev):
        super().__init__(dev.ioctl(_IOCTL_BLOCK_SIZE, 0), dev.ioctl(_IOCTL_BLOCK_COUNT, 0))
        self.dev = dev

    def _get(self, addr, buf):
        bs = self.block_size
        self.dev.readblocks(addr // bs, buf, addr % bs)

    def _put(self, addr, data, n):
        if n:
            bs = self.block_size
            src = self._blank if data is None else memoryview(data)
            self.dev.writeblocks(addr // bs, src[:n], addr % bs)
