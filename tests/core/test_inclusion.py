"""The sender's inclusion rules without a socket: hints parsed, blocks and receipts
proven, events decided -- then every claim tampered with."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lightpost.core.fees import GWEI
from lightpost.core.inclusion import (
    ProvenReceipt,
    inclusion_events,
    prove_block,
    prove_receipts,
    proven_receipt,
    receipt_hint,
)
from lightpost.core.keys import PrivateKey
from lightpost.core.outbox import (
    BlockRef,
    Finalized,
    Included,
    NonceConsumed,
    ReorgedOut,
    Sighting,
    State,
)
from lightpost.core.tx import DynamicFeeTx, sign_transaction
from lightpost.errors import LightpostError
from tests.conftest import ANVIL_DEV_KEYS
from tests.node.fakechain import CHAIN_ID, Block, block_json, receipts_json

KEY = PrivateKey.from_hex(ANVIL_DEV_KEYS[1])
H1 = b"\x11" * 32
H2 = b"\x22" * 32


def _tx(nonce: int) -> Any:
    return sign_transaction(
        DynamicFeeTx(
            chain_id=CHAIN_ID,
            nonce=nonce,
            max_priority_fee_per_gas=GWEI,
            max_fee_per_gas=2 * GWEI,
            gas=21_000,
            to=KEY.address,
        ),
        KEY,
    )


@pytest.fixture(scope="module")
def block() -> Block:
    txs = [_tx(0), _tx(1), _tx(2)]
    return Block(number=7, salt=1, base_fee=GWEI, txs=txs, reverted={txs[2].hash})


def _ref(b: Block) -> BlockRef:
    return BlockRef(hash=b.hash, number=b.number)


# --- hints ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("receipt", "expected"),
    [
        (None, None),
        ({"blockHash": None, "blockNumber": None}, None),  # pending
        ({"blockHash": "0x" + "22" * 32, "blockNumber": "0x5"}, BlockRef(hash=H2, number=5)),
        ({"blockHash": "0x" + "22" * 32, "blockNumber": "5"}, None),  # not a quantity
        ({"blockHash": "0x22", "blockNumber": "0x5"}, None),  # short hash
        (
            {
                "blockHash": "0x" + "22" * 32,
                "blockNumber": "0x5",
                "transactionHash": "0x" + "33" * 32,
            },
            None,
        ),
        ("a string", None),
        ([1, 2], None),
    ],
)
def test_receipt_hint(receipt: Any, expected: BlockRef | None) -> None:
    hint = receipt_hint(H1, receipt)
    assert hint == (None if expected is None else Sighting(tx_hash=H1, block=expected))


# --- proofs ----------------------------------------------------------------------------------


def test_a_true_receipt_is_proven_with_its_status(block: Block) -> None:
    proven = prove_receipts(prove_block(block_json(block, True), _ref(block)), receipts_json(block))
    ok = proven_receipt(proven, receipts_json(block), block.txs[1].hash)
    assert ok is not None and (ok.index, ok.status) == (1, 1)
    assert ok.sighting == Sighting(tx_hash=block.txs[1].hash, block=_ref(block))
    failed = proven_receipt(proven, receipts_json(block), block.txs[2].hash)
    assert failed is not None and failed.status == 0
    assert proven_receipt(proven, receipts_json(block), H1) is None  # not in the block


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def mutate(obj: Any) -> Any:
        out = copy.deepcopy(obj)
        target = out
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return out

    return mutate


def _drop_tx(obj: Any) -> Any:
    out = copy.deepcopy(obj)
    out["transactions"] = out["transactions"][:-1]
    return out


@pytest.mark.parametrize(
    "tamper",
    [
        _set(("hash",), "0x" + "44" * 32),  # another block
        _set(("gasUsed",), "0x1"),  # a header field changed: hash differs
        _set(("transactions", 0, "input"), "0x00"),  # a transaction forged
        _set(("transactions", 0), {"hash": "0x" + "55" * 32}),  # malformed body
        _drop_tx,  # a transaction hidden
        _set(("number",), "0x8"),
        lambda obj: None,
        lambda obj: [obj],
    ],
)
def test_a_tampered_block_fails_proof(block: Block, tamper: Any) -> None:
    with pytest.raises(LightpostError):
        prove_block(tamper(block_json(block, True)), _ref(block))


def test_a_block_at_another_height_fails_proof(block: Block) -> None:
    with pytest.raises(LightpostError):
        prove_block(block_json(block, True), BlockRef(hash=block.hash, number=8))


@pytest.mark.parametrize(
    "tamper",
    [
        _set((2, "status"), "0x1"),  # a revert hidden
        _set((0, "status"), "0x0"),  # a success turned into a revert
        _set((1, "cumulativeGasUsed"), "0x1"),
        lambda rs: rs[:-1],  # a receipt hidden
        lambda rs: [*rs, rs[0]],
        lambda rs: None,
    ],
)
def test_tampered_receipts_fail_proof(block: Block, tamper: Any) -> None:
    proven = prove_block(block_json(block, True), _ref(block))
    with pytest.raises(LightpostError):
        prove_receipts(proven, tamper(receipts_json(block)))


# --- events ----------------------------------------------------------------------------------

A = BlockRef(hash=H1, number=10)
B = BlockRef(hash=H2, number=10)


def _proven(block: BlockRef, status: int = 1) -> ProvenReceipt:
    return ProvenReceipt(
        sighting=Sighting(tx_hash=b"\x99" * 32, block=block), index=0, status=status, receipt={}
    )


@pytest.mark.parametrize(
    ("state", "included", "proven", "canonical", "finalized", "expected"),
    [
        # in flight: only a proven receipt includes it
        (State.BROADCAST, None, None, None, None, ()),
        (State.SIGNED, None, _proven(A), None, None, (Included,)),
        (State.BROADCAST, None, _proven(A), None, None, (Included,)),
        # included: still canonical, not final / final / final but reverted
        (State.INCLUDED, A, _proven(A), H1, 9, ()),
        (State.INCLUDED, A, _proven(A), H1, 10, (Finalized,)),
        (State.INCLUDED, A, _proven(A, status=0), H1, 10, (NonceConsumed,)),
        # the block at that height changed: reorged out, re-included where proven
        (State.INCLUDED, A, None, H2, 10, (ReorgedOut,)),
        (State.INCLUDED, A, _proven(B), H2, None, (ReorgedOut, Included)),
        # the stored block no longer proves it (an inclusion recorded unproven)
        (State.INCLUDED, A, None, H1, 10, (ReorgedOut,)),
    ],
)
def test_inclusion_events(
    state: State,
    included: BlockRef | None,
    proven: Any,
    canonical: bytes | None,
    finalized: int | None,
    expected: tuple[type, ...],
) -> None:
    events = inclusion_events(
        state=state,
        nonce=3,
        included=included,
        proven=proven,
        canonical_hash=canonical,
        finalized_number=finalized,
    )
    assert tuple(type(e) for e in events) == expected
