"""A post older than the parent walk's reach (8,191 blocks below the finalized header) reaches
`final` on anvil under ``trust = "beacon"``: EIP-2935's history at the finalized state proves a
block a window down, and from there the walk is short (anvil keeps ~3,600 blocks of old state, so
the next history proof is not served: the bounded walk takes over, as on a full node).

Opt-in (LIGHTPOST_SLOW=1): ~5 min measured on a loaded 2-core machine, nearly all of it anvil
mining the ~8,300 blocks (each block rebuilds the history contract's growing storage trie) and
the devnet wrapping them. Measured: posts 8,299 blocks below final proven with 1 history proof
(4.6 KB) and 110 headers (195 KB); the walk alone refused them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightpost.core.levels import Level
from tests.integration.receive_chain import MeteredEndpoint

pytest.importorskip("py_arkworks_bls12381", reason="the lightpost[beacon] extra")
from lightpost_beacon.history import HISTORY_SERVE_WINDOW
from lightpost_beacon.lightclient import MAX_PARENT_WALK
from tests.integration.test_beacon_trust import BEACON_FINALITY_BLOCKS, World, _split, posts_below

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.environ.get("LIGHTPOST_SLOW") != "1", reason="LIGHTPOST_SLOW=1: ~5 min"),
]

DEPTH = HISTORY_SERVE_WINDOW + 100 + BEACON_FINALITY_BLOCKS
"""Blocks mined after the posts: the posts end up past the walk's reach below final."""


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with posts_below(2, DEPTH) as w:
        yield w


def test_a_post_past_the_walks_reach_reaches_final(world: World, tmp_path: Path) -> None:
    with world.receiver(tmp_path, [world.honest.url]) as receiver:
        anchor = receiver.anchor
        metered = anchor.endpoints = [MeteredEndpoint(ep) for ep in anchor.endpoints]
        delivered, problems = _split(list(receiver.poll(Level.FINAL)))
    assert problems == []
    assert [(d.payload, d.root) for d in delivered] == [
        (b"a0", "beacon-finalized"),
        (b"a1", "beacon-finalized"),
    ]
    depth = anchor.head(final=True).number - max(d.block_number for d in delivered)
    assert depth > MAX_PARENT_WALK  # the walk alone refused this (the code before EIP-2935)
    calls = metered[0].calls
    # one history proof and one header down a window, then the short walk
    assert calls["eth_getBlockByNumber"] < depth - HISTORY_SERVE_WINDOW + 10, calls
