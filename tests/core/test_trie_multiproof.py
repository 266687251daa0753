"""Proofs of many keys of one trie (one eth_getProof with thousands of storage keys):
each distinct node is hashed and decoded once, and every check still holds."""

from __future__ import annotations

import pytest

from lightpost.core import rlp, trie
from lightpost.core.trie import make_proof, trie_root, verify_proof
from lightpost.errors import ProofError

ITEMS = {bytes([i, i * 7 % 256]) * 16: rlp.encode(i + 1) for i in range(200)}
ROOT = trie_root(ITEMS)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    hashed: list[bytes] = []
    real = trie.keccak256

    def keccak(data: bytes) -> bytes:
        hashed.append(data)
        return real(data)

    monkeypatch.setattr(trie, "keccak256", keccak)
    return hashed


def test_shared_nodes_are_hashed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    proofs = {key: make_proof(ITEMS, key) for key in ITEMS}
    distinct = {node for proof in proofs.values() for node in proof}
    total = sum(len(proof) for proof in proofs.values())
    assert total > 2 * len(distinct)  # the keys share their upper nodes
    hashed = _counting(monkeypatch)
    known: trie.Known = {}
    for key, proof in proofs.items():
        assert verify_proof(ROOT, key, proof, known=known) == ITEMS[key]
    assert len(hashed) == len(distinct)  # the landed code hashed every node of every proof


def test_a_node_that_differs_from_a_known_one_is_still_checked() -> None:
    keys = list(ITEMS)
    known: trie.Known = {}
    assert verify_proof(ROOT, keys[0], make_proof(ITEMS, keys[0]), known=known) == ITEMS[keys[0]]
    forged = make_proof(ITEMS, keys[1])
    forged[0] = forged[0][:-1] + bytes([forged[0][-1] ^ 1])  # the shared root node, altered
    with pytest.raises(ProofError, match="does not match its hash"):
        verify_proof(ROOT, keys[1], forged, known=known)
    # nor does a known node stand in where the proof puts another node
    with pytest.raises(ProofError):
        verify_proof(ROOT, keys[1], make_proof(ITEMS, keys[0]), known=known)
