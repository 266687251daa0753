"""`--since` above the level's head: the start is remembered, never forgotten."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightpost.core.levels import Delivered, Level
from lightpost.node.receiver import Receiver
from tests.core.test_verify import OTHER, Block
from tests.node.test_receiver import ScriptedEndpoint, _config


@pytest.fixture(scope="module")
def block() -> Block:
    return Block()


@pytest.mark.parametrize("level", list(Level))
def test_since_above_the_head_is_kept_for_the_next_poll(
    block: Block, tmp_path: Path, level: Level
) -> None:
    """The posts sit at the head block N. A subscription that starts at N + 5 must never
    deliver them: not on its first poll (nothing to scan yet), nor on the next poll nor
    after a restart, which resume from the remembered start (before: the next poll began
    at the old cursor and replayed the chain's history)."""
    head = block.header.number
    eps = [ScriptedEndpoint(f"rpc#{i}", block) for i in range(3)]
    config = _config(tmp_path)
    with Receiver(config, endpoints=eps, me=OTHER.address) as receiver:
        first = list(receiver.poll(level, since=head + 5))
        second = list(receiver.poll(level))
    with Receiver(config, endpoints=eps, me=OTHER.address) as receiver:
        third = list(receiver.poll(level))
    for out in (first, second, third):
        assert [o for o in out if isinstance(o, Delivered)] == []
        assert out == []
