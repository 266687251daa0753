"""A Mosquitto broker (the Debian package's binary) on a free loopback port, with its own config,
persistence directory and log: what `lightpost devnet up --gateway`, the demo and the tests run.

Persistence (issue 14): with ``persistence true`` alone a kill -9 loses every queued QoS 1
message (measured); ``autosave_interval 1`` and ``autosave_on_changes true`` write the queue on
every change, so a killed broker restarted on the same directory delivers what it had accepted.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from lightpost.errors import ChainProcessError
from lightpost_operator.anvil import LOOPBACK, free_port

__all__ = ["MOSQUITTO_CONF", "START_TIMEOUT_S", "Mosquitto", "mosquitto_binary"]

MOSQUITTO_CONF = """\
listener {port} {host}
allow_anonymous true
persistence true
persistence_location {dir}/
autosave_interval 1
autosave_on_changes true
log_dest file {dir}/mosquitto.log
user {user}
max_queued_messages 0
"""
"""The broker's whole config: loopback only, anonymous (a devnet; devices authenticate their
records by signature, not to the broker), queue persisted on every change. ``user``: whoever
starts it (started as root, Mosquitto becomes the user mosquitto, cannot write the persistence
directory and runs without persistence, silently). ``max_queued_messages 0``: no per-client
queue bound (the default 1,000 drops records the broker already acknowledged while a gateway
anchors; devices would only recover them by republishing)."""

DEBIAN_BINARY = "/usr/sbin/mosquitto"
"""Where the Debian package puts the broker (not on a user's PATH)."""

START_TIMEOUT_S = 10.0
"""How long :meth:`Mosquitto.start` waits for the port to accept connections."""

STOP_TIMEOUT_S = 5.0
"""How long :meth:`Mosquitto.stop` waits after SIGTERM before SIGKILL."""


def mosquitto_binary() -> str | None:
    """The broker binary on PATH or where the Debian package puts it, or None."""
    return shutil.which("mosquitto") or (
        DEBIAN_BINARY if os.access(DEBIAN_BINARY, os.X_OK) else None
    )


class Mosquitto:
    """One broker process in ``workdir`` (config, persistence, log). ``port`` defaults to a free
    one; :meth:`start` again after :meth:`stop` or a kill reuses port and directory."""

    def __init__(self, workdir: Path, port: int | None = None, conf: str = MOSQUITTO_CONF) -> None:
        self.port = port or free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            conf.format(port=self.port, host=LOOPBACK, dir=self.dir, user=getpass.getuser())
        )
        self.log = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self, *, detach: bool = False) -> Mosquitto:
        """Start and wait until the port accepts; ``detach``: in its own session, so it outlives
        this process (devnet). ChainProcessError with the log's last line if it does not come up."""
        binary = mosquitto_binary()
        if binary is None:
            raise ChainProcessError(
                "mosquitto is not installed: `make setup` or `apt-get install mosquitto`"
            )
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=detach,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        tail = (
            self.log.read_text(errors="replace").strip().splitlines()[-1:]
            if self.log.exists()
            else []
        )
        raise ChainProcessError(f"mosquitto did not start on port {self.port}: {' '.join(tail)}")

    def kill(self) -> None:
        """SIGKILL, reaped: a crash (the persisted queue must survive it)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; reaped."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
