"""Tests for lightpost.core.envelope: layout, round trips, strictness, chunking, compression,
and the worked examples committed in docs/protocol.md and tests/core/vectors."""

from __future__ import annotations

import importlib.util
import json
import random
import re
import struct
import sys
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lightpost.core import envelope as env
from lightpost.core.envelope import (
    CHUNK_RECORD_OVERHEAD,
    DIRECT_CHANNEL,
    FLAG_CHUNK,
    FLAG_COMPRESSED,
    FLAG_ENCRYPTED,
    FORMAT_VERSION,
    FORMAT_VERSION_DEFLATED,
    MAX_MESSAGE_BYTES,
    MAX_PARTIAL_BYTES,
    MAX_POST_INFLATED_BYTES,
    MIN_POST_BYTES,
    POST_HEADER_SIZE,
    RECORD_OVERHEAD,
    Chunk,
    ContentType,
    EnvelopeError,
    Message,
    Post,
    Reassembler,
    Record,
    channel_id,
    choose_compression,
    decode_post,
    encode_post,
    message_from_record,
    pack_messages,
    post_body_size,
    post_calldata_tokens,
    post_gas,
    record_size,
    records_for_message,
)
from lightpost.core.gas import calldata_tokens, floor_gas, gas_used
from lightpost.core.hashing import keccak256
from lightpost.errors import DecodingError, ProofError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_JSON = ROOT / "tests" / "core" / "vectors" / "envelope_examples.json"
PROTOCOL_MD = ROOT / "docs" / "protocol.md"
GENERATOR = ROOT / "tools" / "gen_protocol_examples.py"

CHANNEL = channel_id("test/channel")
ALICE = bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8")
T0 = 1_767_225_600_000


def deflate(data: bytes) -> bytes:
    """Independent raw-DEFLATE for building test inputs."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def raw_record(
    *,
    seq: int = 1,
    ts: int = T0,
    ctype: int = 1,
    flags: int = 0,
    chunk: tuple[int, int, bytes] | None = None,
    payload: bytes = b"hi",
    length: int | None = None,
) -> bytes:
    """A record assembled by hand from the documented layout (not by the encoder)."""
    out = struct.pack(">QQBB", seq, ts, ctype, flags)
    if chunk is not None:
        out += struct.pack(">II", chunk[0], chunk[1]) + chunk[2]
    out += struct.pack(">I", len(payload) if length is None else length) + payload
    return out


def raw_post(
    *records: bytes, channel: bytes = CHANNEL, word: bytes = bytes(32), version: int = 1
) -> bytes:
    return channel + word + bytes((0x4C, version)) + b"".join(records)


def reject(data: bytes, reason_part: str) -> DecodingError:
    with pytest.raises(DecodingError) as info:
        decode_post(data)
    assert info.value.what == "envelope"
    assert reason_part in info.value.reason
    return info.value


# --- strategies ------------------------------------------------------------------------

u64 = st.integers(min_value=0, max_value=2**64 - 1)
u8 = st.integers(min_value=0, max_value=255)
recipients = st.one_of(
    st.none(), st.binary(min_size=20, max_size=20).map(lambda b: b if any(b) else b"\x01" * 20)
)


@st.composite
def records(draw: st.DrawFn) -> Record:
    kind = draw(st.sampled_from(["plain", "compressed", "chunk"]))
    common: dict[str, Any] = {"seq": draw(u64), "timestamp": draw(u64), "content_type": draw(u8)}
    if kind == "plain":
        return Record(payload=draw(st.binary(max_size=200)), **common)
    if kind == "compressed":
        return Record(payload=deflate(draw(st.binary(max_size=200))), compressed=True, **common)
    count = draw(st.integers(min_value=2, max_value=2**32 - 1))
    chunk = Chunk(
        index=draw(st.integers(min_value=0, max_value=count - 1)),
        count=count,
        content_hash=draw(st.binary(min_size=32, max_size=32)),
    )
    return Record(
        payload=draw(st.binary(max_size=200)),
        compressed=draw(st.booleans()),
        chunk=chunk,
        **common,
    )


posts = st.builds(
    Post,
    channel=st.binary(min_size=32, max_size=32),
    recipient=recipients,
    records=st.lists(records(), min_size=1, max_size=5).map(tuple),
    deflated=st.booleans(),
)


def _payload(kind: str, size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    if kind == "random":
        return rng.randbytes(size)
    if kind == "text":  # compressible: digits and separators
        return "".join(rng.choice("0123456789 ,:") for _ in range(size)).encode()
    return bytes(size)


# Sizes drawn uniformly (hypothesis' own binary() strongly favours tiny values).
payloads = st.one_of(
    st.binary(max_size=64),
    st.builds(
        _payload,
        st.sampled_from(["random", "text", "zeros"]),
        st.integers(min_value=0, max_value=2500),
        st.integers(min_value=0, max_value=2**32),
    ),
)


@st.composite
def message_lists(draw: st.DrawFn) -> list[Message]:
    n = draw(st.integers(min_value=1, max_value=6))
    seqs = draw(st.lists(u64, min_size=n, max_size=n, unique=True))
    return [
        Message(seq=s, timestamp=draw(u64), content_type=draw(u8), payload=draw(payloads))
        for s in seqs
    ]


# --- channel ids and layout ----------------------------------------------------------------


def test_channel_id_is_keccak_of_utf8_name() -> None:
    assert channel_id("grün/1") == keccak256("grün/1".encode())
    assert keccak256(b"lightpost/direct") == DIRECT_CHANNEL
    assert len(channel_id("")) == 32


def test_layout_matches_the_fixed_offsets_the_inbox_reads() -> None:
    post = Post(
        channel=CHANNEL,
        recipient=ALICE,
        records=(
            Record(seq=5, timestamp=T0, content_type=ContentType.TEXT, payload=b"abc"),
            Record(
                seq=6,
                timestamp=T0 + 1,
                content_type=ContentType.OCTET_STREAM,
                payload=b"\x01",
                chunk=Chunk(index=1, count=3, content_hash=b"\xaa" * 32),
            ),
        ),
    )
    data = encode_post(post)
    assert data[0:32] == CHANNEL
    assert data[32:44] == bytes(12) and data[44:64] == ALICE
    assert data[64:66] == b"\x4c\x01"
    expected_records = raw_record(seq=5, ctype=1, payload=b"abc") + raw_record(
        seq=6, ts=T0 + 1, ctype=0, flags=FLAG_CHUNK, chunk=(1, 3, b"\xaa" * 32), payload=b"\x01"
    )
    assert data[POST_HEADER_SIZE:] == expected_records
    assert len(data) == POST_HEADER_SIZE + sum(record_size(r) for r in post.records)
    assert (RECORD_OVERHEAD, CHUNK_RECORD_OVERHEAD, POST_HEADER_SIZE) == (22, 62, 66)


def test_broadcast_is_32_zero_bytes() -> None:
    post = Post(channel=CHANNEL, recipient=None, records=[Record(**_r())])
    data = encode_post(post)
    assert data[32:64] == bytes(32)
    assert decode_post(data).recipient is None
    assert isinstance(post.records, tuple)


def _r(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"seq": 1, "timestamp": T0, "content_type": 1, "payload": b"x"}
    base.update(over)
    return base


# --- round trips and fuzzing ------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(posts)
def test_post_round_trip(post: Post) -> None:
    data = encode_post(post)
    assert decode_post(data) == post
    assert data[65] == (FORMAT_VERSION_DEFLATED if post.deflated else FORMAT_VERSION)
    assert post_body_size(post) == POST_HEADER_SIZE + sum(record_size(r) for r in post.records)
    if not post.deflated:
        assert len(data) == post_body_size(post)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decoding_error(data: bytes) -> None:
    try:
        post = decode_post(data)
    except DecodingError as exc:
        assert exc.what == "envelope"
    else:  # version 1 is canonical; a version-2 stream may be any valid DEFLATE
        assert encode_post(post) == data if not post.deflated else decode_post(data) == post


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_valid_header_with_random_records_raises_only_decoding_error(
    tail: bytes, deflated: bool
) -> None:
    data = raw_post(deflate(tail) if deflated else tail, version=2 if deflated else 1)
    try:
        post = decode_post(data)
    except DecodingError as exc:
        assert exc.offset is None or 0 <= exc.offset <= len(data)
    else:
        assert post.deflated == deflated
        assert encode_post(post) == data if not deflated else post_body_size(post) > 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(posts, st.data())
def test_mutated_posts_raise_only_decoding_error(post: Post, data: st.DataObject) -> None:
    encoded = bytearray(encode_post(post))
    op = data.draw(st.sampled_from(["flip", "truncate", "append"]))
    if op == "flip":
        i = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
        encoded[i] ^= data.draw(st.integers(min_value=1, max_value=255))
    elif op == "truncate":
        del encoded[data.draw(st.integers(min_value=0, max_value=len(encoded) - 1)) :]
    else:
        encoded += data.draw(st.binary(min_size=1, max_size=30))
    try:
        decoded = decode_post(bytes(encoded))
    except DecodingError:
        return
    if decoded.deflated:
        # version 2 is not canonical: a mutated stream can still be valid DEFLATE of
        # (possibly other) records; those records must survive a round trip
        assert decode_post(encode_post(decoded)) == decoded
    else:
        assert encode_post(decoded) == bytes(encoded)


def test_a_mutated_but_valid_deflate_stream_decodes_to_its_records() -> None:
    # the case hypothesis found: v2 bytes that differ from what the encoder writes
    records = (Record(seq=1, timestamp=T0, content_type=1, payload=b"hi"),)
    body = encode_post(Post(channel=CHANNEL, recipient=None, records=records))[POST_HEADER_SIZE:]
    stored = zlib.compressobj(0, zlib.DEFLATED, -15)  # level 0: a stored block
    wire = raw_post(stored.compress(body) + stored.flush(), version=2)
    decoded = decode_post(wire)
    assert decoded.deflated and decoded.records == records
    assert encode_post(decoded) != wire  # not canonical, and that is allowed


# --- every reject path of decode_post --------------------------------------------------------


def test_reject_truncated_header() -> None:
    err = reject(raw_post(raw_record())[:65], "truncated post header")
    assert err.offset == 0


def test_reject_bad_magic() -> None:
    data = bytearray(raw_post(raw_record()))
    data[64] = 0x4D
    assert reject(bytes(data), "bad magic").offset == 64


@pytest.mark.parametrize("version", [0x00, 0x03, 0xFF])
def test_reject_unknown_version(version: int) -> None:
    data = bytearray(raw_post(raw_record()))
    data[65] = version
    assert reject(bytes(data), f"unknown envelope version {version}").offset == 65


def test_version_1_body_is_not_read_as_version_2() -> None:
    # flipping only the version byte turns clear records into an invalid deflate stream
    data = bytearray(raw_post(raw_record()))
    data[65] = 0x02
    assert reject(bytes(data), "invalid deflate stream").offset == 66


def test_reject_recipient_word_with_nonzero_padding() -> None:
    word = b"\x00" * 11 + b"\x01" + ALICE
    assert reject(raw_post(raw_record(), word=word), "padding").offset == 32


def test_reject_post_without_records() -> None:
    reject(raw_post(), "no records")


def test_reject_trailing_bytes() -> None:
    err = reject(raw_post(raw_record(), b"\x00" * 21), "trailing bytes")
    assert err.offset == POST_HEADER_SIZE + RECORD_OVERHEAD + 2


def test_reject_encrypted_flag() -> None:
    err = reject(raw_post(raw_record(flags=FLAG_ENCRYPTED)), "encrypted envelopes are not")
    assert "not supported by this version" in str(err)
    assert err.offset == POST_HEADER_SIZE + 17


@pytest.mark.parametrize("flag", [0x08, 0x10, 0x20, 0x40, 0x80])
def test_reject_unknown_flags(flag: int) -> None:
    reject(raw_post(raw_record(flags=flag)), "unknown flags")


def test_reject_truncated_chunk_extension() -> None:
    rec = raw_record(flags=FLAG_CHUNK, chunk=(0, 2, b"\x11" * 32), payload=b"")
    reject(raw_post(rec[:30]), "truncated chunk extension")


def test_reject_truncated_length_after_chunk_extension() -> None:
    rec = raw_record(flags=FLAG_CHUNK, chunk=(0, 2, b"\x11" * 32), payload=b"")
    reject(raw_post(rec[:60]), "truncated payload length")


@pytest.mark.parametrize("count", [0, 1])
def test_reject_chunk_count_below_two(count: int) -> None:
    rec = raw_record(flags=FLAG_CHUNK, chunk=(0, count, b"\x11" * 32))
    reject(raw_post(rec), "chunk count")


def test_reject_chunk_index_not_below_count() -> None:
    rec = raw_record(flags=FLAG_CHUNK, chunk=(3, 3, b"\x11" * 32))
    reject(raw_post(rec), "chunk index 3 not below count 3")


def test_reject_payload_length_beyond_data() -> None:
    err = reject(raw_post(raw_record(payload=b"abc", length=4)), "exceeds the 3 bytes left")
    assert err.offset == POST_HEADER_SIZE + 18


def test_reject_payload_length_above_cap() -> None:
    reject(raw_post(raw_record(payload=b"", length=MAX_MESSAGE_BYTES + 1)), "exceeds 4194304")


def test_reject_invalid_deflate() -> None:
    reject(raw_post(raw_record(flags=FLAG_COMPRESSED, payload=b"\xff\xff\xff")), "deflate")


def test_reject_truncated_deflate() -> None:
    stream = deflate(b"hello world, hello world" * 10)
    reject(raw_post(raw_record(flags=FLAG_COMPRESSED, payload=stream[:-2])), "truncated deflate")


def test_reject_bytes_after_deflate_stream() -> None:
    stream = deflate(b"hello") + b"\x00"
    reject(raw_post(raw_record(flags=FLAG_COMPRESSED, payload=stream)), "after the deflate")


def test_reject_decompression_bomb() -> None:
    bomb = deflate(bytes(MAX_MESSAGE_BYTES + 1))
    assert len(bomb) < 10_000
    reject(raw_post(raw_record(flags=FLAG_COMPRESSED, payload=bomb)), "exceeds 4194304")


def test_exactly_max_decompressed_is_accepted() -> None:
    stream = deflate(bytes(MAX_MESSAGE_BYTES))
    post = decode_post(raw_post(raw_record(flags=FLAG_COMPRESSED, payload=stream)))
    assert len(message_from_record(post.records[0]).payload) == MAX_MESSAGE_BYTES


def test_unknown_content_type_is_carried() -> None:
    post = decode_post(raw_post(raw_record(ctype=200)))
    assert post.records[0].content_type == 200


# --- construction errors (local) ---------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        _r(seq=2**64),
        _r(seq=-1),
        _r(seq=True),
        _r(timestamp=2**64),
        _r(timestamp=1.5),
        _r(content_type=256),
        _r(payload="text"),
        _r(payload=bytes(MAX_MESSAGE_BYTES + 1)),
    ],
)
def test_message_and_record_validate(kwargs: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeError):
        Message(**kwargs)
    with pytest.raises(EnvelopeError):
        Record(**kwargs)


@pytest.mark.parametrize(
    ("index", "count", "content_hash"),
    [
        (0, 1, bytes(32)),
        (2, 2, bytes(32)),
        (-1, 2, bytes(32)),
        (0, 2**32, bytes(32)),
        (0, 2, bytes(31)),
    ],
)
def test_chunk_validates(index: int, count: int, content_hash: bytes) -> None:
    with pytest.raises(EnvelopeError):
        Chunk(index=index, count=count, content_hash=content_hash)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"channel": bytes(31), "recipient": None},
        {"channel": CHANNEL, "recipient": bytes(20)},
        {"channel": CHANNEL, "recipient": ALICE[:19]},
    ],
)
def test_post_validates(kwargs: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeError):
        Post(records=(Record(**_r()),), **kwargs)


def test_post_needs_records_and_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        Post(channel=CHANNEL, recipient=None, records=())


def test_pack_messages_rejects_a_budget_below_one_chunk() -> None:
    with pytest.raises(EnvelopeError):
        pack_messages(CHANNEL, None, [], max_post_bytes=MIN_POST_BYTES - 1)
    with pytest.raises(EnvelopeError):
        pack_messages(bytes(5), None, [], max_post_bytes=1000)
    assert pack_messages(CHANNEL, None, [], max_post_bytes=MIN_POST_BYTES) == []


def test_message_from_record_refuses_chunks() -> None:
    chunk = Chunk(index=0, count=2, content_hash=bytes(32))
    with pytest.raises(EnvelopeError):
        message_from_record(Record(chunk=chunk, **_r()))


# --- compression ------------------------------------------------------------------------


def test_compression_chosen_for_compressible_text() -> None:
    text = json.dumps([{"sensor": "t1", "value": 21.5 + i / 10} for i in range(40)]).encode()
    wire, compressed = choose_compression(text)
    assert compressed
    assert calldata_tokens(wire) < calldata_tokens(text)
    (record,) = records_for_message(
        Message(seq=1, timestamp=T0, content_type=2, payload=text), max_record_bytes=10_000
    )
    assert record.compressed and record.payload == wire
    assert message_from_record(record).payload == text


def test_compression_not_chosen_for_random_bytes() -> None:
    data = random.Random(1).randbytes(1000)
    assert choose_compression(data) == (data, False)


def test_compression_not_chosen_when_shorter_but_more_tokens() -> None:
    # ~20% zero bytes scattered among random nonzero bytes: DEFLATE saves length, but the
    # cheap zero bytes become nonzero stream bytes, so the token count rises.
    rng = random.Random(7)
    data = bytes(0 if rng.random() < 0.2 else rng.randrange(1, 256) for _ in range(2000))
    deflated = deflate(data)
    assert len(deflated) < len(data)  # precondition: zlib does shorten it ...
    assert calldata_tokens(deflated) > calldata_tokens(data)  # ... but makes it dearer
    assert choose_compression(data) == (data, False)


def test_compression_chosen_for_long_zero_runs() -> None:
    data = bytes(1000)  # 1000 tokens; the stream is ~11 nonzero bytes, ~40 tokens
    wire, compressed = choose_compression(data)
    assert compressed and calldata_tokens(wire) < calldata_tokens(data)


@settings(max_examples=100, deadline=None)
@given(payloads)
def test_compression_never_costs_more_tokens(payload: bytes) -> None:
    wire, compressed = choose_compression(payload)
    if compressed:
        assert calldata_tokens(wire) < calldata_tokens(payload)
        assert zlib.decompress(wire, -15) == payload
    else:
        assert wire == payload


# --- batching and chunking -------------------------------------------------------------------


def test_three_small_messages_share_one_post() -> None:
    msgs = [Message(seq=i, timestamp=T0 + i, content_type=1, payload=b"21.5") for i in range(3)]
    (post,) = pack_messages(CHANNEL, None, msgs, max_post_bytes=1000)
    assert [message_from_record(r) for r in post.records] == msgs
    assert post_body_size(post) == POST_HEADER_SIZE + 3 * (RECORD_OVERHEAD + 4)
    assert decode_post(encode_post(post)) == post


def _readings(n: int) -> list[Message]:
    return [
        Message(
            seq=i,
            timestamp=T0 + 1000 * i,
            content_type=ContentType.JSON,
            payload=(
                f'{{"meter":"district-7/m-{i % 9:03d}","kWh":{1234.5 + i * 0.37:.3f},'
                f'"V":{229.8 + (i % 7) * 0.1:.1f},"A":{4.2 + (i % 5) * 0.05:.2f},"ok":true}}'
            ).encode(),
        )
        for i in range(n)
    ]


def test_similar_readings_go_out_as_one_deflated_stream() -> None:
    msgs = _readings(40)
    (post,) = pack_messages(CHANNEL, None, msgs, max_post_bytes=6000)
    assert post.deflated
    assert all(not r.compressed for r in post.records)  # one stream, not 40 small ones
    wire = encode_post(post)
    assert wire[65] == FORMAT_VERSION_DEFLATED and len(wire) <= 6000
    plain = Post(channel=CHANNEL, recipient=None, records=post.records)
    # measured, not assumed: the whole point is fewer EIP-7623 tokens
    assert calldata_tokens(wire) * 2 < post_calldata_tokens(plain)
    assert [message_from_record(r) for r in decode_post(wire).records] == msgs


def test_incompressible_posts_stay_version_1() -> None:
    rng = random.Random(5)
    msgs = [
        Message(seq=i, timestamp=T0, content_type=0, payload=rng.randbytes(90)) for i in range(5)
    ]
    (post,) = pack_messages(CHANNEL, ALICE, msgs, max_post_bytes=1000)
    assert not post.deflated and encode_post(post)[65] == FORMAT_VERSION


def test_a_deflated_post_never_exceeds_the_budget() -> None:
    msgs = _readings(200)
    for budget in (300, 1000, 4096):
        posts = pack_messages(CHANNEL, None, msgs, max_post_bytes=budget)
        assert all(len(encode_post(p)) <= budget for p in posts)
        assert all(post_body_size(p) <= budget for p in posts)  # packing budgets version 1
        got = [message_from_record(r) for p in posts for r in p.records]
        assert got == msgs


def test_deflated_post_decoding_errors() -> None:
    assert reject(raw_post(deflate(b""), version=2), "no records").offset == 66
    assert reject(raw_post(deflate(raw_record())[:-2], version=2), "truncated deflate").offset
    assert reject(raw_post(deflate(raw_record()) + b"x", version=2), "after the deflate stream")
    # A body of one maximal message inflates past MAX_MESSAGE_BYTES and is still legal (the
    # packer builds it); past the per-post budget it is refused.
    legal = deflate(raw_record(payload=bytes(MAX_MESSAGE_BYTES)))
    assert decode_post(raw_post(legal, version=2)).inflated_bytes == MAX_MESSAGE_BYTES + 22
    bomb = deflate(raw_record(payload=bytes(MAX_POST_INFLATED_BYTES)))
    assert reject(raw_post(bomb, version=2), "budget")
    inner = reject(raw_post(deflate(raw_record() + b"\x00" * 5), version=2), "trailing bytes")
    assert inner.offset == len(raw_record())  # counted in the inflated record sequence


def test_batching_splits_at_the_budget() -> None:
    msgs = [
        Message(seq=i, timestamp=T0, content_type=0, payload=bytes([i + 1]) * 10) for i in range(5)
    ]
    budget = POST_HEADER_SIZE + 2 * (RECORD_OVERHEAD + 10)
    result = pack_messages(CHANNEL, ALICE, msgs, max_post_bytes=budget)
    assert [len(p.records) for p in result] == [2, 2, 1]
    assert all(len(encode_post(p)) <= budget for p in result)


def test_chunks_fill_whole_posts_and_share_seq_and_hash() -> None:
    payload = random.Random(3).randbytes(1000)
    msg = Message(seq=9, timestamp=T0, content_type=0, payload=payload)
    after = Message(seq=10, timestamp=T0, content_type=1, payload=b"ok")
    result = pack_messages(CHANNEL, None, [msg, after], max_post_bytes=300)
    chunks = [r for p in result for r in p.records if r.chunk is not None]
    step = 300 - POST_HEADER_SIZE - CHUNK_RECORD_OVERHEAD
    assert len(chunks) == -(-1000 // step)
    assert {(c.seq, c.chunk.count, c.chunk.content_hash) for c in chunks if c.chunk} == {
        (9, len(chunks), keccak256(payload))
    }
    assert all(len(encode_post(p)) == 300 for p in result[:-1])
    assert result[-1].records[-1].seq == 10  # the last chunk shares its post


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    message_lists(),
    st.integers(min_value=MIN_POST_BYTES, max_value=1500),
    recipients,
    st.randoms(use_true_random=False),
)
def test_pack_then_reassemble_shuffled(
    messages: list[Message], budget: int, recipient: bytes | None, rng: random.Random
) -> None:
    result = pack_messages(CHANNEL, recipient, messages, max_post_bytes=budget)
    wire = [encode_post(p) for p in result]
    assert all(len(w) <= budget for w in wire)
    received = [r for w in wire for r in decode_post(w).records]
    event("chunked" if any(r.chunk for r in received) else "unchunked")
    event("compressed" if any(r.compressed for r in received) else "uncompressed")
    rng.shuffle(received)
    reassembler = Reassembler()
    out = [m for r in received if (m := reassembler.add(r)) is not None]
    assert sorted(out, key=lambda m: m.seq) == sorted(messages, key=lambda m: m.seq)
    assert reassembler.pending() == ()


def test_pack_at_the_minimum_budget_makes_one_byte_chunks() -> None:
    payload = random.Random(5).randbytes(45)  # 22 + 45 > 129 - 66: must be chunked
    msg = Message(seq=1, timestamp=T0, content_type=0, payload=payload)
    result = pack_messages(CHANNEL, None, [msg], max_post_bytes=MIN_POST_BYTES)
    assert len(result) == 45
    reassembler = Reassembler()
    assert [reassembler.add(p.records[0]) for p in result][-1] == msg


# --- reassembler rejects ------------------------------------------------------------------


def _chunks(payload: bytes, *, seq: int = 4, step: int = 30) -> list[Record]:
    msg = Message(seq=seq, timestamp=T0, content_type=0, payload=payload)
    records = records_for_message(msg, max_record_bytes=CHUNK_RECORD_OVERHEAD + step)
    assert all(r.chunk is not None for r in records)
    return list(records)


PAYLOAD = random.Random(11).randbytes(95)  # incompressible: chunks of 30, 30, 30, 5 bytes


def _with_chunk(record: Record, **over: Any) -> Record:
    assert record.chunk is not None
    fields = {"index": record.chunk.index, "count": record.chunk.count}
    fields["content_hash"] = record.chunk.content_hash
    chunk_over = {k: over.pop(k) for k in ("index", "count", "content_hash") if k in over}
    fields.update(chunk_over)
    base = {
        "seq": record.seq,
        "timestamp": record.timestamp,
        "content_type": record.content_type,
        "payload": record.payload,
        "compressed": record.compressed,
    }
    base.update(over)
    return Record(chunk=Chunk(**fields), **base)


def test_identical_duplicate_chunk_is_ignored() -> None:
    first, *rest = _chunks(PAYLOAD)
    r = Reassembler()
    assert r.add(first) is None
    assert r.add(first) is None
    assert r.missing(4) == (1, 2, 3)
    results = [r.add(c) for c in rest]
    assert results[-1] == Message(seq=4, timestamp=T0, content_type=0, payload=PAYLOAD)


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"count": 5, "index": 4}, "chunk count"),
        ({"content_hash": b"\x01" * 32}, "content hash"),
        ({"timestamp": T0 + 1}, "timestamp"),
        ({"content_type": 1}, "content type"),
        ({"compressed": True}, "compressed flag"),
        ({"payload": b"different!"}, "different bytes"),
    ],
)
def test_inconsistent_chunk_is_rejected_and_state_kept(
    override: dict[str, Any], reason: str
) -> None:
    chunks = _chunks(PAYLOAD)
    r = Reassembler()
    r.add(chunks[0])
    r.add(chunks[1])
    bad = _with_chunk(chunks[1] if "payload" in override else chunks[2], **override)
    with pytest.raises(DecodingError, match=reason):
        r.add(bad)
    assert r.missing(4) == (2, 3)
    assert r.add(chunks[2]) is None
    assert r.add(chunks[3]) == Message(seq=4, timestamp=T0, content_type=0, payload=PAYLOAD)


def test_content_hash_mismatch_after_reassembly_is_a_proof_error() -> None:
    chunks = [_with_chunk(c, content_hash=keccak256(b"other")) for c in _chunks(PAYLOAD)]
    r = Reassembler()
    for c in chunks[:-1]:
        assert r.add(c) is None
    with pytest.raises(ProofError) as info:
        r.add(chunks[-1])
    assert info.value.kind == "content-hash"
    assert r.pending() == ()  # the bad message is dropped


def test_chunked_compressed_message_round_trips() -> None:
    rng = random.Random(2)
    text = " ".join(str(rng.randrange(1000)) for _ in range(800)).encode()
    chunks = _chunks(text, step=100)
    assert all(c.compressed for c in chunks)
    r = Reassembler()
    results = [r.add(c) for c in reversed(chunks)]
    assert results[-1] is not None and results[-1].payload == text


def test_chunked_bomb_and_bad_stream_are_rejected() -> None:
    bomb = deflate(bytes(2000))
    for stream, reason in ((bomb, "exceeds 1000"), (b"\xff" * 20, "deflate")):
        half = len(stream) // 2
        parts = [stream[:half], stream[half:]]
        r = Reassembler(max_message_bytes=1000)
        records = [
            Record(
                seq=1,
                timestamp=T0,
                content_type=0,
                payload=p,
                compressed=True,
                chunk=Chunk(index=i, count=2, content_hash=keccak256(bytes(2000))),
            )
            for i, p in enumerate(parts)
        ]
        r.add(records[0])
        with pytest.raises(DecodingError, match=reason):
            r.add(records[1])
        assert r.pending() == ()


def test_buffered_chunk_bytes_are_capped() -> None:
    r = Reassembler(max_message_bytes=40)
    chunks = _chunks(PAYLOAD)
    r.add(chunks[0])
    with pytest.raises(DecodingError, match="exceed 40 bytes"):
        r.add(chunks[1])
    assert r.pending() == ()


def test_unfinished_messages_of_a_stream_are_bounded_in_bytes() -> None:
    """A (compromised) sender opening partial messages at many seqs cannot make the
    receiver hold more than MAX_PARTIAL_BYTES of chunks for its stream."""
    piece = bytes(1024 * 1024)
    r = Reassembler()
    opened = 0
    with pytest.raises(DecodingError, match="unfinished messages"):
        for seq in range(100):
            chunk = Chunk(index=0, count=2, content_hash=bytes(32))
            r.add(Record(seq=seq, timestamp=T0, content_type=0, payload=piece, chunk=chunk))
            opened += 1
    assert opened == MAX_PARTIAL_BYTES // len(piece)
    assert r.held_bytes() == MAX_PARTIAL_BYTES
    r.discard(0)
    assert r.held_bytes() == MAX_PARTIAL_BYTES - len(piece)
    finished = _chunks(PAYLOAD, seq=1000)  # room again: a whole message goes through
    assert [r.add(c) for c in finished][-1] is not None
    assert r.held_bytes() == MAX_PARTIAL_BYTES - len(piece)


def test_reassembler_discard_and_unchunked_passthrough() -> None:
    r = Reassembler()
    chunks = _chunks(PAYLOAD)
    r.add(chunks[0])
    assert r.pending() == (4,)
    r.discard(4)
    assert r.pending() == () and r.missing(4) == ()
    plain = Record(**_r())
    assert r.add(plain) == Message(**_r())
    with pytest.raises(EnvelopeError):
        Reassembler(max_message_bytes=MAX_MESSAGE_BYTES + 1)


# --- gas helpers ------------------------------------------------------------------------------


def test_post_gas_uses_the_eip7623_floor() -> None:
    msgs = [Message(seq=i, timestamp=T0, content_type=2, payload=b'{"t":21.5}') for i in range(3)]
    (post,) = pack_messages(CHANNEL, None, msgs, max_post_bytes=1000)
    data = encode_post(post)
    zeros = data.count(0)
    assert post_calldata_tokens(post) == zeros + 4 * (len(data) - zeros)
    assert post_gas(post) == floor_gas(data) == 21_000 + 10 * post_calldata_tokens(post)
    assert post_gas(post, execution_gas=50_000) == gas_used(data, 50_000)


# --- worked examples (docs cannot go stale) ------------------------------------------------------


def _examples() -> dict[str, Any]:
    return json.loads(EXAMPLES_JSON.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _generated_section() -> str:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    start = text.index("<!-- BEGIN GENERATED EXAMPLES -->")
    return text[start : text.index("<!-- END GENERATED EXAMPLES -->")]


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_protocol_examples", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_protocol_examples", module)
    spec.loader.exec_module(module)
    return module


def test_examples_cover_the_required_cases() -> None:
    posts = [decode_post(bytes.fromhex(h)) for ex in _examples()["examples"] for h in ex["posts"]]
    records_ = [r for p in posts for r in p.records]
    assert any(len(p.records) == 3 for p in posts)
    assert any(r.chunk is not None for r in records_)
    assert any(r.compressed for r in records_)
    assert any(p.recipient is not None for p in posts)


@pytest.mark.parametrize("example", _examples()["examples"], ids=lambda e: e["name"])
def test_example_decodes_reencodes_and_reassembles(example: dict[str, Any]) -> None:
    reassembler = Reassembler()
    got = []
    for post_hex in example["posts"]:
        data = bytes.fromhex(post_hex)
        post = decode_post(data)
        assert encode_post(post) == data
        assert len(data) <= example["max_post_bytes"]
        assert (
            post.channel == channel_id(example["channel_name"]) == bytes.fromhex(example["channel"])
        )
        expected_recipient = example["recipient"]
        assert post.recipient == (
            None if expected_recipient is None else bytes.fromhex(expected_recipient)
        )
        got += [m for r in post.records if (m := reassembler.add(r)) is not None]
    expected = [
        Message(
            seq=m["seq"],
            timestamp=m["timestamp"],
            content_type=m["content_type"],
            payload=bytes.fromhex(m["payload"]),
        )
        for m in example["messages"]
    ]
    assert got == expected


def test_docs_show_exactly_the_committed_bytes() -> None:
    blocks = re.findall(r"```hex\n(.*?)\n```", _generated_section(), flags=re.S)
    shown = ["".join(b.split()) for b in blocks]
    committed = [h for ex in _examples()["examples"] for h in ex["posts"]]
    assert shown == committed


def test_docs_section_is_what_the_generator_renders() -> None:
    generator = _load_generator()
    rendered = generator.render_markdown(_examples())
    assert (
        _generated_section().strip() == ("<!-- BEGIN GENERATED EXAMPLES -->\n" + rendered).strip()
    )


def test_committed_examples_match_the_generator() -> None:
    committed = _examples()
    if committed["zlib_runtime_version"] != zlib.ZLIB_RUNTIME_VERSION:
        pytest.skip(
            f"examples were generated with zlib {committed['zlib_runtime_version']}; this "
            f"interpreter has {zlib.ZLIB_RUNTIME_VERSION}, whose DEFLATE bytes may differ"
        )
    assert _load_generator().build_examples() == committed


def test_module_exports_are_defined() -> None:
    for name in env.__all__:
        assert hasattr(env, name), name


def test_version_2_keeps_each_record_with_its_own_payload() -> None:
    # two messages that share a seq (a caller's mistake the envelope does not police)
    # must still each carry their own bytes when the post is re-packed as version 2
    msgs = [
        Message(seq=1, timestamp=T0, content_type=0, payload=b"a" * 300),
        Message(seq=1, timestamp=T0, content_type=0, payload=b"b" * 300),
    ]
    (post,) = pack_messages(CHANNEL, None, msgs, max_post_bytes=2000)
    assert post.deflated
    assert [message_from_record(r) for r in decode_post(encode_post(post)).records] == msgs


# --- inflation budget: one inflate per record, a budget per post --------------------------

_BOMB_RECORDS = 16
"""Records in the test bomb: enough to cost 64 MiB on the old decoder, little on this one."""


def _bomb_post() -> bytes:
    """A ~4 KB version-2 post whose compressed records each inflate to 4 MiB (the issue's
    compromised-sender bomb, with 16 records instead of a thousand)."""
    record = raw_record(flags=FLAG_COMPRESSED, payload=deflate(bytes(MAX_MESSAGE_BYTES)))
    return raw_post(deflate(record * _BOMB_RECORDS), version=2)


def test_inflation_bomb_is_refused_with_bounded_peak_memory() -> None:
    bomb = _bomb_post()
    assert len(bomb) < 9_000
    tracemalloc.start()
    try:
        with pytest.raises(DecodingError, match="budget"):
            post = decode_post(bomb)
            [message_from_record(r) for r in post.records]  # what a receiver then does
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # One record in flight plus the budget: far below the 16 x 4 MiB the bomb asks for.
    assert peak < MAX_POST_INFLATED_BYTES + 2 * MAX_MESSAGE_BYTES


def test_each_record_is_inflated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = env._inflate

    def counting(data: bytes, **kwargs: Any) -> bytes:
        calls.append(len(data))
        return real(data, **kwargs)

    monkeypatch.setattr(env, "_inflate", counting)
    stream = deflate(b"meter reading 42; " * 50)
    wire = raw_post(*(raw_record(seq=i, flags=FLAG_COMPRESSED, payload=stream) for i in (1, 2)))
    post = decode_post(wire)
    messages = [message_from_record(r) for r in post.records]
    assert [m.payload for m in messages] == [b"meter reading 42; " * 50] * 2
    assert len(calls) == 2
    assert post.inflated_bytes == 2 * 900


def test_budget_counts_body_and_records_and_can_be_lowered() -> None:
    stream = deflate(bytes(1000))
    inner = raw_record(flags=FLAG_COMPRESSED, payload=stream)
    wire = raw_post(deflate(inner), version=2)
    assert decode_post(wire).inflated_bytes == len(inner) + 1000
    assert decode_post(wire, max_inflated=len(inner) + 1000).inflated_bytes == len(inner) + 1000
    with pytest.raises(DecodingError, match="budget of 1000 bytes"):
        decode_post(wire, max_inflated=1000)  # the record no longer fits
    with pytest.raises(DecodingError, match="budget of 10 bytes"):
        decode_post(wire, max_inflated=10)  # the body alone does not fit
    assert decode_post(raw_post(raw_record())).inflated_bytes == 0
    with pytest.raises(EnvelopeError):
        decode_post(wire, max_inflated=MAX_POST_INFLATED_BYTES + 1)


def test_inflated_is_only_for_compressed_unchunked_records() -> None:
    with pytest.raises(EnvelopeError, match="inflated"):
        Record(seq=1, timestamp=T0, content_type=0, payload=b"x", inflated=b"x")
    chunk = Chunk(index=0, count=2, content_hash=bytes(32))
    with pytest.raises(EnvelopeError, match="inflated"):
        Record(
            seq=1,
            timestamp=T0,
            content_type=0,
            payload=b"x",
            compressed=True,
            chunk=chunk,
            inflated=b"x",
        )


def test_packer_never_builds_a_post_over_the_budget() -> None:
    big = [
        Message(seq=i, timestamp=T0, content_type=0, payload=bytes(MAX_MESSAGE_BYTES))
        for i in (1, 2)
    ]
    posts = pack_messages(CHANNEL, None, big, max_post_bytes=120_000)
    assert len(posts) == 2  # each alone fits the wire budget; together they inflate too much
    decoded = [decode_post(encode_post(p)) for p in posts]
    assert all(p.inflated_bytes <= MAX_POST_INFLATED_BYTES for p in decoded)
    assert [message_from_record(r) for p in decoded for r in p.records] == big
