"""Chain profiles: what lightpost expects of each chain it knows by name (``chain = "base"``).

A profile fills a device config's defaults: chain id, finality (the ``finalized`` tag, or a depth),
block time, transaction types and extra header fields to accept, a safe ``eth_getLogs`` block
range. Explicit config keys override it; a ``chain_id`` that contradicts it is refused. Pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lightpost.core.gas import TX_GAS_LIMIT_CAP
from lightpost.errors import ConfigError

# Sources (checked 2026-11-29): Ethereum mainnet 12 s slots (ethereum.org); Sepolia 11155111
# and Hoodi 560048 (github.com/eth-clients/hoodi README; docs.tenderly.co node RPC reference); OP
# mainnet 10 and Base 8453, ``block_time = 2`` (ethereum-optimism/superchain-registry
# superchain/configs/mainnet/{op,base}.toml; docs.base.org network information); Arbitrum One
# 42161, ~250 ms blocks (viem chains/definitions/arbitrum.ts ``blockTime: 250``; docs.arbitrum.io
# chain parameters); testnets of the same families: OP Sepolia 11155420 and Base Sepolia 84532
# (ethereum-optimism/superchain-ops src/fps/utils/Constants.sol), Arbitrum Sepolia 421614
# (docs.arbitrum.io public chains; viem chains/definitions/arbitrumSepolia.ts); Gnosis 100, 5 s
# slots, 16-slot epochs, finality ~2.7 min (docs.gnosischain.com about/specs, about/networks).
# Transaction types: OP-stack deposit 0x7e (specs.optimism.io protocol/deposits); Arbitrum
# 0x64-0x66, 0x68-0x6a, 0x78 (OffchainLabs go-ethereum core/types/transaction.go); Arbitrum
# block JSON fields l1BlockNumber, sendCount, sendRoot (Nitro RPC). ``finalized`` is served on
# every built-in chain; on the L2s it names the latest L2 block derived from finalized L1 data.

__all__ = [
    "ARBITRUM_HEADER_FIELDS",
    "ARBITRUM_TX_TYPES",
    "DEFAULT_LOGS_BLOCK_RANGE",
    "ETHEREUM_TX_TYPES",
    "OP_STACK_TX_TYPES",
    "PROFILES",
    "ChainProfile",
    "chain_profile",
]

ETHEREUM_TX_TYPES = frozenset({0, 1, 2, 3, 4})
"""Legacy, EIP-2930, EIP-1559, EIP-4844 blob, EIP-7702 set-code: Ethereum since Pectra."""

OP_STACK_TX_TYPES = frozenset({0, 1, 2, 4, 0x7E})
"""OP-stack: no blob transactions; EIP-7702 since Isthmus; 0x7e = deposit (L1 -> L2)."""

ARBITRUM_TX_TYPES = frozenset({0, 1, 2, 4, 0x64, 0x65, 0x66, 0x68, 0x69, 0x6A, 0x78})
"""Arbitrum Nitro: standard 0/1/2 (4 since ArbOS 40) plus deposit 0x64, unsigned 0x65, contract
0x66, retry 0x68, submit-retryable 0x69, internal 0x6a, legacy 0x78."""

ARBITRUM_HEADER_FIELDS = frozenset({"l1BlockNumber", "sendCount", "sendRoot"})
"""JSON fields Nitro adds to a block (not hashed as such: sendRoot/sendCount live in extraData and
mixHash)."""

DEFAULT_LOGS_BLOCK_RANGE = 2_000
"""Blocks per eth_getLogs unless the chain has a better-known figure: the smallest common provider
cap (2,000-10,000 on paid plans; some free tiers much less)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainProfile:
    """What to expect of one chain. ``finality_depth`` 0 = the node's ``finalized`` tag."""

    name: str
    chain_id: int
    block_time_s: float = 12.0
    finality_depth: int = 0
    family: str = "ethereum"
    tx_types: frozenset[int] = ETHEREUM_TX_TYPES
    header_extra_fields: frozenset[str] = frozenset()
    logs_block_range: int = DEFAULT_LOGS_BLOCK_RANGE
    devnet: bool = False
    gas_limit_source: str = "local"
    """core.gas.GAS_LIMIT_SOURCES ("estimate": gas buys the L1 data too)."""
    max_gas_limit: int = TX_GAS_LIMIT_CAP
    """Ceiling on an estimated gas limit (all a lying majority can make us reserve)."""


def _op(name: str, chain_id: int) -> ChainProfile:
    return ChainProfile(
        name=name,
        chain_id=chain_id,
        block_time_s=2.0,
        family="op-stack",
        tx_types=OP_STACK_TX_TYPES,
    )


def _arb(name: str, chain_id: int) -> ChainProfile:
    return ChainProfile(
        name=name,
        chain_id=chain_id,
        block_time_s=0.25,
        family="arbitrum",
        tx_types=ARBITRUM_TX_TYPES,
        header_extra_fields=ARBITRUM_HEADER_FIELDS,
        logs_block_range=10_000,  # ~40 min of 250 ms blocks; blocks are small
        gas_limit_source="estimate",
    )


PROFILES: Mapping[str, ChainProfile] = {
    p.name: p
    for p in (
        ChainProfile(name="mainnet", chain_id=1, block_time_s=12.0),
        ChainProfile(name="sepolia", chain_id=11_155_111, block_time_s=12.0),
        ChainProfile(name="hoodi", chain_id=560_048, block_time_s=12.0),
        _op("optimism", 10),
        _op("base", 8_453),
        _arb("arbitrum", 42_161),
        _op("optimism-sepolia", 11_155_420),
        _op("base-sepolia", 84_532),
        _arb("arbitrum-sepolia", 421_614),
        ChainProfile(name="gnosis", chain_id=100, block_time_s=5.0),
        # anvil (Foundry): chain id 31337; `finalized` = latest - 2 epochs of its slots
        ChainProfile(name="devnet", chain_id=31_337, block_time_s=1.0, devnet=True),
    )
}
"""The built-in profiles by name."""


def chain_profile(name: str) -> ChainProfile:
    """The built-in profile ``name``; an unknown name is one ConfigError listing the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"config: unknown chain {name!r} (known: {', '.join(sorted(PROFILES))})"
        ) from None
