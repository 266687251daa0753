"""Receiver delivery bounds, without a chain: proven posts fed straight to delivery."""

from __future__ import annotations

from typing import Any

from lightpost.core.envelope import Chunk, Post, Record, channel_id, encode_post
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


def _first_chunk(seq: int, block: int) -> ProvenPost:
    record = Record(
        seq=seq,
        timestamp=seq,
        content_type=0,
        payload=bytes([seq % 256]) * PIECE,
        chunk=Chunk(index=0, count=2, content_hash=bytes(32)),
    )
    calldata = encode_post(Post(channel=CHANNEL, recipient=None, records=(record,)))
    return ProvenPost(
        sender=SENDER,
        channel=CHANNEL,
        calldata=calldata,
        index=seq + 1,
        tx_hash=bytes(32),
        block_number=block,
        block_hash=bytes(32),
        block_timestamp=0,
        order=(block, 0, 0),
    )


def test_partial_messages_are_bounded_in_bytes_and_hold_the_cursor() -> None:
    """A trusted sender's first chunks that never complete: past PARTIAL_BYTES they are
    refused (over-budget), not kept; the first refused block holds the cursor."""
    harness = Harness()
    count = PARTIAL_BYTES // PIECE + 4
    posts = [_first_chunk(seq, 100 + seq) for seq in range(count)]
    out: list[Delivered | Problem] = list(harness._deliver("sub", Level.FINAL, posts))
    assert not [o for o in out if isinstance(o, Delivered)]
    refused = [o for o in out if isinstance(o, Problem) and o.kind == "over-budget"]
    assert [p.seq for p in refused] == list(range(PARTIAL_BYTES // PIECE, count))
    assert harness._partial_total <= PARTIAL_BYTES
    stream = harness._stream("sub", SENDER, CHANNEL)
    assert stream.refused_block == 100 + PARTIAL_BYTES // PIECE
    assert stream.hold_block() == 100  # the first partial message still holds the cursor
