"""Receipts: consensus encoding, bloom, receipts/transactions roots against real blocks."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core.header import decode_header
from lightpost.core.receipts import (
    BLOOM_BYTES,
    Log,
    Receipt,
    block_logs_bloom,
    check_logs_bloom,
    decode_receipt,
    encode_receipt,
    logs_bloom,
    receipt_from_rpc,
    receipts_root,
    verify_receipts_root,
)
from lightpost.core.trie import ordered_trie_root
from lightpost.errors import DecodingError, LightpostError, ProofError
from tests.core.chaindata import ROOTS_DIRS, anvil_block, hx, json_values, raw_block, raw_receipts

# --- execution-apis block 3 captures (pre-Byzantium and post-Byzantium) ------------------


@pytest.mark.parametrize("directory", ROOTS_DIRS)
def test_raw_receipts_round_trip_and_root(directory: str) -> None:
    header_rlp, txs = raw_block(directory)
    header = decode_header(header_rlp)
    raws = raw_receipts(directory)
    receipts = [decode_receipt(r) for r in raws]
    assert [encode_receipt(r) for r in receipts] == raws
    assert receipts_root(receipts) == header.receipts_root
    verify_receipts_root(header.receipts_root, receipts)
    assert block_logs_bloom(receipts) == header.logs_bloom
    assert ordered_trie_root(txs) == header.transactions_root


def test_pre_byzantium_receipts_carry_state_root() -> None:
    receipts = [decode_receipt(r) for r in raw_receipts(ROOTS_DIRS[0])]
    assert len(receipts) == 3
    assert all(r.status is None and r.post_state is not None for r in receipts)
    assert [len(r.logs) for r in receipts] == [0, 10, 0]
    assert receipts[1].logs_bloom == logs_bloom(receipts[1].logs) != bytes(BLOOM_BYTES)


def test_post_byzantium_status_receipt() -> None:
    (receipt,) = [decode_receipt(r) for r in raw_receipts(ROOTS_DIRS[1])]
    assert receipt.status == 1 and receipt.post_state is None and receipt.tx_type == 0


def test_pre_byzantium_receipt_from_rpc_root_field() -> None:
    receipt = decode_receipt(raw_receipts(ROOTS_DIRS[0])[1])
    assert receipt.post_state is not None
    rpc = {
        "root": "0x" + receipt.post_state.hex(),
        "cumulativeGasUsed": hex(receipt.cumulative_gas_used),
        "logsBloom": "0x" + receipt.logs_bloom.hex(),
        "logs": [
            {
                "address": "0x" + log.address.hex(),
                "topics": ["0x" + t.hex() for t in log.topics],
                "data": "0x" + log.data.hex(),
            }
            for log in receipt.logs
        ],
    }
    assert receipt_from_rpc(rpc) == receipt


# --- anvil current-fork block (types 0, 1, 2, 4; one failed receipt) ---------------------


def _anvil_receipts() -> tuple[Any, list[Receipt]]:
    data = anvil_block()
    return data, [receipt_from_rpc(r) for r in data["receipts"]]


def test_anvil_receipts_root() -> None:
    data, receipts = _anvil_receipts()
    block = data["block"]
    assert sorted({r.tx_type for r in receipts}) == [0, 1, 2, 4]
    assert [r.status for r in receipts].count(0) == 1
    verify_receipts_root(hx(block["receiptsRoot"]), receipts)
    assert block_logs_bloom(receipts) == hx(block["logsBloom"])
    for receipt in receipts:
        check_logs_bloom(receipt)


def test_anvil_transactions_root_from_raw_txs() -> None:
    data = anvil_block()
    block = data["block"]
    raws = [hx(data["raw_transactions"][tx["hash"]]) for tx in block["transactions"]]
    assert ordered_trie_root(raws) == hx(block["transactionsRoot"])
    assert ordered_trie_root(raws[::-1]) != hx(block["transactionsRoot"])


def test_anvil_receipts_root_rejects_tampering() -> None:
    data, receipts = _anvil_receipts()
    root = hx(data["block"]["receiptsRoot"])
    log = receipts[0].logs[0]
    forged_log = dataclasses.replace(log, data=log.data[:-1] + bytes([log.data[-1] ^ 1]))
    tampered = [
        receipts[::-1],
        receipts[:-1],
        [*receipts[:3], dataclasses.replace(receipts[3], status=1), *receipts[4:]],
        [dataclasses.replace(receipts[0], logs=(forged_log,)), *receipts[1:]],
        [dataclasses.replace(receipts[0], cumulative_gas_used=1), *receipts[1:]],
    ]
    for forged in tampered:
        with pytest.raises(ProofError) as info:
            verify_receipts_root(root, forged)
        assert info.value.kind == "receiptsRoot"


def test_claimed_bloom_must_match_logs() -> None:
    _, receipts = _anvil_receipts()
    receipt = receipts[0]
    wrong = dataclasses.replace(receipt, logs_bloom=bytes(BLOOM_BYTES))
    with pytest.raises(ProofError) as info:
        check_logs_bloom(wrong)
    assert info.value.kind == "logsBloom"
    with pytest.raises(ProofError):
        verify_receipts_root(receipts_root([wrong]), [wrong])


def test_bloom_sets_three_bits_per_item() -> None:
    log = Log(address=b"\x11" * 20, topics=(), data=b"")
    bloom = int.from_bytes(logs_bloom([log]), "big")
    assert 1 <= bin(bloom).count("1") <= 3
    assert logs_bloom([]) == bytes(BLOOM_BYTES)


# --- malformed input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.pop("logsBloom"),
        lambda r: r.update(status="0x2"),
        lambda r: r.update(type="0x9"),
        lambda r: r.update(cumulativeGasUsed="12"),
        lambda r: r.update(logsBloom="0x00"),
        lambda r: r["logs"][0].update(topics=["0x01"]),
        lambda r: r["logs"][0].update(address="0xzz"),
        lambda r: r.update(logs={}),
        lambda r: r.update(root="0x1234"),
    ],
)
def test_receipt_from_rpc_rejects_malformed(mutate: Any) -> None:
    data = anvil_block()
    rpc = data["receipts"][0]
    mutate(rpc)
    with pytest.raises(DecodingError):
        receipt_from_rpc(rpc)


def test_decode_receipt_rejects_unknown_type_and_shapes() -> None:
    good = encode_receipt(_anvil_receipts()[1][0])
    for bad in (b"", b"\x05" + good[1:], b"\x00" + good[1:], good[:1] + b"\xc0", good + b"\x00"):
        with pytest.raises(DecodingError):
            decode_receipt(bad)


# --- hypothesis: round trip and random bytes -----------------------------------------------

_logs = st.builds(
    Log,
    address=st.binary(min_size=20, max_size=20),
    topics=st.lists(st.binary(min_size=32, max_size=32), max_size=4).map(tuple),
    data=st.binary(max_size=80),
)


@st.composite
def _receipts(draw: st.DrawFn) -> Receipt:
    tx_type = draw(st.sampled_from([0, 1, 2, 3, 4]))
    logs = tuple(draw(st.lists(_logs, max_size=3)))
    pre_byzantium = tx_type == 0 and draw(st.booleans())
    return Receipt(
        tx_type=tx_type,
        status=None if pre_byzantium else draw(st.sampled_from([0, 1])),
        post_state=draw(st.binary(min_size=32, max_size=32)) if pre_byzantium else None,
        cumulative_gas_used=draw(st.integers(0, 2**64)),
        logs_bloom=logs_bloom(logs),
        logs=logs,
    )


@settings(max_examples=150, deadline=None)
@given(_receipts())
def test_receipt_round_trip(receipt: Receipt) -> None:
    encoded = encode_receipt(receipt)
    assert decode_receipt(encoded) == receipt
    check_logs_bloom(receipt)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decode_receipt_random_bytes(data: bytes) -> None:
    with contextlib.suppress(LightpostError):
        decode_receipt(data)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["status", "type", "logs", "logsBloom", "cumulativeGasUsed", "root"]),
    json_values,
)
def test_receipt_from_rpc_random_fields(name: str, value: object) -> None:
    rpc = anvil_block()["receipts"][0]
    rpc[name] = value
    with contextlib.suppress(LightpostError):
        receipt_from_rpc(rpc)
