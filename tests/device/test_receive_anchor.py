"""Proving a gateway's anchor transaction on a real anvil, through endpoints that serve different
receipts methods or lie: the shared receipts mechanism (block_receipts.prove_receipts_in_turn)
is used, so a chain without eth_getBlockReceipts (Ganache, Hardhat, many L2 endpoints) proves;
a refusal names each endpoint's reason by label; Chain.proven_block is the one "header proven at
a height" (also under the inbox's verify)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.keys import PrivateKey
from lightpost.errors import EndpointUnavailable, LightpostError, MethodNotSupported, ProofError
from lightpost.node.chain import Chain
from lightpost_gateway.anchor import ANCHOR_ADDRESS, anchored_calldata, gateway_slots
from lightpost_gateway.receiver import prove_anchor_tx, prove_gateway_accumulator
from lightpost_gateway.record import Domain
from lightpost_gateway.relay import anchored_root
from lightpost_operator.anvil import AnvilProcess
from lightpost_operator.gateway_cmd import chain_anchor, deploy_anchor
from lightpost_operator.inbox import verify_inbox
from tests.conftest import ANVIL_DEV_KEYS

ROOT = bytes(range(32))


@dataclass
class Scripted:
    """A real endpoint behind a script: methods it does not serve, answers it forges, or down."""

    inner: HttpEndpoint
    label: str
    unsupported: frozenset[str] = frozenset()
    forge: dict[str, Any] | None = None
    down: bool = False

    def call(self, method: str, params: Sequence[Any]) -> Any:
        if self.down:
            raise EndpointUnavailable(self.label, "connection refused")
        if method in self.unsupported:
            raise MethodNotSupported(self.label, f"the method {method} does not exist")
        answer = self.inner.call(method, params)
        if self.forge and method in self.forge:
            return self.forge[method](answer)
        return answer

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        return [self.call(m, p) for m, p in calls]


@dataclass
class Anchoring:
    node: AnvilProcess
    chain_id: int
    tx_hash: bytes
    block: int
    payer: bytes


@pytest.fixture
def anchoring(fresh_anvil: AnvilProcess) -> Iterator[Anchoring]:
    chain = Chain([HttpEndpoint(fresh_anvil.url, "rpc#0")], quorum=1)
    funder, payer = (PrivateKey.from_hex(k) for k in ANVIL_DEV_KEYS[:2])
    try:
        chain_id = chain.chain_id()
        deploy_anchor(chain, chain_id, funder)
        done = chain_anchor(chain, chain_id, payer)(anchored_calldata(ROOT))
        yield Anchoring(fresh_anvil, chain_id, done.tx_hash, done.block, payer.address)
    finally:
        chain.close()


def _chain(a: Anchoring, *scripts: dict[str, Any]) -> Chain:
    eps = [
        Scripted(HttpEndpoint(a.node.url, f"rpc#{i}"), f"rpc#{i}", **s)
        for i, s in enumerate(scripts)
    ]
    return Chain(eps, quorum=1)


def _prove(a: Anchoring, chain: Chain) -> bytes:
    try:
        tx, receipt = prove_anchor_tx(chain, chain_id=a.chain_id, tx_hash=a.tx_hash, block=a.block)
    finally:
        chain.close()
    return anchored_root(tx, receipt, domain=Domain(chain_id=a.chain_id, anchor=ANCHOR_ADDRESS))


def test_proves_where_eth_getBlockReceipts_is_not_served(anchoring: Anchoring) -> None:
    """Review finding: prove_anchor_tx asked only eth_getBlockReceipts (Ganache, Hardhat and many
    L2 endpoints serve none): now each endpoint's receipts methods are tried in turn."""
    chain = _chain(anchoring, {"unsupported": frozenset({"eth_getBlockReceipts"})})
    assert _prove(anchoring, chain) == ROOT
    assert "eth_getTransactionReceipt ok" in chain.capabilities.describe("rpc#0")


def _forged_receipts(answer: Any) -> Any:
    forged = [dict(r) for r in answer]
    forged[0]["status"] = "0x0"
    return forged


def test_refusal_names_each_endpoint_by_label(anchoring: Anchoring) -> None:
    """Review finding: the reasons were collected and never read; the refusal now says, per
    label, what each endpoint did (one forged the receipts, one was down) -- never a URL."""
    chain = _chain(
        anchoring,
        {
            "forge": {"eth_getBlockReceipts": _forged_receipts},
            "unsupported": frozenset({"eth_getTransactionReceipt", "debug_getRawReceipts"}),
        },
        {
            "down": False,
            "unsupported": frozenset(
                ["eth_getBlockReceipts", "eth_getTransactionReceipt", "debug_getRawReceipts"]
            ),
        },
    )
    with pytest.raises(ProofError) as caught:
        _prove(anchoring, chain)
    text = str(caught.value)
    assert "rpc#0 eth_getBlockReceipts failed proof (" in text and "receiptsRoot" in text
    assert "rpc#1 eth_getBlockReceipts not supported" in text
    assert anchoring.node.url not in text


def test_a_lying_header_is_passed_over_and_an_honest_one_proves(anchoring: Anchoring) -> None:
    def forged_header(answer: Any) -> Any:
        return {**answer, "stateRoot": "0x" + "11" * 32}

    chain = _chain(anchoring, {"forge": {"eth_getBlockByNumber": forged_header}}, {})
    # the agreed hash: quorum 1 takes rpc#0's hash field (unchanged); its header then fails proof
    assert _prove(anchoring, chain) == ROOT


def test_accumulator_and_inbox_use_the_one_proven_header(anchoring: Anchoring) -> None:
    chain = _chain(anchoring, {})
    try:
        acc, count = prove_gateway_accumulator(
            chain, gateway=anchoring.payer, block=anchoring.block, anchor=ANCHOR_ADDRESS
        )
        assert count == 1 and acc != 0
        assert len(gateway_slots(anchoring.payer)) == 2
        out = verify_inbox(chain, tag="latest")
        assert out["block"] >= anchoring.block and not out["ok"]  # no inbox on this anvil
        down = _chain(anchoring, {"down": True})
        with pytest.raises(LightpostError, match="rpc#0"):
            down.proven_block(anchoring.block)
        down.close()
    finally:
        chain.close()
