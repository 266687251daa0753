"""The gateway end to end: a device (lightpost.device on CPython, no ETH, no RPC endpoint) ->
a real Mosquitto -> the gateway (shared subscription) -> a real anvil. The device gets its
receipt and releases its records; the anchored root is proven to hold the device's head; a record
signed by another key on the device's topic is refused with a reason, a republished one is not
batched twice; a gateway killed after its commit but before anchoring anchors on restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.hashing import keccak256
from lightpost.core.keys import PrivateKey
from lightpost.device import Device
from lightpost.device.mqtt import Client
from lightpost.errors import ProofError
from lightpost.node.chain import Chain
from lightpost_gateway.admit import reject_topic
from lightpost_gateway.anchor import ANCHOR_ADDRESS, EVENT_TOPIC, batch_digest
from lightpost_gateway.batch import Leaf, batch_root, prove_inclusion, verify_inclusion
from lightpost_gateway.receiver import prove_anchor_tx, prove_gateway_accumulator
from lightpost_gateway.record import Domain, open_record
from lightpost_gateway.relay import posted_records, verify_complete, verify_relayed
from lightpost_gateway.service import Anchored, Gateway, GatewayClient, GatewayStore
from lightpost_operator.anvil import AnvilProcess
from lightpost_operator.gateway_cmd import chain_anchor, deploy_anchor, shared_topic
from tests.conftest import ANVIL_DEV_KEYS
from tests.device.conftest import Mosquitto

SECRET = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
OTHER = bytes.fromhex("8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f")
READINGS = 3


def _gateway(
    broker: Mosquitto, db: Path, domain: Domain, anchor: object, name: str = "gw1"
) -> Gateway:
    sub, pub = GatewayClient(name), GatewayClient(name + "-pub")
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe(shared_topic("test"))
    pub.connect("127.0.0.1", broker.port)
    return Gateway(
        store=GatewayStore(db),
        domain=domain,
        anchor=anchor,  # type: ignore[arg-type]
        sub=sub,
        pub=pub,
        batch_interval_s=0,
    )


@contextmanager
def _on_chain(
    node: AnvilProcess, broker: Mosquitto, tmp_path: Path
) -> Iterator[tuple[Chain, Gateway]]:
    """The anchoring contract deployed on ``node`` and a gateway paying from anvil's 2nd key."""
    chain = Chain([HttpEndpoint(node.url, "rpc#0")], quorum=1)
    funder, payer = (PrivateKey.from_hex(k) for k in ANVIL_DEV_KEYS[:2])
    try:
        chain_id = chain.chain_id()
        deploy_anchor(chain, chain_id, funder)
        domain = Domain(chain_id=chain_id, anchor=ANCHOR_ADDRESS)
        anchor = chain_anchor(chain, chain_id, payer)
        yield chain, _gateway(broker, tmp_path / "gw.sqlite", domain, anchor)
    finally:
        chain.close()


def _receive_until(gateway: Gateway, verdict: str, n: int) -> None:
    deadline = time.monotonic() + 20
    while gateway.counts[verdict] < n:
        assert time.monotonic() < deadline, gateway.counts
        gateway.receive(time.time(), 200)


def test_device_to_chain_and_back(
    fresh_anvil: AnvilProcess, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with _on_chain(fresh_anvil, mosquitto, tmp_path) as (chain, gateway):
        chain_id, domain = gateway.domain.chain_id, gateway.domain

        dev = Device(SECRET, chain_id, ANCHOR_ADDRESS, str(tmp_path / "flash"), cadence_s=60)
        dev.connect("127.0.0.1", mosquitto.port)  # publishes its birth
        for i in range(READINGS):
            dev.publish(b"temp", b'{"c": %d}' % i, content_type=2)
        # an impostor on the device's topic: another key, refused with a reason
        impostor = Device(OTHER, chain_id, ANCHOR_ADDRESS, str(tmp_path / "flash2"))
        _, _, forged = impostor.record(0, b"temp", b"forged")
        watcher = Client("watcher")
        watcher.connect("127.0.0.1", mosquitto.port)
        watcher.subscribe(reject_topic(dev.address))
        watcher.publish(dev.topic, forged)

        _receive_until(gateway, "accept", READINGS + 1)
        _receive_until(gateway, "reject", 1)
        watcher.poll(2000)
        assert watcher.inbox and watcher.inbox[0][0] == reject_topic(dev.address)
        assert b"not signed by this device" in watcher.inbox[0][1]

        batch = gateway.step(time.time())
        assert batch is not None
        assert gateway.step(time.time()) is None  # nothing left to batch

        deadline = time.monotonic() + 20
        while dev.store.retained():
            assert time.monotonic() < deadline, dev.store.retained()
            dev.poll(200)
        assert dev.seq == READINGS + 1  # birth + readings, all released by the receipt

        # the chain: one event whose digest is keccak(root); the root holds the device's head
        row = gateway.store.db.execute(
            "SELECT root, tx_hash FROM batches WHERE id = ?", (batch,)
        ).fetchone()
        root, tx_hash = bytes(row[0]), bytes(row[1])
        receipt = chain.receipt_hint(tx_hash)
        assert receipt is not None
        (log,) = receipt["logs"]
        assert log["topics"][0] == "0x" + EVENT_TOPIC.hex()
        assert log["data"].endswith(batch_digest(root).hex())
        leaf = Leaf(device=dev.address, first_seq=0, last_seq=READINGS, head=dev.head)
        assert batch_root([leaf]) == root
        verify_inclusion(root, leaf, prove_inclusion([leaf], 0))

        # a receiver: the relayed records, checked against the anchor tx proven in its block
        wires, relayed_leaf, proof, relayed_tx, block = gateway.relay(dev.address, batch)
        assert relayed_leaf == leaf and relayed_tx == tx_hash
        anchor_tx, anchor_receipt = prove_anchor_tx(
            chain, chain_id=chain_id, tx_hash=tx_hash, block=block
        )
        claim = {"device": dev.address, "leaf": relayed_leaf, "proof": proof, "domain": domain}
        got = verify_relayed(wires, tx=anchor_tx, receipt=anchor_receipt, **claim)  # type: ignore[arg-type]
        assert [h for _, h in got][-1] == dev.head and len(got) == READINGS + 1
        with pytest.raises(ProofError):  # a gateway that swaps two readings is caught
            verify_relayed(
                [wires[0], wires[2], wires[1], *wires[3:]],
                tx=anchor_tx,
                receipt=anchor_receipt,
                **claim,  # type: ignore[arg-type]
            )

        # complete: the receiver saw every batch of this gateway (proven from the contract)
        acc, count = prove_gateway_accumulator(
            chain, gateway=anchor_tx.sender, block=block, anchor=ANCHOR_ADDRESS
        )
        verify_complete([batch_digest(root)], proven_acc=acc, proven_count=count)
        with pytest.raises(ProofError):  # had the gateway withheld this batch
            verify_complete([], proven_acc=acc, proven_count=count)

        # the device republishes its last record (say, it missed the receipt): not batched again
        wire = gateway.store.wire(dev.address, READINGS)
        assert wire is not None and open_record(wire, domain)[2] == dev.head
        watcher.publish(dev.topic, wire)
        _receive_until(gateway, "duplicate", 1)
        assert gateway.step(time.time()) is None
        watcher.disconnect()
        dev.close()


def test_a_crash_between_commit_and_anchor_is_resumed(mosquitto: Mosquitto, tmp_path: Path) -> None:
    domain = Domain(chain_id=31337, anchor=ANCHOR_ADDRESS)
    anchored: list[bytes] = []

    def crash(_calldata: bytes) -> Anchored:
        raise KeyboardInterrupt  # stands in for kill -9 after the batch was committed

    def anchor(calldata: bytes) -> Anchored:
        anchored.append(calldata)
        return Anchored(tx_hash=keccak256(calldata), block=7)

    db = tmp_path / "gw.sqlite"
    gateway = _gateway(mosquitto, db, domain, crash)
    dev = Device(SECRET, 31337, ANCHOR_ADDRESS, str(tmp_path / "flash"))
    dev.connect("127.0.0.1", mosquitto.port)
    dev.publish(b"temp", b"1")
    _receive_until(gateway, "accept", 2)
    with pytest.raises(KeyboardInterrupt):
        gateway.step(time.time())
    gateway.sub.close()
    gateway.pub.close()
    gateway.store.close()

    again = _gateway(mosquitto, db, domain, anchor, name="gw1b")
    assert again.step(time.time()) is None  # no new batch: the old one is resumed
    (calldata,) = anchored
    assert calldata == batch_root(
        [Leaf(device=dev.address, first_seq=0, last_seq=1, head=dev.head)]
    )
    deadline = time.monotonic() + 20
    while dev.store.retained():
        assert time.monotonic() < deadline
        dev.poll(200)
    dev.close()


def test_a_crash_before_commit_loses_nothing(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Nothing is acknowledged before it is committed: a gateway dying inside its commit leaves
    the records unacknowledged, and the broker delivers them again to its next session."""
    domain = Domain(chain_id=31337, anchor=ANCHOR_ADDRESS)
    db = tmp_path / "gw.sqlite"
    gateway = _gateway(mosquitto, db, domain, None)

    def die(*_a: object, **_k: object) -> list[object]:
        raise KeyboardInterrupt  # stands in for kill -9 before COMMIT

    gateway.store.admit_all = die  # type: ignore[method-assign]
    dev = Device(SECRET, 31337, ANCHOR_ADDRESS, str(tmp_path / "flash"))
    dev.connect("127.0.0.1", mosquitto.port)
    dev.publish(b"temp", b"1")
    deadline = time.monotonic() + 20
    with pytest.raises(KeyboardInterrupt):
        while time.monotonic() < deadline:
            gateway.receive(time.time(), 200)
    gateway.sub.shut()  # no DISCONNECT: the session and its unacknowledged messages stay
    gateway.pub.shut()
    gateway.store.close()

    again = _gateway(mosquitto, db, domain, None)
    _receive_until(again, "accept", 2)  # the birth and the reading, delivered again
    assert again.store.wire(dev.address, 1) is not None
    dev.close()


def test_two_gateways_share_one_broker(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """$share/<group>/lp/1/d/+: the broker splits one device's records between two gateways;
    each record is stored by exactly one, and their receipts release everything on the device."""
    domain = Domain(chain_id=31337, anchor=ANCHOR_ADDRESS)
    calls: list[bytes] = []

    def anchor(calldata: bytes) -> Anchored:
        calls.append(calldata)
        return Anchored(tx_hash=keccak256(calldata), block=len(calls))

    gateways = [
        _gateway(mosquitto, tmp_path / f"gw{i}.sqlite", domain, anchor, name=f"gw{i}")
        for i in range(2)
    ]
    dev = Device(SECRET, 31337, ANCHOR_ADDRESS, str(tmp_path / "flash"))
    dev.connect("127.0.0.1", mosquitto.port)
    readings = 10
    for i in range(readings):
        dev.publish(b"temp", b"%d" % i)
    deadline = time.monotonic() + 20
    while sum(g.counts["accept"] for g in gateways) < readings + 1:
        assert time.monotonic() < deadline, [g.counts for g in gateways]
        for g in gateways:
            g.receive(time.time(), 50)
    held = [{s for (s,) in g.store.db.execute("SELECT seq FROM records")} for g in gateways]
    assert held[0] and held[1], "the broker gave one gateway everything"
    assert not held[0] & held[1] and held[0] | held[1] == set(range(readings + 1))
    for g in gateways:
        g.step(time.time())
    deadline = time.monotonic() + 20
    while dev.store.retained():
        assert time.monotonic() < deadline, dev.store.retained()
        dev.poll(200)
    dev.close()


def test_micropython_device_through_the_gateway_to_anvil(
    mp_bundle: Path,
    mosquitto: Mosquitto,
    fresh_anvil: AnvilProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 14's first 'done when', up to `included`: a MicroPython device under a 64 KiB heap,
    with no ETH and no RPC endpoint, publishes readings; the gateway anchors them on anvil; the
    device takes its receipt and releases them; a receiver proves them at `included`."""
    import tests.device.test_micropython as mp

    monkeypatch.setattr(mp, "ANCHOR", ANCHOR_ADDRESS.hex())  # the script's anchor (argv)
    with _on_chain(fresh_anvil, mosquitto, tmp_path) as (chain, gateway):
        chain_id, domain = gateway.domain.chain_id, gateway.domain
        proc = mp._device(mp_bundle, tmp_path / "flash", mosquitto.port, 5, 20, 30_000)
        try:
            _receive_until(gateway, "accept", 6)  # birth + 5 readings
            batch = gateway.step(time.time())
            assert batch is not None
            out, _ = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 0, out
        assert "retained []" in out, out
        device = mp.ADDRESS
        wires, leaf, proof, tx_hash, block = gateway.relay(device, batch)
        tx, receipt = prove_anchor_tx(chain, chain_id=chain_id, tx_hash=tx_hash, block=block)
        got = verify_relayed(
            wires, device=device, leaf=leaf, proof=proof, tx=tx, receipt=receipt, domain=domain
        )
        assert [r.record.seq for r, _ in got] == list(range(6))
        print(out)


def test_posted_mode_puts_the_records_in_calldata(
    fresh_anvil: AnvilProcess, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with _on_chain(fresh_anvil, mosquitto, tmp_path) as (chain, gateway):
        gateway.mode = "posted"
        dev = Device(SECRET, gateway.domain.chain_id, ANCHOR_ADDRESS, str(tmp_path / "flash"))
        dev.connect("127.0.0.1", mosquitto.port)
        for i in range(READINGS):
            dev.publish(b"temp", b"%d" % i)
        _receive_until(gateway, "accept", READINGS + 1)
        batch = gateway.step(time.time())
        assert batch is not None
        deadline = time.monotonic() + 20
        while dev.store.retained():
            assert time.monotonic() < deadline, dev.store.retained()
            dev.poll(200)
        tx_hash, block = gateway.store.db.execute(
            "SELECT tx_hash, block FROM batches WHERE id = ?", (batch,)
        ).fetchone()
        tx, receipt = prove_anchor_tx(
            chain, chain_id=gateway.domain.chain_id, tx_hash=bytes(tx_hash), block=block
        )
        got = posted_records(tx, receipt, domain=gateway.domain)
        assert {d for _, d, _ in got} == {dev.address}
        assert [r.record.seq for r, _, _ in got] == list(range(READINGS + 1))
        assert got[-1][2] == dev.head
        dev.close()
