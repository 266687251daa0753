"""The gas limit from the endpoints' estimates (core.gas.estimated_gas_limit) and which chains use
it (core.profiles): table-driven, no socket."""

from __future__ import annotations

import pytest

from lightpost.core.gas import (
    ESTIMATE_MARGIN_PERCENT,
    GAS_LIMIT_SOURCES,
    TX_GAS_LIMIT_CAP,
    estimated_gas_limit,
)
from lightpost.core.profiles import PROFILES

LOCAL = 61_000
CEILING = 2_000_000


def padded(gas: int) -> int:
    return -(-gas * (100 + ESTIMATE_MARGIN_PERCENT) // 100)


# (estimates, k) -> gas limit, or the start of the reason to wait
CASES = [
    ([400_000, 400_000, 400_000], 2, padded(400_000)),  # all honest
    ([400_000, 10**9, 21_000], 2, padded(400_000)),  # one liar inflates, one deflates
    ([400_000, 401_000, 15_000_000], 2, padded(401_000)),  # honest spread: still honest range
    ([21_000, 21_000, 400_000], 2, LOCAL),  # a deflating majority: never below our own floor
    ([10**9, 10**9, 400_000], 2, "gas limit: the estimate 1000000000 is above the ceiling"),
    ([1_700_000], 1, CEILING),  # the margin is cut short by the ceiling, the estimate is not
    ([400_000], 2, "gas limit: 1 endpoint(s) answered eth_estimateGas, 2 needed"),
    ([], 1, "gas limit: 0 endpoint(s) answered"),
    ([400_000, 500_000], 2, padded(400_000)),  # even count: the value both reach
]


@pytest.mark.parametrize(("estimates", "k", "expected"), CASES)
def test_estimated_gas_limit(estimates: list[int], k: int, expected: int | str) -> None:
    got = estimated_gas_limit(estimates, k=k, local=LOCAL, ceiling=CEILING)
    if isinstance(expected, str):
        assert isinstance(got, str) and got.startswith(expected)
    else:
        assert got == expected


def test_a_minority_cannot_bend_the_estimate() -> None:
    honest = [300_000, 300_000, 300_000]
    for lie in (0, 21_000, 10**12):
        for where in range(3):
            answers = list(honest)
            answers[where] = lie
            assert estimated_gas_limit(answers, k=2, local=LOCAL, ceiling=CEILING) == padded(
                300_000
            )


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("mainnet", "local"),
        ("sepolia", "local"),
        ("optimism", "local"),  # OP-stack charges the L1 data fee outside gas
        ("base", "local"),
        ("gnosis", "local"),
        ("devnet", "local"),
        ("arbitrum", "estimate"),  # the gas limit buys the L1 data component
        ("arbitrum-sepolia", "estimate"),
    ],
)
def test_which_chains_estimate(name: str, source: str) -> None:
    profile = PROFILES[name]
    assert profile.gas_limit_source == source in GAS_LIMIT_SOURCES
    assert profile.max_gas_limit == TX_GAS_LIMIT_CAP
