"""secp256k1 keys, Ethereum addresses (EIP-55) and recoverable signatures.

A :class:`PrivateKey` never shows its secret (``repr``/``str``: the address only). Signatures are
deterministic (RFC 6979) and low-s; recovery rejects high-s, zero and out-of-range r/s (EIP-2: s <=
n/2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import coincurve

from lightpost.core.hashing import keccak256
from lightpost.errors import DecodingError, SignatureError

__all__ = [
    "SECP256K1_N",
    "Address",
    "PrivateKey",
    "Signature",
    "address_from_public_key",
    "parse_address",
    "recover_address",
    "to_checksum_address",
]

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""Order of the secp256k1 group (SEC 2, section 2.4.1)."""

_HALF_N = SECP256K1_N // 2
"""EIP-2: signatures with s > n/2 are invalid (malleability)."""

Address = bytes
"""A 20-byte account address."""

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
"""Characters accepted in hex text (``bytes.fromhex`` alone would also skip spaces)."""


def _strict_hex(body: str) -> bytes | None:
    # Decode hex digits only (no whitespace, no sign); None if not hex.
    if len(body) % 2 or not _HEX_DIGITS.issuperset(body):
        return None
    return bytes.fromhex(body)


def to_checksum_address(address: bytes) -> str:
    """EIP-55 mixed-case checksum encoding of a 20-byte address."""
    if len(address) != 20:
        raise DecodingError("address", f"expected 20 bytes, got {len(address)}")
    hexaddr = address.hex()
    digest = keccak256(hexaddr.encode("ascii")).hex()
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(hexaddr)
    )


def parse_address(text: str) -> bytes:
    """Parse a 0x + 40-hex address; mixed case must carry a valid EIP-55 checksum."""
    body = text[2:] if text[:2] in ("0x", "0X") else text
    if len(body) != 40:
        raise DecodingError("address", "expected 40 hex digits")
    raw = _strict_hex(body)
    if raw is None:
        raise DecodingError("address", "not hexadecimal")
    if body != body.lower() and body != body.upper() and to_checksum_address(raw)[2:] != body:
        raise DecodingError("address", "EIP-55 checksum mismatch (check for a typo)")
    return raw


def address_from_public_key(public_key: bytes) -> bytes:
    """Address = last 20 bytes of keccak256(uncompressed public key without 0x04)."""
    if len(public_key) == 65 and public_key[0] == 4:
        public_key = public_key[1:]
    if len(public_key) != 64:
        raise DecodingError("public key", "expected 64 or 65 bytes")
    return keccak256(public_key)[12:]


@dataclass(frozen=True, slots=True)
class Signature:
    """An ECDSA signature with its recovery id (``y_parity`` 0 or 1)."""

    y_parity: int
    r: int
    s: int

    def __post_init__(self) -> None:
        if self.y_parity not in (0, 1):
            raise SignatureError("y_parity must be 0 or 1")
        if not 0 < self.r < SECP256K1_N:
            raise SignatureError("r out of range")
        if not 0 < self.s <= _HALF_N:
            raise SignatureError("s out of range or high (EIP-2)")

    def to_bytes(self) -> bytes:
        """65 bytes r || s || y_parity."""
        return self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big") + bytes([self.y_parity])


@dataclass(frozen=True, slots=True, repr=False)
class PrivateKey:
    """A secp256k1 private key. Its secret never appears in repr, str or errors."""

    _secret: bytes = field(repr=False)
    address: bytes = field(init=False)
    _signer: coincurve.PrivateKey = field(init=False, repr=False, compare=False)
    """libsecp256k1's key object, made once: making one derives the public key (~60 us),
    which used to be paid on every signature."""

    def __post_init__(self) -> None:
        if len(self._secret) != 32 or not 0 < int.from_bytes(self._secret, "big") < SECP256K1_N:
            raise ValueError("a private key is 32 bytes in [1, n-1]")
        signer = coincurve.PrivateKey(self._secret)
        object.__setattr__(self, "_signer", signer)
        pub = signer.public_key.format(compressed=False)
        object.__setattr__(self, "address", address_from_public_key(pub))

    @classmethod
    def from_hex(cls, text: str) -> PrivateKey:
        """Import a 64-hex-digit key (0x optional). Errors never echo the input."""
        body = text.strip()
        body = body[2:] if body[:2] in ("0x", "0X") else body
        raw = _strict_hex(body)
        if raw is None:
            raise DecodingError("private key", "not hexadecimal")
        if len(raw) != 32:
            raise DecodingError("private key", "expected 32 bytes")
        try:
            return cls(raw)
        except ValueError:
            raise DecodingError("private key", "outside the secp256k1 range") from None

    def secret_bytes(self) -> bytes:
        """The raw 32-byte secret. Only for keystore encryption; never log it."""
        return self._secret

    @property
    def checksum_address(self) -> str:
        return to_checksum_address(self.address)

    def sign_hash(self, msg_hash: bytes) -> Signature:
        """Sign a 32-byte hash: deterministic (RFC 6979) and low-s."""
        if len(msg_hash) != 32:
            raise ValueError("sign_hash takes a 32-byte hash")
        sig = self._signer.sign_recoverable(msg_hash, hasher=None)
        return Signature(
            y_parity=sig[64], r=int.from_bytes(sig[:32], "big"), s=int.from_bytes(sig[32:64], "big")
        )

    def __repr__(self) -> str:
        return f"PrivateKey(address={self.checksum_address})"

    __str__ = __repr__


def recover_address(msg_hash: bytes, signature: Signature) -> bytes:
    """Recover the signer's address from a 32-byte hash and a validated signature."""
    if len(msg_hash) != 32:
        raise SignatureError("message hash must be 32 bytes")
    try:
        pub = coincurve.PublicKey.from_signature_and_message(
            signature.to_bytes(), msg_hash, hasher=None
        )
    except Exception:  # coincurve raises bare Exception/ValueError on failure
        raise SignatureError("public key cannot be recovered") from None
    return address_from_public_key(pub.format(compressed=False))
