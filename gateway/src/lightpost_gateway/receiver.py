"""Proving an anchoring transaction for :func:`lightpost_gateway.relay.verify_relayed`: the
block hash agreed by the quorum, the transaction in that block's transactionsRoot and its
receipt in its receiptsRoot, each answer checked in turn across the endpoints (issue 14)."""

from __future__ import annotations

from lightpost.core.receipts import Receipt
from lightpost.core.trie import check_eth_get_proof
from lightpost.core.tx import SignedTransaction
from lightpost.core.verify import prove_block_receipts, verify_block_header, verify_included_tx
from lightpost.errors import ProofError
from lightpost.node.chain import Chain, prove_in_turn

from .anchor import gateway_slots

__all__ = ["prove_anchor_tx", "prove_gateway_accumulator"]


def prove_anchor_tx(
    chain: Chain, *, chain_id: int, tx_hash: bytes, block: int
) -> tuple[SignedTransaction, Receipt]:
    """The transaction ``tx_hash`` and its receipt, proven in the quorum-agreed block ``block``
    (``included``; the caller compares ``block`` with the finalized height for ``final``)."""
    block_hash = chain.block_hash_at(block)
    problems: dict[str, str] = {}

    def blame(label: str, why: str) -> None:
        problems[label] = why

    found = prove_in_turn(
        chain.endpoints,
        "eth_getBlockByNumber",
        [hex(block), True],
        lambda a: (
            verify_block_header(a, block_hash),
            verify_included_tx(a, block_hash, chain_id=chain_id, tx_hash=tx_hash),
        ),
        blame,
    )
    if found is None:
        raise ProofError("anchor", f"no endpoint proved the transaction in block {block}")
    header, (index, tx) = found[0]
    receipts = prove_in_turn(
        chain.endpoints,
        "eth_getBlockReceipts",
        [hex(block)],
        lambda a: prove_block_receipts(header, a),
        blame,
    )
    if receipts is None:
        raise ProofError("anchor", f"no endpoint proved the receipts of block {block}")
    return tx, receipts[0][index]


def prove_gateway_accumulator(
    chain: Chain, *, gateway: bytes, block: int, anchor: bytes
) -> tuple[int, int]:
    """(accumulator, batch count) of ``gateway`` in the anchoring contract at ``block``, proven
    by eth_getProof against the stateRoot of the quorum-agreed header (for ``complete``)."""
    block_hash = chain.block_hash_at(block)
    problems: dict[str, str] = {}

    def blame(label: str, why: str) -> None:
        problems[label] = why

    header = prove_in_turn(
        chain.endpoints,
        "eth_getBlockByNumber",
        [hex(block), False],
        lambda a: verify_block_header(a, block_hash),
        blame,
    )
    if header is None:
        raise ProofError("complete", f"no endpoint proved the header of block {block}")
    acc_slot, count_slot = gateway_slots(gateway)
    proven = prove_in_turn(
        chain.endpoints,
        "eth_getProof",
        ["0x" + anchor.hex(), [hex(acc_slot), hex(count_slot)], hex(block)],
        lambda a: check_eth_get_proof(header[0].state_root, a, address=anchor),
        blame,
    )
    if proven is None:
        raise ProofError("complete", f"no endpoint proved the accumulator at block {block}")
    return proven[0].storage.get(acc_slot, 0), proven[0].storage.get(count_slot, 0)
