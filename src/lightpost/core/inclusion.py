"""The sender's side of the ``included`` level: our own transaction, proven in a block.

Theory of operation
-------------------
A receipt from an endpoint is a *claim* (a hint where to look), never a fact. Every
sender state change -- included, final, reverted, the end of rebroadcasts and fee
bumps -- rests on the same four proofs, the receiver's ladder applied to our own
transaction (docs/protocol.md, "Verification levels"):

1. the block hash at the receipt's height is agreed by k endpoints (the caller asks
   and hands it in as ``agreed``); a hint naming another hash is simply not canonical;
2. that block's header is rebuilt from its fields and hashes to the agreed hash
   (:func:`~lightpost.core.verify.verify_block_header`);
3. every transaction of the block is rebuilt and transactionsRoot recomputed
   (:func:`~lightpost.core.verify.prove_block_transactions`); ours must be in it, at
   an index, with exactly our hash;
4. the block's receipts rebuild receiptsRoot
   (:func:`~lightpost.core.verify.prove_block_receipts`); the receipt at that index
   says whether the call succeeded (status 1) or reverted (status 0).

A hint that names an agreed block which, proven, does not hold the transaction is a lie
(or an endpoint's bug): it changes nothing, and the endpoints that made it are named.

Nothing here performs I/O: the runtime (``lightpost.node.sender_proof``) fetches the
block and its receipts from the endpoints in turn and hands the JSON in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from lightpost.core.outbox import (
    BlockRef,
    Event,
    Finalized,
    NonceConsumed,
    Sighting,
    State,
    check_inclusion,
)
from lightpost.core.rpcfields import get_list, get_object, optional_field, parse_data
from lightpost.core.rpcfields import parse_quantity as rpc_quantity
from lightpost.core.verify import (
    ProvenBlock,
    prove_block_receipts,
    prove_block_transactions,
    verify_block_header,
)
from lightpost.errors import DecodingError, LocalError, ProofError

__all__ = [
    "STATUS_SUCCESS",
    "ProvenReceipt",
    "inclusion_events",
    "prove_block",
    "prove_receipts",
    "proven_receipt",
    "receipt_hint",
    "tx_index",
]

STATUS_SUCCESS = 1
"""EIP-658 receipt status of a call that did not revert."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvenReceipt:
    """Our transaction proven at ``index`` of ``sighting.block`` with its ``status``;
    ``receipt`` is the receipt JSON whose consensus fields were proven."""

    sighting: Sighting
    index: int
    status: int
    receipt: Mapping[str, object]

    @property
    def reverted(self) -> bool:
        """True when the call failed: the nonce is spent, nothing was posted."""
        return self.status != STATUS_SUCCESS


def receipt_hint(tx_hash: bytes, receipt: object) -> Sighting | None:
    """Where an endpoint's receipt claims ``tx_hash`` was mined (a hint, unproven).

    None for no receipt, a pending one (no block yet), a malformed one, or one that
    names another transaction."""
    if receipt is None:
        return None
    try:
        obj = get_object(receipt, "receipt")
        if optional_field(obj, "blockHash") is None:
            return None
        claimed_tx = optional_field(obj, "transactionHash")
        if claimed_tx is not None and parse_data(claimed_tx, "receipt hash", 32) != tx_hash:
            return None
        return Sighting(
            tx_hash=tx_hash,
            block=BlockRef(
                hash=parse_data(obj["blockHash"], "receipt block hash", 32),
                number=rpc_quantity(obj.get("blockNumber"), "receipt block number"),
            ),
        )
    except (DecodingError, LocalError):  # malformed: no usable hint
        return None


def prove_block(block_json: object, agreed: BlockRef) -> ProvenBlock:
    """Proofs 2 and 3: the full block (eth_getBlockByNumber with transactions) hashes to
    the agreed hash at the agreed height, and its transactions rebuild
    transactionsRoot. Raises ProofError / DecodingError."""
    header = verify_block_header(block_json, agreed.hash)
    if header.number != agreed.number:
        raise ProofError("header", f"block {header.number} is not at height {agreed.number}")
    txs_json = get_list(get_object(block_json, "block").get("transactions"), "transactions")
    txs = prove_block_transactions(header, txs_json)
    return ProvenBlock(header=header, hash=agreed.hash, transactions=txs)


def prove_receipts(block: ProvenBlock, receipts_json: object) -> ProvenBlock:
    """Proof 4: the block's receipts (eth_getBlockReceipts) rebuild receiptsRoot, one per
    transaction. Returns the block with its proven receipts."""
    receipts = prove_block_receipts(block.header, receipts_json)
    if len(receipts) != len(block.transactions):
        raise ProofError("receiptsRoot", "not one receipt per transaction")
    return replace(block, receipts=receipts)


def tx_index(block: ProvenBlock, tx_hash: bytes) -> int | None:
    """Where ``tx_hash`` sits in the proven block (None: it is not there)."""
    return next((i for i, tx in enumerate(block.transactions) if tx.hash == tx_hash), None)


def proven_receipt(
    block: ProvenBlock, receipts_json: object, tx_hash: bytes
) -> ProvenReceipt | None:
    """Our transaction's receipt in a block whose receipts were proven (by
    :func:`prove_receipts` from ``receipts_json``); None when it is not in the block."""
    index = tx_index(block, tx_hash)
    if index is None:
        return None
    status = block.receipts[index].status
    if status is None:
        raise ProofError("receiptsRoot", "a pre-Byzantium receipt carries no status")
    return ProvenReceipt(
        sighting=Sighting(tx_hash=tx_hash, block=BlockRef(hash=block.hash, number=block.number)),
        index=index,
        status=status,
        receipt=get_object(get_list(receipts_json, "block receipts")[index], "receipt"),
    )


def inclusion_events(
    *,
    state: State,
    nonce: int,
    included: BlockRef | None,
    proven: ProvenReceipt | None,
    canonical_hash: bytes | None = None,
    finalized_number: int | None = None,
) -> tuple[Event, ...]:
    """The outbox events that follow from a PROVEN receipt (or none) and the
    quorum-agreed canonical hash and finalized height (see
    :func:`~lightpost.core.outbox.check_inclusion`). A reverted call posted nothing:
    once final its nonce is spent without carrying the messages, so the
    :class:`Finalized` event becomes :class:`NonceConsumed` (they go back to the queue,
    never lost)."""
    events = check_inclusion(
        state=state,
        included=included,
        sighting=None if proven is None else proven.sighting,
        canonical_hash=canonical_hash,
        finalized_number=finalized_number,
    )
    if proven is not None and proven.reverted:
        events = tuple(
            NonceConsumed(nonce=nonce) if isinstance(e, Finalized) else e for e in events
        )
    return events
