"""Which nonce to sign with next, and what to do when the chain disagrees: the durable counter is
authoritative, the chain's count read by quorum, a mined nonce never reused, ``pending`` can only
hold; :class:`Resign` only at finality, :class:`MarkIncluded` only on proof. docs/protocol.md,
"Nonce"."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from lightpost.core.outbox import MAX_NONCE, Sighting
from lightpost.core.quorum import QuorumReport, report
from lightpost.errors import LocalError

__all__ = [
    "MAX_GAP_FILL",
    "NONCE_TAG",
    "RECONCILE_INTERVAL_S",
    "AdoptChain",
    "FillGap",
    "Hold",
    "KeepLocal",
    "MarkIncluded",
    "NonceAction",
    "NonceDecision",
    "Reconcile",
    "RepairLocal",
    "Resign",
    "TooLowOutcome",
    "decide",
    "resolve_nonce_too_low",
]

RECONCILE_INTERVAL_S = 60.0
"""Between periodic nonce reconciliations: 5 mainnet slots (12 s); one count per endpoint per
minute."""

NONCE_TAG = "latest"
"""Tag for the mined count (execution-apis eth_getTransactionCount); ``pending`` is advisory (reth
#10881)."""

MAX_GAP_FILL = 16
"""Largest gap filled automatically: geth legacypool AccountSlots (16); a larger one signals a lost
store."""


# --- actions ---


@dataclass(frozen=True, slots=True, kw_only=True)
class AdoptChain:
    """The chain's count is ahead of everything we know: sign from ``nonce`` on."""

    nonce: int


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepLocal:
    """Local counter >= chain count: our in-flight transactions explain the difference."""

    nonce: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RepairLocal:
    """The durable counter was behind our stored transactions: raise it to ``nonce`` (impossible
    with atomic record_signed; handled, never reused)."""

    nonce: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FillGap:
    """No stored transaction holds these nonces (ascending): sign one at each."""

    nonces: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconcile:
    """The chain count passed our in-flight txs at these nonces: look up their hashes, then
    :func:`resolve_nonce_too_low`."""

    nonces: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold:
    """No decision now (no quorum, foreign pending txs, not final yet); retry later."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkIncluded:
    """One of our candidates was mined: feed ``outbox.Included(sighting)``."""

    sighting: Sighting


@dataclass(frozen=True, slots=True, kw_only=True)
class Resign:
    """The nonce was consumed by someone else at finality: feed ``outbox.NonceConsumed``
    and re-sign the messages with a fresh nonce."""

    nonce: int


NonceAction = AdoptChain | KeepLocal | RepairLocal | FillGap | Reconcile | Hold
"""An action of a :class:`NonceDecision`."""

TooLowOutcome = MarkIncluded | Resign | Hold
"""The outcome of :func:`resolve_nonce_too_low`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NonceDecision:
    """``next_nonce`` to sign with (None when held) and the actions, in order."""

    next_nonce: int | None
    actions: tuple[NonceAction, ...]
    latest: QuorumReport[int]
    pending: QuorumReport[int] | None = None

    @property
    def held(self) -> bool:
        """True when no nonce may be used now."""
        return self.next_nonce is None


# --- rules ---


def _is_nonce(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_NONCE + 1


def _check_nonce(value: int, what: str) -> None:
    if not _is_nonce(value):
        raise LocalError(f"nonce: {what} must be an int in 0..{MAX_NONCE + 1}, got {value!r}")


def _held(
    reason: str, latest: QuorumReport[int], pending: QuorumReport[int] | None = None
) -> NonceDecision:
    return NonceDecision(
        next_nonce=None, actions=(Hold(reason=reason),), latest=latest, pending=pending
    )


def decide(
    *,
    local_next: int,
    in_flight: Collection[int],
    latest: Mapping[str, int | Exception],
    k: int,
    included: Collection[int] = (),
    final_next: int = 0,
    pending: Mapping[str, int | Exception] | None = None,
) -> NonceDecision:
    """The next nonce (module rules); ``latest``/``pending``: label -> count (or its error); ``k``:
    quorum size."""
    _check_nonce(local_next, "local_next")
    _check_nonce(final_next, "final_next")
    for n in (*in_flight, *included):
        _check_nonce(n, "an outbox nonce")
    latest_report = report(latest, k, question=f"nonce count at {NONCE_TAG}")
    if not latest_report.reached:
        return _held(str(latest_report.error()), latest_report)
    chain = latest_report.agreed
    if chain is None or not _is_nonce(chain):
        # Endpoints agreeing on nonsense is a remote fault: no decision, not a crash.
        return _held(f"endpoints agreed on an impossible count {chain!r}", latest_report)

    ours = set(in_flight) | set(included)
    ours_next = max(ours) + 1 if ours else 0
    local = max(local_next, ours_next, final_next)

    pending_report = None
    if pending is not None:
        pending_report = report(pending, k, question="nonce count at pending")
        agreed_pending = pending_report.agreed if pending_report.reached else None
        if agreed_pending is not None and agreed_pending > max(local, chain):
            return _held(
                f"txpool holds {agreed_pending - max(local, chain)} transaction(s) from this "
                f"account that are not ours (pending {agreed_pending}, local {local}, mined "
                f"{chain}); waiting for them to be mined or dropped",
                latest_report,
                pending_report,
            )

    actions: list[NonceAction] = []
    if chain > local:
        actions.append(AdoptChain(nonce=chain))
        next_nonce = chain
    else:
        if local > local_next:
            actions.append(RepairLocal(nonce=local))
        actions.append(KeepLocal(nonce=local))
        next_nonce = local
        gap = tuple(n for n in range(max(chain, final_next), local) if n not in ours)
        if len(gap) > MAX_GAP_FILL:
            return _held(
                f"{len(gap)} nonces between mined {chain} and local {local} have no stored "
                f"transaction (more than {MAX_GAP_FILL}); not filling automatically",
                latest_report,
                pending_report,
            )
        if gap:
            actions.append(FillGap(nonces=gap))
    passed = tuple(sorted(n for n in set(in_flight) if n < chain))
    if passed:
        actions.append(Reconcile(nonces=passed))
    return NonceDecision(
        next_nonce=next_nonce, actions=tuple(actions), latest=latest_report, pending=pending_report
    )


def resolve_nonce_too_low(
    *,
    nonce: int,
    sightings: Mapping[str, Sighting | Exception | None],
    finalized_count: Mapping[str, int | Exception],
    k: int,
    proven: Sighting | None = None,
) -> TooLowOutcome:
    """What a "nonce too low" (or :class:`Reconcile`) means. ``sightings``: label -> receipt
    location of any of OUR hashes; ``finalized_count``: label -> count at ``finalized``;
    ``proven``: where ours was PROVEN. Proven -> :class:`MarkIncluded`; k agree none is ours and
    the nonce is consumed at finality -> :class:`Resign`; else :class:`Hold`."""
    _check_nonce(nonce, "nonce")
    if proven is not None:
        return MarkIncluded(sighting=proven)
    seen = report(sightings, k, question=f"which of our txs has nonce {nonce} mined")
    if not seen.reached:
        return Hold(reason=str(seen.error()))
    if seen.agreed is not None:
        return Hold(reason=f"a receipt for our tx at nonce {nonce} is not proven (yet)")
    final = report(finalized_count, k, question="nonce count at finalized")
    if not final.reached or final.agreed is None:
        return Hold(reason=str(final.error()))
    if final.agreed > nonce:
        return Resign(nonce=nonce)
    return Hold(
        reason=f"nonce {nonce} used by a transaction that is not ours, not final yet "
        f"(finalized count {final.agreed}); waiting before re-signing"
    )
