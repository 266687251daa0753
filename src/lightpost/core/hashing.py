"""Keccak-256, the hash Ethereum uses everywhere (not NIST SHA3-256: different padding).

Two implementations, same function: the compiled one from safe-pysha3 when it is
installed (``pip install 'lightpost[fast]'``), else the device core's own pure-Python
one (:mod:`lightpost.core.keccak`). The choice is made once, at import; ``KECCAK_BACKEND``
says which (``lightpost status`` shows it).
"""

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
