"""k-of-n agreement: every rule without a socket."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core.quorum import (
    MAX_RENDER_CHARS,
    agree,
    default_quorum,
    quorum_fee,
    quorum_height,
    reached_by,
    render_answer,
    report,
    validate_quorum,
)
from lightpost.errors import ConfigError, EndpointUnavailable, QuorumError


@pytest.mark.parametrize(("n", "k"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_default_quorum_is_a_majority(n: int, k: int) -> None:
    assert default_quorum(n) == k
    assert 2 * default_quorum(n) > n


@pytest.mark.parametrize("n", [0, -1])
def test_default_quorum_needs_an_endpoint(n: int) -> None:
    with pytest.raises(ConfigError):
        default_quorum(n)


@pytest.mark.parametrize(("k", "n"), [(0, 3), (4, 3), (-1, 3), (True, 3), (1, 0), ("2", 3)])
def test_validate_quorum_rejects(k: object, n: int) -> None:
    with pytest.raises(ConfigError):
        validate_quorum(k, n)  # type: ignore[arg-type]


def test_validate_quorum_accepts_bounds() -> None:
    assert validate_quorum(1, 3) == 1
    assert validate_quorum(3, 3) == 3


def test_two_of_three_agree() -> None:
    assert agree({"rpc#0": 7, "rpc#1": 7, "rpc#2": 8}, 2, question="count") == 7


def test_errors_are_non_answers() -> None:
    answers = {"rpc#0": 5, "rpc#1": EndpointUnavailable("rpc#1", "timeout"), "rpc#2": 5}
    assert agree(answers, 2, question="count") == 5
    answers["rpc#2"] = 6
    with pytest.raises(QuorumError) as info:
        agree(answers, 2, question="count")
    err = info.value
    assert err.needed == 2
    assert err.question == "count"
    assert err.answers == {"rpc#0": "5", "rpc#1": "error: rpc#1: timeout", "rpc#2": "6"}


def test_all_errors_no_quorum() -> None:
    answers: dict[str, int | Exception] = {
        "a": EndpointUnavailable("a", "refused"),
        "b": EndpointUnavailable("b", "refused"),
    }
    with pytest.raises(QuorumError):
        agree(answers, 1, question="q")


def test_two_values_reaching_k_is_a_conflict() -> None:
    # k <= n/2 misconfiguration: 1-of-2 with different answers must not pick one.
    with pytest.raises(QuorumError, match="conflicting"):
        agree({"a": 1, "b": 2}, 1, question="head")
    rep = report({"a": 1, "b": 2}, 1, question="head")
    assert rep.conflict and not rep.reached and rep.agreed is None


def test_k_larger_than_endpoints_is_config_error() -> None:
    with pytest.raises(ConfigError):
        agree({"a": 1}, 2, question="q")


def test_unhashable_values_group_by_equality() -> None:
    block = {"hash": "0xab", "number": 3}
    assert agree({"a": dict(block), "b": dict(block), "c": {}}, 2, question="blk") == block


def test_agreed_none_is_a_value() -> None:
    assert agree({"a": None, "b": None, "c": 1}, 2, question="receipt") is None
    rep = report({"a": None, "b": None, "c": 1}, 2, question="receipt")
    assert rep.reached and rep.agreed is None and rep.dissenters == ("c",)


def test_report_names_dissenters_and_failures() -> None:
    rep = report({"a": 3, "b": 4, "c": 3, "d": EndpointUnavailable("d", "down")}, 2, question="n")
    assert rep.reached and rep.agreed == 3
    assert rep.dissenters == ("b",)
    assert rep.failed == ("d",)
    assert set(rep.answers) == {"a", "b", "c", "d"}


def test_foreign_exception_text_is_not_rendered() -> None:
    # Foreign exceptions may carry the URL (with an API key); only the type is shown.
    secret = "https://user:APIKEY@rpc.example/v3/APIKEY"
    with pytest.raises(QuorumError) as info:
        agree({"a": OSError(secret), "b": 1}, 2, question="q")
    assert "APIKEY" not in str(info.value)
    assert info.value.answers["a"] == "error: OSError"


def test_render_bytes_as_hex_and_clip() -> None:
    assert render_answer(b"\x01\xff") == "0x01ff"
    long = render_answer(b"\x00" * 100)
    assert len(long) == MAX_RENDER_CHARS and long.endswith("...")


def test_custom_render() -> None:
    with pytest.raises(QuorumError) as info:
        agree({"a": 1, "b": 2}, 2, question="q", render=lambda v: f"#{v}")
    assert info.value.answers == {"a": "#1", "b": "#2"}


_answer = st.one_of(st.integers(0, 3), st.just(EndpointUnavailable("x", "down")))


@settings(max_examples=200, deadline=None)
@given(st.lists(_answer, min_size=1, max_size=7), st.data())
def test_result_only_when_exactly_one_value_reaches_k(
    answers: list[object], data: st.DataObject
) -> None:
    k = data.draw(st.integers(1, len(answers)))
    labelled = {f"rpc#{i}": a for i, a in enumerate(answers)}
    counts: dict[int, int] = {}
    for a in answers:
        if isinstance(a, int):
            counts[a] = counts.get(a, 0) + 1
    winners = [v for v, c in counts.items() if c >= k]
    rep = report(labelled, k, question="q")  # type: ignore[arg-type]
    if len(winners) == 1:
        assert agree(labelled, k, question="q") == winners[0]  # type: ignore[arg-type]
        assert rep.reached and rep.agreed == winners[0]
        assert all(labelled[d] != winners[0] for d in rep.dissenters)
    else:
        with pytest.raises(QuorumError):
            agree(labelled, k, question="q")  # type: ignore[arg-type]
        assert not rep.reached
        assert rep.conflict == (len(winners) > 1)


# --- ordered readings: heights and fees ------------------------------------------------


@pytest.mark.parametrize(
    ("values", "need", "expected"),
    [
        ([5, 9, 7], 1, 9),
        ([5, 9, 7], 2, 7),
        ([5, 9, 7], 3, 5),
        ([5, 9, 7], 4, None),
        ([], 1, None),
        ([4, 4, 4], 3, 4),
        ([5, 9, 7], 0, None),
    ],
)
def test_reached_by(values: list[int], need: int, expected: int | None) -> None:
    assert reached_by(values, need) == expected


@pytest.mark.parametrize(
    ("heights", "k", "expected"),
    [
        # k = 2 of 3: as before, the 2nd highest
        ([100, 100, 100], 2, 100),
        ([100, 99, 98], 2, 99),
        ([10**9, 100, 99], 2, 100),  # a liar's far-future finalized cannot win
        ([10**9, 100], 2, 100),  # one honest endpoint down
        ([100], 2, None),  # fewer than k answered
        # k = 1 of 3: a majority of the answers, not any one endpoint
        ([10**9, 100, 99], 1, 100),
        ([10**9, 100], 1, 100),
        ([100], 1, 100),  # only one answered: k allows it
        ([10**9, 10**9, 100], 1, 10**9),  # a majority of the answers can (k <= n/2)
        # k = 2 of 4: majority of 4 answers is 3
        ([10**9, 10**9, 100, 99], 2, 100),
        # k = 3 of 3: the lowest (safe direction)
        ([100, 99, 0], 3, 0),
    ],
)
def test_quorum_height(heights: list[int], k: int, expected: int | None) -> None:
    assert quorum_height(heights, k) == expected


GWEI = 10**9


@pytest.mark.parametrize(
    ("fees", "k", "expected"),
    [
        ([10**30, 3 * GWEI, 2 * GWEI], 2, 3 * GWEI),  # a huge liar does not hold sending
        ([0, 3 * GWEI, 2 * GWEI], 2, 2 * GWEI),  # a tiny liar does not underprice
        ([10**30, 2 * GWEI], 2, 2 * GWEI),  # liar + one honest answering
        ([2 * GWEI], 2, None),  # fewer than k answered
        ([10**30, 3 * GWEI, 2 * GWEI], 1, 3 * GWEI),
        ([10**30, 10**30, 3 * GWEI, 2 * GWEI], 2, 3 * GWEI),  # 2 of 4 is not a majority
        ([5 * GWEI, 5 * GWEI, 5 * GWEI], 3, 5 * GWEI),
    ],
)
def test_quorum_fee(fees: list[int], k: int, expected: int | None) -> None:
    assert quorum_fee(fees, k) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 100), min_size=1, max_size=7),
    st.lists(st.integers(0, 10**6), max_size=3),
    st.data(),
)
def test_a_minority_cannot_move_a_reading_past_every_honest_one(
    honest: list[int], liars: list[int], data: st.DataObject
) -> None:
    if len(liars) * 2 >= len(honest) + len(liars):
        liars = liars[: (len(honest) - 1) // 2]  # keep the liars a minority of the answers
    readings = honest + liars
    k = data.draw(st.integers(1, len(readings)))
    fee = quorum_fee(readings, k)
    assert fee is not None and min(honest) <= fee <= max(honest)
    height = quorum_height(readings, k)
    assert height is not None and height <= max(honest)
