"""Proving an anchoring transaction for :func:`lightpost_gateway.relay.verify_relayed`: the
block hash agreed by the quorum, the transaction in that block's transactionsRoot and its
receipt in its receiptsRoot, each answer checked in turn across the endpoints (issue 14)."""

from __future__ import annotations

from lightpost.core.receipts import Receipt
from lightpost.core.tx import SignedTransaction
from lightpost.core.verify import prove_block_receipts, verify_block_header, verify_included_tx
from lightpost.errors import ProofError
from lightpost.node.chain import Chain, prove_in_turn

__all__ = ["prove_anchor_tx"]


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
