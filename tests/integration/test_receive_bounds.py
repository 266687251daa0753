"""A compromised trusted sender cannot make the receiver's memory grow (issue 12).

The sender posts seq 0, then 24 posts whose one record each inflates to ~4 MiB (about
4 KB of calldata each), all held behind a gap at seq 1. Before: every held message was
kept inflated (~96 MiB here; 1,024 held per stream, ~4 GiB, were allowed). Now held
and partial messages are bounded in bytes and a poll decodes a bounded number of
inflated bytes: the excess is an `over-budget` problem, the cursor holds, and once
seq 1 arrives every message is delivered exactly once over the next polls.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.envelope import MAX_MESSAGE_BYTES, Record, choose_compression
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem
from lightpost.node.config import load_config
from lightpost.node.receiver import Receiver
from lightpost_operator.anvil import AnvilProcess, free_port
from tests.integration.receive_chain import InboxChain, text, write_config

pytestmark = pytest.mark.integration

BOMBS = 24
"""Posts held behind the gap, one ~4 MiB message each."""

BOMB_BYTES = MAX_MESSAGE_BYTES - 1024
"""Inflated size of each bomb message (just under the per-message cap)."""

PEAK_LIMIT = 48 * 1024 * 1024
"""Traced peak allowed for one poll: the held and per-poll budgets plus transients;
half of what the held bombs alone took before."""


def _bomb(seq: int) -> Record:
    wire, compressed = choose_compression(bytes(BOMB_BYTES))
    assert compressed and len(wire) < 8 * 1024
    return Record(seq=seq, timestamp=seq, content_type=0, payload=wire, compressed=True)


@pytest.fixture
def bombed(tmp_path: Path) -> Iterator[tuple[InboxChain, Receiver]]:
    proc = AnvilProcess(port=free_port()).start()
    try:
        chain = InboxChain(proc.url)
        sender = chain.keys[2]
        chain.post(sender, "bombs", [text(0, "first")])
        for seq in range(2, 2 + BOMBS):
            chain.post(sender, "bombs", [_bomb(seq)])
        chain.mine()
        config = load_config(
            write_config(
                tmp_path,
                endpoints=[proc.url],
                quorum=1,
                inbox=chain.inbox,
                me=chain.keys[0].address,
                trusted={"bombs": [sender.address]},
            )
        )
        with Receiver(config, endpoints=[HttpEndpoint(proc.url, "rpc#0")]) as receiver:
            yield chain, receiver
    finally:
        proc.stop()


def _poll(receiver: Receiver, seen: list[tuple[int, int]], problems: list[Problem]) -> None:
    for item in receiver.poll(Level.FINAL):
        if isinstance(item, Delivered):
            seen.append((item.seq, len(item.payload)))  # never keep the payloads
        else:
            problems.append(item)


def test_held_bombs_are_bounded_in_bytes_and_nothing_is_lost(
    bombed: tuple[InboxChain, Receiver],
) -> None:
    chain, receiver = bombed
    seen: list[tuple[int, int]] = []
    problems: list[Problem] = []
    tracemalloc.start()
    try:
        _poll(receiver, seen, problems)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"traced peak of one poll: {peak / 2**20:.1f} MiB")
    assert peak < PEAK_LIMIT
    assert seen == [(0, 5)]
    kinds = {p.kind for p in problems}
    assert kinds == {"gap", "over-budget"}, problems
    # Nothing lost: seq 1 arrives, and the held and refused messages follow in order.
    chain.post(chain.keys[2], "bombs", [text(1, "second")])
    chain.mine()
    for _ in range(2 * BOMBS):
        _poll(receiver, seen, problems)
        if len(seen) == 2 + BOMBS:
            break
    assert [s for s, _ in seen] == list(range(2 + BOMBS))
    assert all(size == BOMB_BYTES for s, size in seen if s >= 2)
