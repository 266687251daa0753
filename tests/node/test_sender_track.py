"""InclusionProver: hints turned into proven receipts, with bounded work per round."""

from __future__ import annotations

from lightpost.core.fees import GWEI
from lightpost.core.keys import PrivateKey
from lightpost.core.outbox import BlockRef, Sighting
from lightpost.core.tx import DynamicFeeTx, sign_transaction
from lightpost.node.chain import Chain
from lightpost.node.sender_track import UNKNOWN, InclusionProver
from tests.conftest import ANVIL_DEV_KEYS
from tests.node.fakechain import CHAIN_ID, FakeEndpoint, FakeNet

KEY = PrivateKey.from_hex(ANVIL_DEV_KEYS[0])


def test_the_block_budget_bounds_a_round_and_a_down_endpoint_is_no_liar() -> None:
    net = FakeNet()
    signed = [
        sign_transaction(
            DynamicFeeTx(
                chain_id=CHAIN_ID,
                nonce=n,
                max_priority_fee_per_gas=GWEI,
                max_fee_per_gas=5 * GWEI,
                gas=21_000,
                to=KEY.address,
            ),
            KEY,
        )
        for n in range(2)
    ]
    for tx in signed:
        net.submit("rpc#1", tx.raw)
        net.mine()  # one per block: blocks 1 and 2
    eps = [FakeEndpoint("rpc#0", net, down=True), FakeEndpoint("rpc#1", net)]
    chain = Chain(eps, quorum=1)
    try:
        prover = InclusionProver(eps, chain.block_hash_at, max_blocks=1)
        hints = [
            Sighting(tx_hash=tx.hash, block=BlockRef(hash=net.blocks[i + 1].hash, number=i + 1))
            for i, tx in enumerate(signed)
        ]
        first = prover.prove(hints[0], {"rpc#1"})
        assert first is not UNKNOWN and first is not None and first.index == 0
        assert prover.prove(hints[1], {"rpc#1"}) is UNKNOWN  # budget spent: next round
        assert prover.problems == {}  # unreachable rpc#0 is not blamed
        wrong = Sighting(tx_hash=signed[1].hash, block=hints[0].block)
        assert prover.prove(wrong, {"rpc#1"}) is None  # block 1 cached: no budget needed
        assert "do not include it" in prover.problems["rpc#1"]
    finally:
        chain.close()
