"""SSZ merkleization: hash_tree_root building blocks and Merkle branch checks (sha256).

Only what the light client needs (consensus-specs ssz/simple-serialize.md, "Merkleization";
Altair light-client/sync-protocol.md, ``is_valid_normalized_merkle_branch``). Serialization is
not here: beacon data arrives as JSON (lightpost_beacon.containers).
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256
from typing import Final

__all__ = [
    "bytes_root",
    "floorlog2",
    "hash_pair",
    "is_valid_merkle_branch",
    "is_valid_normalized_merkle_branch",
    "merkleize",
    "mix_in_length",
    "pack_bytes",
    "uint64_root",
]

CHUNK: Final = 32
"""Bytes per SSZ chunk (BYTES_PER_CHUNK)."""

ZERO_CHUNK: Final = bytes(CHUNK)

_ZERO_HASHES: list[bytes] = [ZERO_CHUNK]


def hash_pair(a: bytes, b: bytes) -> bytes:
    """sha256(a || b), the inner node of every SSZ tree."""
    return sha256(a + b).digest()


def _zero_hash(depth: int) -> bytes:
    while len(_ZERO_HASHES) <= depth:
        _ZERO_HASHES.append(hash_pair(_ZERO_HASHES[-1], _ZERO_HASHES[-1]))
    return _ZERO_HASHES[depth]


def floorlog2(x: int) -> int:
    """floor(log2(x)) for x >= 1."""
    if x < 1:
        raise ValueError("floorlog2 of a non-positive number")
    return x.bit_length() - 1


def merkleize(chunks: Sequence[bytes], limit: int | None = None) -> bytes:
    """Root of ``chunks`` padded with zero chunks to the next power of two of ``limit`` (or of
    their count); zero subtrees come from a cache, so a large limit costs its depth only."""
    count = len(chunks) if limit is None else limit
    if len(chunks) > count:
        raise ValueError("more chunks than the limit")
    depth = max(count - 1, 0).bit_length()
    layer = list(chunks) or [ZERO_CHUNK]
    for d in range(depth):
        if len(layer) % 2:
            layer.append(_zero_hash(d))
        layer = [hash_pair(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


def mix_in_length(root: bytes, length: int) -> bytes:
    """The root of a list: its contents' root mixed with its length."""
    return hash_pair(root, length.to_bytes(CHUNK, "little"))


def pack_bytes(data: bytes) -> list[bytes]:
    """Bytes as right-zero-padded chunks."""
    return [data[i : i + CHUNK].ljust(CHUNK, b"\0") for i in range(0, len(data), CHUNK)]


def uint64_root(value: int) -> bytes:
    """The root of a uint64 (little-endian in one chunk)."""
    return value.to_bytes(CHUNK, "little")


def bytes_root(data: bytes, limit: int | None = None) -> bytes:
    """Root of a ByteVector (``limit`` None) or of a ByteList[limit]."""
    if limit is None:
        return merkleize(pack_bytes(data))
    return mix_in_length(merkleize(pack_bytes(data), (limit + CHUNK - 1) // CHUNK), len(data))


def is_valid_merkle_branch(
    leaf: bytes, branch: Sequence[bytes], depth: int, index: int, root: bytes
) -> bool:
    """Whether ``leaf`` sits at ``index`` of a ``depth``-deep tree with ``root`` (phase0)."""
    if len(branch) != depth:
        return False
    value = leaf
    for i, sibling in enumerate(branch):
        value = hash_pair(sibling, value) if (index >> i) & 1 else hash_pair(value, sibling)
    return value == root


def is_valid_normalized_merkle_branch(
    leaf: bytes, branch: Sequence[bytes], gindex: int, root: bytes
) -> bool:
    """Like :func:`is_valid_merkle_branch` for generalized index ``gindex``; a branch longer than
    its depth (a later fork's longer vector) must start with zero hashes (Altair sync protocol,
    ``is_valid_normalized_merkle_branch``)."""
    depth = floorlog2(gindex)
    extra = len(branch) - depth
    if extra < 0 or any(b != ZERO_CHUNK for b in branch[:extra]):
        return False
    return is_valid_merkle_branch(leaf, branch[extra:], depth, gindex % (1 << depth), root)
