"""Built-in chain profiles: ids as the chains publish them, and the families' transaction types."""

from __future__ import annotations

import pytest

from lightpost.core.profiles import (
    ARBITRUM_TX_TYPES,
    ETHEREUM_TX_TYPES,
    OP_STACK_TX_TYPES,
    PROFILES,
    chain_profile,
)
from lightpost.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "chain_id", "block_time_s", "family"),
    [
        ("mainnet", 1, 12.0, "ethereum"),
        ("sepolia", 11_155_111, 12.0, "ethereum"),
        ("hoodi", 560_048, 12.0, "ethereum"),
        ("optimism", 10, 2.0, "op-stack"),
        ("base", 8_453, 2.0, "op-stack"),
        ("arbitrum", 42_161, 0.25, "arbitrum"),
        ("gnosis", 100, 5.0, "ethereum"),
        ("devnet", 31_337, 1.0, "ethereum"),
    ],
)
def test_each_built_in_profile(name: str, chain_id: int, block_time_s: float, family: str) -> None:
    p = chain_profile(name)
    assert (p.name, p.chain_id, p.block_time_s, p.family) == (name, chain_id, block_time_s, family)
    assert p.finality_depth == 0  # every built-in chain serves the `finalized` tag
    assert p.logs_block_range > 0
    assert p.devnet is (name == "devnet")


def test_families_expect_their_transaction_types_and_header_fields() -> None:
    assert chain_profile("base").tx_types == OP_STACK_TX_TYPES
    assert 0x7E in OP_STACK_TX_TYPES and 3 not in OP_STACK_TX_TYPES  # deposits; no blobs on L2
    assert {0x64, 0x65, 0x66, 0x68, 0x69, 0x6A, 0x78} <= ARBITRUM_TX_TYPES
    assert 0x67 not in ARBITRUM_TX_TYPES  # unassigned in Nitro
    assert chain_profile("arbitrum").header_extra_fields == {
        "l1BlockNumber",
        "sendCount",
        "sendRoot",
    }
    for name in ("mainnet", "sepolia", "hoodi", "gnosis", "optimism", "base", "devnet"):
        assert chain_profile(name).header_extra_fields == frozenset(), name
    assert chain_profile("sepolia").tx_types == ETHEREUM_TX_TYPES == frozenset(range(5))


def test_chain_ids_are_unique() -> None:
    ids = [p.chain_id for p in PROFILES.values()]
    assert len(ids) == len(set(ids))


def test_an_unknown_chain_is_one_line_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        chain_profile("bsae")
    msg = str(err.value)
    assert "'bsae'" in msg and "\n" not in msg
    for name in PROFILES:
        assert name in msg
