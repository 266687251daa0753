"""The sender on beacon trust (issue 15), without a socket: a sent transaction is `included` only in
the block hash the light client proved at its height and `final` only at or below the
beacon-finalized height (lightpost_beacon.sending.BeaconChain); RPC endpoints are data sources.

The light client is scripted (``Committee``: it signs the blocks of ``truth``); the RPC endpoints
serve ``truth`` (honest) or ``forged`` (two colluders of two: a self-consistent chain of their
own, holding the transaction the real chain never got). Under quorum trust the colluders ARE the
quorum and the message is confirmed final although it is on no real chain: that is the contrast,
inherent to quorum trust, not a failure.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lightpost.adapters.store import Store
from lightpost.core.outbox import State
from lightpost.core.verify import Problem, ProblemKind
from lightpost.errors import ChainProcessError, ProofError
from lightpost.node.chain import Chain
from lightpost.node.config import parse_config
from lightpost.node.receiver_channel import StopPoll
from lightpost.node.runtime import build_chain
from lightpost.node.sender import Sender
from lightpost_beacon.sending import BeaconChain, beacon_chain, problem_keys
from tests.node.fakechain import FakeEndpoint, FakeNet
from tests.node.test_chain_receipts import _signed
from tests.node.test_sender import T0, enqueue, make

BEACON_FINALITY = 6
"""Blocks the scripted committee's finalized header trails its signed head (the fake RPC
endpoints' own `finalized` tag trails by only 2: the test tells which one the sender used)."""


@dataclass
class Committee:
    """A scripted light client (the Anchor's surface BeaconChain uses) signing ``truth``:
    each :meth:`refresh` proves the head ``lag`` blocks behind and the finalized header
    BEACON_FINALITY below it; ``refusal`` makes the refresh fail as a lying beacon would."""

    truth: FakeNet
    trust: str = "beacon"
    lag: int = 0
    finality: int = BEACON_FINALITY
    refusal: Problem | None = None
    refreshes: int = 0
    blamed: list[Problem] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)
    final: int = -1
    ticks: Any = field(default_factory=lambda: itertools.count(0.0, 12.0))

    def __post_init__(self) -> None:
        self.client = SimpleNamespace(clock=lambda: next(self.ticks))
        self.settings = SimpleNamespace(config=SimpleNamespace(seconds_per_slot=12))

    def refresh(self, problems: list[Problem]) -> None:
        self.refreshes += 1
        if self.refusal is not None:
            raise StopPoll(self.refusal)
        head = max(0, self.truth.head - self.lag)
        self.hashes = [b.hash for b in self.truth.blocks[: head + 1]]
        self.final = max(0, head - self.finality)

    def head(self, *, final: bool) -> Any:
        return SimpleNamespace(number=self.final if final else len(self.hashes) - 1)

    def hash_at(self, number: int) -> bytes:
        if number >= len(self.hashes):
            raise ProofError("beacon anchor", f"block {number} is above the committee-signed head")
        return self.hashes[number]


def _beacon(eps: list[FakeEndpoint], committee: Committee, k: int | None = None) -> BeaconChain:
    return BeaconChain(eps, k or len(eps) // 2 + 1, anchor=committee)


def _sender(store: Store, eps: list[FakeEndpoint], chain: Chain | None) -> Sender:
    """test_sender's sender; ``chain``: the one build_chain makes on beacon trust."""
    sender = make(store, FakeNet(), endpoints=eps)
    if chain is None:
        return sender
    sender.close()
    return Sender(key=sender._key, store=store, chain=chain, settings=sender.settings)


def _drive(sender: Sender, nets: list[FakeNet], rounds: int, now: float = T0) -> float:
    for _ in range(rounds):
        sender.step(now)
        for net in nets:
            net.mine()
        now += 1
    return now


def _tx_state(store: Store) -> State:
    (tx,) = store.pending_transactions()
    return tx.state


# --- the ladder: which root marks a sent transaction included and final ----------------------

# (trust, the RPC endpoints' chain, the messages confirmed final)
LADDER = [
    ("beacon", "truth", True),
    ("both", "truth", True),
    ("beacon", "forged", False),
    ("both", "forged", False),
    # quorum: the two colluders are the quorum; the messages are confirmed on no real chain
    ("quorum", "forged", True),
]
IN_FLIGHT = (State.QUEUED, State.SIGNED, State.BROADCAST)


@pytest.mark.parametrize(("trust", "view", "final"), LADDER)
def test_two_colluding_endpoints_of_two_cannot_confirm_a_send_on_beacon_trust(
    tmp_path: Path, trust: str, view: str, final: bool
) -> None:
    truth, forged = FakeNet(), FakeNet(salt=1000)  # other block hashes at every height
    served = truth if view == "truth" else forged
    eps = [FakeEndpoint(f"rpc#{i}", served) for i in range(2)]
    committee = Committee(truth, trust=trust)
    with Store.open(tmp_path / "s.sqlite3") as store:
        sender = _sender(store, eps, None if trust == "quorum" else _beacon(eps, committee))
        enqueue(sender, 3)
        _drive(sender, [truth, forged], rounds=BEACON_FINALITY + 6)
        assert served.in_chain()  # mined where the endpoints serve it
        counts = {s: n for s, n in store.counts_by_state().items() if n}
        if final:
            assert counts == {State.FINAL: 3}
        else:  # still in flight (re-broadcast, re-sent), never confirmed, never dropped
            assert not truth.in_chain()
            assert sum(counts.get(s, 0) for s in IN_FLIGHT) == 3, counts


def test_final_waits_for_the_beacon_finalized_header_not_the_endpoints_tag(tmp_path: Path) -> None:
    truth = FakeNet()
    eps = [FakeEndpoint("rpc#0", truth)]
    committee = Committee(truth)
    with Store.open(tmp_path / "s.sqlite3") as store:
        sender = _sender(store, eps, _beacon(eps, committee))
        enqueue(sender, 1)
        now = _drive(sender, [truth], rounds=4)
        (tx,) = store.pending_transactions()
        assert tx.included is not None and eps[0]._height("finalized") >= tx.included.number
        assert tx.state is State.INCLUDED  # the endpoint's `finalized` tag already covers it
        assert tx.included is not None and tx.included.hash == committee.hash_at(tx.included.number)
        assert committee.final < tx.included.number
        _drive(sender, [truth], rounds=BEACON_FINALITY, now=now)
        assert committee.final >= tx.included.number
        assert store.transaction(tx.id).state is State.FINAL


def test_included_waits_for_the_committee_signed_head(tmp_path: Path) -> None:
    truth = FakeNet()
    eps = [FakeEndpoint("rpc#0", truth)]
    committee = Committee(truth, lag=50)  # the light client is far behind the endpoint
    with Store.open(tmp_path / "s.sqlite3") as store:
        sender = _sender(store, eps, _beacon(eps, committee))
        enqueue(sender, 1)
        now = _drive(sender, [truth], rounds=4)
        assert truth.in_chain()
        assert _tx_state(store) is State.BROADCAST  # mined, but above what is proven
        committee.lag = 0
        _drive(sender, [truth], rounds=2, now=now)
        assert _tx_state(store) is State.INCLUDED


def test_a_committee_reorg_of_an_optimistic_block_takes_inclusion_back(tmp_path: Path) -> None:
    truth = FakeNet()
    eps = [FakeEndpoint("rpc#0", truth)]
    committee = Committee(truth)
    with Store.open(tmp_path / "s.sqlite3") as store:
        sender = _sender(store, eps, _beacon(eps, committee))
        enqueue(sender, 1)
        now = _drive(sender, [truth], rounds=2)
        assert _tx_state(store) is State.INCLUDED
        truth.reorg(2)  # the signed head moves to a fork without the transaction
        _drive(sender, [], rounds=1, now=now)
        assert _tx_state(store) is State.BROADCAST


# --- the light client's own rules in the chain client ------------------------------------------

REFUSAL = Problem(kind=ProblemKind.PROOF_FAILURE, details="bad signature", endpoints=("beacon#0",))


@pytest.mark.parametrize(
    ("problems", "keys"),
    [
        ([], {}),
        ([REFUSAL], {"anchor beacon#0": "bad signature"}),
        (
            [Problem(kind=ProblemKind.PROOF_FAILURE, details="x", endpoints=("rpc#0", "rpc#1"))],
            {"anchor rpc#0": "x", "anchor rpc#1": "x"},
        ),
        ([Problem(kind=ProblemKind.PROOF_FAILURE, details="not synced")], {"anchor": "not synced"}),
    ],
)
def test_problem_keys(problems: list[Problem], keys: dict[str, str]) -> None:
    assert problem_keys(problems) == keys


def test_a_refused_sync_is_reported_keeps_the_last_proven_state_and_clears() -> None:
    truth = FakeNet()
    truth.mine(10)
    committee = Committee(truth)
    chain = _beacon([FakeEndpoint("rpc#0", truth)], committee)
    problems: dict[str, str] = {}
    chain.begin_round(problems)
    assert problems == {} and chain.final_height() == 10 - BEACON_FINALITY
    committee.refusal = REFUSAL
    truth.mine(3)
    chain.begin_round(problems)
    assert problems == {"anchor beacon#0": "bad signature"}
    assert chain.final_height() == 10 - BEACON_FINALITY  # nothing newer proven
    with pytest.raises(ProofError):
        chain.block_hash_at(12)  # mined, not signed
    committee.refusal = None
    chain.begin_round(problems)
    assert problems == {} and chain.block_hash_at(12) == truth.blocks[12].hash


def test_the_light_client_syncs_at_most_once_a_slot() -> None:
    committee = Committee(FakeNet(), ticks=iter([0.0, 5.0, 11.9, 12.0, 30.0]))
    chain = _beacon([FakeEndpoint("rpc#0", committee.truth)], committee)
    for _ in range(5):
        chain.begin_round({})
    assert committee.refreshes == 3  # at 0, 12 and 30 s


def test_a_question_before_any_round_syncs_first() -> None:
    truth = FakeNet()
    truth.mine(8)
    committee = Committee(truth)
    chain = _beacon([FakeEndpoint("rpc#0", truth)], committee)
    assert chain.finalized() == (2, truth.blocks[2].hash)
    assert committee.refreshes == 1


@pytest.mark.parametrize(
    ("trust", "quorum_view", "expected"),
    [
        ("beacon", "forged", "proven"),  # the quorum is not asked
        ("both", "truth", "proven"),
        ("both", "forged", ProofError),
    ],
)
def test_the_hash_a_receipt_is_proven_in(trust: str, quorum_view: str, expected: Any) -> None:
    truth, forged = FakeNet(), FakeNet(salt=1000)
    truth.mine(5)
    forged.mine(5)
    served = truth if quorum_view == "truth" else forged
    chain = _beacon([FakeEndpoint(f"rpc#{i}", served) for i in range(2)], Committee(truth, trust))
    if expected is ProofError:
        with pytest.raises(ProofError, match="not the beacon-proven one"):
            chain.block_hash_at(3)
    else:
        assert chain.block_hash_at(3) == truth.blocks[3].hash


@pytest.mark.parametrize(
    ("trust", "finality", "final"),
    [("beacon", 0, 14), ("beacon", BEACON_FINALITY, 8), ("both", 0, 12), ("both", 6, 8)],
)
def test_the_finalized_height(trust: str, finality: int, final: int) -> None:
    """beacon: the committee's (the endpoints' `finalized` tag, 12 here, is not read); both: the
    lower of the two."""
    truth = FakeNet()
    truth.mine(14)
    eps = [FakeEndpoint("rpc#0", truth)]
    chain = _beacon(eps, Committee(truth, trust=trust, finality=finality))
    assert chain.final_height() == final
    assert ("eth_getBlockByNumber" in eps[0].calls) is (trust == "both")


def test_wait_receipt_under_beacon_trust_refuses_a_forged_inclusion() -> None:
    truth, forged = FakeNet(), FakeNet(salt=1000)
    signed = _signed(0)
    eps = [FakeEndpoint(f"rpc#{i}", forged) for i in range(2)]
    forged.submit("rpc#0", signed.raw)
    forged.mine(3)
    truth.mine(3)
    assert forged.receipt(signed.hash) is not None
    assert Chain(eps, quorum=2).confirmed_receipt(signed.hash) is not None  # quorum: the contrast
    chain = _beacon(eps, Committee(truth))
    with pytest.raises(ChainProcessError, match="not mined"):
        chain.wait_receipt(signed.hash, timeout=0.0, sleep=lambda _s: None)
    # the real chain gets it: proven against the committee's hash
    truth.submit("rpc#0", signed.raw)
    truth.mine()
    honest = _beacon([FakeEndpoint("rpc#0", truth)], Committee(truth))
    receipt = honest.wait_receipt(signed.hash, timeout=0.0, sleep=lambda _s: None)
    assert receipt["blockHash"] == "0x" + truth.blocks[4].hash.hex()


def test_build_chain_rests_on_the_light_client_when_the_config_has_a_beacon_table(
    tmp_path: Path,
) -> None:
    raw: dict[str, Any] = {
        "chain_id": 31337,
        "endpoints": ["http://127.0.0.1:1"],
        "keystore": "k.json",
        "data_dir": "data",
        "inbox": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    }
    chain = build_chain(parse_config(raw, path=tmp_path / "q.toml"))
    assert type(chain) is Chain
    chain.close()
    for trust in ("beacon", "both"):
        beacon = {"endpoints": ["http://127.0.0.1:2"], "trusted_root": "0x" + "ab" * 32}
        config = parse_config({**raw, "trust": trust, "beacon": beacon}, path=tmp_path / "b.toml")
        chain = build_chain(config)
        assert isinstance(chain, BeaconChain) and chain.anchor.trust == trust
        assert chain.anchor.endpoints == list(chain.endpoints)
        chain.close()
    again = beacon_chain(config, chain.endpoints)
    assert isinstance(again, BeaconChain) and again.anchor.trust == "both"
    again.close()
