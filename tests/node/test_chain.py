"""Quorum reads over scripted endpoints (no sockets)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from lightpost.errors import EndpointUnavailable, QuorumError
from lightpost.node.chain import Chain


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
