"""Readers for the chain-data vectors used by the trie, receipt, header and proof tests.

The vectors are read in place (their licences differ); nothing is copied into the repo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from lightpost.core import rlp
from tests.conftest import vector_path

ROOTS_DIRS = ("roots/execution-apis-1bde1b81", "proof/execution-apis-block3")
"""execution-apis captures holding debug_getRawBlock and debug_getRawReceipts of block 3."""


def hx(text: str) -> bytes:
    """0x-hex -> bytes."""
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def io_result(*parts: str) -> Any:
    """The ``result`` of the response line (``<<``) of an execution-apis .io file."""
    for line in Path(vector_path(*parts)).read_text().splitlines():
        if line.startswith("<<"):
            return json.loads(line[2:])["result"]
    raise AssertionError(f"no response line in {parts}")


def load_json(*parts: str) -> Any:
    """A JSON vector file."""
    return json.loads(Path(vector_path(*parts)).read_text())


def anvil_block() -> Any:
    """The captured anvil block-2 vector (block, receipts, raw txs, proofs, block_1, genesis)."""
    return load_json("anvil", "block-2-mixed-types.json")


def raw_block(directory: str) -> tuple[bytes, list[bytes]]:
    """(RLP header, consensus-encoded transactions) of a debug_getRawBlock capture."""
    block = rlp.decode(hx(io_result(directory, "debug_getRawBlock", "get-block-n.io")))
    assert isinstance(block, list)
    header, txs = block[0], block[1]
    assert isinstance(txs, list)
    # Legacy txs sit in the body as RLP lists; typed ones as strings (type || payload).
    return rlp.encode(header), [rlp.encode(t) if isinstance(t, list) else t for t in txs]


def raw_receipts(directory: str) -> list[bytes]:
    """The consensus-encoded receipts of a debug_getRawReceipts capture."""
    return [hx(r) for r in io_result(directory, "debug_getRawReceipts", "get-block-n.io")]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
"""Arbitrary JSON values, to put in place of a field of an RPC answer."""
