"""`lightpost status` (node.status.collect_status) over scripted fake endpoints: an endpoint is
healthy only when it serves what the configured level needs; finality_depth is honoured."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.store import Store
from lightpost.core.fees import GWEI, Eip1559FeePolicy
from lightpost.core.tx import DynamicFeeTx, sign_transaction
from lightpost.errors import MethodNotSupported
from lightpost.node.chain import Chain
from lightpost.node.sender import SenderSettings
from lightpost.node.status import collect_status
from tests.node.fakechain import CHAIN_ID, FakeEndpoint, FakeNet
from tests.node.test_sender import KEY

T0 = 1_767_225_600.0

RECEIPT_METHODS = ("eth_getBlockReceipts", "eth_getTransactionReceipt", "debug_getRawReceipts")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store.sqlite3") as s:
        yield s


def no_receipts(method: str, params: Sequence[Any], answer: Any) -> Any:
    """Serves no receipts at all (worse than Hardhat, which has per-tx receipts)."""
    if method in RECEIPT_METHODS:
        raise MethodNotSupported("rpc#x", f"Method {method} is not supported", -32004)
    return answer


def null_finalized(method: str, params: Sequence[Any], answer: Any) -> Any:
    """EthereumJS with a clique genesis: the finalized tag is null."""
    return None if method == "eth_getBlockByNumber" and params[0] == "finalized" else answer


def status(store: Store, eps: list[FakeEndpoint], **kw: Any) -> dict[str, Any]:
    settings = SenderSettings(
        chain_id=CHAIN_ID,
        mode="direct",
        inbox=None,
        policy=Eip1559FeePolicy(max_fee_cap=100 * GWEI, priority_fee=GWEI),
        batch_bytes=4096,
        batch_delay_s=0.0,
        finality_depth=kw.pop("finality_depth", 0),
    )
    chain = Chain(eps, quorum=kw.pop("quorum", len(eps) // 2 + 1))
    try:
        return collect_status(
            store=store, chain=chain, address=KEY.address, settings=settings, now=T0, **kw
        )
    finally:
        chain.close()


def mined_net() -> FakeNet:
    """A fake chain with a transaction below its finalized block (receipts can be proven)."""
    net = FakeNet()
    tx = DynamicFeeTx(
        chain_id=CHAIN_ID,
        nonce=0,
        max_priority_fee_per_gas=GWEI,
        max_fee_per_gas=100 * GWEI,
        gas=21_000,
        to=bytes(20),
        value=0,
        data=b"",
        access_list=(),
    )
    net.mine_foreign(sign_transaction(tx, KEY))
    net.mine(6)
    return net


def test_endpoints_without_receipts_are_not_healthy(store: Store) -> None:
    net = mined_net()
    eps = [FakeEndpoint(f"rpc#{i}", net, hook=no_receipts) for i in range(2)]
    st = status(store, eps)
    assert not st["healthy"]
    assert [e["serves"] for e in st["endpoints"]] == [False, False]
    assert "only 0 of 2 endpoints serve what final needs" in st["verdict"]
    assert "rpc#0 cannot serve final: block receipts" in st["verdict"]
    assert "eth_getBlockReceipts: Method eth_getBlockReceipts is not supported" in st["verdict"]


def test_a_minority_without_receipts_is_a_warning_with_the_fix(store: Store) -> None:
    net = mined_net()
    eps = [FakeEndpoint("rpc#0", net, hook=no_receipts), FakeEndpoint("rpc#1", net)]
    eps.append(FakeEndpoint("rpc#2", net))
    st = status(store, eps)
    assert st["healthy"], st["reasons"]
    (warning,) = st["warnings"]
    assert warning.startswith("rpc#0 cannot serve final: block receipts")
    assert "fix: use an endpoint that serves eth_getBlockReceipts" in warning


def test_a_null_finalized_tag_is_named_never_block_0(store: Store) -> None:
    net = mined_net()
    eps = [FakeEndpoint(f"rpc#{i}", net, hook=null_finalized) for i in range(2)]
    st = status(store, eps)
    assert not st["healthy"] and st["finalized"] is None
    assert (
        "rpc#0 cannot serve final: finalized tag (does not serve the finalized tag)"
        in (st["verdict"])
    )
    assert "fix: set finality_depth" in st["verdict"]
    assert any("does not serve the finalized tag" in r for r in st["reasons"])


def test_finality_depth_stands_in_for_the_finalized_tag(store: Store) -> None:
    net = mined_net()
    eps = [FakeEndpoint(f"rpc#{i}", net, hook=null_finalized) for i in range(2)]
    st = status(store, eps, finality_depth=3)
    assert st["healthy"], st["reasons"]
    assert st["finalized"]["number"] == net.head - 3


def test_complete_needs_eth_get_proof(store: Store) -> None:
    net = mined_net()
    eps = [FakeEndpoint(f"rpc#{i}", net) for i in range(2)]  # the fake has no eth_getProof
    assert status(store, eps, level="final")["healthy"]
    st = status(store, eps, level="complete")
    assert not st["healthy"]
    assert "cannot serve complete: eth_getProof at final" in st["verdict"]


def test_a_sender_with_an_empty_data_directory_but_a_used_key_warns(store: Store) -> None:
    """The key sent before (nonce 1 on chain), this store has no record: before it signs, the
    sender warns with the remedy; status is unhealthy and says why."""
    from tests.node.test_sender import enqueue, make

    net = mined_net()  # KEY's nonce 0 is on chain
    sender = make(store, net, n=2)
    lines: list[str] = []
    sender._log = lines.append
    enqueue(sender, 1)
    sender.step(T0)
    assert "sequence" in sender.problems
    assert any(line.startswith("warning: this key has sent 1 transaction(s)") for line in lines)
    st = sender.status(T0)
    assert not st["healthy"]
    assert any("sequence: this key has sent 1" in r and "Remedy" in r for r in st["reasons"])
    sender.close()


def test_a_new_key_or_a_known_store_does_not_warn(store: Store) -> None:
    from tests.node.test_sender import enqueue, make

    net = FakeNet()
    net.mine(3)
    sender = make(store, net, n=2)
    enqueue(sender, 1)
    for i in range(4):
        sender.step(T0 + i)
        net.mine()
    assert "sequence" not in sender.problems
    sender.close()
    again = make(store, net, n=2)  # restart on the same store: it has the record
    again.step(T0 + 10)
    assert "sequence" not in again.problems
    again.close()
