"""A board behind the mpremote command line, for flash tests without hardware.

``FakeBoard`` is a command runner for ``host.deploy.flash.Flasher``. It parses each command
line with mpremote's own parsers (a malformed command fails here as it would there),
keeps the board's filesystem in a folder, runs ``exec`` code under the real MicroPython
unix port, and can be told to misbehave: answer as another MicroPython version, fail
or corrupt a copy, run out of space, or disappear after some number of commands.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mpremote import main as mpremote_main

from firmware.boards import image as board_image
from host.deploy.flash import TAG, Result
from tests.mpy_dual import micropython_command

mpremote_main.prepare_command_expansions(types.SimpleNamespace(commands={}))


def parse(argv: list[str]) -> list[tuple[str, argparse.Namespace]]:
    """Split an mpremote command line into (command, args) the way mpremote's main() does."""
    remaining = list(argv)
    out = []
    while remaining:
        if remaining[0] == "+":
            remaining.pop(0)
            continue
        mpremote_main.do_command_expansion(remaining)
        cmd = remaining.pop(0)
        if cmd not in mpremote_main._COMMANDS:
            raise AssertionError(f"'{cmd}' is not an mpremote command: {argv}")
        if "+" in remaining:
            i = remaining.index("+")
            args, extra = remaining[:i], remaining[i:]
        else:
            args, extra = remaining, []
        parser = mpremote_main._COMMANDS[cmd][1]()
        parser.add_argument("next_command", nargs=argparse.REMAINDER)
        ns = parser.parse_args(args)
        out.append((cmd, ns))
        remaining = ns.next_command + extra
    return out


class FakeBoard:
    def __init__(self, root: Path, port: str = "/dev/ttyACM0"):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.calls: list[list[str]] = []
        self.writes: list[str] = []  # device paths written by `fs cp`, in order
        self.boots: list[str] = []  # at each reset: "starts <image>" or "refuses: <why>"
        self.info_patch: dict[str, Any] = {}
        self.fail_copy: str | None = None  # a copy to this device path fails
        self.corrupt_copy: str | None = None  # a copy to this device path lands damaged
        self.capacity: int | None = None  # bytes of file data the filesystem holds
        self.gone_after: int | None = None  # commands answered before the board disappears
        self.on_exec: Callable[[str], None] | None = None

    @property
    def device_root(self) -> str:
        return str(self.root) + "/"

    def used(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def tree(self) -> dict[str, bytes]:
        return {
            p.relative_to(self.root).as_posix(): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }

    def __call__(self, argv: list[str], timeout: float | None = None) -> Result:
        self.calls.append(argv)
        assert argv[0].endswith("mpremote"), argv
        commands = parse(argv[1:])
        if self.gone_after is not None and len(self.calls) > self.gone_after:
            return Result(
                1, "", f"mpremote: failed to access {self.port} (it may be in use by another program)"
            )
        out = []
        for cmd, ns in commands:
            if cmd == "connect":
                if ns.device[0] != self.port:
                    return Result(
                        1,
                        "",
                        f"mpremote: failed to access {ns.device[0]} (it may be in use by another program)",
                    )
            elif cmd == "exec":
                res = self._exec(ns.expr[0])
                out.append(res.stdout)
                if res.returncode:
                    return Result(res.returncode, "".join(out), res.stderr)
            elif cmd == "fs":
                err = self._fs(ns)
                if err:
                    return Result(1, "".join(out), err)
            elif cmd == "soft-reset":
                pass
            else:
                raise AssertionError(f"unexpected mpremote command {cmd}: {argv}")
        if any(cmd == "exec" and "machine.reset()" in ns.expr[0] for cmd, ns in commands):
            self._boot()
        return Result(0, "".join(out), "")

    def _exec(self, code: str) -> Result:
        if "machine.reset()" in code:  # mpremote's `reset` shortcut
            return Result(0, "", "")
        if self.on_exec is not None:
            self.on_exec(code.rstrip().splitlines()[-1])  # the call after image.py's source
        proc = subprocess.run(
            [*micropython_command(), "-c", code], capture_output=True, text=True, timeout=60
        )
        stdout = proc.stdout
        lines = []
        for line in stdout.splitlines(keepends=True):
            if line.startswith(TAG):
                value = json.loads(line[len(TAG) :])
                if isinstance(value, dict) and "mpy" in value and "platform" in value:
                    value = self._patch_info(value)
                line = TAG + json.dumps(value) + "\n"
            lines.append(line)
        return Result(proc.returncode, "".join(lines), proc.stderr)

    def _patch_info(self, info: dict[str, Any]) -> dict[str, Any]:
        # What a Pico would say; the tests change it to make a board the image does not fit.
        info.update(platform="rp2", machine="Raspberry Pi Pico with RP2040", block=4096)
        if self.capacity is not None:
            info["free"] = self.capacity - self.used()
            info["total"] = self.capacity
        info.update(self.info_patch)
        return info

    def _fs(self, ns: argparse.Namespace) -> str | None:
        sub = ns.command[0]
        if sub != "cp":
            raise AssertionError(f"unexpected fs command {sub}")
        src, dst = ns.path
        assert not src.startswith(":") and dst.startswith(":"), ns.path
        dest = dst[1:]
        assert dest.startswith(self.device_root), dest
        data = Path(src).read_bytes()
        if self.fail_copy is not None and dest.endswith(self.fail_copy):
            return f"mpremote: Error with transport:\ncould not exec command (response: {dest})"
        if self.capacity is not None and self.used() + len(data) > self.capacity:
            with open(dest, "wb") as f:  # a partial file is what a full LittleFS leaves
                f.write(data[: max(0, self.capacity - self.used())])
            return f"mpremote: cp: {dest}: No space left on device."
        if not os.path.isdir(os.path.dirname(dest)):
            return f"mpremote: cp: {dest}: No such file or directory."
        if self.corrupt_copy is not None and dest.endswith(self.corrupt_copy):
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        with open(dest, "wb") as f:
            f.write(data)
        self.writes.append(dest[len(self.device_root) :])
        return None

    def _boot(self) -> None:
        """What main.py would do after this reset: start a complete image, refuse anything else."""
        try:
            m = board_image.check(self.device_root)
            self.boots.append("starts " + m["image_sha256"][:12])
        except board_image.ImageError as e:
            self.boots.append(f"refuses: {e}")


def put_files(board: FakeBoard, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = board.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def clear(board: FakeBoard) -> None:
    shutil.rmtree(board.root)
    board.root.mkdir()
