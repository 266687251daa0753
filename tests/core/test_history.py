"""lightpost_beacon.history: EIP-2935's slot, window and hop rules, and a history proof verified
against a state root (built with core.trie.make_proof, as an endpoint would answer)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightpost.core import rlp
from lightpost.core.hashing import EMPTY_KECCAK, keccak256
from lightpost.core.trie import Account, storage_key, trie_root
from lightpost.errors import LightpostError, ProofError
from lightpost_beacon.history import (
    HISTORY_SERVE_WINDOW,
    HISTORY_STORAGE_ADDRESS,
    HISTORY_STORAGE_CODE_HASH,
    MAX_HISTORY_HOPS,
    history_params,
    history_slot,
    hop_plan,
    in_window,
    verify_history_proof,
)
from tests.core.test_proofs import _fake_eth_get_proof

W = HISTORY_SERVE_WINDOW
MAX_HOPS = MAX_HISTORY_HOPS
EIP_BYTECODE = bytes.fromhex(
    "3373fffffffffffffffffffffffffffffffffffffffe14604657602036036042575f35600143038111604257"
    "611fff81430311604257611fff9006545f5260205ff35b5f5ffd5b5f35611fff60014303065500"
)
"""EIP-2935, "Bytecode" (the runtime code; the deployment input minus its 9-byte constructor)."""
EIP_SENDER = bytes.fromhex("3462413Af4609098e1E27A490f554f260213D685")
"""EIP-2935, "Deployment": the synthetic sender whose first contract is the history contract."""


def test_constants_are_the_eips() -> None:
    assert W == 8191
    assert keccak256(EIP_BYTECODE) == HISTORY_STORAGE_CODE_HASH
    assert keccak256(rlp.encode([EIP_SENDER, b""]))[12:] == HISTORY_STORAGE_ADDRESS


@pytest.mark.parametrize(
    ("number", "slot"), [(0, 0), (1, 1), (W - 1, W - 1), (W, 0), (W + 1, 1), (10 * W + 7, 7)]
)
def test_history_slot(number: int, slot: int) -> None:
    assert history_slot(number) == slot


def test_no_slot_for_a_negative_block() -> None:
    with pytest.raises(ProofError):
        history_slot(-1)


@pytest.mark.parametrize(
    ("state_block", "number", "inside"),
    [
        (100, 99, True),  # the parent: written at the start of block 100
        (100, 100, False),  # a block's own hash is never in its own state
        (100, 101, False),
        (W, 0, True),  # genesis, the window's oldest
        (W + 1, 0, False),  # overwritten by block W's hash
        (20_000, 20_000 - W, True),
        (20_000, 20_000 - W - 1, False),
    ],
)
def test_in_window(state_block: int, number: int, inside: bool) -> None:
    assert in_window(state_block, number) is inside


@pytest.mark.parametrize(
    ("state_block", "number", "plan"),
    [
        (100, 50, ((100, 50),)),
        (W + 100, 100, ((W + 100, 100),)),  # exactly a window
        (W + 101, 100, ((W + 101, 101), (101, 100))),  # one block more: one hop
        (20_000, 100, ((20_000, 11_809), (11_809, 3_618), (3_618, 100))),
        (MAX_HOPS * W, 0, tuple((k * W, k * W - W) for k in range(MAX_HOPS, 0, -1))),
    ],
)  # fmt: skip
def test_hop_plan(state_block: int, number: int, plan: tuple[tuple[int, int], ...]) -> None:
    assert hop_plan(state_block, number) == plan


@pytest.mark.parametrize(
    ("state_block", "number"), [(100, 100), (100, 101), (100, -1), (MAX_HISTORY_HOPS * W + 1, 0)]
)
def test_hop_plan_refuses(state_block: int, number: int) -> None:
    with pytest.raises(ProofError):
        hop_plan(state_block, number)


@given(st.integers(0, 10**7), st.integers(1, 40 * W))
def test_every_hop_is_in_its_window_and_the_plan_ends_at_the_block(number: int, depth: int) -> None:
    plan = hop_plan(number + depth, number)
    assert plan[0][0] == number + depth and plan[-1][1] == number
    assert all(in_window(state, target) for state, target in plan)
    assert all(a[1] == b[0] for a, b in pairwise(plan))


def test_params_name_the_slot_as_a_word() -> None:
    assert history_params(0x2405, W + 3) == [
        "0x0000f90827f1c53a10cb7a02335b175320002935",
        ["0x" + "00" * 31 + "03"],
        "0x2405",
    ]


# --- a history proof against a state root ---

HASH = keccak256(b"block 5")
STORAGE = {history_slot(5): int.from_bytes(HASH, "big"), history_slot(6): 7}


def _state(
    storage: dict[int, int] = STORAGE, code_hash: bytes = HISTORY_STORAGE_CODE_HASH
) -> dict[bytes, tuple[Account, dict[int, int]]]:
    root = trie_root({storage_key(s): rlp.encode(v) for s, v in storage.items() if v})
    history = Account(nonce=1, balance=0, storage_root=root, code_hash=code_hash)
    other = Account(nonce=3, balance=10**18, storage_root=trie_root({}), code_hash=EMPTY_KECCAK)
    return {HISTORY_STORAGE_ADDRESS: (history, storage), b"\x01" * 20: (other, {})}


def _answer(
    accounts: dict[bytes, tuple[Account, dict[int, int]]], number: int = 5
) -> tuple[bytes, dict[str, Any]]:
    return _fake_eth_get_proof(accounts, HISTORY_STORAGE_ADDRESS, [history_slot(number)])


def test_a_proven_slot_is_the_blocks_hash() -> None:
    root, answer = _answer(_state())
    assert verify_history_proof(root, answer, 5) == HASH


@pytest.mark.parametrize(
    ("accounts", "number"),
    [
        (_state(), 9),  # an empty slot: before the fork, or never written
        (_state(code_hash=keccak256(b"another contract")), 5),  # not the history contract
        ({b"\x01" * 20: _state()[b"\x01" * 20]}, 5),  # no contract at the address
    ],
    ids=["empty slot", "other code", "no contract"],
)
def test_proven_not_served(accounts: dict[bytes, Any], number: int) -> None:
    root, answer = _answer(accounts, number)
    assert verify_history_proof(root, answer, number) is None


def _lie(answer: dict[str, Any], how: str) -> dict[str, Any]:
    entry = answer["storageProof"][0]
    if how == "value":
        entry["value"] = hex(int(entry["value"], 16) ^ 1)
    elif how == "slot":
        entry["key"] = hex(history_slot(6))
    elif how == "account":
        answer["codeHash"] = "0x" + keccak256(b"x").hex()
    elif how == "address":
        answer["address"] = "0x" + "01" * 20
    elif how == "node":
        entry["proof"] = entry["proof"][:-1]
    return answer


@pytest.mark.parametrize("how", ["value", "slot", "account", "address", "node", "root"])
def test_a_forged_proof_is_refused(how: str) -> None:
    root, answer = _answer(_state())
    if how == "root":  # a self-consistent proof of another state
        _, answer = _answer(_state({history_slot(5): 1}))
    with pytest.raises(LightpostError):
        verify_history_proof(root, _lie(answer, how), 5)
