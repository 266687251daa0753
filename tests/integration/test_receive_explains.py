"""The receiver says why, on a real anvil behind proxies that behave as other nodes do:
a refusal names each endpoint's own reason by label; a node whose eth_getLogs over-returns
(EthereumJS filters on the first topic only) does not get genuine posts called forged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem, ProblemKind
from lightpost.node.config import load_config
from lightpost.node.receiver import Receiver
from lightpost_operator.anvil import AnvilProcess, free_port
from lightpost_operator.proxy import FirstTopicOnly, Lie, LyingProxy, Unsupported
from tests.integration.receive_chain import InboxChain, text, write_config

pytestmark = pytest.mark.integration

RECEIPT_METHODS = ["eth_getBlockReceipts", "eth_getTransactionReceipt", "debug_getRawReceipts"]


@pytest.fixture(scope="module")
def chain() -> Iterator[InboxChain]:
    """Trusted A posts on c1; untrusted C posts on c1 and A on c2 in the same blocks (what a
    first-topic-only filter returns too)."""
    proc = AnvilProcess(port=free_port()).start()
    try:
        c = InboxChain(proc.url)
        a, other = c.keys[1], c.keys[3]
        c.post(a, "c1", [text(0, "a0"), text(1, "a1")])
        c.post(other, "c1", [text(0, "c0 untrusted")])
        c.post(a, "c2", [text(0, "a on c2")])
        c.post(a, "c1", [text(2, "a2")])
        c.mine()
        yield c
    finally:
        proc.stop()


def receive(
    c: InboxChain, tmp: Path, lies: list[list[Lie]], level: Level, honest: int = 0
) -> tuple[list[Delivered], list[Problem], list[str]]:
    proxies = [LyingProxy(c.url, group).start() for group in lies]
    try:
        urls = [p.url for p in proxies] + [c.url] * honest
        config = load_config(
            write_config(
                tmp,
                endpoints=urls,
                quorum=len(urls) // 2 + 1,
                inbox=c.inbox,
                me=c.keys[0].address,
                trusted={"c1": [c.keys[1].address]},
            )
        )
        eps: list[Any] = [HttpEndpoint(u, f"rpc#{i}", retries=0) for i, u in enumerate(urls)]
        with Receiver(config, endpoints=eps) as receiver:
            out = list(receiver.poll(level))
    finally:
        for p in proxies:
            p.stop()
    return (
        [o for o in out if isinstance(o, Delivered)],
        [o for o in out if isinstance(o, Problem)],
        urls,
    )


def test_a_refusal_names_each_endpoints_own_reason(chain: InboxChain, tmp_path: Path) -> None:
    lies: list[list[Lie]] = [[Unsupported(RECEIPT_METHODS)], [Unsupported(RECEIPT_METHODS)]]
    delivered, problems, urls = receive(chain, tmp_path, lies, Level.INCLUDED)
    assert delivered == []
    refusals = [p for p in problems if "refusing" in p.details]
    assert refusals, problems
    details = refusals[0].details
    assert details.startswith("no endpoint proved the receipts of block ")
    for label in ("rpc#0", "rpc#1"):  # each endpoint's outcome of every receipts method
        assert (
            f"{label} eth_getBlockReceipts not supported, eth_getTransactionReceipt not supported, "
            "debug_getRawReceipts not supported"
        ) in details
    assert not any(u in p.details for p in problems for u in urls)  # labels, never URLs


@pytest.mark.parametrize("level", [Level.SIGNED, Level.INCLUDED, Level.FINAL, Level.COMPLETE])
@pytest.mark.parametrize("honest", [0, 2])
def test_over_returned_logs_do_not_make_genuine_posts_forged(
    chain: InboxChain, tmp_path: Path, level: Level, honest: int
) -> None:
    """EthereumJS alone (quorum 1) or beside two honest nodes: every genuine post is delivered,
    none is called forged; the logs outside the asked filter are dropped before judging
    (core.reconcile.claim_violation) and reported against the over-returning endpoint alone."""
    first_topic_only = FirstTopicOnly()
    delivered, problems, _ = receive(chain, tmp_path, [[first_topic_only]], level, honest)
    assert first_topic_only.fired  # the node did return logs outside the asked filter
    got = sorted((d.seq, d.payload) for d in delivered)
    assert got == [(0, b"a0"), (1, b"a1"), (2, b"a2")]
    assert not [p for p in problems if "forged or never emitted" in p.details]
    assert problems, "the logs outside the filter are not dropped silently"
    for p in problems:
        assert (p.kind, p.endpoints) == (ProblemKind.PROOF_FAILURE, ("rpc#0",)), p
        assert "was not asked for" in p.details


@pytest.fixture
def fresh_chain() -> Iterator[InboxChain]:
    proc = AnvilProcess(port=free_port()).start()
    try:
        yield InboxChain(proc.url)
    finally:
        proc.stop()


def _receiver(c: InboxChain, tmp: Path, mode: str, trusted: dict[str, list[bytes]]) -> Receiver:
    config = load_config(
        write_config(
            tmp,
            endpoints=[c.url],
            quorum=1,
            inbox=c.inbox,
            me=c.keys[0].address,
            trusted=trusted,
            mode=mode,
        )
    )
    return Receiver(config, endpoints=[HttpEndpoint(c.url, "rpc#0", retries=0)])


@pytest.mark.parametrize("mode", ["channel", "direct"])
def test_a_sequence_started_over_is_a_problem_with_the_remedy(
    fresh_chain: InboxChain, tmp_path: Path, mode: str
) -> None:
    """A device restarted with an empty data directory posts seq 0 again: the receiver, which
    delivered seq 0 and 1 before, says so once (and, across a receiver restart, still knows)."""
    c, a = fresh_chain, fresh_chain.keys[1]
    me = c.keys[0].address

    def post(records: list[Any]) -> None:
        if mode == "channel":
            c.post(a, "c1", records)
        else:
            c.direct(a, me, records)

    channel = "c1" if mode == "channel" else "lightpost/direct"
    post([text(0, "a0"), text(1, "a1")])
    c.mine()
    with _receiver(c, tmp_path, mode, {channel: [a.address]}) as receiver:
        first = list(receiver.poll(Level.FINAL))
    assert [o.payload for o in first if isinstance(o, Delivered)] == [b"a0", b"a1"]
    post([text(0, "a0 after a wipe")])
    post([text(1, "a1 after a wipe")])
    c.mine()
    with _receiver(c, tmp_path, mode, {channel: [a.address]}) as receiver:
        again = list(receiver.poll(Level.FINAL))
    assert not [o for o in again if isinstance(o, Delivered)]
    restarts = [o for o in again if isinstance(o, Problem) and o.kind == ProblemKind.SEQ_RESTART]
    assert len(restarts) == 1, again
    (p,) = restarts
    assert p.sender == a.address and p.seq == 0
    assert "started its sequence over" in p.details and "Remedy" in p.details


def test_a_direct_post_on_an_unconfigured_channel_is_a_problem(
    fresh_chain: InboxChain, tmp_path: Path
) -> None:
    from lightpost.core.envelope import Post, channel_id, encode_post

    c, a = fresh_chain, fresh_chain.keys[1]
    me = c.keys[0].address
    body = encode_post(Post(channel=channel_id("alarms"), recipient=me, records=(text(0, "x"),)))
    c.send(a, me, body)
    c.mine()
    with _receiver(c, tmp_path, "direct", {"readings": [a.address]}) as receiver:
        out = list(receiver.poll(Level.FINAL))
    assert not [o for o in out if isinstance(o, Delivered)]
    (p,) = [o for o in out if isinstance(o, Problem)]
    assert p.kind == ProblemKind.UNAUTHORIZED and p.channel == channel_id("alarms")
    assert "not configured" in p.details and "[channels." in p.details
