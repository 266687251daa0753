"""The gateway's anchoring transactions through the device outbox's machinery (issue 14).

One anchoring is one batch's calldata to the anchoring contract. It goes through the same parts
a device's messages do: the durable :class:`lightpost.adapters.store.Store` (raw bytes, nonce and
fees committed BEFORE the first broadcast; every fee bump a new candidate at the SAME nonce), the
fee policy of the config's ``[fees]`` (:func:`lightpost.node.sender.fee_policy`), the bump rule
(:func:`lightpost.core.fees.bump`: >= 10 %, never above the cap), the broadcast rule
(:func:`lightpost.core.outbox.after_broadcast`) and the tracker
(:class:`lightpost.node.sender_track.Tracker`: a transaction counts as mined only when its receipt
is proven in the quorum-agreed block, receipts by any method an endpoint serves). What to do next
is one pure table, :func:`anchor_action`.

:class:`AnchorSender` never blocks: each call does one round for one calldata and answers
:class:`~lightpost_gateway.service.Anchored` once the transaction is proven, else None (the
gateway keeps the batch and asks again). A base fee above the cap holds it: nothing new is
signed, a signed version stays stored and re-sent, nothing is dropped; when the fee falls it is
signed (or bumped) and goes on. A kill -9 anywhere leaves either nothing signed (sign again, same
nonce) or the stored transaction, which the next start finds by its calldata and re-sends: one
batch is never anchored at two nonces.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import Final

from lightpost.adapters.store import Store
from lightpost.core import nonce as nonce_rules
from lightpost.core.fees import FeePolicy, FeeQuote, Hold, bump
from lightpost.core.keccak import keccak256
from lightpost.core.keys import PrivateKey
from lightpost.core.outbox import AfterBroadcast, State, Transaction, after_broadcast
from lightpost.core.tx import DynamicFeeTx, SignedTransaction, decode_transaction, sign_transaction
from lightpost.errors import LightpostError, StoreError
from lightpost.node.chain import Chain
from lightpost.node.sender_settings import REBROADCAST_INTERVAL_S, SIGNED_RETRY_S, STUCK_AFTER_S
from lightpost.node.sender_track import Tracker
from lightpost_gateway.anchor import ANCHOR_ADDRESS, anchor_execution_gas
from lightpost_gateway.service import Anchored

__all__ = [
    "ANCHOR_ROUND_S",
    "ANCHOR_WAIT_S",
    "Action",
    "AnchorSender",
    "anchor_action",
    "anchor_nonce",
    "outbox_path",
]

ANCHOR_ROUND_S = 1.0
"""Least time between two chain rounds for one anchoring (the gateway steps every 200 ms)."""

ANCHOR_WAIT_S = 60.0
"""Longest a blocking anchoring (:meth:`AnchorSender.wait`, operator tools and tests) waits."""

_META_PREFIX: Final = "anchor:"
"""Store meta key prefix: keccak(calldata) -> the id of the transaction that anchors it."""


class Action(StrEnum):
    """What one round does for one anchoring."""

    SIGN = "sign a new transaction at the next nonce, store it, then send it"
    HOLD = "sign nothing: the base fee is above the policy's cap"
    BUMP = "stuck: re-sign the SAME nonce with fees up >= 10 %, store it, then send it"
    SEND = "send the stored raw bytes again"
    WAIT = "wait: sent recently"
    ANCHORED = "proven in the agreed block: done"


def anchor_action(
    *,
    state: State | None,
    fee_held: bool,
    since_signed: float,
    since_sent: float | None,
    stuck_after_s: float = STUCK_AFTER_S,
    rebroadcast_s: float = REBROADCAST_INTERVAL_S,
    signed_retry_s: float = SIGNED_RETRY_S,
) -> Action:
    """The next step of one anchoring: ``state`` of its stored transaction (None: none yet),
    ``fee_held`` the policy's verdict at the base fee now (or on the bump), ``since_signed`` the
    age of its current version, ``since_sent`` the time since this process last sent it (None:
    not since start). A held transaction is kept and re-sent, never dropped."""
    if state in (State.INCLUDED, State.FINAL):
        return Action.ANCHORED
    if state is None:
        return Action.HOLD if fee_held else Action.SIGN
    if since_signed >= stuck_after_s and not fee_held and since_sent is not None:
        return Action.BUMP
    retry = signed_retry_s if state is State.SIGNED else rebroadcast_s
    if since_sent is None or since_sent >= retry:
        return Action.SEND
    return Action.WAIT


def anchor_nonce(*, local_next: int, chain_latest: int) -> int:
    """The nonce of a new anchoring: past every one this store signed, and past every one mined
    (quorum-agreed, "latest": a "pending" count would queue behind anything stuck)."""
    return max(local_next, chain_latest)


def outbox_path(db: Path) -> Path:
    """The anchoring outbox beside the gateway's SQLite file."""
    return db.with_name(db.name + ".outbox")


class AnchorSender:
    """Anchors calldata for one key; ``crash`` is a test hook called between storing a signed
    version and sending it (where a kill -9 must lose nothing and double nothing)."""

    def __init__(
        self,
        *,
        chain: Chain,
        chain_id: int,
        key: PrivateKey,
        store: Store,
        policy: FeePolicy,
        finality_depth: int = 0,
        stuck_after_s: float = STUCK_AFTER_S,
        rebroadcast_s: float = REBROADCAST_INTERVAL_S,
        round_s: float = ANCHOR_ROUND_S,
        log: Callable[[str], None] = lambda _m: None,
        crash: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.chain, self.chain_id, self._key, self.store = chain, chain_id, key, store
        self.policy = policy
        self.stuck_after_s, self.rebroadcast_s, self.round_s = stuck_after_s, rebroadcast_s, round_s
        self._log, self._crash, self._clock = log, crash, clock
        self.problems: dict[str, str] = {}
        self.hold: str | None = None
        self.last_action: Action | None = None
        self._sent: dict[int, float] = {}
        self._rounds: dict[bytes, float] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(2, len(chain.endpoints)))
        self._tracker = Tracker(
            store=store,
            chain=chain,
            address=key.address,
            finality_depth=finality_depth,
            pool=self._pool,
            problems=self.problems,
            log=log,
        )

    def close(self) -> None:
        """Stop the worker threads (the store and the chain belong to the caller)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __call__(self, calldata: bytes) -> Anchored | None:
        """One round (at most one per ``round_s`` per calldata); errors of a round are kept in
        :attr:`problems` and the round retried."""
        digest = keccak256(calldata)
        now = self._clock()
        last = self._rounds.get(digest)
        if last is not None and now - last < self.round_s:
            return None
        self._rounds[digest] = now
        try:
            done = self._round(calldata, digest, now)
        except LightpostError as exc:
            self.problems["anchoring"] = str(exc)
            self._log(f"anchoring: {exc}")
            return None
        if self.last_action is not Action.WAIT:  # a WAIT round learned nothing new
            self.problems.pop("anchoring", None)
        if done is not None:
            self._rounds.pop(digest, None)
        return done

    def wait(self, calldata: bytes, timeout: float = ANCHOR_WAIT_S) -> Anchored:
        """Rounds until anchored (operator tools, tests); LightpostError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            done = self(calldata)
            if done is not None:
                return done
            if time.monotonic() >= deadline:
                why = self.hold or "; ".join(f"{k}: {v}" for k, v in sorted(self.problems.items()))
                raise StoreError(f"anchoring not mined in {timeout:g} s ({why or 'no answer'})")
            time.sleep(min(self.round_s, 0.2))

    # -- one round ---

    def _round(self, calldata: bytes, digest: bytes, now: float) -> Anchored | None:
        tx = self._find(calldata, digest)
        self._tracker.begin_round()
        if tx is not None and tx.state is not State.FINAL:
            self._tracker.track(now)
            tx = self._reload(tx, digest)
        base_fee = self.chain.base_fee()
        fresh = self.policy.price(base_fee)
        held = fresh.reason if isinstance(fresh, Hold) else None
        bumped: FeeQuote | Hold | None = None
        if tx is not None and tx.state in (State.SIGNED, State.BROADCAST) and held is None:
            bumped = bump(tx.fees, self.policy, base_fee)
            held = bumped.reason if isinstance(bumped, Hold) else None
        self._set_hold(held)
        action = anchor_action(
            state=None if tx is None else tx.state,
            fee_held=held is not None,
            since_signed=0.0 if tx is None else now - tx.signed_at,
            since_sent=None if tx is None or tx.id not in self._sent else now - self._sent[tx.id],
            stuck_after_s=self.stuck_after_s,
            rebroadcast_s=self.rebroadcast_s,
        )
        self.last_action = action
        if action is Action.ANCHORED:
            assert tx is not None and tx.included is not None
            return Anchored(tx_hash=tx.mined_hash or tx.tx_hash, block=tx.included.number)
        if action is Action.SIGN:
            tx = self._sign_new(calldata, digest, base_fee, now)
        elif action is Action.BUMP:
            assert tx is not None and isinstance(bumped, FeeQuote)
            tx = self._bump(tx, bumped, now)
        if tx is not None and action in (Action.SIGN, Action.BUMP, Action.SEND):
            self._send(tx, now)
        return None

    def _find(self, calldata: bytes, digest: bytes) -> Transaction | None:
        """The stored transaction anchoring ``calldata``: by its meta link, else (a crash between
        storing it and linking it) the pending one carrying exactly this calldata."""
        link = self.store.get_meta(_META_PREFIX + digest.hex())
        if link:
            try:
                return self.store.transaction(int(link))
            except StoreError:
                pass  # nonce consumed by another of this key's transactions: sign again
        for tx in self.store.pending_transactions():
            decoded = decode_transaction(tx.raw, chain_id=self.chain_id)
            if (
                isinstance(decoded, SignedTransaction)
                and isinstance(decoded.tx, DynamicFeeTx)
                and decoded.tx.to == ANCHOR_ADDRESS
                and decoded.tx.data == calldata
            ):
                self.store.set_meta(_META_PREFIX + digest.hex(), str(tx.id))
                return tx
        return None

    def _reload(self, tx: Transaction, digest: bytes) -> Transaction | None:
        try:
            return self.store.transaction(tx.id)
        except StoreError:  # a reverted or foreign-mined nonce: the tracker dropped it
            self._log(f"anchoring tx nonce {tx.nonce} was not ours on chain; signing again")
            self.store.set_meta(_META_PREFIX + digest.hex(), "")
            return None

    def _set_hold(self, reason: str | None) -> None:
        if reason != self.hold:
            self._log(f"anchoring held: {reason}" if reason else "anchoring resumed: fee under cap")
        self.hold = reason

    def _sign(self, nonce: int, calldata: bytes, quote: FeeQuote) -> SignedTransaction:
        tx = DynamicFeeTx(
            chain_id=self.chain_id,
            nonce=nonce,
            max_priority_fee_per_gas=quote.max_priority_fee_per_gas,
            max_fee_per_gas=quote.max_fee_per_gas,
            gas=quote.gas_limit,
            to=ANCHOR_ADDRESS,
            value=0,
            data=calldata,
        )
        return sign_transaction(tx, self._key)

    def _sign_new(self, calldata: bytes, digest: bytes, base_fee: int, now: float) -> Transaction:
        quote = self.policy.quote(calldata, anchor_execution_gas(len(calldata)), base_fee)
        if isinstance(quote, Hold):  # the gas limit (price was checked): no batch fits
            raise StoreError(f"anchoring cannot be priced: {quote.reason}")
        nonce = anchor_nonce(
            local_next=self.store.next_nonce(), chain_latest=self.chain.nonce(self._key.address)
        )
        signed = self._sign(nonce, calldata, quote)
        # Durable BEFORE anything is sent: raw bytes, fees, nonce counter (one transaction).
        tx_id = self.store.record_signed(
            nonce=nonce,
            raw=signed.raw,
            tx_hash=signed.hash,
            fees=quote,
            message_ids=(),
            signed_at=now,
        )
        self.store.set_meta(_META_PREFIX + digest.hex(), str(tx_id))
        self._log(f"anchoring: signed 0x{signed.hash.hex()} nonce {nonce}")
        return self.store.transaction(tx_id)

    def _bump(self, tx: Transaction, quote: FeeQuote, now: float) -> Transaction:
        old = decode_transaction(tx.raw, chain_id=self.chain_id)
        assert isinstance(old, SignedTransaction) and isinstance(old.tx, DynamicFeeTx)
        signed = self._sign(tx.nonce, old.tx.data, quote)
        self.store.replace(tx.id, raw=signed.raw, tx_hash=signed.hash, fees=quote, signed_at=now)
        self._log(
            f"anchoring tx nonce {tx.nonce}: fee bump to {quote.max_fee_per_gas} / "
            f"{quote.max_priority_fee_per_gas} wei, 0x{signed.hash.hex()}"
        )
        return self.store.transaction(tx.id)

    def _send(self, tx: Transaction, now: float) -> None:
        self._crash()
        self._sent[tx.id] = now
        answer = self.chain.broadcast(tx.raw, tx.tx_hash)
        action = after_broadcast(accepted=answer.ok, errors=answer.errors.values())
        if action is AfterBroadcast.SENT:
            if tx.state is State.SIGNED:
                self.store.mark_broadcast(tx.id, at=now)
            return
        if action is AfterBroadcast.RESOLVE_NONCE:
            self._resolve_too_low(tx, now)
            return
        first = next(iter(answer.errors.values()), None)
        raise StoreError(f"anchoring tx nonce {tx.nonce}: {action.name.lower()} ({first})")

    def _resolve_too_low(self, tx: Transaction, now: float) -> None:
        """The nonce is used: ours (then tracking proves it) or another transaction of this key
        (then the stored one is dropped and the calldata signed again at a fresh nonce)."""
        outcome = self._tracker.resolve_too_low(tx)
        if isinstance(outcome, nonce_rules.MarkIncluded):
            s = outcome.sighting
            self.store.mark_included(tx.id, s.block.hash, s.block.number, tx_hash=s.tx_hash)
        elif isinstance(outcome, nonce_rules.Resign):
            self.store.nonce_consumed(tx.id)
            self._sent.pop(tx.id, None)
            self._log(f"anchoring nonce {tx.nonce} consumed by another transaction")
        else:
            self.problems[f"nonce {tx.nonce}"] = outcome.reason
