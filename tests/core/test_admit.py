"""The gateway's admission rule as a table, without a socket: topic, decoding, signer under the
gateway's domain, authorization, death notices, and the chain link against what it holds."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from lightpost.core.keys import PrivateKey
from lightpost_gateway.admit import Verdict, admit, reject_topic, topic_device
from lightpost_gateway.record import (
    ZERO_HASH,
    ChainEntry,
    Domain,
    Kind,
    Record,
    birth_payload,
    death_for,
    encode_record,
    record_hash,
    sign_record,
)

KEY = PrivateKey(b"\x11" * 32)
OTHER = PrivateKey(b"\x22" * 32)
DOMAIN = Domain(chain_id=31337, anchor=b"\xaa" * 20)
ELSEWHERE = Domain(chain_id=1, anchor=b"\xaa" * 20)
TOPIC = f"lp/1/d/{KEY.address.hex()}"


def _rec(seq: int, prev: bytes, payload: bytes = b"x") -> Record:
    return Record(kind=Kind.DATA, stream=b"t", seq=seq, prev=prev, payload=payload)


R0 = _rec(0, ZERO_HASH)
H0 = record_hash(R0, DOMAIN)
R1 = _rec(1, H0)
H1 = record_hash(R1, DOMAIN)
R1_FORK = _rec(1, H0, b"other")


def _wire(record: Record, key: PrivateKey = KEY, domain: Domain = DOMAIN) -> bytes:
    return encode_record(sign_record(record, domain, key))


def _held(*records: Record) -> Mapping[int, ChainEntry]:
    return {r.seq: ChainEntry(seq=r.seq, hash=record_hash(r, DOMAIN), prev=r.prev) for r in records}


BIRTH = Record(kind=Kind.BIRTH, stream=b"", seq=2, prev=H1, payload=birth_payload(60, 0))

CASES = [
    # (name, topic, wire, held, authorized, verdict, reason fragment)
    ("first record", TOPIC, _wire(R0), {}, None, Verdict.ACCEPT, ""),
    ("next record", TOPIC, _wire(R1), _held(R0), None, Verdict.ACCEPT, ""),
    ("gap accepted", TOPIC, _wire(R1), {}, None, Verdict.ACCEPT, ""),
    ("replay", TOPIC, _wire(R1), _held(R0, R1), None, Verdict.DUPLICATE, ""),
    ("fork at a held seq", TOPIC, _wire(R1_FORK), _held(R0, R1), None, Verdict.REJECT, "fork"),
    ("another key", TOPIC, _wire(R0, OTHER), {}, None, Verdict.REJECT, "not signed"),
    ("another chain", TOPIC, _wire(R0, KEY, ELSEWHERE), {}, None, Verdict.REJECT, "not signed"),
    ("garbage", TOPIC, b"\xc0", {}, None, Verdict.REJECT, "record"),
    ("wrong topic", "lp/1/r/" + KEY.address.hex(), _wire(R0), {}, None, Verdict.REJECT, "topic"),
    ("upper-case topic", TOPIC.upper(), _wire(R0), {}, None, Verdict.REJECT, "topic"),
    ("not authorized", TOPIC, _wire(R0), {}, {OTHER.address}, Verdict.REJECT, "authorized"),
    ("authorized", TOPIC, _wire(R0), {}, {KEY.address}, Verdict.ACCEPT, ""),
    ("birth", TOPIC, _wire(BIRTH), _held(R0, R1), None, Verdict.ACCEPT, ""),
    ("death notice", TOPIC, _wire(death_for(BIRTH, DOMAIN)), {}, None, Verdict.DEATH, ""),
]


@pytest.mark.parametrize(
    ("topic", "wire", "held", "authorized", "verdict", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_admission_table(
    topic: str,
    wire: bytes,
    held: Mapping[int, ChainEntry],
    authorized: set[bytes] | None,
    verdict: Verdict,
    reason: str,
) -> None:
    got = admit(topic, wire, domain=DOMAIN, known=lambda _d, _s: held, authorized=authorized)
    assert got.verdict == verdict
    assert reason in got.reason
    if verdict != Verdict.REJECT:
        assert got.device == KEY.address and got.hash is not None


def test_topics() -> None:
    assert topic_device(TOPIC) == KEY.address
    assert topic_device(TOPIC + "0") is None
    assert topic_device("lp/1/d/" + "zz" * 20) is None
    assert reject_topic(KEY.address) == f"lp/1/x/{KEY.address.hex()}"
