"""The console's browser harness: a small city on a real anvil devnet whose every device asks
[anvil, an honest proxy, a lying proxy] (quorum 2), the console on the controller's config, and
Debian's chromium driven by Playwright (``executable_path``; Playwright never downloads a
browser). Used by tests/console/test_console_browser.py and ``make screenshots``."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lightpost.core.envelope import ContentType
from lightpost.node.config import DeviceConfig, load_config
from lightpost_agent.command import COMMANDS_CHANNEL
from lightpost_operator.anvil import free_port
from lightpost_operator.console_model import DeviceInfo
from lightpost_operator.devnet import devnet_down, devnet_up
from lightpost_operator.proxy import InjectLog, LyingProxy, flip_hex

os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"

CHANNEL = "district-1"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/lib/chromium/chromium")


def find_chromium() -> str | None:
    """Debian's chromium binary, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return next((p for p in CHROMIUM_PATHS if os.access(p, os.X_OK)), None)


def need_browser() -> tuple[Any, str]:
    """(playwright.sync_api, chromium path), or skip with what to install."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("console browser tests need Debian's chromium: apt-get install chromium")
    try:
        from playwright import sync_api
    except ImportError:
        pytest.skip("console browser tests need playwright: make setup")
    return sync_api, chromium


class ArmedForgery(InjectLog):
    """Once armed, adds to eth_getLogs answers a copy of a real reading log with another payload
    (a log that was never emitted) -- the lying endpoint's forged message."""

    def __init__(self) -> None:
        super().__init__(self._make)
        self.armed = threading.Event()

    def _make(self, answer: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.armed.is_set() or not answer:
            return []
        fake = dict(answer[-1])
        fake["data"] = flip_hex(fake["data"], -4)
        return [fake]


class City:
    """A controller and a meter on a devnet; readings are sent with the ordinary send path."""

    def __init__(self, directory: Path, *, block_time: float = 1.0) -> None:
        self.dir = directory
        port = free_port()
        self.upstream = f"http://127.0.0.1:{port}"
        self.forgery = ArmedForgery()
        self.honest = LyingProxy(self.upstream, [], label="honest").start()
        self.liar = LyingProxy(self.upstream, [self.forgery], label="liar").start()
        self.endpoints = [self.upstream, self.honest.url, self.liar.url]
        self.liar_label = "rpc#2"
        names = ["controller", "meter-1"]

        def customize(name: str, addrs: dict[str, str]) -> dict[str, Any]:
            return {
                "endpoints": self.endpoints,
                "quorum": 2,
                "trusted": {CHANNEL: [addrs["meter-1"]], COMMANDS_CHANNEL: [addrs["controller"]]},
                "max_delay_s": 0.2,
            }

        try:
            desc = devnet_up(
                directory / "devnet",
                port=port,
                block_time=block_time,
                names=names,
                customize=customize,
            )
        except BaseException:
            self.close()
            raise
        self.address = {d["name"]: d["address"] for d in desc["devices"]}
        self.config: dict[str, DeviceConfig] = {
            d["name"]: load_config(d["config"]) for d in desc["devices"]
        }
        self.n = 0

    def devices(self) -> list[DeviceInfo]:
        return [
            DeviceInfo(address=self.address["controller"], name="controller", role="controller"),
            DeviceInfo(address=self.address["meter-1"], name="meter-1", role="meter"),
        ]

    def send_reading(self, kwh: float) -> int:
        """Send one reading from the meter; returns its seq once included."""
        from lightpost.cli.node_cmds import send_and_wait

        self.n += 1
        payload = json.dumps({"id": "meter-1", "n": self.n, "kWh": kwh}).encode()
        view = send_and_wait(
            self.config["meter-1"],
            payload=payload,
            channel=CHANNEL,
            recipient=None,
            content_type=ContentType.JSON,
            wait="included",
            timeout=60,
        )
        assert view["state"] in ("included", "final"), view
        return int(view["seq"])

    def close(self) -> None:
        for proxy in (self.liar, self.honest):
            proxy.stop()
        if (self.dir / "devnet" / "devnet.json").exists():
            devnet_down(self.dir / "devnet")


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
