"""Measure the console: its process's RSS with a page open in chromium, sampled over a demo run,
and the bytes of each server-sent event (``python -m tests.console.measure --minutes 10``).

Runs the demo city (its own processes), a separate ``lightpost console`` process on the demo's
controller config, one chromium tab on it (Playwright, executable_path) and one raw event-stream
reader that counts bytes per event. Prints one JSON object."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from lightpost_operator.anvil import free_port
from tests.console.harness import need_browser, wait_for

SAMPLE_EVERY_S = 30.0


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def read_stream(url: str, sizes: list[int], stop: threading.Event) -> None:
    with urllib.request.urlopen(url + "api/events", timeout=60) as resp:
        chunk = b""
        while not stop.is_set():
            line = resp.readline()
            if not line:
                return
            chunk += line
            if line == b"\n":
                if chunk.startswith(b"id:"):
                    sizes.append(len(chunk))
                chunk = b""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    duration = args.minutes * 60
    work = Path(tempfile.mkdtemp(prefix="lightpost-console-measure-"))
    sync_api, chromium = need_browser()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lightpost.cli.main",
            "demo",
            "--duration",
            str(duration + 30),
            "--dir",
            str(work / "demo"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    console = None
    samples: list[tuple[float, int]] = []
    sizes: list[int] = []
    stop = threading.Event()
    try:
        desc_path = work / "demo" / "devnet" / "devnet.json"
        wait_for(desc_path.exists, 120, "the demo's devnet")
        time.sleep(2)
        desc = json.loads(desc_path.read_text())
        controller = next(d for d in desc["devices"] if d["name"] == "controller")
        labels = {d["address"]: {"name": d["name"]} for d in desc["devices"]}
        (work / "labels.json").write_text(json.dumps(labels))
        port = free_port()
        console = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lightpost.cli.main",
                "console",
                "--config",
                controller["config"],
                "--port",
                str(port),
                "--devices",
                str(work / "labels.json"),
                "--since",
                "0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: _up(url), 60, "the console")
        threading.Thread(target=read_stream, args=(url, sizes, stop), daemon=True).start()
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(url)
            started = time.monotonic()
            while time.monotonic() - started < duration:
                samples.append((round(time.monotonic() - started), rss_kb(console.pid)))
                time.sleep(SAMPLE_EVERY_S)
            samples.append((round(time.monotonic() - started), rss_kb(console.pid)))
            browser.close()
    finally:
        stop.set()
        if console is not None:
            console.terminate()
            console.wait(timeout=30)
        demo.terminate()
        demo.wait(timeout=120)
    mb = [kb / 1024 for _, kb in samples]
    later = mb[len(mb) // 3 :]
    out: dict[str, Any] = {
        "minutes": args.minutes,
        "rss_mb_samples": [(t, round(kb / 1024, 1)) for t, kb in samples],
        "rss_mb_first": round(mb[0], 1),
        "rss_mb_max": round(max(mb), 1),
        "rss_mb_last": round(mb[-1], 1),
        "rss_mb_spread_after_first_third": round(max(later) - min(later), 1),
        "sse_events": len(sizes),
        "sse_bytes_median": statistics.median(sizes) if sizes else None,
        "sse_bytes_p95": statistics.quantiles(sizes, n=20)[-1] if len(sizes) > 20 else None,
        "sse_bytes_per_s": round(sum(sizes) / duration, 1),
    }
    print(json.dumps(out, indent=2))
    return 0


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "api/state", timeout=5) as r:
            return bool(json.loads(r.read()).get("fleet"))
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
