"""``swapstation flash``: put a built image on a board over its USB serial port with mpremote.

Order of work, so that a board never runs a half-written image:

1. Ask the board what it is (MicroPython version, .mpy version, port, free space, the
   manifest of the image it has). Refuse a board that cannot load the image. Nothing
   has been written yet.
2. Leave the ``.flashing`` marker and reset the board: a running image has started a
   watchdog that nothing can stop; after the reset main.py sees the marker and stays
   at the REPL.
3. Hash the files on the board; copy only those that differ, to ``<name>.new``; hash
   the copies on the board. On any failure here the copies are removed, the marker
   cleared and the board reset: the old image, untouched, runs again.
4. Remove the manifest, move the copies into place, delete files the new image no
   longer has, hash every file again.
5. Copy the manifest last (staged and checked the same way), clear the marker, reset.

The board-side work is done by ``firmware/boards/image.py``, sent with ``mpremote exec``,
the same code main.py uses to check the image at boot.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.boards import image as board_image
from host.deploy import tools

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

ROOT = Path(__file__).resolve().parent.parent.parent
IMAGE_PY = ROOT / "firmware" / "boards" / "image.py"
TAG = "@@SWAPSTATION "
# mpremote waits for a board's answer to a command without any limit. A board that resets or
# hangs in the middle of one (its watchdog; an ESP32 whose USB-serial bridge keeps the port while
# the chip restarts; the emulated Pico's pty, which a reset never closes) would stop the flash for
# ever, so every mpremote run gets a limit and a timed-out run is a FlashError saying so.
COMMAND_TIMEOUT_S = 120.0  # one query or board-side step: 4-16 s on the emulated Pico, a loaded host
COPY_TIMEOUT_S = 600.0  # the copy of a whole image: ~3.5 min on the emulated Pico (docs/hil.md)
RECONNECT_TRIES = 15
RECONNECT_WAIT_S = 1.0
# A board's platform string for each image port.
PLATFORMS = {"rp2": ("rp2",), "esp32": ("esp32",), "unix": ("linux", "darwin")}


class FlashError(Exception):
    """The flash stopped. ``state`` says what the board is left with."""

    def __init__(self, message: str, usage: bool = False, state: str = ""):
        super().__init__(message)
        self.usage = usage
        self.state = state


class NoAnswer(FlashError):
    """An mpremote run was stopped at its time limit: the board stopped answering mid-command."""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False  # the run was stopped at its time limit


Runner = Callable[[list[str], float], Result]  # (argv, time limit in s) -> what the run gave


def subprocess_runner(argv: list[str], timeout: float) -> Result:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise FlashError(
            f"cannot run {argv[0]}: no such program; install mpremote with: {tools.install_command()}",
            usage=True,
        ) from None
    except subprocess.TimeoutExpired as e:  # mpremote is killed; what it printed is kept
        return Result(124, _text(e.stdout), _text(e.stderr), timed_out=True)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""


def default_mpremote() -> list[str]:
    """This environment's mpremote (the tools extra); raises tools.MissingTool without one."""
    return tools.command("mpremote")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_folder(folder: Path) -> None:
    build_one = "build one with `swapstation build --board <board> --out " + shlex.quote(str(folder)) + "`"
    if not folder.exists():
        raise FlashError(f"{folder}: no such folder; {build_one}", usage=True)
    if not folder.is_dir():
        raise FlashError(f"{folder}: is a file, not an image folder; {build_one}", usage=True)


def load_image(folder: Path) -> dict[str, Any]:
    """The manifest of an image folder, after checking the folder against it."""
    check_folder(folder)
    mpath = folder / board_image.MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise FlashError(
            f"{folder}: no {board_image.MANIFEST}; build an image with `swapstation build`", usage=True
        ) from None
    except (OSError, ValueError) as e:
        raise FlashError(f"{mpath}: cannot read ({e})", usage=True) from None
    if manifest.get("format") != board_image.FORMAT:
        raise FlashError(f"{mpath}: unknown image format {manifest.get('format')!r}", usage=True)
    for rel, want in sorted(manifest["files"].items()):
        p = folder / rel
        if not p.is_file() or _sha256(p) != want["sha256"]:
            raise FlashError(f"{folder}: {rel} does not match the manifest; rebuild the image", usage=True)
    return manifest


def check_signature(manifest: dict[str, Any], key: bytes, folder: Path) -> None:
    """Refuse, before anything is written, an image not signed with the station's ``key``."""
    import hmac

    from host.deploy.build import image_mac

    mac = manifest.get("mac")
    if not isinstance(mac, str):
        raise FlashError(f"{folder}: the image is not signed; build it with --image-key", usage=True)
    if not hmac.compare_digest(mac, image_mac(key, manifest)):
        raise FlashError(f"{folder}: the image's MAC does not match --image-key: built for another "
                         "station, or changed since", usage=True)


def check_compatible(info: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Refuse a board that cannot load this image, before anything is written."""
    t = manifest["target"]
    if info.get("name") != "micropython":
        raise FlashError(f"the board runs {info.get('name')!r}, not MicroPython")
    have = ".".join(str(v) for v in info["version"][:3])
    if list(info["version"][:2]) != [int(x) for x in t["micropython"].split(".")]:
        raise FlashError(
            f"the board runs MicroPython {have}, the image is built for {t['micropython']}: rebuild it "
            f"with `swapstation build --board {t['board']} --micropython {have}`, or update MicroPython "
            "on the board"
        )
    mpy = int(info.get("mpy", 0))
    major, sub = mpy & 0xFF, (mpy >> 8) & 3
    if major != t["mpy_major"] or (t["native_code"] and sub != t["mpy_sub"]):
        raise FlashError(
            f"the board loads .mpy {major}.{sub}, the image has .mpy {t['mpy_version']} files: "
            f"rebuild it for this board's MicroPython {have}"
        )
    if info.get("platform") not in PLATFORMS.get(t["port"], ()):
        raise FlashError(
            f"the image is for {t['port']} ({t['board']}), the board is {info.get('platform')!r}"
        )


@dataclass
class Plan:
    copy: list[str]  # files to copy (different or missing on the board)
    stale: list[str]  # files of an older image to delete
    keep: list[str]  # files already right
    need_bytes: int = 0
    leftovers: list[str] = field(default_factory=list)  # staging files from a failed flash


def make_plan(
    manifest: dict[str, Any], on_board: dict[str, Any], walk: list[str], old_files: Sequence[str], block: int
) -> Plan:
    files = manifest["files"]
    copy, keep = [], []
    for p in sorted(files):
        have = on_board.get(p)
        if have is not None and have[0] == files[p]["size"] and have[1] == files[p]["sha256"]:
            keep.append(p)
        else:
            copy.append(p)
    leftovers = sorted(p for p in walk if p.endswith(board_image.STAGING))
    stale = sorted((set(walk) | set(old_files)) - set(files) - {board_image.MANIFEST} - set(leftovers))
    # LittleFS stores each file in whole blocks, plus metadata: count a block extra per file.
    blocks = sum((files[p]["size"] + block - 1) // block + 1 for p in copy)
    blocks += 4  # the manifest, its staged copy, and a margin
    return Plan(copy, stale, keep, blocks * block, leftovers)


class Flasher:
    def __init__(
        self,
        image_dir: Path,
        port: str,
        mpremote: Sequence[str] | None = None,
        runner: Runner = subprocess_runner,
        device_root: str = "/",
        reset: bool = True,
        log: Callable[[str], None] = print,
        sleep: Callable[[float], None] = time.sleep,
        image_key: bytes | None = None,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
        copy_timeout_s: float = COPY_TIMEOUT_S,
    ):
        self.image_dir = image_dir
        self.command_timeout_s = command_timeout_s
        self.copy_timeout_s = copy_timeout_s
        self.image_key = image_key
        self.port = port
        self.mpremote = list(mpremote) if mpremote else default_mpremote()
        self.runner = runner
        self.root = device_root if device_root.endswith("/") else device_root + "/"
        self.do_reset = reset
        self.log = log
        self.sleep = sleep
        self.helpers = IMAGE_PY.read_text()

    # -- the mpremote commands; flash() and dry_run() both build them here

    def command(self, *parts: str) -> list[str]:
        return [*self.mpremote, "connect", self.port, *parts]

    def on_board(self, func: str, *args: Any) -> list[str]:
        """``mpremote exec`` of image.py's source, then ``func(*args)``, printing its JSON result."""
        text = ", ".join(str(a) if isinstance(a, bool) else json.dumps(a) for a in args)
        # Double quotes only: the dry run shows this argument in sh's single quotes.
        call = f"print({json.dumps(TAG)} + json.dumps({func}({text})))"
        return self.command("exec", f"{self.helpers}\n{call}\n")

    def cmd_info(self) -> list[str]:
        return self.on_board("board_info", self.root)

    def cmd_mark(self) -> list[str]:
        return self.on_board("set_flashing", self.root, True)

    def cmd_reset(self) -> list[str]:
        return self.command("reset")

    def cmd_scan(self, paths: Sequence[str]) -> list[str]:
        return self.on_board("scan", self.root, sorted(paths), "firmware")

    def cmd_prepare(self, leftovers: Sequence[str], paths: Sequence[str]) -> list[str]:
        return self.on_board("prepare", self.root, list(leftovers), list(paths))

    def cmd_copy(self, paths: Sequence[str]) -> list[str]:
        """One mpremote run copying every file to its staging name (``+`` separates commands)."""
        argv = self.command()
        for i, p in enumerate(paths):
            if i:
                argv.append("+")
            argv += ["fs", "cp", "-f", str(self.image_dir / p), ":" + self.root + p + board_image.STAGING]
        return argv

    def cmd_hashes(self, paths: Sequence[str]) -> list[str]:
        return self.on_board("hashes", self.root, sorted(paths))

    def cmd_commit(self, copy: Sequence[str], stale: Sequence[str]) -> list[str]:
        return self.on_board("commit", self.root, list(copy), list(stale))

    def cmd_copy_manifest(self) -> list[str]:
        m = board_image.MANIFEST
        return self.command(
            "fs", "cp", "-f", str(self.image_dir / m), ":" + self.root + m + board_image.STAGING
        )

    def cmd_finish(self) -> list[str]:
        return self.on_board("finish", self.root)

    def cmd_abandon(self, staged: Sequence[str]) -> list[str]:
        return self.on_board("abandon", self.root, list(staged))

    def show(self, argv: list[str]) -> str:
        """A command as sh runs it; image.py's source is ``$IMAGE_PY`` (see ``dry_run``)."""
        out = []
        for a in argv:
            if a.startswith(self.helpers):
                # $(cat) drops the source's last newline; the call starts with one.
                out.append('"$IMAGE_PY"' + shlex.quote(a[len(self.helpers) :]))
            else:
                out.append(shlex.quote(a))
        return " ".join(out)

    # -- running them

    def _fail(self, what: str, res: Result, state: str, timeout: float) -> FlashError:
        text = (res.stderr.strip() + "\n" + res.stdout.strip()).strip()
        low = text.lower()
        if res.timed_out:
            return NoAnswer(
                f"{what}: the board on {self.port} stopped answering: mpremote had no result after "
                f"{timeout:g} s and was stopped (a board that reset or hung in the middle of the "
                f"command, e.g. its watchdog)" + (f"; mpremote printed: {text}" if text else ""),
                state=state,
            )
        if "failed to access" in low or "no device found" in low or "could not enter raw repl" in low:
            return FlashError(f"no MicroPython board answered on {self.port}: {text}", state=state)
        if "no space left" in low or "enospc" in low or "errno 28" in low:
            return FlashError(f"{what}: the board's filesystem is full: {text}", state=state)
        return FlashError(f"{what} failed (mpremote exit {res.returncode}): {text}", state=state)

    def run(self, argv: list[str], what: str, state: str, timeout: float | None = None) -> Result:
        limit = self.command_timeout_s if timeout is None else timeout
        res = self.runner(argv, limit)
        if res.returncode != 0 or res.timed_out:
            raise self._fail(what, res, state, limit)
        return res

    def call(self, argv: list[str], what: str, state: str) -> Any:
        """Run an ``on_board`` command and return its JSON result."""
        res = self.run(argv, what, state)
        for line in res.stdout.splitlines():
            if line.startswith(TAG):
                return json.loads(line[len(TAG) :])
        raise FlashError(
            f"{what}: the board gave no answer: {(res.stdout + res.stderr).strip()}", state=state
        )

    def reconnect(self, state: str) -> dict[str, Any]:
        """After a reset the USB port goes away for a moment: ask again until it answers."""
        last = ""
        for _ in range(RECONNECT_TRIES):
            self.sleep(RECONNECT_WAIT_S)
            try:
                info: dict[str, Any] = self.call(self.cmd_info(), "asking the board what it is", state)
                return info
            except NoAnswer:
                raise  # it answered, then stopped: asking again would wait as long again
            except FlashError as e:
                last = str(e)
        raise FlashError(f"the board did not come back after a reset: {last}", state=state)

    def check(self, paths: list[str], names: list[str], want: dict[str, Any], what: str, state: str) -> None:
        """Hash ``names`` on the board and compare them with ``want[path]`` (size, sha256)."""
        got = self.call(self.cmd_hashes(names), f"checking the {what}s", state)
        for p, name in zip(paths, names, strict=True):
            have = got.get(name)
            if have is None:
                raise FlashError(f"{what} {name} is missing on the board", state=state)
            if have[0] != want[p]["size"] or have[1] != want[p]["sha256"]:
                raise FlashError(
                    f"{what} {name} does not match the image: read back {have[0]} bytes, "
                    f"sha256 {have[1][:12]}; the image has {want[p]['size']} bytes, {want[p]['sha256'][:12]}",
                    state=state,
                )

    def flash(self) -> dict[str, Any]:
        manifest = load_image(self.image_dir)
        files = manifest["files"]
        untouched = "nothing was written to the board"
        if self.image_key is not None:
            check_signature(manifest, self.image_key, self.image_dir)
        info = self.call(self.cmd_info(), "asking the board what it is", untouched)
        try:
            check_compatible(info, manifest)
            if info.get("keyed") and not manifest.get("mac"):
                raise FlashError(f"the board holds an image key ({board_image.KEY_FILE}) and would not start "
                                 "this unsigned image: build it with --image-key")
        except FlashError as e:
            e.state = untouched
            raise
        old = info.get("manifest")
        old = old if isinstance(old, dict) and isinstance(old.get("files"), dict) else {"files": {}}
        old_files = sorted(old["files"])
        version = ".".join(map(str, info["version"]))
        self.log(
            f"board: MicroPython {version} on {info['machine'] or info['platform']}, {info['free']} bytes "
            f"free; image {manifest['image_sha256'][:12]}, board has {old.get('image_sha256', 'none')[:12]}"
        )

        # Until the copies are checked, a failure puts the old image back.
        restore = "the old image is intact and was restarted"
        self.call(self.cmd_mark(), "marking the flash as under way", untouched)
        plan: Plan | None = None
        try:
            # An image may be running, with a watchdog nothing stops: reset into the marker,
            # where main.py stays at the REPL.
            self.run(self.cmd_reset(), "resetting the board", restore)
            info = self.reconnect(restore)
            scan = self.call(
                self.cmd_scan(sorted(set(files) | set(old_files))), "hashing the board's files", restore
            )
            staging = [
                p + board_image.STAGING for p in sorted(set(files) | {board_image.MANIFEST}) if "/" not in p
            ]
            plan = make_plan(
                manifest,
                scan["hashes"],
                list(scan["walk"]) + staging,
                old_files,
                int(info.get("block") or 4096),
            )
            if plan.need_bytes > info["free"]:
                raise FlashError(
                    f"the board's filesystem is full: the {len(plan.copy)} changed files need about "
                    f"{plan.need_bytes} bytes, {info['free']} are free",
                    state=restore,
                )
            self.log(
                f"copying {len(plan.copy)} of {len(files)} files ({len(plan.keep)} unchanged), "
                f"removing {len(plan.stale)} old ones"
            )
            self.call(self.cmd_prepare(plan.leftovers, plan.copy), "preparing folders", restore)
            if plan.copy:
                self.run(self.cmd_copy(plan.copy), "copying", restore, self.copy_timeout_s)
                self.check(plan.copy, [p + board_image.STAGING for p in plan.copy], files, "copy", restore)
        except FlashError as e:
            self._abandon(plan, e)
            raise

        # From here the board has no manifest until the end, so it cannot start a mix.
        broken = "the board has no manifest and will not start: flash again"
        self.call(self.cmd_commit(plan.copy, plan.stale), "moving the copies into place", broken)
        self.check(sorted(files), sorted(files), files, "file", broken)
        self.run(self.cmd_copy_manifest(), "copying the manifest", broken, self.copy_timeout_s)
        mfile = self.image_dir / board_image.MANIFEST
        want = {board_image.MANIFEST: {"size": mfile.stat().st_size, "sha256": _sha256(mfile)}}
        self.check([board_image.MANIFEST], [board_image.MANIFEST + board_image.STAGING], want, "copy", broken)
        self.call(self.cmd_finish(), "writing the manifest", broken)
        if self.do_reset:
            self.run(
                self.cmd_reset(),
                "resetting the board",
                "the new image is complete; reset the board to start it",
            )
        self.log(
            f"flashed {manifest['image_sha256'][:12]}: {len(plan.copy)} files copied, "
            f"{len(plan.stale)} removed" + ("" if self.do_reset else "; board not reset")
        )
        return {"copied": plan.copy, "removed": plan.stale, "kept": plan.keep}

    def _abandon(self, plan: Plan | None, error: FlashError) -> None:
        """Undo a flash that failed before anything was moved: drop the copies, clear the
        marker, restart the old image."""
        staged = [p + board_image.STAGING for p in (plan.copy if plan else [])]
        try:
            self.call(self.cmd_abandon(staged), "cleaning up", error.state)
            self.run(self.cmd_reset(), "resetting the board", error.state)
        except FlashError as e:
            error.state = (
                f"cleaning up failed too ({e}); the board keeps the .flashing marker and will not "
                "start until it is flashed again"
            )

    def dry_run(self) -> list[str]:
        """A flash onto a board without an image, as an sh script a person can run: which
        files differ, and which are old, is known only with a board."""
        manifest = load_image(self.image_dir)
        if self.image_key is not None:
            check_signature(manifest, self.image_key, self.image_dir)
        files = sorted(manifest["files"])
        m = board_image.MANIFEST
        cmds = [
            self.cmd_info(),
            self.cmd_mark(),
            self.cmd_reset(),
            None,  # the board's USB port goes away for a moment after a reset
            self.cmd_info(),
            self.cmd_scan(files),
            self.cmd_prepare([], files),
            self.cmd_copy(files),
            self.cmd_hashes([p + board_image.STAGING for p in files]),
            self.cmd_commit(files, []),
            self.cmd_hashes(files),
            self.cmd_copy_manifest(),
            self.cmd_hashes([m + board_image.STAGING]),
            self.cmd_finish(),
        ]
        if self.do_reset:
            cmds.append(self.cmd_reset())
        return [
            f"# swapstation flash {shlex.quote(str(self.image_dir))} onto a board with no image yet, as sh "
            "commands.",
            "# `swapstation flash` itself asks the board first, copies only the files that differ, removes",
            "# the old image's, and compares each hash the board prints (after @@SWAPSTATION) with "
            f"{m}.",
            "set -e",
            f'IMAGE_PY="$(cat {shlex.quote(str(IMAGE_PY))})"',
            *(f"sleep {RECONNECT_WAIT_S * 2:g}" if c is None else self.show(c) for c in cmds),
        ]


def run(args: argparse.Namespace) -> int:
    from host.deploy.build import BuildError, read_image_key

    note = []
    key = None
    try:
        check_folder(Path(args.image))  # the user's argument before the tools
        key = read_image_key(args.image_key) if args.image_key else None
        mpremote = shlex.split(args.mpremote) if args.mpremote else default_mpremote()
    except (FlashError, BuildError) as e:
        print(f"swapstation flash: {e}", file=sys.stderr)
        return EXIT_USAGE
    except tools.MissingTool as e:
        if not args.dry_run:
            print(f"swapstation flash: {e}", file=sys.stderr)
            return EXIT_USAGE
        mpremote, note = ["mpremote"], [f"# {e}"]
    flasher = Flasher(Path(args.image), args.port, mpremote, reset=not args.no_reset, image_key=key)
    try:
        if args.dry_run:
            for line in [*note, *flasher.dry_run()]:
                print(line)
            return EXIT_OK
        flasher.flash()
    except FlashError as e:
        print(f"swapstation flash: {e}", file=sys.stderr)
        if e.state:
            print(f"swapstation flash: {e.state}", file=sys.stderr)
        return EXIT_USAGE if e.usage else EXIT_FAILURE
    return EXIT_OK


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "flash",
        help="copy a built image to a board over USB serial (mpremote)",
        description=(
            "Copy the files of an image that differ from the board's, check them on the board, move them "
            "into place, write the manifest last and reset the board. A board that runs another MicroPython "
            "or .mpy version than the image is refused before anything is written. Exit codes: 0 flashed, "
            "1 the flash failed (the message says what the board is left with), 2 bad arguments or image, or "
            "no mpremote."
        ),
    )
    p.add_argument("image", help="image folder made by `swapstation build` (e.g. out/image-pico)")
    p.add_argument("--port", required=True, help="serial port of the board, e.g. /dev/ttyACM0")
    p.add_argument(
        "--dry-run", action="store_true", help="print the mpremote commands as an sh script, touch no board"
    )
    p.add_argument("--no-reset", action="store_true", help="do not reset the board at the end")
    p.add_argument("--mpremote", help="mpremote command to use (default: the one installed with this tool)")
    p.add_argument("--image-key", help="file with the station's image key (hex): refuse an image not signed "
                                       "with it before anything is written")
    p.set_defaults(func=run)
