"""The sending side of a device node: puts every outbox message on chain exactly once.

:meth:`Sender.step` is one round of isolated phases (a failure kept in :attr:`Sender.problems`,
retried): fees, nonce, tracking, bump, broadcast, release, signing (THE sign gate; committed in ONE
transaction, THEN broadcast), pruning. Rules: core; docs/protocol.md, "Sending".
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from lightpost.adapters.store import Store
from lightpost.core import nonce as nonce_rules
from lightpost.core.batching import (
    Gate,
    content_type_code,
    post_conditions,
    post_transaction,
    ready_batches,
    sign_gate,
    step_conditions,
    stored_chunks,
    with_chunks_of,
)
from lightpost.core.diagnosis import seq_restart_warning
from lightpost.core.envelope import ContentType
from lightpost.core.fees import FeeQuote, Hold, bump
from lightpost.core.gas import estimated_gas_limit
from lightpost.core.keys import PrivateKey, to_checksum_address
from lightpost.core.outbox import AfterBroadcast, State, Transaction, after_broadcast
from lightpost.core.tx import DynamicFeeTx, SignedTransaction, decode_transaction, sign_transaction
from lightpost.errors import LightpostError, QuorumError, StoreError, TransportError
from lightpost.node.chain import Chain, parse_quantity
from lightpost.node.sender_settings import (
    MAX_IN_FLIGHT,
    MAX_QUEUED_PER_STEP,
    PRUNE_AFTER_S,
    PRUNE_CHECKS_PER_PERIOD,
    REBROADCAST_INTERVAL_S,
    SIGNED_RETRY_S,
    STUCK_AFTER_S,
    SenderSettings,
    StepResult,
    enqueue_message,
    fee_policy,
)
from lightpost.node.sender_track import Tracker
from lightpost.node.status import collect_status

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
    "content_type_code",
    "enqueue_message",
    "fee_policy",
]


class Sender:
    """The device's send side over one :class:`Store` and :class:`Chain`; one thread; ``log``: one
    line per action, never a secret."""

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

    # -- public API ---

    def enqueue(
        self,
        *,
        payload: bytes,
        channel: str | None = None,
        recipient: bytes | None = None,
        content_type: int = ContentType.OCTET_STREAM,
        now: float | None = None,
    ) -> int:
        """Accept a message, durable when the id is returned; ``channel`` None: direct message."""
        return enqueue_message(
            self.store,
            payload=payload,
            channel=channel,
            recipient=recipient,
            content_type=content_type,
            now=time.time() if now is None else now,
        )

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

    # -- the step ---

    def step(self, now: float) -> StepResult:
        """One round of work (see the module docstring for the phases)."""
        result = StepResult()
        self._tracker.begin_round()
        if self._first_step:
            # Before tracking can finalize anything in this process: chunks stored by a
            # process that died between two chunk transactions (module docstring).
            self._done_chunks = stored_chunks(
                (t.raw for t in self.store.pending_transactions() if not t.message_ids),
                self.settings.chain_id,
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

    # -- chain helpers ---

    def _read_base_fee(self) -> None:
        self.base_fee = None
        self.base_fee = self.chain.base_fee()

    # -- nonce ---

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
            if isinstance(action, nonce_rules.AdoptChain) and "sequence" not in self.problems:
                warning = seq_restart_warning(
                    local_next=inputs.local_next,
                    has_history=bool(inputs.in_flight or inputs.included),
                    chain_next=action.nonce,
                )
                if warning is not None:
                    self.problems["sequence"] = warning  # status: unhealthy, with the remedy
                    self._log(f"warning: {warning}")
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
        # Sign a zero-value self-transfer at a nonce no stored transaction holds.
        quote = self._quote(self.address, b"", 0)
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
        # See :meth:`~lightpost.node.sender_track.Tracker.resolve_too_low`.
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

    # -- tracking ---

    def _track(self, now: float, result: StepResult) -> None:
        result.events += self._tracker.track(now)

    # -- bump ---

    def _bump_stuck(self, now: float, result: StepResult) -> None:
        if self.base_fee is None:
            return
        for tx in self.store.pending_transactions():
            if tx.state not in (State.SIGNED, State.BROADCAST) or tx.id not in self._last_sent:
                continue
            if now - tx.signed_at >= self.settings.stuck_after_s:
                self._replace(tx, now, result, why="not mined in time")

    def _replace(self, tx: Transaction, now: float, result: StepResult, *, why: str) -> bool:
        # Re-sign ``tx`` at the same nonce with bumped fees; store, then send.
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

    # -- broadcast ---

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
        # Send the stored raw bytes to every endpoint and act on the answers.
        self._last_sent[tx.id] = now
        answer = self.chain.broadcast(tx.raw, tx.tx_hash)
        action = after_broadcast(accepted=answer.ok, errors=answer.errors.values())
        if action is AfterBroadcast.SENT:
            self.store.mark_broadcast(tx.id, at=now)
            result.broadcast += 1
            if self.funds_hold and "insufficient funds" in self.funds_hold:
                self.funds_hold = None
            return
        if action is AfterBroadcast.RESOLVE_NONCE:
            self._reconcile_now = True
            self._resolve_too_low(tx, now, result)
        elif action is AfterBroadcast.BUMP:
            if tx.id not in self._bumped_at or self._bumped_at[tx.id] != now:
                self._replace(tx, now, result, why="replacement underpriced")
        elif action is AfterBroadcast.WAIT_FUNDS:
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

    # -- holds ---

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

    # -- signing ---

    def _quote(self, to: bytes | None, data: bytes, execution_gas: int) -> FeeQuote | Hold:
        if self.base_fee is None:
            return Hold("base fee unknown (no endpoint answered)")
        quote = self.settings.policy.quote(data, execution_gas, self.base_fee)
        if isinstance(quote, Hold) or self.settings.gas_limit_source != "estimate":
            return quote
        # gas buys the L1 data too (core.gas.estimated_gas_limit)
        call = {"from": "0x" + self.address.hex(), "data": "0x" + data.hex()}
        if to is not None:
            call["to"] = "0x" + to.hex()
        answers = self.chain.ask_each(
            "eth_estimateGas", [call], lambda v: parse_quantity(v, "gas estimate")
        )
        limit = estimated_gas_limit(
            [v for v in answers.values() if isinstance(v, int)],
            k=self.chain.quorum,
            local=quote.gas_limit,
            ceiling=self.settings.max_gas_limit,
        )
        return _GasWait(limit) if isinstance(limit, str) else replace(quote, gas_limit=limit)

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

    def _sign_new(self, now: float, result: StepResult) -> None:
        pending = self.store.pending_transactions()
        room = self.settings.max_in_flight - sum(
            1 for t in pending if t.state in (State.SIGNED, State.BROADCAST)
        )
        gate, _why = sign_gate(
            step_conditions(
                nonce_reconciled=self._nonce_ok,
                nonce_held=self.nonce_hold is not None,
                funds_held=self.funds_hold is not None,
                room=room,
            )
        )
        if gate is not Gate.SIGN:
            return
        queued = self.store.queued_messages(MAX_QUEUED_PER_STEP)
        if not queued:
            return
        batches = ready_batches(
            queued,
            now=now,
            max_post_bytes=self.settings.max_post_bytes,
            batch_delay_s=self.settings.batch_delay_s,
            done_chunks=self._done_chunks,
        )
        if not batches:
            return
        balance: int | None
        try:
            balance = self._balance()
        except QuorumError:
            balance = None  # unknown: the broadcast's "insufficient funds" still guards
        spent = 0
        held: set[int] = set()
        posts_per_group = Counter(b.group_ids for b in batches)
        started: set[tuple[int, ...]] = set()
        for batch in batches:
            channel_mode = self.settings.mode == "channel"
            to, data, execution = post_transaction(
                batch.post,
                inbox=self.settings.inbox if channel_mode else None,
                own_address=self.address,
            )
            quote = self._quote(to, data, execution)
            if isinstance(quote, _GasWait):  # stays queued (no hold/release churn)
                self.problems["gas limit"] = quote.reason
                break
            self.problems.pop("gas limit", None)
            cost = 0 if isinstance(quote, Hold) else quote.max_cost
            gate, _why = sign_gate(
                post_conditions(
                    room=room,
                    max_in_flight=self.settings.max_in_flight,
                    group_held=bool(held.intersection(batch.group_ids)),
                    chunked=batch.chunked,
                    group_started=batch.group_ids in started,
                    posts_in_group=posts_per_group[batch.group_ids],
                    fee_held=isinstance(quote, Hold),
                    cost=cost,
                    spent=spent,
                    balance=balance,
                )
            )
            if gate is Gate.STOP:
                break
            if gate is Gate.DEFER:
                continue
            started.add(batch.group_ids)
            if isinstance(quote, Hold):  # Gate.HOLD: the fee cap (or no base fee)
                self._hold(batch.group_ids, quote.reason, held, result)
                self.fee_hold = quote.reason
                continue
            if gate is Gate.HOLD_STOP:  # the balance does not cover it
                reason = f"insufficient funds: balance {balance} wei < {spent + cost} wei needed"
                self._funds_needed = spent + cost
                self._hold(batch.group_ids, reason, held, result)
                self.funds_hold = reason
                break
            spent += cost
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
            self._done_chunks = with_chunks_of(self._done_chunks, batch.post)
            self._log(
                f"signed tx 0x{signed.hash.hex()} nonce {nonce}: {len(batch.message_ids)} "
                f"message(s), {len(data)} bytes, gas limit {quote.gas_limit}"
            )
            self._broadcast(self.store.transaction(tx_id), now, result)

    def _hold(self, ids: Iterable[int], reason: str, held: set[int], result: StepResult) -> None:
        fresh = [i for i in ids if i not in held]
        if not fresh:
            return
        self.store.hold(fresh, reason)
        held.update(fresh)
        result.held += len(fresh)
        self._log(f"held {len(fresh)} message(s): {reason}")

    # -- pruning ---

    def _prune(self, now: float, result: StepResult) -> None:
        if (
            self._last_prune is not None
            and now - self._last_prune < self.settings.prune_after_s / PRUNE_CHECKS_PER_PERIOD
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


class _GasWait(Hold):
    """Internal: no gas limit now."""


class _HoldSignal(LightpostError):
    """Internal: a gap cannot be filled now (fee hold); recorded as a problem."""


# --- helpers ---
