"""The sender's batching rules and THE "may we sign?" gate, table-driven, no socket."""

from __future__ import annotations

import random
from typing import Any

import pytest

from lightpost.core.batching import (
    SIGN_GATE,
    Gate,
    SignCondition,
    content_type_code,
    post_conditions,
    post_transaction,
    ready_batches,
    sign_gate,
    step_conditions,
    stored_chunks,
    with_chunks_of,
    without_done_chunks,
)
from lightpost.core.envelope import channel_id, decode_post
from lightpost.core.fees import GWEI
from lightpost.core.inbox import inbox_execution_gas
from lightpost.core.keys import PrivateKey
from lightpost.core.outbox import Message, State
from lightpost.core.tx import DynamicFeeTx, sign_transaction
from lightpost.errors import StoreError
from tests.conftest import ANVIL_DEV_KEYS

KEY = PrivateKey.from_hex(ANVIL_DEV_KEYS[1])
INBOX = b"\x5f" * 20
C = SignCondition

# --- THE gate --------------------------------------------------------------------------------


def test_every_condition_is_in_the_table_once() -> None:
    assert sorted(c for c, _ in SIGN_GATE) == sorted(SignCondition)


@pytest.mark.parametrize(
    ("conditions", "verdict", "decider"),
    [
        (set(), Gate.SIGN, None),
        ({C.NONCE_UNRECONCILED}, Gate.STOP, C.NONCE_UNRECONCILED),
        ({C.NONCE_HELD}, Gate.STOP, C.NONCE_HELD),
        ({C.FUNDS_HELD}, Gate.STOP, C.FUNDS_HELD),
        ({C.NO_ROOM}, Gate.STOP, C.NO_ROOM),
        ({C.GROUP_HELD}, Gate.DEFER, C.GROUP_HELD),
        ({C.CHUNKS_NEED_ROOM}, Gate.DEFER, C.CHUNKS_NEED_ROOM),
        ({C.FEE_ABOVE_CAP}, Gate.HOLD, C.FEE_ABOVE_CAP),
        ({C.BALANCE_SHORT}, Gate.HOLD_STOP, C.BALANCE_SHORT),
        # priority: step-wide before per post, defer before hold
        ({C.NO_ROOM, C.FEE_ABOVE_CAP}, Gate.STOP, C.NO_ROOM),
        ({C.NONCE_HELD, C.FUNDS_HELD}, Gate.STOP, C.NONCE_HELD),
        ({C.GROUP_HELD, C.FEE_ABOVE_CAP}, Gate.DEFER, C.GROUP_HELD),
        ({C.CHUNKS_NEED_ROOM, C.BALANCE_SHORT}, Gate.DEFER, C.CHUNKS_NEED_ROOM),
        ({C.FEE_ABOVE_CAP, C.BALANCE_SHORT}, Gate.HOLD, C.FEE_ABOVE_CAP),
    ],
)
def test_sign_gate(conditions: set[SignCondition], verdict: Gate, decider: Any) -> None:
    assert sign_gate(conditions) == (verdict, decider)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, set()),
        ({"nonce_reconciled": False}, {C.NONCE_UNRECONCILED}),
        ({"nonce_held": True}, {C.NONCE_HELD}),
        ({"funds_held": True}, {C.FUNDS_HELD}),
        ({"room": 0}, {C.NO_ROOM}),
        ({"room": -1, "funds_held": True}, {C.NO_ROOM, C.FUNDS_HELD}),
    ],
)
def test_step_conditions(kwargs: dict[str, Any], expected: set[SignCondition]) -> None:
    base: dict[str, Any] = {
        "nonce_reconciled": True,
        "nonce_held": False,
        "funds_held": False,
        "room": 3,
    }
    assert step_conditions(**{**base, **kwargs}) == expected


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, set()),
        ({"room": 0}, {C.NO_ROOM}),
        ({"group_held": True}, {C.GROUP_HELD}),
        # chunks of one message wait for room for all of them ...
        ({"chunked": True, "posts_in_group": 4, "room": 3}, {C.CHUNKS_NEED_ROOM}),
        # ... unless the group already started, fits, or the whole limit is free
        ({"chunked": True, "posts_in_group": 4, "room": 3, "group_started": True}, set()),
        ({"chunked": True, "posts_in_group": 3, "room": 3}, set()),
        ({"chunked": True, "posts_in_group": 20, "room": 16}, set()),
        ({"chunked": False, "posts_in_group": 4, "room": 3}, set()),
        ({"fee_held": True}, {C.FEE_ABOVE_CAP}),
        ({"fee_held": True, "spent": 10**9}, {C.FEE_ABOVE_CAP}),  # no quote, no cost
        ({"cost": 60, "spent": 50, "balance": 100}, {C.BALANCE_SHORT}),
        ({"cost": 50, "spent": 50, "balance": 100}, set()),
        ({"cost": 60, "spent": 50, "balance": None}, set()),  # unknown balance
    ],
)
def test_post_conditions(kwargs: dict[str, Any], expected: set[SignCondition]) -> None:
    base: dict[str, Any] = {
        "room": 3,
        "max_in_flight": 16,
        "group_held": False,
        "chunked": False,
        "group_started": False,
        "posts_in_group": 1,
        "fee_held": False,
        "cost": 10,
        "spent": 0,
        "balance": 1000,
    }
    assert post_conditions(**{**base, **kwargs}) == expected


# --- batching ---------------------------------------------------------------------------------


def _queued(n: int, size: int = 40, *, created: float = 0.0, channel: str = "c") -> list[Message]:
    return [
        Message(
            id=i + 1,
            channel=channel,
            recipient=b"",
            seq=i,
            payload=random.Random(i).randbytes(size),
            content_type="1",
            created_at=created,
            state=State.QUEUED,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("now", "count", "expected_posts"),
    [
        (0.5, 2, 0),  # not due, not full: waits
        (1.0, 2, 1),  # due
        (0.5, 12, 3),  # 3 full posts go, the partial fourth waits
        (1.0, 12, 4),
    ],
)
def test_ready_batches_wait_for_delay_or_a_full_post(
    now: float, count: int, expected_posts: int
) -> None:
    batches = ready_batches(
        _queued(count), now=now, max_post_bytes=300, batch_delay_s=1.0, done_chunks={}
    )
    assert len(batches) == expected_posts
    seqs = [r.seq for b in batches for r in b.post.records]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for b in batches:
        assert b.group_ids == tuple(range(1, count + 1)) and not b.chunked


def test_chunks_link_the_last_one_and_skip_stored_ones() -> None:
    big = _queued(1, size=1000)
    batches = ready_batches(big, now=1, max_post_bytes=300, batch_delay_s=0, done_chunks={})
    assert len(batches) >= 4 and all(b.chunked for b in batches)
    assert [b.message_ids for b in batches] == [()] * (len(batches) - 1) + [(1,)]
    done = with_chunks_of({}, batches[0].post)
    done = with_chunks_of(done, batches[1].post)
    assert done == {(channel_id("c"), 0): {0, 1}}
    again = ready_batches(big, now=1, max_post_bytes=300, batch_delay_s=0, done_chunks=done)
    assert len(again) == len(batches) - 2
    assert with_chunks_of(done, batches[-1].post) == {}  # linked: forgotten
    assert without_done_chunks([batches[0].post], done) == []


def test_stored_chunks_are_found_in_raw_transactions() -> None:
    batches = ready_batches(
        _queued(1, size=1000), now=1, max_post_bytes=300, batch_delay_s=0, done_chunks={}
    )
    raws = []
    for nonce, b in enumerate(batches[:2]):
        to, data, _gas = post_transaction(b.post, inbox=None, own_address=KEY.address)
        tx = DynamicFeeTx(
            chain_id=31337,
            nonce=nonce,
            max_priority_fee_per_gas=GWEI,
            max_fee_per_gas=2 * GWEI,
            gas=100_000,
            to=to,
            data=data,
        )
        raws.append(sign_transaction(tx, KEY).raw)
    filler = DynamicFeeTx(
        chain_id=31337,
        nonce=9,
        max_priority_fee_per_gas=1,
        max_fee_per_gas=1,
        gas=21_000,
        to=KEY.address,
    )
    raws += [sign_transaction(filler, KEY).raw, b"\x02garbage"]
    assert stored_chunks(raws, 31337) == {(channel_id("c"), 0): {0, 1}}


def test_post_transaction_channel_and_direct() -> None:
    (batch,) = ready_batches(_queued(1), now=1, max_post_bytes=300, batch_delay_s=0, done_chunks={})
    to, data, gas = post_transaction(batch.post, inbox=INBOX, own_address=KEY.address)
    assert to == INBOX and gas == inbox_execution_gas(len(data), first_post=True)
    to, data, gas = post_transaction(batch.post, inbox=None, own_address=KEY.address)
    assert to == KEY.address and gas == 0 and decode_post(data) == batch.post


@pytest.mark.parametrize(("text", "code"), [("1", 1), ("text", 1), ("octet-stream", 0)])
def test_content_type_code(text: str, code: int) -> None:
    assert content_type_code(text) == code


def test_unknown_content_type_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        content_type_code("nonsense")
