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
"""Default seconds between RSS samples (``--every`` overrides; the hour run uses 60)."""

SLOPE_WINDOW_MIN = 20.0
"""The slope of RSS is reported over this many last minutes (the hour run's flatness figure)."""


def slope_mb_per_min(samples: list[tuple[float, float]], window_min: float) -> float | None:
    """Least-squares slope (MB per minute) of (seconds, MB) samples in the last ``window_min``."""
    if not samples:
        return None
    end = samples[-1][0]
    pts = [(t / 60, mb) for t, mb in samples if t >= end - window_min * 60]
    if len(pts) < 2:
        return None
    mt = statistics.fmean(t for t, _ in pts)
    mm = statistics.fmean(m for _, m in pts)
    den = sum((t - mt) ** 2 for t, _ in pts)
    return sum((t - mt) * (m - mm) for t, m in pts) / den if den else None


def at_minute(samples: list[tuple[float, float]], minute: float) -> float | None:
    """The MB sample taken nearest to ``minute`` minutes in (None if the run was shorter)."""
    if not samples or samples[-1][0] < minute * 60 - SAMPLE_EVERY_S:
        return None
    return min(samples, key=lambda s: abs(s[0] - minute * 60))[1]


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
    parser.add_argument("--every", type=float, default=SAMPLE_EVERY_S, help="seconds per sample")
    parser.add_argument("--log", type=Path, default=None, help="append one JSON line per sample")
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
            while True:
                samples.append((round(time.monotonic() - started), rss_kb(console.pid)))
                if args.log is not None:
                    _log_sample(args.log, samples[-1], sizes)
                if time.monotonic() - started >= duration:
                    break
                time.sleep(min(args.every, max(0.0, duration - (time.monotonic() - started))))
            browser.close()
    finally:
        stop.set()
        if console is not None:
            console.terminate()
            console.wait(timeout=30)
        demo.terminate()
        demo.wait(timeout=120)
    mb = [kb / 1024 for _, kb in samples]
    series = [(float(t), kb / 1024) for t, kb in samples]
    slope = slope_mb_per_min(series, SLOPE_WINDOW_MIN)
    marks = {f"rss_mb_at_{m}min": at_minute(series, m) for m in (10, 30, 60)}
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
        "sse_events_per_min": round(len(sizes) / (duration / 60), 1),
        **{k: None if v is None else round(v, 1) for k, v in marks.items()},
        "rss_mb_slope_per_min_last_20min": None if slope is None else round(slope, 3),
    }
    print(json.dumps(out, indent=2))
    return 0


def _log_sample(log: Path, sample: tuple[int, int], sizes: list[int]) -> None:
    t, kb = sample
    row = {"t_s": t, "rss_kb": kb, "sse_events": len(sizes), "sse_bytes": sum(sizes)}
    with log.open("a") as f:
        f.write(json.dumps(row) + "\n")


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "api/state", timeout=5) as r:
            return bool(json.loads(r.read()).get("fleet"))
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
