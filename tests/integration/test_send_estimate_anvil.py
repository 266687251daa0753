"""``gas_limit_source = "estimate"`` (the Arbitrum profile's rule) on a real node: the sender asks
eth_estimateGas and signs with the agreed estimate plus the margin, never below its own floor,
and the message goes through (anvil has no L1 component: the rule, not the figure, is tested)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightpost.core.gas import estimated_gas_limit
from lightpost.core.inbox import inbox_execution_gas
from lightpost.core.outbox import State
from lightpost.core.tx import decode_transaction
from lightpost.node.config import load_config
from tests.integration import test_send_anvil
from tests.integration.test_send_anvil import (
    enqueue_many,
    in_process,
    rpc,
    step_until,
)

devnet = test_send_anvil.devnet  # the fixture


def test_the_sender_signs_with_the_estimated_gas_limit(devnet: dict[str, Any]) -> None:
    path = Path(devnet["devices"][0]["config"])
    assert "[profile]" not in path.read_text()
    path.write_text(path.read_text() + '\n[profile]\ngas_limit_source = "estimate"\n')
    config = load_config(path)
    enqueue_many(config, "est", 3, size=300)
    sender, close = in_process(config)
    try:
        assert sender.settings.gas_limit_source == "estimate"
        step_until(sender, lambda: sender.store.counts_by_state()[State.INCLUDED] == 3)
        tx = sender.store.transaction(1)  # the first (and only) transaction of a fresh store
    finally:
        close()
    signed = decode_transaction(tx.raw, chain_id=config.chain_id)
    data = signed.tx.data  # type: ignore[union-attr]
    receipt = rpc(devnet["rpc_url"], "eth_getTransactionReceipt", ["0x" + tx.tx_hash.hex()])
    before = hex(int(receipt["blockNumber"], 16) - 1)  # the state the sender estimated on
    call = {"from": receipt["from"], "to": receipt["to"], "data": "0x" + data.hex()}
    estimate = int(rpc(devnet["rpc_url"], "eth_estimateGas", [call, before]), 16)
    local = sender.settings.policy.gas_limit_for(
        data, inbox_execution_gas(len(data), first_post=True)
    )
    want = estimated_gas_limit([estimate], k=1, local=local, ceiling=2**24)
    assert want > local  # the estimate decided (anvil 1.x: 91,912 x 1.25 > the local 105,731)
    assert signed.tx.gas == want  # type: ignore[union-attr]
    assert int(receipt["status"], 16) == 1 and int(receipt["gasUsed"], 16) <= want
