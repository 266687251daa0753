"""The device core's built-in pure-Python Keccak-256 and the backend choice.

The pure implementation must equal the compiled one (safe-pysha3, the `fast` extra) on
every input, and the whole core must work, vectors included, when only it is present.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sha3
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core import hashing, keccak

ROOT = Path(__file__).resolve().parents[2]


def reference(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()  # type: ignore[no-any-return]


def test_published_digests() -> None:
    # keccak256("") is the code hash of every account without code (yellow paper);
    # keccak256("abc") is the Keccak team's short-message example for Keccak[c=512].
    assert keccak.keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert keccak.keccak256(b"abc").hex() == (
        "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    )


def test_every_length_around_the_block_boundaries() -> None:
    # padding is the fiddly part: 0 bytes, one short of a block (pad byte 0x81), exactly
    # one block (a whole padding block follows), and the same one block further on
    for n in [*range(0, 3), *range(130, 142), *range(268, 276), 136 * 7 + 135, 136 * 7 + 136]:
        data = bytes((i * 7 + n) % 256 for i in range(n))
        assert keccak.keccak256(data) == reference(data), n


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_equals_safe_pysha3(data: bytes) -> None:
    assert keccak.keccak256(data) == reference(data)


def test_fast_backend_is_used_when_installed() -> None:
    assert hashing.KECCAK_BACKEND == "safe-pysha3"
    assert hashing.keccak256(b"abc") == keccak.keccak256(b"abc")


def test_core_without_safe_pysha3_passes_the_ethereum_vectors() -> None:
    """Block the compiled keccak the way a device install lacks it, then run the
    transaction, trie, proof and keystore vector tests on the pure backend."""
    script = (
        "import sys; sys.modules['sha3'] = None\n"
        "from lightpost.core import hashing\n"
        "assert hashing.KECCAK_BACKEND == 'pure-python', hashing.KECCAK_BACKEND\n"
        "import pytest\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider',\n"
        "    'tests/core/test_tx.py', 'tests/core/test_trie.py', 'tests/core/test_proofs.py',\n"
        "    'tests/core/test_header.py', 'tests/core/test_keys.py']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
