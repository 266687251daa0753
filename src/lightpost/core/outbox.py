"""The outbox life cycle of a message and of the transaction that carries it.

THE TRANSITION TABLE BELOW IS THE ONLY PLACE A STATE CHANGES: :func:`next_state` looks ``(state,
event type)`` up in :data:`TRANSITIONS`, a missing pair raises :class:`IllegalTransition` (h11
style); the store calls it before every write. Why (stored bytes re-sent, bumps keep the nonce,
inclusion by proven hash, nothing dropped): docs/protocol.md, "Outbox life cycle".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeAlias

from lightpost.core.fees import FeeQuote
from lightpost.errors import (
    InsufficientFunds,
    LightpostError,
    LocalError,
    NonceTooLow,
    ReplacementUnderpriced,
)

__all__ = [
    "BROADCAST_ANSWERS",
    "HASH_BYTES",
    "MAX_NONCE",
    "PENDING_TX_STATES",
    "TRANSITIONS",
    "AfterBroadcast",
    "BlockRef",
    "Broadcast",
    "Candidate",
    "Event",
    "Finalized",
    "Held",
    "IllegalTransition",
    "Included",
    "Message",
    "NonceConsumed",
    "Released",
    "ReorgedOut",
    "Replaced",
    "Sighting",
    "Signed",
    "State",
    "Transaction",
    "after_broadcast",
    "check_inclusion",
    "next_state",
]

HASH_BYTES = 32
"""Length of a keccak-256 transaction or block hash."""

MAX_NONCE = 2**64 - 2
"""EIP-2681: an account nonce is at most 2^64 - 1, so the last usable tx nonce is one less."""


class State(StrEnum):
    """Where a message (and the transaction carrying it) is in its life cycle."""

    QUEUED = "queued"
    """Accepted and durable on disk; not yet in a signed transaction."""
    HELD = "held"
    """Not signed because the fee cap would be exceeded; waits for fees to fall."""
    SIGNED = "signed"
    """Raw transaction stored durably; must be (re)broadcast."""
    BROADCAST = "broadcast"
    """Sent to at least one endpoint; waiting to be mined."""
    INCLUDED = "included"
    """Mined in a block, recorded by block hash and number; may still reorg."""
    FINAL = "final"
    """Its block is at or below the finalized height and canonical. Terminal."""


PENDING_TX_STATES: Final = frozenset({State.SIGNED, State.BROADCAST, State.INCLUDED})
"""States of a transaction the runtime still has to watch (not yet FINAL)."""


# --- values carried by events and records ---


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_BYTES:
        raise LocalError(f"{what} must be {HASH_BYTES} bytes")


def _check_uint(value: int, what: str, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LocalError(f"{what} must be a non-negative int, got {value!r}")
    if maximum is not None and value > maximum:
        raise LocalError(f"{what} must be at most {maximum}, got {value}")


def _check_raw(value: bytes) -> None:
    # Opaque here: the codec (core/tx.py) owns the format; the outbox only stores it.
    if not isinstance(value, bytes) or not value:
        raise LocalError("raw transaction must be non-empty bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockRef:
    """A block by hash and number. Two BlockRefs are the same block iff hashes match."""

    hash: bytes
    number: int

    def __post_init__(self) -> None:
        _check_hash(self.hash, "block hash")
        _check_uint(self.number, "block number")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sighting:
    """One of our candidate transactions found mined: which hash, in which block."""

    tx_hash: bytes
    block: BlockRef

    def __post_init__(self) -> None:
        _check_hash(self.tx_hash, "tx hash")


# --- events ---


@dataclass(frozen=True, slots=True, kw_only=True)
class Held:
    """The fee cap refused signing (QUEUED -> HELD; HELD -> HELD updates the reason)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Released:
    """Fees are back under the cap (HELD -> QUEUED)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Signed:
    """The messages were put in a signed transaction whose raw bytes are now stored."""

    nonce: int
    tx_hash: bytes
    raw: bytes
    fees: FeeQuote

    def __post_init__(self) -> None:
        _check_uint(self.nonce, "nonce", MAX_NONCE)
        _check_hash(self.tx_hash, "tx hash")
        _check_raw(self.raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class Broadcast:
    """The current raw version was sent and accepted, or answered "already known"."""

    tx_hash: bytes

    def __post_init__(self) -> None:
        _check_hash(self.tx_hash, "tx hash")


@dataclass(frozen=True, slots=True, kw_only=True)
class Replaced:
    """A fee bump: a new raw version with the SAME nonce becomes current (-> SIGNED)."""

    tx_hash: bytes
    raw: bytes
    fees: FeeQuote

    def __post_init__(self) -> None:
        _check_hash(self.tx_hash, "tx hash")
        _check_raw(self.raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class Included:
    """One of the candidate hashes has a receipt in ``sighting.block``."""

    sighting: Sighting


@dataclass(frozen=True, slots=True, kw_only=True)
class ReorgedOut:
    """The block the transaction was recorded in is no longer canonical (-> SIGNED)."""

    block: BlockRef


@dataclass(frozen=True, slots=True, kw_only=True)
class Finalized:
    """The inclusion block is canonical and at or below the finalized height."""

    block: BlockRef


@dataclass(frozen=True, slots=True, kw_only=True)
class NonceConsumed:
    """The nonce was mined by a transaction that is none of ours: re-sign (-> QUEUED)."""

    nonce: int

    def __post_init__(self) -> None:
        _check_uint(self.nonce, "nonce", MAX_NONCE)


Event: TypeAlias = (
    Held
    | Released
    | Signed
    | Broadcast
    | Replaced
    | Included
    | ReorgedOut
    | Finalized
    | NonceConsumed
)
"""Any outbox event."""


# --- THE transition table ---

TRANSITIONS: Final[dict[tuple[State, type[Event]], State]] = {
    # fee cap
    (State.QUEUED, Held): State.HELD,
    (State.HELD, Held): State.HELD,
    (State.HELD, Released): State.QUEUED,
    # signing: raw bytes stored before anything is sent
    (State.QUEUED, Signed): State.SIGNED,
    # broadcast; again = rebroadcast of the same raw bytes ("already known" = success)
    (State.SIGNED, Broadcast): State.BROADCAST,
    (State.BROADCAST, Broadcast): State.BROADCAST,
    # fee bump: new raw version, same nonce, stored before it is sent
    (State.SIGNED, Replaced): State.SIGNED,
    (State.BROADCAST, Replaced): State.SIGNED,
    # mined (SIGNED too: crash between send and mark_broadcast)
    (State.SIGNED, Included): State.INCLUDED,
    (State.BROADCAST, Included): State.INCLUDED,
    # reorged out: back to SIGNED so the stored raw bytes are rebroadcast
    (State.INCLUDED, ReorgedOut): State.SIGNED,
    (State.INCLUDED, Finalized): State.FINAL,
    # nonce consumed by someone else: the messages must be re-signed, never dropped
    (State.SIGNED, NonceConsumed): State.QUEUED,
    (State.BROADCAST, NonceConsumed): State.QUEUED,
    # ... or by our own transaction that reverted (status 0, at finality): no post was
    # made, so its messages are re-signed with a new nonce
    (State.INCLUDED, NonceConsumed): State.QUEUED,
}
"""``{(state, event type): new state}`` -- every legal transition, and only those."""


class IllegalTransition(LocalError):
    """An event that is not legal in the current state (a bug or a stale caller)."""

    def __init__(self, state: State, event: Event) -> None:
        self.state = state
        self.event = event
        super().__init__(f"outbox: {type(event).__name__} is not legal in state {state.value}")


def next_state(state: State, event: Event) -> State:
    """The state after ``event``; raises :class:`IllegalTransition` if not in the table."""
    try:
        return TRANSITIONS[(state, type(event))]
    except KeyError:
        raise IllegalTransition(state, event) from None


# --- records ---


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A message as the outbox holds it. ``tx_id`` is set from SIGNED on."""

    id: int
    channel: str
    recipient: bytes
    seq: int
    payload: bytes
    content_type: str
    created_at: float
    state: State
    tx_id: int | None = None
    hold_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One signed version of a transaction (same nonce, own fees and hash); fees a
    :class:`~lightpost.core.fees.FeeQuote` (fixed price: cap = tip)."""

    tx_hash: bytes
    raw: bytes
    fees: FeeQuote
    signed_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Transaction:
    """A transaction carrying messages: ``raw``/``tx_hash``/``fees`` the current version;
    ``candidates`` every version signed for this nonce, oldest first (any may be mined);
    ``included``/``mined_hash`` set in INCLUDED and FINAL; no ``message_ids``: a gap filler."""

    id: int
    nonce: int
    raw: bytes
    tx_hash: bytes
    fees: FeeQuote
    state: State
    message_ids: tuple[int, ...]
    candidates: tuple[Candidate, ...]
    signed_at: float
    broadcast_at: float | None = None
    included: BlockRef | None = None
    mined_hash: bytes | None = None
    final_at: float | None = None

    @property
    def candidate_hashes(self) -> tuple[bytes, ...]:
        """Every hash that may be the mined one."""
        return tuple(c.tx_hash for c in self.candidates)


# --- confirmation ---


def check_inclusion(
    *,
    state: State,
    included: BlockRef | None,
    sighting: Sighting | None,
    canonical_hash: bytes | None = None,
    finalized_number: int | None = None,
) -> tuple[Event, ...]:
    """Events from what the quorum-agreed chain says about a transaction: ``included`` (stored),
    ``sighting`` (a receipt now; None: none), ``canonical_hash`` (agreed at ``included.number``),
    ``finalized_number``. By hash, never number (web3.js #3608); apply in order with
    :func:`next_state`."""
    if state in (State.SIGNED, State.BROADCAST):
        return () if sighting is None else (Included(sighting=sighting),)
    if state is not State.INCLUDED:
        return ()
    if included is None:
        raise LocalError("check_inclusion: an INCLUDED transaction needs its block")
    if sighting is None:
        return (ReorgedOut(block=included),)
    if sighting.block.hash != included.hash:
        # Re-mined elsewhere (same or other height): record the new block.
        return (ReorgedOut(block=included), Included(sighting=sighting))
    if canonical_hash is not None and canonical_hash != included.hash:
        return (ReorgedOut(block=included),)
    if (
        canonical_hash == included.hash
        and finalized_number is not None
        and included.number <= finalized_number
    ):
        return (Finalized(block=included),)
    return ()


# --- what a broadcast's answers mean ---


class AfterBroadcast(StrEnum):
    """What the runtime does after sending a transaction's raw bytes to every endpoint."""

    SENT = "accepted (or already known) by at least one endpoint"
    RESOLVE_NONCE = "nonce too low: find out which transaction used the nonce"
    BUMP = "replacement underpriced: re-sign the same nonce with higher fees"
    WAIT_FUNDS = "insufficient funds: sign nothing new until the balance covers it"
    RETRY = "no endpoint accepted it: reconcile the nonce and retry"


BROADCAST_ANSWERS: Final[tuple[tuple[type[LightpostError], AfterBroadcast], ...]] = (
    (NonceTooLow, AfterBroadcast.RESOLVE_NONCE),
    (ReplacementUnderpriced, AfterBroadcast.BUMP),
    (InsufficientFunds, AfterBroadcast.WAIT_FUNDS),
)
"""When NO endpoint accepted, the first error kind (in this order) any endpoint gave
decides, else RETRY. Each outcome is safe on one endpoint's word (proof and quorum
resolve nonces, the cap bounds bumps, the next accepted broadcast ends a funds wait)."""


def after_broadcast(*, accepted: bool, errors: Iterable[Exception]) -> AfterBroadcast:
    """The runtime's next action after a broadcast (see :data:`BROADCAST_ANSWERS`)."""
    if accepted:
        return AfterBroadcast.SENT
    seen = tuple(errors)
    for kind, action in BROADCAST_ANSWERS:
        if any(isinstance(e, kind) for e in seen):
            return action
    return AfterBroadcast.RETRY
