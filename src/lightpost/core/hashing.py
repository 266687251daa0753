"""Keccak-256 (not NIST SHA3-256: different padding): safe-pysha3 when installed
(``lightpost[fast]``), else :mod:`lightpost.core.keccak`; chosen once at import,
``KECCAK_BACKEND`` says which."""

from __future__ import annotations

from collections.abc import Callable

from lightpost.core import keccak as _pure

__all__ = ["EMPTY_KECCAK", "KECCAK_BACKEND", "keccak256"]

keccak256: Callable[[bytes], bytes]
"""Return the 32-byte Keccak-256 digest of ``data``."""

try:
    import sha3  # safe-pysha3, the optional compiled keccak ("fast" extra)
except ImportError:  # the device core as `pip install lightpost` installs it
    KECCAK_BACKEND = "pure-python"
    keccak256 = _pure.keccak256
else:
    KECCAK_BACKEND = "safe-pysha3"

    def keccak256(data: bytes) -> bytes:
        """Return the 32-byte Keccak-256 digest of ``data``."""
        return sha3.keccak_256(data).digest()  # type: ignore[no-any-return]


EMPTY_KECCAK = keccak256(b"")
"""keccak256(b"") = c5d246...a470, the code hash of an account without code."""
