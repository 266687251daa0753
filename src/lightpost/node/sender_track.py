"""Inclusion tracking: receipts are hints, states change on proof (rules:
:mod:`lightpost.core.inclusion`). :class:`InclusionProver` names every endpoint whose answer
fails proof; an included block is watched by its agreed hash (web3.js #3608)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Final, TypeVar

from lightpost.adapters.rpc import DEFAULT_TIMEOUT_S, Endpoint
from lightpost.adapters.store import Store
from lightpost.core import nonce as nonce_rules
from lightpost.core.inclusion import (
    ProvenReceipt,
    inclusion_events,
    prove_block,
    proven_receipt,
    receipt_hint,
    tx_index,
)
from lightpost.core.l2 import ETHEREUM, BlockFormat
from lightpost.core.outbox import BlockRef, Sighting, State, Transaction
from lightpost.core.verify import ProvenBlock, verify_block_header
from lightpost.errors import LightpostError, NodeError, TransportError
from lightpost.node.block_receipts import MethodSupport, prove_receipts_in_turn
from lightpost.node.chain import Chain, parse_quantity, prove_in_turn
from lightpost.node.rawforms import raw_forms

__all__ = [
    "MAX_BLOCK_PROOFS_PER_ROUND",
    "PROOF_PROBLEM",
    "UNKNOWN",
    "InclusionProver",
    "Tracker",
    "Unknown",
    "batch_call",
    "hints_by_endpoint",
]

T = TypeVar("T")

RECEIPTS_ROUND_S = DEFAULT_TIMEOUT_S
"""A round's wait for receipt batches (one call's timeout): later is a non-answer, tracking never
stalls."""

MAX_BLOCK_PROOFS_PER_ROUND = 32
"""Blocks proven per round: a full in-flight window (16) in its own blocks, twice; a liar's new
blocks cost bounded work."""


class Unknown:
    """Marker: nothing can be decided now (no quorum, nothing proven); ask again later."""


UNKNOWN: Final = Unknown()


def hints_by_endpoint(
    answers: Mapping[str, Mapping[bytes, Any] | Exception], tx_hashes: Iterable[bytes]
) -> dict[Sighting, set[str]]:
    """Every receipt hint for ``tx_hashes`` and the labels that gave it."""
    hints: dict[Sighting, set[str]] = {}
    wanted = tuple(tx_hashes)
    for label, by_hash in answers.items():
        if isinstance(by_hash, Exception):
            continue
        for h in wanted:
            hint = receipt_hint(h, by_hash.get(h))
            if hint is not None:
                hints.setdefault(hint, set()).add(label)
    return hints


class InclusionProver:
    """Turns receipt hints into proven receipts for one round (see the module doc)."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        agreed_hash: Callable[[int], bytes],
        *,
        disproven: set[Sighting] | None = None,
        max_blocks: int = MAX_BLOCK_PROOFS_PER_ROUND,
        suspects: Collection[str] = (),
        fmt: BlockFormat = ETHEREUM,
        support: MethodSupport | None = None,
    ):
        self._endpoints = endpoints
        self._fmt = fmt
        self._support = MethodSupport() if support is None else support
        self._agreed_hash = agreed_hash
        # hints proven false, kept across rounds: a block hash commits to its txs
        self._disproven = set() if disproven is None else disproven
        self._budget = max_blocks
        self._suspects = frozenset(suspects)  # asked last: their answers failed before
        self._canonical: dict[int, bytes | Unknown] = {}
        self._blocks: dict[bytes, ProvenBlock | Unknown] = {}
        self._receipts: dict[bytes, tuple[ProvenBlock, object] | Unknown] = {}
        self.problems: dict[str, str] = {}  # label -> what of its answers failed proof
        self.proved: set[str] = set()  # labels whose block or receipts proved
        self.receipt_reasons: dict[str, str] = {}  # label -> why it gave no receipts
        self.unproven: dict[str, str] = {}  # label -> why its answer proved nothing (no lie)

    def canonical(self, number: int) -> bytes | Unknown:
        """The agreed block hash at ``number`` (trust = beacon: the proven one; UNKNOWN: none)."""
        if number not in self._canonical:
            try:
                self._canonical[number] = self._agreed_hash(number)
            except LightpostError:
                self._canonical[number] = UNKNOWN
        return self._canonical[number]

    def prove(self, hint: Sighting, claimed_by: Collection[str]) -> ProvenReceipt | Unknown | None:
        """The hint, proven; None when false (``claimed_by`` named); UNKNOWN: undecidable now."""
        agreed = self.canonical(hint.block.number)
        if isinstance(agreed, Unknown):
            return UNKNOWN
        if agreed != hint.block.hash:
            return None  # not canonical (a stale endpoint after a reorg, or a lie)
        if hint not in self._disproven:
            block = self.block(hint.block)
            if isinstance(block, Unknown):
                return UNKNOWN
            if tx_index(block, hint.tx_hash) is not None:
                got = self._with_receipts(block)
                if isinstance(got, Unknown):
                    return UNKNOWN
                proven, receipts_json = got
                return proven_receipt(proven, receipts_json, hint.tx_hash)
            self._disproven.add(hint)
        for label in sorted(claimed_by):
            self._blame(
                label,
                f"its receipt puts tx 0x{hint.tx_hash.hex()} in block {hint.block.number}, "
                "whose proven transactions do not include it",
            )
        return None

    def block(self, ref: BlockRef) -> ProvenBlock | Unknown:
        """The block ``ref`` proven from header and transactions (first endpoint that proves)."""
        if ref.hash not in self._blocks:
            if self._budget <= 0:
                return UNKNOWN  # this round's proof budget is spent: next round
            self._budget -= 1

            def check(answer: Any) -> ProvenBlock:
                # the header first: no raw-form call for a block that is not the agreed one
                verify_block_header(answer, ref.hash, fmt=self._fmt)
                forms = raw_forms(self._in_order(), answer, self._fmt)
                return prove_block(answer, ref, fmt=self._fmt, raw_forms=forms)

            found = self._in_turn(
                "eth_getBlockByNumber", [hex(ref.number), True], check, f"block {ref.number}"
            )
            self._blocks[ref.hash] = UNKNOWN if found is None else found[0]
        return self._blocks[ref.hash]

    def _with_receipts(self, block: ProvenBlock) -> tuple[ProvenBlock, object] | Unknown:
        if block.hash not in self._receipts:
            found = prove_receipts_in_turn(
                self._in_order(),
                block,
                self._support,
                lambda label, why: self._blame(
                    label, f"its receipts of block {block.number} failed proof: {why}"
                ),
                self.receipt_reasons,
                fmt=self._fmt,
            )
            if found is None:
                self._receipts[block.hash] = UNKNOWN
            else:
                self.proved.add(found[2])
                self._receipts[block.hash] = found[0], found[1]
        return self._receipts[block.hash]

    def _blame(self, label: str, why: str) -> None:
        known = self.problems.get(label)
        if known is None:
            self.problems[label] = why
        elif why not in known:
            self.problems[label] = f"{known}; {why}"

    def _in_order(self) -> list[Endpoint]:
        # The endpoints, those already named as liars last.
        return sorted(
            self._endpoints, key=lambda e: e.label in self._suspects or e.label in self.problems
        )

    def _in_turn(
        self, method: str, params: Sequence[Any], check: Callable[[Any], T], what: str
    ) -> tuple[T, object] | None:
        # (proven value, the answer) from the first endpoint whose answer proves; endpoints already
        # named as liars are asked last.
        found = prove_in_turn(
            self._in_order(),
            method,
            params,
            check,
            lambda label, why: self._blame(label, f"its {what} failed proof: {why}"),
            lambda label, why: self.unproven.__setitem__(label, f"{what}: {why}"),
        )
        if found is None:
            return None
        value, answer, label = found
        self.proved.add(label)
        return value, answer


PROOF_PROBLEM = "proof "
"""Prefix of the problem keys naming an endpoint whose answer failed proof."""

MAX_DISPROVEN_HINTS = 4096
"""Hints proven false remembered across rounds (then forgotten at once): 64 bytes each, ~0.3 MB at
most."""


def batch_call(ep: Endpoint, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
    """One JSON-RPC batch; endpoints that refuse batches get the calls one by one."""
    try:
        return ep.batch(calls)
    except NodeError:
        pass
    out: list[Any] = []
    for method, params in calls:
        try:
            out.append(ep.call(method, params))
        except NodeError as exc:
            out.append(exc)
    return out


class Tracker:
    """Tracking and "nonce too low" for one :class:`~lightpost.node.sender.Sender`; ``begin_round``
    once per step starts a fresh proof cache."""

    def __init__(
        self,
        *,
        store: Store,
        chain: Chain,
        address: bytes,
        finality_depth: int,
        pool: ThreadPoolExecutor,
        problems: dict[str, str],
        log: Callable[[str], None],
    ) -> None:
        self.store = store
        self.chain = chain
        self._address = address
        self._depth = finality_depth
        self._pool = pool
        self._problems = problems
        self._log = log
        self._finalized: int | Unknown | None = None
        self._disproven: set[Sighting] = set()
        self._prover = InclusionProver(
            chain.endpoints, chain.block_hash_at, fmt=chain.block_format, support=chain.capabilities
        )

    def begin_round(self) -> None:
        """Forget the round's agreed hashes, proofs and finalized height (hints proven false stay: a
        block hash commits to its transactions)."""
        self._finalized = None
        self.chain.begin_round(self._problems)
        if len(self._disproven) > MAX_DISPROVEN_HINTS:
            self._disproven.clear()
        self._prover = InclusionProver(
            self.chain.endpoints,
            self.chain.block_hash_at,
            disproven=self._disproven,
            fmt=self.chain.block_format,
            suspects=[
                k[len(PROOF_PROBLEM) :] for k in self._problems if k.startswith(PROOF_PROBLEM)
            ],
            support=self.chain.capabilities,
        )

    def _report(self) -> None:
        # Name this round's liars; one stays named (and asked last) until a block or receipts answer
        # of its own proves.
        for label in self._prover.proved - set(self._prover.problems):
            self._problems.pop(PROOF_PROBLEM + label, None)
        for label, why in self._prover.problems.items():
            key = PROOF_PROBLEM + label
            if self._problems.get(key) != why:
                self._log(f"proof failure: {label}: {why}")
            self._problems[key] = why

    # -- chain reads ---

    def finalized_number(self) -> int | None:
        """Quorum finalized height (or latest - finality_depth); None if unknown."""
        if self._finalized is None:
            try:
                self._finalized = self.chain.final_height(self._depth)
            except LightpostError as exc:
                self._problems["finality"] = str(exc)
                self._finalized = UNKNOWN
            else:
                self._problems.pop("finality", None)
        return None if isinstance(self._finalized, Unknown) else self._finalized

    def receipts(self, hashes: Sequence[bytes]) -> dict[str, dict[bytes, Any] | Exception]:
        """Per endpoint: tx hash -> receipt (or None), one JSON-RPC batch each."""
        calls = [("eth_getTransactionReceipt", ["0x" + h.hex()]) for h in hashes]

        def ask(ep: Endpoint) -> dict[bytes, Any] | Exception:
            try:
                answers = batch_call(ep, calls)
            except LightpostError as exc:
                return exc
            if not isinstance(answers, list) or len(answers) != len(hashes):
                return TransportError(ep.label, "batch answer does not match the batch asked")
            out: dict[bytes, Any] = {}
            for h, answer in zip(hashes, answers, strict=True):
                if isinstance(answer, Exception):
                    return answer
                out[h] = answer
            return out

        futures = {ep.label: self._pool.submit(ask, ep) for ep in self.chain.endpoints}
        done, _late = wait(futures.values(), timeout=RECEIPTS_ROUND_S)
        return {
            label: fut.result() if fut in done else TransportError(label, "no answer in time")
            for label, fut in futures.items()
        }

    def _proven(
        self, tx: Transaction, hints: Mapping[Sighting, set[str]]
    ) -> ProvenReceipt | Unknown | None:
        # The first hint for one of ``tx``'s candidates that proves; hints more endpoints agree on
        # first, so a lone liar costs no honest proof.
        unknown = False
        for hint, labels in sorted(hints.items(), key=lambda item: -len(item[1])):
            if hint.tx_hash not in tx.candidate_hashes:
                continue
            got = self._prover.prove(hint, labels)
            if isinstance(got, ProvenReceipt):
                return got
            unknown = unknown or isinstance(got, Unknown)
        return UNKNOWN if unknown else None

    # -- tracking ---

    def track(self, now: float) -> int:
        """One tracking round over every pending transaction; returns events applied."""
        pending = self.store.pending_transactions()
        if not pending:
            return 0
        hashes = [h for tx in pending for h in tx.candidate_hashes]
        hints = hints_by_endpoint(self.receipts(hashes), hashes)
        applied = 0
        try:
            for tx in pending:
                for event in self._events(tx, hints):
                    self.store.apply(tx.id, event, at=now)
                    applied += 1
                    self._log(f"tx 0x{tx.tx_hash.hex()} nonce {tx.nonce}: {type(event).__name__}")
        finally:
            self._report()
        return applied

    def _events(self, tx: Transaction, hints: Mapping[Sighting, set[str]]) -> tuple[Any, ...]:
        included = tx.included if tx.state is State.INCLUDED else None
        if included is None:
            proven = self._proven(tx, hints)
            if not isinstance(proven, ProvenReceipt):
                return ()  # unproven: stays in flight, rebroadcast and bumped as before
            return inclusion_events(state=tx.state, nonce=tx.nonce, included=None, proven=proven)
        canonical = self._prover.canonical(included.number)
        if isinstance(canonical, Unknown):
            return ()
        if canonical != included.hash:
            moved = self._proven(tx, hints)
            return inclusion_events(
                state=tx.state,
                nonce=tx.nonce,
                included=included,
                proven=moved if isinstance(moved, ProvenReceipt) else None,
                canonical_hash=canonical,
            )
        finalized = self.finalized_number()
        if finalized is None or included.number > finalized:
            return ()  # the same block: still included, not final yet
        # Final: prove the status again (a reverted call posted nothing).
        again = self._prover.prove(
            Sighting(tx_hash=tx.mined_hash or tx.tx_hash, block=included), ()
        )
        if isinstance(again, Unknown):
            return ()
        return inclusion_events(
            state=tx.state,
            nonce=tx.nonce,
            included=included,
            proven=again,
            canonical_hash=canonical,
            finalized_number=finalized,
        )

    # -- nonce too low ---

    def resolve_too_low(self, tx: Transaction) -> nonce_rules.TooLowOutcome:
        """Our tx's nonce is used: which of our candidates was mined (proven), if any?"""
        receipts = self.receipts(tx.candidate_hashes)
        hints = hints_by_endpoint(receipts, tx.candidate_hashes)
        votes = {  # each endpoint's word: which of ours is mined (a hint), or its error
            label: answer
            if isinstance(answer, Exception)
            else next((h for h, labels in hints.items() if label in labels), None)
            for label, answer in receipts.items()
        }
        try:
            proven = self._proven(tx, hints)
        finally:
            self._report()
        address = "0x" + self._address.hex()
        tag = hex(self.chain.final_height(self._depth)) if self._depth > 0 else "finalized"
        final_counts = self.chain.ask_each(
            "eth_getTransactionCount", [address, tag], lambda v: parse_quantity(v, "nonce")
        )
        return nonce_rules.resolve_nonce_too_low(
            nonce=tx.nonce,
            sightings=votes,
            finalized_count=final_counts,
            k=self.chain.quorum,
            proven=proven.sighting if isinstance(proven, ProvenReceipt) else None,
        )
