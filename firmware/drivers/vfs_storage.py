"""``Storage`` over a filesystem: a mounted VFS directory, an unmounted VFS object
(``vfs.VfsLfs2(bdev)``), or a plain directory on CPython.

On a board the journal lives on the internal LittleFS (``VfsStorage("/")`` or a
subfolder). Tests under MicroPython hand in a ``VfsLfs2`` over a RAM block device
without mounting it; CPython has no LittleFS, so there it is a host directory.
"""

import os

from firmware.hal import Storage

_ENOENT = 2


class VfsStorage(Storage):
    def __init__(self, root):
        if isinstance(root, str):
            self._fs = None
            self._root = root.rstrip("/") + "/" if root else ""
        elif hasattr(root, "open") and hasattr(root, "stat"):
            self._fs = root
            self._root = ""
        else:
            raise TypeError("root must be a directory path or a VFS object")

    def _path(self, name):
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise ValueError("storage names are flat: %r" % (name,))
        return self._root + name

    def open(self, name, mode):
        p = self._path(name)
        if self._fs is not None:
            return self._fs.open(p, mode)
        return open(p, mode)

    def _stat(self, name):
        p = self._path(name)
        return self._fs.stat(p) if self._fs is not None else os.stat(p)

    def exists(self, name):
        try:
            self._stat(name)
            return True
        except OSError:
            return False

    def size(self, name):
        return self._stat(name)[6]

    def remove(self, name):
        p = self._path(name)
        if self._fs is not None:
            self._fs.remove(p)
        else:
            os.remove(p)

    def rename(self, old, new):
        """Replace ``new`` by ``old`` in one step where the filesystem can (LittleFS,
        POSIX). FAT cannot rename over a file: there ``new`` is removed first, and the
        journal's boot check covers the moment between the two steps."""
        po, pn = self._path(old), self._path(new)
        ren = self._fs.rename if self._fs is not None else os.rename
        try:
            ren(po, pn)
        except OSError as e:
            if not self.exists(new) or not self.exists(old):
                raise e
            self.remove(new)
            ren(po, pn)
