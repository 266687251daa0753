"""The anchoring contract: committed bytecode reproduced from its source, the protocol address,
and the Python mirror of its rules (accumulator, slots, calldata of both modes)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightpost.core import rlp
from lightpost.core.hashing import keccak256
from lightpost.core.inbox import CREATE2_DEPLOYER, INBOX_ADDRESS, create2_address
from lightpost.errors import DecodingError
from lightpost_gateway.anchor import (
    ANCHOR_ADDRESS,
    ANCHOR_INITCODE_HASH,
    ANCHOR_SALT,
    EVENT_SIGNATURE,
    EVENT_TOPIC,
    MAX_POSTED_RECORDS,
    accumulate,
    anchored_calldata,
    decode_posted,
    gateway_slots,
    posted_calldata,
)
from lightpost_gateway.artifact import anchor_initcode, anchor_runtime
from tests.core.test_inbox_bytecode import build, evmasm


def test_committed_artifact_is_reproduced_byte_for_byte() -> None:
    source = build.ANCHOR_SOURCE.read_text(encoding="utf-8")
    assert build.ANCHOR_ARTIFACT.read_text(encoding="utf-8") == build.render(
        build.build_anchor(source)
    )
    assert build.main(["--check"]) == 0
    artifact = build.build_anchor(source)
    assert artifact["source_sha256"] == hashlib.sha256(source.encode()).hexdigest()
    assert artifact["event_signature"] == EVENT_SIGNATURE
    assert artifact["event_topic"] == "0x" + EVENT_TOPIC.hex()


def test_protocol_address_is_the_shipped_initcode() -> None:
    assert keccak256(anchor_initcode()) == ANCHOR_INITCODE_HASH
    assert anchor_initcode() == evmasm.deploy_wrapper(anchor_runtime())
    assert bytes([evmasm.OPCODES["PUSH32"]]) + EVENT_TOPIC in anchor_runtime()
    assert create2_address(CREATE2_DEPLOYER, ANCHOR_SALT, ANCHOR_INITCODE_HASH) == ANCHOR_ADDRESS
    assert ANCHOR_ADDRESS != INBOX_ADDRESS


def test_accumulator_and_slots() -> None:
    assert accumulate(bytes(32), b"\x01" * 32) == keccak256(bytes(32) + b"\x01" * 32)
    gateway = b"\xab" * 20
    acc_slot, count_slot = gateway_slots(gateway)
    assert acc_slot == int.from_bytes(keccak256(bytes(12) + gateway), "big")
    assert count_slot == acc_slot + 1 or (acc_slot, count_slot) == (2**256 - 1, 0)
    assert gateway_slots(b"\xac" + b"\xab" * 19) != gateway_slots(gateway)


def test_anchored_calldata_is_the_root() -> None:
    assert anchored_calldata(b"\x05" * 32) == b"\x05" * 32
    with pytest.raises(ValueError):
        anchored_calldata(b"\x05" * 33)


@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=20))
def test_posted_round_trip(records: list[bytes]) -> None:
    data = posted_calldata(records)
    if len(data) > 32:
        assert decode_posted(data) == records


@pytest.mark.parametrize(
    "data",
    [
        b"\x01" * 32,  # an anchored batch
        rlp.encode([[b"x" * 40]]),  # nested list
        rlp.encode([]) + bytes(40),  # trailing bytes
        rlp.encode(b"x" * 40),  # not a list
        rlp.encode([b"x" * 40] * (MAX_POSTED_RECORDS + 1)),  # too many
        b"\xf9\xff\xff" + bytes(40),  # truncated
    ],
)
def test_decode_posted_refuses(data: bytes) -> None:
    with pytest.raises(DecodingError):
        decode_posted(data)


def test_posted_calldata_bounds() -> None:
    with pytest.raises(ValueError):
        posted_calldata([])
    with pytest.raises(ValueError):
        posted_calldata([b"x"] * (MAX_POSTED_RECORDS + 1))
