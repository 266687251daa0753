"""The sender's side of the ``included`` level: our own transaction, proven in a block.

A receipt is a claim, never a fact: a state changes only once the transaction is proven
in the k-agreed block at the receipt's height (the receiver's ladder,
:mod:`lightpost.core.verify`; docs/protocol.md, "What the sender believes"). No I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from lightpost.core.l2 import ETHEREUM, BlockFormat
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
    """Our tx proven at ``index`` of ``sighting.block``, with its proven receipt JSON."""

    sighting: Sighting
    index: int
    status: int
    receipt: Mapping[str, object]


def receipt_hint(tx_hash: bytes, receipt: object) -> Sighting | None:
    """Where an endpoint's receipt claims ``tx_hash`` was mined (unproven), else None."""
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


def prove_block(
    block_json: object,
    agreed: BlockRef,
    *,
    fmt: BlockFormat = ETHEREUM,
    raw_forms: Mapping[int, bytes] | None = None,
) -> ProvenBlock:
    """Proofs 2 and 3 on a full block (eth_getBlockByNumber, transactions); ``fmt``: the chain's
    extra types and header keys; ``raw_forms``: raw bytes of types with no encoding here."""
    header = verify_block_header(block_json, agreed.hash, fmt=fmt)
    if header.number != agreed.number:
        raise ProofError("header", f"block {header.number} is not at height {agreed.number}")
    txs_json = get_list(get_object(block_json, "block").get("transactions"), "transactions")
    txs = prove_block_transactions(header, txs_json, fmt=fmt, raw_forms=raw_forms)
    return ProvenBlock(header=header, hash=agreed.hash, transactions=txs)


def prove_receipts(
    block: ProvenBlock, receipts_json: object, *, fmt: BlockFormat = ETHEREUM
) -> ProvenBlock:
    """Proof 4 (eth_getBlockReceipts): the block with its proven receipts."""
    receipts = prove_block_receipts(block.header, receipts_json, fmt=fmt)
    if len(receipts) != len(block.transactions):
        raise ProofError("receiptsRoot", "not one receipt per transaction")
    return replace(block, receipts=receipts)


def tx_index(block: ProvenBlock, tx_hash: bytes) -> int | None:
    """Where ``tx_hash`` sits in the proven block (None: it is not there)."""
    return next((i for i, tx in enumerate(block.transactions) if tx.hash == tx_hash), None)


def proven_receipt(
    block: ProvenBlock, receipts_json: object, tx_hash: bytes
) -> ProvenReceipt | None:
    """Our tx's receipt in a block with proven receipts; None when it is not there."""
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
    """:func:`~lightpost.core.outbox.check_inclusion` on a PROVEN receipt; a reverted call's
    messages are requeued at finality, never lost."""
    events = check_inclusion(
        state=state,
        included=included,
        sighting=None if proven is None else proven.sighting,
        canonical_hash=canonical_hash,
        finalized_number=finalized_number,
    )
    if proven is not None and proven.status != STATUS_SUCCESS:
        events = tuple(
            NonceConsumed(nonce=nonce) if isinstance(e, Finalized) else e for e in events
        )
    return events
