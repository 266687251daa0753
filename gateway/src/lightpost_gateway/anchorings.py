"""Every anchoring of a followed gateway, learned from the anchoring contract's events and proven
(issue 14: re-anchoring after a crash must be harmless).

A gateway killed between broadcasting a batch's transaction and saving its block anchors the
batch again on restart; both transactions can be mined. The contract then counts one batch more
than the gateway publishes (it does not know of the first transaction), so the receiver cannot
reach ``complete`` by the gateway's notices alone. The contract's event names the gateway's batch
count after each anchoring and the batch digest: the receiver asks every endpoint's eth_getLogs
for the events in the blocks where counts are missing (a hint: an endpoint may hide or invent
logs), proves each named transaction and its receipt in the quorum-agreed block
(:func:`lightpost_gateway.receiver.prove_anchor_tx`) and takes (count, digest) from the proven
receipt only. Completeness itself is :func:`lightpost_gateway.merge.completeness`: the proven
anchorings must fold to the accumulator proven by eth_getProof, so a hidden log can delay
``complete``, never fake it; a second anchoring of the same calldata has the same digest and
needs no contents of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from lightpost.core.receipts import Receipt
from lightpost.core.tx import SignedTransaction
from lightpost.errors import LightpostError, ProofError
from lightpost.node.chain import Chain

from .anchor import EVENT_TOPIC, batch_digest
from .receiver import prove_anchor_tx
from .record import Domain

__all__ = ["MAX_SCAN_CANDIDATES", "SCAN_PAGE_BLOCKS", "Anchoring", "anchoring_event", "find"]

SCAN_PAGE_BLOCKS = 2_000
"""Blocks per eth_getLogs (the smallest common provider cap, as the channel receiver's pages)."""

MAX_SCAN_CANDIDATES = 256
"""Transactions one scan proves at most (the endpoints' union of logs is a peer's claim)."""

_WORD = 32


@dataclass(frozen=True, kw_only=True, slots=True)
class Anchoring:
    """The gateway's ``count``-th batch, ``digest``, anchored by ``tx_hash`` in ``block``."""

    count: int
    digest: bytes
    block: int
    tx_hash: bytes


def anchoring_event(
    tx: SignedTransaction, receipt: Receipt, *, gateway: bytes, domain: Domain
) -> tuple[int, bytes]:
    """(count, digest) of the contract's one event in a proven receipt of ``gateway``'s
    successful call of the domain's anchoring contract. Pure; ProofError otherwise."""
    if tx.sender != gateway or tx.tx.to != domain.anchor or receipt.status != 1:
        raise ProofError("anchor", "not a successful anchoring transaction of the gateway")
    data = [
        log.data
        for log in receipt.logs
        if log.address == domain.anchor
        and log.topics == (EVENT_TOPIC, bytes(12) + gateway)
        and len(log.data) == 2 * _WORD
    ]
    if len(data) != 1 or data[0][_WORD:] != batch_digest(bytes(tx.tx.data)):
        raise ProofError("anchor", "the contract's event for this batch is missing")
    return int.from_bytes(data[0][:_WORD], "big"), data[0][_WORD:]


def _candidates(
    chain: Chain, gateway: bytes, domain: Domain, lo: int, hi: int
) -> set[tuple[int, bytes]]:
    """(block, tx hash) of the gateway's events in [lo, hi], unioned over every endpoint's
    eth_getLogs (one honest endpoint defeats one that hides); malformed entries are skipped."""
    found: set[tuple[int, bytes]] = set()
    answered = 0
    for a in range(lo, hi + 1, SCAN_PAGE_BLOCKS):
        flt = {
            "fromBlock": hex(a),
            "toBlock": hex(min(hi, a + SCAN_PAGE_BLOCKS - 1)),
            "address": "0x" + domain.anchor.hex(),
            "topics": ["0x" + EVENT_TOPIC.hex(), "0x" + (bytes(12) + gateway).hex()],
        }
        for value in chain.ask_all("eth_getLogs", [flt]).values():
            if not isinstance(value, list):
                continue
            answered += 1
            for entry in value:
                try:
                    block = int(entry["blockNumber"], 16)
                    tx_hash = bytes.fromhex(entry["transactionHash"].removeprefix("0x"))
                except (KeyError, TypeError, ValueError, AttributeError):
                    continue
                if lo <= block <= hi and len(tx_hash) == _WORD:
                    found.add((block, tx_hash))
    if not answered:
        raise ProofError("anchor", f"no endpoint answered eth_getLogs for blocks {lo}..{hi}")
    return found


def find(
    chain: Chain, *, gateway: bytes, domain: Domain, lo: int, hi: int
) -> tuple[list[Anchoring], list[str]]:
    """The gateway's anchorings in blocks [lo, hi] that could be proven, and why the others
    could not (a claimed log whose transaction or event is not in the agreed block)."""
    out: list[Anchoring] = []
    why: list[str] = []
    candidates = sorted(_candidates(chain, gateway, domain, lo, hi))
    if len(candidates) > MAX_SCAN_CANDIDATES:
        why.append(
            f"{len(candidates)} logs claimed in blocks {lo}..{hi}: "
            f"the first {MAX_SCAN_CANDIDATES} proven, the rest at the next scan"
        )
        candidates = candidates[:MAX_SCAN_CANDIDATES]
    for block, tx_hash in candidates:
        try:
            tx, receipt = prove_anchor_tx(
                chain, chain_id=domain.chain_id, tx_hash=tx_hash, block=block
            )
            count, digest = anchoring_event(tx, receipt, gateway=gateway, domain=domain)
        except LightpostError as exc:
            why.append(f"tx 0x{tx_hash.hex()} in block {block}: {exc}")
            continue
        out.append(Anchoring(count=count, digest=digest, block=block, tx_hash=tx_hash))
    return out, why
