"""The outbox transition table and confirmation-by-block-hash, without a socket."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core.fees import FeeQuote
from lightpost.core.outbox import (
    BROADCAST_ANSWERS,
    TRANSITIONS,
    AfterBroadcast,
    BlockRef,
    Broadcast,
    Event,
    Finalized,
    Held,
    IllegalTransition,
    Included,
    NonceConsumed,
    Released,
    ReorgedOut,
    Replaced,
    Sighting,
    Signed,
    State,
    after_broadcast,
    check_inclusion,
    next_state,
)
from lightpost.errors import (
    EndpointUnavailable,
    InsufficientFunds,
    LightpostError,
    LocalError,
    NonceTooLow,
    ReplacementUnderpriced,
)

H1, H2, H3 = (bytes([i]) * 32 for i in (1, 2, 3))
FEES = FeeQuote(max_fee_per_gas=2_000_000_000, max_priority_fee_per_gas=10**9, gas_limit=60_000)
BLOCK_A = BlockRef(hash=b"\xaa" * 32, number=10)
BLOCK_B = BlockRef(hash=b"\xbb" * 32, number=10)  # same height, other block (reorg)

EVENTS: tuple[Event, ...] = (
    Held(reason="fee cap"),
    Released(),
    Signed(nonce=0, tx_hash=H1, raw=b"\x02raw", fees=FEES),
    Broadcast(tx_hash=H1),
    Replaced(tx_hash=H2, raw=b"\x02raw2", fees=FEES),
    Included(sighting=Sighting(tx_hash=H1, block=BLOCK_A)),
    ReorgedOut(block=BLOCK_A),
    Finalized(block=BLOCK_A),
    NonceConsumed(nonce=0),
)


def run(state: State, *events: Event) -> State:
    for e in events:
        state = next_state(state, e)
    return state


def test_happy_path() -> None:
    signed, broadcast, included, final = EVENTS[2], EVENTS[3], EVENTS[5], EVENTS[7]
    assert run(State.QUEUED, signed, broadcast, included, final) is State.FINAL


def test_rebroadcast_already_known_is_success() -> None:
    assert run(State.SIGNED, Broadcast(tx_hash=H1), Broadcast(tx_hash=H1)) is State.BROADCAST


def test_fee_bump_goes_back_to_signed() -> None:
    bump = Replaced(tx_hash=H2, raw=b"\x02v2", fees=FEES)
    assert run(State.BROADCAST, bump) is State.SIGNED
    assert run(State.SIGNED, bump) is State.SIGNED


def test_reorg_sends_back_to_signed_for_rebroadcast() -> None:
    state = run(State.INCLUDED, ReorgedOut(block=BLOCK_A))
    assert state is State.SIGNED
    assert run(state, Broadcast(tx_hash=H1)) is State.BROADCAST


def test_fee_cap_hold_and_release() -> None:
    assert run(State.QUEUED, Held(reason="cap")) is State.HELD
    assert run(State.HELD, Held(reason="still")) is State.HELD
    assert run(State.HELD, Released()) is State.QUEUED


@pytest.mark.parametrize("state", [State.SIGNED, State.BROADCAST])
def test_nonce_consumed_requeues(state: State) -> None:
    assert run(state, NonceConsumed(nonce=4)) is State.QUEUED


def test_crash_window_signed_can_be_found_mined() -> None:
    assert run(State.SIGNED, EVENTS[5]) is State.INCLUDED


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_final_is_terminal(event: Event) -> None:
    with pytest.raises(IllegalTransition) as info:
        next_state(State.FINAL, event)
    assert info.value.state is State.FINAL
    assert "final" in str(info.value)


def test_a_reverted_included_transaction_requeues_its_messages() -> None:
    # our own call mined but reverted (status 0): the nonce is spent, nothing was posted
    assert next_state(State.INCLUDED, NonceConsumed(nonce=1)) is State.QUEUED


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (State.QUEUED, Broadcast(tx_hash=H1)),  # never send what is not stored
        (State.HELD, Signed(nonce=1, tx_hash=H1, raw=b"r", fees=FEES)),  # held: no nonce
        (State.INCLUDED, Replaced(tx_hash=H2, raw=b"r", fees=FEES)),
        (State.BROADCAST, Finalized(block=BLOCK_A)),
        (State.QUEUED, Released()),
    ],
)
def test_illegal_transitions(state: State, event: Event) -> None:
    with pytest.raises(IllegalTransition):
        next_state(state, event)


def _reachable(start: State) -> set[State]:
    seen, todo = {start}, deque([start])
    while todo:
        s = todo.popleft()
        for (src, _), dst in TRANSITIONS.items():
            if src is s and dst not in seen:
                seen.add(dst)
                todo.append(dst)
    return seen


def test_table_shape() -> None:
    event_types = {type(e) for e in EVENTS}
    assert all(isinstance(dst, State) for dst in TRANSITIONS.values())
    assert {t for _, t in TRANSITIONS} == event_types
    assert _reachable(State.QUEUED) == set(State)
    assert not any(src is State.FINAL for src, _ in TRANSITIONS)
    # No dead ends: FINAL is reachable from every state.
    for s in State:
        assert State.FINAL in _reachable(s)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Broadcast(tx_hash=b"\x00" * 31),
        lambda: Signed(nonce=-1, tx_hash=H1, raw=b"r", fees=FEES),
        lambda: Signed(nonce=2**64 - 1, tx_hash=H1, raw=b"r", fees=FEES),
        lambda: Signed(nonce=0, tx_hash=H1, raw=b"", fees=FEES),
        lambda: BlockRef(hash=H1, number=-1),
        lambda: BlockRef(hash=H1, number=True),
        lambda: FeeQuote(max_fee_per_gas=1, max_priority_fee_per_gas=2, gas_limit=21_000),
        lambda: Replaced(tx_hash=H1, raw=b"", fees=FEES),
        lambda: NonceConsumed(nonce=-3),
    ],
)
def test_events_validate_themselves(make: object) -> None:
    with pytest.raises(LocalError):
        make()  # type: ignore[operator]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(State)), st.lists(st.sampled_from(EVENTS), max_size=30))
def test_random_event_sequences_never_reach_an_undefined_state(
    start: State, events: list[Event]
) -> None:
    state = start
    for e in events:
        key = (state, type(e))
        try:
            new = next_state(state, e)
        except LightpostError as exc:
            assert isinstance(exc, IllegalTransition)
            assert key not in TRANSITIONS
            continue
        assert new is TRANSITIONS[key]
        state = new
    assert state in State


# --- confirmation by block hash -------------------------------------------------------


def test_first_sighting_includes() -> None:
    seen = Sighting(tx_hash=H1, block=BLOCK_A)
    for state in (State.SIGNED, State.BROADCAST):
        assert check_inclusion(state=state, included=None, sighting=seen) == (
            Included(sighting=seen),
        )
        assert check_inclusion(state=state, included=None, sighting=None) == ()


def test_receipt_gone_means_reorged_out() -> None:
    assert check_inclusion(state=State.INCLUDED, included=BLOCK_A, sighting=None) == (
        ReorgedOut(block=BLOCK_A),
    )


def test_same_height_other_block_is_a_reorg_not_a_confirmation() -> None:
    # web3.js #3608: the number matches, the hash does not -> it is another block.
    moved = Sighting(tx_hash=H1, block=BLOCK_B)
    events = check_inclusion(
        state=State.INCLUDED, included=BLOCK_A, sighting=moved, finalized_number=99
    )
    assert events == (ReorgedOut(block=BLOCK_A), Included(sighting=moved))
    assert run(State.INCLUDED, *events) is State.INCLUDED


def test_canonical_hash_mismatch_reorgs() -> None:
    events = check_inclusion(
        state=State.INCLUDED,
        included=BLOCK_A,
        sighting=Sighting(tx_hash=H1, block=BLOCK_A),
        canonical_hash=BLOCK_B.hash,
        finalized_number=99,
    )
    assert events == (ReorgedOut(block=BLOCK_A),)


def test_finalized_needs_height_and_canonical_hash() -> None:
    seen = Sighting(tx_hash=H3, block=BLOCK_A)
    common = {"state": State.INCLUDED, "included": BLOCK_A, "sighting": seen}
    assert check_inclusion(**common, canonical_hash=BLOCK_A.hash, finalized_number=10) == (
        Finalized(block=BLOCK_A),
    )
    assert check_inclusion(**common, canonical_hash=BLOCK_A.hash, finalized_number=9) == ()
    assert check_inclusion(**common, canonical_hash=None, finalized_number=50) == ()
    assert check_inclusion(**common, canonical_hash=BLOCK_A.hash, finalized_number=None) == ()


@pytest.mark.parametrize("state", [State.QUEUED, State.HELD, State.FINAL])
def test_no_events_outside_the_chain_states(state: State) -> None:
    seen = Sighting(tx_hash=H1, block=BLOCK_A)
    assert check_inclusion(state=state, included=BLOCK_A, sighting=seen) == ()


def test_included_needs_its_block() -> None:
    with pytest.raises(LocalError):
        check_inclusion(state=State.INCLUDED, included=None, sighting=None)


_block = st.builds(
    BlockRef, hash=st.sampled_from([BLOCK_A.hash, BLOCK_B.hash]), number=st.integers(8, 12)
)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([State.SIGNED, State.BROADCAST, State.INCLUDED]),
    _block,
    st.none() | st.builds(Sighting, tx_hash=st.sampled_from([H1, H2]), block=_block),
    st.none() | st.sampled_from([BLOCK_A.hash, BLOCK_B.hash]),
    st.none() | st.integers(0, 15),
)
def test_check_inclusion_events_are_always_legal(
    state: State,
    included: BlockRef,
    sighting: Sighting | None,
    canonical: bytes | None,
    finalized: int | None,
) -> None:
    events = check_inclusion(
        state=state,
        included=included if state is State.INCLUDED else None,
        sighting=sighting,
        canonical_hash=canonical,
        finalized_number=finalized,
    )
    final = run(state, *events)  # raises IllegalTransition if any step were illegal
    if final is State.FINAL:
        assert sighting is not None and sighting.block.hash == included.hash == canonical
        assert finalized is not None and included.number <= finalized


# --- what a broadcast's answers mean ---------------------------------------------------------

_NTL = NonceTooLow("rpc#0", "nonce too low", -32000)
_RU = ReplacementUnderpriced("rpc#1", "replacement transaction underpriced", -32000)
_IF = InsufficientFunds("rpc#2", "insufficient funds", -32000)
_DOWN = EndpointUnavailable("rpc#3", "unreachable")


@pytest.mark.parametrize(
    ("accepted", "errors", "expected"),
    [
        (True, [], AfterBroadcast.SENT),
        (True, [_NTL, _IF], AfterBroadcast.SENT),  # one endpoint took it: sent
        (False, [_NTL], AfterBroadcast.RESOLVE_NONCE),
        (False, [_IF, _RU, _NTL], AfterBroadcast.RESOLVE_NONCE),  # table order decides
        (False, [_IF, _RU], AfterBroadcast.BUMP),
        (False, [_DOWN, _IF], AfterBroadcast.WAIT_FUNDS),
        (False, [_DOWN], AfterBroadcast.RETRY),
        (False, [], AfterBroadcast.RETRY),
    ],
)
def test_after_broadcast(accepted: bool, errors: list[Exception], expected: AfterBroadcast) -> None:
    assert after_broadcast(accepted=accepted, errors=errors) is expected
    assert [a for _, a in BROADCAST_ANSWERS] == [
        AfterBroadcast.RESOLVE_NONCE,
        AfterBroadcast.BUMP,
        AfterBroadcast.WAIT_FUNDS,
    ]
