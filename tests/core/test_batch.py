"""Merkle batches: the tree shape as a table, a cross-check against an independent recursive
(RFC 6962-style split) implementation, strict proof verification, and hypothesis."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core.hashing import keccak256
from lightpost.errors import ProofError
from lightpost_gateway.batch import (
    LEAF_PREFIX,
    NODE_PREFIX,
    ROOT_PREFIX,
    InclusionProof,
    Leaf,
    batch_root,
    leaf_hash,
    node_hash,
    proof_shape,
    prove_inclusion,
    verify_inclusion,
)


def _leaf(i: int, first: int = 0, last: int = 0) -> Leaf:
    return Leaf(
        device=i.to_bytes(20, "big"), first_seq=first, last_seq=last, head=keccak256(bytes([i]))
    )


def _root(count: int, top: bytes) -> bytes:
    return keccak256(ROOT_PREFIX + count.to_bytes(4, "big") + top)


def _reference_top(hashes: list[bytes]) -> bytes:
    """Independent: split at the largest power of two below n (RFC 6962 section 2.1), which is
    the tree that pairing bottom-up with the odd node promoted must give."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return keccak256(NODE_PREFIX + _reference_top(hashes[:k]) + _reference_top(hashes[k:]))


def test_leaf_preimage_is_as_documented() -> None:
    leaf = Leaf(device=b"\xaa" * 20, first_seq=3, last_seq=7, head=b"\xbb" * 32)
    preimage = LEAF_PREFIX + b"\xaa" * 20 + (3).to_bytes(8, "big") + (7).to_bytes(8, "big")
    assert leaf_hash(leaf) == keccak256(preimage + b"\xbb" * 32)


# n -> the top of the tree over leaf hashes h[0..n-1], spelled out by hand
_N = node_hash
_SHAPES = {
    1: lambda h: h[0],
    2: lambda h: _N(h[0], h[1]),
    3: lambda h: _N(_N(h[0], h[1]), h[2]),  # h[2] promoted, never paired with itself
    4: lambda h: _N(_N(h[0], h[1]), _N(h[2], h[3])),
    5: lambda h: _N(_N(_N(h[0], h[1]), _N(h[2], h[3])), h[4]),
    6: lambda h: _N(_N(_N(h[0], h[1]), _N(h[2], h[3])), _N(h[4], h[5])),
    7: lambda h: _N(_N(_N(h[0], h[1]), _N(h[2], h[3])), _N(_N(h[4], h[5]), h[6])),
}


@pytest.mark.parametrize("n", sorted(_SHAPES))
def test_tree_shape_table(n: int) -> None:
    leaves = [_leaf(i) for i in range(n)]
    hashes = [leaf_hash(x) for x in leaves]
    assert batch_root(leaves) == _root(n, _SHAPES[n](hashes))


@pytest.mark.parametrize(
    ("index", "count", "shape"),
    [
        (0, 1, ()),
        (0, 2, (False,)),
        (1, 2, (True,)),
        (2, 3, (None, True)),  # promoted at level 0, then the right child
        (4, 5, (None, None, True)),
        (3, 4, (True, True)),
        (6, 7, (None, True, True)),
    ],
)
def test_proof_shape_table(index: int, count: int, shape: tuple[bool | None, ...]) -> None:
    assert proof_shape(index, count) == shape


def test_odd_node_is_promoted_not_duplicated() -> None:
    a, b, c = (_leaf(i) for i in range(3))
    hashes = [leaf_hash(x) for x in (a, b, c)]
    duplicated = _N(_N(hashes[0], hashes[1]), _N(hashes[2], hashes[2]))
    assert batch_root([a, b, c]) != _root(3, duplicated)
    assert batch_root([a, b, c]) == _root(3, _N(_N(hashes[0], hashes[1]), hashes[2]))


@pytest.mark.parametrize(
    "leaves",
    [
        [],
        [_leaf(2), _leaf(1)],  # unsorted
        [_leaf(1), _leaf(1, 1, 1)],  # one device twice
    ],
)
def test_batch_refuses_non_canonical_leaves(leaves: list[Leaf]) -> None:
    with pytest.raises(ValueError):
        batch_root(leaves)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"device": b"\x01" * 19},
        {"head": b"\x01" * 31},
        {"first_seq": 5, "last_seq": 4},
        {"first_seq": -1},
        {"last_seq": 1 << 64},
    ],
)
def test_leaf_bounds(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "device": b"\x01" * 20,
        "first_seq": 0,
        "last_seq": 0,
        "head": b"\x02" * 32,
    }
    with pytest.raises(ValueError):
        Leaf(**{**base, **kwargs})  # type: ignore[arg-type]


def test_an_inner_node_does_not_pass_as_a_leaf() -> None:
    # a two-leaf tree's top is a node hash; no leaf hashes to it (prefixes and lengths differ)
    leaves = [_leaf(1), _leaf(2)]
    root = batch_root(leaves)
    assert _root(1, node_hash(leaf_hash(leaves[0]), leaf_hash(leaves[1]))) != root
    forged = InclusionProof(index=0, count=1, siblings=())
    with pytest.raises(ProofError):
        verify_inclusion(root, leaves[0], forged)


def _tampered(proof: InclusionProof) -> list[InclusionProof]:
    out = [
        dataclasses.replace(proof, index=(proof.index + 1) % proof.count),
        dataclasses.replace(proof, count=proof.count + 1),
        dataclasses.replace(proof, siblings=(*proof.siblings, b"\x00" * 32)),
        dataclasses.replace(proof, index=proof.count),  # out of range
    ]
    if proof.siblings:
        out.append(dataclasses.replace(proof, siblings=proof.siblings[:-1]))
        flipped = bytes([proof.siblings[0][0] ^ 1]) + proof.siblings[0][1:]
        out.append(dataclasses.replace(proof, siblings=(flipped, *proof.siblings[1:])))
        out.append(dataclasses.replace(proof, siblings=(b"\x00" * 31, *proof.siblings[1:])))
    return [p for p in out if p != proof]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=70),
    pick=st.integers(min_value=0),
    first=st.integers(min_value=0, max_value=1 << 40),
    span=st.integers(min_value=0, max_value=1000),
)
def test_every_proof_verifies_and_every_alteration_fails(
    n: int, pick: int, first: int, span: int
) -> None:
    leaves = [_leaf(i, first, first + span) for i in range(n)]
    root = batch_root(leaves)
    assert root == _root(n, _reference_top([leaf_hash(x) for x in leaves]))
    index = pick % n
    proof = prove_inclusion(leaves, index)
    verify_inclusion(root, leaves[index], proof)
    for bad in _tampered(proof):
        with pytest.raises(ProofError):
            verify_inclusion(root, leaves[index], bad)
    leaf = leaves[index]
    for altered in (
        dataclasses.replace(leaf, last_seq=leaf.last_seq + 1),
        dataclasses.replace(leaf, first_seq=leaf.first_seq + 1)
        if leaf.first_seq < leaf.last_seq
        else dataclasses.replace(leaf, head=b"\x00" * 32),
        dataclasses.replace(leaf, head=keccak256(leaf.head)),
        dataclasses.replace(leaf, device=(n + 5).to_bytes(20, "big")),
    ):
        with pytest.raises(ProofError):
            verify_inclusion(root, altered, proof)
