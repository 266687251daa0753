"""The sender on ``trust = "beacon"`` (issue 15) over the devnet's beacon light-client API
(lightpost_operator.beacon_server over a real anvil): a sent transaction is `included` only in the
block hash the sync committee signed and `final` only under a finalized header; RPC endpoints are
only data sources.

Two anvils as in test_beacon_trust: the real chain (the one the committee signs) and a second one,
the colluders' view. With both of a device's RPC endpoints on the colluders' anvil, every broadcast
lands there only: a self-consistent chain with the device's post, receipts and a `finalized` tag to
match, and nothing on the real chain. Under quorum trust the colluders ARE the quorum and the outbox
confirms the messages final although they are on no real chain (inherent: the contrast, not a
failure); under beacon trust they stay in flight, and one honest RPC endpoint later gets them to
final on the real chain.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.adapters.store import Store
from lightpost.core.keys import PrivateKey
from lightpost.core.outbox import State
from lightpost.node.config import load_config
from lightpost.node.runtime import make_sender, open_store
from lightpost.node.sender import Sender
from lightpost_operator.anvil import AnvilProcess, free_port
from tests.conftest import ANVIL_DEV_KEYS
from tests.integration.receive_chain import InboxChain, write_config

pytest.importorskip("py_arkworks_bls12381", reason="the lightpost[beacon] extra")
from lightpost_beacon.anchor import Anchor
from lightpost_beacon.sending import BeaconChain, beacon_chain
from lightpost_beacon.sources import HttpBeaconEndpoint
from lightpost_operator.beacon_server import FINALITY_LAG_SLOTS, BeaconDevnet

pytestmark = pytest.mark.integration

DEVICE = PrivateKey.from_hex(ANVIL_DEV_KEYS[2])
"""The sending device: no transaction of its own on either anvil before the test."""
MAX_ROUNDS = 3 * FINALITY_LAG_SLOTS
"""Sender steps (one block mined after each) before a test gives up waiting for a state."""
ANVIL_FINALITY = 4
"""anvil's own `finalized` tag trails its head by this (lightpost_operator.anvil: 2 slots an
epoch), far less than the devnet beacon chain's FINALITY_LAG_SLOTS."""


class World:
    def __init__(self, honest: InboxChain, colluding: InboxChain) -> None:
        self.honest, self.colluding = honest, colluding
        genesis = int(honest.ep.call("eth_getBlockByNumber", ["0x0", False])["timestamp"], 16)
        # the slot is the block number (test_beacon_trust.World): the clock follows the real head
        self.clock = lambda: genesis + honest.height() + 1
        self.devnet = BeaconDevnet(honest.url, clock=self.clock)
        self.beacon_url = self.devnet.serve()
        self.trusted_root = self.devnet.root_of(1)

    def config(self, directory: Path, urls: list[str], trust: str) -> Any:
        path = write_config(
            directory,
            endpoints=urls,
            quorum=len(urls) // 2 + 1,
            inbox=self.honest.inbox,
            me=DEVICE.address,
            trusted={"c1": [DEVICE.address]},
        )
        beacon = [
            "",
            "[beacon]",
            f"endpoints = {json.dumps([self.beacon_url])}",
            f'trusted_root = "0x{self.trusted_root.hex()}"',
            'network = "devnet"',
            f"genesis_time = {self.devnet.config.genesis_time}",
            'max_age = "1d"',
        ]
        path.write_text(f'trust = "{trust}"\n' + path.read_text() + "\n".join(beacon) + "\n")
        return load_config(path)

    def sender(self, config: Any, store: Store, urls: list[str]) -> Sender:
        """The device's sender as the node builds it (runtime.build_chain), with the test clock."""
        eps = [HttpEndpoint(u, f"rpc#{i}", retries=0) for i, u in enumerate(urls)]
        if config.trust == "quorum":
            from lightpost.node.chain import Chain

            chain = Chain(eps, config.quorum)
        else:
            source = HttpBeaconEndpoint(url=self.beacon_url, label="beacon#0")
            anchor = Anchor(config, eps, clock=self.clock, sources=[source])
            chain = beacon_chain(config, eps, anchor=anchor)
        return make_sender(config, DEVICE, store, chain, batch_delay_s=0.0)

    def mine(self, blocks: int = 1) -> None:
        self.honest.mine(blocks)
        self.colluding.mine(blocks)


@pytest.fixture
def world() -> Iterator[World]:
    real = AnvilProcess(port=free_port()).start()
    fork = AnvilProcess(port=free_port()).start()
    w = None
    try:
        honest, colluding = InboxChain(real.url), InboxChain(fork.url)
        assert honest.inbox == colluding.inbox  # same deployer, same nonce
        w = World(honest, colluding)
        yield w
    finally:
        if w is not None:
            w.devnet.stop()
        real.stop()
        fork.stop()


def _drive(
    sender: Sender, world: World, done: Callable[[], bool], seen: set[str] | None = None
) -> bool:
    """Step (one block mined on both anvils after each) until ``done()``; ``seen``: every
    problem key the sender had after a step."""
    for _ in range(MAX_ROUNDS):
        sender.step(time.time())
        if seen is not None:
            seen |= set(sender.problems)
        if done():
            return True
        world.mine()
    return False


def _counts(store: Store) -> dict[State, int]:
    return {s: n for s, n in store.counts_by_state().items() if n}


def _sent_on(chain: InboxChain) -> int:
    """How many transactions the device has on ``chain``."""
    return int(
        chain.ep.call("eth_getTransactionCount", ["0x" + DEVICE.address.hex(), "latest"]), 16
    )


def _enqueue(sender: Sender) -> None:
    for body in (b"m0", b"m1"):
        sender.enqueue(payload=body, channel="c1", content_type=1)


def test_sends_reach_final_by_the_beacon_anchor(world: World, tmp_path: Path) -> None:
    config = world.config(tmp_path, [world.honest.url], "beacon")
    with open_store(config) as store:
        sender = world.sender(config, store, [world.honest.url])
        try:
            chain = sender.chain
            assert isinstance(chain, BeaconChain)
            _enqueue(sender)
            assert _drive(sender, world, lambda: _counts(store) == {State.INCLUDED: 2})
            (tx,) = store.pending_transactions()
            assert tx.included is not None
            number = tx.included.number
            # included: in the block the committee signed (the real chain's, by hash)
            assert tx.included.hash == chain.anchor.hash_at(number)
            real = world.honest.ep.call("eth_getBlockByNumber", [hex(number), False])
            assert tx.included.hash.hex() == real["hash"][2:]
            # anvil's own `finalized` tag covers the block: quorum trust would call it final here
            world.mine(ANVIL_FINALITY + 1)
            sender.step(time.time())
            tag = world.honest.ep.call("eth_getBlockByNumber", ["finalized", False])
            assert int(tag["number"], 16) >= number
            assert chain.anchor.head(final=True).number < number
            assert _counts(store) == {State.INCLUDED: 2}
            # final: once a finalized header is at or above it
            assert _drive(sender, world, lambda: _counts(store) == {State.FINAL: 2})
            assert chain.anchor.head(final=True).number >= number
            assert chain.anchor.hash_at(number) == tx.included.hash
            assert store.transaction(tx.id).state is State.FINAL
            assert not [k for k in sender.problems if k.startswith("anchor")], sender.problems
        finally:
            sender.close()
            sender.chain.close()


@pytest.mark.parametrize("trust", ["quorum", "beacon"])
def test_two_colluding_rpc_endpoints_cannot_make_the_sender_drop_messages(
    world: World, tmp_path: Path, trust: str
) -> None:
    """Zero honest RPC endpoints (two of two on the colluders' anvil), one honest beacon."""
    urls = [world.colluding.url, world.colluding.url]
    config = world.config(tmp_path, urls, trust)
    with open_store(config) as store:
        sender = world.sender(config, store, urls)
        try:
            _enqueue(sender)
            seen: set[str] = set()
            confirmed = _drive(sender, world, lambda: _counts(store) == {State.FINAL: 2}, seen)
            assert _sent_on(world.colluding) >= 1  # the colluders' chain holds the post
            assert _sent_on(world.honest) == 0  # the real chain never got it
            if trust == "quorum":
                # the contrast: the colluders are the quorum, the outbox confirms the messages
                # final on no real chain (they are gone from it: lost, inherent to quorum trust)
                assert confirmed
                return
            assert not confirmed  # never confirmed on the colluders' word
            counts = _counts(store)
            in_flight = (State.QUEUED, State.SIGNED, State.BROADCAST)
            assert sum(counts.get(s, 0) for s in in_flight) == 2, counts
            # the colluders' headers are not the proven chain: named in the sender's problems
            assert {"anchor rpc#0", "anchor rpc#1"} <= seen, seen
        finally:
            sender.close()
            sender.chain.close()
        # one honest RPC endpoint: the messages kept in the outbox reach final on the real chain
        honest = [world.honest.url]
        sender = world.sender(world.config(tmp_path, honest, trust), store, honest)
        try:
            assert _drive(sender, world, lambda: _counts(store) == {State.FINAL: 2})
            assert _sent_on(world.honest) >= 1
        finally:
            sender.close()
            sender.chain.close()
