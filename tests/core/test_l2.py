"""L2 blocks at ``included``: OP-stack deposits and Arbitrum types against recorded blocks
(tests/vectors/README.md), tampering, refusals, and round trips of every new codec."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core import rlp
from lightpost.core.hashing import keccak256
from lightpost.core.header import header_hash
from lightpost.core.inclusion import prove_block, prove_receipts, tx_index
from lightpost.core.l2 import (
    ARBITRUM,
    ARBITRUM_LEGACY_TX_TYPE,
    ARBITRUM_TX_TYPES,
    DEPOSIT_TX_TYPE,
    ETHEREUM,
    L2_TX_FIELDS,
    OP_STACK,
    BlockFormat,
    decode_l2_transaction,
    encode_l2_transaction,
    l2_transaction_from_rpc,
)
from lightpost.core.outbox import BlockRef
from lightpost.core.receipts import (
    RECEIPT_TYPES,
    Log,
    Receipt,
    decode_receipt,
    encode_receipt,
    logs_bloom,
    receipt_from_rpc,
)
from lightpost.core.verify import prove_block_transactions, verify_block_header
from lightpost.errors import ConfigError, DecodingError, ProofError

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
OP_DIR = VECTORS / "unichain-sepolia-35535698"
ARB_DIR = VECTORS / "arbitrum-one-350790042"

FLASHBLOCK_TYPES = {"Legacy": "0x0", "Eip2930": "0x1", "Eip1559": "0x2", "Deposit": "0x7e"}
"""op-alloy OpReceipt variant names -> EIP-2718 type (the flashblock metadata names the type)."""


def _hx(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def op_block() -> dict[str, Any]:
    return json.loads((OP_DIR / "block.json").read_text())


def op_receipts() -> list[dict[str, Any]]:
    """The recorded flashblock receipts as eth_getBlockReceipts objects, in block order."""
    out = []
    for flashblock in json.loads((OP_DIR / "flashblock-receipts.json").read_text()):
        for tx_hash, variant in flashblock.items():
            ((kind, fields),) = variant.items()
            logs = [
                Log(
                    address=_hx(x["address"]),
                    topics=tuple(map(_hx, x["topics"])),
                    data=_hx(x["data"]),
                )
                for x in fields["logs"]
            ]
            receipt = dict(fields, type=FLASHBLOCK_TYPES[kind], transactionHash=tx_hash)
            receipt["logsBloom"] = "0x" + logs_bloom(logs).hex()
            out.append(receipt)
    return out


def arb_block() -> dict[str, Any]:
    return json.loads((ARB_DIR / "block.json").read_text())


def ref(block: dict[str, Any]) -> BlockRef:
    return BlockRef(hash=_hx(block["hash"]), number=int(block["number"], 16))


# --- recorded blocks prove at `included` ---


def test_op_stack_block_with_deposit_proves_at_included() -> None:
    block = op_block()
    proven = prove_receipts(
        prove_block(block, ref(block), fmt=OP_STACK), op_receipts(), fmt=OP_STACK
    )
    assert header_hash(proven.header) == _hx(block["hash"])
    assert proven.transactions[0].raw is not None
    assert proven.transactions[0].raw[0] == DEPOSIT_TX_TYPE
    assert [t.hash for t in proven.transactions] == [_hx(t["hash"]) for t in block["transactions"]]
    deposit = proven.receipts[0]
    assert (deposit.deposit_nonce, deposit.deposit_receipt_version) == (0x21E3B52, 1)
    assert tx_index(proven, _hx(block["transactions"][5]["hash"])) == 5


def test_arbitrum_block_proves_at_included() -> None:
    block = arb_block()
    proven = prove_block(block, ref(block), fmt=ARBITRUM)
    assert header_hash(proven.header) == _hx(block["hash"])
    assert [t.raw[0] if t.raw else None for t in proven.transactions] == [0x6A, 2, 2, 2]
    assert tx_index(proven, _hx(block["transactions"][0]["hash"])) == 0


# --- what was refused before, and is refused still without the chain's format ---


def test_deposit_refused_without_the_op_format_says_why() -> None:
    # Before: "transaction 0 does not match its hash" (a deposit looked like a forgery).
    block = op_block()
    with pytest.raises(
        ProofError,
        match=r"type 0x7e \(OP-stack deposit; not enabled.*"
        r"block 35535698 not supported; the endpoint serves no raw form",
    ):
        prove_block(block, ref(block))


def test_unknown_type_proves_from_its_raw_form() -> None:
    block = op_block()
    raw = l2_transaction_from_rpc(block["transactions"][0]).raw
    assert raw is not None
    proven = prove_block(block, ref(block), raw_forms={0: raw})
    assert proven.transactions[0].raw == raw


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x7e\xc0", id="other bytes"),
        pytest.param(b"\x02" + b"\x00" * 40, id="other type"),
    ],
)
def test_a_raw_form_not_hashing_to_the_listed_hash_is_refused(raw: bytes) -> None:
    block = op_block()
    with pytest.raises(ProofError, match="raw form"):
        prove_block(block, ref(block), raw_forms={0: raw})


def test_deposit_receipt_refused_without_the_op_format() -> None:
    with pytest.raises(DecodingError, match="unknown receipt type 126"):
        receipt_from_rpc(op_receipts()[0])


def test_arbitrum_header_fields_refused_without_the_arbitrum_format() -> None:
    block = arb_block()
    with pytest.raises(DecodingError, match=r"l1BlockNumber, sendCount, sendRoot.*chain profile"):
        verify_block_header(block, _hx(block["hash"]))


def test_arbitrum_legacy_wrapper_is_always_refused() -> None:
    block = arb_block()
    block["transactions"][0]["type"] = hex(ARBITRUM_LEGACY_TX_TYPE)
    header = verify_block_header(block, _hx(block["hash"]), fmt=ARBITRUM)
    with pytest.raises(ProofError, match="hash is not derived from its bytes"):
        prove_block_transactions(header, block["transactions"], fmt=ARBITRUM)


def test_block_format_rejects_a_type_it_cannot_encode() -> None:
    with pytest.raises(ConfigError, match="120"):
        BlockFormat(tx_types=frozenset({ARBITRUM_LEGACY_TX_TYPE}))


# --- one field changed fails ---

OP_TX_TAMPER = [
    ("sourceHash", "0x" + "11" * 32),
    ("mint", "0x1"),
    ("value", "0x1"),
    ("gas", "0xf4241"),
    ("isSystemTx", True),
    ("from", "0xdeaddeaddeaddeaddeaddeaddeaddeaddead0002"),
    ("input", "0x00"),
    ("to", None),
]


@pytest.mark.parametrize(("key", "value"), OP_TX_TAMPER, ids=[k for k, _ in OP_TX_TAMPER])
def test_tampered_deposit_field_fails(key: str, value: object) -> None:
    block = op_block()
    block["transactions"][0][key] = value
    with pytest.raises(ProofError, match="transaction 0 does not match its hash"):
        prove_block(block, ref(block), fmt=OP_STACK)


OP_RECEIPT_TAMPER = [
    ("depositNonce", "0x21e3b53"),
    ("depositReceiptVersion", None),
    ("cumulativeGasUsed", "0xb41d"),
    ("status", "0x0"),
]


@pytest.mark.parametrize(("key", "value"), OP_RECEIPT_TAMPER, ids=[k for k, _ in OP_RECEIPT_TAMPER])
def test_tampered_deposit_receipt_fails(key: str, value: object) -> None:
    block = op_block()
    receipts = op_receipts()
    receipts[0][key] = value
    with pytest.raises(ProofError, match="receiptsRoot"):
        prove_receipts(prove_block(block, ref(block), fmt=OP_STACK), receipts, fmt=OP_STACK)


@pytest.mark.parametrize(("key", "value"), [("chainId", "0xa4b2"), ("input", "0x6bf6a42d")])
def test_tampered_arbitrum_internal_tx_fails(key: str, value: str) -> None:
    block = arb_block()
    block["transactions"][0][key] = value
    with pytest.raises(ProofError, match="transaction 0 does not match its hash"):
        prove_block(block, ref(block), fmt=ARBITRUM)


@pytest.mark.parametrize(
    ("key", "value"),
    [("sendRoot", "0x" + "00" * 32), ("sendCount", "0x23fba"), ("l1BlockNumber", "0x15b88c5")],
)
def test_arbitrum_header_field_disagreeing_with_the_hashed_header_fails(
    key: str, value: str
) -> None:
    block = arb_block()
    block[key] = value
    with pytest.raises(ProofError, match=f"{key} disagrees"):
        verify_block_header(block, _hx(block["hash"]), fmt=ARBITRUM)


def test_tampered_op_header_fails() -> None:
    block = op_block()
    block["extraData"] = "0x00000000320000000d"
    with pytest.raises(ProofError, match="header"):
        prove_block(block, ref(op_block()), fmt=OP_STACK)


# --- the deposit receipt trie rule (op-geth core/types/receipt.go Receipts.EncodeIndex) ---


def _deposit_receipt(nonce: int | None, version: int | None) -> Receipt:
    return Receipt(
        tx_type=DEPOSIT_TX_TYPE,
        status=1,
        cumulative_gas_used=46108,
        logs_bloom=bytes(256),
        logs=(),
        deposit_nonce=nonce,
        deposit_receipt_version=version,
    )


def test_pre_canyon_deposit_nonce_is_not_in_the_trie_form() -> None:
    bare = encode_receipt(_deposit_receipt(None, None))
    assert encode_receipt(_deposit_receipt(7, None)) == bare
    assert len(rlp.decode(bare[1:])) == 4  # type: ignore[arg-type]
    assert rlp.decode(encode_receipt(_deposit_receipt(7, 1))[1:])[4:] == [b"\x07", b"\x01"]  # type: ignore[index]


def test_network_form_with_a_nonce_decodes_and_reencodes_for_the_trie() -> None:
    five = b"\x7e" + rlp.encode([1, 46108, bytes(256), [], 7])
    receipt = decode_receipt(five, types=RECEIPT_TYPES | {DEPOSIT_TX_TYPE})
    assert receipt.deposit_nonce == 7
    assert encode_receipt(receipt) == encode_receipt(_deposit_receipt(None, None))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tx_type": 2, "deposit_nonce": 1}, "only deposit receipts"),
        ({"tx_type": DEPOSIT_TX_TYPE, "deposit_receipt_version": 1}, "needs a deposit nonce"),
        ({"tx_type": DEPOSIT_TX_TYPE, "deposit_nonce": 2**64}, "u64"),
        ({"tx_type": 0x80}, "unknown receipt type"),
    ],
)
def test_receipt_deposit_fields_are_checked(kwargs: dict[str, Any], match: str) -> None:
    base: dict[str, Any] = {
        "status": 1,
        "cumulative_gas_used": 0,
        "logs_bloom": bytes(256),
        "logs": (),
    }
    with pytest.raises(DecodingError, match=match):
        Receipt(**base, **kwargs)


def test_arbitrum_receipt_is_the_plain_typed_payload_and_ignores_gas_used_for_l1() -> None:
    obj = {
        "type": "0x6a",
        "status": "0x1",
        "cumulativeGasUsed": "0x0",
        "gasUsedForL1": "0x123",
        "l1BlockNumber": "0x7a8f91",
        "logs": [],
        "logsBloom": "0x" + "00" * 256,
    }
    receipt = receipt_from_rpc(obj, types=RECEIPT_TYPES | ARBITRUM_TX_TYPES)
    assert encode_receipt(receipt) == b"\x6a" + rlp.encode([1, 0, bytes(256), []])
    assert (
        receipt_from_rpc(dict(obj, gasUsedForL1="0x0"), types=RECEIPT_TYPES | ARBITRUM_TX_TYPES)
        == receipt
    )
    with pytest.raises(DecodingError, match="unknown receipt type 106"):
        receipt_from_rpc(obj)


def test_ethereum_format_is_the_default_and_adds_nothing() -> None:
    assert (ETHEREUM.tx_types, ETHEREUM.header_fields) == (frozenset(), frozenset())


# --- round trips (hypothesis) of every new codec ---

_KIND_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "h32": st.binary(min_size=32, max_size=32),
    "addr": st.binary(min_size=20, max_size=20),
    "to": st.none() | st.binary(min_size=20, max_size=20),
    "u64": st.integers(0, 2**64 - 1),
    "u256": st.integers(0, 2**256 - 1),
    "bool": st.booleans(),
    "bytes": st.binary(max_size=200),
}


@st.composite
def l2_values(draw: st.DrawFn) -> tuple[int, dict[str, Any]]:
    tx_type = draw(st.sampled_from(sorted(L2_TX_FIELDS)))
    values = {key: draw(_KIND_STRATEGIES[kind]) for key, kind in L2_TX_FIELDS[tx_type]}
    return tx_type, values


def _as_json(tx_type: int, values: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": hex(tx_type)}
    for key, value in values.items():
        if isinstance(value, bool):
            obj[key] = value
        elif isinstance(value, int):
            obj[key] = hex(value)
        else:
            obj[key] = None if value is None else "0x" + value.hex()
    return obj


@settings(max_examples=200)
@given(l2_values())
def test_l2_transaction_round_trips(case: tuple[int, dict[str, Any]]) -> None:
    tx_type, values = case
    raw = encode_l2_transaction(tx_type, values)
    assert decode_l2_transaction(raw) == (tx_type, values)
    rebuilt = l2_transaction_from_rpc(_as_json(tx_type, values))
    assert (rebuilt.raw, rebuilt.hash) == (raw, keccak256(raw))


@settings(max_examples=100)
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_deposit_receipt_round_trips(gas: int, nonce: int, version: int) -> None:
    receipt = Receipt(
        tx_type=DEPOSIT_TX_TYPE,
        status=1,
        cumulative_gas_used=gas,
        logs_bloom=bytes(256),
        logs=(),
        deposit_nonce=nonce,
        deposit_receipt_version=version,
    )
    assert decode_receipt(encode_receipt(receipt), types={DEPOSIT_TX_TYPE}) == receipt


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\x6a" + rlp.encode([1]), id="too few fields"),
        pytest.param(b"\x6a" + rlp.encode([1, [b"x"]]), id="list for bytes"),
        pytest.param(
            b"\x7e" + rlp.encode([b"\x01" * 32, b"\x02" * 20, b"", 0, 0, 0, 2, b""]), id="bool 2"
        ),
        pytest.param(
            b"\x7e" + rlp.encode([b"\x01" * 31, b"\x02" * 20, b"", 0, 0, 0, 0, b""]), id="hash 31"
        ),
        pytest.param(b"\x05\xc0", id="not an L2 type"),
    ],
)
def test_malformed_l2_transaction_is_refused(raw: bytes) -> None:
    with pytest.raises(DecodingError):
        decode_l2_transaction(raw)


def test_missing_required_json_field_is_refused_but_omitted_mint_is_zero() -> None:
    tx = copy.deepcopy(op_block()["transactions"][0])
    del tx["mint"]
    assert l2_transaction_from_rpc(tx).hash == _hx(tx["hash"])
    del tx["sourceHash"]
    with pytest.raises(DecodingError, match="sourceHash"):
        l2_transaction_from_rpc(tx)
