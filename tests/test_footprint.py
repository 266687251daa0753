"""The device core's installed size is measured, not guessed (issue #2: <= 4 MB)."""

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
        f"device core installed: {report['total_bytes'] / 1e6:.2f} MB "
        f"(with bytecode caches {report['with_bytecode_bytes'] / 1e6:.2f} MB)",
        report["packages"],
    )
    # exactly the allowed distributions: lightpost, one secp256k1 binding, one keccak
    assert set(report["packages"]) <= {"lightpost", "coincurve", "safe_pysha3", "(unlisted)"}
    assert report["total_bytes"] <= report["budget_bytes"] == 4_000_000
    assert out.returncode == 0
