"""core.diagnosis: every rule table-driven, no socket."""

from __future__ import annotations

import pytest

from lightpost.core.diagnosis import (
    UNTESTED,
    Cap,
    Finding,
    endpoint_failures,
    failure_text,
    logs_finding,
    needs,
    proof_finding,
    receipts_finding,
    refusal,
    seq_restart_warning,
    tag_finding,
)
from lightpost.errors import (
    DecodingError,
    EndpointUnavailable,
    MethodNotSupported,
    NodeError,
)

BASE = frozenset({Cap.REACH, Cap.CHAIN_ID, Cap.RECEIPTS})


@pytest.mark.parametrize(
    ("mode", "level", "depth", "receives", "expected"),
    [
        ("channel", "signed", 0, True, BASE),
        ("channel", "included", 0, True, BASE | {Cap.LOGS}),
        ("channel", "included", 0, False, BASE),
        ("direct", "final", 0, True, BASE | {Cap.FINALIZED}),
        ("direct", "final", 12, True, BASE),
        ("channel", "final", 0, True, BASE | {Cap.FINALIZED, Cap.LOGS}),
        ("channel", "complete", 0, True, BASE | {Cap.FINALIZED, Cap.LOGS, Cap.PROOF}),
        ("direct", "complete", 5, False, BASE | {Cap.PROOF}),
    ],
)
def test_needs(mode: str, level: str, depth: int, receives: bool, expected: frozenset[Cap]) -> None:
    assert needs(mode=mode, level=level, finality_depth=depth, receives=receives) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, "answered null"),
        (MethodNotSupported("rpc#0", "the method eth_x does not exist", -32601),
         "the method eth_x does not exist"),
        (EndpointUnavailable("rpc#1", "no complete answer within 5 s"),
         "no complete answer within 5 s"),
        (NodeError("rpc#0", "bad\nline\x1b[31m"), "bad\\nline\\x1b[31m"),
        (DecodingError("block", "null"), "invalid block: null"),
        (KeyError("x"), "KeyError"),
    ],
)  # fmt: skip
def test_failure_text(answer: object, expected: str) -> None:
    assert failure_text(answer) == expected


@pytest.mark.parametrize(
    ("reasons", "expected"),
    [
        ({}, "no endpoint proved the receipts of block 36; refusing"),
        (
            {"rpc#1": "no complete answer within 5 s", "rpc#0": "method not supported"},
            "no endpoint proved the receipts of block 36; refusing: rpc#0 method not supported, "
            "rpc#1 no complete answer within 5 s",
        ),
        ({"rpc#0": "x" * 300}, "refusing: rpc#0 " + "x" * 197 + "..."),
    ],
)
def test_refusal_lists_every_endpoint_by_label(reasons: dict[str, str], expected: str) -> None:
    assert refusal("the receipts of block 36", reasons).endswith(expected)


@pytest.mark.parametrize(
    ("tag", "answer", "latest", "depth", "ok", "detail"),
    [
        ("finalized", 90, 100, 0, True, "block 90, 10 behind latest"),
        ("finalized", 100, 100, 0, True, "block 100, 0 behind latest (equals latest"),
        ("finalized", None, 100, 0, False, "does not serve the finalized tag"),
        ("finalized", None, 100, 12, None, "does not serve the finalized tag (finality_depth"),
        ("finalized", MethodNotSupported("rpc#0", "tag not supported"), 100, 0, False,
         "does not serve the finalized tag"),
        ("finalized", EndpointUnavailable("rpc#0", "HTTP 502"), None, 0, False,
         "finalized tag unreadable: HTTP 502"),
        ("safe", None, 100, 0, None, "does not serve the safe tag"),
        ("finalized", 0, 0, 0, True, "block 0"),
        ("finalized", True, 5, 0, False, "finalized tag unreadable"),
    ],
)  # fmt: skip
def test_tag_finding_null_is_never_block_zero(
    tag: str, answer: object, latest: int | None, depth: int, ok: bool | None, detail: str
) -> None:
    found = tag_finding(tag, answer, latest, depth)
    assert (found.ok, found.detail.startswith(detail)) == (ok, True), found
    if ok is False and tag == "finalized":
        assert "finality_depth" in found.fix


@pytest.mark.parametrize(
    ("tried", "ok", "detail"),
    [
        ([("eth_getBlockReceipts", None)], True, "uses eth_getBlockReceipts (block 7)"),
        ([("eth_getBlockReceipts", "Method not supported"), ("eth_getTransactionReceipt", None)],
         True, "uses eth_getTransactionReceipt (block 7); eth_getBlockReceipts: Method not "
         "supported"),
        ([("eth_getBlockReceipts", None), ("debug_getRawReceipts", None)], True,
         "uses eth_getBlockReceipts (block 7); debug_getRawReceipts: proves"),
        ([("eth_getBlockReceipts", "a"), ("eth_getTransactionReceipt", "b"),
          ("debug_getRawReceipts", "c")], False,
         "eth_getBlockReceipts: a; eth_getTransactionReceipt: b; debug_getRawReceipts: c "
         "(block 7)"),
        ([], False, "not asked (block 7)"),
        ([("eth_getBlockReceipts", "a"), ("eth_getTransactionReceipt", UNTESTED)], None,
         "eth_getBlockReceipts: a; eth_getTransactionReceipt: " + UNTESTED + " (block 7)"),
    ],
)  # fmt: skip
def test_receipts_finding(tried: list[tuple[str, object]], ok: bool | None, detail: str) -> None:
    found = receipts_finding(tried, 7)
    assert (found.ok, found.detail) == (ok, detail)
    assert bool(found.fix) == (ok is not True)


def test_proof_finding() -> None:
    assert proof_finding(None, 9).ok is True
    bad = proof_finding("missing trie node", 9)
    assert (bad.ok, bad.detail) == (False, "at block 9: missing trie node") and bad.fix


@pytest.mark.parametrize(
    ("ranged", "one", "ok", "detail"),
    [
        ([], None, True, "2000-block range served"),
        (NodeError("rpc#0", "exceed maximum block range: 500"), [], False,
         "a 2000-block range refused: exceed maximum block range: 500"),
        (MethodNotSupported("rpc#0", "method not found"), MethodNotSupported("rpc#0", "x"),
         False, "not served: method not found"),
    ],
)  # fmt: skip
def test_logs_finding(ranged: object, one: object, ok: bool, detail: str) -> None:
    found = logs_finding(2000, ranged, one)
    assert (found.ok, found.detail) == (ok, detail)
    assert bool(found.fix) == (not ok)


def _f(cap: Cap, ok: bool | None) -> Finding:
    return Finding(cap=cap, ok=ok, detail=f"{cap} detail")


def test_endpoint_failures_only_needed_and_failed() -> None:
    findings = [_f(Cap.RECEIPTS, False), _f(Cap.LOGS, False), _f(Cap.SAFE, None)]
    assert endpoint_failures(findings, frozenset({Cap.RECEIPTS, Cap.SAFE})) == [findings[0]]


def test_a_needed_capability_never_checked_fails_on_a_reachable_endpoint() -> None:
    findings = [_f(Cap.REACH, True), _f(Cap.RECEIPTS, True)]
    failed = endpoint_failures(findings, frozenset({Cap.REACH, Cap.RECEIPTS, Cap.FINALIZED}))
    assert [(f.cap, f.ok) for f in failed] == [(Cap.FINALIZED, False)]
    assert endpoint_failures([_f(Cap.REACH, False)], frozenset({Cap.REACH, Cap.RECEIPTS})) == [
        Finding(cap=Cap.REACH, ok=False, detail="reachable detail")
    ]


@pytest.mark.parametrize(
    ("local_next", "has_history", "chain_next", "warns"),
    [
        (0, False, 3, True),  # empty data directory, the key sent 3 txs: seqs restart at 0
        (0, False, 0, False),  # a new key
        (3, False, 3, False),  # the store knows (transactions pruned, counter kept)
        (0, True, 3, False),  # transactions on record
    ],
)
def test_seq_restart_warning(
    local_next: int, has_history: bool, chain_next: int, warns: bool
) -> None:
    got = seq_restart_warning(local_next=local_next, has_history=has_history, chain_next=chain_next)
    assert (got is not None) is warns
    if got is not None:
        assert "3 transaction(s)" in got and "Remedy: restore the device's data directory" in got
