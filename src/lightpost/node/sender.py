"""The sending side of a device node: puts every outbox message on chain exactly once.

Theory of operation
-------------------
This module is the only place that wires the pure core (envelope, fees, nonce rules,
outbox table, transactions) to the adapters (the SQLite store, the quorum chain client).
:meth:`Sender.step` does one round of work with the time as an argument, so tests drive
it deterministically; :func:`lightpost.node.runtime.Node.run` calls it in a loop.

One step, in this order (every phase is isolated: a failing phase is recorded in
:attr:`Sender.problems` and the next step retries it):

1. **Base fee** -- the highest any endpoint reports for its latest block
   (``Chain.base_fee``: conservative).
2. **Nonce reconciliation** (``lightpost.core.nonce``) at start, every
   ``RECONCILE_INTERVAL_S`` and after any "nonce too low" or unexplained broadcast
   failure. The mined count is asked of every endpoint at ONE fixed height (the
   quorum-agreed latest height), never at the moving ``latest`` tag (Hyperlane #1119).
   No quorum -> nothing new is signed (``nonce_hold``); the reason is in ``status()``.
   ``AdoptChain``/``RepairLocal`` raise the durable counter; ``FillGap`` signs a
   zero-value self-transfer at each missing nonce; ``Reconcile`` looks our candidate
   hashes up (:func:`~lightpost.core.nonce.resolve_nonce_too_low`). Nothing is signed
   before the first successful reconciliation of the process.
3. **Inclusion tracking** (``lightpost.node.sender_track``). Receipts of ALL candidate
   hashes are asked of every endpoint, but a receipt is only a hint: a state changes
   (included, final, reverted) only when the transaction is PROVEN in the
   quorum-agreed block at that height -- header rebuilt, transactionsRoot and
   receiptsRoot rebuilt (``lightpost.core.inclusion``). An unproven receipt changes
   nothing: the transaction stays in flight, rebroadcast and bumped; the endpoint that
   gave it is named in the problems. An included block is watched by its agreed hash
   (never by number: web3.js #3608). Finality: the quorum ``finalized`` height (or
   latest - finality_depth).
4. **Fee bump.** A transaction we sent in this process that is still not mined
   ``STUCK_AFTER_S`` after its current version was signed is re-signed with the SAME
   nonce and fees raised by >= 10% on both caps (``fees.bump``), stored
   (``Store.replace``) and only then sent. Above the policy cap it waits (visible).
5. **(Re)broadcast.** SIGNED transactions are sent to all endpoints (first step after
   a restart: every SIGNED and BROADCAST one -- the same stored raw bytes, idempotent);
   BROADCAST ones again every ``REBROADCAST_INTERVAL_S``. "already known" = success;
   "nonce too low" -> resolve; "replacement underpriced" -> bump; "insufficient funds"
   -> stop signing new transactions until the balance covers them (visible).
6. **Release** of HELD messages once the base fee is back under the cap (and the
   balance covers the last refused transaction).
7. **Batching and signing.** Queued messages are grouped per (channel, recipient) and
   packed (``envelope.pack_messages``) into posts of at most ``max_post_bytes`` =
   min(config ``batch_bytes``, what the fee policy can carry). A group is sent when its
   oldest message waited ``batch_delay_s`` or a post is full. Each post: fee quote
   (Hold -> ``Store.hold`` with the reason), sign, ``Store.record_signed`` (the raw
   bytes, the nonce counter and the message links in ONE SQLite transaction), THEN
   broadcast. At most ``MAX_IN_FLIGHT`` unmined transactions at a time.
8. **Pruning** of FINAL rows older than ``prune_after_s``: the store stays
   O(outbox + channels), whatever the length of the chain.

Crash safety: every state change is durable before the next action, and the only thing
ever re-sent after a crash is stored raw bytes. A message is linked to exactly one
transaction nonce; a second transaction for it can only be signed after
``NonceConsumed`` (our nonce mined by someone else, at finality) -- so a message can
neither be lost nor land twice.

Chunked messages: a message too large for one transaction is cut into chunks
(``pack_messages``). It is linked to the transaction carrying its LAST chunk; the
earlier chunk transactions are stored without messages (like gap fillers). All chunks of
a message are signed in one step (it waits for enough ``MAX_IN_FLIGHT`` room). A
process that died in the middle of that loop left the earlier chunks as stored,
unfinalized transactions: the first step after a restart decodes them from the pending
raw transactions -- before tracking can finalize anything -- and does not sign those
chunks again. (Only a message of more than ``MAX_IN_FLIGHT`` chunks, spread over
several steps, can have a chunk re-sent after a crash; the receiver's Reassembler
ignores an identical duplicate chunk.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from lightpost.adapters.rpc import Endpoint
from lightpost.adapters.store import Store
from lightpost.core import nonce as nonce_rules
from lightpost.core.envelope import (
    DIRECT_CHANNEL_NAME,
    MIN_POST_BYTES,
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
from lightpost.core.fees import (
    Eip1559FeePolicy,
    FeePolicy,
    FeeQuote,
    FixedFeePolicy,
    Hold,
    bump,
    max_payload_for,
)
from lightpost.core.gas import TX_BASE_GAS
from lightpost.core.hashing import KECCAK_BACKEND
from lightpost.core.inbox import (
    HEADER_BYTES,
    INBOX_EXECUTION_GAS_FIRST_POST,
    INBOX_EXECUTION_GAS_PER_BYTE,
    inbox_calldata,
    inbox_execution_gas,
)
from lightpost.core.keys import PrivateKey, to_checksum_address
from lightpost.core.outbox import Message, State, Transaction
from lightpost.core.tx import DynamicFeeTx, SignedTransaction, decode_transaction, sign_transaction
from lightpost.errors import (
    ConfigError,
    InsufficientFunds,
    LightpostError,
    NonceTooLow,
    QuorumError,
    ReplacementUnderpriced,
    StoreError,
    TransportError,
)
from lightpost.node.chain import Chain, parse_quantity
from lightpost.node.config import DeviceConfig
from lightpost.node.sender_track import Tracker, batch_call

__all__ = [
    "MAX_IN_FLIGHT",
    "MAX_QUEUED_PER_STEP",
    "PRUNE_AFTER_S",
    "REBROADCAST_INTERVAL_S",
    "SIGNED_RETRY_S",
    "STUCK_AFTER_S",
    "Sender",
    "SenderSettings",
    "StepResult",
    "collect_status",
    "content_type_code",
    "fee_policy",
]

STUCK_AFTER_S = 36.0
"""A sent transaction not mined this long after its current version was signed gets a
fee bump: 3 mainnet slots (12 s, consensus specs) -- an includable tx is normally mined
in the next one."""

REBROADCAST_INTERVAL_S = 12.0
"""Re-send a BROADCAST, unmined transaction every mainnet slot: a pool may have evicted
it or an endpoint restarted (geth drops pool txs after 3 h; ours survive restarts)."""

SIGNED_RETRY_S = 1.0
"""Retry a SIGNED transaction that no endpoint accepted after this many seconds."""

MAX_IN_FLIGHT = 16
"""At most this many unmined transactions at once: geth legacypool AccountSlots (16
executable txs per account are guaranteed a pool slot)."""

MAX_QUEUED_PER_STEP = 1000
"""Queued messages the batcher reads per step (the rest waits for the next step)."""

PRUNE_AFTER_S = 3600.0
"""FINAL rows are deleted an hour after they became final (status keeps recent ones)."""

PRUNE_CHECKS_PER_PERIOD = 4
"""Pruning runs every prune_after_s / 4 seconds (one cheap DELETE)."""

MAX_HELD_LISTED = 10_000
"""Held messages read to group their hold reasons in :func:`collect_status`."""

T = TypeVar("T")


def content_type_code(text: str) -> int:
    """The envelope content type of a stored message: a number, or a ContentType name
    (``text``, ``json``, ``octet-stream``, ``command-result``...)."""
    if text.isdigit():
        return int(text)
    try:
        return int(ContentType[text.upper().replace("-", "_")])
    except KeyError:
        raise StoreError(f"unknown content type {text!r} in the outbox") from None


def fee_policy(config: DeviceConfig) -> FeePolicy:
    """The fee policy the config asks for."""
    fees = config.fees
    if fees.policy == "fixed":
        return FixedFeePolicy(gas_price=fees.gas_price, gas_limit=fees.gas_limit)
    return Eip1559FeePolicy(
        max_fee_cap=fees.max_fee_per_gas, priority_fee=fees.priority_fee_per_gas
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderSettings:
    """Everything the sender needs from the config, plus timing knobs tests shorten."""

    chain_id: int
    mode: str
    inbox: bytes | None
    policy: FeePolicy
    batch_bytes: int
    batch_delay_s: float
    finality_depth: int = 0
    stuck_after_s: float = STUCK_AFTER_S
    rebroadcast_interval_s: float = REBROADCAST_INTERVAL_S
    signed_retry_s: float = SIGNED_RETRY_S
    reconcile_interval_s: float = nonce_rules.RECONCILE_INTERVAL_S
    prune_after_s: float = PRUNE_AFTER_S
    max_in_flight: int = MAX_IN_FLIGHT

    def __post_init__(self) -> None:
        if self.mode not in ("channel", "direct"):
            raise ConfigError("sender: mode must be `channel` or `direct`")
        if self.mode == "channel" and self.inbox is None:
            raise ConfigError("sender: channel mode needs the inbox address")

    @classmethod
    def from_config(cls, config: DeviceConfig, **overrides: Any) -> SenderSettings:
        """Settings from a validated :class:`DeviceConfig` (keyword overrides win)."""
        values: dict[str, Any] = {
            "chain_id": config.chain_id,
            "mode": config.mode,
            "inbox": config.inbox,
            "policy": fee_policy(config),
            "batch_bytes": config.batch_bytes,
            "batch_delay_s": config.batch_delay_s,
            "finality_depth": config.finality_depth,
        }
        values.update(overrides)
        return cls(**values)

    @property
    def max_post_bytes(self) -> int:
        """Largest post (= calldata) per transaction: the configured batch target, never
        above what the fee policy can carry with the inbox's execution gas."""
        if self.mode == "channel":
            limit = max_payload_for(
                self.policy, INBOX_EXECUTION_GAS_FIRST_POST, INBOX_EXECUTION_GAS_PER_BYTE
            )
        else:
            limit = max_payload_for(self.policy)
        size = min(self.batch_bytes, limit)
        if size < MIN_POST_BYTES:
            raise ConfigError(
                f"send.batch_bytes gives posts of {size} bytes, below the minimum {MIN_POST_BYTES}"
            )
        return size


@dataclass(slots=True)
class StepResult:
    """What one :meth:`Sender.step` did (for tests, logs and the loop's pacing)."""

    signed: int = 0
    broadcast: int = 0
    events: int = 0
    held: int = 0
    released: int = 0
    bumped: int = 0
    pruned: int = 0

    @property
    def busy(self) -> bool:
        """True when the step changed something (the loop steps again without waiting)."""
        return bool(
            self.signed + self.broadcast + self.events + self.held + self.released + self.bumped
        )


@dataclass(slots=True)
class _Batch:
    post: Post
    message_ids: tuple[int, ...]
    group_ids: tuple[int, ...]


class Sender:
    """The device's send side over one :class:`Store` and one :class:`Chain`.

    Not thread-safe (the store is not): drive it from one thread. ``log`` receives one
    line per notable action (never a secret).
    """

    def __init__(
        self,
        *,
        key: PrivateKey,
        store: Store,
        chain: Chain,
        settings: SenderSettings,
        log: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self._key = key
        self.address = key.address
        self.store = store
        self.chain = chain
        self.settings = settings
        self._log = log
        self._pool = ThreadPoolExecutor(max_workers=max(2, len(chain.endpoints)))
        self._last_reconcile: float | None = None
        self._reconcile_now = True
        self._nonce_ok = False
        self.nonce_hold: str | None = None
        self.funds_hold: str | None = None
        self._funds_needed: int | None = None
        self.fee_hold: str | None = None
        self.base_fee: int | None = None
        self._last_sent: dict[int, float] = {}
        self._last_prune: float | None = None
        self.problems: dict[str, str] = {}
        self._first_step = True
        self._bumped_at: dict[int, float] = {}
        self._done_chunks: dict[tuple[bytes, int], set[int]] = {}
        self._tracker = Tracker(
            store=store,
            chain=chain,
            address=self.address,
            finality_depth=settings.finality_depth,
            pool=self._pool,
            problems=self.problems,
            log=log,
        )

    def __repr__(self) -> str:
        return f"Sender({to_checksum_address(self.address)}, {self.settings.mode})"

    def close(self) -> None:
        """Stop the worker threads (the store and chain belong to the caller)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- public API ----------------------------------------------------------------

    def enqueue(
        self,
        *,
        payload: bytes,
        channel: str | None = None,
        recipient: bytes | None = None,
        content_type: int = ContentType.OCTET_STREAM,
        now: float | None = None,
    ) -> int:
        """Accept a message; it is durable on disk when the id is returned.

        ``channel`` None means a direct message on the reserved direct channel (then
        ``recipient`` is required). The seq is allocated per channel in the same SQLite
        transaction."""
        return enqueue_message(
            self.store,
            payload=payload,
            channel=channel,
            recipient=recipient,
            content_type=content_type,
            now=time.time() if now is None else now,
        )

    send = enqueue

    def status(self, now: float | None = None) -> dict[str, Any]:
        """One-screen health: see :func:`collect_status`; adds this process's problems."""
        problems = dict(self.problems)
        for name, hold in (("nonce", self.nonce_hold), ("funds", self.funds_hold)):
            if hold:
                problems[name] = hold
        return collect_status(
            store=self.store,
            chain=self.chain,
            address=self.address,
            settings=self.settings,
            now=time.time() if now is None else now,
            problems=problems,
            node_running=True,
            pool=self._pool,
        )

    # -- the step --------------------------------------------------------------------

    def step(self, now: float) -> StepResult:
        """One round of work (see the module docstring for the phases)."""
        result = StepResult()
        self._tracker.begin_round()
        if self._first_step:
            # Before tracking can finalize anything in this process: chunks stored by a
            # process that died between two chunk transactions (module docstring).
            self._done_chunks = _stored_chunks(
                self.store.pending_transactions(), self.settings.chain_id
            )
            self._first_step = False
        self._phase("base fee", self._read_base_fee)
        if (
            self._reconcile_now
            or self._last_reconcile is None
            or now - self._last_reconcile >= self.settings.reconcile_interval_s
        ):
            self._phase("nonce", lambda: self._reconcile(now, result))
        self._phase("tracking", lambda: self._track(now, result))
        self._phase("bump", lambda: self._bump_stuck(now, result))
        self._phase("broadcast", lambda: self._rebroadcast(now, result))
        self._phase("release", lambda: self._release(result))
        self._phase("signing", lambda: self._sign_new(now, result))
        self._phase("prune", lambda: self._prune(now, result))
        return result

    def _phase(self, name: str, work: Callable[[], object]) -> None:
        try:
            work()
        except LightpostError as exc:
            # A remote fault or a lost quorum: recorded, retried next step, never fatal.
            self.problems[name] = str(exc)
            if isinstance(exc, TransportError):
                self._reconcile_now = True
        else:
            self.problems.pop(name, None)

    # -- chain helpers ---------------------------------------------------------------

    def _read_base_fee(self) -> None:
        self.base_fee = None
        self.base_fee = self.chain.base_fee()

    # -- nonce ----------------------------------------------------------------------

    def _reconcile(self, now: float, result: StepResult) -> None:
        self._reconcile_now = True  # stays set if anything below raises
        height = self.chain.tag_height("latest")
        address = "0x" + self.address.hex()
        counts = self.chain.ask_each(
            "eth_getTransactionCount",
            [address, hex(height)],
            lambda v: parse_quantity(v, "nonce"),
        )
        inputs = self.store.nonce_inputs()
        decision = nonce_rules.decide(
            local_next=inputs.local_next,
            in_flight=inputs.in_flight,
            included=inputs.included,
            final_next=inputs.final_next,
            latest=counts,
            k=self.chain.quorum,
        )
        self._last_reconcile = now
        self._reconcile_now = False
        if decision.next_nonce is None:
            reasons = [a.reason for a in decision.actions if isinstance(a, nonce_rules.Hold)]
            self.nonce_hold = "; ".join(reasons) or "no nonce decision"
            self._log(f"nonce held: {self.nonce_hold}")
            return
        self.nonce_hold = None
        for action in decision.actions:
            if isinstance(action, nonce_rules.AdoptChain | nonce_rules.RepairLocal):
                if action.nonce > self.store.next_nonce():
                    self.store.set_next_nonce(action.nonce)
                    self._log(f"nonce: raised local counter to {action.nonce}")
            elif isinstance(action, nonce_rules.FillGap):
                for gap in action.nonces:
                    self._fill_gap(gap, now, result)
            elif isinstance(action, nonce_rules.Reconcile):
                by_nonce = {t.nonce: t for t in self.store.pending_transactions()}
                for n in action.nonces:
                    if n in by_nonce:
                        self._resolve_too_low(by_nonce[n], now, result)
        self._nonce_ok = True

    def _fill_gap(self, gap: int, now: float, result: StepResult) -> None:
        """Sign a zero-value self-transfer at a nonce no stored transaction holds."""
        quote = self._quote(b"", 0)
        if isinstance(quote, Hold):
            raise _HoldSignal(quote.reason)
        signed = self._sign(gap, self.address, b"", quote)
        tx_id = self.store.record_signed(
            nonce=gap,
            raw=signed.raw,
            tx_hash=signed.hash,
            fees=quote,
            message_ids=(),
            signed_at=now,
        )
        self._log(f"nonce: filled gap {gap} with tx 0x{signed.hash.hex()}")
        result.signed += 1
        self._broadcast(self.store.transaction(tx_id), now, result)

    def _resolve_too_low(self, tx: Transaction, now: float, result: StepResult) -> None:
        """Our tx's nonce is used: which of our candidates was mined (proven), if any?"""
        outcome = self._tracker.resolve_too_low(tx)
        if isinstance(outcome, nonce_rules.MarkIncluded):
            if tx.state in (State.SIGNED, State.BROADCAST):
                s = outcome.sighting
                self.store.mark_included(tx.id, s.block.hash, s.block.number, tx_hash=s.tx_hash)
                result.events += 1
        elif isinstance(outcome, nonce_rules.Resign):
            ids = self.store.nonce_consumed(tx.id)
            self._last_sent.pop(tx.id, None)
            result.events += 1
            self._log(f"nonce {tx.nonce} consumed by another tx: {len(ids)} message(s) re-queued")
        else:
            self.problems[f"nonce {tx.nonce}"] = outcome.reason

    # -- tracking --------------------------------------------------------------------

    def _track(self, now: float, result: StepResult) -> None:
        result.events += self._tracker.track(now)

    # -- bump ------------------------------------------------------------------------

    def _bump_stuck(self, now: float, result: StepResult) -> None:
        if self.base_fee is None:
            return
        for tx in self.store.pending_transactions():
            if tx.state not in (State.SIGNED, State.BROADCAST) or tx.id not in self._last_sent:
                continue
            if now - tx.signed_at >= self.settings.stuck_after_s:
                self._replace(tx, now, result, why="not mined in time")

    def _replace(self, tx: Transaction, now: float, result: StepResult, *, why: str) -> bool:
        """Re-sign ``tx`` at the same nonce with bumped fees; store, then send."""
        if self.base_fee is None:
            return False
        quote = bump(tx.fees, self.settings.policy, self.base_fee)
        if isinstance(quote, Hold):
            self.problems[f"bump nonce {tx.nonce}"] = quote.reason
            return False
        self.problems.pop(f"bump nonce {tx.nonce}", None)
        old = decode_transaction(tx.raw, chain_id=self.settings.chain_id)
        if not isinstance(old, SignedTransaction) or not isinstance(old.tx, DynamicFeeTx):
            raise StoreError(f"tx {tx.id}: stored raw bytes are not a type-2 transaction")
        signed = self._sign(tx.nonce, old.tx.to, old.tx.data, quote)
        self.store.replace(tx.id, raw=signed.raw, tx_hash=signed.hash, fees=quote, signed_at=now)
        self._bumped_at[tx.id] = now  # at most one bump per transaction per step
        result.bumped += 1
        self._log(
            f"tx nonce {tx.nonce}: fee bump ({why}) to {quote.max_fee_per_gas} / "
            f"{quote.max_priority_fee_per_gas} wei, 0x{signed.hash.hex()}"
        )
        self._broadcast(self.store.transaction(tx.id), now, result)
        return True

    # -- broadcast ---------------------------------------------------------------------

    def _rebroadcast(self, now: float, result: StepResult) -> None:
        for tx in self.store.pending_transactions():
            last = self._last_sent.get(tx.id)
            if tx.state is State.SIGNED:
                due = last is None or now - last >= self.settings.signed_retry_s
            elif tx.state is State.BROADCAST:
                due = last is None or now - last >= self.settings.rebroadcast_interval_s
            else:
                due = False
            if due:
                self._broadcast(tx, now, result)

    def _broadcast(self, tx: Transaction, now: float, result: StepResult) -> None:
        """Send the stored raw bytes to every endpoint and act on the answers."""
        self._last_sent[tx.id] = now
        answer = self.chain.broadcast(tx.raw, tx.tx_hash)
        if answer.ok:
            self.store.mark_broadcast(tx.id, at=now)
            result.broadcast += 1
            if self.funds_hold and "insufficient funds" in self.funds_hold:
                self.funds_hold = None
            return
        errors = list(answer.errors.values())
        if any(isinstance(e, NonceTooLow) for e in errors):
            self._reconcile_now = True
            self._resolve_too_low(tx, now, result)
        elif any(isinstance(e, ReplacementUnderpriced) for e in errors):
            if tx.id not in self._bumped_at or self._bumped_at[tx.id] != now:
                self._replace(tx, now, result, why="replacement underpriced")
        elif any(isinstance(e, InsufficientFunds) for e in errors):
            self.funds_hold = f"insufficient funds for tx nonce {tx.nonce} ({tx.fees.max_cost} wei)"
            self._funds_needed = tx.fees.max_cost
            self._log(self.funds_hold)
        else:
            self._reconcile_now = True
            first = next(iter(answer.errors.items()), None)
            self.problems[f"broadcast nonce {tx.nonce}"] = (
                f"no endpoint accepted it ({first[1]})" if first else "no endpoint"
            )
            return
        self.problems.pop(f"broadcast nonce {tx.nonce}", None)

    # -- holds -------------------------------------------------------------------------

    def _release(self, result: StepResult) -> None:
        held = self.store.held_messages(MAX_QUEUED_PER_STEP)
        if not held or self.base_fee is None:
            return
        price = self.settings.policy.price(self.base_fee)
        if isinstance(price, Hold):
            self.fee_hold = price.reason
            return
        self.fee_hold = None
        if self._funds_needed is not None and self._balance() < self._funds_needed:
            return
        self._funds_needed = None
        self.funds_hold = None
        self.store.release(m.id for m in held)
        result.released += len(held)
        self._log(f"released {len(held)} held message(s): fees back under the cap")

    def _balance(self) -> int:
        return self.chain.balance(self.address)

    # -- signing -----------------------------------------------------------------------

    def _quote(self, data: bytes, execution_gas: int) -> FeeQuote | Hold:
        if self.base_fee is None:
            return Hold("base fee unknown (no endpoint answered)")
        return self.settings.policy.quote(data, execution_gas, self.base_fee)

    def _sign(
        self, nonce: int, to: bytes | None, data: bytes, quote: FeeQuote
    ) -> SignedTransaction:
        tx = DynamicFeeTx(
            chain_id=self.settings.chain_id,
            nonce=nonce,
            max_priority_fee_per_gas=quote.max_priority_fee_per_gas,
            max_fee_per_gas=quote.max_fee_per_gas,
            gas=quote.gas_limit,
            to=to,
            value=0,
            data=data,
        )
        return sign_transaction(tx, self._key)

    def _calldata(self, post: Post) -> tuple[bytes | None, bytes, int]:
        """(to, data, execution gas) of the transaction carrying ``post``."""
        encoded = encode_post(post)
        if self.settings.mode == "channel":
            # The post's 64-byte header IS the inbox header (channel, recipient word).
            data = inbox_calldata(post.channel, post.recipient, encoded[HEADER_BYTES:])
            # first_post=True is the upper bound; unused gas is not charged.
            return self.settings.inbox, data, inbox_execution_gas(len(data), first_post=True)
        return post.recipient or self.address, encoded, 0

    def _sign_new(self, now: float, result: StepResult) -> None:
        if not self._nonce_ok or self.nonce_hold is not None or self.funds_hold is not None:
            return
        pending = self.store.pending_transactions()
        room = self.settings.max_in_flight - sum(
            1 for t in pending if t.state in (State.SIGNED, State.BROADCAST)
        )
        if room <= 0:
            return
        queued = self.store.queued_messages(MAX_QUEUED_PER_STEP)
        if not queued:
            return
        batches = self._batches(queued, now)
        if not batches:
            return
        balance: int | None
        try:
            balance = self._balance()
        except QuorumError:
            balance = None  # unknown: the broadcast's "insufficient funds" still guards
        spent = 0
        held: set[int] = set()
        posts_per_group: dict[tuple[int, ...], int] = {}
        for batch in batches:
            posts_per_group[batch.group_ids] = posts_per_group.get(batch.group_ids, 0) + 1
        started: set[tuple[int, ...]] = set()
        for batch in batches:
            if room <= 0:
                break
            if held.intersection(batch.group_ids):
                continue
            chunked = any(r.chunk is not None for r in batch.post.records)
            if (
                chunked
                and batch.group_ids not in started
                and posts_per_group[batch.group_ids] > room
                and room < self.settings.max_in_flight
            ):
                # Sign all chunks of a message in one step (see the module docstring);
                # wait for room rather than spreading them over steps.
                continue
            started.add(batch.group_ids)
            to, data, execution = self._calldata(batch.post)
            quote = self._quote(data, execution)
            group = batch.group_ids
            if isinstance(quote, Hold):
                self._hold(group, quote.reason, held, result)
                self.fee_hold = quote.reason
                continue
            if balance is not None and spent + quote.max_cost > balance:
                reason = (
                    f"insufficient funds: balance {balance} wei < {spent + quote.max_cost} wei "
                    "needed"
                )
                self._funds_needed = spent + quote.max_cost
                self._hold(group, reason, held, result)
                self.funds_hold = reason
                break
            spent += quote.max_cost
            nonce = self.store.next_nonce()
            signed = self._sign(nonce, to, data, quote)
            # Durable BEFORE anything is sent: raw bytes, nonce counter, message links.
            tx_id = self.store.record_signed(
                nonce=nonce,
                raw=signed.raw,
                tx_hash=signed.hash,
                fees=quote,
                message_ids=batch.message_ids,
                signed_at=now,
            )
            result.signed += 1
            room -= 1
            self._note_chunks(batch.post)
            self._log(
                f"signed tx 0x{signed.hash.hex()} nonce {nonce}: {len(batch.message_ids)} "
                f"message(s), {len(data)} bytes, gas limit {quote.gas_limit}"
            )
            self._broadcast(self.store.transaction(tx_id), now, result)

    def _note_chunks(self, post: Post) -> None:
        """Remember chunk records just stored; forget a message once it is linked."""
        for r in post.records:
            if r.chunk is None:
                continue
            key = (post.channel, r.seq)
            if r.chunk.index == r.chunk.count - 1:
                self._done_chunks.pop(key, None)
            else:
                self._done_chunks.setdefault(key, set()).add(r.chunk.index)

    def _hold(self, ids: Iterable[int], reason: str, held: set[int], result: StepResult) -> None:
        fresh = [i for i in ids if i not in held]
        if not fresh:
            return
        self.store.hold(fresh, reason)
        held.update(fresh)
        result.held += len(fresh)
        self._log(f"held {len(fresh)} message(s): {reason}")

    def _batches(self, queued: Sequence[Message], now: float) -> list[_Batch]:
        """Posts ready to sign now, each with the message ids it completes."""
        max_post = self.settings.max_post_bytes
        groups: dict[tuple[str, bytes], list[Message]] = {}
        for m in queued:
            groups.setdefault((m.channel, m.recipient), []).append(m)
        out: list[_Batch] = []
        for (channel, recipient), messages in groups.items():
            cid = channel_id(channel)
            by_seq = {m.seq: m for m in messages}
            posts = pack_messages(
                cid,
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
                max_post_bytes=max_post,
            )
            if self._done_chunks and any(r.chunk is not None for p in posts for r in p.records):
                posts = _without_done_chunks(posts, self._done_chunks)
            if not posts:
                continue
            due = now - messages[0].created_at >= self.settings.batch_delay_s
            last_full = post_body_size(posts[-1]) + RECORD_OVERHEAD + 1 > max_post
            if not due and not last_full:
                posts = posts[:-1]  # the last post waits for more messages
            for post in posts:
                ids = tuple(
                    by_seq[r.seq].id
                    for r in post.records
                    if r.chunk is None or r.chunk.index == r.chunk.count - 1
                )
                out.append(
                    _Batch(post=post, message_ids=ids, group_ids=tuple(m.id for m in messages))
                )
        return out

    # -- pruning ---------------------------------------------------------------------

    def _prune(self, now: float, result: StepResult) -> None:
        if (
            self._last_prune is not None
            and now - self._last_prune < self.settings.prune_after_s / 4
        ):
            return
        self._last_prune = now
        result.pruned += self.store.prune_final(now - self.settings.prune_after_s)
        for tx_id in list(self._last_sent):
            try:
                state = self.store.transaction(tx_id).state
            except StoreError:
                state = State.FINAL
            if state is State.FINAL:
                del self._last_sent[tx_id]
                self._bumped_at.pop(tx_id, None)


class _HoldSignal(LightpostError):
    """Internal: a gap cannot be filled now (fee hold); recorded as a problem."""


# --- helpers ---------------------------------------------------------------------------


def _stored_chunks(
    pending: Sequence[Transaction], chain_id: int
) -> dict[tuple[bytes, int], set[int]]:
    """(channel id, seq) -> chunk indices already in stored message-less transactions."""
    done: dict[tuple[bytes, int], set[int]] = {}
    for tx in pending:
        if tx.message_ids:
            continue
        try:
            decoded = decode_transaction(tx.raw, chain_id=chain_id)
            if (
                not isinstance(decoded, SignedTransaction)
                or len(decoded.tx.data) < POST_HEADER_SIZE
            ):
                continue
            post = decode_post(decoded.tx.data)
        except LightpostError:
            continue  # a gap filler or foreign bytes: no chunks
        for r in post.records:
            if r.chunk is not None:
                done.setdefault((post.channel, r.seq), set()).add(r.chunk.index)
    return done


def _without_done_chunks(
    posts: Sequence[Post], done: Mapping[tuple[bytes, int], set[int]]
) -> list[Post]:
    out = []
    for post in posts:
        records = tuple(
            r
            for r in post.records
            if r.chunk is None or r.chunk.index not in done.get((post.channel, r.seq), set())
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


def enqueue_message(
    store: Store,
    *,
    payload: bytes,
    channel: str | None,
    recipient: bytes | None,
    content_type: int,
    now: float,
) -> int:
    """Durably enqueue one message (used by :meth:`Sender.enqueue` and ``lightpost send``
    while a node daemon owns the sending)."""
    if channel is None:
        if recipient is None:
            raise ConfigError("a direct message needs a recipient address")
        channel = DIRECT_CHANNEL_NAME
    if recipient is not None and (len(recipient) != 20 or recipient == bytes(20)):
        raise ConfigError("the recipient must be a non-zero 20-byte address")
    # Validate now, not at signing time: the envelope must be able to carry it.
    EnvelopeMessage(seq=0, timestamp=int(now * 1000), content_type=content_type, payload=payload)
    return store.enqueue(
        channel=channel,
        recipient=recipient or b"",
        payload=payload,
        content_type=str(int(content_type)),
        created_at=now,
    )


# --- status ----------------------------------------------------------------------------


def _endpoint_health(ep: Endpoint) -> dict[str, Any]:
    start = time.monotonic()
    try:
        answers = batch_call(ep, [("eth_chainId", []), ("eth_blockNumber", [])])
        for a in answers:
            if isinstance(a, Exception):
                raise a
        return {
            "label": ep.label,
            "reachable": True,
            "chain_id": parse_quantity(answers[0], "chain id"),
            "head": parse_quantity(answers[1], "block number"),
            "latency_ms": round((time.monotonic() - start) * 1000, 1),
            "error": None,
        }
    except LightpostError as exc:
        return {
            "label": ep.label,
            "reachable": False,
            "chain_id": None,
            "head": None,
            "latency_ms": round((time.monotonic() - start) * 1000, 1),
            "error": str(exc),
        }


def collect_status(
    *,
    store: Store,
    chain: Chain,
    address: bytes,
    settings: SenderSettings,
    now: float,
    problems: Mapping[str, str] = {},
    node_running: bool | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> dict[str, Any]:
    """Everything ``lightpost status`` shows, as a JSON-ready dict, with a verdict.

    ``warnings`` name what does not stop the device (an endpoint down or dissenting
    while the quorum still holds: disagreement is reported, never hidden).
    ``reasons`` lists why the device is unhealthy (empty = healthy): too few reachable
    endpoints for the quorum, a wrong chain id, no nonce quorum, held messages, a
    balance below one transaction's cost, transactions stuck, queued messages with no
    node running, and the node's own recorded ``problems``."""
    reasons: list[str] = []
    own_pool = pool is None
    executor = pool or ThreadPoolExecutor(max_workers=max(2, len(chain.endpoints)))
    try:
        health = list(executor.map(_endpoint_health, chain.endpoints))
    finally:
        if own_pool:
            executor.shutdown(wait=False)
    reachable = [h for h in health if h["reachable"]]
    warnings = [f"{h['label']} unreachable" for h in health if not h["reachable"]]
    if len(reachable) < chain.quorum:
        reasons.append(
            f"only {len(reachable)} of {len(health)} endpoints reachable, quorum needs "
            f"{chain.quorum}"
        )
    wrong = [h["label"] for h in reachable if h["chain_id"] != settings.chain_id]
    if wrong:
        reasons.append(f"wrong chain id on {', '.join(wrong)} (config: {settings.chain_id})")

    inputs = store.nonce_inputs()
    nonce_info: dict[str, Any] = {"local_next": inputs.local_next, "quorum": None, "answers": {}}
    try:
        rep = chain.report(
            "eth_getTransactionCount",
            ["0x" + address.hex(), "latest"],
            question="nonce at latest",
            convert=lambda v: parse_quantity(v, "nonce"),
        )
        nonce_info["answers"] = dict(rep.answers)
        nonce_info["dissenters"] = list(rep.dissenters)
        if rep.reached:
            nonce_info["quorum"] = rep.agreed
            if rep.dissenters:
                warnings.append(
                    f"nonce disagreement: {', '.join(rep.dissenters)} dissent from the quorum"
                )
        else:
            reasons.append(f"no nonce quorum: {rep.error()}")
    except LightpostError as exc:
        reasons.append(f"nonce unreadable: {exc}")

    counts = {s.value: n for s, n in store.counts_by_state().items()}
    held_reasons: dict[str, int] = {}
    for m in store.held_messages(MAX_HELD_LISTED):
        key = m.hold_reason or "held"
        held_reasons[key] = held_reasons.get(key, 0) + 1
    for reason, n in held_reasons.items():
        reasons.append(f"{n} message(s) held: {reason}")

    policy = settings.policy
    fees: dict[str, Any] = {
        # the config's own word for it ("fixed" / "eip1559"), as the README documents
        "policy": "fixed" if isinstance(policy, FixedFeePolicy) else "eip1559",
        "cap_wei": policy.hard_cap,
        "base_fee_wei": None,
        "above_cap": None,
    }
    try:
        base_fee = chain.base_fee()
        fees["base_fee_wei"] = base_fee
        fees["above_cap"] = isinstance(policy.price(base_fee), Hold)
    except LightpostError as exc:
        reasons.append(f"base fee unreadable: {exc}")

    balance: int | None = None
    try:
        balance = chain.balance(address)
        one_tx = policy.hard_cap * max(TX_BASE_GAS, settings.batch_bytes * 40 + TX_BASE_GAS)
        if balance < one_tx:
            reasons.append(f"balance {balance} wei is below the cost of one full transaction")
    except LightpostError as exc:
        reasons.append(f"balance unreadable: {exc}")

    finalized: dict[str, Any] | None = None
    try:
        number, block_hash = chain.finalized()
        finalized = {"number": number, "hash": "0x" + block_hash.hex()}
    except LightpostError as exc:
        reasons.append(f"finalized head unreadable: {exc}")

    stuck = []
    for tx in store.pending_transactions():
        if tx.state in (State.SIGNED, State.BROADCAST) and now - tx.signed_at > 2 * (
            settings.stuck_after_s
        ):
            stuck.append(tx.nonce)
    if stuck:
        reasons.append(f"{len(stuck)} transaction(s) not mined for a long time: nonces {stuck}")
    queued = store.queued_messages(1)
    oldest_age = round(now - queued[0].created_at, 1) if queued else None
    if node_running is False and queued:
        reasons.append(f"{counts['queued']} message(s) queued but no `lightpost node` is running")
    for name, text in problems.items():
        reasons.append(f"{name}: {text}")

    return {
        "address": to_checksum_address(address),
        "chain_id": settings.chain_id,
        "mode": settings.mode,
        "keccak": KECCAK_BACKEND,
        "node_running": node_running,
        "nonce": nonce_info,
        "outbox": counts,
        "held": [{"reason": r, "count": n} for r, n in held_reasons.items()],
        "oldest_queued_age_s": oldest_age,
        "balance_wei": balance,
        "fees": fees,
        "endpoints": health,
        "finalized": finalized,
        "healthy": not reasons,
        "reasons": reasons,
        "warnings": warnings,
        "verdict": "healthy" if not reasons else "unhealthy: " + "; ".join(reasons),
    }
