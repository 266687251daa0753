"""`doctor` on a profile whose gas limit is estimated (Arbitrum): eth_estimateGas is probed and
needed; an endpoint without it fails with the fix; elsewhere it is not asked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from lightpost.core.diagnosis import Cap
from lightpost_operator.doctor import ESTIMATE_FIX, diagnose, estimate_finding, examine, render
from tests.core.test_l2 import arb_block, op_block, op_receipts
from tests.operator.test_doctor_l2 import (
    ADDRESS,
    ARBITRUM_ONE,
    UNICHAIN_SEPOLIA,
    Recorded,
    config,
    found,
)


class Estimating(Recorded):
    """A recorded-block endpoint that also answers eth_estimateGas with ``estimate``."""

    def __init__(self, *args: Any, estimate: Any) -> None:
        super().__init__(*args)
        self.estimate = estimate
        self.asked: list[Any] = []

    def call(self, method: str, params: Sequence[Any]) -> Any:
        if method == "eth_estimateGas":
            self.asked.append(params[0])
            return self.estimate
        return super().call(method, params)


@pytest.mark.parametrize(
    ("answer", "ok", "detail"),
    [
        ("0x5208", True, "21000 gas for a transfer"),
        (hex(27_345), True, "27345 gas for a transfer (6345 above intrinsic: the L1 component)"),
        ("0x1", False, "1 gas, below 21000"),
        (None, False, "answered null"),
        ("lots", False, "invalid gas estimate"),
    ],
)
def test_estimate_finding(answer: Any, ok: bool, detail: str) -> None:
    got = estimate_finding(answer)
    assert (got.cap, got.ok) == (Cap.ESTIMATE, ok)
    assert detail in got.detail
    assert got.fix == ("" if ok else ESTIMATE_FIX)


def test_doctor_on_arbitrum_needs_eth_estimate_gas_and_says_the_fix() -> None:
    cfg = config(ARBITRUM_ONE)
    served = Estimating(ARBITRUM_ONE, arb_block(), estimate=hex(27_345))
    ok = found(examine(served, cfg, ADDRESS).findings, Cap.ESTIMATE)
    assert ok.ok is True and "L1 component" in ok.detail
    assert served.asked == [{"from": "0x" + ADDRESS.hex(), "to": "0x" + ADDRESS.hex()}]

    missing = examine(Recorded(ARBITRUM_ONE, arb_block()), cfg, ADDRESS)
    failed = found(missing.findings, Cap.ESTIMATE)
    assert failed.ok is False and "does not exist" in failed.detail
    report = diagnose(cfg, "included", [missing])
    assert "eth_estimateGas" in report["needs"]
    assert "eth_estimateGas" in report["endpoints"][0]["failures"]
    assert f"rpc#0 eth_estimateGas: {ESTIMATE_FIX}" in render(report)


def test_doctor_on_an_op_stack_chain_does_not_ask_for_estimates() -> None:
    ep = Estimating(UNICHAIN_SEPOLIA, op_block(), op_receipts(), estimate="0x5208")
    probe = examine(ep, config(UNICHAIN_SEPOLIA, tx_types=[0, 1, 2, 4, 0x7E]), ADDRESS)
    assert not any(f.cap is Cap.ESTIMATE for f in probe.findings) and ep.asked == []
