"""The Python mirror of the inbox contract: calldata, storage slots, accumulator, events."""

from __future__ import annotations

import dataclasses

import pytest
from eth_abi import encode as abi_encode  # independent reference (tests only)
from eth_utils import keccak as reference_keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core.gas import TX_GAS_LIMIT_CAP, TXPOOL_MAX_TX_BYTES
from lightpost.core.hashing import keccak256
from lightpost.core.inbox import (
    ACC_ZERO,
    EVENT_SIGNATURE,
    EVENT_TOPIC,
    INBOX_EXECUTION_GAS_BOUND_MAX_CALLDATA,
    INBOX_EXECUTION_GAS_FIRST_POST,
    INBOX_EXECUTION_GAS_FIXED,
    INBOX_EXECUTION_GAS_PER_BYTE,
    MIN_CALLDATA_BYTES,
    InboxPost,
    accumulator_of,
    accumulator_slots,
    decode_post_log,
    encode_post_log,
    inbox_calldata,
    inbox_execution_gas,
    next_accumulator,
    storage_key,
)
from lightpost.errors import DecodingError, LightpostError

INBOX = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
ALICE = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")
BOB = bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8")
CHANNEL = keccak256(b"channel")

addresses = st.binary(min_size=20, max_size=20).filter(lambda a: any(a))
channels = st.binary(min_size=32, max_size=32)
bodies = st.binary(min_size=1, max_size=300)
indexes = st.integers(min_value=1, max_value=2**256 - 1)


# --- calldata -------------------------------------------------------------------------


def test_calldata_layout() -> None:
    assert inbox_calldata(CHANNEL, BOB, b"hi") == CHANNEL + bytes(12) + BOB + b"hi"
    assert inbox_calldata(CHANNEL, None, b"\x00") == CHANNEL + bytes(32) + b"\x00"
    assert len(inbox_calldata(CHANNEL, None, b"x")) == MIN_CALLDATA_BYTES


@pytest.mark.parametrize(
    ("channel", "recipient", "body", "match"),
    [
        (CHANNEL[:31], None, b"x", "channel"),
        (CHANNEL + b"\x00", None, b"x", "channel"),
        (CHANNEL, BOB[:19], b"x", "recipient"),
        (CHANNEL, bytes(20), b"x", "broadcast"),
        (CHANNEL, BOB, b"", "body"),
    ],
)
def test_calldata_refuses_what_the_contract_would_revert_on(
    channel: bytes, recipient: bytes | None, body: bytes, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        inbox_calldata(channel, recipient, body)


# --- storage and accumulator ------------------------------------------------------------


@given(sender=addresses, channel=channels)
@settings(max_examples=100)
def test_slots_match_an_independent_abi_encoding(sender: bytes, channel: bytes) -> None:
    # keccak256(abi.encode(address, bytes32)): the same word layout, built by eth-abi
    key = int.from_bytes(reference_keccak(abi_encode(["address", "bytes32"], [sender, channel])))
    assert accumulator_slots(sender, channel) == (key, (key + 1) % 2**256)
    assert storage_key(sender, channel) == key.to_bytes(32, "big")


def test_slots_differ_per_sender_and_channel() -> None:
    slots = {accumulator_slots(s, c) for s in (ALICE, BOB) for c in (CHANNEL, bytes(32))}
    assert len(slots) == 4


def test_storage_key_refuses_bad_sizes() -> None:
    with pytest.raises(ValueError, match="sender"):
        storage_key(ALICE[:19], CHANNEL)
    with pytest.raises(ValueError, match="channel"):
        storage_key(ALICE, CHANNEL[:31])


def test_accumulator_chain() -> None:
    first, second = inbox_calldata(CHANNEL, None, b"1"), inbox_calldata(CHANNEL, BOB, b"2")
    acc1 = reference_keccak(ACC_ZERO + reference_keccak(first))
    acc2 = reference_keccak(acc1 + reference_keccak(second))
    assert next_accumulator(ACC_ZERO, first) == acc1
    assert next_accumulator(acc1, second) == acc2
    assert accumulator_of([first, second]) == acc2
    assert accumulator_of([second], acc1) == acc2
    assert accumulator_of([]) == ACC_ZERO == bytes(32)
    # order matters: a receiver holding the posts in another order gets another value
    assert accumulator_of([second, first]) != acc2
    with pytest.raises(ValueError, match="accumulator"):
        next_accumulator(b"\x00" * 31, first)


# --- event ------------------------------------------------------------------------------


def test_event_topic_is_keccak_of_the_signature() -> None:
    assert reference_keccak(text=EVENT_SIGNATURE) == EVENT_TOPIC


def test_encode_post_log_layout() -> None:
    calldata = inbox_calldata(CHANNEL, BOB, b"body")
    topics, data = encode_post_log(ALICE, calldata, 7)
    assert topics == (EVENT_TOPIC, CHANNEL, bytes(12) + ALICE, bytes(12) + BOB)
    assert data == (7).to_bytes(32, "big") + calldata


def test_encode_post_log_refuses_what_the_contract_cannot_emit() -> None:
    calldata = inbox_calldata(CHANNEL, BOB, b"body")
    with pytest.raises(ValueError, match="index"):
        encode_post_log(ALICE, calldata, 0)
    with pytest.raises(ValueError, match="65"):
        encode_post_log(ALICE, calldata[:64], 1)
    with pytest.raises(ValueError, match="address word"):
        encode_post_log(ALICE, CHANNEL + b"\x01" * 32 + b"x", 1)
    with pytest.raises(ValueError, match="sender"):
        encode_post_log(ALICE + b"\x00", calldata, 1)


@given(
    sender=addresses,
    channel=channels,
    recipient=st.none() | addresses,
    body=bodies,
    index=indexes,
)
@settings(max_examples=200)
def test_post_log_round_trip(
    sender: bytes, channel: bytes, recipient: bytes | None, body: bytes, index: int
) -> None:
    calldata = inbox_calldata(channel, recipient, body)
    topics, data = encode_post_log(sender, calldata, index)
    post = decode_post_log(INBOX, topics, data, inbox=INBOX)
    assert post == InboxPost(
        inbox=INBOX,
        channel=channel,
        sender=sender,
        recipient=recipient,
        index=index,
        calldata=calldata,
        body=body,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        post.index = 0  # type: ignore[misc]


@given(
    address=st.binary(max_size=24),
    topics=st.lists(st.binary(max_size=40), max_size=6),
    data=st.binary(max_size=200),
)
@settings(max_examples=200)
def test_random_logs_raise_only_decoding_errors(
    address: bytes, topics: list[bytes], data: bytes
) -> None:
    try:
        decode_post_log(address, topics, data)
    except LightpostError as exc:
        assert isinstance(exc, DecodingError)


@given(data=st.binary(min_size=97, max_size=200), index=indexes, sender=addresses)
@settings(max_examples=200)
def test_random_data_under_valid_topics_decodes_only_if_consistent(
    data: bytes, index: int, sender: bytes
) -> None:
    # well-formed topics, arbitrary data: decoding either refuses or is self-consistent
    topics = (EVENT_TOPIC, CHANNEL, bytes(12) + sender, bytes(32))
    try:
        post = decode_post_log(INBOX, topics, data)
    except DecodingError:
        return
    assert post.channel == CHANNEL == post.calldata[:32]
    assert post.recipient is None and post.calldata[32:64] == bytes(32)
    assert post.index >= 1 and post.body == data[96:]


def _valid() -> tuple[tuple[bytes, bytes, bytes, bytes], bytes]:
    return encode_post_log(ALICE, inbox_calldata(CHANNEL, BOB, b"body"), 3)


def _with_topic(i: int, value: bytes) -> list[bytes]:
    topics = list(_valid()[0])
    topics[i] = value
    return topics


@pytest.mark.parametrize(
    ("address", "topics", "data", "reason"),
    [
        (INBOX[:19], list(_valid()[0]), _valid()[1], "log address"),
        (BOB, list(_valid()[0]), _valid()[1], "expected inbox"),
        (INBOX, list(_valid()[0][:3]), _valid()[1], "4 topics"),
        (INBOX, [*_valid()[0], CHANNEL], _valid()[1], "4 topics"),
        (
            INBOX,
            _with_topic(0, keccak256(b"Transfer(address,address,uint256)")),
            _valid()[1],
            "event topic",
        ),
        (INBOX, _with_topic(1, CHANNEL[:31]), _valid()[1], "topic 1"),
        (INBOX, _with_topic(2, b"\x01" + bytes(11) + ALICE), _valid()[1], "sender"),
        (INBOX, _with_topic(3, b"\x01" * 32), _valid()[1], "recipient topic is not"),
        (INBOX, list(_valid()[0]), _valid()[1][:96], "data is 96 bytes"),
        (INBOX, list(_valid()[0]), bytes(32) + _valid()[1][32:], "index 0"),
        (INBOX, _with_topic(1, keccak256(b"other")), _valid()[1], "channel differs"),
        (INBOX, _with_topic(3, bytes(32)), _valid()[1], "recipient differs"),
    ],
)
def test_decode_rejects_each_malformation(
    address: bytes, topics: list[bytes], data: bytes, reason: str
) -> None:
    with pytest.raises(DecodingError, match=reason):
        decode_post_log(address, topics, data, inbox=INBOX)


def test_decode_without_expected_inbox_accepts_any_emitter() -> None:
    topics, data = _valid()
    assert decode_post_log(BOB, topics, data).inbox == BOB


# --- gas model --------------------------------------------------------------------------


def test_first_post_costs_two_zero_to_nonzero_sstores_more() -> None:
    for n in (65, 1000, 100_000):
        extra = inbox_execution_gas(n, first_post=True) - inbox_execution_gas(n)
        assert extra == INBOX_EXECUTION_GAS_FIRST_POST - INBOX_EXECUTION_GAS_FIXED == 34_200
    with pytest.raises(ValueError, match="65"):
        inbox_execution_gas(64)


def test_linear_bound_holds_up_to_its_documented_limit() -> None:
    assert INBOX_EXECUTION_GAS_BOUND_MAX_CALLDATA >= TXPOOL_MAX_TX_BYTES
    sizes = [
        *range(MIN_CALLDATA_BYTES, 4096),
        *range(4096, INBOX_EXECUTION_GAS_BOUND_MAX_CALLDATA + 1, 31),
    ]
    sizes.append(INBOX_EXECUTION_GAS_BOUND_MAX_CALLDATA)
    for n in sizes:
        bound = INBOX_EXECUTION_GAS_FIXED + INBOX_EXECUTION_GAS_PER_BYTE * n
        assert inbox_execution_gas(n) <= bound, n
        assert inbox_execution_gas(n, first_post=True) <= bound + (
            INBOX_EXECUTION_GAS_FIRST_POST - INBOX_EXECUTION_GAS_FIXED
        )
    # and it is tight enough to matter: within 150 gas of the exact figure for small posts
    assert (
        INBOX_EXECUTION_GAS_FIXED + INBOX_EXECUTION_GAS_PER_BYTE * 65 - inbox_execution_gas(65)
        < 150
    )
    # the bound's domain covers every post a public mempool carries under the EIP-7825 cap
    assert inbox_execution_gas(TXPOOL_MAX_TX_BYTES) < TX_GAS_LIMIT_CAP
