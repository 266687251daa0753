"""The anchoring contract on a real anvil: deployed at its protocol address through the CREATE2
proxy (idempotent), anchored and posted batches, the per-gateway accumulator proven with
eth_getProof against the block's stateRoot, the event, the reverts, and its gas (printed: the
figures of docs/benchmarks.md; only the model's upper bound is asserted)."""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.hashing import keccak256
from lightpost.core.keys import PrivateKey
from lightpost.core.rpcfields import parse_quantity
from lightpost.core.trie import check_eth_get_proof
from lightpost.errors import ChainProcessError
from lightpost.node.chain import Chain
from lightpost_gateway.anchor import (
    ANCHOR_ADDRESS,
    EVENT_TOPIC,
    accumulate,
    anchor_execution_gas,
    anchored_calldata,
    batch_digest,
    gateway_slots,
    posted_calldata,
)
from lightpost_gateway.artifact import anchor_runtime
from lightpost_gateway.batch import Leaf, batch_root
from lightpost_gateway.record import (
    ZERO_HASH,
    Domain,
    Kind,
    Record,
    encode_record,
    sign_record,
)
from lightpost_operator.anvil import AnvilProcess
from lightpost_operator.gateway_cmd import deploy_anchor
from lightpost_operator.wallet import send_operator_tx
from tests.conftest import ANVIL_DEV_KEYS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from bench_gateway import reading_json

POSTED_RECORDS = 200
"""Records of 100-byte readings in the measured posted batch."""


def _batch(chain: Chain, chain_id: int, key: PrivateKey, data: bytes) -> dict[str, Any]:
    _, receipt = send_operator_tx(
        chain,
        chain_id,
        key,
        nonce=chain.nonce(key.address, "pending"),
        to=ANCHOR_ADDRESS,
        data=data,
        execution_gas=anchor_execution_gas(len(data)),
    )
    assert receipt is not None
    return dict(receipt)


def _intrinsic(data: bytes) -> int:
    zeros = data.count(0)
    return 21_000 + 4 * zeros + 16 * (len(data) - zeros)


def _floor(data: bytes) -> int:
    """EIP-7623 (Prague): a transaction pays at least 21,000 + 10 per calldata token, a token
    being a zero byte or a quarter of a nonzero byte -- 40 gas per nonzero byte."""
    zeros = data.count(0)
    return 21_000 + 10 * (zeros + 4 * (len(data) - zeros))


def _readings(chain_id: int, n: int) -> list[bytes]:
    """100-byte JSON readings of ``n`` meters, varying per device (tools/bench_gateway.py)."""
    domain = Domain(chain_id=chain_id, anchor=ANCHOR_ADDRESS)
    rng = random.Random(7)
    out = []
    for i in range(n):
        key = PrivateKey(hashlib.sha256(b"device %d" % i).digest())
        seq = rng.randrange(1_000_000)
        record = Record(
            kind=Kind.DATA,
            stream=b"energy",
            seq=seq,
            prev=rng.randbytes(32) if seq else ZERO_HASH,
            time_ms=1_790_000_000_000 + rng.randrange(60_000),
            content_type=2,
            payload=reading_json(i, 17, rng),
        )
        out.append(encode_record(sign_record(record, domain, key)))
    return out


def test_batches_are_anchored_accumulated_and_proven(fresh_anvil: AnvilProcess) -> None:
    chain = Chain([HttpEndpoint(fresh_anvil.url, "rpc#0")], quorum=1)
    funder, gateway = (PrivateKey.from_hex(k) for k in ANVIL_DEV_KEYS[:2])
    try:
        chain_id = chain.chain_id()
        address, deployed, _ = deploy_anchor(chain, chain_id, funder)
        assert (address, deployed) == (ANCHOR_ADDRESS, True)
        assert deploy_anchor(chain, chain_id, funder)[:2] == (ANCHOR_ADDRESS, False)

        leaves = [
            Leaf(device=i.to_bytes(20, "big"), first_seq=7, last_seq=7, head=keccak256(b"%d" % i))
            for i in range(1, 1001)
        ]
        roots = [batch_root(leaves), batch_root(leaves[:500])]
        calldatas = [anchored_calldata(r) for r in roots]
        calldatas.append(posted_calldata(_readings(chain_id, POSTED_RECORDS)))
        receipts = [_batch(chain, chain_id, gateway, data) for data in calldatas]

        acc = bytes(32)
        for count, (data, receipt) in enumerate(zip(calldatas, receipts, strict=True), 1):
            acc = accumulate(acc, batch_digest(data))
            (log,) = receipt["logs"]
            assert bytes.fromhex(log["address"][2:]) == ANCHOR_ADDRESS
            assert log["topics"] == [
                "0x" + EVENT_TOPIC.hex(),
                "0x" + (bytes(12) + gateway.address).hex(),
            ]
            assert log["data"] == "0x" + (count.to_bytes(32, "big") + keccak256(data)).hex()
            used = parse_quantity(receipt["gasUsed"], "gasUsed")
            assert used <= max(_intrinsic(data) + anchor_execution_gas(len(data)), _floor(data))

        # the accumulator and the count, proven against the stateRoot of the last batch's block
        acc_slot, count_slot = gateway_slots(gateway.address)
        height = parse_quantity(receipts[-1]["blockNumber"], "block")
        block = chain.block(height)
        assert block is not None
        answer = chain.endpoints[0].call(
            "eth_getProof",
            ["0x" + ANCHOR_ADDRESS.hex(), [hex(acc_slot), hex(count_slot)], hex(height)],
        )
        proven = check_eth_get_proof(
            bytes.fromhex(block["stateRoot"][2:]), answer, address=ANCHOR_ADDRESS
        )
        assert proven.storage[acc_slot] == int.from_bytes(acc, "big")
        assert proven.storage[count_slot] == len(calldatas)
        assert proven.account is not None
        assert proven.account.code_hash == keccak256(anchor_runtime())

        first, steady, posted = (parse_quantity(r["gasUsed"], "gasUsed") for r in receipts)
        print(f"\nanchored batch gas: first {first}, steady {steady}")
        for devices in (1_000, 10_000):
            per = steady / devices
            print(
                f"  {devices} devices, one 100-byte reading each per batch: {per:.1f} gas/reading"
            )
        data = calldatas[2]
        standard = _intrinsic(data) + steady - _intrinsic(calldatas[1])
        print(
            f"posted batch of {POSTED_RECORDS} readings ({len(data)} bytes): {posted} gas, "
            f"{posted / POSTED_RECORDS:.0f} gas/reading (EIP-7623 floor {_floor(data)}; "
            f"at pre-Prague calldata prices {standard} + copy/hash, "
            f"{standard / POSTED_RECORDS:.0f} gas/reading)"
        )
    finally:
        chain.close()


@pytest.mark.parametrize(("data", "value"), [(b"\x01" * 31, 0), (b"\x01" * 32, 1)])
def test_short_calldata_and_ether_revert(
    fresh_anvil: AnvilProcess, data: bytes, value: int
) -> None:
    chain = Chain([HttpEndpoint(fresh_anvil.url, "rpc#0")], quorum=1)
    funder = PrivateKey.from_hex(ANVIL_DEV_KEYS[0])
    try:
        chain_id = chain.chain_id()
        _, _, nonce = deploy_anchor(chain, chain_id, funder)
        with pytest.raises(ChainProcessError, match="reverted"):
            send_operator_tx(
                chain,
                chain_id,
                funder,
                nonce=nonce,
                to=ANCHOR_ADDRESS,
                data=data,
                value=value,
                execution_gas=anchor_execution_gas(len(data)),
            )
    finally:
        chain.close()
