"""Fee policies: gas and price per gas for a message transaction. Pure.

A policy answers a :class:`FeeQuote`, a :class:`Hold` (the message waits, never dropped) or raises
:class:`~lightpost.errors.PolicyError` (can never fit). Gas limit = gas_used + a margin on
execution; :func:`bump` follows geth's legacypool. docs/protocol.md, "Fees".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lightpost.core.gas import (
    TX_BASE_GAS,
    TX_GAS_LIMIT_CAP,
    TX_SIZE_OVERHEAD_BYTES,
    TXPOOL_MAX_TX_BYTES,
    gas_used,
    max_payload_bytes,
)
from lightpost.errors import ConfigError, PolicyError

__all__ = [
    "DEFAULT_BASE_FEE_MULTIPLIER",
    "DEFAULT_MAX_FEE_CAP",
    "DEFAULT_PRIORITY_FEE",
    "EXECUTION_GAS_MARGIN_PERCENT",
    "GWEI",
    "PAPER_GAS_LIMIT",
    "PAPER_GAS_PRICE",
    "REPLACEMENT_BUMP_PERCENT",
    "Eip1559FeePolicy",
    "FeePolicy",
    "FeeQuote",
    "FixedFeePolicy",
    "FixedGasLimitExceeded",
    "Hold",
    "bump",
    "gas_limit_with_margin",
    "max_payload_for",
]

GWEI = 10**9
"""Wei per gwei."""

PAPER_GAS_PRICE = 30 * GWEI
"""The MIT paper's fixed gas price: 30 gwei per gas."""

PAPER_GAS_LIMIT = 210_000
"""The MIT paper's fixed gas limit: 4,725 nonzero payload bytes under EIP-7623 ((210,000 - 21,000) /
40)."""

REPLACEMENT_BUMP_PERCENT = 10
"""geth legacypool PriceBump default: a replacement raises fee cap AND tip by >= 10%."""

DEFAULT_PRIORITY_FEE = 1 * GWEI
"""Default tip per gas, as anvil and wallets suggest; tune per chain (eth_maxPriorityFeePerGas)."""

DEFAULT_BASE_FEE_MULTIPLIER = 2
"""Fee cap = 2 x base fee + tip: includable through 6 full blocks (EIP-1559: +1/8 per block;
1.125**6 = 2.03)."""

DEFAULT_MAX_FEE_CAP = 100 * GWEI
"""Hard cap per gas the EIP-1559 policy ever offers (a budget choice); above it: held."""

EXECUTION_GAS_MARGIN_PERCENT = 25
"""Margin on an execution gas *estimate* (slots cold or warm, EIP-2929); calldata gas is exact."""

_PERCENT = 100


def _ceil_percent(value: int, percent: int) -> int:
    # ceil(value * percent / 100) in integers.
    return -(-value * percent // _PERCENT)


def _execution_with_margin(execution_gas: int) -> int:
    return _ceil_percent(execution_gas, _PERCENT + EXECUTION_GAS_MARGIN_PERCENT)


def _check_non_negative(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError("invalid-input", f"{what} must be a non-negative integer")
    return value


def gas_limit_with_margin(data: bytes, execution_gas: int = 0) -> int:
    """The gas limit a payload needs (EIP-7623), uncapped: compare with EIP-7825's cap."""
    _check_non_negative(execution_gas, "execution gas")
    return gas_used(data, _execution_with_margin(execution_gas))


def _check_size(data: bytes) -> None:
    # geth/reth txpools refuse encoded transactions over 128 KiB (txMaxSize).
    limit = TXPOOL_MAX_TX_BYTES - TX_SIZE_OVERHEAD_BYTES
    if len(data) > limit:
        raise PolicyError(
            "txpool-size",
            f"{len(data)} bytes of calldata exceed the txpool limit of {limit}: split the payload",
        )


# --- results ---


@dataclass(frozen=True, slots=True, kw_only=True)
class FeeQuote:
    """What to put into a type-2 transaction: gas limit, fee cap and tip (EIP-1559)."""

    gas_limit: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    def __post_init__(self) -> None:
        _check_non_negative(self.gas_limit, "gas_limit")
        _check_non_negative(self.max_fee_per_gas, "max_fee_per_gas")
        _check_non_negative(self.max_priority_fee_per_gas, "max_priority_fee_per_gas")
        if not TX_BASE_GAS <= self.gas_limit <= TX_GAS_LIMIT_CAP:
            raise PolicyError("invalid-input", "gas_limit outside [21000, EIP-7825 cap]")
        if self.max_priority_fee_per_gas > self.max_fee_per_gas:
            # EIP-1559: "max priority fee per gas higher than max fee per gas" is invalid.
            raise PolicyError("invalid-input", "tip above fee cap (EIP-1559)")

    @property
    def max_cost(self) -> int:
        """gas_limit x max_fee_per_gas: the balance a node requires (plus value)."""
        return self.gas_limit * self.max_fee_per_gas

    def effective_gas_price(self, base_fee: int) -> int:
        """EIP-1559: min(fee cap, base fee + tip) -- what each gas unit actually costs."""
        return min(self.max_fee_per_gas, base_fee + self.max_priority_fee_per_gas)


@dataclass(frozen=True, slots=True)
class Hold:
    """Do not send now: the base fee is above what the policy may pay. Retry later."""

    reason: str


class FixedGasLimitExceeded(PolicyError):
    """The paper's fixed gas limit cannot carry this payload: split it (``max_payload_bytes``
    fits, worst case).
    """

    def __init__(self, needed_gas: int, gas_limit: int, max_payload: int) -> None:
        self.needed_gas = needed_gas
        self.gas_limit = gas_limit
        self.max_payload_bytes = max_payload
        super().__init__(
            "fixed-gas-limit",
            f"payload needs {needed_gas} gas, the fixed limit is {gas_limit}: "
            f"split it into pieces of at most {max_payload} bytes",
        )


# --- policies ---


class FeePolicy(Protocol):
    """What every fee policy offers (the outbox depends on this, not a class)."""

    @property
    def hard_cap(self) -> int:
        """The highest fee cap per gas the policy may ever offer."""
        ...

    def gas_limit_for(self, data: bytes, execution_gas: int = 0) -> int:
        """The gas limit for this payload; PolicyError if it can never fit."""
        ...

    def price(self, base_fee: int) -> tuple[int, int] | Hold:
        """(max_fee_per_gas, max_priority_fee_per_gas) at this base fee, or Hold."""
        ...

    def quote(self, data: bytes, execution_gas: int, base_fee: int) -> FeeQuote | Hold:
        """Gas limit and prices for this payload now; Hold; or PolicyError."""
        ...


def _quote(policy: FeePolicy, data: bytes, execution_gas: int, base_fee: int) -> FeeQuote | Hold:
    # The gas limit first: a payload that can never fit is an error even while fees wait.
    gas_limit = policy.gas_limit_for(data, execution_gas)
    priced = policy.price(base_fee)
    if isinstance(priced, Hold):
        return priced
    max_fee, tip = priced
    return FeeQuote(gas_limit=gas_limit, max_fee_per_gas=max_fee, max_priority_fee_per_gas=tip)


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedFeePolicy:
    """The MIT paper's mode: one gas price and gas limit for every message (type 2, fee cap = tip =
    ``gas_price``). A payload over ``gas_limit`` raises :class:`FixedGasLimitExceeded` rather
    than fail on chain; ``max_fee_cap`` (default ``gas_price``: never raised) bounds
    :func:`bump`."""

    gas_price: int = PAPER_GAS_PRICE
    gas_limit: int = PAPER_GAS_LIMIT
    max_fee_cap: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.gas_price, bool) or not isinstance(self.gas_price, int):
            raise ConfigError("gas_price must be an integer (wei per gas)")
        if self.gas_price <= 0:
            raise ConfigError("gas_price must be positive")
        if isinstance(self.gas_limit, bool) or not isinstance(self.gas_limit, int):
            raise ConfigError("gas_limit must be an integer")
        if not TX_BASE_GAS <= self.gas_limit <= TX_GAS_LIMIT_CAP:
            raise ConfigError(f"gas_limit must be in [{TX_BASE_GAS}, {TX_GAS_LIMIT_CAP}]")
        if self.max_fee_cap is not None and (
            isinstance(self.max_fee_cap, bool)
            or not isinstance(self.max_fee_cap, int)
            or self.max_fee_cap < self.gas_price
        ):
            raise ConfigError("max_fee_cap must be an integer >= gas_price")

    @property
    def hard_cap(self) -> int:
        """``max_fee_cap`` if set, else ``gas_price`` (no bumping)."""
        return self.gas_price if self.max_fee_cap is None else self.max_fee_cap

    def gas_limit_for(self, data: bytes, execution_gas: int = 0) -> int:
        """Always ``gas_limit``; refuses a payload that needs more."""
        _check_size(data)
        needed = gas_limit_with_margin(data, execution_gas)
        if needed > self.gas_limit:
            hint = max_payload_bytes(
                self.gas_limit, execution_gas_fixed=_execution_with_margin(execution_gas)
            )
            raise FixedGasLimitExceeded(needed, self.gas_limit, hint)
        return self.gas_limit

    def price(self, base_fee: int) -> tuple[int, int] | Hold:
        """(gas_price, gas_price), or Hold while the base fee is above gas_price."""
        _check_non_negative(base_fee, "base fee")
        if base_fee > self.gas_price:
            return Hold(
                f"base fee {base_fee} wei is above the fixed gas price {self.gas_price} wei"
            )
        return self.gas_price, self.gas_price

    def quote(self, data: bytes, execution_gas: int, base_fee: int) -> FeeQuote | Hold:
        """See :class:`FeePolicy`."""
        return _quote(self, data, execution_gas, base_fee)


@dataclass(frozen=True, slots=True, kw_only=True)
class Eip1559FeePolicy:
    """EIP-1559: fee cap = multiplier x base fee + tip, never above ``max_fee_cap`` (Hold while the
    base fee is above it); the gas limit never exceeds EIP-7825's cap."""

    max_fee_cap: int = DEFAULT_MAX_FEE_CAP
    priority_fee: int = DEFAULT_PRIORITY_FEE
    base_fee_multiplier: int = DEFAULT_BASE_FEE_MULTIPLIER

    def __post_init__(self) -> None:
        for name in ("max_fee_cap", "priority_fee", "base_fee_multiplier"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer")
        if self.max_fee_cap <= 0:
            raise ConfigError("max_fee_cap must be positive")
        if self.base_fee_multiplier < 1:
            raise ConfigError("base_fee_multiplier must be >= 1")
        if self.priority_fee > self.max_fee_cap:
            raise ConfigError("priority_fee must not exceed max_fee_cap (EIP-1559)")

    @property
    def hard_cap(self) -> int:
        """``max_fee_cap``."""
        return self.max_fee_cap

    def gas_limit_for(self, data: bytes, execution_gas: int = 0) -> int:
        """Need + execution margin, clamped to EIP-7825's cap; refuses what cannot fit."""
        _check_size(data)
        bare = gas_used(data, _check_non_negative(execution_gas, "execution gas"))
        if bare > TX_GAS_LIMIT_CAP:
            raise PolicyError(
                "tx-gas-cap",
                f"payload needs {bare} gas, above the EIP-7825 cap {TX_GAS_LIMIT_CAP}: split it",
            )
        # The margin is a safety allowance, so it may be cut short by the cap.
        return min(gas_limit_with_margin(data, execution_gas), TX_GAS_LIMIT_CAP)

    def price(self, base_fee: int) -> tuple[int, int] | Hold:
        """(min(cap, multiplier x base + tip), tip), or Hold while base fee > cap."""
        _check_non_negative(base_fee, "base fee")
        if base_fee > self.max_fee_cap:
            return Hold(f"base fee {base_fee} wei is above the fee cap {self.max_fee_cap} wei")
        max_fee = min(self.max_fee_cap, self.base_fee_multiplier * base_fee + self.priority_fee)
        return max_fee, min(self.priority_fee, max_fee)

    def quote(self, data: bytes, execution_gas: int, base_fee: int) -> FeeQuote | Hold:
        """See :class:`FeePolicy`."""
        return _quote(self, data, execution_gas, base_fee)


# --- capacity and replacement ---


def max_payload_for(
    policy: FeePolicy, execution_gas_fixed: int = 0, execution_gas_per_byte: int = 0
) -> int:
    """Largest payload (worst case all nonzero) ``policy`` accepts; execution gas is
    ``fixed + per_byte x len``, both with the margin."""
    _check_non_negative(execution_gas_fixed, "execution_gas_fixed")
    _check_non_negative(execution_gas_per_byte, "execution_gas_per_byte")
    gas_limit = policy.gas_limit if isinstance(policy, FixedFeePolicy) else TX_GAS_LIMIT_CAP
    return max_payload_bytes(
        gas_limit,
        execution_gas_fixed=_execution_with_margin(execution_gas_fixed),
        # ceil(1.25 x (f + p n)) <= ceil(1.25 f) + n ceil(1.25 p): the bound stays safe.
        execution_gas_per_byte=_execution_with_margin(execution_gas_per_byte),
    )


def _bumped(value: int) -> int:
    # At least value x (100 + bump) / 100, rounded up, and strictly more than value.
    return max(_ceil_percent(value, _PERCENT + REPLACEMENT_BUMP_PERCENT), value + 1)


def bump(quote: FeeQuote, policy: FeePolicy, base_fee: int) -> FeeQuote | Hold:
    """Prices replacing the tx sent with ``quote`` (same nonce and gas limit): fee cap and tip up by
    >= REPLACEMENT_BUMP_PERCENT (rounded up, >= 1 wei), never below a fresh quote; Hold above the
    policy's cap."""
    fresh = policy.price(base_fee)
    if isinstance(fresh, Hold):
        return fresh
    fresh_fee, fresh_tip = fresh
    max_fee = max(_bumped(quote.max_fee_per_gas), fresh_fee)
    tip = max(_bumped(quote.max_priority_fee_per_gas), fresh_tip)
    if max_fee > policy.hard_cap:
        return Hold(
            f"a replacement needs a fee cap of {max_fee} wei, above the policy cap "
            f"{policy.hard_cap} wei"
        )
    # tip <= max_fee holds: _bumped is monotonic and the fresh tip <= the fresh fee cap.
    return FeeQuote(
        gas_limit=quote.gas_limit, max_fee_per_gas=max_fee, max_priority_fee_per_gas=tip
    )
