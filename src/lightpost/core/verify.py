"""The receiver's verification ladder and delivery ordering, pure: quorum-agreed values and JSON
answers in, proven values out, else :class:`~lightpost.errors.ProofError` / ``DecodingError`` /
``SignatureError``. Levels -> functions: docs/protocol.md, "Verification levels"; ordering:
:class:`Sequencer`."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from lightpost.core.header import BlockHeader, header_hash, verify_header
from lightpost.core.inbox import (
    ACC_ZERO,
    InboxPost,
    accumulator_of,
    accumulator_slots,
    decode_post_log,
)
from lightpost.core.l2 import (
    ETHEREUM,
    BlockFormat,
    check_header_fields,
    l2_transaction_from_rpc,
    prove_foreign_raw,
    unsupported_reason,
)
from lightpost.core.receipts import (
    RECEIPT_TYPES,
    Log,
    Receipt,
    receipt_from_rpc,
    verify_receipts_root,
)
from lightpost.core.rpcfields import get_list, get_object
from lightpost.core.trie import ProvenAccount, check_eth_get_proof, ordered_trie_root
from lightpost.core.tx import (
    DecodedTransaction,
    ForeignTransaction,
    SignedTransaction,
    decode_transaction,
    rpc_hash_matches,
    transaction_from_rpc,
)
from lightpost.errors import DecodingError, NotProvable, ProofError

__all__ = [
    "MAX_HELD_MESSAGES",
    "Complete",
    "Completeness",
    "Hidden",
    "Mismatch",
    "Offer",
    "Problem",
    "ProblemKind",
    "ProvenBlock",
    "Sequencer",
    "check_post_tx",
    "completeness_verdict",
    "decode_inbox_log",
    "is_final",
    "is_seq_restart",
    "prove_block_receipts",
    "prove_block_transactions",
    "proven_accumulator",
    "rebuild_transaction",
    "verify_accumulators",
    "verify_block_header",
    "verify_included_tx",
    "verify_signed",
    "verify_signed_raw",
]


class ProblemKind(enum.StrEnum):
    """What went wrong; one JSON ``problem`` line each (the value is the wire name)."""

    UNAUTHORIZED = "unauthorized"
    """A sender not in the channel's trusted list (never delivered)."""
    GAP = "gap"
    """A seq is missing: later messages are held, not skipped."""
    PROOF_FAILURE = "proof-failure"
    """An answer failed verification against what the endpoint itself claimed or what
    was asked (forged, out of range, wrong header, bad proof)."""
    DISAGREEMENT = "disagreement"
    """Endpoints disagree / no quorum; both sides are named, neither is called a liar."""
    HIDDEN = "hidden"
    """A post exists that an endpoint (or every endpoint) did not return."""
    RETRACTED = "retracted"
    """A delivered message's block left the canonical chain."""
    UNDECODABLE = "undecodable"
    """A verified post whose envelope does not decode."""
    OVER_BUDGET = "over-budget"
    """A byte budget (inflated bytes per poll, held or partial bytes) was reached: the
    rest waits, the cursor holds, nothing is lost."""
    SEQ_RESTART = "seq-restart"
    """An already delivered seq arrived again in a later block: the sender started its sequence
    over (e.g. its data directory was emptied); those messages are not delivered."""


MAX_HELD_MESSAGES = 1024
"""Messages held behind a gap per stream before the oldest are dropped (a rescan from the cursor
recovers them)."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """Something refused or unproven: reported, never delivered; ``endpoints``: labels involved
    (never URLs)."""

    kind: ProblemKind
    details: str
    sender: bytes | None = None
    channel: bytes | None = None
    seq: int | None = None
    tx_hash: bytes | None = None
    block_number: int | None = None
    endpoints: tuple[str, ...] = ()
    missing: int | None = None

    def __post_init__(self) -> None:
        # a plain string is accepted and normalised (ValueError if unknown)
        object.__setattr__(self, "kind", ProblemKind(self.kind))


# --- signed ---


def _require_signed(decoded: DecodedTransaction, chain_id: int) -> SignedTransaction:
    if not isinstance(decoded, SignedTransaction):
        raise ProofError("signed", f"transaction type {decoded.type} carries no lightpost post")
    if decoded.chain_id is None:
        # EIP-155: an unprotected signature is valid on every chain (replayable).
        raise ProofError("signed", "unprotected (pre-EIP-155) signature: no chain id")
    if decoded.chain_id != chain_id:
        raise ProofError("signed", f"signed for chain id {decoded.chain_id}, not {chain_id}")
    return decoded


def verify_signed(tx_json: Mapping[str, Any], *, chain_id: int) -> SignedTransaction:
    """Rebuild a transaction from its JSON-RPC object: ``hash`` must be keccak256 of its bytes; the
    sender recovered (``from`` ignored). ProofError (``signed``) / DecodingError /
    SignatureError."""
    try:
        decoded = transaction_from_rpc(tx_json)
        matches = rpc_hash_matches(tx_json, decoded)
    except (KeyError, TypeError) as exc:
        raise DecodingError("rpc transaction", f"missing or malformed field: {exc}") from None
    signed = _require_signed(decoded, chain_id)
    if not matches:
        raise ProofError("signed", "transaction fields do not hash to the claimed hash")
    return signed


def verify_signed_raw(raw: bytes, *, chain_id: int) -> SignedTransaction:
    """Decode canonical transaction bytes; sender recovered, chain id required."""
    return _require_signed(decode_transaction(raw), chain_id)


def check_post_tx(post: InboxPost, tx: SignedTransaction, *, inbox: bytes) -> None:
    """The post must come from ``tx``: same sender (CALLER), ``to`` = inbox, same calldata; else
    ProofError (``signed``)."""
    if tx.sender != post.sender:
        raise ProofError("signed", "the log's sender is not the transaction's signer")
    if tx.tx.to != inbox:
        raise ProofError("signed", "the transaction does not call the inbox")
    if tx.tx.data != post.calldata:
        raise ProofError("signed", "the transaction's calldata differs from the post")


def decode_inbox_log(log: Log, *, inbox: bytes) -> InboxPost:
    """An inbox post from a (proven or claimed) log; DecodingError if it is not one."""
    return decode_post_log(log.address, log.topics, log.data, inbox=inbox)


# --- included ---


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvenBlock:
    """A block whose header hashes to the agreed hash, with its proven ``transactions`` and/or
    ``receipts`` (empty when not fetched)."""

    header: BlockHeader
    hash: bytes
    transactions: tuple[DecodedTransaction, ...] = ()
    receipts: tuple[Receipt, ...] = ()

    @property
    def number(self) -> int:
        """The block height."""
        return self.header.number


def verify_block_header(
    header_json: object, agreed_hash: bytes, *, fmt: BlockFormat = ETHEREUM
) -> BlockHeader:
    """Rebuild the header from every field (plus ``fmt``'s extra keys, each checked against the
    hashed fields); both its claimed and recomputed hash must equal ``agreed_hash``, else
    ProofError (``header``)."""
    header = verify_header(header_json, extra_allowed=fmt.header_fields)
    if header_hash(header) != agreed_hash:
        raise ProofError("header", "block is not the quorum-agreed block at this height")
    check_header_fields(get_object(header_json, "header"), header, fmt.header_fields)
    return header


def rebuild_transaction(
    tx_obj: Mapping[str, Any], fmt: BlockFormat = ETHEREUM
) -> DecodedTransaction:
    """A transaction from its JSON-RPC object, ``fmt``'s L2 types included (hash unchecked)."""
    decoded = transaction_from_rpc(tx_obj)
    if decoded.raw is None and decoded.type in fmt.tx_types:
        return l2_transaction_from_rpc(tx_obj)
    return decoded


def prove_block_transactions(
    header: BlockHeader,
    transactions_json: Sequence[object],
    *,
    fmt: BlockFormat = ETHEREUM,
    raw_forms: Mapping[int, bytes] | None = None,
) -> tuple[DecodedTransaction, ...]:
    """Rebuild every transaction of a full block (each to its hash; ``fmt``'s L2 types too) and
    transactionsRoot; a type with no encoding here is taken from ``raw_forms`` (index -> bytes of
    eth_getRawTransactionByBlockHashAndIndex, checked against the listed hash), else refused;
    ProofError (``transactionsRoot``)."""
    rebuilt: list[DecodedTransaction] = []
    for i, obj in enumerate(transactions_json):
        tx_obj = get_object(obj, f"block.transactions[{i}]")
        try:
            decoded = rebuild_transaction(tx_obj, fmt)
            matches = rpc_hash_matches(tx_obj, decoded)
        except (KeyError, TypeError) as exc:
            raise DecodingError("rpc transaction", f"malformed field: {exc}") from None
        if isinstance(decoded, ForeignTransaction) and decoded.raw is None:
            raw = (raw_forms or {}).get(i)
            if raw is None:
                raise NotProvable(
                    "transactionsRoot", unsupported_reason(decoded.type, header.number, i)
                )
            decoded = prove_foreign_raw(raw, decoded)
        elif not matches:
            raise ProofError("transactionsRoot", f"transaction {i} does not match its hash")
        rebuilt.append(decoded)
    raws = [t.raw for t in rebuilt if t.raw is not None]
    if ordered_trie_root(raws) != header.transactions_root:
        raise ProofError("transactionsRoot", "transactions do not rebuild the transactionsRoot")
    return tuple(rebuilt)


def prove_block_receipts(
    header: BlockHeader, receipts_json: object, *, fmt: BlockFormat = ETHEREUM
) -> tuple[Receipt, ...]:
    """Rebuild every receipt (eth_getBlockReceipts; ``fmt``'s L2 types too), its bloom and
    receiptsRoot; else ProofError (``receiptsRoot`` / ``logsBloom``)."""
    items = get_list(receipts_json, "block receipts")
    types = RECEIPT_TYPES | fmt.tx_types
    receipts = tuple(receipt_from_rpc(r, types=types) for r in items)
    verify_receipts_root(header.receipts_root, receipts)
    return receipts


def verify_included_tx(
    header_json: object,
    agreed_hash: bytes,
    *,
    chain_id: int,
    tx_hash: bytes,
    fmt: BlockFormat = ETHEREUM,
) -> tuple[int, SignedTransaction]:
    """One-shot ``included`` check in a full block JSON: header vs agreed hash, transactionsRoot,
    the tx found; returns (index, signed tx)."""
    header = verify_block_header(header_json, agreed_hash, fmt=fmt)
    txs_json = get_list(get_object(header_json, "block").get("transactions"), "transactions")
    txs = prove_block_transactions(header, txs_json, fmt=fmt)
    for index, tx in enumerate(txs):
        if tx.hash == tx_hash:
            return index, _require_signed(tx, chain_id)
    raise ProofError("transactionsRoot", "transaction not in the proven block")


# --- final ---


def is_final(block_number: int, finalized_height: int) -> bool:
    """``final``: the block is at or below the quorum-agreed finalized height."""
    return block_number <= finalized_height


# --- complete ---


@dataclass(frozen=True, slots=True)
class Complete:
    """The receiver holds every post: its fold equals the proven (acc, count)."""

    count: int
    acc: bytes


@dataclass(frozen=True, slots=True)
class Hidden:
    """The chain holds ``missing`` more posts than the receiver was shown."""

    missing: int
    proven_count: int


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Same count, different accumulator (a post altered or reordered), or more posts
    held than proven (local state from another chain)."""

    reason: str


Completeness = Complete | Hidden | Mismatch


def verify_accumulators(
    state_root: bytes,
    proof_json: object,
    *,
    inbox: bytes,
    inbox_code_hash: bytes,
    keys: Sequence[tuple[bytes, bytes]],
) -> dict[tuple[bytes, bytes], tuple[bytes, int]]:
    """(acc, count) of every (sender, channel) in ``keys`` from ONE eth_getProof answer, proven
    against ``state_root`` with code hash ``inbox_code_hash``; ProofError otherwise."""
    proven = check_eth_get_proof(state_root, proof_json, address=inbox)
    if proven.account is None or proven.account.code_hash != inbox_code_hash:
        raise ProofError("account", "the inbox address does not hold the inbox code")
    return {key: proven_accumulator(proven, sender=key[0], channel=key[1]) for key in keys}


def completeness_verdict(
    *,
    proven_acc: bytes,
    proven_count: int,
    local_acc: bytes,
    local_count: int,
    new_posts: Mapping[int, bytes] | None = None,
) -> Completeness:
    """A stream's proven (acc, count) against the receiver's persisted fold
    (``local_acc``/``local_count``); ``new_posts``: log index (1-based count) -> calldata of
    every post verified since."""
    posts = dict(new_posts or {})
    held = local_count + len(posts)
    if proven_count > held:
        return Hidden(missing=proven_count - held, proven_count=proven_count)
    expected = range(local_count + 1, proven_count + 1)
    if proven_count < held or sorted(posts) != list(expected):
        return Mismatch(
            f"holding posts {sorted(posts)} after {local_count}; chain proves {proven_count}"
        )
    if accumulator_of((posts[i] for i in expected), local_acc) != proven_acc:
        return Mismatch("accumulator differs: a post was altered, reordered or replaced")
    return Complete(count=proven_count, acc=proven_acc)


def proven_accumulator(
    proven: ProvenAccount, *, sender: bytes, channel: bytes
) -> tuple[bytes, int]:
    """(acc, count) of a (sender, channel) from a verified eth_getProof answer; both
    slots must have been part of the proof."""
    acc_slot, count_slot = accumulator_slots(sender, channel)
    if acc_slot not in proven.storage or count_slot not in proven.storage:
        raise ProofError("storage", "the proof lacks the accumulator or count slot")
    acc_value = proven.storage[acc_slot]
    return (acc_value.to_bytes(32, "big") if acc_value else ACC_ZERO), proven.storage[count_slot]


# --- delivery ordering ---


@dataclass(frozen=True, slots=True)
class Offer(Generic[T]):
    """One :class:`Sequencer` offer's result: ``ready`` (in seq order), ``duplicate`` (dropped),
    ``gap`` (the (first, last) it waits behind)."""

    ready: tuple[tuple[int, T], ...] = ()
    duplicate: bool = False
    gap: tuple[int, int] | None = None


def is_seq_restart(seq: int, expected: int | None, block: int, last_block: int | None) -> bool:
    """Whether a duplicate ``seq`` shows the sender started its sequence over: below the next
    expected seq, from a block above every block the stream was sequenced from (``last_block``).
    A rescan re-reads only blocks at or below it -- the cursor never passes a block holding
    something undelivered -- and a reorg rewinds the sequencer instead."""
    return expected is not None and seq < expected and last_block is not None and block > last_block


@dataclass(slots=True)
class Sequencer(Generic[T]):
    """Per-(sender, channel) delivery order: each seq delivered once, in order.

    State: ``next_seq`` (None until the first message sets the baseline) and the
    messages held behind a gap. Transition table for ``offer(seq, item)``:

    ================  =============================================
    condition         effect
    ================  =============================================
    next_seq is None  baseline: next_seq = seq, then as "== next"
    seq <  next_seq   duplicate / replay: dropped
    seq held already  duplicate: dropped
    seq == next_seq   ready; next_seq += 1; held successors follow
    seq >  next_seq   held; the gap (next_seq, seq - 1) is reported
    ================  =============================================

    A gap is never skipped: later messages wait until the missing seq arrives."""

    next_seq: int | None = None
    max_held: int = MAX_HELD_MESSAGES
    held: dict[int, T] = field(default_factory=dict)

    def offer(self, seq: int, item: T) -> Offer[T]:
        """Feed one message; see the table in the class docstring."""
        if self.next_seq is None:
            self.next_seq = seq
        if seq < self.next_seq or seq in self.held:
            return Offer(duplicate=True)
        if seq > self.next_seq:
            self.held[seq] = item
            if len(self.held) > self.max_held:
                del self.held[max(self.held)]
            return Offer(gap=(self.next_seq, min(self.held) - 1))
        ready = [(seq, item)]
        self.next_seq = seq + 1
        ready += self._drain()
        return Offer(ready=tuple(ready))

    def _drain(self) -> list[tuple[int, T]]:
        out: list[tuple[int, T]] = []
        assert self.next_seq is not None
        while self.next_seq in self.held:
            out.append((self.next_seq, self.held.pop(self.next_seq)))
            self.next_seq += 1
        return out

    def gap(self) -> tuple[int, int] | None:
        """The missing seq range in front of the held messages, if any."""
        if not self.held or self.next_seq is None:
            return None
        return self.next_seq, min(self.held) - 1

    def rewind(self, seq: int) -> None:
        """After a retraction: expect ``seq`` again (held messages above are kept)."""
        if self.next_seq is None or seq < self.next_seq:
            self.next_seq = seq
