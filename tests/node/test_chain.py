"""Quorum reads over scripted endpoints (no sockets): deadlines, non-answers, heights and
fees that a minority cannot move."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from lightpost.adapters.rpc import DEFAULT_TIMEOUT_S, HttpEndpoint
from lightpost.core.fees import Eip1559FeePolicy, Hold
from lightpost.errors import (
    EndpointUnavailable,
    MethodNotSupported,
    ProofError,
    QuorumError,
    TransportError,
)
from lightpost.node.chain import MAX_INFLIGHT_PER_ENDPOINT, ROUND_SLACK_S, Chain, prove_in_turn


@dataclass
class Scripted:
    label: str
    answer: Any
    gate: threading.Event | None = None
    calls: list[str] = field(default_factory=list)

    def call(self, method: str, params: Sequence[Any]) -> Any:
        self.calls.append(method)
        if self.gate is not None:
            self.gate.wait(timeout=10)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        return [self.call(m, p) for m, p in calls]


def test_majority_answer_returns_without_waiting_for_a_stuck_endpoint() -> None:
    gate = threading.Event()
    stuck = Scripted("rpc#2", "0x1", gate=gate)
    chain = Chain([Scripted("rpc#0", "0x7a69"), Scripted("rpc#1", "0x7a69"), stuck], quorum=2)
    try:
        assert chain.chain_id() == 31337
        assert not gate.is_set()  # answered while rpc#2 was still blocked
    finally:
        gate.set()
        chain.close()


def test_disagreement_is_an_error_naming_each_endpoint() -> None:
    chain = Chain(
        [Scripted("rpc#0", "0x1"), Scripted("rpc#1", "0x2"), Scripted("rpc#2", "0x3")], quorum=2
    )
    try:
        with pytest.raises(QuorumError) as err:
            chain.chain_id()
        assert set(err.value.answers) == {"rpc#0", "rpc#1", "rpc#2"}
    finally:
        chain.close()


def test_small_quorum_hears_everyone_and_reports_conflicting_quorums() -> None:
    chain = Chain(
        [
            Scripted("rpc#0", "0x1"),
            Scripted("rpc#1", "0x1"),
            Scripted("rpc#2", "0x2"),
            Scripted("rpc#3", "0x2"),
        ],
        quorum=2,
    )
    try:
        with pytest.raises(QuorumError, match="conflicting"):
            chain.chain_id()
    finally:
        chain.close()


def test_a_down_endpoint_is_a_non_answer() -> None:
    down = Scripted("rpc#1", EndpointUnavailable("rpc#1", "unreachable"))
    chain = Chain([Scripted("rpc#0", "0x5"), down, Scripted("rpc#2", "0x5")], quorum=2)
    try:
        assert chain.nonce(bytes(20)) == 5
    finally:
        chain.close()


def test_a_malformed_answer_is_a_non_answer_not_a_crash() -> None:
    # "0x5" where a block object belongs: wrong JSON shape from one endpoint
    block = {"number": "0x9", "hash": "0x" + "ab" * 32, "baseFeePerGas": "0x7"}
    chain = Chain(
        [Scripted("rpc#0", block), Scripted("rpc#1", block), Scripted("rpc#2", "0x5")], quorum=2
    )
    try:
        assert chain.tag_height("finalized") == 9
        assert chain.base_fee() == 7
        assert chain.block_hash_at(9) == bytes.fromhex("ab" * 32)
    finally:
        chain.close()


# --- bounds: a round has one deadline; a stuck endpoint is a non-answer ------------------

DEADLINE_S = 0.2
"""A short round deadline: the stuck endpoints below block until the test ends."""


def _stuck_chain(stuck_answer: Any = "0x1") -> tuple[Chain, Scripted, threading.Event]:
    gate = threading.Event()
    stuck = Scripted("rpc#2", stuck_answer, gate=gate)
    chain = Chain(
        [Scripted("rpc#0", "0x5"), Scripted("rpc#1", "0x5"), stuck],
        quorum=2,
        round_deadline=DEADLINE_S,
    )
    return chain, stuck, gate


def test_a_round_gives_up_on_a_stuck_endpoint_at_its_deadline() -> None:
    chain, _stuck, gate = _stuck_chain()
    try:
        answers = chain.ask_all("eth_getTransactionCount", [])
        assert answers["rpc#0"] == answers["rpc#1"] == "0x5"
        late = answers["rpc#2"]
        assert isinstance(late, TransportError) and late.endpoint == "rpc#2"
        assert str(late) == "rpc#2: no answer within 0.2 s"
        rep = chain.report("eth_getTransactionCount", [], question="nonce")
        assert rep.reached and rep.agreed == "0x5" and rep.failed == ("rpc#2",)
        assert not gate.is_set()  # the stuck calls were still blocked
    finally:
        gate.set()
        chain.close()


def test_a_stuck_endpoint_cannot_exhaust_the_pool_for_later_rounds() -> None:
    chain, stuck, gate = _stuck_chain()
    try:
        for _ in range(3 * MAX_INFLIGHT_PER_ENDPOINT * len(chain.endpoints)):
            answers = chain.ask_all("eth_getTransactionCount", [])
            assert answers["rpc#0"] == answers["rpc#1"] == "0x5"
            assert isinstance(answers["rpc#2"], TransportError)
        # the stuck endpoint got only its own slots; later rounds did not queue behind it
        assert len(stuck.calls) == MAX_INFLIGHT_PER_ENDPOINT
        assert "busy" in str(chain.ask_all("eth_chainId", [])["rpc#2"])
    finally:
        gate.set()
        chain.close()


class Exploding(Scripted):
    def call(self, method: str, params: Sequence[Any]) -> Any:
        self.calls.append(method)
        raise self.answer


@pytest.mark.parametrize(
    "failure", [RecursionError("maximum recursion depth"), RuntimeError("https://u:KEY@x")]
)
def test_any_exception_of_one_endpoint_is_its_non_answer(failure: Exception) -> None:
    chain = Chain(
        [Scripted("rpc#0", "0x5"), Scripted("rpc#1", "0x5"), Exploding("rpc#2", failure)],
        quorum=2,
    )
    try:
        assert chain.nonce(bytes(20)) == 5
        err = chain.ask_all("eth_chainId", [])["rpc#2"]
        assert isinstance(err, TransportError) and err.endpoint == "rpc#2"
        assert "KEY" not in str(err)
    finally:
        chain.close()


def test_an_exception_while_converting_is_that_endpoints_non_answer() -> None:
    def convert(value: Any) -> Any:
        if isinstance(value, list):  # e.g. a converter recursing into a nested answer
            raise RecursionError("maximum recursion depth exceeded")
        return value

    chain = Chain(
        [Scripted("rpc#0", "0x5"), Scripted("rpc#1", "0x5"), Scripted("rpc#2", [[["0x5"]]])],
        quorum=2,
    )
    try:
        answers = chain.ask_each("eth_call", [], convert)
        assert answers["rpc#0"] == "0x5"
        assert str(answers["rpc#2"]) == "rpc#2: bad answer to eth_call (RecursionError)"
    finally:
        chain.close()


# --- fees and heights rest on the quorum, not on one endpoint ----------------------------


def _block(number: int, base_fee: int) -> dict[str, str]:
    return {"number": hex(number), "hash": "0x" + "ab" * 32, "baseFeePerGas": hex(base_fee)}


GWEI = 10**9


def test_one_liar_with_a_huge_base_fee_does_not_hold_sending() -> None:
    liar = Scripted("rpc#2", _block(9, 10**30))
    chain = Chain(
        [Scripted("rpc#0", _block(9, 2 * GWEI)), Scripted("rpc#1", _block(9, 3 * GWEI)), liar],
        quorum=2,
    )
    try:
        fee = chain.base_fee()
        assert fee == 3 * GWEI  # an honest reading, not the liar's
        assert not isinstance(Eip1559FeePolicy().price(fee), Hold)
        liar.answer = _block(9, 0)  # nor can it underprice
        assert chain.base_fee() == 2 * GWEI
    finally:
        chain.close()


def test_base_fee_needs_a_quorum_of_answers() -> None:
    down = EndpointUnavailable("rpc#1", "unreachable")
    chain = Chain(
        [Scripted("rpc#0", _block(9, GWEI)), Scripted("rpc#1", down), Scripted("rpc#2", down)],
        quorum=2,
    )
    try:
        with pytest.raises(QuorumError, match="base fee"):
            chain.base_fee()
    finally:
        chain.close()


def test_a_null_finalized_block_is_a_non_answer_not_block_0() -> None:
    chain = Chain(
        [Scripted("rpc#0", None), Scripted("rpc#1", None), Scripted("rpc#2", _block(9, 1))],
        quorum=2,
    )
    try:
        with pytest.raises(QuorumError, match="finalized height") as err:
            chain.tag_height("finalized")
        assert "null" in err.value.answers["rpc#0"]
        assert "does not serve the finalized tag" in str(err.value)
    finally:
        chain.close()


@pytest.mark.parametrize(
    ("heights", "k", "expected"),
    [
        ((10**6, 100, 99), 1, 100),  # quorum 1 of 3: the liar's far-future height loses
        ((10**6, 100, 99), 2, 100),
        ((10**6, 100, None), 1, 100),  # one honest endpoint answers null
    ],
)
def test_a_minority_cannot_push_a_height_up(
    heights: tuple[int | None, ...], k: int, expected: int
) -> None:
    eps = [Scripted(f"rpc#{i}", None if h is None else _block(h, 1)) for i, h in enumerate(heights)]
    chain = Chain(eps, quorum=k)
    try:
        assert chain.tag_height("finalized") == expected
    finally:
        chain.close()


def test_the_round_deadline_follows_the_slowest_endpoints_own_deadline() -> None:
    slow = HttpEndpoint("http://127.0.0.1:1/", "rpc#1", timeout=120)
    chain = Chain([Scripted("rpc#0", "0x1"), slow], quorum=1)
    try:
        assert chain.round_deadline == 120 + ROUND_SLACK_S
    finally:
        chain.close()
    chain = Chain([Scripted("rpc#0", "0x1")], quorum=1)
    try:
        assert chain.round_deadline == DEFAULT_TIMEOUT_S + ROUND_SLACK_S
    finally:
        chain.close()


def test_a_verdict_on_an_answer_stays_evidence_not_a_dead_endpoint() -> None:
    # The receiver names an endpoint whose block contradicts its own hash; it must be able
    # to tell that verdict (a ProofError from the conversion) from an endpoint that is down.
    def convert(value: Any) -> Any:
        if value == "0x6":
            raise ProofError("included", "header does not hash to its claimed hash")
        return value

    chain = Chain(
        [Scripted("rpc#0", "0x5"), Scripted("rpc#1", "0x5"), Scripted("rpc#2", "0x6")],
        quorum=2,
    )
    try:
        answers = chain.ask_each("eth_getBlockByNumber", ["0x1", False], convert)
        assert isinstance(answers["rpc#2"], ProofError)
        assert not isinstance(answers["rpc#2"], TransportError)
    finally:
        chain.close()


def test_prove_in_turn_hands_each_non_answer_its_reason() -> None:
    """Errors that explain: down, null and unsupported endpoints are not blamed, but each one's
    own reason reaches ``skipped`` (bounded, by label) for the refusal line."""
    eps = [
        Scripted("rpc#0", EndpointUnavailable("rpc#0", "no complete answer within 5 s")),
        Scripted("rpc#1", None),
        Scripted("rpc#2", MethodNotSupported("rpc#2", "Method eth_x is not supported\n" * 20)),
    ]
    blamed: list[tuple[str, ...]] = []
    skipped: dict[str, str] = {}
    found = prove_in_turn(
        eps, "eth_x", [], lambda a: a, lambda *b: blamed.append(b), skipped.__setitem__
    )
    assert found is None and blamed == []
    assert skipped["rpc#0"] == "no complete answer within 5 s"
    assert skipped["rpc#1"] == "answered null"
    assert skipped["rpc#2"].startswith("Method eth_x is not supported\\n")
    assert len(skipped["rpc#2"]) <= 200 and "\n" not in skipped["rpc#2"]
