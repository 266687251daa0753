"""lightpost_beacon.anchor's EIP-2935 path without a socket: a block below a proven head costs one
eth_getProof of the history contract's slot a window (8,191 blocks), not a header per block;
deeper ones hop window by window on a node with old state and fall back to a bounded parent walk
on one without; a forged proof or hop header is named and an honest endpoint used.

The scripted chain has real headers (each hashes to the hash its child names) and, at the blocks
whose state is read, a real state trie holding the history contract with the hashes the tests ask
about (the other slots are left out: nothing reads them)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lightpost.core import rlp
from lightpost.core.hashing import EMPTY_KECCAK, keccak256
from lightpost.core.header import HEADER_FIELDS, BlockHeader, header_hash
from lightpost.core.trie import Account, encode_account, storage_key, trie_root
from lightpost.core.verify import Problem
from lightpost.errors import EndpointUnavailable
from lightpost.node.receiver_channel import StopPoll
from lightpost_beacon.anchor import FINALIZED, OPTIMISTIC, Anchor, Proven
from lightpost_beacon.history import (
    HISTORY_SERVE_WINDOW,
    HISTORY_STORAGE_ADDRESS,
    HISTORY_STORAGE_CODE_HASH,
    history_slot,
)
from lightpost_beacon.lightclient import MAX_PARENT_WALK
from tests.adapters.test_beacon_anchor import make
from tests.core.test_proofs import _fake_eth_get_proof

W = HISTORY_SERVE_WINDOW
FINAL = 2 * W + 500
HEAD = FINAL + 10
HOP1, HOP2 = FINAL - W, FINAL - 2 * W
ASKED = {100, 101, FINAL - 5000, FINAL - 20, HOP1, HOP1 - 300, HOP2, HOP2 - 100}
"""Blocks whose hashes the state tries hold (and the hops'), at every state block below."""
STATE_BLOCKS = (HOP2, HOP1, FINAL, HEAD)


def _header(number: int, parent: bytes, state_root: bytes) -> BlockHeader:
    return BlockHeader(
        parent_hash=parent, ommers_hash=keccak256(b"\xc0"), coinbase=bytes(20),
        state_root=state_root, transactions_root=trie_root({}), receipts_root=trie_root({}),
        logs_bloom=bytes(256), difficulty=0, number=number, gas_limit=30_000_000, gas_used=0,
        timestamp=1_700_000_000 + 12 * number, extra_data=b"", mix_hash=bytes(32),
        nonce=bytes(8), base_fee_per_gas=7,
    )  # fmt: skip


class HistoryChain:
    """Headers 0..HEAD; at STATE_BLOCKS a state with the history contract (``history=False``: a
    chain without EIP-2935, its slots empty)."""

    def __init__(self, *, history: bool = True) -> None:
        self.headers: list[BlockHeader] = []
        self.hashes: list[bytes] = []
        self.states: dict[int, dict[bytes, tuple[Account, dict[int, int]]]] = {}
        for n in range(HEAD + 1):
            state_root = keccak256(b"state %d" % n)
            if n in STATE_BLOCKS:
                storage = {
                    history_slot(m): int.from_bytes(self.hashes[m], "big")
                    for m in ASKED
                    if 1 <= n - m <= W and history
                }
                root = trie_root({storage_key(s): rlp.encode(v) for s, v in storage.items()})
                contract = Account(
                    nonce=1, balance=0, storage_root=root, code_hash=HISTORY_STORAGE_CODE_HASH
                )
                eoa = Account(
                    nonce=n, balance=1, storage_root=trie_root({}), code_hash=EMPTY_KECCAK
                )
                self.states[n] = {
                    HISTORY_STORAGE_ADDRESS: (contract, storage),
                    b"\x02" * 20: (eoa, {}),
                }
                state_root = trie_root(
                    {keccak256(a): encode_account(acc) for a, (acc, _) in self.states[n].items()}
                )
            parent = self.hashes[-1] if self.hashes else bytes(32)
            self.headers.append(_header(n, parent, state_root))
            self.hashes.append(header_hash(self.headers[-1]))


CHAIN = HistoryChain()


class Rpc:
    """An endpoint over ``chain``; ``old_state``: serves eth_getProof below the final block too
    (an archive node); ``lie`` rewrites (method, block, answer) -> answer."""

    def __init__(
        self,
        label: str,
        chain: HistoryChain = CHAIN,
        *,
        old_state: bool = True,
        lie: Callable[[str, int, Any], Any] | None = None,
    ) -> None:
        self.label, self.chain, self.old_state, self.lie = label, chain, old_state, lie
        self.asked: Counter[str] = Counter()

    def call(self, method: str, params: list[Any]) -> Any:
        self.asked[method] += 1
        if method == "eth_getBlockByNumber":
            number = int(params[0], 16)
            header = self.chain.headers[number]
            answer: Any = {
                spec.rpc_name: hex(v) if spec.shape == "int" else "0x" + v.hex()
                for spec in HEADER_FIELDS
                if (v := getattr(header, spec.attr)) is not None
            }
            answer["hash"] = "0x" + self.chain.hashes[number].hex()
        else:
            assert method == "eth_getProof"
            address, slots, block = params
            number = int(block, 16)
            if number not in self.chain.states or (number < FINAL and not self.old_state):
                raise EndpointUnavailable(self.label, "missing trie node")
            assert bytes.fromhex(address[2:]) == HISTORY_STORAGE_ADDRESS
            _, answer = _fake_eth_get_proof(
                self.chain.states[number], HISTORY_STORAGE_ADDRESS, [int(s, 16) for s in slots]
            )
        return self.lie(method, number, answer) if self.lie else answer


def anchor(tmp_path: Path, rpcs: list[Rpc], chain: HistoryChain = CHAIN) -> Anchor:
    """An anchor whose light client proved ``chain``'s FINAL and HEAD (hash and state root)."""
    a = make(tmp_path, rpcs)
    a._final = Proven(FINAL, chain.hashes[FINAL], chain.headers[FINAL].state_root, 0, FINALIZED)
    a._optimistic = Proven(HEAD, chain.hashes[HEAD], chain.headers[HEAD].state_root, 0, OPTIMISTIC)
    a._known = {FINALIZED: {FINAL: chain.hashes[FINAL]}, OPTIMISTIC: {HEAD: chain.hashes[HEAD]}}
    a._states = {
        FINALIZED: {FINAL: chain.headers[FINAL].state_root},
        OPTIMISTIC: {HEAD: chain.headers[HEAD].state_root},
    }
    return a


def test_a_block_in_the_window_costs_one_proof_and_no_header(tmp_path: Path) -> None:
    rpc = Rpc("rpc#0")
    a = anchor(tmp_path, [rpc])
    assert a.hash_at(FINAL - 5000) == CHAIN.hashes[FINAL - 5000]
    assert rpc.asked == {"eth_getProof": 1}  # the walk took 5,000 headers
    assert a.hash_at(FINAL - 5000) == CHAIN.hashes[FINAL - 5000]  # remembered
    assert a.hash_at(FINAL - 5002) == CHAIN.hashes[FINAL - 5002]  # 2 headers: walked
    assert rpc.asked == {"eth_getProof": 1, "eth_getBlockByNumber": 2}
    assert a.root(FINAL - 5000) == FINALIZED


def test_deeper_blocks_hop_window_by_window_on_an_archive_node(tmp_path: Path) -> None:
    rpc = Rpc("rpc#0")
    a = anchor(tmp_path, [rpc])
    assert a.hash_at(100) == CHAIN.hashes[100]
    # FINAL proves HOP1, HOP1's header gives its state, which proves HOP2, whose proves 100
    assert rpc.asked == {"eth_getProof": 3, "eth_getBlockByNumber": 2}
    assert a.hash_at(HOP1 - 300) == CHAIN.hashes[HOP1 - 300]  # from HOP1's state, remembered
    assert rpc.asked == {"eth_getProof": 4, "eth_getBlockByNumber": 2}


def test_without_old_state_the_walk_takes_over_bounded(tmp_path: Path) -> None:
    rpc = Rpc("rpc#0", old_state=False)  # a full node: recent state only
    a = anchor(tmp_path, [rpc])
    problems: list[Problem] = []
    side = a.side(HOP1 - 300, problems, lambda n, p: pytest.fail("beacon trust asks no quorum"))
    assert side.hash == CHAIN.hashes[HOP1 - 300] and problems == []
    # HOP1 from FINAL's state and its header, then 300 headers walked (HOP1's state not served)
    assert rpc.asked == {"eth_getProof": 2, "eth_getBlockByNumber": 1 + 300}
    # two windows down: HOP1's state is needed, and the walk from HOP1 is too long
    a = anchor(tmp_path, [Rpc("rpc#0", old_state=False)])
    with pytest.raises(StopPoll, match=f"more than {MAX_PARENT_WALK} blocks below a proven header"):
        a.side(HOP2 - 100, [], lambda n, p: pytest.fail("not asked"))


def test_a_chain_without_history_is_walked_and_nobody_blamed(tmp_path: Path) -> None:
    chain = HistoryChain(history=False)
    rpc = Rpc("rpc#0", chain)
    a = anchor(tmp_path, [rpc], chain)
    problems: list[Problem] = []
    assert (
        a.side(FINAL - 20, problems, lambda n, p: pytest.fail("no quorum")).hash
        == (chain.hashes[FINAL - 20])
    )
    assert problems == []
    assert rpc.asked == {"eth_getProof": 1, "eth_getBlockByNumber": 20}


def _forge_value(method: str, number: int, answer: Any) -> Any:
    if method == "eth_getProof":
        entry = answer["storageProof"][0]
        entry["value"] = hex(int(entry["value"], 16) ^ 1)
    return answer


def _forge_hop_header(method: str, number: int, answer: Any) -> Any:
    if method == "eth_getBlockByNumber":
        answer["stateRoot"] = "0x" + keccak256(b"forged").hex()
    return answer


@pytest.mark.parametrize("lie", [_forge_value, _forge_hop_header], ids=lambda f: f.__name__)
def test_a_forged_proof_or_hop_is_named_and_an_honest_endpoint_used(
    tmp_path: Path, lie: Callable[[str, int, Any], Any]
) -> None:
    liar, honest = Rpc("rpc#0", lie=lie), Rpc("rpc#1")
    a = anchor(tmp_path, [liar, honest])
    problems: list[Problem] = []
    side = a.side(100, problems, lambda n, p: pytest.fail("no quorum"))
    assert side.hash == CHAIN.hashes[100]
    assert problems and {p.endpoints for p in problems} == {("rpc#0",)}
    assert all(p.kind == "proof-failure" for p in problems)


def _forge_all(method: str, number: int, answer: Any) -> Any:
    answer = _forge_value(method, number, answer)
    if method == "eth_getBlockByNumber":
        answer["hash"] = "0x" + keccak256(b"forged").hex()
    return answer


def test_forged_proofs_fall_back_to_walking_and_only_forgers_stop_the_poll(tmp_path: Path) -> None:
    rpcs = [Rpc("rpc#0", lie=_forge_value), Rpc("rpc#1", lie=_forge_value)]
    problems: list[Problem] = []
    side = anchor(tmp_path, rpcs).side(FINAL - 50, problems, lambda n, p: pytest.fail("no quorum"))
    assert side.hash == CHAIN.hashes[FINAL - 50]  # their headers are on the proven chain
    assert {p.endpoints for p in problems} == {("rpc#0",), ("rpc#1",)}
    a = anchor(tmp_path, [Rpc("rpc#0", lie=_forge_all), Rpc("rpc#1", lie=_forge_all)])
    with pytest.raises(StopPoll) as stop:
        a.side(FINAL - 5000, [], lambda n, p: pytest.fail("not asked"))
    assert stop.value.problem.endpoints == ("rpc#0", "rpc#1")
    assert stop.value.problem.block_number == FINAL - 5000
