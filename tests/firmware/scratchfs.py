"""A scratch folder standing in for a board's filesystem, on CPython and MicroPython."""

import json
import os

from firmware.boards import image
from firmware.compat import ticks_us


def _rmtree(path):
    for name in os.listdir(path):
        p = path + "/" + name
        if os.stat(p)[0] & 0x4000:
            _rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


class Board:
    """A scratch folder standing in for a board's filesystem root."""

    def __init__(self):
        self.dir = "/tmp/swapstation-image-" + str(ticks_us())
        os.mkdir(self.dir)
        self.root = self.dir + "/"

    def put(self, rel, data):
        image.makedirs(self.root, rel)
        with open(self.root + rel, "wb") as f:
            f.write(data)

    def get(self, rel):
        with open(self.root + rel, "rb") as f:
            return f.read()

    def exists(self, rel):
        return image.stat_or_none(self.root + rel) is not None

    def done(self):
        _rmtree(self.dir)


def write_image(b, files):
    """Write files and a manifest naming them: a complete image."""
    entries = {}
    for rel in files:
        b.put(rel, files[rel])
        entries[rel] = {"size": len(files[rel]), "sha256": image.sha256_file(b.root + rel)}
    b.put(image.MANIFEST, json.dumps({"format": image.FORMAT, "files": entries}).encode())
    return entries
