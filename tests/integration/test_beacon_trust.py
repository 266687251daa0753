"""The receiver on ``trust = "beacon"`` (issue 15): `included`, `final` and `complete` rest on the
devnet's sync committee (lightpost_operator.beacon_server over anvil), RPC endpoints are only data
sources.

The chains are test_receive_majority's: a real anvil with posts a0..a3 and a second anvil, the
colluders' view, that received the same transactions except a3 -- a self-consistent chain whose
headers, receipts, state and proofs agree with each other. Under quorum trust two colluding
endpoints of two deliver the truncated stream as `complete` (inherent: they ARE the quorum); under
beacon trust the one honest beacon endpoint is enough to refuse it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem
from lightpost.node.config import load_config
from lightpost.node.receiver import Receiver
from lightpost_operator.anvil import AnvilProcess, free_port
from tests.integration.receive_chain import InboxChain, MeteredEndpoint, text, write_config

pytest.importorskip("py_arkworks_bls12381", reason="the lightpost[beacon] extra")
from lightpost_beacon.anchor import Anchor
from lightpost_beacon.sources import HttpBeaconEndpoint
from lightpost_operator.beacon_server import BeaconDevnet

pytestmark = pytest.mark.integration

BEACON_FINALITY_BLOCKS = 24
"""Blocks mined after the posts: the devnet's finalized block trails its head by 16 slots."""


class World:
    def __init__(self, honest: InboxChain, colluding: InboxChain, a3_tx: bytes) -> None:
        self.honest, self.colluding, self.a3_tx = honest, colluding, a3_tx
        genesis = int(honest.ep.call("eth_getBlockByNumber", ["0x0", False])["timestamp"], 16)
        # the devnet's slot is the block number: its clock (and the light client's) is the head's
        # signature slot, as on a chain with a block in every slot (anvil_mine is faster than
        # the wall clock; far ahead of the blocks, the force-update rule would apply)
        self.clock = lambda: genesis + honest.height() + 1
        self.devnet = BeaconDevnet(honest.url, clock=self.clock)
        self.beacon_url = self.devnet.serve()
        self.trusted_root = self.devnet.root_of(1)
        self.liars: dict[str, tuple[BeaconDevnet, str]] = {}

    def liar_url(self, lie: str) -> str:
        """A lying beacon endpoint over the same chain (beacon_server.LIES), served over HTTP."""
        if lie not in self.liars:
            liar = BeaconDevnet(self.honest.url, clock=self.clock, lie=lie)
            self.liars[lie] = (liar, liar.serve())
        return self.liars[lie][1]

    def stop(self) -> None:
        for devnet in (self.devnet, *(liar for liar, _ in self.liars.values())):
            devnet.stop()

    def receiver(
        self,
        tmp_path: Path,
        urls: list[str],
        *,
        trust: str = "beacon",
        liar: str | None = None,
    ) -> Receiver:
        path = write_config(
            tmp_path,
            endpoints=urls,
            quorum=len(urls) // 2 + 1,
            inbox=self.honest.inbox,
            me=self.honest.keys[0].address,
            trusted={"c1": [self.honest.keys[1].address]},
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
        config = load_config(path)
        eps = [HttpEndpoint(u, f"rpc#{i}", retries=0) for i, u in enumerate(urls)]
        anchor = None
        if trust != "quorum":
            sources = [HttpBeaconEndpoint(url=self.beacon_url, label="beacon#1")]
            if liar is not None:
                sources.insert(0, HttpBeaconEndpoint(url=self.liar_url(liar), label="beacon#0"))
            anchor = Anchor(config, eps, clock=self.clock, sources=sources)
        return Receiver(config, endpoints=eps, anchor=anchor)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    real = AnvilProcess(port=free_port()).start()
    fork = AnvilProcess(port=free_port()).start()
    w = None
    try:
        honest, colluding = InboxChain(real.url), InboxChain(fork.url)
        assert honest.inbox == colluding.inbox  # same deployer, same nonce
        a = honest.keys[1]
        for seq in range(3):
            for chain in (honest, colluding):
                chain.post(a, "c1", [text(seq, f"a{seq}")])
        last = honest.post(a, "c1", [text(3, "a3")])
        honest.mine(BEACON_FINALITY_BLOCKS)
        colluding.mine(BEACON_FINALITY_BLOCKS)
        w = World(honest, colluding, bytes.fromhex(last["transactionHash"][2:]))
        yield w
    finally:
        if w is not None:
            w.stop()
        real.stop()
        fork.stop()


def _split(out: list[Delivered | Problem]) -> tuple[list[Delivered], list[Problem]]:
    return (
        [o for o in out if isinstance(o, Delivered)],
        [o for o in out if isinstance(o, Problem)],
    )


@pytest.mark.parametrize(
    ("trust", "level", "root"),
    [
        ("beacon", Level.FINAL, "beacon-finalized"),
        ("beacon", Level.COMPLETE, "beacon-finalized"),
        ("both", Level.COMPLETE, "beacon-finalized+quorum"),
    ],
)
def test_beacon_trust_reaches_final_and_complete(
    world: World, tmp_path: Path, trust: str, level: Level, root: str
) -> None:
    with world.receiver(tmp_path, [world.honest.url], trust=trust) as receiver:
        delivered, problems = _split(list(receiver.poll(level)))
        assert problems == []
        assert [d.payload for d in delivered] == [b"a0", b"a1", b"a2", b"a3"]
        assert {(d.level, d.root) for d in delivered} == {(level, root)}
        # the state file is constant-size light-client state, under data_dir
        assert receiver.anchor.settings.state_file.stat().st_size < 64 * 1024


def test_included_under_the_optimistic_header_says_so(world: World, tmp_path: Path) -> None:
    with world.receiver(tmp_path, [world.honest.url]) as receiver:
        final = receiver.anchor
        delivered, _ = _split(list(receiver.poll(Level.INCLUDED)))
        assert [d.payload for d in delivered] == [b"a0", b"a1", b"a2", b"a3"]
        world.honest.post(world.honest.keys[1], "c1", [text(4, "a4")])
        world.honest.mine(2)  # signed by the committee, not yet final
        delivered, problems = _split(list(receiver.poll(Level.INCLUDED)))
        assert problems == []
        assert [(d.payload, d.root) for d in delivered] == [(b"a4", "beacon-optimistic")]
        assert delivered[0].block_number > final.head(final=True).number


@pytest.mark.parametrize("level", [Level.COMPLETE, Level.FINAL])
def test_two_colluding_rpc_endpoints_are_refused_with_one_honest_beacon(
    world: World, tmp_path: Path, level: Level
) -> None:
    """THE case of issue 15: zero honest RPC endpoints, one honest beacon endpoint."""
    urls = [world.colluding.url, world.colluding.url]
    with world.receiver(tmp_path / "quorum", urls, trust="quorum") as receiver:
        delivered, _ = _split(list(receiver.poll(level)))
    # quorum trust: the colluders are the quorum, the truncated stream passes as proven
    assert [(d.payload, d.root) for d in delivered] == [
        (b"a0", "quorum"),
        (b"a1", "quorum"),
        (b"a2", "quorum"),
    ]
    with world.receiver(tmp_path / "beacon", urls) as receiver:
        delivered, problems = _split(list(receiver.poll(level)))
    assert delivered == []  # nothing of the forged view is delivered as final or complete
    assert problems, "the refusal must say why"
    refusal = problems[-1]
    assert refusal.kind == "proof-failure"
    assert "proven chain" in refusal.details, refusal
    blamed = {label for p in problems for label in p.endpoints}
    assert blamed == {"rpc#0", "rpc#1"}, problems


def test_trust_both_refuses_a_quorum_the_beacon_contradicts(world: World, tmp_path: Path) -> None:
    urls = [world.colluding.url, world.colluding.url]
    with world.receiver(tmp_path, urls, trust="both") as receiver:
        delivered, problems = _split(list(receiver.poll(Level.COMPLETE)))
    assert delivered == []
    refusal = problems[-1]
    assert refusal.kind == "proof-failure" and refusal.endpoints == ("rpc#0", "rpc#1")
    assert "the quorum's hash is not the beacon-proven one" in refusal.details


@pytest.mark.parametrize(
    ("lie", "rule"),
    [
        ("bad-signature", "signature"),
        ("too-few-signers", "participants"),
        ("wrong-branch", "execution_branch"),
        ("future-slot", "future_slot"),
        ("stale", "stale"),
        ("wrong-committee", "committee_branch"),
    ],
)
def test_a_lying_beacon_endpoint_is_refused_and_the_honest_one_used(
    world: World, tmp_path: Path, lie: str, rule: str
) -> None:
    with world.receiver(tmp_path, [world.honest.url], liar=lie) as receiver:
        delivered, problems = _split(list(receiver.poll(Level.FINAL)))
    assert [d.payload for d in delivered][:4] == [b"a0", b"a1", b"a2", b"a3"]
    assert {d.root for d in delivered} == {"beacon-finalized"}
    assert problems, "the liar must be named"
    assert all(p.endpoints == ("beacon#0",) and p.kind == "proof-failure" for p in problems)
    assert any(f"refused ({rule})" in p.details for p in problems), problems


# --- blocks far below the proven header: EIP-2935's block-hash history (anvil serves it) ---

HISTORY_DEPTH = 600
"""Blocks mined after the posts: far more than the anchor would walk (history.WALK_PREFERRED),
well inside one history window (8,191: mining past it takes anvil ~90 s, measured)."""


MINE_PER_CALL = 1000
"""Blocks per anvil_mine call (each call well inside the RPC timeout)."""


@contextmanager
def posts_below(posts: int, depth: int) -> Iterator[World]:
    """A fresh anvil with ``posts`` posts a0, a1... then ``depth`` blocks; its devnet caught up."""
    real = AnvilProcess(port=free_port()).start()
    w = None
    try:
        chain = InboxChain(real.url)
        for seq in range(posts):
            chain.post(chain.keys[1], "c1", [text(seq, f"a{seq}")])
        for done in range(0, depth, MINE_PER_CALL):
            chain.mine(min(MINE_PER_CALL, depth - done))
        w = World(chain, chain, b"")
        while w.devnet.head < chain.height():
            w.devnet.refresh()
        yield w
    finally:
        if w is not None:
            w.stop()
        real.stop()


@pytest.fixture(scope="module")
def deep_world() -> Iterator[World]:
    with posts_below(4, HISTORY_DEPTH) as w:
        yield w


@pytest.mark.parametrize("level", [Level.FINAL, Level.COMPLETE])
def test_old_posts_are_proven_by_one_history_proof_each_not_by_walking_headers(
    deep_world: World, tmp_path: Path, level: Level
) -> None:
    with deep_world.receiver(tmp_path, [deep_world.honest.url]) as receiver:
        anchor = receiver.anchor
        metered = anchor.endpoints = [MeteredEndpoint(ep) for ep in anchor.endpoints]
        delivered, problems = _split(list(receiver.poll(level)))
    assert problems == []
    assert [(d.payload, d.level, d.root) for d in delivered] == [
        (f"a{i}".encode(), level, "beacon-finalized") for i in range(4)
    ]
    depth = anchor.head(final=True).number - max(d.block_number for d in delivered)
    assert depth > HISTORY_DEPTH - BEACON_FINALITY_BLOCKS
    # the parent walk fetched `depth` headers; the history contract's storage needs one proof a
    # block asked about (one block a post), and no header
    calls = metered[0].calls
    assert calls.get("eth_getBlockByNumber", 0) == 0, calls
    assert 1 <= calls["eth_getProof"] <= len({d.block_number for d in delivered}) + 1, calls
