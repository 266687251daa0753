"""Device records: vectors (checked against eth-account's recovery and against lightpost.device,
which builds the bytes independently), the strict decoder, domain separation, hypothesis round
trips, and the chain-link rule as a table."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core import rlp
from lightpost.core.keys import PrivateKey
from lightpost.device import Device
from lightpost.errors import DecodingError, LightpostError
from lightpost_gateway.record import (
    MAX_PAYLOAD,
    MAX_RECORD_BYTES,
    MAX_STREAM,
    SIGNING_PREFIX,
    ZERO_HASH,
    ChainEntry,
    DeviceReceipt,
    Domain,
    Kind,
    Link,
    LinkVerdict,
    Liveness,
    Record,
    birth_payload,
    classify_link,
    death_for,
    decode_device_receipt,
    decode_record,
    encode_device_receipt,
    encode_record,
    liveness,
    open_record,
    parse_birth,
    record_hash,
    sign_record,
    signing_preimage,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "records"
DOC: dict[str, Any] = json.loads((VECTORS / "records.json").read_text())
INVALID: list[dict[str, str]] = json.loads((VECTORS / "invalid.json").read_text())
DOMAIN = Domain(chain_id=DOC["chain_id"], anchor=bytes.fromhex(DOC["anchor"][2:]))
KEY = PrivateKey.from_hex(DOC["key"])


def _record(v: dict[str, Any]) -> Record:
    return Record(
        kind=Kind(v["kind"]),
        stream=bytes.fromhex(v["stream"]),
        seq=v["seq"],
        prev=bytes.fromhex(v["prev"]),
        time_ms=v["time_ms"],
        content_type=v["content_type"],
        payload=bytes.fromhex(v["payload"]),
    )


@pytest.mark.parametrize("v", DOC["records"], ids=lambda v: v["note"][:30])
def test_vectors_core(v: dict[str, Any]) -> None:
    record = _record(v)
    assert signing_preimage(record, DOMAIN).hex() == v["preimage"]
    assert record_hash(record, DOMAIN).hex() == v["hash"]
    signed = sign_record(record, DOMAIN, KEY)
    assert encode_record(signed).hex() == v["wire"]
    opened, address, digest = open_record(bytes.fromhex(v["wire"]), DOMAIN)
    assert opened == signed and digest.hex() == v["hash"]
    assert "0x" + address.hex() == DOC["address"].lower()
    # independent reference: eth-account recovers the device from the hash and signature
    recovered = Account._recover_hash(
        bytes.fromhex(v["hash"]), signature=signed.signature.to_bytes()
    )
    assert recovered == DOC["address"]


@pytest.mark.parametrize("pure", [False, True], ids=["coincurve", "pure"])
@pytest.mark.parametrize("v", DOC["records"], ids=lambda v: v["note"][:30])
def test_vectors_device(v: dict[str, Any], pure: bool) -> None:
    """lightpost.device (its own RLP, keccak selection and signer) gives the same bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        dev = Device(bytes.fromhex(DOC["key"][2:]), DOMAIN.chain_id, DOMAIN.anchor, tmp, pure=pure)
        r = _record(v)
        digest, wire = dev.sign(
            int(r.kind), r.stream, r.seq, r.prev, r.time_ms, r.content_type, r.payload
        )
    assert (digest.hex(), wire.hex()) == (v["hash"], v["wire"])


def test_vector_chain_links() -> None:
    entries = [_record(v) for v in DOC["records"]]
    birth, death, r1, r2, b2 = entries
    assert death == death_for(birth, DOMAIN)
    assert r1.prev == record_hash(birth, DOMAIN) and b2.prev == record_hash(r2, DOMAIN)
    assert parse_birth(b2).unanchored_from == 1 and parse_birth(b2).cadence_s == 60


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["why"])
def test_strict_decoder_refuses(case: dict[str, str]) -> None:
    with pytest.raises(LightpostError):
        decode_record(bytes.fromhex(case["wire"]))


def test_maximal_record_fits_the_bound() -> None:
    big = Record(
        kind=Kind.DATA,
        stream=b"s" * MAX_STREAM,
        seq=(1 << 64) - 1,
        prev=b"\xff" * 32,
        time_ms=(1 << 64) - 1,
        content_type=0xFFFF,
        payload=b"p" * MAX_PAYLOAD,
    )
    wire = encode_record(sign_record(big, DOMAIN, KEY))
    assert len(wire) <= MAX_RECORD_BYTES
    assert decode_record(wire).record == big


def test_domain_separates_chains_deployments_and_transactions() -> None:
    """A record signed for one domain recovers to another address under any other domain, so a
    receiver's authorization check refuses it; and its preimage cannot be an Ethereum one."""
    v = DOC["records"][2]
    wire = bytes.fromhex(v["wire"])
    device = open_record(wire, DOMAIN)[1]
    for other in (
        Domain(chain_id=1, anchor=DOMAIN.anchor),
        Domain(chain_id=DOMAIN.chain_id, anchor=bytes(20)),
    ):
        assert open_record(wire, other)[1] != device
    first = SIGNING_PREFIX[0]
    assert not first <= 0x7F  # EIP-2718 typed transactions, EIP-191 (0x19), EIP-7702 (0x05)
    assert not first >= 0xC0  # legacy transactions: an RLP list
    assert signing_preimage(_record(v), DOMAIN)[:3] == SIGNING_PREFIX


def test_record_fields_are_checked_on_construction() -> None:
    base = {"stream": b"t", "seq": 1, "prev": bytes(32)}
    with pytest.raises(DecodingError, match="births and deaths"):
        Record(kind=Kind.BIRTH, **base, payload=birth_payload(60, 0))  # type: ignore[arg-type]
    with pytest.raises(DecodingError, match="past the birth"):
        Record(kind=Kind.BIRTH, stream=b"", seq=1, prev=bytes(32), payload=birth_payload(60, 2))
    with pytest.raises(DecodingError, match="cadence"):
        Record(kind=Kind.BIRTH, stream=b"", seq=1, prev=bytes(32), payload=birth_payload(0, 0))
    with pytest.raises(DecodingError, match="death"):
        Record(kind=Kind.DEATH, stream=b"", seq=1, prev=bytes(32), payload=b"x")


_records = st.builds(
    Record,
    kind=st.just(Kind.DATA),
    stream=st.binary(min_size=1, max_size=MAX_STREAM),
    seq=st.integers(1, (1 << 64) - 1),
    prev=st.binary(min_size=32, max_size=32),
    time_ms=st.integers(0, (1 << 64) - 1),
    content_type=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=MAX_PAYLOAD),
)


@settings(max_examples=60, deadline=None)
@given(_records)
def test_round_trip(record: Record) -> None:
    signed = sign_record(record, DOMAIN, KEY)
    wire = encode_record(signed)
    assert decode_record(wire) == signed
    assert open_record(wire, DOMAIN)[1] == KEY.address


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decoder_fuzz_never_escapes_the_error_root(data: bytes) -> None:
    try:
        signed = decode_record(data)
    except LightpostError:
        return
    assert encode_record(signed) == data  # canonical: whatever decodes re-encodes to itself


def test_device_receipt_round_trip_and_strictness() -> None:
    receipt = DeviceReceipt(seq=7, record_hash=b"\x11" * 32, tx_hash=b"\x22" * 32, block=99)
    data = encode_device_receipt(receipt)
    assert decode_device_receipt(data) == receipt
    for bad in (data + b"\x00", rlp.encode([7, b"\x11" * 31, b"\x22" * 32, 99]), b"\xc0"):
        with pytest.raises(DecodingError):
            decode_device_receipt(bad)


# --- the chain-link rule, one row per case ---------------------------------------------------


def _h(n: int) -> bytes:
    return bytes([n]) * 32


def _e(seq: int, h: int, prev: int) -> ChainEntry:
    """Entry at seq with hash _h(h) and prev _h(prev) (0 = ZERO_HASH)."""
    return ChainEntry(seq=seq, hash=_h(h), prev=ZERO_HASH if prev == 0 else _h(prev))


_CHAIN = {0: _e(0, 10, 0), 1: _e(1, 11, 10), 2: _e(2, 12, 11)}
_HOLE = {0: _e(0, 10, 0), 1: _e(1, 11, 10), 4: _e(4, 14, 13)}

LINK_TABLE = [
    ("first record seen", {}, _e(5, 15, 14), LinkVerdict(link=Link.FIRST)),
    ("in order", _CHAIN, _e(3, 13, 12), LinkVerdict(link=Link.NEXT)),
    ("replayed, same record", _CHAIN, _e(1, 11, 10), LinkVerdict(link=Link.REPLAY)),
    ("another record at a known seq", _CHAIN, _e(1, 99, 10), LinkVerdict(link=Link.FORK)),
    ("next seq, prev not the head", _CHAIN, _e(3, 13, 99), LinkVerdict(link=Link.FORK)),
    ("gap of two", _CHAIN, _e(5, 15, 14), LinkVerdict(link=Link.GAP, missing=(3, 4))),
    ("late, fills the hole's start", _HOLE, _e(2, 12, 11), LinkVerdict(link=Link.LATE)),
    ("late, fills the hole's end", _HOLE, _e(3, 13, 12), LinkVerdict(link=Link.LATE)),
    ("late, successor disagrees", _HOLE, _e(3, 98, 12), LinkVerdict(link=Link.FORK)),
    ("late, predecessor disagrees", _HOLE, _e(2, 12, 98), LinkVerdict(link=Link.FORK)),
    ("reordered below a hole", {0: _e(0, 10, 0), 3: _e(3, 13, 12)}, _e(1, 11, 10),
     LinkVerdict(link=Link.LATE)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("why", "known", "entry", "want"), LINK_TABLE, ids=[r[0] for r in LINK_TABLE]
)
def test_classify_link(
    why: str, known: dict[int, ChainEntry], entry: ChainEntry, want: LinkVerdict
) -> None:
    assert classify_link(known, entry) == want


LIVENESS_TABLE = [
    # (why, ms since the last record, cadence s, ms since the death notice or None, verdict)
    ("on time", 60_000, 60, None, Liveness.ALIVE),
    ("one reading late: jitter", 120_000, 60, None, Liveness.ALIVE),
    ("past two cadences, no death: withheld or lost", 120_001, 60, None, Liveness.SILENT),
    ("death notice of the latest birth", 5_000, 60, 1_000, Liveness.DEAD),
    ("long gone, death seen", 10**9, 60, 10**8, Liveness.DEAD),
    ("a record after the death: the death was replayed", 1_000, 60, 5_000, Liveness.ALIVE),
    ("replayed death, then silence", 10**6, 60, 10**7, Liveness.SILENT),
]


@pytest.mark.parametrize(
    ("why", "since", "cadence", "death", "want"), LIVENESS_TABLE, ids=[r[0] for r in LIVENESS_TABLE]
)
def test_liveness(why: str, since: int, cadence: int, death: int | None, want: Liveness) -> None:
    now = 10**12
    got = liveness(
        last_record_ms=now - since,
        cadence_s=cadence,
        death_ms=None if death is None else now - death,
        now_ms=now,
    )
    assert got == want
