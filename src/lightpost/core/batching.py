"""What the sender signs, and when: batching queued messages into posts, and THE "may we sign?"
gate.

THE GATE IS ONE TABLE, :data:`SIGN_GATE`; :func:`sign_gate` is its only lookup. Posts per (channel,
recipient) of <= ``max_post_bytes``, sent when the oldest waited ``batch_delay_s`` or a post is
full; a chunked message's chunks are signed in one step, never twice.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final

from lightpost.core.envelope import (
    POST_HEADER_SIZE,
    RECORD_OVERHEAD,
    ContentType,
    Post,
    channel_id,
    decode_post,
    encode_post,
    pack_messages,
    post_body_size,
)
from lightpost.core.envelope import Message as EnvelopeMessage
from lightpost.core.inbox import HEADER_BYTES, inbox_calldata, inbox_execution_gas
from lightpost.core.outbox import Message
from lightpost.core.tx import SignedTransaction, decode_transaction
from lightpost.errors import LightpostError, StoreError

__all__ = [
    "SIGN_GATE",
    "Batch",
    "Gate",
    "SignCondition",
    "content_type_code",
    "post_conditions",
    "post_transaction",
    "ready_batches",
    "sign_gate",
    "step_conditions",
    "stored_chunks",
    "with_chunks_of",
    "without_done_chunks",
]

ChunkIndex = Mapping[tuple[bytes, int], Collection[int]]
"""(channel id, seq) -> chunk indices already stored in a transaction."""


class SignCondition(StrEnum):
    """A named condition the gate looks at."""

    NONCE_UNRECONCILED = "nonce-unreconciled"  # none yet in this process
    NONCE_HELD = "nonce-held"  # no nonce quorum
    FUNDS_HELD = "funds-held"  # waiting for the balance
    NO_ROOM = "no-room"  # the in-flight limit is reached
    GROUP_HELD = "group-held"  # this post's messages were held this step
    CHUNKS_NEED_ROOM = "chunks-need-room"  # room for all chunks of a message
    FEE_ABOVE_CAP = "fee-above-cap"  # or the base fee unknown
    BALANCE_SHORT = "balance-short"  # the balance does not cover this post


class Gate(Enum):
    """The gate's verdict: SIGN; STOP (nothing more this step); DEFER (skip this post); HOLD (hold
    its messages visibly); HOLD_STOP (hold, then stop)."""

    SIGN = 0
    STOP = 1
    DEFER = 2
    HOLD = 3
    HOLD_STOP = 4


# --- THE gate table ---

SIGN_GATE: Final[tuple[tuple[SignCondition, Gate], ...]] = (
    # step-wide: nothing new is signed before a nonce decision rests on a quorum
    (SignCondition.NONCE_UNRECONCILED, Gate.STOP),
    (SignCondition.NONCE_HELD, Gate.STOP),
    (SignCondition.FUNDS_HELD, Gate.STOP),
    (SignCondition.NO_ROOM, Gate.STOP),
    # per post
    (SignCondition.GROUP_HELD, Gate.DEFER),
    (SignCondition.CHUNKS_NEED_ROOM, Gate.DEFER),
    (SignCondition.FEE_ABOVE_CAP, Gate.HOLD),
    (SignCondition.BALANCE_SHORT, Gate.HOLD_STOP),
)
"""``(condition, verdict)`` in priority order: the first condition that holds decides;
none holds -> :attr:`Gate.SIGN`."""


def sign_gate(conditions: Collection[SignCondition]) -> tuple[Gate, SignCondition | None]:
    """The verdict for the conditions that hold, and the one that decided it."""
    for condition, verdict in SIGN_GATE:
        if condition in conditions:
            return verdict, condition
    return Gate.SIGN, None


def step_conditions(
    *, nonce_reconciled: bool, nonce_held: bool, funds_held: bool, room: int
) -> frozenset[SignCondition]:
    """The step-wide conditions (``room``: unmined transactions we may still add)."""
    return _holding(
        (SignCondition.NONCE_UNRECONCILED, not nonce_reconciled),
        (SignCondition.NONCE_HELD, nonce_held),
        (SignCondition.FUNDS_HELD, funds_held),
        (SignCondition.NO_ROOM, room <= 0),
    )


def post_conditions(
    *,
    room: int,
    max_in_flight: int,
    group_held: bool,
    chunked: bool,
    group_started: bool,
    posts_in_group: int,
    fee_held: bool,
    cost: int,
    spent: int,
    balance: int | None,
) -> frozenset[SignCondition]:
    """One post's conditions: a chunked message waits for room for all its posts unless the window
    is free; ``balance`` None: unknown."""
    return _holding(
        (SignCondition.NO_ROOM, room <= 0),
        (SignCondition.GROUP_HELD, group_held),
        (
            SignCondition.CHUNKS_NEED_ROOM,
            chunked and not group_started and room < min(posts_in_group, max_in_flight),
        ),
        (SignCondition.FEE_ABOVE_CAP, fee_held),
        (
            SignCondition.BALANCE_SHORT,
            not fee_held and balance is not None and spent + cost > balance,
        ),
    )


def _holding(*flags: tuple[SignCondition, bool]) -> frozenset[SignCondition]:
    return frozenset(condition for condition, on in flags if on)


# --- batching ---


def content_type_code(text: str) -> int:
    """A stored message's content type: a number or a ContentType name (``text``, ``json``...)."""
    if text.isdigit():
        return int(text)
    try:
        return int(ContentType[text.upper().replace("-", "_")])
    except KeyError:
        raise StoreError(f"unknown content type {text!r} in the outbox") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """A post to sign: the message ids it completes and its whole group's ids."""

    post: Post
    message_ids: tuple[int, ...]
    group_ids: tuple[int, ...]

    @property
    def chunked(self) -> bool:
        """True when the post carries a chunk of a larger message."""
        return any(r.chunk is not None for r in self.post.records)


def ready_batches(
    queued: Sequence[Message],
    *,
    now: float,
    max_post_bytes: int,
    batch_delay_s: float,
    done_chunks: ChunkIndex,
) -> list[Batch]:
    """Posts ready to sign now (see the module docstring), in queue order."""
    groups: dict[tuple[str, bytes], list[Message]] = {}
    for m in queued:
        groups.setdefault((m.channel, m.recipient), []).append(m)
    out: list[Batch] = []
    for (channel, recipient), messages in groups.items():
        by_seq = {m.seq: m for m in messages}
        posts = pack_messages(
            channel_id(channel),
            recipient or None,
            [
                EnvelopeMessage(
                    seq=m.seq,
                    timestamp=int(m.created_at * 1000),
                    content_type=content_type_code(m.content_type),
                    payload=m.payload,
                )
                for m in messages
            ],
            max_post_bytes=max_post_bytes,
        )
        if done_chunks and any(r.chunk is not None for p in posts for r in p.records):
            posts = without_done_chunks(posts, done_chunks)
        if not posts:
            continue
        due = now - messages[0].created_at >= batch_delay_s
        last_full = post_body_size(posts[-1]) + RECORD_OVERHEAD + 1 > max_post_bytes
        if not due and not last_full:
            posts = posts[:-1]  # the last post waits for more messages
        group = tuple(m.id for m in messages)
        for post in posts:
            ids = tuple(
                by_seq[r.seq].id
                for r in post.records
                if r.chunk is None or r.chunk.index == r.chunk.count - 1
            )
            out.append(Batch(post=post, message_ids=ids, group_ids=group))
    return out


def post_transaction(
    post: Post, *, inbox: bytes | None, own_address: bytes
) -> tuple[bytes | None, bytes, int]:
    """(to, data, execution gas) for ``post``: an inbox call in channel mode, else a transfer
    to the recipient (or ourselves).
    """
    encoded = encode_post(post)
    if inbox is not None:
        # The post's 64-byte header IS the inbox header (channel, recipient word).
        data = inbox_calldata(post.channel, post.recipient, encoded[HEADER_BYTES:])
        # first_post=True is the upper bound; unused gas is not charged.
        return inbox, data, inbox_execution_gas(len(data), first_post=True)
    return post.recipient or own_address, encoded, 0


def stored_chunks(raws: Iterable[bytes], chain_id: int) -> dict[tuple[bytes, int], set[int]]:
    """(channel id, seq) -> chunk indices in stored message-less transactions (``raws``);
    gap fillers and foreign bytes carry none."""
    done: dict[tuple[bytes, int], set[int]] = {}
    for raw in raws:
        try:
            decoded = decode_transaction(raw, chain_id=chain_id)
            if (
                not isinstance(decoded, SignedTransaction)
                or len(decoded.tx.data) < POST_HEADER_SIZE
            ):
                continue
            post = decode_post(decoded.tx.data)
        except LightpostError:
            continue
        for r in post.records:
            if r.chunk is not None:
                done.setdefault((post.channel, r.seq), set()).add(r.chunk.index)
    return done


def with_chunks_of(done: ChunkIndex, post: Post) -> dict[tuple[bytes, int], set[int]]:
    """``done`` after ``post`` was stored: its chunks remembered, a message forgotten
    once its last chunk is linked."""
    out = {key: set(indices) for key, indices in done.items()}
    for r in post.records:
        if r.chunk is None:
            continue
        key = (post.channel, r.seq)
        if r.chunk.index == r.chunk.count - 1:
            out.pop(key, None)
        else:
            out.setdefault(key, set()).add(r.chunk.index)
    return out


def without_done_chunks(posts: Sequence[Post], done: ChunkIndex) -> list[Post]:
    """``posts`` without the chunk records already stored (empty posts dropped)."""
    out = []
    for post in posts:
        records = tuple(
            r
            for r in post.records
            if r.chunk is None or r.chunk.index not in done.get((post.channel, r.seq), ())
        )
        if records:
            out.append(
                Post(
                    channel=post.channel,
                    recipient=post.recipient,
                    records=records,
                    deflated=post.deflated,
                )
            )
    return out
