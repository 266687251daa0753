"""The benchmark's reference trie (tools/bench_cpu.py, eth-account's side of "verify
inclusion") must compute the same roots as lightpost's trie, or the comparison is void."""

from __future__ import annotations

import sys
from pathlib import Path

import rlp
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core.trie import ordered_trie_root, trie_root

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from bench_cpu import reference_ordered_trie_root, reference_trie_root


@given(st.dictionaries(st.binary(min_size=1, max_size=6), st.binary(min_size=1, max_size=80)))
@settings(max_examples=200)
def test_reference_root_matches_lightpost(items: dict[bytes, bytes]) -> None:
    assert reference_trie_root(items, keccak, rlp.encode) == trie_root(items)


def test_reference_ordered_root_matches_lightpost() -> None:
    for count in (0, 1, 2, 16, 17, 130, 300):
        values = [bytes([i % 251 + 1]) * (i % 70 + 1) for i in range(count)]
        assert reference_ordered_trie_root(values, keccak, rlp.encode) == ordered_trie_root(values)
