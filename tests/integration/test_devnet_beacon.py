"""`lightpost devnet up --beacon`: the devnet serves a beacon light-client API over anvil in the
background and every device config trusts it (trust = "beacon", [beacon] with its URL and the
root of block 1); a receiver built from that config alone syncs through the real spec path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lightpost.core.levels import Level
from lightpost.core.verify import Problem
from lightpost.node.config import load_config
from lightpost.node.receiver import Receiver
from lightpost_operator.anvil import free_port
from lightpost_operator.devnet import BEACON_PID_FILE, devnet_down, devnet_up

pytest.importorskip("py_arkworks_bls12381", reason="the lightpost[beacon] extra")

pytestmark = pytest.mark.integration


def test_devnet_up_beacon_gives_devices_a_beacon_trust_root(tmp_path: Path) -> None:
    net = tmp_path / "net"
    desc = devnet_up(net, port=free_port(), block_time=1, devices=1, beacon=True)
    pid = int((net / BEACON_PID_FILE).read_text())
    try:
        config = load_config(desc["devices"][0]["config"])
        assert config.trust == "beacon" and config.beacon.labels == ("beacon#0",)
        with Receiver(config) as receiver:
            out = list(receiver.poll(Level.INCLUDED))
            assert [o for o in out if isinstance(o, Problem)] == []
            head = receiver.anchor.head(final=False)
            assert head.number >= 1
            assert config.beacon.state_file.is_file()
    finally:
        devnet_down(net)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # down stops the beacon API too
