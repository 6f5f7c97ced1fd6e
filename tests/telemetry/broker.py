"""A real Mosquitto broker for the tests: on a free loopback port, passwords on, and an ACL
under which a station publishes only under its own topics and reads only its own command
topic, and only the backend publishes commands. Persistence on, as in production: the
backend's session (and the station records queued for it) survives a broker restart."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = "/usr/sbin/mosquitto"
PASSWD = "/usr/bin/mosquitto_passwd"

ACL = """\
user backend
topic read swapstation/#
topic write swapstation/+/cmd

pattern write swapstation/%u/status
pattern write swapstation/%u/swaps
pattern write swapstation/%u/alarms
pattern write swapstation/%u/result
pattern read swapstation/%u/cmd
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, folder: Path, users: dict[str, str]) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        pw = folder / "passwd"
        pw.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
        pw.chmod(0o600)
        subprocess.run([PASSWD, "-U", str(pw)], check=True, capture_output=True)  # hash them in place
        (folder / "acl").write_text(ACL)
        (folder / "acl").chmod(0o600)
        (folder / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {pw}\n"
            f"acl_file {folder / 'acl'}\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            # as root it would switch to the mosquitto user, who cannot read the test's folder
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            "log_dest stderr\n"
            "log_type all\n"
        )

    def start(self) -> None:
        assert self.proc is None
        self.log = open(self.folder / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")],
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited: " + (self.folder / "mosquitto.log").read_text()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 30 s")

    def stop(self) -> None:
        """Graceful stop (SIGTERM): it saves its persistence file, as a restarted broker does."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.log.close()
