"""The sender's gas limit where gas also buys the L1 data (Arbitrum, ``gas_limit_source =
"estimate"``): asked of every endpoint, a value no minority bends, never below the local floor,
never above the ceiling; over scripted endpoints (no socket)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.store import Store
from lightpost.core.fees import GWEI, Eip1559FeePolicy
from lightpost.core.gas import ESTIMATE_MARGIN_PERCENT
from lightpost.core.outbox import State
from lightpost.core.tx import SignedTransaction, decode_transaction
from lightpost.errors import NodeError
from lightpost.node.chain import Chain
from lightpost.node.sender import Sender, SenderSettings
from tests.node.fakechain import CHAIN_ID, FakeEndpoint, FakeNet
from tests.node.test_sender import INBOX, KEY, T0, enqueue

L1_COMPONENT = 400_000
"""The Arbitrum-like fake's L1 data component, in L2 gas, of any of our transactions."""


@dataclass
class ArbLike(FakeEndpoint):
    """An endpoint of a chain whose gas limit must also cover an L1 component: it refuses a
    transaction below local need + L1_COMPONENT (as Nitro does: intrinsic gas too low) and
    answers eth_estimateGas with ``estimate`` (None: the honest figure)."""

    estimate: int | None = None

    def _answer(self, method: str, params: Sequence[Any]) -> Any:
        if method == "eth_estimateGas":
            return hex(self.estimate if self.estimate is not None else honest(params[0]))
        if method == "eth_sendRawTransaction":
            tx = decode_transaction(bytes.fromhex(params[0][2:]), chain_id=CHAIN_ID)
            assert isinstance(tx, SignedTransaction)
            if tx.tx.gas < L1_COMPONENT:
                raise NodeError(self.label, "intrinsic gas too low", -32000)
        return super()._answer(method, params)


def honest(call: dict[str, str]) -> int:
    return 21_000 + 16 * (len(call["data"]) - 2) // 2 + L1_COMPONENT


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store.sqlite3") as s:
        yield s


def sender_over(store: Store, eps: list[FakeEndpoint], **overrides: Any) -> Sender:
    values: dict[str, Any] = {
        "chain_id": CHAIN_ID,
        "mode": "channel",
        "inbox": INBOX,
        "policy": Eip1559FeePolicy(max_fee_cap=100 * GWEI, priority_fee=GWEI),
        "batch_bytes": 4096,
        "batch_delay_s": 0.0,
        "gas_limit_source": "estimate",
    }
    values.update(overrides)
    return Sender(
        key=KEY, store=store, chain=Chain(eps, quorum=2), settings=SenderSettings(**values)
    )


def signed_gas(net: FakeNet) -> list[int]:
    return [decode_transaction(raw, chain_id=CHAIN_ID).tx.gas for raw in net.sent]  # type: ignore[union-attr]


def test_one_liar_inflating_one_deflating_leave_the_honest_estimate(store: Store) -> None:
    net = FakeNet()
    eps: list[FakeEndpoint] = [
        ArbLike("rpc#0", net),
        ArbLike("rpc#1", net, estimate=15_000_000),  # inflates: would make us reserve 15M gas
        ArbLike("rpc#2", net, estimate=21_000),  # deflates: the tx would be refused
    ]
    sender = sender_over(store, eps)
    (mid,) = enqueue(sender, 1)
    sender.step(T0)
    assert store.message(mid).state is State.BROADCAST
    (raw,) = net.sent
    data = decode_transaction(raw, chain_id=CHAIN_ID).tx.data  # type: ignore[union-attr]
    want = honest({"data": "0x" + data.hex()})
    assert signed_gas(net) == [-(-want * (100 + ESTIMATE_MARGIN_PERCENT) // 100)]
    assert all("eth_estimateGas" in ep.calls for ep in eps)
    for _ in range(6):
        net.mine()
        sender.step(T0 + 1)
    assert store.message(mid).state is State.FINAL


def test_the_local_gas_limit_alone_is_refused_on_such_a_chain(store: Store) -> None:
    """What the sender did before: the intrinsic/calldata gas only, refused by every endpoint."""
    net = FakeNet()
    eps: list[FakeEndpoint] = [ArbLike(f"rpc#{i}", net) for i in range(3)]
    sender = sender_over(store, eps, gas_limit_source="local")
    (mid,) = enqueue(sender, 1)
    sender.step(T0)
    assert net.sent == [] and store.message(mid).state is not State.BROADCAST
    assert not any("eth_estimateGas" in ep.calls for ep in eps)  # local: never asked


def test_a_lying_majority_is_capped_by_the_ceiling(store: Store) -> None:
    net = FakeNet()
    eps: list[FakeEndpoint] = [
        ArbLike("rpc#0", net, estimate=10_000_000),
        ArbLike("rpc#1", net, estimate=10_000_000),
        ArbLike("rpc#2", net),
    ]
    sender = sender_over(store, eps, max_gas_limit=1_000_000)
    (mid,) = enqueue(sender, 1)
    sender.step(T0)
    assert net.sent == []
    assert store.message(mid).state is State.QUEUED  # waits queued: no hold/release churn
    assert "above the ceiling 1000000" in sender.problems["gas limit"]
    assert not sender.step(T0 + 1).busy  # the loop paces itself: no busy retry
    eps[0].estimate = eps[1].estimate = None  # the majority tells the truth again
    sender.step(T0 + 2)
    assert store.message(mid).state is State.BROADCAST and "gas limit" not in sender.problems


def test_the_balance_check_counts_the_estimated_gas(store: Store) -> None:
    """The funds gate uses the estimated gas limit: a balance that covers the local gas limit but
    not the L1 component holds the message (never a doomed broadcast)."""
    net = FakeNet()
    eps: list[FakeEndpoint] = [ArbLike(f"rpc#{i}", net) for i in range(3)]
    sender = sender_over(store, eps)
    (mid,) = enqueue(sender, 1)
    net.balance = 200_000 * (2 * net.base_fee + GWEI)  # local need fits, L1 component does not
    sender.step(T0)
    assert net.sent == []
    assert "insufficient funds" in (sender.funds_hold or "")
    assert store.message(mid).state is State.HELD
