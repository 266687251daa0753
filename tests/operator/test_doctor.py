"""The doctor's own rules (operator): stated eth_getLogs caps, state history, the verdict --
table-driven, no socket."""

from __future__ import annotations

import pytest

from lightpost.core.diagnosis import Cap, Finding
from lightpost.errors import AnswerTooLarge, NodeError
from lightpost_operator.doctor import logs_caps, state_finding, stated_limit, verdict


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("query returned more than 10000 results", ("results", 10000)),
        ("Log response size exceeded. You can make eth_getLogs requests with up to a 2K block "
         "range and no limit on the response size", ("blocks", 2000)),
        ("exceed maximum block range: 5000", ("blocks", 5000)),
        ("block range is limited to 1,000 blocks", ("blocks", 1000)),
        ("eth_getLogs is limited to a 10,000 range", None),
        ("block range limit exceeded 500", ("blocks", 500)),
        ("cap of 10K logs in the response", ("results", 10000)),
        ("range limit 800", ("blocks", 800)),
        ("internal error", None),
    ],
)  # fmt: skip
def test_stated_limit(text: str, expected: tuple[str, int] | None) -> None:
    assert stated_limit(text) == expected


@pytest.mark.parametrize(
    ("detail", "wide", "expected"),
    [
        ("2000-block range served", None, "2000-block range served"),
        ("2000-block range served", NodeError("rpc#0", "query returned more than 10000 results"),
         "2000-block range served (states a cap of 10000 results)"),
        ("2000-block range served", AnswerTooLarge("rpc#0", 8), "2000-block range served"),
        ("2000-block range served", [{}, {}],
         "2000-block range served; 2 unfiltered logs served in one answer"),
        ("a 2000-block range refused: exceed maximum block range: 500", None,
         "a 2000-block range refused: exceed maximum block range: 500 (states a cap of 500 "
         "blocks)"),
    ],
)  # fmt: skip
def test_logs_caps(detail: str, wide: object, expected: str) -> None:
    ok = not detail.startswith("a 2000-block range refused")
    found = logs_caps(Finding(cap=Cap.LOGS, ok=ok, detail=detail), wide)
    assert found.detail == expected


def test_state_finding() -> None:
    assert state_finding([]).detail.startswith("not asked")
    assert state_finding([(128, None), (1024, None)]).detail == (
        "served at least 1024 blocks below final"
    )
    assert state_finding([(128, None), (1024, "missing trie node")]).detail == (
        "served 128 blocks below final, not 1024: missing trie node"
    )
    assert {f.ok for f in (state_finding([]), state_finding([(128, "x")]))} == {None}


def _f(cap: Cap, ok: bool | None) -> Finding:
    return Finding(cap=cap, ok=ok, detail=f"{cap} detail")


@pytest.mark.parametrize(
    ("failures", "quorum", "ok", "line"),
    [
        ({"rpc#0": [], "rpc#1": []}, 2, True, "ok: 2 of 2 endpoints serve what the config needs"),
        ({"rpc#0": [_f(Cap.RECEIPTS, False)], "rpc#1": []}, 1, True,
         "ok: 1 of 2 endpoints serve what the config needs (not: rpc#0: block receipts "
         "(block receipts detail))"),
        ({"rpc#0": [_f(Cap.RECEIPTS, False)], "rpc#1": []}, 2, False,
         "not ok: 1 of 2 endpoints serve what the config needs, quorum is 2: rpc#0: block "
         "receipts (block receipts detail)"),
    ],
)  # fmt: skip
def test_verdict(failures: dict[str, list[Finding]], quorum: int, ok: bool, line: str) -> None:
    assert verdict(failures, quorum) == (ok, line)
