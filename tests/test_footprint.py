"""The device core's installed size is measured, not guessed (issue #2: <= 4 MB).

Measured as a user installs it: `pip install lightpost` in a fresh venv, bytecode included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_device_core_installs_within_budget() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "footprint.py"), "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(out.stdout)
    print(
        f"device core installed: {report['total_bytes'] / 1e6:.2f} MB, "
        f"with [fast]: {report['fast_total_bytes'] / 1e6:.2f} MB",
        report["packages"],
    )
    # `pip install lightpost` is lightpost and one secp256k1 binding, nothing else; the
    # operator tools are not in it
    assert set(report["packages"]) == {"lightpost", "coincurve"}
    assert set(report["fast_packages"]) == {"lightpost", "coincurve", "safe_pysha3"}
    # bytecode included: pip writes it on install, so it is part of what a device stores
    assert report["total_bytes"] <= report["budget_bytes"] == 4_000_000
    assert out.returncode == 0
