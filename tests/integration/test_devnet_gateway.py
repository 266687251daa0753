"""`lightpost devnet up --gateway` on a real anvil and a real Mosquitto: broker, anchoring
contract, gateway and MQTT device identities come up; a device (device.py, under CPython and
under MicroPython with a 64 KiB heap) publishes readings, gets its receipt and its records are
verified anchored (proven anchor transaction, Merkle inclusion, chain links) by the demo's
check; a device the gateway does not know is rejected; `down` leaves no process behind."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.keys import PrivateKey, parse_address
from lightpost.device import Device
from lightpost.node.chain import Chain
from lightpost_gateway.anchor import ANCHOR_ADDRESS, accumulate, batch_digest, gateway_slots
from lightpost_gateway.receiver import prove_gateway_accumulator
from lightpost_gateway.record import Domain
from lightpost_operator.anvil import AnvilProcess, free_port
from lightpost_operator.devnet import (
    GATEWAY_DIR,
    MOSQUITTO_DIR,
    PID_FILE,
    PID_NAME,
    devnet_down,
    devnet_status,
    devnet_up,
)
from lightpost_operator.gateway_check import verified_readings
from lightpost_operator.gateway_cmd import chain_anchor, deploy_anchor
from lightpost_operator.mosquitto import mosquitto_binary
from lightpost_operator.wallet import send_operator_tx
from tests.conftest import ANVIL_DEV_KEYS
from tests.device.conftest import MICROPYTHON, device_bundle

pytestmark = pytest.mark.integration

READINGS = 3
LEVEL_TIMEOUT_S = 90.0
"""Batches every 5 s, anvil's finality a few blocks behind at 1 s blocks: well within."""


def _run(cmd: list[str], env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _until_final(
    chain: Chain, desc: dict[str, Any], device: dict[str, Any], seqs: set[int]
) -> dict[int, bytes]:
    gw = desc["gateway"]
    domain = Domain(chain_id=desc["chain_id"], anchor=ANCHOR_ADDRESS)
    deadline = time.monotonic() + LEVEL_TIMEOUT_S
    while True:
        got, problems = verified_readings(
            chain,
            Path(gw["db"]),
            domain=domain,
            device=parse_address(device["address"]),
            gateway=parse_address(gw["address"]),
        )
        assert problems == []
        done = {r.seq: r.payload for r in got if r.level in ("final", "complete")}
        if seqs <= set(done):
            return done
        assert time.monotonic() < deadline, (got, problems)
        time.sleep(1)


def test_devnet_gateway_anchors_mqtt_devices_and_down_stops_everything(tmp_path: Path) -> None:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto not installed: make setup")
    net = tmp_path / "net"
    desc = devnet_up(net, port=free_port(), block_time=1, devices=1, gateway=True, mqtt_devices=2)
    pids = [int((net / sub / PID_NAME).read_text()) for sub in (GATEWAY_DIR, MOSQUITTO_DIR)]
    pids.append(int((net / PID_FILE).read_text()))
    chain = Chain([HttpEndpoint(desc["rpc_url"], "rpc#0")], quorum=1)
    try:
        gw = desc["gateway"]
        assert parse_address(gw["anchor"]) == ANCHOR_ADDRESS
        assert chain.balance(parse_address(gw["address"])) > 0  # the gateway pays, devices do not
        first, second = gw["mqtt_devices"]
        authorized = (net / GATEWAY_DIR / "devices.txt").read_text().split()
        assert authorized == [first["address"], second["address"]]
        assert (Path(first["config"]).stat().st_mode & 0o777) == 0o600  # it holds the secret

        events = _run([sys.executable, gw["device_script"], first["config"], str(READINGS), "0.5"])
        sent = {e["seq"]: e["payload"].encode() for e in events if e["kind"] == "sent"}
        assert len(sent) == READINGS and events[-1]["kind"] == "done"
        assert events[-1]["retained"] == 0  # the gateway's receipt released every record
        done = _until_final(chain, desc, first, set(sent))
        assert {s: done[s] for s in sent} == sent
        first_head = max(sent)

        if MICROPYTHON.exists() and device_bundle.mpy_cross() is not None:
            bundle = device_bundle.build(tmp_path / "bundle").parent
            events = _run(
                [
                    str(MICROPYTHON),
                    "-X",
                    "heapsize=64K",
                    gw["device_script"],
                    second["config"],
                    str(READINGS),
                    "0.5",
                ],
                env={"MICROPYPATH": str(bundle)},
            )
            sent = {e["seq"]: e["payload"].encode() for e in events if e["kind"] == "sent"}
            assert len(sent) == READINGS and events[-1]["retained"] == 0
            done = _until_final(chain, desc, second, set(sent))
            assert {s: done[s] for s in sent} == sent

        # a device the gateway was not told about: rejected, nothing of it stored or anchored
        stranger = Device(
            PrivateKey(b"\x42" * 32).secret_bytes(),
            desc["chain_id"],
            ANCHOR_ADDRESS,
            str(tmp_path / "stranger"),
            cadence_s=5,
        )
        host, _, port = gw["broker"].rpartition(":")
        stranger.connect(host, int(port))
        stranger.publish(b"temp", b"{}")
        time.sleep(2)
        stranger.close()

        status = devnet_status(net)
        assert status["gateway"]["gateway_up"] and status["gateway"]["broker_up"]
        by_name = {d["name"]: d for d in status["gateway"]["mqtt_devices"]}
        assert by_name["mqtt-1"]["anchored_seq"] == first_head
        assert by_name["mqtt-1"]["records"] == first_head + 1  # its birth and the readings

        db = sqlite3.connect(gw["db"])
        rejects = db.execute("SELECT COUNT(*) FROM rejects").fetchone()[0]
        stored = db.execute(
            "SELECT COUNT(*) FROM records WHERE device = ?", (stranger.address,)
        ).fetchone()[0]
        db.close()
        assert rejects >= 1 and stored == 0
    finally:
        chain.close()
        devnet_down(net)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gateway, broker and anvil are gone


def test_complete_proves_a_gateway_whose_slot_has_a_leading_zero_nibble(
    fresh_anvil: AnvilProcess,
) -> None:
    """The accumulator's storage keys go to eth_getProof as 32-byte words: anvil refuses 63 hex
    digits, which ``hex(slot)`` gives for one gateway address in 16
    (lightpost_gateway.receiver.prove_gateway_accumulator before the merge failed here)."""
    chain = Chain([HttpEndpoint(fresh_anvil.url, "rpc#0")], quorum=1)
    funder = PrivateKey.from_hex(ANVIL_DEV_KEYS[0])
    gateway = next(
        key
        for key in (PrivateKey(hashlib.sha256(b"gw %d" % i).digest()) for i in range(1000))
        if gateway_slots(key.address)[0] >> 252 == 0
    )
    try:
        chain_id = chain.chain_id()
        _, _, nonce = deploy_anchor(chain, chain_id, funder)
        send_operator_tx(chain, chain_id, funder, nonce=nonce, to=gateway.address, value=10**18)
        chain_anchor(chain, chain_id, gateway)(b"\x01" * 32)
        height = chain.tag_height("latest")
        acc, count = prove_gateway_accumulator(
            chain, gateway=gateway.address, block=height, anchor=ANCHOR_ADDRESS
        )
        assert count == 1 and acc == int.from_bytes(
            accumulate(bytes(32), batch_digest(b"\x01" * 32)), "big"
        )
    finally:
        chain.close()
