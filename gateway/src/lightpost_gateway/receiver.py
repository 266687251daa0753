"""Proving an anchoring transaction for :func:`lightpost_gateway.relay.verify_relayed`: the
block agreed by the quorum (header and transactionsRoot, :meth:`lightpost.node.chain.Chain.
proven_block`), the transaction in it and its receipt in its receiptsRoot by whatever receipts
method each endpoint serves, in the chain's block format (issue 14)."""

from __future__ import annotations

from lightpost.core.diagnosis import refusal
from lightpost.core.receipts import Receipt
from lightpost.core.trie import check_eth_get_proof
from lightpost.core.tx import SignedTransaction
from lightpost.errors import ProofError
from lightpost.node.block_receipts import prove_receipts_in_turn
from lightpost.node.chain import Chain, prove_in_turn

from .anchor import gateway_slots

__all__ = ["prove_anchor_tx", "prove_gateway_accumulator"]


def prove_anchor_tx(
    chain: Chain, *, chain_id: int, tx_hash: bytes, block: int
) -> tuple[SignedTransaction, Receipt]:
    """The transaction ``tx_hash`` and its receipt, proven in the quorum-agreed block ``block``
    (``included``; the caller compares ``block`` with the finalized height for ``final``).
    ProofError names each endpoint's reason by label when none proved it."""
    proven = chain.proven_block(block, full=True)
    index = next((i for i, tx in enumerate(proven.transactions) if tx.hash == tx_hash), None)
    if index is None:
        raise ProofError("anchor", f"the transaction is not in the proven block {block}")
    tx = proven.transactions[index]
    if not isinstance(tx, SignedTransaction) or tx.chain_id != chain_id:
        raise ProofError("anchor", f"the transaction is not signed for chain id {chain_id}")
    reasons: dict[str, str] = {}
    blamed: dict[str, str] = {}
    found = prove_receipts_in_turn(
        chain.endpoints, proven, chain.capabilities, blamed.__setitem__, reasons,
        fmt=chain.block_format,
    )  # fmt: skip
    if found is None:
        why = {
            label: f"{r} ({blamed[label]})" if label in blamed else r
            for label, r in reasons.items()
        }
        raise ProofError("anchor", refusal(f"the receipts of block {block}", why))
    return tx, found[0].receipts[index]


def prove_gateway_accumulator(
    chain: Chain, *, gateway: bytes, block: int, anchor: bytes
) -> tuple[int, int]:
    """(accumulator, batch count) of ``gateway`` in the anchoring contract at ``block``, proven
    by eth_getProof against the stateRoot of the quorum-agreed header (for ``complete``); the
    storage keys as 32-byte words (anvil refuses an odd-length key, as for one gateway in 16)."""
    header = chain.proven_block(block).header
    acc_slot, count_slot = gateway_slots(gateway)
    reasons: dict[str, str] = {}

    def blame(label: str, why: str) -> None:
        reasons[label] = f"failed proof: {why}"

    def skipped(label: str, why: str) -> None:
        reasons[label] = why

    proven = prove_in_turn(
        chain.endpoints,
        "eth_getProof",
        ["0x" + anchor.hex(), [f"0x{acc_slot:064x}", f"0x{count_slot:064x}"], hex(block)],
        lambda a: check_eth_get_proof(header.state_root, a, address=anchor),
        blame,
        skipped,
    )
    if proven is None:
        raise ProofError("complete", refusal(f"the accumulator at block {block}", reasons))
    return proven[0].storage.get(acc_slot, 0), proven[0].storage.get(count_slot, 0)
