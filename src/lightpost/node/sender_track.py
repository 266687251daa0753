"""Inclusion tracking of the sender's transactions: receipts as hints, states on proof.

For every SIGNED, BROADCAST or INCLUDED transaction the receipts of ALL its candidate
hashes are asked of every endpoint (one JSON-RPC batch per endpoint). A receipt is only
a hint: a state changes only on a :class:`~lightpost.core.inclusion.ProvenReceipt`
(block hash agreed by k, header rebuilt, transaction proven at its index by
transactionsRoot, status by receiptsRoot -- lightpost.core.inclusion). An unproven
receipt changes nothing: the transaction stays in flight and is rebroadcast / bumped
as before, and an endpoint whose receipt or block fails proof is named in the
sender's problems.

An INCLUDED transaction's block is watched by its quorum-agreed hash at its height
(never by number: web3.js #3608): the same hash -> still included (a block hash
commits to its transactions), final once at or below the quorum finalized height
(its status proven again then: a reverted call re-queues its messages); another hash
-> reorged out, and included again wherever a receipt is proven.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lightpost.adapters.rpc import Endpoint
from lightpost.adapters.store import Store
from lightpost.core import nonce as nonce_rules
from lightpost.core.inclusion import ProvenReceipt, inclusion_events
from lightpost.core.outbox import Sighting, State, Transaction
from lightpost.errors import LightpostError, NodeError, TransportError
from lightpost.node.chain import Chain, parse_quantity
from lightpost.node.sender_proof import UNKNOWN, InclusionProver, Unknown, hints_by_endpoint

__all__ = ["PROOF_PROBLEM", "Tracker", "batch_call"]

PROOF_PROBLEM = "proof "
"""Prefix of the problem keys naming an endpoint whose answer failed proof."""

MAX_DISPROVEN_HINTS = 4096
"""Hints proven false remembered across rounds (then forgotten all at once): at 32
bytes x 2 per hint, ~0.3 MB at most."""


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
    """Tracking and "nonce too low" resolution for one :class:`~lightpost.node.sender.Sender`.

    ``begin_round`` starts a fresh proof cache (once per sender step);
    ``problems`` and ``log`` are the sender's."""

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
        self._prover = InclusionProver(chain.endpoints, chain.block_hash_at)

    def begin_round(self) -> None:
        """Forget the last round's agreed hashes, proofs and finalized height (hints
        proven false are remembered: a block hash commits to its transactions)."""
        self._finalized = None
        if len(self._disproven) > MAX_DISPROVEN_HINTS:
            self._disproven.clear()
        self._prover = InclusionProver(
            self.chain.endpoints, self.chain.block_hash_at, disproven=self._disproven
        )

    def _report(self) -> None:
        """The round's proof failures replace the last ones (kept while nothing is
        proven, so that a liar stays named in ``status``)."""
        if not self._prover.attempted:
            return
        for key in [k for k in self._problems if k.startswith(PROOF_PROBLEM)]:
            if key[len(PROOF_PROBLEM) :] not in self._prover.problems:
                del self._problems[key]
        for label, why in self._prover.problems.items():
            key = PROOF_PROBLEM + label
            if self._problems.get(key) != f"{label}: {why}":
                self._log(f"proof failure: {label}: {why}")
            self._problems[key] = f"{label}: {why}"

    # -- chain reads -------------------------------------------------------------------

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
        return {label: fut.result() for label, fut in futures.items()}

    def _proven(
        self, tx: Transaction, hints: Mapping[Sighting, set[str]]
    ) -> ProvenReceipt | Unknown | None:
        """The first hint for one of ``tx``'s candidates that proves (see the module doc).
        Hints more endpoints agree on are tried first: a lone liar's cost no honest proof."""
        unknown = False
        for hint, labels in sorted(hints.items(), key=lambda item: -len(item[1])):
            if hint.tx_hash not in tx.candidate_hashes:
                continue
            got = self._prover.prove(hint, labels)
            if isinstance(got, ProvenReceipt):
                return got
            unknown = unknown or isinstance(got, Unknown)
        return UNKNOWN if unknown else None

    # -- tracking ------------------------------------------------------------------------

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

    # -- nonce too low ---------------------------------------------------------------------

    def resolve_too_low(self, tx: Transaction) -> nonce_rules.TooLowOutcome:
        """Our tx's nonce is used: which of our candidates was mined (proven), if any?"""
        receipts = self.receipts(tx.candidate_hashes)
        votes: dict[str, Sighting | Exception | None] = {}
        for label, by_hash in receipts.items():
            if isinstance(by_hash, Exception):
                votes[label] = by_hash
                continue
            found = hints_by_endpoint({label: by_hash}, tx.candidate_hashes)
            votes[label] = next(iter(found), None)
        try:
            proven = self._proven(tx, hints_by_endpoint(receipts, tx.candidate_hashes))
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
