"""A short run of the smart-city demo: separate device processes on a real anvil, a
lying endpoint in every device's list, MQTT devices under MicroPython through a gateway (when
MicroPython and Mosquitto are installed), and a report whose verdict must be green."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lightpost_operator.demo_mqtt import mqtt_unavailable

pytestmark = pytest.mark.integration


def test_short_demo_is_green_and_every_attack_is_caught(tmp_path: Path) -> None:
    mqtt = mqtt_unavailable() is None
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lightpost.cli.main",
            "demo",
            "--devices",
            "2",
            "--duration",
            "25",
            "--dir",
            str(tmp_path / "demo"),
            "--json",
            *(["--require-mqtt"] if mqtt else ["--mqtt-devices", "0"]),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    report = json.loads(out.stdout)
    verdict = {k: report[k] for k in ("attacks", "messages", "commands", "errors", "problems")}
    assert out.returncode == 0, (json.dumps(verdict), out.stderr[-2000:])
    assert report["ok"] is True
    assert report["forged_accepted"] == 0
    assert report["messages"]["sent"] > 10
    assert report["messages"]["lost"] == []
    assert report["messages"]["delivered"]["complete"] == report["messages"]["sent"]
    for name, attack in report["attacks"].items():
        assert attack["fired"] > 0, f"attack {name} never fired"
        assert attack["caught"], f"attack {name} not caught"
    assert report["commands"]["executed"] >= 1
    assert report["commands"]["results_received"] >= 1
    # batching: a reading costs less than the paper's one transaction per message
    assert report["gas"]["per_reading"] < report["gas"]["paper_per_message"]
    if mqtt:  # devices without an OS: every reading verified through the gateway, complete
        q = report["mqtt"]
        assert q["devices"] == 2 and q["interpreter"] == "micropython -X heapsize=64K"
        assert q["sent"] > 0 and q["delivered"]["complete"] == q["sent"]
