"""Fee policies: the paper's fixed mode, EIP-1559 pricing, holds, capacity, replacement."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core.fees import (
    DEFAULT_MAX_FEE_CAP,
    DEFAULT_PRIORITY_FEE,
    GWEI,
    PAPER_GAS_LIMIT,
    PAPER_GAS_PRICE,
    REPLACEMENT_BUMP_PERCENT,
    Eip1559FeePolicy,
    FeeQuote,
    FixedFeePolicy,
    FixedGasLimitExceeded,
    Hold,
    bump,
    gas_limit_with_margin,
    max_payload_for,
)
from lightpost.core.gas import TX_GAS_LIMIT_CAP, gas_used
from lightpost.errors import ConfigError, PolicyError
from tests.node.fakechain import is_acceptable_replacement

BASE_FEE = 1 * GWEI


# --- the paper's fixed mode -------------------------------------------------------------


def test_paper_constants() -> None:
    assert PAPER_GAS_PRICE == 30 * 10**9
    assert PAPER_GAS_LIMIT == 210_000
    assert REPLACEMENT_BUMP_PERCENT == 10


def test_fixed_accepts_4725_nonzero_bytes() -> None:
    quote = FixedFeePolicy().quote(b"\x01" * 4725, 0, BASE_FEE)
    assert quote == FeeQuote(
        gas_limit=210_000, max_fee_per_gas=PAPER_GAS_PRICE, max_priority_fee_per_gas=PAPER_GAS_PRICE
    )
    assert gas_used(b"\x01" * 4725) == 210_000  # exactly at the limit, not over


@pytest.mark.parametrize("size", [4726, 4727, 5000, 100_000])
def test_fixed_refuses_4726_and_more_nonzero_bytes(size: int) -> None:
    with pytest.raises(FixedGasLimitExceeded) as info:
        FixedFeePolicy().quote(b"\x01" * size, 0, BASE_FEE)
    err = info.value
    assert isinstance(err, PolicyError) and err.rule == "fixed-gas-limit"
    assert err.max_payload_bytes == 4725
    assert err.needed_gas == gas_used(b"\x01" * size) > err.gas_limit == 210_000
    assert "4725" in str(err)


def test_fixed_zero_bytes_are_cheaper() -> None:
    # 18,900 zero bytes cost exactly 210,000 under the floor (10 gas per zero byte).
    assert FixedFeePolicy().gas_limit_for(bytes(18_900)) == 210_000
    with pytest.raises(FixedGasLimitExceeded):
        FixedFeePolicy().gas_limit_for(bytes(18_901))


def test_fixed_refusal_is_raised_even_when_fees_would_hold() -> None:
    with pytest.raises(FixedGasLimitExceeded):
        FixedFeePolicy().quote(b"\x01" * 5000, 0, 10**6 * GWEI)


def test_fixed_execution_gas_counts_with_margin() -> None:
    policy = FixedFeePolicy()
    # 100 bytes standard 21000 + 1600; execution 100,000 + 25% margin = 125,000 -> 147,600.
    assert gas_limit_with_margin(b"\x01" * 100, 100_000) == 147_600
    assert policy.gas_limit_for(b"\x01" * 100, 100_000) == PAPER_GAS_LIMIT
    with pytest.raises(FixedGasLimitExceeded):
        policy.gas_limit_for(b"\x01" * 100, 160_000)  # 21000 + 1600 + 200,000


def test_fixed_holds_when_base_fee_above_price() -> None:
    held = FixedFeePolicy().quote(b"hello", 0, PAPER_GAS_PRICE + 1)
    assert isinstance(held, Hold)
    assert "fixed gas price" in held.reason
    assert isinstance(FixedFeePolicy().quote(b"hello", 0, PAPER_GAS_PRICE), FeeQuote)


def test_fixed_never_bumps_by_default_but_may_with_a_cap() -> None:
    policy = FixedFeePolicy()
    quote = policy.quote(b"x", 0, BASE_FEE)
    assert isinstance(quote, FeeQuote)
    assert isinstance(bump(quote, policy, BASE_FEE), Hold)
    generous = FixedFeePolicy(max_fee_cap=2 * PAPER_GAS_PRICE)
    bumped = bump(quote, generous, BASE_FEE)
    assert isinstance(bumped, FeeQuote)
    assert bumped.max_fee_per_gas == bumped.max_priority_fee_per_gas == 33 * GWEI


def test_max_payload_for_fixed_mode() -> None:
    policy = FixedFeePolicy()
    assert max_payload_for(policy) == 4725
    # An inbox call: fixed execution shrinks the room (standard path binds).
    small = max_payload_for(policy, execution_gas_fixed=100_000, execution_gas_per_byte=8)
    assert 0 < small < 4725


@settings(max_examples=150, deadline=None)
@given(
    fixed=st.integers(0, 150_000),
    per_byte=st.integers(0, 64),
    limit=st.integers(21_000, 2_000_000),
)
def test_max_payload_for_is_accepted_by_quote(fixed: int, per_byte: int, limit: int) -> None:
    """Every payload up to max_payload_for quotes without PolicyError (worst-case bytes)."""
    policy = FixedFeePolicy(gas_limit=limit)
    n = max_payload_for(policy, fixed, per_byte)
    if n == 0:
        return
    data = b"\xff" * n
    assert policy.gas_limit_for(data, fixed + per_byte * n) == limit


# --- EIP-1559 ------------------------------------------------------------------------------


def test_eip1559_quote_plain_transfer_is_exact() -> None:
    policy = Eip1559FeePolicy()
    quote = policy.quote(b"\x01" * 1000, 0, BASE_FEE)
    assert isinstance(quote, FeeQuote)
    assert quote.gas_limit == 61_000  # measured on anvil: 1,000 nonzero bytes
    assert quote.max_fee_per_gas == 2 * BASE_FEE + DEFAULT_PRIORITY_FEE
    assert quote.max_priority_fee_per_gas == DEFAULT_PRIORITY_FEE
    assert quote.max_cost == 61_000 * 3 * GWEI
    assert quote.effective_gas_price(BASE_FEE) == 2 * GWEI


def test_eip1559_margin_only_on_execution() -> None:
    policy = Eip1559FeePolicy()
    data = b"\x01" * 100
    # Standard path binds: 21000 + 1600 + 40,000 x 1.25.
    assert policy.gas_limit_for(data, 40_000) == 21_000 + 1_600 + 50_000
    # Floor binds for big payloads: the margin disappears under the floor.
    big = b"\x01" * 10_000
    assert policy.gas_limit_for(big, 5_000) == gas_used(big) == 421_000


def test_eip1559_caps_fee_and_holds_above_cap() -> None:
    policy = Eip1559FeePolicy(max_fee_cap=10 * GWEI, priority_fee=GWEI)
    near = policy.quote(b"", 0, 8 * GWEI)
    assert isinstance(near, FeeQuote)
    assert near.max_fee_per_gas == 10 * GWEI  # 2 x 8 + 1 capped to 10
    at_cap = policy.quote(b"", 0, 10 * GWEI)
    assert isinstance(at_cap, FeeQuote) and at_cap.max_fee_per_gas == 10 * GWEI
    held = policy.quote(b"", 0, 10 * GWEI + 1)
    assert isinstance(held, Hold)
    assert "above the fee cap" in held.reason


def test_eip1559_gas_cap_and_size() -> None:
    policy = Eip1559FeePolicy()
    with pytest.raises(PolicyError) as info:
        policy.gas_limit_for(b"", TX_GAS_LIMIT_CAP)
    assert info.value.rule == "tx-gas-cap"
    # The margin may be clipped by EIP-7825's cap but never exceed it.
    assert policy.gas_limit_for(b"", TX_GAS_LIMIT_CAP - 21_000) == TX_GAS_LIMIT_CAP
    with pytest.raises(PolicyError) as info:
        policy.gas_limit_for(bytes(200_000))
    assert info.value.rule == "txpool-size"
    n = max_payload_for(policy)
    assert policy.gas_limit_for(b"\xff" * n) <= TX_GAS_LIMIT_CAP
    with pytest.raises(PolicyError):
        policy.gas_limit_for(b"\xff" * (n + 1))


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=3000),
    execution=st.integers(0, 3_000_000),
    base_fee=st.integers(0, 500 * GWEI),
)
def test_eip1559_quote_invariants(data: bytes, execution: int, base_fee: int) -> None:
    policy = Eip1559FeePolicy()
    quote = policy.quote(data, execution, base_fee)
    if base_fee > DEFAULT_MAX_FEE_CAP:
        assert isinstance(quote, Hold)
        return
    assert isinstance(quote, FeeQuote)
    assert gas_used(data, execution) <= quote.gas_limit <= TX_GAS_LIMIT_CAP
    assert base_fee <= quote.max_fee_per_gas <= DEFAULT_MAX_FEE_CAP
    assert quote.max_priority_fee_per_gas <= quote.max_fee_per_gas


# --- replacement ------------------------------------------------------------------------------


def test_bump_raises_both_by_ten_percent_rounded_up() -> None:
    policy = Eip1559FeePolicy()
    old = FeeQuote(gas_limit=21_000, max_fee_per_gas=3 * GWEI + 1, max_priority_fee_per_gas=7)
    new = bump(old, policy, BASE_FEE)
    assert isinstance(new, FeeQuote)
    assert new.max_fee_per_gas == 3_300_000_002  # ceil(1.1 x 3,000,000,001)
    # 1.1 x 7 = 7.7 -> 8, but the fresh quote's 1 gwei tip is higher.
    assert new.max_priority_fee_per_gas == DEFAULT_PRIORITY_FEE
    assert new.gas_limit == old.gas_limit
    assert is_acceptable_replacement(old, new)


def test_bump_from_zero_is_strictly_higher() -> None:
    policy = Eip1559FeePolicy(priority_fee=0)
    old = FeeQuote(gas_limit=21_000, max_fee_per_gas=0, max_priority_fee_per_gas=0)
    new = bump(old, policy, 0)
    assert isinstance(new, FeeQuote)
    assert (new.max_fee_per_gas, new.max_priority_fee_per_gas) == (1, 1)
    assert is_acceptable_replacement(old, new)


def test_is_acceptable_replacement_mirrors_geth() -> None:
    old = FeeQuote(gas_limit=21_000, max_fee_per_gas=100, max_priority_fee_per_gas=10)

    def q(fee: int, tip: int) -> FeeQuote:
        return FeeQuote(gas_limit=21_000, max_fee_per_gas=fee, max_priority_fee_per_gas=tip)

    assert is_acceptable_replacement(old, q(110, 11))
    assert not is_acceptable_replacement(old, q(109, 11))  # fee cap +9%
    assert not is_acceptable_replacement(old, q(200, 10))  # tip not raised
    assert not is_acceptable_replacement(old, q(110, 10))


def test_bump_holds_at_cap() -> None:
    policy = Eip1559FeePolicy(max_fee_cap=10 * GWEI)
    old = FeeQuote(gas_limit=21_000, max_fee_per_gas=95 * GWEI // 10, max_priority_fee_per_gas=GWEI)
    held = bump(old, policy, BASE_FEE)
    assert isinstance(held, Hold)
    assert "above the policy cap" in held.reason
    assert isinstance(bump(old, policy, 11 * GWEI), Hold)  # base fee itself above the cap


@settings(max_examples=300, deadline=None)
@given(
    tip=st.integers(0, 200 * GWEI),
    extra=st.integers(0, 200 * GWEI),
    base_fee=st.integers(0, 300 * GWEI),
    cap=st.integers(1, 400 * GWEI),
    priority=st.integers(0, 5 * GWEI),
    multiplier=st.integers(1, 4),
)
def test_bump_property(
    tip: int, extra: int, base_fee: int, cap: int, priority: int, multiplier: int
) -> None:
    policy = Eip1559FeePolicy(
        max_fee_cap=max(cap, priority), priority_fee=priority, base_fee_multiplier=multiplier
    )
    old = FeeQuote(gas_limit=50_000, max_fee_per_gas=tip + extra, max_priority_fee_per_gas=tip)
    new = bump(old, policy, base_fee)
    if isinstance(new, Hold):
        needed = -(-(tip + extra) * 110 // 100)
        assert base_fee > policy.max_fee_cap or max(needed, tip + extra + 1) > policy.max_fee_cap
        return
    assert is_acceptable_replacement(old, new)
    assert new.max_fee_per_gas * 100 >= old.max_fee_per_gas * 110
    assert new.max_priority_fee_per_gas * 100 >= old.max_priority_fee_per_gas * 110
    assert new.max_fee_per_gas <= policy.max_fee_cap
    assert new.max_priority_fee_per_gas <= new.max_fee_per_gas
    assert new.gas_limit == old.gas_limit


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (FixedFeePolicy, {"gas_price": 0}),
        (FixedFeePolicy, {"gas_limit": 20_999}),
        (FixedFeePolicy, {"gas_limit": TX_GAS_LIMIT_CAP + 1}),
        (FixedFeePolicy, {"max_fee_cap": 1}),
        (FixedFeePolicy, {"gas_price": 1.5}),
        (Eip1559FeePolicy, {"max_fee_cap": 0}),
        (Eip1559FeePolicy, {"priority_fee": -1}),
        (Eip1559FeePolicy, {"base_fee_multiplier": 0}),
        (Eip1559FeePolicy, {"max_fee_cap": GWEI, "priority_fee": 2 * GWEI}),
    ],
)
def test_policy_config_validation(cls: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        cls(**kwargs)


def test_fee_quote_validation() -> None:
    with pytest.raises(PolicyError):
        FeeQuote(gas_limit=21_000, max_fee_per_gas=1, max_priority_fee_per_gas=2)
    with pytest.raises(PolicyError):
        FeeQuote(gas_limit=TX_GAS_LIMIT_CAP + 1, max_fee_per_gas=1, max_priority_fee_per_gas=1)
    with pytest.raises(PolicyError):
        Eip1559FeePolicy().quote(b"", -1, BASE_FEE)
    with pytest.raises(PolicyError):
        Eip1559FeePolicy().quote(b"", 0, -1)
