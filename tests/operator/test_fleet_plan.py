"""fleet provision's pure planning: targets from the reading rate, top-ups never beyond the target,
and a total above the cap refused whole."""

from __future__ import annotations

import pytest

from lightpost.errors import ConfigError, PolicyError
from lightpost_operator.fleet import (
    FIRST_POST_EXTRA_GAS,
    GAS_PER_READING,
    device_budget_wei,
    format_ether,
    parse_amount,
    plan_funding,
)

ETH = 10**18
GWEI = 10**9


def test_the_measured_gas_figures_are_those_of_docs_benchmarks() -> None:
    # docs/benchmarks.md: 37,454 gas for one 100-byte reading per channel post; 71,246 for the first
    assert GAS_PER_READING == 37_454
    assert GAS_PER_READING + FIRST_POST_EXTRA_GAS == 71_246


@pytest.mark.parametrize(
    ("per_day", "days", "gas", "price", "expected"),
    [
        (0, 30, 37_454, GWEI, FIRST_POST_EXTRA_GAS * GWEI),  # no readings: the first post only
        (1440, 30, 37_454, GWEI, (1440 * 30 * 37_454 + FIRST_POST_EXTRA_GAS) * GWEI),
        (24, 365, 2_494, 3 * GWEI, (24 * 365 * 2_494 + FIRST_POST_EXTRA_GAS) * 3 * GWEI),
        (10, 1, 37_454, 0, 0),  # a free chain
    ],
)
def test_device_budget(per_day: int, days: int, gas: int, price: int, expected: int) -> None:
    got = device_budget_wei(
        readings_per_day=per_day, days=days, gas_per_reading=gas, gas_price=price
    )
    assert got == expected


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_device_budget_refuses_bad_numbers(bad: object) -> None:
    with pytest.raises(PolicyError, match="non-negative integer"):
        device_budget_wei(readings_per_day=bad, days=1, gas_per_reading=1, gas_price=1)  # type: ignore[arg-type]


FEE = 21_000 * 3 * GWEI  # one transfer's fee bound at a 3 gwei fee cap


@pytest.mark.parametrize(
    ("balances", "target", "cap", "topups", "total"),
    [
        # three empty devices, the cap exactly reached: allowed
        (
            {"a": 0, "b": 0, "c": 0},
            ETH,
            3 * ETH + 3 * FEE,
            (("a", ETH), ("b", ETH), ("c", ETH)),
            3 * ETH + 3 * FEE,
        ),
        # a funded device gets nothing; a half-funded one only the rest; an over-funded one nothing
        ({"a": ETH, "b": ETH // 2, "c": 2 * ETH}, ETH, ETH, (("b", ETH // 2),), ETH // 2 + FEE),
        # everything funded: an empty plan costs nothing, even with a zero cap
        ({"a": ETH, "b": ETH}, ETH, 0, (), 0),
    ],
)
def test_plan_tops_up_to_the_target_only(
    balances: dict[str, int], target: int, cap: int, topups: tuple[tuple[str, int], ...], total: int
) -> None:
    plan = plan_funding(balances, target_wei=target, transfer_cost_wei=FEE, cap_wei=cap)
    assert plan.topups == topups
    assert plan.total_wei == total <= cap
    assert plan.fees_wei == len(topups) * FEE


@pytest.mark.parametrize(
    ("balances", "target", "cap"),
    [
        ({"a": 0, "b": 0, "c": 0}, ETH, 3 * ETH + 3 * FEE - 1),  # one wei over: the fees count too
        ({"a": 0}, ETH, ETH),  # the value fits, its fee does not
        ({f"d{i}": 0 for i in range(1000)}, 10**15, 10**17),
    ],
)
def test_a_plan_above_the_cap_is_refused_whole(
    balances: dict[str, int], target: int, cap: int
) -> None:
    with pytest.raises(PolicyError) as err:
        plan_funding(balances, target_wei=target, transfer_cost_wei=FEE, cap_wei=cap)
    assert err.value.rule == "fleet-cap"
    assert f"above the cap of {format_ether(cap)} ETH" in str(err.value)


@pytest.mark.parametrize("bad", [-1, True, 1.0])
def test_plan_refuses_bad_numbers(bad: object) -> None:
    with pytest.raises(PolicyError, match="non-negative integer of wei"):
        plan_funding({"a": bad}, target_wei=1, transfer_cost_wei=0, cap_wei=10)  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("text", "unit", "wei"),
    [
        ("0.05", ETH, 5 * 10**16),
        ("1", ETH, ETH),
        ("1e-18", ETH, 1),
        ("2.5", GWEI, 2_500_000_000),
        (" 0 ", ETH, 0),
    ],
)
def test_amounts_parse_exactly(text: str, unit: int, wei: int) -> None:
    assert parse_amount(text, "--x", unit) == wei
    assert parse_amount(format_ether(wei, unit), "--x", unit) == wei


@pytest.mark.parametrize("text", ["", "abc", "-1", "1e-19", "nan", "inf", "0x10"])
def test_bad_amounts_are_one_line(text: str) -> None:
    with pytest.raises(ConfigError, match="--cap-eth must be"):
        parse_amount(text, "--cap-eth")


def test_format_ether() -> None:
    assert [format_ether(w) for w in (0, 1, ETH, 15 * 10**17)] == [
        "0",
        "0.000000000000000001",
        "1",
        "1.5",
    ]
    assert format_ether(3 * GWEI + 1, GWEI) == "3.000000001"


class StubChain:
    """What _fund asks before it sends (nonces, the funder balance); broadcast must not run."""

    def __init__(self, latest: int, pending: int, balance: int) -> None:
        self.nonces = {"latest": latest, "pending": pending}
        self.funds = balance

    def nonce(self, address: bytes, tag: str = "latest") -> int:
        return self.nonces[tag]

    def balance(self, address: bytes) -> int:
        return self.funds

    def broadcast(self, raw: bytes, tx_hash: bytes) -> object:
        raise AssertionError("a transfer was sent")


@pytest.mark.parametrize(
    ("latest", "pending", "balance", "needle"),
    [
        (5, 6, 10 * ETH, "the funder has transactions in flight"),  # a previous run's transfer
        (5, 5, ETH, "less than the plan's"),
    ],
)
def test_nothing_is_sent_while_a_transfer_is_in_flight_or_funds_are_short(
    latest: int, pending: int, balance: int, needle: str
) -> None:
    from lightpost.core.fees import FeeQuote
    from lightpost.core.keys import PrivateKey
    from lightpost.errors import ChainProcessError
    from lightpost_operator.fleet import _fund

    plan = plan_funding({"a": 0, "b": 0}, target_wei=ETH, transfer_cost_wei=FEE, cap_wei=3 * ETH)
    quote = FeeQuote(gas_limit=21_000, max_fee_per_gas=3 * GWEI, max_priority_fee_per_gas=GWEI)
    funder = PrivateKey(b"\x01" * 32)
    with pytest.raises(ChainProcessError, match=needle):
        _fund(StubChain(latest, pending, balance), 31337, funder, plan,  # type: ignore[arg-type]
              {"a": b"\xaa" * 20, "b": b"\xbb" * 20}, quote, print)  # fmt: skip
