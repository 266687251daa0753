"""Keccak-256, the hash Ethereum uses everywhere (not NIST SHA3-256: different padding)."""

from __future__ import annotations

import sha3  # safe-pysha3: the one keccak implementation the device core depends on

__all__ = ["EMPTY_KECCAK", "keccak256"]


def keccak256(data: bytes) -> bytes:
    """Return the 32-byte Keccak-256 digest of ``data``."""
    return sha3.keccak_256(data).digest()  # type: ignore[no-any-return]


EMPTY_KECCAK = keccak256(b"")
"""keccak256(b"") = c5d246...a470, the code hash of an account without code."""
