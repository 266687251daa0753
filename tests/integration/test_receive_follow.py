"""The receiver over time on anvil: 5,000+ blocks, restarts, reorgs, direct mode."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lightpost.adapters.receiver_store import ReceiverStore
from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.keys import PrivateKey
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem
from lightpost.errors import ConfigError
from lightpost.node.config import DeviceConfig, load_config
from lightpost.node.receiver import Receiver
from lightpost_operator.anvil import AnvilProcess
from tests.integration.receive_chain import InboxChain, MeteredEndpoint, text, write_config

pytestmark = pytest.mark.integration

ROUNDS = 6
"""Follow rounds of BLOCKS_PER_ROUND blocks each: 5,100 blocks in all (anvil_mine slows
as the chain grows, so few big rounds)."""

BLOCKS_PER_ROUND = 850
"""Blocks mined between two posts while following."""


def _size_bytes(db: Path) -> int:
    """Bytes on disk of a SQLite database and its WAL (after a checkpoint: the file)."""
    files = (Path(f"{db}{suffix}") for suffix in ("", "-wal", "-shm"))
    return sum(p.stat().st_size for p in files if p.exists())


def _world(anvil: AnvilProcess, tmp_path: Path) -> tuple[InboxChain, PrivateKey, DeviceConfig]:
    """An inbox on ``anvil``, a trusted sender on channel c1, and the receiver's config."""
    chain = InboxChain(anvil.url)
    sender = chain.keys[1]
    config = load_config(
        write_config(
            tmp_path,
            endpoints=[anvil.url],
            quorum=1,
            inbox=chain.inbox,
            me=chain.keys[0].address,
            trusted={"c1": [sender.address]},
        )
    )
    return chain, sender, config


def test_following_5000_blocks_keeps_a_constant_data_dir(
    fresh_anvil: AnvilProcess, tmp_path: Path
) -> None:
    chain, sender, config = _world(fresh_anvil, tmp_path)
    sizes = []
    delivered: list[int] = []
    start = chain.height()
    for round_ in range(ROUNDS):
        chain.post(sender, "c1", [text(round_, f"reading {round_}")])
        chain.mine(BLOCKS_PER_ROUND)
        # A fresh Receiver each round = a restart: state comes from disk only.
        with Receiver(config) as receiver:
            for item in receiver.poll(Level.COMPLETE):
                assert isinstance(item, Delivered), item
                delivered.append(item.seq)
            receiver.store.checkpoint()
            sizes.append(_size_bytes(receiver.store.path))
    assert chain.height() - start >= 5_000
    assert delivered == list(range(ROUNDS))
    # The file stops growing after the first round: O(channels), not O(chain).
    assert len(set(sizes[1:])) == 1, sizes
    assert sizes[-1] <= sizes[0] * 2
    files = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert files[0].startswith("receiver.sqlite3")


def test_included_delivery_is_retracted_after_a_reorg(
    fresh_anvil: AnvilProcess, tmp_path: Path
) -> None:
    chain, sender, config = _world(fresh_anvil, tmp_path)
    chain.post(sender, "c1", [text(0, "final one")])
    chain.mine()
    snapshot = chain.ep.call("evm_snapshot", [])
    chain.post(sender, "c1", [text(1, "about to vanish")])
    with Receiver(config) as receiver:
        first = list(receiver.poll(Level.INCLUDED))
        assert [d.seq for d in first if isinstance(d, Delivered)] == [0, 1]
        # only the delivery above the finalized height is kept for retraction
        with sqlite3.connect(tmp_path / "data" / "receiver.sqlite3") as db:
            kept = db.execute("SELECT seq FROM recv_unfinal").fetchall()
        assert kept == [(1,)]
        assert chain.ep.call("evm_revert", [snapshot]) is True
        chain.nonces.clear()
        chain.mine(3)  # a different chain at the same heights
        second = list(receiver.poll(Level.INCLUDED))
    retracted = [p for p in second if isinstance(p, Problem) and p.kind == "retracted"]
    assert [(p.seq, p.sender) for p in retracted] == [(1, sender.address)]
    assert not any(isinstance(d, Delivered) for d in second)
    # The sender re-posts seq 1 on the new chain: it is delivered again, once.
    chain.post(sender, "c1", [text(1, "about to vanish, again")])
    with Receiver(config) as receiver:
        third = list(receiver.poll(Level.INCLUDED))
    assert [(d.seq, d.payload) for d in third if isinstance(d, Delivered)] == [
        (1, b"about to vanish, again")
    ]


def test_direct_mode_walks_blocks_and_keeps_messages_to_this_device(
    node: AnvilProcess, tmp_path: Path
) -> None:
    chain = InboxChain(node.url)
    a, stranger = chain.keys[1], chain.keys[3]
    me, other = chain.keys[0].address, chain.keys[2].address
    config = load_config(
        write_config(
            tmp_path,
            endpoints=[node.url] * 3,
            quorum=2,
            inbox=chain.inbox,
            me=me,
            trusted={"lightpost/direct": [a.address]},
            mode="direct",
            chain_id=chain.chain_id,
        )
    )
    start = chain.height() + 1  # the session's chain: only this test's blocks
    chain.direct(a, me, [text(0, "d0")])
    chain.direct(a, other, [text(1, "to another device")])  # advances a's seq, not for us
    chain.direct(a, me, [text(2, "d2")])
    chain.direct(stranger, me, [text(0, "spam")])
    chain.send(a, me, b"")  # a plain transfer: not a post, ignored
    chain.mine()
    eps = [MeteredEndpoint(HttpEndpoint(node.url, f"rpc#{i}")) for i in range(3)]
    with Receiver(config, endpoints=eps) as receiver:
        out = list(receiver.poll(Level.FINAL, since=start))
        with pytest.raises(ConfigError, match="channel mode"):
            list(receiver.poll(Level.COMPLETE))
    got = [(d.seq, d.payload) for d in out if isinstance(d, Delivered)]
    assert got == [(0, b"d0"), (2, b"d2")]
    assert [p.kind for p in out if isinstance(p, Problem)] == ["unauthorized"]
    final = eps[0].call("eth_getBlockByNumber", ["finalized", False])
    scanned = int(final["number"], 16) - start + 1  # blocks start..finalized
    block_bytes = sum(e.bytes_in.get("eth_getBlockByNumber", 0) for e in eps)
    calls = sum(sum(e.calls.values()) for e in eps)
    print(
        f"direct mode: {scanned} blocks, {calls} calls, {block_bytes} bytes "
        f"({block_bytes / scanned:.0f} bytes/block)"
    )
    assert ReceiverStore.open(tmp_path / "data").cursor is not None
