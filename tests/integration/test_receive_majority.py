"""Two colluding endpoints of three serve a consistent forged view (issue 12, majority).

The colluders are a second anvil that received the same transactions except the last
post: a real, self-consistent chain -- headers, receipts, state and eth_getProof all
agree with each other -- that lacks a3. The honest endpoint serves the real chain.

A majority beating a quorum is inherent: at `complete` the truncated stream a0..a2 is
delivered. What the receiver must do is surface every disagreement it can see, naming
both sides, and never call the honest endpoint a liar (no `proof-failure` or `hidden`
naming it alone).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem
from lightpost.node.config import load_config
from lightpost.node.receiver import Receiver
from lightpost_operator.anvil import AnvilProcess, free_port
from tests.integration.receive_chain import InboxChain, text, write_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chains() -> Iterator[tuple[InboxChain, InboxChain, bytes]]:
    real = AnvilProcess(port=free_port()).start()
    fork = AnvilProcess(port=free_port()).start()
    try:
        honest, colluding = InboxChain(real.url), InboxChain(fork.url)
        assert honest.inbox == colluding.inbox  # same deployer, same nonce
        a = honest.keys[1]
        for seq in range(3):
            for chain in (honest, colluding):
                chain.post(a, "c1", [text(seq, f"a{seq}")])
        last = honest.post(a, "c1", [text(3, "a3")])
        honest.mine()
        colluding.mine()
        yield honest, colluding, bytes.fromhex(last["transactionHash"][2:])
    finally:
        real.stop()
        fork.stop()


@pytest.mark.parametrize("level", [Level.COMPLETE, Level.FINAL])
def test_two_colluders_are_never_silent_and_never_blame_the_honest(
    chains: tuple[InboxChain, InboxChain, bytes], tmp_path: Path, level: Level
) -> None:
    honest, colluding, a3_tx = chains
    urls = [colluding.url, colluding.url, honest.url]
    config = load_config(
        write_config(
            tmp_path,
            endpoints=urls,
            quorum=2,
            inbox=honest.inbox,
            me=honest.keys[0].address,
            trusted={"c1": [honest.keys[1].address]},
        )
    )
    eps = [HttpEndpoint(u, f"rpc#{i}", retries=0) for i, u in enumerate(urls)]
    with Receiver(config, endpoints=eps) as receiver:
        out = list(receiver.poll(level))
    delivered = [o for o in out if isinstance(o, Delivered)]
    problems = [o for o in out if isinstance(o, Problem)]
    # Inherent: the majority's view wins the quorum (truncated, nothing forged).
    assert [d.payload for d in delivered] == [b"a0", b"a1", b"a2"]
    # Never silent: the honest endpoint's a3 is reported as a disagreement naming
    # both sides (rpc#2 and the endpoints that agreed the other block).
    a3 = [p for p in problems if p.tx_hash == a3_tx]
    assert a3 and all(p.kind == "disagreement" for p in a3), problems
    assert all({"rpc#0", "rpc#1", "rpc#2"} <= set(p.endpoints) for p in a3)
    assert all("rpc#2" in p.details and "rpc#0, rpc#1" in p.details for p in a3)
    # Never blamed: no problem names the honest endpoint alone (or as the liar).
    for p in problems:
        if "rpc#2" in p.endpoints:
            assert p.kind == "disagreement" and len(p.endpoints) > 1, p
