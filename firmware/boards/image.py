"""The firmware image on the controller's filesystem: what ``swapstation flash`` put there.

``manifest.json`` lists every file of the image with its SHA-256. The flasher writes it
last and removes it first, and while it works it leaves the ``.flashing`` marker, so
``check()`` refuses a half-written image and main.py does not start one.

This module imports nothing from the firmware package: the flasher also sends its source
to a board with ``mpremote exec`` (before any image is there) to hash and move files,
so there is one implementation of both on the board.
"""

import hashlib
import json
import os
import sys

try:
    from binascii import hexlify
except ImportError:  # pragma: no cover - every supported port has binascii
    from ubinascii import hexlify  # type: ignore

MANIFEST = "manifest.json"
FLASHING = ".flashing"  # present while a flash is under way or after one failed
STAGING = ".new"  # suffix of files being copied, before they are moved into place
FORMAT = 1
KEY_FILE = "image.key"  # the station's image key (hex), put on a board once; never part of an image

_S_IFDIR = 0x4000


class ImageError(Exception):
    pass


_buf = bytearray(512)


def sha256_size(path):
    """(hex SHA-256, size in bytes) of a file, read in small chunks (boards have little RAM)."""
    h = hashlib.sha256()
    mv = memoryview(_buf)
    size = 0
    with open(path, "rb") as f:
        while True:
            n = f.readinto(_buf)
            if not n:
                break
            h.update(mv[:n])
            size += n
    return hexlify(h.digest()).decode(), size


def sha256_file(path):
    """Hex SHA-256 of a file, read in small chunks (boards have little RAM)."""
    return sha256_size(path)[0]


def stat_or_none(path):
    try:
        return os.stat(path)
    except OSError:
        return None


def is_dir(path):
    st = stat_or_none(path)
    return st is not None and (st[0] & _S_IFDIR) != 0


def hashes(root, paths):
    """path -> [size, sha256] for each file that exists, None for one that does not."""
    out = {}
    for p in paths:
        st = stat_or_none(root + p)
        found = st is not None and not (st[0] & _S_IFDIR)
        out[p] = [st[6], sha256_file(root + p)] if found else None
    return out


def walk(root, folder):
    """Every file below ``folder`` (relative paths), for finding files an image left behind."""
    out = []
    if not is_dir(root + folder):
        return out
    for name in sorted(os.listdir(root + folder)):
        p = folder + "/" + name
        if is_dir(root + p):
            out.extend(walk(root, p))
        else:
            out.append(p)
    return out


def makedirs(root, path):
    """Create the folders leading to file ``path`` (MicroPython has no os.makedirs)."""
    at = ""
    for part in path.split("/")[:-1]:
        at = at + part if not at else at + "/" + part
        if not is_dir(root + at):
            os.mkdir(root + at)


def fs_free(root):
    """(free bytes, total bytes, block size) of the filesystem holding ``root``."""
    st = os.statvfs(root or "/")
    return st[1] * st[4], st[1] * st[2], st[1]  # f_frsize: the unit of the block counts


def signing_text(manifest):
    """What an image's MAC covers (``manifest["mac"]``, HMAC-SHA256 under the station's image
    key): the station, the image digest, and every file's path, size and SHA-256."""
    parts = ["swapstation image\n", str(manifest.get("station_id")), "\n",
             str(manifest.get("image_sha256")), "\n"]
    files = manifest["files"]
    for p in sorted(files):
        f = files[p]
        parts.append("%s %d %s\n" % (p, f["size"], f["sha256"]))
    return "".join(parts).encode()


def board_info(root):
    """What the flasher needs to know before it touches anything."""
    impl = sys.implementation
    free, total, block = fs_free(root)
    manifest = None
    try:
        with open(root + MANIFEST) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        pass
    return {
        "name": impl.name,
        "version": list(impl.version[:3]),
        "mpy": getattr(impl, "_mpy", 0),
        "machine": getattr(impl, "_machine", ""),
        "platform": sys.platform,
        "free": free,
        "total": total,
        "block": block,
        "flashing": stat_or_none(root + FLASHING) is not None,
        "keyed": stat_or_none(root + KEY_FILE) is not None,
        "manifest": manifest,
    }


def set_flashing(root, on):
    if on:
        with open(root + FLASHING, "w") as f:
            f.write("flash in progress\n")
    elif stat_or_none(root + FLASHING) is not None:
        os.remove(root + FLASHING)


def remove(root, paths):
    for p in paths:
        if stat_or_none(root + p) is not None:
            os.remove(root + p)


def move_into_place(root, paths):
    """Rename each ``<path>.new`` to ``<path>``. The old file is removed first because FAT
    cannot rename over a file; the manifest is gone by now, so nothing starts meanwhile."""
    for p in paths:
        if stat_or_none(root + p) is not None:
            os.remove(root + p)
        os.rename(root + p + STAGING, root + p)


def load_manifest(root=""):
    try:
        with open(root + MANIFEST) as f:
            m = json.load(f)
    except OSError:
        raise ImageError("no " + MANIFEST + ": the image is incomplete (flash it again)") from None
    except ValueError:
        raise ImageError(MANIFEST + " is damaged (flash the image again)") from None
    if type(m) is not dict or m.get("format") != FORMAT or type(m.get("files")) is not dict:
        raise ImageError(MANIFEST + " has an unknown format (flash the image again)")
    return m


def check(root="", full=True):
    """Return the manifest if the image is complete; raise ImageError naming what is wrong.

    ``full`` hashes every file; otherwise only sizes are compared (a fast boot check).
    """
    if stat_or_none(root + FLASHING) is not None:
        raise ImageError("a flash is in progress or did not finish (" + FLASHING + " is present)")
    m = load_manifest(root)
    for p in sorted(m["files"]):
        want = m["files"][p]
        digest = None
        if full:
            # The size comes from the bytes hashed: a second path lookup (stat) per file
            # cost about 80 ms of a Pico's boot.
            try:
                digest, size = sha256_size(root + p)
            except OSError:
                size = None
        else:
            st = stat_or_none(root + p)
            size = None if st is None else st[6]
        if size is None:
            raise ImageError(p + " is missing")
        if size != want["size"]:
            raise ImageError(p + " has %d bytes, the manifest says %d" % (size, want["size"]))
        if digest is not None and digest != want["sha256"]:
            raise ImageError(p + " does not match the manifest (damaged or changed)")
    return m


# -- the flasher's steps, each one ``mpremote exec`` (see host/deploy/flash.py)


def scan(root, paths, folder):
    """Hashes of ``paths`` and every file below ``folder``: what is on the board now."""
    return {"hashes": hashes(root, paths), "walk": walk(root, folder)}


def prepare(root, leftovers, paths):
    """Drop a failed flash's staging files; create the folders the copies go to."""
    remove(root, leftovers)
    for p in paths:
        makedirs(root, p)


def commit(root, copy, stale):
    """Copies checked: remove the manifest (nothing starts now), move them in, drop old files."""
    remove(root, [MANIFEST])
    move_into_place(root, copy)
    remove(root, stale)


def finish(root):
    """Every file checked: the manifest goes in last, then the marker goes."""
    move_into_place(root, [MANIFEST])
    set_flashing(root, False)


def abandon(root, staged):
    """A flash that failed before ``commit``: the old image is whole again."""
    remove(root, staged)
    set_flashing(root, False)
