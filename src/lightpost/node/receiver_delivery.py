"""Receiver delivery: proven posts -> envelopes -> whole messages -> in-order delivery.

Each (sender, channel) stream has a reassembler (chunks) and a
:class:`~lightpost.core.verify.Sequencer`. What a peer controls is bounded in BYTES
(:data:`POLL_INFLATED_BYTES`, :data:`HELD_BYTES`, :data:`PARTIAL_BYTES`): past one the rest waits
behind the persisted cursor (``over-budget``, >= one block per poll), nothing lost
(docs/protocol.md, "Delivery and reorgs").
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lightpost.adapters.receiver_store import ReceiverStore, StreamRow, UnfinalRow
from lightpost.adapters.rpc import Endpoint
from lightpost.core.envelope import Message, Reassembler, Record, decode_post
from lightpost.core.inbox import ACC_ZERO
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem, ProblemKind, Sequencer, is_seq_restart
from lightpost.errors import LightpostError
from lightpost.node.chain import Chain
from lightpost.node.config import DeviceConfig

if TYPE_CHECKING:
    from lightpost.node.receiver_channel import Side

__all__ = ["HELD_BYTES", "PARTIAL_BYTES", "POLL_INFLATED_BYTES", "ProvenPost"]

POLL_INFLATED_BYTES = 32 * 1024 * 1024
"""Inflated message bytes per poll: eight largest messages (envelope.MAX_MESSAGE_BYTES); bounds one
poll's CPU and memory."""

HELD_BYTES = 16 * 1024 * 1024
"""Bytes held behind gaps, all streams: four largest messages, well inside a small device's RAM."""

PARTIAL_BYTES = 16 * 1024 * 1024
"""Bytes of chunks of incomplete messages, all streams together (same reasoning)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvenPost:
    """A post proven at the poll's level: who sent what, where."""

    sender: bytes
    channel: bytes
    calldata: bytes
    index: int | None  # inbox count_new (channel mode); None in direct mode
    tx_hash: bytes
    block_number: int
    block_hash: bytes
    block_timestamp: int
    order: tuple[int, int, int]  # (block, tx index, log index) for chain order


@dataclass(frozen=True, slots=True)
class _Pending:
    # A whole message waiting in a sequencer.

    message: Message
    post: ProvenPost
    recipient: bytes | None
    for_us: bool


@dataclass
class Stream:
    """In-memory state of one (sender, channel) stream of a subscription."""

    sequencer: Sequencer[_Pending]
    acc: bytes
    count: int
    proven_at: int | None = None
    reassembler: Reassembler = field(default_factory=Reassembler)
    partial_blocks: dict[int, int] = field(default_factory=dict)  # seq -> first block
    partial_bytes: dict[int, int] = field(default_factory=dict)  # seq -> chunk bytes
    held_bytes: int = 0
    refused_block: int | None = None  # lowest block of a message refused by a bound
    reported_gaps: set[tuple[int, int]] = field(default_factory=set)
    last_block: int | None = None  # highest block a message was sequenced from
    restart_reported: bool = False

    def hold_block(self) -> int | None:
        """Lowest block holding something not yet delivered (None: nothing held)."""
        blocks = [p.post.block_number for p in self.sequencer.held.values()]
        blocks += list(self.partial_blocks.values())
        if self.refused_block is not None:
            blocks.append(self.refused_block)
        return min(blocks) if blocks else None

    def refuse(self, block: int) -> None:
        self.refused_block = block if self.refused_block is None else min(block, self.refused_block)


def new_stream(
    next_seq: int | None = None,
    acc: bytes = ACC_ZERO,
    count: int = 0,
    last_block: int | None = None,
) -> Stream:
    return Stream(
        sequencer=Sequencer(next_seq=next_seq), acc=acc, count=count, last_block=last_block
    )


def _problem(kind: ProblemKind, details: str, post: ProvenPost, seq: int | None = None) -> Problem:
    return Problem(
        kind=kind,
        details=details,
        sender=post.sender,
        channel=post.channel,
        seq=seq,
        tx_hash=post.tx_hash,
        block_number=post.block_number,
    )


class _ReceiverHost:
    # What the receiver mixins use of :class:`~lightpost.node.receiver.Receiver` and of each other,
    # declared once (types only).

    config: DeviceConfig
    chain: Chain
    store: ReceiverStore
    endpoints: list[Endpoint]
    me: bytes
    policies: dict[bytes, frozenset[bytes]]
    _inbox_code_hash: bytes
    _final_at_poll: int
    _streams: dict[tuple[str, bytes, bytes], Stream]
    _held_total: int
    _partial_total: int
    _inflated: int
    _stream: Callable[[str, bytes, bytes], Stream]
    _save: Callable[[str, bytes, bytes], None]
    _deliver: Callable[
        [str, Level, list[ProvenPost]], Generator[Delivered | Problem, None, int | None]
    ]
    _finish: Callable[[str, int], None]
    _block_side: Callable[[int, list[Problem]], Side]
    anchor: Any
    _ask_in_turn: Callable[..., Any]
    _refusal: Callable[[str], str]
    _followed: Callable[[tuple[bytes, ...], bytes | None], list[tuple[bytes, bytes]]]
    _complete_only: Callable[..., Iterator[Delivered | Problem]]
    any_recipient = False
    on_post: Callable[[ProvenPost], None] | None = None


class DeliveryMixin(_ReceiverHost):
    """The delivery half of :class:`~lightpost.node.receiver.Receiver`."""

    def _stream(self, sub: str, sender: bytes, channel: bytes) -> Stream:
        key = (sub, sender, channel)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = new_stream()
        return stream

    def _save(self, sub: str, sender: bytes, channel: bytes) -> None:
        s = self._stream(sub, sender, channel)
        self.store.save_stream(
            sub,
            StreamRow(
                sender, channel, s.sequencer.next_seq, s.acc, s.count, s.proven_at, s.last_block
            ),
        )

    def _room_for(self, stream: Stream) -> bool:
        # Whether ``stream``'s refused messages can be offered again: its gap closed and the budgets
        # have room (a rescan sooner would be refused again).
        return (
            not stream.sequencer.held
            and self._held_total < HELD_BYTES
            and self._partial_total < PARTIAL_BYTES
        )

    def _deliver(
        self, sub: str, level: Level, posts: list[ProvenPost]
    ) -> Generator[Delivered | Problem, None, int | None]:
        # Decode and deliver ``posts`` (chain order); returns (StopIteration value) the block where
        # the inflated budget stopped delivery, else None.
        touched: set[tuple[bytes, bytes]] = set()
        block: int | None = None
        stopped: int | None = None
        for post in posts:
            if post.block_number != block:
                if block is not None and self._inflated > POLL_INFLATED_BYTES:
                    stopped = post.block_number
                    yield _problem(
                        ProblemKind.OVER_BUDGET,
                        f"{self._inflated} inflated bytes decoded this poll (budget "
                        f"{POLL_INFLATED_BYTES}); blocks from {stopped} wait for the next poll",
                        post,
                    )
                    break
                block = post.block_number
            if post.sender not in self.policies.get(post.channel, frozenset()):
                yield _problem(
                    ProblemKind.UNAUTHORIZED,
                    "sender is not in the channel's trusted list; not delivered",
                    post,
                )
                continue
            if self.on_post is not None:
                self.on_post(post)
            try:
                envelope = decode_post(post.calldata)
            except LightpostError as exc:
                yield _problem(ProblemKind.UNDECODABLE, str(exc), post)
                continue
            stream = self._stream(sub, post.sender, post.channel)
            touched.add((post.sender, post.channel))
            for_us = self.any_recipient or envelope.recipient in (None, self.me)
            for record in envelope.records:
                message = yield from self._assemble(stream, record, post)
                if message is None:
                    continue
                self._inflated += len(message.payload)
                yield from self._offer(
                    sub, level, stream, _Pending(message, post, envelope.recipient, for_us)
                )
        for key in touched:
            self._save(sub, *key)
        return stopped

    def _assemble(
        self, stream: Stream, record: Record, post: ProvenPost
    ) -> Generator[Problem, None, Message | None]:
        # One record into the stream's reassembler (bounded); the message or None.
        seq, chunk = record.seq, record.chunk
        new_piece = chunk is not None and (
            seq not in stream.partial_bytes or chunk.index in stream.reassembler.missing(seq)
        )
        if new_piece and self._partial_total + len(record.payload) > PARTIAL_BYTES:
            stream.refuse(post.block_number)
            yield _problem(
                ProblemKind.OVER_BUDGET,
                f"chunks of incomplete messages reached {PARTIAL_BYTES} bytes; "
                "this chunk waits for a rescan",
                post,
                seq,
            )
            return None
        try:
            message = stream.reassembler.add(record)
        except LightpostError as exc:
            self._drop_partial(stream, seq)
            yield _problem(ProblemKind.UNDECODABLE, str(exc), post, seq)
            return None
        if message is None:
            stream.partial_blocks.setdefault(seq, post.block_number)
            if new_piece:
                size = len(record.payload)
                stream.partial_bytes[seq] = stream.partial_bytes.get(seq, 0) + size
                self._partial_total += size
            return None
        self._drop_partial(stream, seq)
        return message

    def _drop_partial(self, stream: Stream, seq: int) -> None:
        stream.partial_blocks.pop(seq, None)
        self._partial_total -= stream.partial_bytes.pop(seq, 0)

    def _offer(
        self, sub: str, level: Level, stream: Stream, pending: _Pending
    ) -> Iterator[Delivered | Problem]:
        post, message = pending.post, pending.message
        sequencer = stream.sequencer
        would_hold = sequencer.next_seq is not None and message.seq > sequencer.next_seq
        full = len(sequencer.held) >= sequencer.max_held
        if would_hold and (full or self._held_total + len(message.payload) > HELD_BYTES):
            stream.refuse(post.block_number)
            yield _problem(
                ProblemKind.OVER_BUDGET,
                f"messages held behind gaps reached {HELD_BYTES} bytes or "
                f"{sequencer.max_held} messages; seq "
                f"{message.seq} waits for a rescan",
                post,
                message.seq,
            )
            return
        expected = sequencer.next_seq
        offer = sequencer.offer(message.seq, pending)
        if offer.duplicate and is_seq_restart(
            message.seq, expected, post.block_number, stream.last_block
        ):
            if not stream.restart_reported:
                stream.restart_reported = True
                yield _problem(
                    ProblemKind.SEQ_RESTART,
                    f"seq {message.seq} arrived again in block {post.block_number}, after seq "
                    f"{(expected or 1) - 1} in block {stream.last_block}: the sender started its "
                    "sequence over (was its data directory emptied?); its messages are not "
                    "delivered. Remedy: restore the sender's data directory, or have it post "
                    "under a new key or channel; to accept the new sequence here, receive with a "
                    "new data_dir",
                    post,
                    message.seq,
                )
            return
        if offer.ready:
            stream.last_block = max(stream.last_block or 0, post.block_number)
        held = sum(len(p.message.payload) for p in sequencer.held.values())
        self._held_total += held - stream.held_bytes
        stream.held_bytes = held
        if offer.gap is not None and offer.gap not in stream.reported_gaps:
            stream.reported_gaps.add(offer.gap)
            yield Problem(
                kind=ProblemKind.GAP,
                sender=post.sender,
                channel=post.channel,
                seq=offer.gap[0],
                missing=offer.gap[1] - offer.gap[0] + 1,
                details=f"seq {offer.gap[0]}..{offer.gap[1]} missing; later messages are held",
                block_number=post.block_number,
            )
        for _, ready in offer.ready:
            if ready.for_us:
                yield self._delivered(sub, level, ready)

    def _delivered(self, sub: str, level: Level, pending: _Pending) -> Delivered:
        post, message = pending.post, pending.message
        # A delivery at `included` is remembered for retraction on a reorg -- unless its
        # block is already final (a catch-up over old blocks). At `signed` the block
        # number and hash are an endpoint's unverified word: nothing is recorded, so a
        # liar cannot drive retractions (`signed` promises nothing about inclusion).
        if level == Level.INCLUDED and post.block_number > self._final_at_poll:
            self.store.add_unfinal(
                sub,
                UnfinalRow(
                    post.block_number,
                    post.block_hash,
                    post.sender,
                    post.channel,
                    message.seq,
                    post.tx_hash,
                ),
            )
        return Delivered(
            sender=post.sender,
            channel=post.channel,
            recipient=pending.recipient,
            seq=message.seq,
            timestamp=message.timestamp,
            content_type=message.content_type,
            payload=message.payload,
            tx_hash=post.tx_hash,
            block_number=post.block_number,
            block_hash=post.block_hash,
            block_timestamp=post.block_timestamp,
            level=level,
            root="signature"
            if level < Level.INCLUDED
            else self.anchor.root(post.block_number)
            if self.anchor
            else "quorum",
        )
