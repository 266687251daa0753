"""`fleet provision` on an L2 sizes the L1 data: OP-stack GasPriceOracle getL1Fee of signed samples,
Arbitrum NodeInterface's L1 component and estimated transfer gas -- asked of every endpoint, a value
no minority bends, shown in the plan before spending, the hard cap kept. Scripted endpoints."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from lightpost.core.gas import ESTIMATE_MARGIN_PERCENT
from lightpost.core.keys import PrivateKey
from lightpost.core.profiles import chain_profile
from lightpost.errors import PolicyError, QuorumError
from lightpost.node.chain import Chain
from lightpost_operator.fleet import FIRST_POST_EXTRA_GAS, GAS_PER_READING, provision_fleet
from lightpost_operator.l1fee import GAS_PRICE_ORACLE, L1_FEE_MULTIPLIER, NODE_INTERFACE, call_data

GWEI = 10**9
BASE_FEE = 10**7  # 0.01 gwei, an L2's
PRICE = 2 * BASE_FEE + GWEI  # the EIP-1559 policy's fee cap: 2 x base fee + 1 gwei tip
FUNDER = PrivateKey(b"\x07" * 32)
WEI_PER_BYTE = 1_000  # the honest OP oracle: 1,000 wei per byte of the signed transaction
L1_GAS = 50_000  # the honest Arbitrum L1 component, in L2 gas
TRANSFER_ESTIMATE = 21_000 + 30_000


def word(n: int) -> str:
    return n.to_bytes(32, "big").hex()


class Scripted:
    """An L2 endpoint: base fee, empty balances, the L1 oracles. ``lie(method, honest)`` may bend
    an answer; ``oracle_calls`` keeps the signed samples asked about."""

    def __init__(
        self, label: str, chain_id: int, lie: Callable[[str, int], int] | None = None
    ) -> None:
        self.label, self.chain_id = label, chain_id
        self.lie = lie or (lambda _m, honest: honest)
        self.oracle_calls: list[bytes] = []

    def call(self, method: str, params: Sequence[Any]) -> Any:
        if method == "eth_chainId":
            return hex(self.chain_id)
        if method == "eth_getBlockByNumber":
            return {"number": "0x10", "baseFeePerGas": hex(BASE_FEE)}
        if method == "eth_getBalance":
            return "0x0"
        if method == "eth_estimateGas":
            return hex(self.lie(method, TRANSFER_ESTIMATE))
        if method == "eth_call":
            to, data = bytes.fromhex(params[0]["to"][2:]), bytes.fromhex(params[0]["data"][2:])
            if to == GAS_PRICE_ORACLE:
                assert data[:4] == call_data("getL1Fee(bytes)", data=b"")[:4]
                size = int.from_bytes(data[36:68], "big")
                self.oracle_calls.append(data[68 : 68 + size])
                return "0x" + word(self.lie(method, WEI_PER_BYTE * size))
            if to == NODE_INTERFACE:
                assert data[:4].hex() == "77d488a2"  # gasEstimateL1Component(address,bool,bytes)
                return "0x" + word(self.lie(method, L1_GAS)) + word(BASE_FEE) + word(30 * GWEI)
        raise AssertionError(f"unscripted {method}")

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        return [self.call(m, p) for m, p in calls]


def inflate(_method: str, honest: int) -> int:
    return honest * 10**12


def deflate(_method: str, _honest: int) -> int:
    return 0


def three(name: str, *lies: Callable[[str, int], int]) -> list[Scripted]:
    """rpc#0 honest, then one endpoint per ``lies``."""
    chain_id = chain_profile(name).chain_id
    return [Scripted(f"rpc#{i}", chain_id, lie) for i, lie in enumerate((None, *lies))]


def plan(tmp_path: Path, name: str, eps: list[Scripted], cap_eth: int = 100) -> tuple[dict, str]:
    lines: list[str] = []
    chain = Chain(eps, quorum=2)  # type: ignore[arg-type]
    try:
        report = provision_fleet(
            chain,
            tmp_path / "fleet",
            chain_name=name,
            endpoints=["http://127.0.0.1:1"],
            funder=FUNDER,
            devices=2,
            readings_per_day=24,
            days=30,
            cap_wei=cap_eth * 10**18,
            devnet=True,
            log=lines.append,
        )
    finally:
        chain.close()
    return report, "\n".join(lines)


def test_op_stack_plan_adds_the_agreed_l1_fee_per_reading_and_per_transfer(
    tmp_path: Path,
) -> None:
    eps = three("base", inflate, deflate)
    honest = eps[0]
    report, text = plan(tmp_path, "base", eps)
    post, transfer = honest.oracle_calls  # signed samples: one reading's post, one transfer
    assert post[0] == 2 and transfer[0] == 2 and len(post) > len(transfer) + 100  # type-2 txs
    per_reading = L1_FEE_MULTIPLIER * WEI_PER_BYTE * len(post)
    per_transfer = L1_FEE_MULTIPLIER * WEI_PER_BYTE * len(transfer)
    assert report["l1_fee_per_reading_wei"] == per_reading
    assert report["l1_fee_per_transfer_wei"] == per_transfer
    readings = 24 * 30
    assert report["target_wei"] == (
        (readings * GAS_PER_READING + FIRST_POST_EXTRA_GAS) * PRICE + readings * per_reading
    )
    assert report["transfer_cost_wei"] == 21_000 * PRICE + per_transfer
    assert report["total_wei"] == 2 * (report["target_wei"] + report["transfer_cost_wei"])
    assert report["total_wei"] < 10**18  # within the 1 ETH cap of the lying-majority test
    assert "L1 data (op-stack, agreed by the endpoints)" in text  # shown before any spending
    assert report["sent"] == []


def test_arbitrum_plan_buys_the_l1_component_with_gas(tmp_path: Path) -> None:
    eps = three("arbitrum", inflate, deflate)
    report, text = plan(tmp_path, "arbitrum", eps)
    assert report["l1_fee_per_reading_wei"] == L1_GAS * PRICE
    assert report["l1_fee_per_transfer_wei"] == 0  # inside the transfer's gas instead
    gas = -(-TRANSFER_ESTIMATE * (100 + ESTIMATE_MARGIN_PERCENT) // 100)
    assert report["transfer_gas_limit"] == gas
    assert report["transfer_cost_wei"] == gas * PRICE
    assert all(not ep.oracle_calls for ep in eps)  # no OP oracle asked on Arbitrum
    assert "63,750 gas per transfer" in text


def test_a_lying_majority_meets_the_hard_cap(tmp_path: Path) -> None:
    eps = three("base", inflate, inflate)
    with pytest.raises(PolicyError, match="above the cap"):
        plan(tmp_path, "base", eps, cap_eth=1)  # the honest plan: ~0.06 ETH


def test_no_agreed_l1_fee_is_a_refusal_naming_each_endpoint(tmp_path: Path) -> None:
    chain_id = chain_profile("base").chain_id

    class NoOracle(Scripted):
        def call(self, method: str, params: Sequence[Any]) -> Any:
            if method == "eth_call":
                from lightpost.errors import NodeError

                raise NodeError(self.label, "execution reverted", 3)
            return super().call(method, params)

    eps = [NoOracle("rpc#0", chain_id), NoOracle("rpc#1", chain_id), Scripted("rpc#2", chain_id)]
    with pytest.raises(QuorumError) as err:
        plan(tmp_path, "base", eps)
    text = str(err.value)
    assert "L1 data fee" in text and "rpc#0" in text and "rpc#2" in text
