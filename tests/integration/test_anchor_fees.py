"""Gateway anchoring under fee spikes, stuck transactions and kill -9, on a real anvil.

Before this, ``chain_anchor`` signed at nonce "pending" at the base fee of the moment and waited
for a receipt: a base fee spiked after the broadcast left the transaction unmined with no bump,
a base fee above the cap refused every retry, and a restart after the broadcast anchored the
batch again at the next nonce. Now anchoring goes through the outbox machinery
(lightpost_operator.anchoring.AnchorSender): bumps at the SAME nonce, a hold under the cap,
the signed transaction stored before it is sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.adapters.store import Store
from lightpost.core.fees import Eip1559FeePolicy
from lightpost.core.keys import PrivateKey
from lightpost.core.outbox import State
from lightpost.node.chain import Chain
from lightpost_gateway.anchor import ANCHOR_ADDRESS, anchored_calldata, gateway_slots
from lightpost_operator.anchoring import AnchorSender
from lightpost_operator.anvil import AnvilProcess
from lightpost_operator.gateway_cmd import deploy_anchor
from tests.conftest import ANVIL_DEV_KEYS

GWEI = 10**9
ROOT = bytes(range(32))


def rpc(url: str, method: str, params: list[Any]) -> Any:
    return HttpEndpoint(url, "test", retries=0, timeout=60).call(method, params)


@pytest.fixture
def net(fresh_anvil: AnvilProcess) -> Iterator[tuple[str, Chain, int, PrivateKey]]:
    chain = Chain([HttpEndpoint(fresh_anvil.url, "rpc#0")], quorum=1)
    funder, payer = (PrivateKey.from_hex(k) for k in ANVIL_DEV_KEYS[:2])
    try:
        chain_id = chain.chain_id()
        deploy_anchor(chain, chain_id, funder)
        yield fresh_anvil.url, chain, chain_id, payer
    finally:
        chain.close()


def _sender(chain: Chain, chain_id: int, payer: PrivateKey, path: Path, **kw: Any) -> AnchorSender:
    kw.setdefault("policy", Eip1559FeePolicy())
    return AnchorSender(
        chain=chain, chain_id=chain_id, key=payer, store=Store.open(path), round_s=0.0, **kw
    )


def _batches(url: str, payer: PrivateKey) -> int:
    """The anchoring contract's batch count for ``payer`` (each anchoring adds one)."""
    _, count = gateway_slots(payer.address)
    return int(
        rpc(url, "eth_getStorageAt", ["0x" + ANCHOR_ADDRESS.hex(), hex(count), "latest"]), 16
    )


def _mined_nonce(url: str, payer: PrivateKey) -> int:
    return int(rpc(url, "eth_getTransactionCount", ["0x" + payer.address.hex(), "latest"]), 16)


def _until(sender: AnchorSender, calldata: bytes, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = sender(calldata)
        if done is not None:
            return done
        time.sleep(0.1)
    raise AssertionError(f"not anchored: hold={sender.hold} problems={sender.problems}")


def test_a_stuck_anchoring_is_replaced_at_the_same_nonce_and_mined(
    net: tuple[str, Chain, int, PrivateKey], tmp_path: Path
) -> None:
    url, chain, chain_id, payer = net
    sender = _sender(chain, chain_id, payer, tmp_path / "outbox", stuck_after_s=0.5)
    calldata = anchored_calldata(ROOT)
    try:
        rpc(url, "evm_setAutomine", [False])
        assert sender(calldata) is None  # signed at the base fee now, sent
        first = sender.store.pending_transactions()
        assert len(first) == 1 and first[0].nonce == 0
        # The base fee spikes right after the broadcast (under the 100 gwei cap): not mined.
        rpc(url, "anvil_setNextBlockBaseFeePerGas", [hex(30 * GWEI)])
        rpc(url, "evm_mine", [])
        assert _mined_nonce(url, payer) == 0
        time.sleep(0.6)
        assert sender(calldata) is None  # stuck: bumped, same nonce
        (bumped,) = sender.store.pending_transactions()
        assert bumped.id == first[0].id and bumped.nonce == 0
        assert bumped.tx_hash != first[0].tx_hash and len(bumped.candidates) == 2
        assert bumped.fees.max_fee_per_gas >= first[0].fees.max_fee_per_gas * 110 // 100
        assert bumped.fees.max_fee_per_gas > 30 * GWEI
        rpc(url, "evm_mine", [])
        done = _until(sender, calldata)
        assert done.tx_hash == bumped.tx_hash
        receipt = rpc(url, "eth_getTransactionReceipt", ["0x" + bumped.tx_hash.hex()])
        assert int(receipt["blockNumber"], 16) == done.block
    finally:
        rpc(url, "evm_setAutomine", [True])
        sender.close()
        sender.store.close()
    assert _mined_nonce(url, payer) == 1 and _batches(url, payer) == 1


def test_a_base_fee_above_the_cap_holds_anchoring_then_it_resumes(
    net: tuple[str, Chain, int, PrivateKey], tmp_path: Path
) -> None:
    url, chain, chain_id, payer = net
    policy = Eip1559FeePolicy(max_fee_cap=20 * GWEI)
    sender = _sender(chain, chain_id, payer, tmp_path / "outbox", policy=policy)
    calldata = anchored_calldata(ROOT)
    try:
        rpc(url, "anvil_setNextBlockBaseFeePerGas", [hex(50 * GWEI)])
        rpc(url, "evm_mine", [])
        for _ in range(3):
            assert sender(calldata) is None
        assert sender.hold is not None and "above the fee cap" in sender.hold
        assert sender.store.pending_transactions() == []  # held, nothing signed
        assert not sender.problems  # a hold is not a failure
        rpc(url, "anvil_setNextBlockBaseFeePerGas", [hex(GWEI)])
        rpc(url, "evm_mine", [])
        done = _until(sender, calldata)
        assert sender.hold is None
        tx = sender.store.find_by_hash(done.tx_hash)
        assert tx is not None and tx.nonce == 0 and tx.state is State.INCLUDED
    finally:
        sender.close()
        sender.store.close()
    assert _mined_nonce(url, payer) == 1 and _batches(url, payer) == 1


def test_a_signed_anchoring_is_held_not_dropped_while_the_fee_is_above_the_cap(
    net: tuple[str, Chain, int, PrivateKey], tmp_path: Path
) -> None:
    """Signed, then the base fee rises above the cap and a pool drops the transaction: it is kept
    and re-sent (never re-signed at a new nonce, never bumped past the cap), mined when the fee
    falls."""
    url, chain, chain_id, payer = net
    policy = Eip1559FeePolicy(max_fee_cap=20 * GWEI)
    sender = _sender(
        chain,
        chain_id,
        payer,
        tmp_path / "outbox",
        policy=policy,
        stuck_after_s=0.3,
        rebroadcast_s=0.3,
    )
    calldata = anchored_calldata(ROOT)
    try:
        rpc(url, "evm_setAutomine", [False])
        assert sender(calldata) is None
        (tx,) = sender.store.pending_transactions()
        rpc(url, "anvil_setNextBlockBaseFeePerGas", [hex(50 * GWEI)])
        rpc(url, "evm_mine", [])
        rpc(url, "anvil_dropTransaction", ["0x" + tx.tx_hash.hex()])
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert sender(calldata) is None
            time.sleep(0.1)
        assert sender.hold is not None
        (kept,) = sender.store.pending_transactions()
        assert kept.id == tx.id and kept.nonce == 0 and len(kept.candidates) == 1
        assert "anchoring" in sender.problems  # re-sent; this node refuses it under the base fee
        rpc(url, "anvil_setNextBlockBaseFeePerGas", [hex(GWEI)])
        rpc(url, "evm_mine", [])
        rpc(url, "evm_setAutomine", [True])
        done = _until(sender, calldata)
        assert sender.hold is None
        assert sender.store.find_by_hash(done.tx_hash).id == tx.id  # type: ignore[union-attr]
    finally:
        rpc(url, "evm_setAutomine", [True])
        sender.close()
        sender.store.close()
    assert _mined_nonce(url, payer) == 1 and _batches(url, payer) == 1


_KILLED = """
import os, signal, sys
from pathlib import Path
from lightpost.adapters.rpc import HttpEndpoint
from lightpost.adapters.store import Store
from lightpost.core.fees import Eip1559FeePolicy
from lightpost.core.keys import PrivateKey
from lightpost.node.chain import Chain
from lightpost_operator.anchoring import AnchorSender

url, key, path, when = sys.argv[1:5]
chain = Chain([HttpEndpoint(url, "rpc#0")], quorum=1)
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
sender = AnchorSender(chain=chain, chain_id=chain.chain_id(), key=PrivateKey.from_hex(key),
    store=Store.open(Path(path)), policy=Eip1559FeePolicy(), round_s=0.0,
    crash=die if when == "before-send" else lambda: None)
if when == "after-send":
    real = chain.broadcast
    def broadcast(raw, tx_hash):
        real(raw, tx_hash)
        die()
    chain.broadcast = broadcast
sender(bytes(range(32)))
sys.exit(3)  # not reached: killed
"""


@pytest.mark.parametrize("when", ["before-send", "after-send"])
def test_kill_9_between_signing_and_recording_anchors_once_at_one_nonce(
    net: tuple[str, Chain, int, PrivateKey], tmp_path: Path, when: str
) -> None:
    url, chain, chain_id, payer = net
    path = tmp_path / "outbox"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED, url, ANVIL_DEV_KEYS[1], str(path), when],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    with Store.open(path) as store:
        (stored,) = store.pending_transactions()  # durable before the broadcast
    assert stored.nonce == 0 and stored.state is State.SIGNED
    assert _mined_nonce(url, payer) == (1 if when == "after-send" else 0)
    sender = _sender(chain, chain_id, payer, path)  # the restart
    try:
        done = _until(sender, anchored_calldata(ROOT))
        assert done.tx_hash == stored.tx_hash  # the stored bytes, not a new signature
        assert sender(anchored_calldata(ROOT)) is not None  # asked again: the same answer
    finally:
        sender.close()
        sender.store.close()
    assert _mined_nonce(url, payer) == 1 and _batches(url, payer) == 1


def test_lying_endpoints_cannot_make_an_unmined_anchoring_count(
    fresh_anvil: AnvilProcess, tmp_path: Path
) -> None:
    """Two endpoints of three (a quorum) claim the anchoring is mined in a real, agreed block that
    does not hold it: the gateway does not take it as anchored (inclusion is proven in the block,
    never taken from a receipt); once it is really mined, it is, with the true block."""
    from tests.integration.test_send_anvil import _Proxy

    url = fresh_anvil.url
    honest = Chain([HttpEndpoint(url, "rpc#0")], quorum=1)
    funder, payer = (PrivateKey.from_hex(k) for k in ANVIL_DEV_KEYS[:2])
    deploy_anchor(honest, honest.chain_id(), funder)
    real = rpc(url, "eth_getBlockByNumber", ["latest", False])
    liars = [
        _Proxy(url, receipts_in={"hash": real["hash"], "number": real["number"]}) for _ in "ab"
    ]
    chain = Chain(
        [HttpEndpoint(p.url, f"rpc#{i}") for i, p in enumerate(liars)]
        + [HttpEndpoint(url, "rpc#2")],
        quorum=2,
    )
    sender = _sender(chain, honest.chain_id(), payer, tmp_path / "outbox")
    calldata = anchored_calldata(ROOT)
    try:
        rpc(url, "evm_setAutomine", [False])
        for _ in range(5):
            assert sender(calldata) is None
            time.sleep(0.1)
        assert any(k.startswith("proof rpc#") for k in sender.problems), sender.problems
        rpc(url, "evm_mine", [])
        done = _until(sender, calldata)
        assert done.block == int(real["number"], 16) + 1
    finally:
        rpc(url, "evm_setAutomine", [True])
        sender.close()
        sender.store.close()
        chain.close()
        honest.close()
        for p in liars:
            p.close()
    assert _mined_nonce(url, payer) == 1 and _batches(url, payer) == 1
