"""Receipts with fallbacks (lightpost.node.block_receipts) without a socket: which method next,
each path proven against the receiptsRoot, every answer checked, support learned once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lightpost.core.fees import GWEI
from lightpost.core.inclusion import prove_block
from lightpost.core.keys import PrivateKey
from lightpost.core.levels import Delivered, Level
from lightpost.core.outbox import BlockRef
from lightpost.core.receipts import encode_receipt
from lightpost.core.tx import DynamicFeeTx, sign_transaction
from lightpost.core.verify import Problem, ProvenBlock
from lightpost.errors import EndpointUnavailable, MethodNotSupported, NodeError
from lightpost.node.block_receipts import (
    BLOCK_RECEIPTS,
    RAW_RECEIPTS,
    TX_RECEIPT,
    MethodSupport,
    next_receipts_method,
    prove_receipts_in_turn,
)
from lightpost.node.receiver import Receiver
from tests.conftest import ANVIL_DEV_KEYS
from tests.core.test_verify import OTHER, receipt_json
from tests.core.test_verify import Block as VerifyBlock
from tests.node.fakechain import CHAIN_ID, Block, FakeEndpoint, FakeNet, block_json
from tests.node.test_receiver import ScriptedEndpoint, _config

KEY = PrivateKey.from_hex(ANVIL_DEV_KEYS[1])

# (known, tried) -> next method: the rule's whole table
NEXT_CASES = [
    ({}, (), BLOCK_RECEIPTS),
    ({BLOCK_RECEIPTS: True}, (), BLOCK_RECEIPTS),
    ({BLOCK_RECEIPTS: False}, (), TX_RECEIPT),
    ({BLOCK_RECEIPTS: False, TX_RECEIPT: False}, (), RAW_RECEIPTS),
    ({BLOCK_RECEIPTS: False, TX_RECEIPT: False, RAW_RECEIPTS: False}, (), None),
    ({}, (BLOCK_RECEIPTS,), TX_RECEIPT),  # failed this time, not unsupported: next one
    ({}, (BLOCK_RECEIPTS, TX_RECEIPT), RAW_RECEIPTS),
    ({}, (BLOCK_RECEIPTS, TX_RECEIPT, RAW_RECEIPTS), None),
    ({BLOCK_RECEIPTS: False, TX_RECEIPT: True}, (TX_RECEIPT,), RAW_RECEIPTS),
    ({TX_RECEIPT: False}, (BLOCK_RECEIPTS,), RAW_RECEIPTS),
]


@pytest.mark.parametrize(("known", "tried", "expected"), NEXT_CASES)
def test_next_receipts_method(
    known: dict[str, bool], tried: tuple[str, ...], expected: Any
) -> None:
    assert next_receipts_method(known, tried) == expected


@dataclass
class Node(FakeEndpoint):
    """A FakeEndpoint that serves only ``serves`` of the receipts methods (others: method not
    found) and can serve raw receipts; ``fail``: method -> exception raised instead."""

    serves: frozenset[str] = frozenset({BLOCK_RECEIPTS, TX_RECEIPT, RAW_RECEIPTS})
    fail: dict[str, Exception] = field(default_factory=dict)

    def _answer(self, method: str, params: Sequence[Any]) -> Any:
        if method in (BLOCK_RECEIPTS, TX_RECEIPT, RAW_RECEIPTS) and method not in self.serves:
            raise MethodNotSupported(self.label, f"the method {method} does not exist", -32601)
        if method in self.fail:
            raise self.fail[method]
        if method == RAW_RECEIPTS:
            block = self._block(params[0])
            assert block is not None
            return ["0x" + encode_receipt(r).hex() for r in block.receipts()]
        return super()._answer(method, params)


def _tx(nonce: int) -> Any:
    tx = DynamicFeeTx(
        chain_id=CHAIN_ID,
        nonce=nonce,
        max_priority_fee_per_gas=GWEI,
        max_fee_per_gas=2 * GWEI,
        gas=21_000,
        to=KEY.address,
    )
    return sign_transaction(tx, KEY)


@pytest.fixture
def net() -> FakeNet:
    net = FakeNet()
    for n in range(3):
        net.pool[(KEY.address, n)] = _tx(n)
    net.mine()
    return net


def _proven(net: FakeNet) -> ProvenBlock:
    b: Block = net.blocks[1]
    return prove_block(block_json(b, True), BlockRef(hash=b.hash, number=b.number))


def _run(
    nodes: list[Node], net: FakeNet, support: MethodSupport | None = None
) -> tuple[Any, dict[str, str], dict[str, str], MethodSupport]:
    support = support or MethodSupport()
    blamed: dict[str, str] = {}
    reasons: dict[str, str] = {}
    found = prove_receipts_in_turn(nodes, _proven(net), support, blamed.__setitem__, reasons)
    return found, blamed, reasons, support


@pytest.mark.parametrize(
    ("serves", "used"),
    [
        ({BLOCK_RECEIPTS, TX_RECEIPT, RAW_RECEIPTS}, BLOCK_RECEIPTS),
        ({TX_RECEIPT, RAW_RECEIPTS}, TX_RECEIPT),  # Ganache, Hardhat
        ({RAW_RECEIPTS}, RAW_RECEIPTS),
    ],
)
def test_each_path_proves_the_same_receipts(net: FakeNet, serves: set[str], used: str) -> None:
    node = Node("rpc#0", net, serves=frozenset(serves))
    found, blamed, reasons, support = _run([node], net)
    assert found is not None and not blamed and not reasons
    block, objs, label = found
    assert label == "rpc#0"
    assert block.receipts == tuple(net.blocks[1].receipts())
    assert [o["transactionHash"] for o in objs] == ["0x" + t.hash.hex() for t in net.blocks[1].txs]
    assert [o["status"] for o in objs] == ["0x1"] * 3
    assert support.known("rpc#0")[used] is True
    # an endpoint without per-transaction receipts is asked once, not once per transaction
    assert node.calls.count(TX_RECEIPT) == (3 if used == TX_RECEIPT else int(used == RAW_RECEIPTS))


def test_support_is_learned_once(net: FakeNet) -> None:
    node = Node("rpc#1", net, serves=frozenset({TX_RECEIPT}))
    found, _, _, support = _run([node], net)
    assert found is not None
    assert (
        support.describe("rpc#1")
        == "eth_getBlockReceipts not supported, eth_getTransactionReceipt ok"
    )
    node.calls.clear()
    assert _run([node], net, support)[0] is not None
    assert BLOCK_RECEIPTS not in node.calls  # not asked again


def test_other_failures_do_not_mark_unsupported(net: FakeNet) -> None:
    node = Node("rpc#0", net, fail={BLOCK_RECEIPTS: NodeError("rpc#0", "header not found", -32000)})
    found, blamed, _, support = _run([node], net)
    assert found is not None and not blamed  # fell back to per-transaction receipts
    assert BLOCK_RECEIPTS not in support.known("rpc#0")
    assert support.known("rpc#0")[TX_RECEIPT] is True


def test_a_down_endpoint_is_not_asked_by_every_method(net: FakeNet) -> None:
    down = Node("rpc#0", net, down=True)
    found, blamed, reasons, _ = _run([down, Node("rpc#1", net)], net)
    assert found is not None and found[2] == "rpc#1" and not blamed
    assert down.calls == [BLOCK_RECEIPTS]
    assert reasons == {"rpc#0": "eth_getBlockReceipts: unreachable (ConnectionRefusedError)"}


def test_refusal_keeps_each_endpoints_reason(net: FakeNet) -> None:
    a = Node("rpc#0", net, serves=frozenset())
    b = Node(
        "rpc#1",
        net,
        serves=frozenset({TX_RECEIPT}),
        fail={TX_RECEIPT: EndpointUnavailable("rpc#1", "no complete answer within 10 s")},
    )
    found, blamed, reasons, _ = _run([a, b], net)
    assert found is None and not blamed
    assert reasons == {
        "rpc#0": "eth_getBlockReceipts not supported, eth_getTransactionReceipt not supported, "
        "debug_getRawReceipts not supported",
        "rpc#1": "eth_getBlockReceipts not supported, "
        "eth_getTransactionReceipt: no complete answer within 10 s",
    }


def _tamper(field_name: str, value: Any) -> Any:
    def hook(method: str, params: Sequence[Any], answer: Any) -> Any:
        if method == TX_RECEIPT and answer and answer["transactionIndex"] == "0x1":
            return {**answer, field_name: value}
        return answer

    return hook


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("transactionIndex", "0x2"),  # another index
        ("transactionHash", "0x" + "ab" * 32),  # another tx
        ("blockNumber", "0x2"),  # another height
        ("status", "0x0"),  # a forged outcome: the receiptsRoot catches it
        ("cumulativeGasUsed", "0x1"),
    ],
)
def test_per_transaction_receipts_are_checked(net: FakeNet, field_name: str, value: Any) -> None:
    liar = Node("rpc#0", net, serves=frozenset({TX_RECEIPT}), hook=_tamper(field_name, value))
    honest = Node("rpc#1", net, serves=frozenset({TX_RECEIPT}))
    found, blamed, _, _ = _run([liar, honest], net)
    assert list(blamed) == ["rpc#0"]
    assert found is not None and found[2] == "rpc#1"


def test_a_receipt_of_another_block_is_a_non_answer_not_a_lie(net: FakeNet) -> None:
    """An endpoint on another fork answers about its own block at that height: not believed, not
    named a liar (before: blamed as a failed proof)."""
    forked = Node(
        "rpc#0", net, serves=frozenset({TX_RECEIPT}), hook=_tamper("blockHash", "0x" + "cd" * 32)
    )
    honest = Node("rpc#1", net, serves=frozenset({TX_RECEIPT}))
    found, blamed, reasons, _ = _run([forked, honest], net)
    assert not blamed and "another block" in reasons.get("rpc#0", "")
    assert found is not None and found[2] == "rpc#1"


def test_per_transaction_receipts_are_bounded_by_the_proven_block(net: FakeNet) -> None:
    node = Node("rpc#0", net, serves=frozenset({TX_RECEIPT}))
    _run([node], net)
    assert node.calls.count(TX_RECEIPT) == len(net.blocks[1].txs)


def test_forged_raw_receipts_fail_the_root(net: FakeNet) -> None:
    def hook(method: str, params: Sequence[Any], answer: Any) -> Any:
        return answer[:2] if method == RAW_RECEIPTS else answer  # one receipt hidden

    liar = Node("rpc#0", net, serves=frozenset({RAW_RECEIPTS}), hook=hook)
    found, blamed, reasons, _ = _run([liar], net)
    assert found is None
    assert "rpc#0" in blamed
    assert reasons["rpc#0"].endswith("debug_getRawReceipts failed proof")


def test_the_sender_proves_inclusion_without_block_receipts(net: FakeNet) -> None:
    from lightpost.core.inclusion import ProvenReceipt
    from lightpost.core.outbox import Sighting
    from lightpost.node.sender_track import InclusionProver

    node = Node("rpc#0", net, serves=frozenset({TX_RECEIPT}))
    b = net.blocks[1]
    prover = InclusionProver([node], lambda n: net.blocks[n].hash)
    hint = Sighting(tx_hash=b.txs[1].hash, block=BlockRef(hash=b.hash, number=1))
    got = prover.prove(hint, ["rpc#0"])
    assert isinstance(got, ProvenReceipt) and got.index == 1 and got.status == 1
    assert got.receipt["transactionHash"] == "0x" + b.txs[1].hash.hex()


class NoBlockReceipts(ScriptedEndpoint):
    """A receiver's scripted endpoint without eth_getBlockReceipts (nor raw receipts); it serves
    per-transaction receipts unless ``per_tx`` is false."""

    def __init__(self, label: str, block: VerifyBlock, per_tx: bool = True) -> None:
        super().__init__(label, block)
        self.per_tx = per_tx

    def _answer(self, method: str, params: Sequence[Any]) -> Any:
        b = self.block
        if method in (BLOCK_RECEIPTS, RAW_RECEIPTS) or (method == TX_RECEIPT and not self.per_tx):
            raise MethodNotSupported(self.label, f"the method {method} does not exist")
        if method == TX_RECEIPT:
            i = next(i for i, t in enumerate(b.txs) if "0x" + t.hash.hex() == params[0])
            return {
                **receipt_json(b.receipts[i]),
                "transactionHash": params[0],
                "transactionIndex": hex(i),
                "blockHash": b.json["hash"],
                "blockNumber": hex(b.header.number),
            }
        return super()._answer(method, params)


@pytest.mark.parametrize("per_tx", [True, False])
def test_the_receiver_falls_back_and_explains_a_refusal(tmp_path: Path, per_tx: bool) -> None:
    block = VerifyBlock()
    eps = [NoBlockReceipts(f"rpc#{i}", block, per_tx) for i in range(3)]
    with Receiver(_config(tmp_path), endpoints=eps, me=OTHER.address) as receiver:
        out = list(receiver.poll(Level.FINAL))
        known = receiver.chain.capabilities.describe("rpc#0")
    delivered = [o for o in out if isinstance(o, Delivered)]
    problems = [o for o in out if isinstance(o, Problem)]
    if per_tx:  # Ganache, Hardhat: the same receipts, one call per transaction
        assert len(delivered) == 2 and problems == []
        assert known == "eth_getBlockReceipts not supported, eth_getTransactionReceipt ok"
    else:  # the refusal names each endpoint's reason by label
        assert delivered == []
        (refusal,) = problems
        for label in ("rpc#0", "rpc#1", "rpc#2"):
            assert (
                f"{label} eth_getBlockReceipts not supported, eth_getTransactionReceipt not "
                "supported, debug_getRawReceipts not supported"
            ) in refusal.details


def test_per_transaction_receipts_are_bounded_in_time(
    net: FakeNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from lightpost.node import block_receipts

    monkeypatch.setattr(block_receipts, "MAX_PER_TX_RECEIPTS_WAIT_S", 0.2)

    def slow(method: str, params: Sequence[Any], answer: Any) -> Any:
        if method == TX_RECEIPT and answer["transactionIndex"] != "0x0":
            time.sleep(0.5)  # each within its own timeout; all of them: too slow
        return answer

    node = Node("rpc#0", net, serves=frozenset({TX_RECEIPT}), hook=slow)
    found, blamed, reasons, _ = _run([node], net)
    assert found is None and not blamed
    assert reasons["rpc#0"].endswith("took over 0.2 s")


def test_an_endpoint_behind_is_not_blamed(net: FakeNet) -> None:
    behind = Node("rpc#0", net, hook=lambda m, p, a: None if m == BLOCK_RECEIPTS else a)
    found, blamed, reasons, _ = _run([behind, Node("rpc#1", net)], net)
    assert found is not None and found[2] == "rpc#1" and not blamed
    assert reasons == {"rpc#0": "eth_getBlockReceipts: no answer for block 1"}
    assert behind.calls == [BLOCK_RECEIPTS]  # not asked by its other methods


def test_an_empty_block_needs_no_per_transaction_call(net: FakeNet) -> None:
    node = Node("rpc#0", net, serves=frozenset({TX_RECEIPT}))
    b = net.blocks[0]  # genesis: no transactions
    empty = prove_block(block_json(b, True), BlockRef(hash=b.hash, number=0))
    support = MethodSupport()
    found = prove_receipts_in_turn([node], empty, support, lambda *_: None)
    assert found is not None and found[0].receipts == ()
    assert node.calls == [BLOCK_RECEIPTS]
    assert support.known("rpc#0") == {BLOCK_RECEIPTS: False}  # nothing learned without asking


class RawOnly:
    """Serves only debug_getRawReceipts: the recorded receipts of a real block."""

    def __init__(self, raws: list[bytes]) -> None:
        self.label = "rpc#0"
        self.raws = raws

    def call(self, method: str, params: Sequence[Any]) -> Any:
        if method != RAW_RECEIPTS:
            raise MethodNotSupported(self.label, f"the method {method} does not exist", -32601)
        return ["0x" + r.hex() for r in self.raws]


def test_pre_byzantium_receipts_rebuilt_from_raw_forms_are_not_failures() -> None:
    """execution-apis block 3 (Frontier rules): its receipts carry a post-state root, no status.
    Rebuilt for callers they give the root as eth_getTransactionReceipt does, never
    ``"status": "0x0"`` (before: every pre-Byzantium success read as failed)."""
    from lightpost.core.hashing import keccak256
    from lightpost.core.header import decode_header
    from lightpost.core.tx import decode_transaction
    from tests.core.chaindata import ROOTS_DIRS, raw_block, raw_receipts

    header_rlp, txs = raw_block(ROOTS_DIRS[0])
    block = ProvenBlock(
        header=decode_header(header_rlp),
        hash=keccak256(header_rlp),
        transactions=tuple(decode_transaction(t) for t in txs),
    )
    raws = raw_receipts(ROOTS_DIRS[0])
    found = prove_receipts_in_turn([RawOnly(raws)], block, MethodSupport(), lambda *_: None)
    assert found is not None
    proven, objs, _ = found
    assert len(objs) == 3 and all(r.status is None for r in proven.receipts)
    for obj, receipt in zip(objs, proven.receipts, strict=True):
        assert "status" not in obj
        assert obj["root"] == "0x" + (receipt.post_state or b"").hex()


def test_block_receipts_are_asked_by_the_proven_block_hash(net: FakeNet) -> None:
    """An endpoint on another fork has other receipts at the same height, without a blockHash
    field: asked by the proven block's hash, it has no answer (not blamed); before, asked by
    number, its honest answer about its own block failed the root and it was named a liar."""
    ours = net.blocks[1]

    def forked(method: str, params: Sequence[Any], answer: Any) -> Any:
        if method not in (BLOCK_RECEIPTS, RAW_RECEIPTS):
            return answer
        if params[0] == "0x" + ours.hash.hex():
            return None  # our block is not on its fork
        if method == RAW_RECEIPTS:
            return answer[:1]
        return [  # its own block at height 1: other receipts, no blockHash field
            {k: v for k, v in r.items() if k != "blockHash"} | {"cumulativeGasUsed": "0x1"}
            for r in answer
        ]

    fork = Node("rpc#0", net, serves=frozenset({BLOCK_RECEIPTS, RAW_RECEIPTS}), hook=forked)
    found, blamed, reasons, _ = _run([fork, Node("rpc#1", net)], net)
    assert found is not None and found[2] == "rpc#1"
    assert blamed == {}
    assert reasons == {"rpc#0": "eth_getBlockReceipts: no answer for block 1"}
