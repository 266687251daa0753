"""eth_getLogs claims are checked against the question asked (issue 12, findings 1, 5, 6).

One chain: trusted sender A posts a0, a1 on ``c1`` (final), untrusted C posts once
(final), then A posts a2, which stays ABOVE the finalized head. Each test puts one
lying endpoint (rpc#0, asked first) in front of two honest ones (quorum 2) and adds
real or altered logs to its eth_getLogs answers. The honest endpoints must never be
reported; nothing outside the asked range is proven, fetched or delivered.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.envelope import channel_id
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem
from lightpost.node.config import load_config
from lightpost.node.receiver import Receiver
from lightpost_operator.anvil import AnvilProcess, free_port
from lightpost_operator.proxy import Lie, LyingProxy, Upstream, flip_hex
from tests.integration.receive_chain import InboxChain, hx, text, write_config

pytestmark = pytest.mark.integration

Rewrite = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


class AddLogs(Lie):
    """eth_getLogs answers get ``extra(answer)`` appended (once per answer)."""

    methods = frozenset({"eth_getLogs"})

    def __init__(self, extra: Rewrite) -> None:
        super().__init__()
        self.extra = extra

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        if not isinstance(result, list):
            return result
        more = self.extra(copy.deepcopy(result))
        self.fired += len(more)
        return result + more


class RewriteLogs(Lie):
    """Every eth_getLogs entry goes through ``change`` (in place)."""

    methods = frozenset({"eth_getLogs"})

    def __init__(self, change: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self.change = change

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        for log in result if isinstance(result, list) else []:
            self.change(log)
            self.fired += 1
        return result


class Recording:
    """An endpoint that appends every (method, params) it is asked to ``asked``."""

    def __init__(self, inner: HttpEndpoint, asked: list[tuple[str, list[Any]]]) -> None:
        self.inner, self.asked, self.label = inner, asked, inner.label

    def call(self, method: str, params: Sequence[Any]) -> Any:
        self.asked.append((method, list(params)))
        return self.inner.call(method, params)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        return [self.call(m, p) for m, p in calls]


class World:
    def __init__(self, anvil: AnvilProcess) -> None:
        self.anvil = anvil
        self.chain = c = InboxChain(anvil.url)
        self.a, self.c = c.keys[1], c.keys[3]
        self.me = c.keys[0].address
        self.a0 = c.post(self.a, "c1", [text(0, "a0")])
        self.a1 = c.post(self.a, "c1", [text(1, "a1")])
        self.untrusted = c.post(self.c, "c1", [text(0, "c0")])
        c.mine()
        self.a2 = c.post(self.a, "c1", [text(2, "a2 not final")])
        logs = c.ep.call(
            "eth_getLogs",
            [{"fromBlock": "0x0", "toBlock": "latest", "address": hx(c.inbox)}],
        )
        self.logs = {log["transactionHash"]: log for log in logs}

    def log_of(self, receipt: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(self.logs[receipt["transactionHash"]])

    def receive(
        self,
        tmp: Path,
        lies: list[Lie],
        level: Level,
        *,
        polls: int = 1,
        since: int | None = None,
    ) -> tuple[list[Delivered], list[Problem], list[tuple[str, list[Any]]]]:
        asked: list[tuple[str, list[Any]]] = []
        with LyingProxy(self.anvil.url, lies) as liar:
            urls = [liar.url, self.anvil.url, self.anvil.url]
            config = load_config(
                write_config(
                    tmp,
                    endpoints=urls,
                    quorum=2,
                    inbox=self.chain.inbox,
                    me=self.me,
                    trusted={"c1": [self.a.address]},
                )
            )
            eps = [
                Recording(HttpEndpoint(u, f"rpc#{i}", retries=0), asked) for i, u in enumerate(urls)
            ]
            out: list[Delivered | Problem] = []
            with Receiver(config, endpoints=eps) as receiver:
                for i in range(polls):
                    out += receiver.poll(level, since=since if i == 0 else None)
        assert all(lie.fired for lie in lies), "the lie never fired"
        return (
            [o for o in out if isinstance(o, Delivered)],
            [o for o in out if isinstance(o, Problem)],
            asked,
        )


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    proc = AnvilProcess(port=free_port()).start()
    try:
        yield World(proc)
    finally:
        proc.stop()


def _payloads(delivered: list[Delivered]) -> list[bytes]:
    return [d.payload for d in delivered]


def _only_the_liar(problems: list[Problem], *kinds: str) -> None:
    assert problems, "the lie went unreported"
    for p in problems:
        assert p.endpoints == ("rpc#0",), f"an honest endpoint was named: {p}"
        assert p.kind in kinds, p


def _fetched(asked: list[tuple[str, list[Any]]], receipt: dict[str, Any]) -> bool:
    """Whether the block of ``receipt`` (or its transaction) was asked for."""
    number, tx = receipt["blockNumber"], receipt["transactionHash"]
    return any(
        (m == "eth_getBlockByNumber" and p[:2] == [number, True])
        or (m == "eth_getBlockReceipts" and p[:1] == [number])
        or p[:1] == [tx]
        for m, p in asked
    )


def test_a_log_above_the_finalized_head_is_never_final(world: World, tmp_path: Path) -> None:
    """Finding 1: the liar adds a2's REAL log (a genuine post, above the finalized
    head) to the range it was asked (0..finalized). Old code: a2 delivered with level
    `final`, the honest endpoints reported as hiding it."""
    a2 = world.log_of(world.a2)
    delivered, problems, asked = world.receive(tmp_path, [AddLogs(lambda _: [a2])], Level.FINAL)
    assert _payloads(delivered) == [b"a0", b"a1"]
    assert all(d.block_number < int(world.a2["blockNumber"], 16) for d in delivered)
    _only_the_liar(problems, "proof-failure")
    assert all("outside the asked range" in p.details for p in problems)
    assert not _fetched(asked, world.a2)


def test_a_far_future_log_cannot_stop_complete(world: World, tmp_path: Path) -> None:
    """Finding 1: a fabricated log a billion blocks ahead. Old code: every `complete`
    poll refused (no quorum on that block), for good."""

    def far(_: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fake = world.log_of(world.a0)
        fake["blockNumber"] = hex(10**9)
        return [fake]

    delivered, problems, _ = world.receive(tmp_path, [AddLogs(far)], Level.COMPLETE, polls=2)
    assert _payloads(delivered) == [b"a0", b"a1"]
    assert {d.level for d in delivered} == {Level.COMPLETE}
    _only_the_liar(problems, "proof-failure")


def test_since_an_old_post_cannot_become_the_start(world: World, tmp_path: Path) -> None:
    """Finding 1: with --since after a0, the liar adds a0's real log. Old code: a0
    (a replay) became the stream's start and was delivered."""
    since = int(world.a1["blockNumber"], 16)
    a0 = world.log_of(world.a0)
    delivered, problems, asked = world.receive(
        tmp_path, [AddLogs(lambda _: [a0])], Level.FINAL, since=since
    )
    assert _payloads(delivered) == [b"a1"]
    _only_the_liar(problems, "proof-failure")
    assert not _fetched(asked, world.a0)


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("address", lambda log, w: log.update(address=hx(bytes(20)))),
        (
            "channel",
            lambda log, w: log["topics"].__setitem__(1, hx(channel_id("not asked"))),
        ),
        (
            "untrusted sender",
            lambda log, w: log["topics"].__setitem__(2, hx(bytes(12) + w.c.address)),
        ),
    ],
)
def test_a_claim_outside_the_filter_costs_no_fetch(
    world: World, tmp_path: Path, what: str, change: Any
) -> None:
    """Findings 1 and 6: a copy of a0's log moved to C's block with one field outside
    the filter. Old code: C's block was fetched and proven for it."""

    def fake(_: list[dict[str, Any]]) -> list[dict[str, Any]]:
        log = world.log_of(world.a0)
        log["blockNumber"] = world.untrusted["blockNumber"]
        log["blockHash"] = world.untrusted["blockHash"]
        change(log, world)
        return [log]

    delivered, problems, asked = world.receive(tmp_path, [AddLogs(fake)], Level.FINAL)
    assert _payloads(delivered) == [b"a0", b"a1"]
    _only_the_liar(problems, "proof-failure")
    assert not _fetched(asked, world.untrusted), f"{what}: C's block was fetched"


def test_signed_claims_cannot_drive_retractions(world: World, tmp_path: Path) -> None:
    """Finding 5: at `signed` the liar names another block hash for every log. Old
    code: the liar's hash was recorded for reorg tracking, so a2 (above the finalized
    head) was retracted and redelivered every other poll."""
    lie = RewriteLogs(lambda log: log.update(blockHash=flip_hex(log["blockHash"])))
    delivered, problems, _ = world.receive(tmp_path, [lie], Level.SIGNED, polls=4)
    assert _payloads(delivered) == [b"a0", b"a1", b"a2 not final"]
    assert [p for p in problems if p.kind == "retracted"] == []
