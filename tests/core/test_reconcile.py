"""The receiver's claim rules (lightpost.core.reconcile), table-driven, no sockets."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from lightpost.core.envelope import channel_id
from lightpost.core.inbox import EVENT_TOPIC
from lightpost.core.quorum import report
from lightpost.core.receipts import Log, Receipt
from lightpost.core.reconcile import (
    Claim,
    LogQuestion,
    block_truth,
    claim_violation,
    cursor_after,
    dissent,
    finality_dissent,
    follows,
    pick_direct,
    reconcile_block,
    sender_topic,
    sort_claims,
)
from lightpost.core.verify import ProblemKind
from tests.core.test_verify import CHAIN_ID, INBOX, KEY, OTHER, Block

C1, C2 = channel_id("c1"), channel_id("c2")
A, B, U = bytes.fromhex("aa" * 20), bytes.fromhex("bb" * 20), bytes.fromhex("cc" * 20)
POLICIES = {C1: frozenset({A, B}), C2: frozenset({B})}
HASH, OTHER_HASH = bytes([1]) * 32, bytes([2]) * 32


def _log(sender: bytes = A, channel: bytes = C1, address: bytes = INBOX) -> Log:
    return Log(
        address=address,
        topics=(EVENT_TOPIC, channel, sender_topic(sender), bytes(32)),
        data=b"\x00" * 64,
    )


def _claim(number: int = 10, log: Log | None = None, **kw: Any) -> Claim:
    fields: dict[str, Any] = {
        "block_number": number,
        "block_hash": HASH,
        "tx_hash": (number % 256).to_bytes(1, "big") * 32,
        "tx_index": 0,
        "log_index": 0,
        "log": log or _log(),
    }
    fields.update(kw)
    return Claim(**fields)


QUESTION = LogQuestion(
    from_block=5, to_block=20, inbox=INBOX, channels=frozenset({C1}), senders=frozenset({A, B})
)


@pytest.mark.parametrize(
    ("claim", "why"),
    [
        (_claim(5), None),
        (_claim(20), None),
        (_claim(4), "outside the asked range"),
        (_claim(21), "outside the asked range"),
        (_claim(10**9), "outside the asked range"),
        (_claim(log=_log(address=bytes(20))), "another contract"),
        (_claim(log=dataclasses.replace(_log(), topics=_log().topics[:3])), "not an inbox"),
        (_claim(log=dataclasses.replace(_log(), topics=(bytes(32), *_log().topics[1:]))), "not an"),
        (_claim(log=_log(channel=C2)), "channel that was not asked"),
        (_claim(log=_log(sender=U)), "sender that was not asked"),
        (
            _claim(
                log=dataclasses.replace(
                    _log(), topics=(*_log().topics[:2], b"\x01" * 32, bytes(32))
                )
            ),
            "sender that was not asked",
        ),
    ],
)
def test_claim_violation(claim: Claim, why: str | None) -> None:
    got = claim_violation(claim, QUESTION)
    assert (got is None) if why is None else (got is not None and why in got)


def test_any_sender_question_accepts_every_sender() -> None:
    question = dataclasses.replace(QUESTION, senders=None)
    assert claim_violation(_claim(log=_log(sender=U)), question) is None


@pytest.mark.parametrize(
    ("sender", "channel", "only", "expected"),
    [
        (A, C1, None, True),
        (A, C2, None, False),  # A is trusted on c1 only
        (B, C2, None, True),
        (U, C1, None, False),
        (A, C1, B, False),  # --from B
        (B, C1, B, True),
    ],
)
def test_follows(sender: bytes, channel: bytes, only: bytes | None, expected: bool) -> None:
    assert follows(sender, channel, POLICIES, only) is expected


def _json(claim: Claim) -> dict[str, Any]:
    return {
        "address": "0x" + claim.log.address.hex(),
        "topics": ["0x" + t.hex() for t in claim.log.topics],
        "data": "0x" + claim.log.data.hex(),
        "blockNumber": hex(claim.block_number),
        "blockHash": "0x" + claim.block_hash.hex(),
        "transactionHash": "0x" + claim.tx_hash.hex(),
        "transactionIndex": hex(claim.tx_index),
        "logIndex": hex(claim.log_index),
    }


def test_sort_claims_reports_lies_per_endpoint_and_keeps_followed_claims() -> None:
    good, far, b_on_c2 = _claim(10), _claim(99), _claim(11, log=_log(B, C2))
    question = dataclasses.replace(QUESTION, channels=frozenset({C1, C2}))
    got = sort_claims(
        {
            "rpc#0": [_json(good), _json(far), {"nonsense": 1}],
            "rpc#1": [_json(good), _json(b_on_c2)],
            "rpc#2": [],
        },
        question,
        {C1: frozenset({A}), C2: frozenset({B})},
    )
    assert got.claims == {good: frozenset({"rpc#0", "rpc#1"}), b_on_c2: frozenset({"rpc#1"})}
    assert got.answered == frozenset({"rpc#0", "rpc#1", "rpc#2"})
    assert [(p.kind, p.endpoints) for p in got.problems] == [
        (ProblemKind.PROOF_FAILURE, ("rpc#0",)),  # out of range
        (ProblemKind.PROOF_FAILURE, ("rpc#0",)),  # malformed
    ]
    # A post by a sender trusted on ANOTHER channel matches the OR filter honestly:
    # dropped without a word (and without a fetch).
    a_on_c2 = _claim(12, log=_log(A, C2))
    quiet = sort_claims(
        {"rpc#0": [_json(a_on_c2)]}, question, {C1: frozenset({A}), C2: frozenset({B})}
    )
    assert quiet.claims == {} and quiet.problems == ()


def test_block_truth_keeps_followed_successful_inbox_posts() -> None:
    def receipt(status: int, *logs: Log) -> Receipt:
        return Receipt(
            tx_type=2, status=status, cumulative_gas_used=1, logs_bloom=bytes(256), logs=logs
        )

    receipts = [
        receipt(1, _log(A), _log(U)),  # log 0 followed, log 1 untrusted
        receipt(0, _log(A)),  # failed tx: log 2 is no post
        receipt(1, _log(A, address=bytes(20)), _log(B)),  # log 3 another contract, log 4
    ]
    truth = block_truth(receipts, inbox=INBOX, policies=POLICIES, only=None)
    assert sorted(truth) == [(0, 0), (2, 4)]
    assert sorted(block_truth(receipts, inbox=INBOX, policies=POLICIES, only=B)) == [(2, 4)]


def _reconcile(claims: dict[Claim, frozenset[str]], **kw: Any) -> Any:
    args: dict[str, Any] = {
        "number": 10,
        "agreed_hash": HASH,
        "agreeing": frozenset({"rpc#0", "rpc#1"}),
        "dissenting": frozenset(),
        "truth": {(0, 0): _log(), (1, 1): _log(B)},
        "claims": claims,
        "answered": frozenset({"rpc#0", "rpc#1", "rpc#2"}),
        "tx_hashes": [bytes([7]) * 32, bytes([8]) * 32],
    }
    args.update(kw)
    return reconcile_block(**args)


ALL = frozenset({"rpc#0", "rpc#1", "rpc#2"})
FIRST = _claim(10)
SECOND = _claim(10, log=_log(B), tx_index=1, log_index=1)


@pytest.mark.parametrize(
    ("name", "claims", "kw", "expected"),
    [
        ("all honest", {FIRST: ALL, SECOND: ALL}, {}, []),
        (
            "one hides",
            {FIRST: ALL, SECOND: frozenset({"rpc#0", "rpc#1"})},
            {},
            [(ProblemKind.HIDDEN, ("rpc#2",))],
        ),
        (
            "forged data",
            {
                FIRST: ALL,
                SECOND: ALL,
                dataclasses.replace(FIRST, log=_log(B)): frozenset({"rpc#2"}),
            },
            {},
            [(ProblemKind.PROOF_FAILURE, ("rpc#2",))],
        ),
        (
            "another block: a disagreement, both sides named, no 'hidden' for the other view",
            {
                FIRST: frozenset({"rpc#0", "rpc#1"}),
                SECOND: frozenset({"rpc#0", "rpc#1"}),
                dataclasses.replace(FIRST, block_hash=OTHER_HASH): frozenset({"rpc#2"}),
            },
            {},
            [(ProblemKind.DISAGREEMENT, ("rpc#0", "rpc#1", "rpc#2"))],
        ),
        (
            "a dissenter on the block hash is not hiding",
            {FIRST: frozenset({"rpc#0", "rpc#1"}), SECOND: frozenset({"rpc#0", "rpc#1"})},
            {"dissenting": frozenset({"rpc#2"})},
            [],
        ),
    ],
)
def test_reconcile_block(name: str, claims: Any, kw: Any, expected: Any) -> None:
    got = _reconcile(claims, **kw)
    assert got.positions == ((0, 0), (1, 1))
    assert [(p.kind, p.endpoints) for p in got.problems] == expected, name


def test_dissent_names_every_side_and_blames_none() -> None:
    rep = report({"rpc#0": OTHER_HASH, "rpc#1": HASH, "rpc#2": HASH}, 2, question="block hash at 7")
    problem = dissent(rep, 7)
    assert problem is not None and problem.kind == ProblemKind.DISAGREEMENT
    assert problem.endpoints == ("rpc#0", "rpc#1", "rpc#2")
    assert "rpc#1, rpc#2 answered" in problem.details and "rpc#0 answered" in problem.details
    assert dissent(report({"rpc#0": HASH, "rpc#1": HASH}, 2, question="q")) is None


@pytest.mark.parametrize(
    ("scanned_to", "holds", "cursor"),
    [(9, [], 10), (9, [None, None], 10), (9, [4, None, 7], 4), (9, [12], 10)],
)
def test_cursor_after(scanned_to: int, holds: list[int | None], cursor: int) -> None:
    assert cursor_after(scanned_to, holds) == cursor


def test_pick_direct() -> None:
    block = Block()  # KEY posts txs 0 and 2 on channel "c1" (calldata); tx 1 is a transfer
    chan = channel_id("c1")
    pick = pick_direct(
        block.txs,
        number=3,
        me=OTHER.address,
        chain_id=CHAIN_ID,
        channels=[chan],
        policies={chan: frozenset({KEY.address})},
        only=None,
    )
    assert [i for i, _, _ in pick.picked] == [0, 2] and pick.problems == ()
    untrusted = pick_direct(
        block.txs,
        number=3,
        me=OTHER.address,
        chain_id=CHAIN_ID,
        channels=[chan],
        policies={chan: frozenset()},
        only=None,
    )
    assert untrusted.picked == ()
    wrong_chain = pick_direct(
        block.txs,
        number=3,
        me=OTHER.address,
        chain_id=CHAIN_ID + 1,
        channels=[chan],
        policies={chan: frozenset({KEY.address})},
        only=None,
    )
    assert wrong_chain.picked == ()
    assert {p.kind for p in wrong_chain.problems} == {ProblemKind.PROOF_FAILURE}


FINALITY = [
    # (quorum height, each endpoint's finalized height, delivered block, endpoints named)
    (10, {"rpc#0": 10, "rpc#1": 10, "rpc#2": 10}, 9, None),  # all agree
    (10, {"rpc#0": 10, "rpc#1": 10, "rpc#2": 9}, 9, None),  # final by every answer
    (10, {"rpc#0": 10, "rpc#1": 10, "rpc#2": 9}, 10, ("rpc#0", "rpc#1", "rpc#2")),
    (10, {"rpc#0": 10, "rpc#1": 10}, 10, None),  # rpc#2 did not answer: nothing to see
    (10, {"rpc#0": 12, "rpc#1": 10, "rpc#2": 4}, 7, ("rpc#0", "rpc#1", "rpc#2")),
    (10, {"rpc#0": 10, "rpc#1": 10, "rpc#2": 9}, 11, None),  # above the height: not ours
]


@pytest.mark.parametrize(("height", "readings", "block", "named"), FINALITY)
def test_finality_dissent(
    height: int, readings: dict[str, int], block: int, named: tuple[str, ...] | None
) -> None:
    problem = finality_dissent(height, readings, block)
    if named is None:
        assert problem is None
        return
    assert problem is not None and problem.kind == ProblemKind.DISAGREEMENT
    assert problem.endpoints == named and problem.block_number == block
    for label, h in readings.items():
        if h < block:
            assert f"{label} says {h}" in problem.details


def _direct_tx(channel: str, to: bytes) -> Any:
    from lightpost.core.envelope import Post, Record, encode_post
    from lightpost.core.tx import DynamicFeeTx, sign_transaction

    post = Post(
        channel=channel_id(channel),
        recipient=to,
        records=(Record(seq=0, timestamp=1, content_type=1, payload=b"hi"),),
    )
    tx = DynamicFeeTx(
        chain_id=CHAIN_ID,
        nonce=0,
        max_priority_fee_per_gas=1,
        max_fee_per_gas=10**10,
        gas=100_000,
        to=to,
        value=0,
        data=encode_post(post),
        access_list=(),
    )
    return sign_transaction(tx, KEY)


@pytest.mark.parametrize(
    ("channel", "to_me", "configured", "picked", "problem"),
    [
        ("x", True, ["c1"], False, True),  # addressed to us, channel unknown: a problem line
        ("x", False, ["c1"], False, False),  # someone else's traffic: not ours to report
        ("c1", True, ["c1"], True, False),  # configured: picked (trust is judged on delivery)
        ("x", True, ["x"], True, False),
    ],
)
def test_pick_direct_never_drops_a_post_to_this_device_silently(
    channel: str, to_me: bool, configured: list[str], picked: bool, problem: bool
) -> None:
    me = OTHER.address
    tx = _direct_tx(channel, me if to_me else bytes.fromhex("33" * 20))
    policies = {channel_id(c): frozenset({KEY.address}) for c in configured}
    pick = pick_direct(
        [tx], number=4, me=me, chain_id=CHAIN_ID, channels=list(policies), policies=policies,
        only=None,
    )  # fmt: skip
    assert bool(pick.picked) is picked
    assert bool(pick.problems) is problem
    if problem:
        (p,) = pick.problems
        assert p.kind == ProblemKind.UNAUTHORIZED and p.channel == channel_id("x")
        assert "not configured" in p.details and '[channels."NAME"]' in p.details
