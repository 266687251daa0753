"""Receiving gateway-relayed records (issue 14, ``anchored`` mode). Pure.

A gateway relays a device's records with a claim: "these are anchored by leaf L of the batch
root R, which my transaction T put on chain". The gateway is not trusted. The receiver holds
T proven in a quorum-agreed block (its transactionsRoot) and T's receipt proven in the same
block (its receiptsRoot) -- the I/O that proves them is the caller's -- and
:func:`verify_relayed` checks everything else:

1. T called the anchoring contract of the receiver's domain with a 32-byte root R, succeeded
   (status 1) and its log is the contract's event for keccak256(R) from T's sender;
2. L is in R (:func:`lightpost_gateway.batch.verify_inclusion`), and L names the device;
3. every record opens under the domain to the device (an altered or inserted record does not);
4. the records are consecutive and linked (each ``prev`` is the hash of the one before), the
   last one's hash is L's head and its seq L's last seq (a reordered, dropped or replayed record
   breaks a link).

So a gateway can delay or withhold, and cannot forge, alter, reorder, insert or replay a
device's records undetected. Records below those relayed are bound to the first one's ``prev``:
the receiver fetches them (from any gateway) and checks them by the same links.
"""

from __future__ import annotations

from collections.abc import Sequence

from lightpost.core.receipts import Receipt
from lightpost.core.tx import SignedTransaction
from lightpost.errors import LightpostError, ProofError

from .anchor import EVENT_TOPIC, ROOT_BYTES, accumulate, batch_digest, decode_posted
from .batch import InclusionProof, Leaf, verify_inclusion
from .record import Domain, SignedRecord, open_record

__all__ = [
    "MAX_RELAYED_RECORDS",
    "anchored_root",
    "posted_records",
    "verify_complete",
    "verify_relayed",
]

MAX_RELAYED_RECORDS = 4096
"""Most records one relayed claim may carry (a peer's bound): at one record a minute this is
almost three days of one device, well past one batch."""

_WORD = 32


def _batch_calldata(tx: SignedTransaction, receipt: Receipt, *, domain: Domain) -> bytes:
    """The calldata of a successful batch call of the domain's anchoring contract, whose event
    (from the transaction's sender) carries keccak256 of it; ProofError otherwise."""
    if tx.tx.to != domain.anchor:
        raise ProofError("anchor", "the transaction is not to the domain's anchoring contract")
    if receipt.status != 1:
        raise ProofError("anchor", "the anchoring transaction failed")
    calldata = bytes(tx.tx.data)
    count_and_digest = [
        log.data
        for log in receipt.logs
        if log.address == domain.anchor
        and log.topics == (EVENT_TOPIC, bytes(12) + tx.sender)
        and len(log.data) == 2 * _WORD
    ]
    if len(count_and_digest) != 1 or count_and_digest[0][_WORD:] != batch_digest(calldata):
        raise ProofError("anchor", "the contract's event for this batch is missing")
    return calldata


def anchored_root(tx: SignedTransaction, receipt: Receipt, *, domain: Domain) -> bytes:
    """The batch root an anchored-mode transaction put on chain; ProofError if it is not one."""
    root = _batch_calldata(tx, receipt, domain=domain)
    if len(root) != ROOT_BYTES:
        raise ProofError("anchor", "the transaction is not an anchored batch (32-byte root)")
    return root


def posted_records(
    tx: SignedTransaction, receipt: Receipt, *, domain: Domain
) -> list[tuple[SignedRecord, bytes, bytes]]:
    """``posted`` mode: the records a proven batch transaction carries, each opened under the
    domain: (record, device address, record hash). The chain links of each device are the
    receiver's to judge (lightpost_gateway.record.classify_link), as for relayed records."""
    calldata = _batch_calldata(tx, receipt, domain=domain)
    if len(calldata) <= ROOT_BYTES:
        raise ProofError("anchor", "the transaction is an anchored batch, not a posted one")
    try:
        return [open_record(wire, domain) for wire in decode_posted(calldata)]
    except LightpostError as exc:
        raise ProofError("anchor", f"a posted record does not decode: {exc}") from None


def verify_relayed(
    records: Sequence[bytes],
    *,
    device: bytes,
    leaf: Leaf,
    proof: InclusionProof,
    tx: SignedTransaction,
    receipt: Receipt,
    domain: Domain,
) -> list[tuple[SignedRecord, bytes]]:
    """Verify a gateway's relayed records of ``device`` (ascending seq, ending at the leaf's
    head) against a proven anchor transaction and its receipt. Returns (record, hash) pairs;
    raises ProofError naming the first thing that does not hold."""
    if not 0 < len(records) <= MAX_RELAYED_RECORDS:
        raise ProofError("relay", f"a relay carries 1 .. {MAX_RELAYED_RECORDS} records")
    root = anchored_root(tx, receipt, domain=domain)
    if leaf.device != device:
        raise ProofError("relay", "the leaf is another device's")
    verify_inclusion(root, leaf, proof)
    out: list[tuple[SignedRecord, bytes]] = []
    for i, wire in enumerate(records):
        try:
            signed, signer, digest = open_record(wire, domain)
        except LightpostError as exc:
            raise ProofError("relay", f"record {i} does not decode: {exc}") from None
        if signer != device:
            raise ProofError("relay", f"record {i} is not signed by the device (altered?)")
        if out:
            before, before_hash = out[-1]
            if signed.record.seq != before.record.seq + 1 or signed.record.prev != before_hash:
                raise ProofError("relay", f"record {i} does not link to the one before it")
        out.append((signed, digest))
    last, last_hash = out[-1]
    if last_hash != leaf.head or last.record.seq != leaf.last_seq:
        raise ProofError("relay", "the last record is not the anchored head")
    return out


def verify_complete(digests: Sequence[bytes], *, proven_acc: int, proven_count: int) -> None:
    """``complete`` for one gateway: the batches the receiver saw (their digests, in order)
    fold to the accumulator and count proven from the contract's storage (eth_getProof against
    a quorum-agreed stateRoot, slots :func:`lightpost_gateway.anchor.gateway_slots`). Else
    ProofError: batches withheld (fewer seen than proven), reordered or altered."""
    if len(digests) != proven_count:
        raise ProofError(
            "complete",
            f"saw {len(digests)} batches of the gateway, the chain proves {proven_count}",
        )
    acc = bytes(_WORD)
    for digest in digests:
        acc = accumulate(acc, digest)
    if int.from_bytes(acc, "big") != proven_acc:
        raise ProofError("complete", "the batches seen do not fold to the proven accumulator")
