"""lightpost-signed transactions on a real anvil: accepted, same hash, predicted gasUsed."""

from __future__ import annotations

import time
from typing import Any

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.fees import Eip1559FeePolicy, FeeQuote, FixedFeePolicy
from lightpost.core.gas import gas_used
from lightpost.core.keys import PrivateKey
from lightpost.core.tx import (
    DynamicFeeTx,
    LegacyTx,
    SignedTransaction,
    encode_transaction,
    rpc_hash_matches,
    sign_transaction,
    transaction_from_rpc,
)
from lightpost_operator.anvil import AnvilProcess
from tests.conftest import ANVIL_DEV_KEYS

pytestmark = pytest.mark.integration

CHAIN_ID = 31337
"""anvil's default chain id."""

KEY = PrivateKey.from_hex(ANVIL_DEV_KEYS[3])
"""Dev key 3: kept apart from other tests sharing the session anvil."""

SINK = bytes.fromhex("5151" * 10)
"""A plain address with no code (no precompile, no EIP-7702 delegation)."""


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


RECEIPT_WAIT_S = 10.0
"""Upper bound on waiting for automine (a block per tx, usually within milliseconds)."""


def _receipt(ep: HttpEndpoint, tx_hash: str) -> dict[str, Any]:
    deadline = time.monotonic() + RECEIPT_WAIT_S
    while True:
        receipt: dict[str, Any] | None = ep.call("eth_getTransactionReceipt", [tx_hash])
        if receipt is not None:
            return receipt
        assert time.monotonic() < deadline, "anvil did not mine the transaction"
        time.sleep(0.05)


def _send(ep: HttpEndpoint, signed: SignedTransaction) -> dict[str, Any]:
    tx_hash = ep.call("eth_sendRawTransaction", [_hex(encode_transaction(signed))])
    assert tx_hash == _hex(signed.hash)  # anvil computes the same hash
    receipt = _receipt(ep, tx_hash)
    assert receipt["status"] == "0x1"
    assert int(receipt["gasUsed"], 16) == gas_used(signed.tx.data)
    # Through the node and back: the JSON object rebuilds the same bytes and sender.
    obj = ep.call("eth_getTransactionByHash", [tx_hash])
    rebuilt = transaction_from_rpc(obj, chain_id=CHAIN_ID)
    assert isinstance(rebuilt, SignedTransaction)
    assert rebuilt.raw == signed.raw and rpc_hash_matches(obj, rebuilt)
    assert rebuilt.sender == KEY.address
    return receipt


def _nonce(ep: HttpEndpoint) -> int:
    return int(ep.call("eth_getTransactionCount", [_hex(KEY.address), "pending"]), 16)


def _base_fee(ep: HttpEndpoint) -> int:
    return int(ep.call("eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)


def test_type2_with_1000_nonzero_bytes(anvil: AnvilProcess) -> None:
    ep = HttpEndpoint(anvil.url, label="anvil")
    data = bytes(range(1, 251)) * 4
    assert data.count(0) == 0 and len(data) == 1000
    quote = Eip1559FeePolicy().quote(data, 0, _base_fee(ep))
    assert isinstance(quote, FeeQuote)
    tx = DynamicFeeTx(
        chain_id=CHAIN_ID,
        nonce=_nonce(ep),
        max_priority_fee_per_gas=quote.max_priority_fee_per_gas,
        max_fee_per_gas=quote.max_fee_per_gas,
        gas=quote.gas_limit,
        to=SINK,
        data=data,
    )
    receipt = _send(ep, sign_transaction(tx, KEY))
    assert int(receipt["gasUsed"], 16) == 61_000 == quote.gas_limit


def test_legacy_eip155_with_1000_zero_bytes(anvil: AnvilProcess) -> None:
    ep = HttpEndpoint(anvil.url, label="anvil")
    data = bytes(1000)
    # The paper's fixed mode: 30 gwei, 210,000 gas, sent as a protected legacy tx.
    quote = FixedFeePolicy().quote(data, 0, _base_fee(ep))
    assert isinstance(quote, FeeQuote)
    tx = LegacyTx(
        chain_id=CHAIN_ID,
        nonce=_nonce(ep),
        gas_price=quote.max_fee_per_gas,
        gas=quote.gas_limit,
        to=SINK,
        value=1,
        data=data,
    )
    signed = sign_transaction(tx, KEY)
    assert signed.v in (2 * CHAIN_ID + 35, 2 * CHAIN_ID + 36)
    receipt = _send(ep, signed)
    assert int(receipt["gasUsed"], 16) == 31_000
