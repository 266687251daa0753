"""Create keys and write Web3 Secret Storage (keystore v3) files. Provisioning runs on the
operator's machine; a device only reads its keystore (:func:`lightpost.core.keystore.decrypt_key`,
which also describes the format). Pure: the randomness is an argument.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from lightpost.core import aes
from lightpost.core.keys import SECP256K1_N, PrivateKey
from lightpost.core.keystore import (
    CIPHER,
    DKLEN,
    IV_BYTES,
    KEYSTORE_VERSION,
    PBKDF2_PRF,
    SCRYPT_MAX_MEMORY,
    SCRYPT_MIN_N,
    ScryptFunction,
    derive_key,
    keystore_mac,
)
from lightpost.errors import KeystoreError

__all__ = [
    "LIGHT_SCRYPT_N",
    "LIGHT_SCRYPT_P",
    "PBKDF2_ITERATIONS",
    "SALT_BYTES",
    "SCRYPT_N",
    "SCRYPT_P",
    "SCRYPT_R",
    "Kdf",
    "Keystore",
    "encrypt_key",
    "generate_key",
]

Kdf = Literal["scrypt", "pbkdf2"]
"""The two key derivation functions of Web3 Secret Storage."""

Keystore = dict[str, Any]
"""A keystore v3 document as a JSON-compatible dict (``json.dumps`` writes it)."""

SALT_BYTES = 32
"""KDF salt length written (geth keystore: 32 random bytes)."""

SCRYPT_N = 1 << 18
"""scrypt CPU/memory cost 262144: geth ``StandardScryptN`` (about 256 MiB with r=8)."""

SCRYPT_R = 8
"""scrypt block size r = 8 (geth standard and light; RFC 7914's recommended value)."""

SCRYPT_P = 1
"""scrypt parallelization p = 1: geth ``StandardScryptP``."""

LIGHT_SCRYPT_N = SCRYPT_MIN_N
"""scrypt cost 4096: geth ``LightScryptN`` (about 4 MiB; for small devices), the weakest a
device reads without opt-in."""

LIGHT_SCRYPT_P = 6
"""scrypt parallelization 6: geth ``LightScryptP`` (used together with LIGHT_SCRYPT_N)."""

PBKDF2_ITERATIONS = 600_000
"""PBKDF2-HMAC-SHA256 iterations written: OWASP Password Storage Cheat Sheet minimum (2023)."""

_UUID_BYTES = 16
"""A UUID is 128 bits (RFC 9562 section 4)."""

_UUID_VERSION_4 = 0x40
"""UUID version nibble 4 (random) in byte 6, RFC 9562 section 5.4."""

_UUID_VARIANT_RFC = 0x80
"""UUID variant bits 10 in byte 8, RFC 9562 section 4.1."""


def generate_key(randbytes: Callable[[int], bytes]) -> PrivateKey:
    """A fresh key from ``randbytes`` (pass ``os.urandom``; injected to stay pure)."""
    while True:
        candidate = randbytes(32)
        if 0 < int.from_bytes(candidate, "big") < SECP256K1_N:
            return PrivateKey(candidate)


def encrypt_key(
    key: PrivateKey,
    password: str,
    *,
    randbytes: Callable[[int], bytes],
    kdf: Kdf = "scrypt",
    scrypt_n: int = SCRYPT_N,
    scrypt_r: int = SCRYPT_R,
    scrypt_p: int = SCRYPT_P,
    pbkdf2_iterations: int = PBKDF2_ITERATIONS,
    scrypt: ScryptFunction | None = None,
) -> Keystore:
    """Encrypt ``key`` under ``password`` into a keystore v3 dict; ``randbytes(n)`` must be
    cryptographically random (salt 32, IV 16, UUID 16); ``scrypt`` replaces the stdlib one."""
    if kdf not in ("scrypt", "pbkdf2"):
        raise KeystoreError(f"unsupported kdf {kdf!r} (use 'scrypt' or 'pbkdf2')")
    salt = _random(randbytes, SALT_BYTES, "salt")
    iv = _random(randbytes, IV_BYTES, "iv")
    uuid_bytes = _random(randbytes, _UUID_BYTES, "id")
    kdfparams: dict[str, Any]
    if kdf == "scrypt":
        kdfparams = {"dklen": DKLEN, "n": scrypt_n, "p": scrypt_p, "r": scrypt_r}
    else:
        kdfparams = {"c": pbkdf2_iterations, "dklen": DKLEN, "prf": PBKDF2_PRF}
    kdfparams["salt"] = salt.hex()
    derived = derive_key(kdf, kdfparams, password, scrypt, SCRYPT_MAX_MEMORY, allow_weak_kdf=True)
    ciphertext = aes.ctr(derived[: aes.KEY_SIZE], iv, key.secret_bytes())
    return {
        "address": key.address.hex(),
        "crypto": {
            "cipher": CIPHER,
            "cipherparams": {"iv": iv.hex()},
            "ciphertext": ciphertext.hex(),
            "kdf": kdf,
            "kdfparams": kdfparams,
            "mac": keystore_mac(derived, ciphertext).hex(),
        },
        "id": _uuid4(uuid_bytes),
        "version": KEYSTORE_VERSION,
    }


def _random(randbytes: Callable[[int], bytes], n: int, what: str) -> bytes:
    value = randbytes(n)
    if not isinstance(value, bytes) or len(value) != n:
        raise KeystoreError(f"randbytes({n}) for the {what} did not return {n} bytes")
    return value


def _uuid4(raw: bytes) -> str:
    """Format 16 random bytes as a version-4 RFC 9562 UUID string."""
    b = bytearray(raw)
    b[6] = (b[6] & 0x0F) | _UUID_VERSION_4
    b[8] = (b[8] & 0x3F) | _UUID_VARIANT_RFC
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
