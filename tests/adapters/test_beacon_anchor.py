"""lightpost_beacon.anchor without a socket: proven hashes below a proven head are walked back
through parent hashes from scripted RPC endpoints that serve no old state (any one on the proven
chain is enough, every other is named), bounded, and never above the committee-signed head; trust
= both needs both. The EIP-2935 history path: test_beacon_history."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from lightpost.core.header import BlockHeader
from lightpost.core.verify import Problem
from lightpost.errors import EndpointUnavailable
from lightpost.node.config import parse_config
from lightpost.node.receiver_channel import Side, StopPoll
from lightpost_beacon import anchor as anchor_module
from lightpost_beacon.anchor import FINALIZED, OPTIMISTIC, Anchor, Proven
from tests.node.fakechain import Block, block_json

HEAD = 40
FINAL = 30


@dataclass
class Linked(Block):
    parent: bytes = bytes(32)

    def header(self) -> BlockHeader:
        return replace(super().header(), parent_hash=self.parent)


def chain(salt: int) -> list[Linked]:
    blocks: list[Linked] = []
    for n in range(HEAD + 1):
        parent = blocks[-1].hash if blocks else bytes(32)
        blocks.append(Linked(number=n, salt=salt * 1000 + n, base_fee=1, txs=[], parent=parent))
    return blocks


REAL, FORGED = chain(1), chain(2)


class Rpc:
    def __init__(self, label: str, blocks: list[Linked]) -> None:
        self.label, self.blocks, self.asked = label, blocks, 0

    def call(self, method: str, params: list[Any]) -> Any:
        if method == "eth_getProof":  # a node without old state (history: test_beacon_history)
            raise EndpointUnavailable(self.label, "state not available")
        assert method == "eth_getBlockByNumber"
        self.asked += 1
        return block_json(self.blocks[int(params[0], 16)])


def make(tmp_path: Path, rpcs: list[Rpc], trust: str = "beacon") -> Anchor:
    raw = {
        "chain_id": 31337,
        "endpoints": ["http://127.0.0.1:1"],
        "keystore": "k.json",
        "data_dir": "data",
        "inbox": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "trust": trust,
        "beacon": {"endpoints": ["http://127.0.0.1:2"], "trusted_root": "0x" + "ab" * 32},
    }
    config = parse_config(raw, path=tmp_path / "d.toml")
    a = Anchor(config, rpcs, sources=[], bls=object())
    # as a sync would leave it: the light client proved REAL's blocks FINAL and HEAD
    a._final = Proven(FINAL, REAL[FINAL].hash, bytes(32), 0, FINALIZED)
    a._optimistic = Proven(HEAD, REAL[HEAD].hash, bytes(32), 0, OPTIMISTIC)
    a._known = {FINALIZED: {FINAL: REAL[FINAL].hash}, OPTIMISTIC: {HEAD: REAL[HEAD].hash}}
    a._states = {FINALIZED: {FINAL: bytes(32)}, OPTIMISTIC: {HEAD: bytes(32)}}
    return a


def test_blocks_below_a_proven_head_are_walked_back_and_remembered(tmp_path: Path) -> None:
    rpc = Rpc("rpc#0", REAL)
    a = make(tmp_path, [rpc])
    assert a.hash_at(20) == REAL[20].hash
    assert rpc.asked == FINAL - 20
    assert a.hash_at(25) == REAL[25].hash and a.hash_at(19) == REAL[19].hash
    assert rpc.asked == FINAL - 19  # 25 was remembered; 19 costs one header
    assert a.hash_at(35) == REAL[35].hash  # under the optimistic header
    assert (a.root(20), a.root(35)) == (FINALIZED, OPTIMISTIC)


def test_a_forged_chain_is_refused_and_named_an_honest_one_used(tmp_path: Path) -> None:
    liar, honest = Rpc("rpc#0", FORGED), Rpc("rpc#1", REAL)
    a = make(tmp_path, [liar, honest])
    problems: list[Problem] = []
    side = a.side(10, problems, lambda n, p: pytest.fail("beacon trust asks no quorum"))
    assert side == Side(10, REAL[10].hash, frozenset({"rpc#0", "rpc#1"}), frozenset())
    assert problems and {p.endpoints for p in problems} == {("rpc#0",)}
    assert all("not on the proven chain" in p.details for p in problems)


def test_only_forgers_stop_the_poll_naming_them(tmp_path: Path) -> None:
    a = make(tmp_path, [Rpc("rpc#0", FORGED), Rpc("rpc#1", FORGED)])
    with pytest.raises(StopPoll) as stop:
        a.side(10, [], lambda n, p: pytest.fail("not asked"))
    assert stop.value.problem.endpoints == ("rpc#0", "rpc#1")
    assert "no endpoint proved block 30 of the proven chain" in stop.value.problem.details


def test_nothing_above_the_signed_head_and_the_walk_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = make(tmp_path, [Rpc("rpc#0", REAL)])
    with pytest.raises(StopPoll, match="above the committee-signed head 40"):
        a.side(HEAD + 1, [], lambda n, p: pytest.fail("not asked"))
    monkeypatch.setattr(anchor_module, "MAX_PARENT_WALK", 5)
    with pytest.raises(StopPoll, match="more than 5 blocks below a proven header"):
        a.side(FINAL - 6, [], lambda n, p: pytest.fail("not asked"))


def test_trust_both_needs_the_quorum_and_the_beacon_to_agree(tmp_path: Path) -> None:
    a = make(tmp_path, [Rpc("rpc#0", REAL)], trust="both")
    agreed = Side(FINAL, REAL[FINAL].hash, frozenset({"rpc#0"}), frozenset())
    assert a.side(FINAL, [], lambda n, p: agreed) == agreed
    assert a.height(True, lambda: FINAL - 3) == FINAL - 3  # the lower of the two
    assert a.root(FINAL) == "beacon-finalized+quorum"
    forged = Side(FINAL, FORGED[FINAL].hash, frozenset({"rpc#0"}), frozenset())
    with pytest.raises(StopPoll, match="the quorum's hash is not the beacon-proven one"):
        a.side(FINAL, [], lambda n, p: forged)
