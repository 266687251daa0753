"""Web3 Secret Storage (keystore v3): decrypt a private key with a password. Writing is
operator-side (lightpost_operator.keywrite): a device only reads its keystore.

Format (as geth's accounts/keystore writes it)::

    derived = KDF(password UTF-8, salt)            # scrypt or pbkdf2, dklen 32
    ciphertext = AES-128-CTR(derived[0:16], iv, secret)
    mac = keccak256(derived[16:32] || ciphertext)   # checked before decrypting

Pure. Lenient where real files differ (``Crypto``, ``0x``, hex case, geth's short keys), strict on
version, cipher, KDF parameters and MAC. KDF work from a file is bounded above (a hostile file
cannot exhaust the device) and below (unless ``allow_weak_kdf``): :data:`SCRYPT_MAX_MEMORY`,
:data:`PBKDF2_MAX_ITERATIONS`, :data:`SCRYPT_MIN_N`, :data:`PBKDF2_MIN_ITERATIONS`.
:class:`lightpost.errors.KeystoreError` never holds the password or a key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any

from lightpost.core import aes
from lightpost.core.hashing import keccak256
from lightpost.core.keys import PrivateKey, _strict_hex
from lightpost.core.peerdata import json_depth
from lightpost.errors import KeystoreError

__all__ = [
    "CIPHER",
    "DKLEN",
    "IV_BYTES",
    "KEYSTORE_VERSION",
    "MAX_KEYSTORE_TEXT",
    "PBKDF2_MAX_ITERATIONS",
    "PBKDF2_MIN_ITERATIONS",
    "PBKDF2_PRF",
    "SCRYPT_MAX_MEMORY",
    "SCRYPT_MIN_N",
    "ScryptFunction",
    "decrypt_key",
    "derive_key",
    "keystore_mac",
    "scrypt_memory",
]

ScryptFunction = Callable[[bytes, bytes, int, int, int, int], bytes]
"""``(password, salt, n, r, p, dklen) -> key``. The default :func:`hashlib.scrypt` (OpenSSL)
enforces RFC 7914's ``n < 2^(16 r)``: inject another to read r = 1, n >= 65536 files."""

KEYSTORE_VERSION = 3
"""Web3 Secret Storage version written and accepted (the ``version`` field)."""

CIPHER = "aes-128-ctr"
"""The only cipher of Web3 Secret Storage v3 in use (geth, ethers, eth-keyfile)."""

DKLEN = 32
"""Derived key length: 16 bytes AES key + 16 bytes MAC key (Web3 Secret Storage)."""

IV_BYTES = aes.BLOCK_SIZE
"""AES-128-CTR initial counter block length (16 bytes)."""

PBKDF2_PRF = "hmac-sha256"
"""The only PBKDF2 pseudo-random function of Web3 Secret Storage."""

PBKDF2_MAX_ITERATIONS = 10_000_000
"""Refuse to read files asking for more PBKDF2 iterations (about 16x our default)."""

SCRYPT_MAX_MEMORY = 257 << 20
"""Default memory ceiling for a file's scrypt: 257 MiB, geth standard n=2^18, r=8, p=1 (128 r (n + p
+ 2)); refused before allocating; ``scrypt_max_memory_mib`` changes it."""

SCRYPT_MIN_N = 1 << 12
"""Weakest scrypt read without opt-in: 4096, geth ``LightScryptN``, the lightest a standard wallet
writes; below, brute force is cheap."""

PBKDF2_MIN_ITERATIONS = 100_000
"""Fewest PBKDF2 iterations read without opt-in: a sixth of the OWASP 600,000 we write; c = 1 or
1000 is a plain password."""

MAX_KEYSTORE_TEXT = 1 << 16
"""Longest keystore JSON text read: a v3 file is about 500 bytes, ethers' about 2 KB."""

_MAX_JSON_DEPTH = 16
"""Deepest JSON nesting read (v3 uses 3 levels: root, crypto, kdfparams)."""

_SCRYPT_MEMORY_MARGIN = 1 << 20
"""Head room added to OpenSSL's exact scrypt memory need when setting ``maxmem``."""

_SCRYPT_BLOCK_UNIT = 128
"""scrypt works on blocks of 128 * r bytes (RFC 7914 section 2)."""

_SCRYPT_INTEGERIFY_BITS = 16
"""RFC 7914 section 2: n must be below 2^(128 r / 8) = 2^(16 r); OpenSSL enforces it."""

_SCRYPT_MAX_RP = 1 << 30
"""RFC 7914 section 2: r * p must be below 2^30."""

# --- reading ---


def decrypt_key(
    keystore: Mapping[str, Any] | str | bytes,
    password: str,
    *,
    scrypt: ScryptFunction | None = None,
    max_memory: int = SCRYPT_MAX_MEMORY,
    allow_weak_kdf: bool = False,
) -> PrivateKey:
    """Decrypt a keystore v3 document (dict or JSON) with ``password``. Refused: scrypt above
    ``max_memory``, work below :data:`SCRYPT_MIN_N` / :data:`PBKDF2_MIN_ITERATIONS` unless
    ``allow_weak_kdf``. :class:`KeystoreError`: the reason, ``"wrong password (MAC mismatch)"``,
    or an ``address`` mismatch."""
    doc = _load(keystore)
    version = doc.get("version")
    if version is None:
        raise KeystoreError("keystore: missing field 'version'")
    if type(version) is not int or version != KEYSTORE_VERSION:
        raise KeystoreError(f"keystore: unsupported version (expected {KEYSTORE_VERSION})")
    crypto = doc.get("crypto", doc.get("Crypto"))
    if crypto is None:
        raise KeystoreError("keystore: missing field 'crypto'")
    crypto = _object(crypto, "crypto")

    cipher = _field(crypto, "cipher", "crypto")
    if cipher != CIPHER:
        raise KeystoreError(f"keystore: unsupported cipher (only {CIPHER})")
    cipherparams = _object(_field(crypto, "cipherparams", "crypto"), "crypto.cipherparams")
    iv = _hex(_field(cipherparams, "iv", "crypto.cipherparams"), "crypto.cipherparams.iv")
    if len(iv) != IV_BYTES:
        raise KeystoreError(f"keystore: crypto.cipherparams.iv must be {IV_BYTES} bytes")
    ciphertext = _hex(_field(crypto, "ciphertext", "crypto"), "crypto.ciphertext")
    if not 0 < len(ciphertext) <= DKLEN:
        raise KeystoreError("keystore: crypto.ciphertext must be 1 to 32 bytes")
    mac = _hex(_field(crypto, "mac", "crypto"), "crypto.mac")
    if len(mac) != 32:
        raise KeystoreError("keystore: crypto.mac must be 32 bytes")
    kdf = _field(crypto, "kdf", "crypto")
    if kdf not in ("scrypt", "pbkdf2"):
        raise KeystoreError("keystore: unsupported kdf (only scrypt and pbkdf2)")
    kdfparams = _object(_field(crypto, "kdfparams", "crypto"), "crypto.kdfparams")

    derived = derive_key(
        kdf, kdfparams, password, scrypt, max_memory, allow_weak_kdf=allow_weak_kdf
    )
    # Constant-time comparison: the MAC is the password check.
    if not hmac.compare_digest(keystore_mac(derived, ciphertext), mac):
        raise KeystoreError("wrong password (MAC mismatch)")
    secret = aes.ctr(derived[: aes.KEY_SIZE], iv, ciphertext)
    # geth stores the key as a big integer: a key with leading zero bytes may have been
    # written as 31 or 30 bytes (go-ethereum keystore testdata "31_byte_key").
    secret = secret.rjust(32, b"\x00")
    try:
        key = PrivateKey(secret)
    except ValueError:
        raise KeystoreError("keystore: decrypted key is outside the secp256k1 range") from None
    if "address" in doc:
        address = _hex(doc["address"], "address")
        if address != key.address:
            raise KeystoreError("keystore: 'address' does not match the decrypted key")
    return key


def _load(keystore: Mapping[str, Any] | str | bytes) -> Mapping[str, Any]:
    if isinstance(keystore, bytes):
        try:
            keystore = keystore.decode("utf-8")  # RFC 8259 section 8.1: JSON text is UTF-8
        except UnicodeDecodeError:
            raise KeystoreError("keystore: not UTF-8 text") from None
    if isinstance(keystore, str):
        if len(keystore) > MAX_KEYSTORE_TEXT:
            raise KeystoreError(f"keystore: text longer than {MAX_KEYSTORE_TEXT} characters")
        # before json.loads recurses (with a raised recursion limit, e.g. eth-account's, it
        # would crash the process)
        if json_depth(keystore.encode("utf-8", "surrogatepass")) > _MAX_JSON_DEPTH:
            raise KeystoreError(f"keystore: JSON nested deeper than {_MAX_JSON_DEPTH}")
        try:
            keystore = json.loads(keystore)
        except (ValueError, RecursionError):  # JSONDecodeError, deep nesting
            raise KeystoreError("keystore: not valid JSON") from None
    return _object(keystore, "keystore")


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise KeystoreError(f"keystore: {where} must be a JSON object")
    return value


def _field(obj: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in obj:
        raise KeystoreError(f"keystore: missing field '{where}.{name}'")
    return obj[name]


def _int_param(params: Mapping[str, Any], name: str) -> int:
    value = _field(params, name, "crypto.kdfparams")
    if type(value) is not int or value < 1:
        raise KeystoreError(f"keystore: crypto.kdfparams.{name} must be a positive integer")
    return value


def _hex(value: object, where: str) -> bytes:
    # Strict hex: optional 0x, even length, hex digits only (no whitespace).
    if not isinstance(value, str):
        raise KeystoreError(f"keystore: {where} must be a hex string")
    raw = _strict_hex(value[2:] if value[:2] in ("0x", "0X") else value)
    if raw is None:
        raise KeystoreError(f"keystore: {where} is not valid hex")
    return raw


# --- KDF and MAC ---


def keystore_mac(derived: bytes, ciphertext: bytes) -> bytes:
    """Web3 Secret Storage MAC: keccak256(derived[16:32] || ciphertext)."""
    return keccak256(derived[aes.KEY_SIZE : DKLEN] + ciphertext)


def _stdlib_scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # hashlib.scrypt with ``maxmem`` raised to what these parameters need.
    if n.bit_length() - 1 >= _SCRYPT_INTEGERIFY_BITS * r:  # n is a power of two
        raise KeystoreError(
            "keystore: stdlib scrypt (OpenSSL) refuses n >= 2^(16 r) (RFC 7914); "
            "pass another scrypt implementation to read this file"
        )
    need = scrypt_memory(n, r, p)
    try:
        return hashlib.scrypt(
            password, salt=salt, n=n, r=r, p=p, maxmem=need + _SCRYPT_MEMORY_MARGIN, dklen=dklen
        )
    except (ValueError, MemoryError):
        raise KeystoreError("keystore: scrypt rejected its parameters") from None


def scrypt_memory(n: int, r: int, p: int) -> int:
    """Bytes scrypt needs for (n, r, p): B = 128 r p plus V = 128 r (n + 2) (OpenSSL)."""
    return _SCRYPT_BLOCK_UNIT * r * (n + p + 2)


def _weak(what: str, value: int, minimum: int) -> KeystoreError:
    return KeystoreError(
        f"keystore: {what} {value} is below the minimum {minimum}: the key is barely "
        "protected; re-encrypt it with standard parameters"
    )


def derive_key(
    kdf: str,
    params: Mapping[str, Any],
    password: str,
    scrypt: ScryptFunction | None,
    max_memory: int,
    *,
    allow_weak_kdf: bool,
) -> bytes:
    """The ``DKLEN``-byte key of the KDF named in a file (or chosen by the writer), its
    parameters validated and bounded."""
    if not isinstance(password, str):
        raise KeystoreError("the password must be a str")
    # UTF-8 without normalisation, as geth ([]byte(password)) and eth-keyfile do.
    secret = password.encode("utf-8", "surrogatepass")
    salt = _hex(_field(params, "salt", "crypto.kdfparams"), "crypto.kdfparams.salt")
    dklen = _int_param(params, "dklen")
    if dklen != DKLEN:
        raise KeystoreError(f"keystore: crypto.kdfparams.dklen must be {DKLEN}")
    if kdf == "scrypt":
        n = _int_param(params, "n")
        r = _int_param(params, "r")
        p = _int_param(params, "p")
        if n < 2 or n & (n - 1):
            raise KeystoreError("keystore: scrypt n must be a power of two above 1")
        if r * p >= _SCRYPT_MAX_RP:
            raise KeystoreError("keystore: scrypt r * p is too large (RFC 7914)")
        need = scrypt_memory(n, r, p)
        if need > max_memory:
            raise KeystoreError(
                f"keystore: scrypt n={n}, r={r}, p={p} needs {need >> 20} MiB, above the "
                f"ceiling of {max_memory >> 20} MiB (config scrypt_max_memory_mib)"
            )
        if n < SCRYPT_MIN_N and not allow_weak_kdf:
            raise _weak("scrypt n", n, SCRYPT_MIN_N)
        return (scrypt or _stdlib_scrypt)(secret, salt, n, r, p, dklen)
    c = _int_param(params, "c")
    if c > PBKDF2_MAX_ITERATIONS:
        raise KeystoreError("keystore: pbkdf2 iteration count is above the allowed maximum")
    if c < PBKDF2_MIN_ITERATIONS and not allow_weak_kdf:
        raise _weak("pbkdf2 iteration count", c, PBKDF2_MIN_ITERATIONS)
    if _field(params, "prf", "crypto.kdfparams") != PBKDF2_PRF:
        raise KeystoreError(f"keystore: unsupported pbkdf2 prf (only {PBKDF2_PRF})")
    return hashlib.pbkdf2_hmac("sha256", secret, salt, c, dklen)
