"""Nonce decisions: every rule of lightpost.core.nonce without a socket."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core.nonce import (
    MAX_GAP_FILL,
    AdoptChain,
    FillGap,
    Hold,
    KeepLocal,
    MarkIncluded,
    NonceDecision,
    Reconcile,
    RepairLocal,
    Resign,
    decide,
    resolve_nonce_too_low,
)
from lightpost.core.outbox import BlockRef, Sighting
from lightpost.errors import EndpointUnavailable, LocalError

DOWN = EndpointUnavailable("rpc#2", "timeout")


def chain(*counts: int | Exception) -> dict[str, int | Exception]:
    return {f"rpc#{i}": c for i, c in enumerate(counts)}


def kinds(decision: NonceDecision) -> list[type]:
    return [type(a) for a in decision.actions]


def test_fresh_device_uses_chain_count() -> None:
    d = decide(local_next=0, in_flight=(), latest=chain(0, 0, 0), k=2)
    assert d.next_nonce == 0 and d.actions == (KeepLocal(nonce=0),)


def test_no_quorum_holds_and_trusts_no_single_endpoint() -> None:
    d = decide(local_next=3, in_flight=(), latest=chain(9, 3, DOWN), k=2)
    assert d.held and d.next_nonce is None
    assert kinds(d) == [Hold]
    assert "no quorum" in d.actions[0].reason  # type: ignore[union-attr]


def test_chain_ahead_adopts_chain() -> None:
    # Another signer (or lost state): never reuse a mined nonce.
    d = decide(local_next=3, in_flight=(), latest=chain(7, 7, 6), k=2)
    assert d.next_nonce == 7 and d.actions == (AdoptChain(nonce=7),)


def test_chain_ahead_reconciles_our_passed_in_flight_txs() -> None:
    d = decide(local_next=5, in_flight=(3, 4), latest=chain(7, 7, 7), k=2)
    assert d.next_nonce == 7
    assert d.actions == (AdoptChain(nonce=7), Reconcile(nonces=(3, 4)))


def test_local_ahead_explained_by_in_flight_keeps_local() -> None:
    d = decide(local_next=6, in_flight=(4, 5), included=(3,), latest=chain(3, 3, 3), k=2)
    assert d.next_nonce == 6 and d.actions == (KeepLocal(nonce=6),)


def test_gap_is_filled() -> None:
    # nonce 4 was lost (network error, viem #4364): tx 5 would be stuck behind it.
    d = decide(local_next=7, in_flight=(5, 6), latest=chain(3, 3, 3), k=2)
    assert d.next_nonce == 7
    assert d.actions == (KeepLocal(nonce=7), FillGap(nonces=(3, 4)))


def test_huge_gap_is_not_filled_automatically() -> None:
    local = MAX_GAP_FILL + 10
    d = decide(local_next=local, in_flight=(), latest=chain(0, 0), k=2)
    assert d.held and kinds(d) == [Hold]
    small = decide(local_next=MAX_GAP_FILL, in_flight=(), latest=chain(0, 0), k=2)
    assert small.actions[-1] == FillGap(nonces=tuple(range(MAX_GAP_FILL)))


def test_local_counter_behind_own_outbox_is_repaired() -> None:
    d = decide(local_next=2, in_flight=(2, 3), latest=chain(2, 2), k=2)
    assert d.next_nonce == 4
    assert d.actions == (RepairLocal(nonce=4), KeepLocal(nonce=4))


def test_pruned_final_nonces_are_not_gaps_under_stale_chain() -> None:
    # A lagging majority says 2, but nonces 0..4 are known FINAL (rows pruned).
    d = decide(local_next=6, in_flight=(5,), final_next=5, latest=chain(2, 2, 2), k=2)
    assert d.next_nonce == 6 and d.actions == (KeepLocal(nonce=6),)


def test_included_but_not_yet_counted_is_not_a_gap() -> None:
    d = decide(local_next=4, in_flight=(), included=(3,), latest=chain(3, 3), k=2)
    assert d.actions == (KeepLocal(nonce=4),)


def test_pending_ahead_of_everything_holds() -> None:
    d = decide(local_next=3, in_flight=(), latest=chain(3, 3, 3), pending=chain(5, 5, 3), k=2)
    assert d.held and kinds(d) == [Hold]
    assert d.pending is not None and d.pending.agreed == 5


def test_pending_stale_or_split_is_ignored() -> None:
    # reth #10881 / stale replicas: a low pending never lowers anything.
    low = decide(local_next=5, in_flight=(3, 4), latest=chain(3, 3), pending=chain(3, 3), k=2)
    assert low.next_nonce == 5
    split = decide(local_next=5, in_flight=(3, 4), latest=chain(3, 3), pending=chain(9, 2), k=2)
    assert split.next_nonce == 5 and split.pending is not None and not split.pending.reached


def test_pending_equal_to_local_is_our_own() -> None:
    d = decide(local_next=5, in_flight=(3, 4), latest=chain(3, 3), pending=chain(5, 5), k=2)
    assert d.next_nonce == 5


@pytest.mark.parametrize("bad", [-1, True, 2**64, "3"])
def test_inputs_are_validated(bad: object) -> None:
    with pytest.raises(LocalError):
        decide(local_next=bad, in_flight=(), latest=chain(0), k=1)  # type: ignore[arg-type]
    with pytest.raises(LocalError):
        decide(local_next=0, in_flight=(bad,), latest=chain(0), k=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-5, 2**64 + 1])
def test_impossible_chain_count_holds(bad: int) -> None:
    d = decide(local_next=0, in_flight=(), latest=chain(bad, bad), k=2)
    assert d.held and "impossible" in d.actions[0].reason  # type: ignore[union-attr]


# --- nonce too low -------------------------------------------------------------------

OURS = Sighting(tx_hash=b"\x11" * 32, block=BlockRef(hash=b"\x22" * 32, number=40))


def test_too_low_and_ours_proven_mined_marks_included() -> None:
    out = resolve_nonce_too_low(
        nonce=4,
        sightings=chain(None, None, DOWN),
        finalized_count=chain(5, 5, 5),
        k=2,
        proven=OURS,
    )
    assert out == MarkIncluded(sighting=OURS)  # the proof wins over any vote


@pytest.mark.parametrize("votes", [(OURS, OURS, None), (OURS, OURS, OURS)])
def test_too_low_with_agreed_but_unproven_receipts_waits(votes: tuple[Any, ...]) -> None:
    out = resolve_nonce_too_low(
        nonce=4, sightings=chain(*votes), finalized_count=chain(5, 5, 5), k=2
    )
    assert isinstance(out, Hold) and "not proven" in out.reason


def test_too_low_consumed_elsewhere_at_finality_resigns() -> None:
    out = resolve_nonce_too_low(
        nonce=4, sightings=chain(None, None, DOWN), finalized_count=chain(5, 5, 5), k=2
    )
    assert out == Resign(nonce=4)


def test_too_low_consumed_elsewhere_not_final_waits() -> None:
    out = resolve_nonce_too_low(
        nonce=4, sightings=chain(None, None), finalized_count=chain(4, 4), k=2
    )
    assert isinstance(out, Hold) and "not final" in out.reason


def test_too_low_without_quorum_waits() -> None:
    split = resolve_nonce_too_low(
        nonce=4, sightings=chain(OURS, None, DOWN), finalized_count=chain(9, 9, 9), k=2
    )
    assert isinstance(split, Hold)
    no_final = resolve_nonce_too_low(
        nonce=4, sightings=chain(None, None), finalized_count=chain(9, 8), k=2
    )
    assert isinstance(no_final, Hold)


# --- properties ------------------------------------------------------------------------

_nonces = st.frozensets(st.integers(0, 40), max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    local=st.integers(0, 40),
    in_flight=_nonces,
    included=_nonces,
    final_next=st.integers(0, 40),
    counts=st.lists(st.integers(0, 45) | st.just(DOWN), min_size=1, max_size=5),
    pending=st.none() | st.lists(st.integers(0, 60), min_size=1, max_size=5),
    data=st.data(),
)
def test_decision_never_reuses_a_nonce(
    local: int,
    in_flight: frozenset[int],
    included: frozenset[int],
    final_next: int,
    counts: list[int | Exception],
    pending: list[int] | None,
    data: st.DataObject,
) -> None:
    in_flight = in_flight - included
    k = data.draw(st.integers(1, len(counts)))
    latest = chain(*counts)
    pend = None if pending is None or len(pending) != len(counts) else chain(*pending)
    d = decide(
        local_next=local,
        in_flight=in_flight,
        included=included,
        final_next=final_next,
        latest=latest,
        pending=pend,
        k=k,
    )
    if d.held:
        assert kinds(d) == [Hold]
        return
    assert d.latest.reached
    mined = d.latest.agreed
    assert mined is not None
    ours = in_flight | included
    assert d.next_nonce is not None
    # Never a nonce the chain has mined, never below the durable counter, never ours.
    assert d.next_nonce >= max(mined, local, final_next)
    assert d.next_nonce not in ours and all(n < d.next_nonce for n in ours)
    for action in d.actions:
        if isinstance(action, FillGap):
            assert len(action.nonces) <= MAX_GAP_FILL
            assert all(mined <= n < d.next_nonce and n not in ours for n in action.nonces)
        if isinstance(action, Reconcile):
            assert all(n in in_flight and n < mined for n in action.nonces)
