"""Merkle batches of device records (issue 14, ``anchored`` mode). Pure.

A gateway batches the records it verified from many devices; one leaf per device says which
stretch of that device's hash chain the batch covers::

    leaf      = (device address, first seq, last seq, head hash)    head: hash of the record
                                                                     at last seq
    leaf_hash = keccak256(LEAF_PREFIX || address(20) || first(8) || last(8) || head(32))
    node_hash = keccak256(NODE_PREFIX || left(32) || right(32))
    root      = keccak256(ROOT_PREFIX || count(4) || top)

Rules, each one closing a known Merkle pitfall:

- Domain separation: leaf, node and root preimages start with distinct prefixes (and have
  distinct fixed lengths), so an inner node can never pass as a leaf (the second-preimage
  attack on unprefixed trees) and a root never as either.
- Odd-node rule: at a level of odd width the last node is *promoted* unchanged to the next
  level. It is never paired with itself, so ``[a, b, c]`` and ``[a, b, c, c]`` have different
  roots (Bitcoin's duplication rule made them equal: CVE-2012-2459).
- The leaf count is part of the root: a proof's shape (how many siblings, where the promoted
  levels are) follows from (index, count) alone, and :func:`verify_inclusion` refuses any other
  shape.
- Canonical order: leaves are sorted by device address, strictly -- one leaf per device per
  batch, so a batch cannot carry two different stretches of one device.

Only the chain's head hash is a leaf: the receiver proves the records first..last by the
device's hash chain from the head back (each ``prev`` links to the record before it), and the
head by this tree's inclusion proof against the root the anchoring contract recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from lightpost.core.hashing import keccak256
from lightpost.errors import ProofError

__all__ = [
    "LEAF_PREFIX",
    "MAX_BATCH_LEAVES",
    "NODE_PREFIX",
    "ROOT_PREFIX",
    "InclusionProof",
    "Leaf",
    "batch_root",
    "leaf_hash",
    "node_hash",
    "proof_shape",
    "prove_inclusion",
    "verify_inclusion",
]

LEAF_PREFIX = b"\x00lp-leaf"
"""First bytes of every leaf preimage (distinct from NODE_PREFIX and ROOT_PREFIX)."""

NODE_PREFIX = b"\x01lp-node"
"""First bytes of every inner-node preimage."""

ROOT_PREFIX = b"\x02lp-root"
"""First bytes of the root preimage (which binds the leaf count)."""

MAX_BATCH_LEAVES = 1 << 20
"""Most leaves (devices) in one batch: a proof has at most 20 siblings, so a peer's proof is
bounded before any hashing; a million devices per batch is far past the issue's 10,000."""

_SEQ_BYTES = 8
"""seq is below 2^64 (lightpost_gateway.record)."""

_COUNT_BYTES = 4
"""The leaf count in the root preimage (MAX_BATCH_LEAVES < 2^32)."""

_HASH = 32
_ADDRESS = 20


@dataclass(frozen=True, kw_only=True, slots=True)
class Leaf:
    """One device's stretch in a batch: records first_seq .. last_seq, ending in ``head``."""

    device: bytes
    first_seq: int
    last_seq: int
    head: bytes

    def __post_init__(self) -> None:
        if len(self.device) != _ADDRESS or len(self.head) != _HASH:
            raise ValueError("a leaf is a 20-byte address and a 32-byte head hash")
        if not 0 <= self.first_seq <= self.last_seq < 1 << (8 * _SEQ_BYTES):
            raise ValueError("a leaf needs 0 <= first_seq <= last_seq < 2^64")


@dataclass(frozen=True, kw_only=True, slots=True)
class InclusionProof:
    """Where a leaf sits (index of count) and its sibling hashes, bottom up."""

    index: int
    count: int
    siblings: tuple[bytes, ...]


def leaf_hash(leaf: Leaf) -> bytes:
    return keccak256(
        LEAF_PREFIX
        + leaf.device
        + leaf.first_seq.to_bytes(_SEQ_BYTES, "big")
        + leaf.last_seq.to_bytes(_SEQ_BYTES, "big")
        + leaf.head
    )


def node_hash(left: bytes, right: bytes) -> bytes:
    return keccak256(NODE_PREFIX + left + right)


def _root_of(count: int, top: bytes) -> bytes:
    return keccak256(ROOT_PREFIX + count.to_bytes(_COUNT_BYTES, "big") + top)


def _check_leaves(leaves: Sequence[Leaf]) -> None:
    if not 0 < len(leaves) <= MAX_BATCH_LEAVES:
        raise ValueError(f"a batch has 1 .. {MAX_BATCH_LEAVES} leaves")
    for a, b in pairwise(leaves):
        if a.device >= b.device:
            raise ValueError("leaves must be sorted by device address, one per device")


def _levels(leaves: Sequence[Leaf]) -> list[list[bytes]]:
    """Every level of the tree, leaves first, the single top last."""
    _check_leaves(leaves)
    level = [leaf_hash(leaf) for leaf in leaves]
    levels = [level]
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])  # the odd-node rule: promoted, never duplicated
        level = nxt
        levels.append(level)
    return levels


def batch_root(leaves: Sequence[Leaf]) -> bytes:
    """The root the anchoring contract records for a batch (leaves sorted, one per device)."""
    return _root_of(len(leaves), _levels(leaves)[-1][0])


def proof_shape(index: int, count: int) -> tuple[bool | None, ...]:
    """Per level, bottom up: whether the node is the right child (sibling on the left), False
    for left, None when it is promoted without a sibling. Determined by (index, count) alone."""
    if not 0 <= index < count <= MAX_BATCH_LEAVES:
        raise ValueError("index must be in [0, count) and count in [1, MAX_BATCH_LEAVES]")
    shape: list[bool | None] = []
    width = count
    while width > 1:
        if index % 2 == 0 and index == width - 1:
            shape.append(None)
        else:
            shape.append(index % 2 == 1)
        index //= 2
        width = (width + 1) // 2
    return tuple(shape)


def prove_inclusion(leaves: Sequence[Leaf], index: int) -> InclusionProof:
    """The inclusion proof of ``leaves[index]``."""
    levels = _levels(leaves)
    siblings = []
    i = index
    for level, step in zip(levels, proof_shape(index, len(leaves)), strict=False):
        if step is not None:
            siblings.append(level[i ^ 1])
        i //= 2
    return InclusionProof(index=index, count=len(leaves), siblings=tuple(siblings))


def verify_inclusion(root: bytes, leaf: Leaf, proof: InclusionProof) -> None:
    """Strict: the proof's shape must be exactly the one (index, count) dictates, every
    sibling 32 bytes, and the recomputed root equal ``root``. Raises ProofError otherwise."""
    try:
        shape = proof_shape(proof.index, proof.count)
    except ValueError as exc:
        raise ProofError("batch", str(exc)) from None
    needed = sum(step is not None for step in shape)
    if len(proof.siblings) != needed:
        raise ProofError("batch", f"{len(proof.siblings)} siblings where the shape needs {needed}")
    if any(len(s) != _HASH for s in proof.siblings):
        raise ProofError("batch", "a sibling is not 32 bytes")
    node = leaf_hash(leaf)
    siblings = iter(proof.siblings)
    for step in shape:
        if step is True:
            node = node_hash(next(siblings), node)
        elif step is False:
            node = node_hash(node, next(siblings))
    if _root_of(proof.count, node) != root:
        raise ProofError("batch", "the leaf is not in the batch with this root")
