"""Receiver delivery bounds, without a chain: proven posts fed straight to delivery."""

from __future__ import annotations

from typing import Any

from lightpost.core.envelope import (
    MAX_PARTIAL_BYTES,
    Chunk,
    Post,
    Record,
    channel_id,
    encode_post,
)
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem
from lightpost.node.receiver_delivery import PARTIAL_BYTES, DeliveryMixin, ProvenPost, Stream

CHANNEL = channel_id("c1")
SENDER = bytes.fromhex("aa" * 20)
PIECE = 1024 * 1024
"""Bytes of each first chunk (a 2-chunk message that never completes)."""


class _Store:
    def save_stream(self, sub: str, row: Any) -> None:
        pass

    def add_unfinal(self, sub: str, row: Any) -> None:
        pass


class Harness(DeliveryMixin):
    def __init__(self) -> None:
        self.store: Any = _Store()
        self.me = bytes.fromhex("11" * 20)
        self.policies = {CHANNEL: frozenset({SENDER})}
        self._final_at_poll = -1
        self._streams: dict[tuple[str, bytes, bytes], Stream] = {}
        self._held_total = self._partial_total = self._inflated = 0
        self.anchor = None  # quorum trust


def _first_chunk(seq: int, block: int, sender: bytes = SENDER) -> ProvenPost:
    record = Record(
        seq=seq,
        timestamp=seq,
        content_type=0,
        payload=bytes([seq % 256]) * PIECE,
        chunk=Chunk(index=0, count=2, content_hash=bytes(32)),
    )
    calldata = encode_post(Post(channel=CHANNEL, recipient=None, records=(record,)))
    return ProvenPost(
        sender=sender,
        channel=CHANNEL,
        calldata=calldata,
        index=seq + 1,
        tx_hash=bytes(32),
        block_number=block,
        block_hash=bytes(32),
        block_timestamp=0,
        order=(block, 0, 0),
    )


SENDERS = tuple(bytes([0xA0 + i]) * 20 for i in range(4))
"""Trusted senders of the global-budget test: each stays under its stream's own cap
(envelope.MAX_PARTIAL_BYTES), together they pass the receiver's PARTIAL_BYTES."""

PER_SENDER = MAX_PARTIAL_BYTES // PIECE - 3
"""First chunks per sender: under the per-stream cap, 4 x this is over PARTIAL_BYTES."""


def test_partial_messages_are_bounded_in_bytes_and_hold_the_cursor() -> None:
    """Trusted senders' first chunks that never complete: past PARTIAL_BYTES (over all
    streams) they are refused (over-budget), not kept; the first refused block holds the
    refusing stream's cursor, and the partial messages still hold theirs."""
    harness = Harness()
    harness.policies = {CHANNEL: frozenset(SENDERS)}
    posts = [
        _first_chunk(seq, 100 + 10 * n + seq, sender)
        for n, sender in enumerate(SENDERS)
        for seq in range(PER_SENDER)
    ]
    assert len(posts) * PIECE > PARTIAL_BYTES
    out: list[Delivered | Problem] = list(harness._deliver("sub", Level.FINAL, posts))
    assert not [o for o in out if isinstance(o, Delivered)]
    assert {o.kind for o in out if isinstance(o, Problem)} == {"over-budget"}
    refused = [o for o in out if isinstance(o, Problem)]
    kept = PARTIAL_BYTES // PIECE  # pieces that fit, in delivery order
    assert [(p.sender, p.seq) for p in refused] == [
        (post.sender, seq)
        for post, seq in [(p, p.index - 1) for p in posts[kept:] if p.index is not None]
    ]
    assert harness._partial_total <= PARTIAL_BYTES
    first_refused = posts[kept]
    stream = harness._stream("sub", first_refused.sender, CHANNEL)
    assert stream.refused_block == first_refused.block_number
    assert harness._stream("sub", SENDERS[0], CHANNEL).hold_block() == 100


def test_one_streams_partial_messages_are_capped_by_the_reassembler() -> None:
    """One sender alone cannot open partial messages past its stream's cap
    (envelope.MAX_PARTIAL_BYTES: a sender signs chunks in order, so more is a protocol
    violation): the excess is undecodable and dropped, the total stays under the cap."""
    harness = Harness()
    count = MAX_PARTIAL_BYTES // PIECE + 3
    posts = [_first_chunk(seq, 100 + seq) for seq in range(count)]
    out: list[Delivered | Problem] = list(harness._deliver("sub", Level.FINAL, posts))
    assert not [o for o in out if isinstance(o, Delivered)]
    dropped = [o for o in out if isinstance(o, Problem)]
    assert [p.kind for p in dropped] == ["undecodable"] * 3
    assert [p.seq for p in dropped] == list(range(MAX_PARTIAL_BYTES // PIECE, count))
    stream = harness._stream("sub", SENDER, CHANNEL)
    assert stream.reassembler.held_bytes() <= MAX_PARTIAL_BYTES
    assert harness._partial_total == stream.reassembler.held_bytes()


def _addressed(seq: int, recipient: bytes | None) -> ProvenPost:
    record = Record(seq=seq, timestamp=seq, content_type=0, payload=b"open valve")
    calldata = encode_post(Post(channel=CHANNEL, recipient=recipient, records=(record,)))
    return ProvenPost(
        sender=SENDER,
        channel=CHANNEL,
        calldata=calldata,
        index=seq,
        tx_hash=bytes([seq]) * 32,
        block_number=100 + seq,
        block_hash=bytes(32),
        block_timestamp=0,
        order=(100 + seq, 0, 0),
    )


def test_any_recipient_delivers_messages_addressed_to_other_devices() -> None:
    """A device is delivered only what is addressed to it or to everyone (the rest still
    advances the stream); an observer (``any_recipient``, the operator's console) gets all."""
    other = bytes.fromhex("22" * 20)
    posts = [_addressed(1, other), _addressed(2, None), _addressed(3, other)]
    device = Harness()
    out = list(device._deliver("sub", Level.FINAL, posts))
    assert [o.seq for o in out if isinstance(o, Delivered)] == [2]
    observer = Harness()
    observer.any_recipient = True
    out = list(observer._deliver("sub", Level.FINAL, posts))
    delivered = [o for o in out if isinstance(o, Delivered)]
    assert [(o.seq, o.recipient) for o in delivered] == [(1, other), (2, None), (3, other)]


def test_on_post_sees_each_trusted_proven_post_chunks_included() -> None:
    """``on_post`` is shown every proven post of a trusted sender, also a chunk whose message is
    not complete (the console counts each chunk's transaction); an untrusted one is not shown."""
    stranger = bytes.fromhex("ee" * 20)
    seen: list[ProvenPost] = []
    harness = Harness()
    harness.on_post = seen.append
    posts = [_first_chunk(1, 100), _first_chunk(1, 101, stranger), _addressed(2, None)]
    out = list(harness._deliver("sub", Level.FINAL, posts))
    assert [p.tx_hash for p in seen] == [posts[0].tx_hash, posts[2].tx_hash]
    assert [o.kind for o in out if isinstance(o, Problem)] == ["unauthorized"]
