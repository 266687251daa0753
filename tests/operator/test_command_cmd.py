"""`lightpost command --wait-result` says why it gave up (scripted receiver, no socket)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from lightpost.core.envelope import channel_id
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem, ProblemKind
from lightpost.node.config import ChannelPolicy, DeviceConfig
from lightpost_agent.command import (
    CONTENT_TYPE_RESULT,
    RESULTS_CHANNEL,
    CommandResult,
    Reason,
    Status,
    encode_result,
)
from lightpost_operator import command_cmd

ME = bytes.fromhex("11" * 20)
DEVICE = bytes.fromhex("22" * 20)


def _config(tmp_path: Path) -> DeviceConfig:
    return DeviceConfig(
        path=tmp_path / "c.toml",
        chain_id=31337,
        endpoints=("http://127.0.0.1:1",),
        quorum=1,
        keystore=tmp_path / "k.json",
        password_file=None,
        data_dir=tmp_path,
        inbox=bytes(20),
        channels=(ChannelPolicy(name=RESULTS_CHANNEL, trusted=(DEVICE,)),),
    )


def _result(seq: int, payload: bytes | None = None) -> Delivered:
    body = payload or encode_result(
        CommandResult(
            controller=ME, command_seq=seq, status=Status.EXECUTED, reason=Reason.OK, output=""
        )
    )
    return Delivered(
        sender=DEVICE,
        channel=channel_id(RESULTS_CHANNEL),
        recipient=ME,
        seq=seq,
        timestamp=0,
        content_type=CONTENT_TYPE_RESULT,
        payload=body,
        tx_hash=bytes(32),
        block_number=5,
        block_hash=bytes(32),
        block_timestamp=0,
        level=Level.FINAL,
    )


class FakeReceiver:
    items: ClassVar[list[Any]] = []

    def __init__(self, config: DeviceConfig, *, me: bytes) -> None:
        pass

    def __enter__(self) -> FakeReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def follow(self, *args: Any, **kw: Any) -> Iterator[Any]:
        yield from self.items


def _wait(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, items: list[Any]) -> Any:
    monkeypatch.setattr(FakeReceiver, "items", items)
    monkeypatch.setattr(command_cmd, "Receiver", FakeReceiver)
    return command_cmd._wait_result(_config(tmp_path), ME, DEVICE, 7, 30.0)


REFUSAL = Problem(
    kind=ProblemKind.PROOF_FAILURE,
    details="no endpoint proved the receipts of block 36; refusing: rpc#0 Method "
    "eth_getBlockReceipts is not supported (eth_getBlockReceipts)",
    block_number=36,
)


def test_giving_up_says_why_with_the_receivers_problems(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    unauthorized = Problem(
        kind=ProblemKind.UNAUTHORIZED, details="sender not trusted", endpoints=("rpc#0",)
    )
    why = _wait(monkeypatch, tmp_path, [REFUSAL, unauthorized, REFUSAL, _result(3)])
    assert isinstance(why, str)
    assert why.startswith("no signed result for command seq 7 at final within 30 s")
    assert "1 result(s) of other commands seen" in why
    # distinct, latest last: the repeated refusal is quoted once
    assert why.endswith(
        "problems: unauthorized: sender not trusted (rpc#0); proof-failure: " + REFUSAL.details
    )


def test_giving_up_without_problems_names_what_to_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    why = _wait(monkeypatch, tmp_path, [_result(9, b"\xc0")])
    assert isinstance(why, str)
    assert "undecodable result from 0x2222" in why
    why = _wait(monkeypatch, tmp_path, [])
    assert "no problem seen: is the device's `lightpost node` running" in why


def test_the_matching_result_is_returned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    got = _wait(monkeypatch, tmp_path, [REFUSAL, _result(7)])
    assert not isinstance(got, str) and got[1].command_seq == 7


def test_quoted_problems_are_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    many = [Problem(kind=ProblemKind.GAP, details=f"gap {i}") for i in range(50)]
    why = _wait(monkeypatch, tmp_path, many)
    assert why.count("gap: gap") == command_cmd.MAX_WHY_PROBLEMS
    assert why.endswith("gap: gap 49")
