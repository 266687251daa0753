"""What the sender signs, and when: batching queued messages into posts, and THE
"may we sign?" gate.

THE GATE IS ONE TABLE, :data:`SIGN_GATE`: every condition that can stop or defer
signing, in priority order, with what it does. :func:`sign_gate` looks the conditions
that hold up in it; the first listed wins. Nothing else decides whether to sign (h11
style, like :data:`lightpost.core.outbox.TRANSITIONS`).

Theory of operation
-------------------
*Batching.* Queued messages are grouped per (channel, recipient) and packed
(``envelope.pack_messages``) into posts of at most ``max_post_bytes``. A group goes
when its oldest message waited ``batch_delay_s`` or a post is full; otherwise the last,
partial post waits for more messages.

*Chunks.* A message too large for one post is cut into chunks; it is linked to the
transaction carrying its LAST chunk, and all chunks of a message are signed in one step
(the gate defers it until there is room for all). Chunks already stored in
message-less transactions (by a process that died between two chunk transactions) are
found from the stored raw bytes (:func:`stored_chunks`) and never signed again.

*The gate.* Step-wide conditions (nonce not reconciled or held, funds held, no room for
another unmined transaction) stop all signing. Per-post conditions defer one post
(chunks waiting for room, its group already held this step) or hold its messages
visibly (fee cap; balance short, which also stops the rest of the step).
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
    """A named condition the gate looks at (its value is the reason shown)."""

    NONCE_UNRECONCILED = "nonce not reconciled yet in this process"
    NONCE_HELD = "no nonce quorum"
    FUNDS_HELD = "insufficient funds (waiting for the balance)"
    NO_ROOM = "the in-flight limit of unmined transactions is reached"
    GROUP_HELD = "this post's messages were held this step"
    CHUNKS_NEED_ROOM = "not enough in-flight room for all chunks of the message"
    FEE_ABOVE_CAP = "the fee quote is above the cap (or the base fee unknown)"
    BALANCE_SHORT = "the balance does not cover this post"


class Gate(Enum):
    """What the gate says."""

    SIGN = "sign"
    STOP = "sign nothing more this step"
    DEFER = "skip this post this step (the next one may go)"
    HOLD = "hold this post's messages visibly (the next one may go)"
    HOLD_STOP = "hold this post's messages and sign nothing more this step"


# --- THE gate table ----------------------------------------------------------------------

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
    out: set[SignCondition] = set()
    if not nonce_reconciled:
        out.add(SignCondition.NONCE_UNRECONCILED)
    if nonce_held:
        out.add(SignCondition.NONCE_HELD)
    if funds_held:
        out.add(SignCondition.FUNDS_HELD)
    if room <= 0:
        out.add(SignCondition.NO_ROOM)
    return frozenset(out)


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
    """The conditions of one post. A chunked message waits for room for all its posts
    (unless the whole in-flight limit is free: then it goes, spread over steps);
    ``balance`` None is unknown (the broadcast's "insufficient funds" still guards)."""
    out: set[SignCondition] = set()
    if room <= 0:
        out.add(SignCondition.NO_ROOM)
    if group_held:
        out.add(SignCondition.GROUP_HELD)
    if chunked and not group_started and posts_in_group > room and room < max_in_flight:
        out.add(SignCondition.CHUNKS_NEED_ROOM)
    if fee_held:
        out.add(SignCondition.FEE_ABOVE_CAP)
    elif balance is not None and spent + cost > balance:
        out.add(SignCondition.BALANCE_SHORT)
    return frozenset(out)


# --- batching ------------------------------------------------------------------------------


def content_type_code(text: str) -> int:
    """The envelope content type of a stored message: a number, or a ContentType name
    (``text``, ``json``, ``octet-stream``, ``command-result``...)."""
    if text.isdigit():
        return int(text)
    try:
        return int(ContentType[text.upper().replace("-", "_")])
    except KeyError:
        raise StoreError(f"unknown content type {text!r} in the outbox") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """A post ready to sign: the message ids it completes (linked to its transaction)
    and the ids of its whole (channel, recipient) group."""

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
    """(to, data, execution gas) of the transaction carrying ``post``: a call of the
    inbox in channel mode (``inbox`` set), else a transfer to the recipient (or to
    ourselves when there is none)."""
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
