"""The console page in a real headless chromium on a real anvil devnet: the fleet appears, a
reading sent during the test climbs to `final` within a few blocks, and a forged message injected
by the lying endpoint is shown as a blocked forgery naming that endpoint. With
LIGHTPOST_SCREENSHOTS=DIR (``make screenshots``) the same harness photographs the demo city."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lightpost_operator.anvil import free_port
from lightpost_operator.console_server import open_console
from tests.console.harness import CHANNEL, City, need_browser, wait_for

pytestmark = pytest.mark.integration

FINAL_WITHIN_S = 40.0
"""A reading must be shown at `final` this soon after it is included (1 s blocks)."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    sync_api, chromium = need_browser()
    city = City(tmp_path_factory.mktemp("console"))
    console = follower = None
    try:
        city.send_reading(1200.0)  # history the console finds when it starts
        console, follower = open_console(
            city.config["controller"], devices=city.devices(), since=0, allow_commands=True
        )
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(console.url)
            yield {"city": city, "console": console, "page": page}
            browser.close()
    finally:
        if console is not None:
            console.stop()
        if follower is not None:
            follower.stop()
        city.close()


def test_the_fleet_appears(world: dict[str, Any]) -> None:
    page, city = world["page"], world["city"]
    for name in ("controller", "meter-1"):
        row = page.locator(f'#fleet-rows tr[data-address="{city.address[name]}"]')
        row.wait_for(timeout=30_000)
        assert name in row.inner_text()
    meter = page.locator(f'#fleet-rows tr[data-address="{city.address["meter-1"]}"]')
    page.wait_for_function(
        "(a) => /included|final|complete/.test("
        "document.querySelector(`#fleet-rows tr[data-address='${a}'] .highest`).textContent)",
        arg=city.address["meter-1"],
        timeout=30_000,
    )
    assert "1200" in meter.inner_text()  # its last reading


def test_a_reading_sent_now_shows_up_final_with_its_proof_trail(world: dict[str, Any]) -> None:
    page, city = world["page"], world["city"]
    seq = city.send_reading(4242.5)
    key = f"{city.address['meter-1']}:{CHANNEL}:{seq}"
    started = time.monotonic()
    final = page.locator(
        f'circle[data-key="{key}"][data-level="final"], '
        f'circle[data-key="{key}"][data-level="complete"]'
    )
    final.first.wait_for(timeout=FINAL_WITHIN_S * 1000)
    print(f"reading shown final {time.monotonic() - started:.1f} s after inclusion")
    final.first.click()
    dialog = page.locator("#proof")
    try:
        dialog.locator("text=endpoints that agree on the block").wait_for(timeout=15_000)
        text = dialog.inner_text()
        assert "reached final" in text and "transaction" in text
        assert "rpc#0" in text and "rpc#1" in text
    finally:  # an open dialog would cover the next test's page
        page.locator("#proof-close").click()


def test_a_forged_message_is_shown_blocked_naming_the_lying_endpoint(
    world: dict[str, Any],
) -> None:
    page, city = world["page"], world["city"]
    city.forgery.armed.set()
    try:
        seq = city.send_reading(777.0)
        event = page.locator(
            f'#events li[data-kind="proof-failure"][data-endpoints~="{city.liar_label}"]'
        )
        event.first.wait_for(timeout=40_000)
    finally:
        city.forgery.armed.clear()
    assert city.forgery.fired > 0
    assert f"forged data blocked: {city.liar_label} lied" in event.first.inner_text()
    counts = page.locator(f'#counts tr[data-endpoint="{city.liar_label}"]')
    assert counts.count() == 1
    # the honest reading itself still arrives; no forged value is ever charted
    key = f"{city.address['meter-1']}:{CHANNEL}:{seq}"
    page.locator(f'circle[data-key="{key}"]').first.wait_for(timeout=40_000)
    values = page.evaluate(
        "() => [...document.querySelectorAll('.chart circle title')].map(t => t.textContent)"
    )
    assert all(v.split(" ")[0] in {"1200", "4242.5", "777"} for v in values), values


def test_a_command_is_sent_from_the_page_only_after_an_explicit_confirmation(
    world: dict[str, Any],
) -> None:
    page, city = world["page"], world["city"]
    page.fill("#cmd-target", city.address["meter-1"])
    page.fill("#cmd-name", "set")
    page.fill("#cmd-args", "valve=60")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#command-form button")
    time.sleep(1.5)
    assert page.locator("#command-rows tr").count() == 0  # dismissed: nothing signed or sent
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#command-form button")
    page.wait_for_function(
        "() => /queued as command #1/.test(document.querySelector('#cmd-feedback').textContent)",
        timeout=30_000,
    )
    # on chain, then proven by the console's own follower like any message
    row = page.locator('#command-rows tr[data-command$=":1"]')
    row.locator(".badge").first.wait_for(timeout=60_000)
    assert "set valve=60" in row.inner_text() and "meter-1" in row.inner_text()


def test_nothing_served_names_an_endpoint_url(world: dict[str, Any]) -> None:
    console, city = world["console"], world["city"]
    bodies = []
    for path in ("/", "/console.js", "/console.css", "/api/state"):
        with urllib.request.urlopen(console.url.rstrip("/") + path, timeout=10) as r:
            bodies.append(r.read().decode())
    for body in bodies:
        for url in city.endpoints:
            assert url not in body
            assert url.split("//")[1] not in body  # not even host:port


# -- make screenshots: the same harness during the demo ---------------------------------------

SCREENSHOTS = os.environ.get("LIGHTPOST_SCREENSHOTS")


@pytest.mark.skipif(not SCREENSHOTS, reason="make screenshots sets LIGHTPOST_SCREENSHOTS")
def test_screenshots_of_the_demo_city(tmp_path: Path) -> None:
    sync_api, chromium = need_browser()
    out = Path(str(SCREENSHOTS))
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lightpost.cli.main",
            "demo",
            "--console",
            "--console-port",
            str(port),
            "--no-browser",
            "--duration",
            "45",
            "--dir",
            str(tmp_path / "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: _up(url), 120, "the demo's console")
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.locator('#events li[data-kind="proof-failure"]').first.wait_for(timeout=120_000)
            page.locator('#events li[data-kind="hidden"]').first.wait_for(timeout=120_000)
            # the valve's signed result to the controller's command, when the run gets there
            with contextlib.suppress(sync_api.TimeoutError):
                page.locator("#command-rows td.ok").first.wait_for(timeout=60_000)
            time.sleep(3)
            page.screenshot(path=str(out / "console-desktop.png"), full_page=True)
            page.locator("circle[data-level='final'], circle[data-level='complete']").first.click()
            page.locator("#proof dl").wait_for(timeout=15_000)
            page.screenshot(path=str(out / "console-proof-trail.png"))
            page.locator("#proof-close").click()
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone.goto(url)
            phone.locator("#fleet-rows tr").first.wait_for(timeout=30_000)
            time.sleep(2)
            phone.screenshot(path=str(out / "console-phone.png"), full_page=True)
            browser.close()
    finally:
        demo.terminate()
        try:
            demo.wait(timeout=120)
        except subprocess.TimeoutExpired:
            demo.kill()
    for name in ("console-desktop.png", "console-proof-trail.png", "console-phone.png"):
        assert (out / name).stat().st_size > 10_000


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "api/state", timeout=5) as r:
            return bool(json.loads(r.read()).get("fleet"))
    except OSError:
        return False
