"""The console follower's pure part, without a chain: a proven post as the model's object."""

from __future__ import annotations

from lightpost.core.envelope import Chunk, Post, Record, channel_id, encode_post
from lightpost.core.keys import to_checksum_address
from lightpost.node.receiver_delivery import ProvenPost
from lightpost_operator.console_follow import post_json

CHANNEL = channel_id("cameras")
SENDER = bytes.fromhex("ca" * 20)


def _proven(calldata: bytes) -> ProvenPost:
    return ProvenPost(
        sender=SENDER,
        channel=CHANNEL,
        calldata=calldata,
        index=1,
        tx_hash=bytes([0xC1]) * 32,
        block_number=100,
        block_hash=bytes(32),
        block_timestamp=1234,
        order=(100, 0, 0),
    )


def test_a_chunk_post_names_its_transaction_and_the_message_it_is_part_of() -> None:
    chunk = Record(
        seq=7,
        timestamp=7,
        content_type=0,
        payload=b"x" * 100,
        chunk=Chunk(index=1, count=3, content_hash=bytes(32)),
    )
    whole = Record(seq=8, timestamp=8, content_type=0, payload=b"y")
    calldata = encode_post(Post(channel=CHANNEL, recipient=None, records=(chunk, whole)))
    assert post_json(_proven(calldata), {CHANNEL: "cameras"}) == {
        "type": "post",
        "sender": to_checksum_address(SENDER),
        "channel": "cameras",
        "seqs": [7, 8],
        "tx_hash": "0x" + "c1" * 32,
        "block_timestamp": 1234,
    }


def test_an_undecodable_post_is_left_to_the_receivers_problem() -> None:
    assert post_json(_proven(b"\x00garbage"), {CHANNEL: "cameras"}) is None
