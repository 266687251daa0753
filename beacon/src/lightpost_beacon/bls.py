"""BLS12-381 FastAggregateVerify for the beacon light client, from the ``lightpost[beacon]`` extra
(py-arkworks-bls12381). Ethereum's ciphersuite BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_
(consensus-specs phase0 beacon-chain.md, "BLS signatures"; IETF draft-irtf-cfrg-bls-signature-05).

Public keys are decompressed and checked (KeyValidate: on the curve, in the subgroup, not the
identity) once and cached: a sync committee's 512 keys serve ~27 hours of updates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from lightpost.errors import ConfigError

__all__ = ["ArkworksBls", "decode_point", "load_bls"]

DST: Final = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
"""Domain separation tag of Ethereum's proof-of-possession ciphersuite."""
MAX_CACHED_KEYS: Final = 4 * 512
"""Decompressed keys kept: two mainnet committees (current, next) with room for a hand-over."""


def decode_point(point_type: Any, raw: bytes) -> Any:
    """A compressed G1 or G2 point, checked to be in the subgroup and canonically encoded: the
    library accepts some malformed flag bits (e.g. all three set, or infinity with a non-zero x),
    so the encoding must round-trip (ValueError otherwise)."""
    try:
        point = point_type.from_compressed_bytes(bytes(raw))
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError("not a compressed point") from exc
    if bytes(point.to_compressed_bytes()) != bytes(raw):
        raise ValueError("non-canonical point encoding")
    return point


class ArkworksBls:
    """:class:`lightpost_beacon.lightclient.BlsVerifier` over py-arkworks-bls12381."""

    def __init__(self, module: Any) -> None:
        self._m = module
        self._g1_neg = -module.G1Point()
        self._keys: dict[bytes, Any] = {}

    def _key(self, raw: bytes) -> Any:
        point = self._keys.get(raw)
        if point is None:
            point = decode_point(self._m.G1Point, raw)
            if point == self._m.G1Point.identity():
                raise ValueError("identity public key")
            if len(self._keys) >= MAX_CACHED_KEYS:
                self._keys.clear()
            self._keys[bytes(raw)] = point
        return point

    def is_valid_pubkey(self, raw: bytes) -> bool:
        """KeyValidate: a compressed G1 point in the subgroup, not the identity."""
        try:
            self._key(raw)
        except ValueError:
            return False
        return True

    def is_valid_signature(self, raw: bytes) -> bool:
        """A compressed G2 point in the subgroup (the identity included)."""
        try:
            decode_point(self._m.G2Point, raw)
        except ValueError:
            return False
        return True

    def decompress(self, pubkeys: Sequence[bytes]) -> None:
        """Decompress and check ``pubkeys`` now (e.g. a new committee), not at first use."""
        for k in pubkeys:
            self._key(k)

    def fast_aggregate_verify(
        self, pubkeys: Sequence[bytes], message: bytes, signature: bytes
    ) -> bool:
        """FastAggregateVerify; False for no keys, any invalid key or a malformed signature."""
        if not pubkeys:
            return False
        try:
            aggregate = self._key(pubkeys[0])
            for k in pubkeys[1:]:
                aggregate = aggregate + self._key(k)
            sig = decode_point(self._m.G2Point, signature)
        except ValueError:
            return False
        h = self._m.G2Point.hash_to_curve(bytes(message), DST)
        return bool(self._m.GT.pairing_check([aggregate, self._g1_neg], [h, sig]))


def load_bls() -> ArkworksBls:
    """The extra's verifier, or a :class:`ConfigError` naming the extra to install."""
    try:
        import py_arkworks_bls12381 as module
    except ImportError:
        raise ConfigError(
            "beacon trust needs BLS: install the extra, pip install 'lightpost[beacon]'"
        ) from None
    return ArkworksBls(module)
