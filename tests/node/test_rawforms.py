"""The node proves L2 blocks with the chain's BlockFormat, and unknown types from raw forms
(eth_getRawTransactionByBlockHashAndIndex), on the recorded OP-stack block (tests/vectors)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lightpost.core.l2 import ETHEREUM, OP_STACK, l2_transaction_from_rpc
from lightpost.core.outbox import BlockRef, Sighting
from lightpost.errors import NodeError
from lightpost.node.chain import Chain
from lightpost.node.rawforms import MAX_RAW_FORMS_PER_BLOCK, RAW_TX_METHOD, raw_forms
from lightpost.node.sender_track import UNKNOWN, InclusionProver
from tests.core.test_l2 import op_block, op_receipts


@dataclass
class Recorded:
    """An endpoint answering from the recorded block; ``raw`` says whether it serves raw forms."""

    label: str
    raw: bool = True
    wrong_raw: bool = False
    calls: list[str] = field(default_factory=list)

    def call(self, method: str, params: Sequence[Any]) -> Any:
        self.calls.append(method)
        block = op_block()
        if method == "eth_getBlockByNumber":
            return block
        if method == "eth_getBlockReceipts":
            return op_receipts()
        if method == RAW_TX_METHOD and self.raw:
            tx = block["transactions"][int(params[1], 16)]
            raw = l2_transaction_from_rpc(tx).raw
            assert raw is not None
            return "0x" + (raw[:-1] + bytes([raw[-1] ^ 1]) if self.wrong_raw else raw).hex()
        raise NodeError(self.label, "the method does not exist", code=-32601)


BLOCK = op_block()
REF = BlockRef(hash=bytes.fromhex(BLOCK["hash"][2:]), number=int(BLOCK["number"], 16))
LAST_TX = bytes.fromhex(BLOCK["transactions"][5]["hash"][2:])


def _prover(eps: list[Recorded], fmt: Any) -> InclusionProver:
    return InclusionProver(eps, lambda _number: REF.hash, fmt=fmt)  # type: ignore[arg-type]


def test_the_op_format_proves_our_tx_and_its_receipt_in_an_op_block() -> None:
    proven = _prover([Recorded("rpc#0")], OP_STACK).prove(
        Sighting(tx_hash=LAST_TX, block=REF), {"rpc#0"}
    )
    assert proven is not None and proven is not UNKNOWN
    assert proven.index == 5 and proven.status == 1


def test_without_the_format_an_unknown_type_is_proven_from_its_raw_form() -> None:
    ep = Recorded("rpc#0")
    block = _prover([ep], ETHEREUM).block(REF)
    assert block is not UNKNOWN and len(block.transactions) == 6
    assert ep.calls.count(RAW_TX_METHOD) == 1


def test_without_the_format_or_a_raw_form_the_refusal_says_so() -> None:
    """Refused with the reason -- and the endpoint is not named a liar: an honest one serves the
    same block (before: a proof-failure against every endpoint)."""
    prover = _prover([Recorded("rpc#0", raw=False)], ETHEREUM)
    assert prover.block(REF) is UNKNOWN
    assert "rpc#0" not in prover.problems
    assert "type 0x7e" in prover.unproven["rpc#0"]
    assert "not supported; the endpoint serves no raw form" in prover.unproven["rpc#0"]


def test_a_raw_form_proves_the_block_and_its_receipts_without_the_format() -> None:
    """An OP block on a chain configured as plain Ethereum: the deposit comes from its raw form and
    its receipt is proven too (before: receipts refused as 'unknown receipt type 126')."""
    proven = _prover([Recorded("rpc#0")], ETHEREUM).prove(
        Sighting(tx_hash=LAST_TX, block=REF), {"rpc#0"}
    )
    assert proven is not None and proven is not UNKNOWN
    assert proven.index == 5 and proven.status == 1


def test_no_raw_form_is_asked_for_a_block_that_is_not_the_agreed_one() -> None:
    """A liar's block under another hash costs no raw-form call to anyone (before: up to 16
    calls per endpoint per round, with the liar's block hash)."""
    liar, honest = Recorded("rpc#0"), Recorded("rpc#1")
    other = BlockRef(hash=b"\x11" * 32, number=REF.number)
    prover = InclusionProver([liar, honest], lambda _n: other.hash, fmt=ETHEREUM)  # type: ignore[list-item]
    assert prover.block(other) is UNKNOWN
    assert RAW_TX_METHOD not in liar.calls + honest.calls


def test_a_raw_form_not_matching_the_listed_hash_is_not_used() -> None:
    assert raw_forms([Recorded("rpc#0", wrong_raw=True)], BLOCK, ETHEREUM) == {}  # type: ignore[list-item]


def test_raw_forms_are_asked_only_for_unknown_types_and_boundedly() -> None:
    ep = Recorded("rpc#0")
    assert raw_forms([ep], BLOCK, OP_STACK) == {}  # type: ignore[list-item]
    flood = dict(BLOCK, transactions=[BLOCK["transactions"][0]] * (MAX_RAW_FORMS_PER_BLOCK + 1))
    assert raw_forms([ep], flood, ETHEREUM) == {}  # type: ignore[list-item]
    assert ep.calls == []


def test_chain_carries_the_block_format_with_the_safe_default() -> None:
    chain = Chain([Recorded("rpc#0")], quorum=1)  # type: ignore[list-item]
    try:
        assert chain.block_format is ETHEREUM
    finally:
        chain.close()
