"""Operator transactions: sign with a local key, broadcast, wait for the receipt.

Used by devnet set-up (deploy the inbox, fund devices): one-shot, never bumped, the fee of the
moment. A device never blocks like this -- its outbox is asynchronous (lightpost.node.sender) --
and neither does a gateway's recurring anchoring (lightpost_operator.anchoring: fee cap, bumps at
the same nonce, stored before sent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightpost.core.fees import Eip1559FeePolicy, FeeQuote, Hold
from lightpost.core.keys import PrivateKey
from lightpost.core.tx import DynamicFeeTx, SignedTransaction, sign_transaction
from lightpost.errors import ChainProcessError, NodeError
from lightpost.node.chain import Chain, parse_quantity

__all__ = ["OPERATOR_RECEIPT_TIMEOUT_S", "send_operator_tx"]

OPERATOR_RECEIPT_TIMEOUT_S = 60.0
"""Longest an operator transaction may take to be mined on a devnet."""


def sign_operator_tx(
    chain: Chain,
    chain_id: int,
    key: PrivateKey,
    *,
    nonce: int,
    to: bytes | None,
    data: bytes = b"",
    value: int = 0,
    execution_gas: int = 0,
    quote: FeeQuote | None = None,
) -> SignedTransaction:
    """A type-2 transaction at ``quote`` (default: the EIP-1559 policy's quote at the base fee)."""
    if quote is None:
        priced = Eip1559FeePolicy().quote(data, execution_gas, chain.base_fee())
        if isinstance(priced, Hold):
            raise ChainProcessError(f"cannot send operator transaction: {priced.reason}")
        quote = priced
    tx = DynamicFeeTx(
        chain_id=chain_id,
        nonce=nonce,
        max_priority_fee_per_gas=quote.max_priority_fee_per_gas,
        max_fee_per_gas=quote.max_fee_per_gas,
        gas=quote.gas_limit,
        to=to,
        value=value,
        data=data,
        access_list=(),
    )
    return sign_transaction(tx, key)


def send_operator_tx(
    chain: Chain, chain_id: int, key: PrivateKey, *, wait: bool = True, **fields: Any
) -> tuple[SignedTransaction, Mapping[str, Any] | None]:
    """Sign (``fields`` as for :func:`sign_operator_tx`), broadcast and optionally wait.

    Fails loudly if no endpoint accepts the transaction or if it reverts.
    """
    signed = sign_operator_tx(chain, chain_id, key, **fields)
    result = chain.broadcast(signed.raw, signed.hash)
    if not result.ok:
        first = next(iter(result.errors.values()))
        raise first if isinstance(first, NodeError) else ChainProcessError(str(first))
    if not wait:
        return signed, None
    receipt = chain.wait_receipt(signed.hash, timeout=OPERATOR_RECEIPT_TIMEOUT_S)
    if parse_quantity(receipt.get("status", "0x1"), "status") != 1:
        raise ChainProcessError(f"operator transaction 0x{signed.hash.hex()} reverted")
    return signed, receipt
