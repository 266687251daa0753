"""The gas model for data-carrying transactions, as documented constants.

    tokens   = zero_bytes + 4 * nonzero_bytes                 (EIP-7623)
    standard = 21000 + 4 * tokens + access list + execution   (EIP-2028, EIP-2930)
    floor    = 21000 + 10 * tokens                            (EIP-7623)
    gas_used = max(standard, floor)

Measured on anvil 1.7.1 (Bpo1): empty tx 21,000; 1,000 nonzero bytes 61,000; 1,000 zero bytes
31,000; 100,000 nonzero bytes 4,021,000 -- all equal to the floor.
"""

from __future__ import annotations

from collections.abc import Sequence

from lightpost.core.quorum import quorum_fee

__all__ = [
    "ACCESS_LIST_ADDRESS_GAS",
    "ACCESS_LIST_STORAGE_KEY_GAS",
    "CREATE_GAS",
    "ESTIMATE_MARGIN_PERCENT",
    "FLOOR_GAS_PER_TOKEN",
    "GAS_LIMIT_SOURCES",
    "INITCODE_WORD_GAS",
    "NONZERO_BYTE_TOKENS",
    "STANDARD_GAS_PER_TOKEN",
    "TXPOOL_MAX_TX_BYTES",
    "TX_BASE_GAS",
    "TX_GAS_LIMIT_CAP",
    "TX_SIZE_OVERHEAD_BYTES",
    "calldata_tokens",
    "estimated_gas_limit",
    "floor_gas",
    "gas_used",
    "intrinsic_gas",
    "max_payload_bytes",
]

TX_BASE_GAS = 21_000
"""G_transaction: paid by every transaction (Yellow Paper)."""

STANDARD_GAS_PER_TOKEN = 4
"""EIP-2028 priced a zero byte at 4 and a nonzero byte at 16 = 4 per token."""

NONZERO_BYTE_TOKENS = 4
"""EIP-7623: a nonzero calldata byte counts as 4 tokens, a zero byte as 1."""

FLOOR_GAS_PER_TOKEN = 10
"""EIP-7623 TOTAL_COST_FLOOR_PER_TOKEN: data-heavy txs pay at least 10 gas per token."""

ACCESS_LIST_ADDRESS_GAS = 2_400
"""EIP-2930 ACCESS_LIST_ADDRESS_COST."""

ACCESS_LIST_STORAGE_KEY_GAS = 1_900
"""EIP-2930 ACCESS_LIST_STORAGE_KEY_COST."""

CREATE_GAS = 32_000
"""G_txcreate: extra intrinsic gas of a contract-creation transaction (EIP-2)."""

INITCODE_WORD_GAS = 2
"""EIP-3860: per 32-byte word of initcode in a creation transaction."""

TX_GAS_LIMIT_CAP = 2**24
"""EIP-7825: no transaction may have a gas limit above 16,777,216."""

TXPOOL_MAX_TX_BYTES = 4 * 32 * 1024
"""geth/reth txpool txMaxSize: 128 KiB per encoded transaction, else rejected."""

TX_SIZE_OVERHEAD_BYTES = 300
"""A type-2 tx's bytes besides calldata (fields, signature, RLP headers, 20-byte `to`): measured
~150, with margin."""


def calldata_tokens(data: bytes) -> int:
    """EIP-7623 tokens: zero bytes + 4 x nonzero bytes."""
    zeros = data.count(0)
    return zeros + NONZERO_BYTE_TOKENS * (len(data) - zeros)


def _access_list_gas(access_list: Sequence[tuple[bytes, Sequence[bytes]]]) -> int:
    return sum(
        ACCESS_LIST_ADDRESS_GAS + ACCESS_LIST_STORAGE_KEY_GAS * len(keys) for _, keys in access_list
    )


def intrinsic_gas(
    data: bytes,
    access_list: Sequence[tuple[bytes, Sequence[bytes]]] = (),
    *,
    create: bool = False,
) -> int:
    """Standard intrinsic gas (before the floor): base + 4/16 per byte + access list."""
    gas = TX_BASE_GAS + STANDARD_GAS_PER_TOKEN * calldata_tokens(data)
    gas += _access_list_gas(access_list)
    if create:
        gas += CREATE_GAS + INITCODE_WORD_GAS * ((len(data) + 31) // 32)
    return gas


def floor_gas(data: bytes) -> int:
    """EIP-7623 floor: 21000 + 10 x tokens. A gas limit below this is rejected."""
    return TX_BASE_GAS + FLOOR_GAS_PER_TOKEN * calldata_tokens(data)


def gas_used(
    data: bytes,
    execution_gas: int = 0,
    access_list: Sequence[tuple[bytes, Sequence[bytes]]] = (),
) -> int:
    """Gas a transaction uses: max(intrinsic + execution, floor) (EIP-7623)."""
    return max(intrinsic_gas(data, access_list) + execution_gas, floor_gas(data))


def max_payload_bytes(
    gas_limit: int,
    *,
    execution_gas_fixed: int = 0,
    execution_gas_per_byte: int = 0,
    max_tx_bytes: int = TXPOOL_MAX_TX_BYTES,
) -> int:
    """Largest calldata length that fits whatever its bytes: gas limit (EIP-7825 cap), floor,
    standard cost and the txpool size limit.
    """
    gas_limit = min(gas_limit, TX_GAS_LIMIT_CAP)
    budget = gas_limit - TX_BASE_GAS
    if budget <= 0:
        return 0
    per_byte_floor = FLOOR_GAS_PER_TOKEN * NONZERO_BYTE_TOKENS
    per_byte_std = STANDARD_GAS_PER_TOKEN * NONZERO_BYTE_TOKENS + execution_gas_per_byte
    by_floor = budget // per_byte_floor
    by_std = max(0, budget - execution_gas_fixed) // per_byte_std
    by_size = max(0, max_tx_bytes - TX_SIZE_OVERHEAD_BYTES)
    return max(0, min(by_floor, by_std, by_size))


GAS_LIMIT_SOURCES = ("local", "estimate")
"""``local``: computed here (OP-stack's L1 fee is outside gas); ``estimate``: eth_estimateGas."""

ESTIMATE_MARGIN_PERCENT = 25
"""Margin on the agreed estimate: the L1 price moves before inclusion (unused gas is refunded)."""


def estimated_gas_limit(estimates: Sequence[int], *, k: int, local: int, ceiling: int) -> int | str:
    """The gas limit from eth_estimateGas answers, or why to wait. Arbitrum's gas also buys the L1
    data: L2 gas + L1 cost / L2 gas price, in eth_estimateGas (developer.arbitrum.io/devs-how-tos/
    how-to-estimate-gas). The majority-reached answer (no minority bends it) + margin, never below
    ``local``; above ``ceiling``: refused."""
    agreed = quorum_fee(estimates, k)
    if agreed is None:
        return f"gas limit: {len(estimates)} endpoint(s) answered eth_estimateGas, {k} needed"
    if agreed > ceiling:
        return f"gas limit: the estimate {agreed} is above the ceiling {ceiling} (max_gas_limit)"
    padded = -(-agreed * (100 + ESTIMATE_MARGIN_PERCENT) // 100)
    return max(local, min(ceiling, padded))
