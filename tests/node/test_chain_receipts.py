"""Chain.confirmed_receipt / wait_receipt (operator tools, the CLI) prove a receipt the
way the sender does: the hint's block agreed, its header and roots rebuilt."""

from __future__ import annotations

from typing import Any

import pytest

from lightpost.core.fees import GWEI
from lightpost.core.keys import PrivateKey
from lightpost.core.tx import DynamicFeeTx, SignedTransaction, sign_transaction
from lightpost.errors import ChainProcessError
from lightpost.node.chain import Chain
from tests.conftest import ANVIL_DEV_KEYS
from tests.node.fakechain import CHAIN_ID, FakeEndpoint, FakeNet

KEY = PrivateKey.from_hex(ANVIL_DEV_KEYS[3])


def _signed(nonce: int) -> SignedTransaction:
    tx = DynamicFeeTx(
        chain_id=CHAIN_ID,
        nonce=nonce,
        max_priority_fee_per_gas=GWEI,
        max_fee_per_gas=5 * GWEI,
        gas=21_000,
        to=KEY.address,
    )
    return sign_transaction(tx, KEY)


def _claims_block(net: FakeNet, number: int, status: str = "0x1") -> Any:
    """A hook answering every receipt question with "in block ``number``"."""

    def hook(method: str, params: Any, answer: Any) -> Any:
        if method == "eth_getTransactionReceipt":
            return {
                "transactionHash": params[0],
                "blockHash": "0x" + net.blocks[number].hash.hex(),
                "blockNumber": hex(number),
                "status": status,
            }
        return answer

    return hook


def _chain(net: FakeNet, liar_hook: Any = None) -> Chain:
    eps = [FakeEndpoint(f"rpc#{i}", net) for i in range(3)]
    eps[0].hook = liar_hook
    return Chain(eps, quorum=2)


def test_a_receipt_naming_an_agreed_block_without_the_tx_is_not_confirmed() -> None:
    net = FakeNet()
    net.mine(2)
    signed = _signed(0)  # never sent
    chain = _chain(net, _claims_block(net, 1))
    try:
        assert chain.confirmed_receipt(signed.hash) is None
        problems: dict[str, str] = {}
        assert chain.confirmed_receipt(signed.hash, problems) is None
        assert list(problems) == ["rpc#0"] and "do not include it" in problems["rpc#0"]
        clock = iter(range(100))
        with pytest.raises(ChainProcessError) as err:
            chain.wait_receipt(
                signed.hash, timeout=3, clock=lambda: float(next(clock)), sleep=lambda _s: None
            )
        assert "rpc#0" in str(err.value) and "rpc#1" not in str(err.value)
    finally:
        chain.close()


def test_a_mined_tx_is_confirmed_with_its_proven_status() -> None:
    net = FakeNet()
    signed = _signed(0)
    net.submit("rpc#1", signed.raw)
    net.reverted.add(signed.hash)
    net.mine()
    # the liar claims success; the proven block receipts say it reverted
    chain = _chain(net, _claims_block(net, 1, status="0x1"))
    try:
        receipt = chain.wait_receipt(signed.hash, timeout=1)
        assert receipt["status"] == "0x0"
        assert receipt["transactionHash"] == "0x" + signed.hash.hex()
    finally:
        chain.close()
