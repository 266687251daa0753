"""What a gateway publishes to receivers, and how a receiver asks for what it missed (issue 14).
Pure: topics, the three messages, their strict decoders and bounds.

A gateway ``G`` (its payer's address, 40 lowercase hex digits) publishes each anchored batch on
``lp/1/g/<G>/f`` at QoS 1, in anchoring order: first a NOTICE (batch number, transaction, block,
how many records follow), then one RECORD per record of the batch (the device it names, the wire
record, and for the device's head in this batch its leaf and Merkle proof). A receiver that
missed batches (a hole in the numbers, a fresh start, a count the chain proves higher) sends a
REQUEST to ``lp/1/g/<G>/q`` naming its reply topic ``lp/1/k/<id>/<G>``, a first batch number and a
count; the gateway answers from its durable store, bounded by MAX_BACKFILL_BATCHES and
MAX_BACKFILL_BYTES, then an END naming the next number to ask for and the last published.

Nothing here is trusted by the receiver: each notice's transaction is proven on chain
(:mod:`lightpost_gateway.receiver`), each record is opened under the domain, each leaf is proven
in the proven root (:mod:`lightpost_gateway.relay`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from lightpost.core import rlp
from lightpost.errors import DecodingError, RLPDecodingError

from .batch import InclusionProof, Leaf
from .record import MAX_RECORD_BYTES, TOPIC_ROOT

__all__ = [
    "MAX_BACKFILL_BATCHES",
    "MAX_BACKFILL_BYTES",
    "MAX_FEED_MESSAGE",
    "End",
    "Notice",
    "Relayed",
    "Request",
    "decode_feed",
    "decode_request",
    "encode_end",
    "encode_notice",
    "encode_relayed",
    "encode_request",
    "feed_topic",
    "reply_topic",
    "request_topic",
]

MAX_BACKFILL_BATCHES = 64
"""Batches one backfill answer carries at most (a receiver asks again from END's number)."""

MAX_BACKFILL_BYTES = 1 << 20
"""Bytes one backfill answer carries at most (a batch is never split: the first always goes)."""

MAX_PROOF_SIBLINGS = 20
"""Siblings of a leaf's proof at most (lightpost_gateway.batch.MAX_BATCH_LEAVES = 2^20)."""

MAX_FEED_MESSAGE = MAX_RECORD_BYTES + 32 * MAX_PROOF_SIBLINGS + 256
"""Largest feed message: a record, its leaf and a full proof (bounded before decoding)."""

MAX_REPLY_ID = 64
"""Longest reply id a receiver may name (lowercase letters, digits, '-')."""

_NOTICE, _RECORD, _END = 0, 1, 2


def feed_topic(gateway: bytes) -> str:
    return f"{TOPIC_ROOT}/g/{gateway.hex()}/f"


def request_topic(gateway: bytes) -> str:
    return f"{TOPIC_ROOT}/g/{gateway.hex()}/q"


def reply_topic(reply_id: str, gateway: bytes | None) -> str:
    """Where ``gateway`` answers a receiver's requests (None: the receiver's filter for all)."""
    return f"{TOPIC_ROOT}/k/{reply_id}/{'+' if gateway is None else gateway.hex()}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Notice:
    """Batch ``number`` of the gateway was anchored by ``tx_hash`` in ``block``; ``records``
    RECORD messages follow."""

    number: int
    tx_hash: bytes
    block: int
    records: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Relayed:
    """One record of batch ``number``, claimed to be ``device``'s; the device's head in the
    batch carries its ``leaf`` and ``proof``."""

    number: int
    device: bytes
    wire: bytes
    leaf: Leaf | None = None
    proof: InclusionProof | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class End:
    """The end of a backfill answer: ask again from ``next_number`` if it is at most ``last``,
    the last batch the gateway has published."""

    next_number: int
    last: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    reply_id: str
    first: int
    count: int


def encode_notice(n: Notice) -> bytes:
    return rlp.encode([_NOTICE, n.number, n.tx_hash, n.block, n.records])


def encode_relayed(r: Relayed) -> bytes:
    leaf: list[object] = []
    proof: list[object] = []
    if r.leaf is not None and r.proof is not None:
        leaf = [r.leaf.device, r.leaf.first_seq, r.leaf.last_seq, r.leaf.head]
        proof = [r.proof.index, r.proof.count, list(r.proof.siblings)]
    return rlp.encode([_RECORD, r.number, r.device, r.wire, leaf, proof])


def encode_end(e: End) -> bytes:
    return rlp.encode([_END, e.next_number, e.last])


def _int(raw: object, what: str) -> int:
    if not isinstance(raw, bytes) or len(raw) > 8:
        raise DecodingError("feed", f"{what} is not an integer below 2^64")
    try:
        return rlp.decode_int(raw, what=what)
    except RLPDecodingError as exc:
        raise DecodingError("feed", exc.reason) from None


def _bytes(raw: object, size: int, what: str) -> bytes:
    if not isinstance(raw, bytes) or len(raw) != size:
        raise DecodingError("feed", f"{what} must be {size} bytes")
    return raw


def _leaf_and_proof(leaf: object, proof: object) -> tuple[Leaf | None, InclusionProof | None]:
    if leaf == [] and proof == []:
        return None, None
    if not (isinstance(leaf, list) and len(leaf) == 4 and isinstance(proof, list)):
        raise DecodingError("feed", "a head carries [device, first, last, head] and its proof")
    if len(proof) != 3 or not isinstance(proof[2], list):
        raise DecodingError("feed", "a proof is [index, count, [siblings]]")
    siblings = proof[2]
    if len(siblings) > MAX_PROOF_SIBLINGS:
        raise DecodingError("feed", f"a proof has at most {MAX_PROOF_SIBLINGS} siblings")
    try:
        parsed = Leaf(
            device=_bytes(leaf[0], 20, "leaf device"),
            first_seq=_int(leaf[1], "first seq"),
            last_seq=_int(leaf[2], "last seq"),
            head=_bytes(leaf[3], 32, "leaf head"),
        )
    except ValueError as exc:
        raise DecodingError("feed", str(exc)) from None
    return parsed, InclusionProof(
        index=_int(proof[0], "proof index"),
        count=_int(proof[1], "proof count"),
        siblings=tuple(_bytes(s, 32, "sibling") for s in siblings),
    )


def decode_feed(data: bytes) -> Notice | Relayed | End:
    """Strict decoder of a feed or backfill message: bounded, canonical RLP, exact shapes."""
    if len(data) > MAX_FEED_MESSAGE:
        raise DecodingError("feed", f"longer than {MAX_FEED_MESSAGE} bytes")
    try:
        item = rlp.decode(data)
    except RLPDecodingError as exc:
        raise DecodingError("feed", exc.reason) from None
    if not isinstance(item, list) or not item:
        raise DecodingError("feed", "not a feed message")
    fields = cast("list[object]", item)
    kind = _int(fields[0], "kind")
    if kind == _NOTICE and len(fields) == 5:
        return Notice(
            number=_int(fields[1], "number"),
            tx_hash=_bytes(fields[2], 32, "tx hash"),
            block=_int(fields[3], "block"),
            records=_int(fields[4], "records"),
        )
    if kind == _RECORD and len(fields) == 6:
        leaf, proof = _leaf_and_proof(fields[4], fields[5])
        wire = fields[3]
        if not isinstance(wire, bytes) or len(wire) > MAX_RECORD_BYTES:
            raise DecodingError("feed", "the record is not a string of a record's size")
        return Relayed(
            number=_int(fields[1], "number"),
            device=_bytes(fields[2], 20, "device"),
            wire=wire,
            leaf=leaf,
            proof=proof,
        )
    if kind == _END and len(fields) == 3:
        return End(next_number=_int(fields[1], "next number"), last=_int(fields[2], "last"))
    raise DecodingError("feed", "unknown message kind or shape")


def encode_request(r: Request) -> bytes:
    return rlp.encode([r.reply_id.encode(), r.first, r.count])


def decode_request(data: bytes) -> Request:
    """Strict: rlp([reply id, first number, count]); the id a safe topic level."""
    if len(data) > MAX_REPLY_ID + 32:
        raise DecodingError("request", "too long")
    try:
        item = rlp.decode(data)
    except RLPDecodingError as exc:
        raise DecodingError("request", exc.reason) from None
    if not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], bytes):
        raise DecodingError("request", "expected [reply id, first, count]")
    text = item[0].decode("ascii", "replace")
    if not 0 < len(text) <= MAX_REPLY_ID or any(c not in _ID_CHARS for c in text):
        raise DecodingError("request", "the reply id is 1..64 of [a-z0-9-]")
    return Request(reply_id=text, first=_int(item[1], "first"), count=_int(item[2], "count"))


_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
