"""The anchoring contract: committed bytecode reproduced from its source, the protocol address,
and the Python mirror of its rules (accumulator, slots, calldata of both modes)."""

from __future__ import annotations

import hashlib
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightpost.core import rlp
from lightpost.core.hashing import keccak256
from lightpost.core.inbox import CREATE2_DEPLOYER, INBOX_ADDRESS, create2_address
from lightpost.core.keys import SECP256K1_N, Signature
from lightpost.errors import DecodingError
from lightpost_gateway.anchor import (
    ANCHOR_ADDRESS,
    ANCHOR_INITCODE_HASH,
    ANCHOR_SALT,
    EVENT_SIGNATURE,
    EVENT_TOPIC,
    MAX_POSTED_INFLATED,
    MAX_POSTED_RECORDS,
    POSTED_VERSION,
    accumulate,
    anchored_calldata,
    decode_posted,
    gateway_slots,
    posted_calldata,
)
from lightpost_gateway.artifact import anchor_initcode, anchor_runtime
from lightpost_gateway.record import (
    MAX_PAYLOAD,
    MAX_STREAM,
    ZERO_HASH,
    Kind,
    Record,
    SignedRecord,
    birth_payload,
    encode_record,
)
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


_U64 = st.integers(0, 2**64 - 1)


@st.composite
def wire_records(draw: st.DrawFn) -> bytes:
    """Any valid wire record (the decoder checks bounds, not who signed: r, s drawn in range)."""
    kind = draw(st.sampled_from(list(Kind)))
    seq = draw(_U64)
    prev = (
        ZERO_HASH if seq == 0 and kind != Kind.DEATH else draw(st.binary(min_size=32, max_size=32))
    )
    if kind == Kind.DATA:
        fields = {
            "stream": draw(st.binary(min_size=1, max_size=MAX_STREAM)),
            "time_ms": draw(_U64),
            "content_type": draw(st.integers(0, 0xFFFF)),
            "payload": draw(st.binary(max_size=MAX_PAYLOAD)),
        }
    elif kind == Kind.BIRTH:
        cadence = draw(st.integers(1, 2**32 - 1))
        fields = {
            "stream": b"",
            "time_ms": draw(_U64),
            "payload": birth_payload(cadence, draw(st.integers(0, seq))),
        }
    else:
        fields = {"stream": b""}
    record = Record(kind=kind, seq=seq, prev=prev, **fields)
    signature = Signature(
        y_parity=draw(st.integers(0, 1)),
        r=draw(st.integers(1, SECP256K1_N - 1)),
        s=draw(st.integers(1, SECP256K1_N // 2)),
    )
    return encode_record(SignedRecord(record=record, signature=signature))


@given(st.lists(wire_records(), min_size=1, max_size=12))
def test_posted_round_trip(records: list[bytes]) -> None:
    data = posted_calldata(records)
    assert data[0] == POSTED_VERSION and len(data) > 32  # never mistaken for an anchored root
    assert decode_posted(data) == records


def _raw(records: list[bytes]) -> tuple[bytes, bytes]:
    """(calldata up to the body, the inflated body) of a posted batch."""
    data = posted_calldata(records)
    fixed = 3 + 96 * len(records)
    return data[:fixed], zlib.decompressobj(-15).decompress(data[fixed:])


def _deflate(body: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(body) + c.flush()


READING = Record(kind=Kind.DATA, stream=b"t", seq=3, prev=b"\x07" * 32, payload=b'{"t":21.5}')
WIRE = encode_record(SignedRecord(record=READING, signature=Signature(y_parity=1, r=5, s=7)))
HEAD, BODY = _raw([WIRE])


def _with_count(count: int) -> bytes:
    return HEAD[:1] + count.to_bytes(2, "big") + HEAD[3:] + _deflate(BODY)


@pytest.mark.parametrize(
    "data",
    [
        b"\x01" * 32,  # an anchored batch
        rlp.encode([WIRE]),  # version 1: rlp([record, ...])
        b"\x03" + (HEAD + _deflate(BODY))[1:],  # unknown version
        _with_count(0),
        _with_count(MAX_POSTED_RECORDS + 1),
        _with_count(2),  # more records than the columns hold
        HEAD + _deflate(BODY) + b"\x00",  # bytes after the deflate stream
        HEAD + _deflate(BODY)[:-2],  # truncated deflate stream
        HEAD + _deflate(BODY + b"\x00"),  # a body byte after the last record
        HEAD + _deflate(BODY[:-1]),  # the body ends inside the payload
        HEAD + _deflate(b"\x05" + BODY[1:]),  # unknown kind
        HEAD + _deflate(BODY[:1] + b"\x02" + BODY[2:]),  # y parity 2
        HEAD[:3] + b"\xff" * 64 + HEAD[67:] + _deflate(BODY),  # r, s out of range
        HEAD + _deflate(BODY[:20] + b"\x00" + BODY[21:]),  # a data record without its stream
        HEAD + b"\x00\x00\x00",  # an empty stored block without the final bit
        HEAD + _deflate(b"\x00" * (MAX_POSTED_INFLATED + 1)),  # a DEFLATE bomb
        HEAD + _deflate(BODY[:-2] + b"\xff\xff" + BODY[-2:]),  # corrupted payload length
    ],
)
def test_decode_posted_refuses(data: bytes) -> None:
    with pytest.raises(DecodingError):
        decode_posted(data)


def test_decode_posted_caps_inflation_by_the_count() -> None:
    """One record inflates to at most one maximal record's body, however small the stream."""
    bomb = HEAD + _deflate(BODY + b"\x00" * (MAX_STREAM + MAX_PAYLOAD))
    with pytest.raises(DecodingError, match="inflates past"):
        decode_posted(bomb)


def test_posted_calldata_bounds() -> None:
    with pytest.raises(ValueError):
        posted_calldata([])
    with pytest.raises(ValueError):
        posted_calldata([b"x"] * (MAX_POSTED_RECORDS + 1))


def test_a_batch_of_maximal_incompressible_records_is_within_the_decoder_bounds() -> None:
    """The bounds are not tighter than what the gateway can produce: 256 records, each with the
    longest stream and a random maximal payload (DEFLATE stores them), decode."""
    records = []
    for i in range(MAX_POSTED_RECORDS):
        seed = hashlib.sha256(b"max %d" % i).digest()
        record = Record(
            kind=Kind.DATA,
            stream=seed[:MAX_STREAM],
            seq=2**64 - 1 - i,
            prev=seed,
            time_ms=2**64 - 1,
            content_type=0xFFFF,
            payload=b"".join(hashlib.sha256(seed + bytes([j])).digest() for j in range(32)),
        )
        signature = Signature(y_parity=1, r=SECP256K1_N - 1, s=SECP256K1_N // 2)
        records.append(encode_record(SignedRecord(record=record, signature=signature)))
    data = posted_calldata(records)
    assert decode_posted(data) == records
