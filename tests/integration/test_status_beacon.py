"""`lightpost status` and `lightpost doctor` on ``trust = "beacon"`` (issue 15): the devnet's
beacon light-client API (``devnet up --beacon``) is probed -- reachable, fork and slot of its
finality update, which verifies against the trusted root -- and once it is gone no beacon endpoint
serves a verifiable update: both say unhealthy, naming beacon#0, never its URL."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost_operator.anvil import free_port
from lightpost_operator.devnet import BEACON_PID_FILE, devnet_down, devnet_up
from tests.conftest import run_cli

pytest.importorskip("py_arkworks_bls12381", reason="the lightpost[beacon] extra")

pytestmark = pytest.mark.integration

FINALIZED_FROM = 20
"""Blocks to wait for: the devnet finalizes a block 16 slots behind its head (1 s blocks)."""


def test_status_and_doctor_probe_the_beacon_endpoints(tmp_path: Path) -> None:
    net = tmp_path / "net"
    desc = devnet_up(net, port=free_port(), block_time=1, devices=1, beacon=True)
    try:
        config = desc["devices"][0]["config"]
        beacon_url = Path(config).read_text().split("[beacon]\nendpoints = [")[1].split('"')[1]
        rpc = HttpEndpoint(desc["rpc_url"], "test", retries=0)
        deadline = time.monotonic() + 90
        while int(rpc.call("eth_blockNumber", []), 16) < FINALIZED_FROM:
            assert time.monotonic() < deadline, "the devnet does not mine"
            time.sleep(1)
        out = run_cli("status", "--config", config, "--json", timeout=120)
        st = json.loads(out.stdout)
        (row,) = st["beacon"]["endpoints"]
        assert row["label"] == "beacon#0" and row["reachable"] and row["verifies"], row
        assert row["fork"] == "fulu" and row["slot"] > row["finalized_slot"] >= 1
        assert not [r for r in st["reasons"] if "beacon" in r]
        text = run_cli("status", "--config", config, timeout=120).stdout
        assert "beacon:     beacon#0 fulu, slot " in text and ": verifies" in text
        doctor = run_cli("doctor", "--config", config, timeout=120)
        assert "light client: " in doctor.stdout and ": verifies" in doctor.stdout

        os.kill(int((net / BEACON_PID_FILE).read_text()), signal.SIGTERM)
        time.sleep(1)
        down = run_cli("status", "--config", config, "--json", timeout=120)
        assert down.returncode == 1
        st = json.loads(down.stdout)
        assert not st["healthy"] and not st["beacon"]["endpoints"][0]["reachable"]
        assert any(
            r.startswith("no beacon endpoint serves a verifiable finality update (beacon#0: ")
            for r in st["reasons"]
        )
        doctor = run_cli("doctor", "--config", config, "--json", timeout=120)
        assert doctor.returncode == 1
        report = json.loads(doctor.stdout)
        assert "no beacon endpoint serves a verifiable finality update" in report["verdict"]
        for output in (down.stdout, doctor.stdout):
            assert beacon_url not in output
    finally:
        devnet_down(net)
