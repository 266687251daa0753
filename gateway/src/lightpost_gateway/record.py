"""Device records: what a device without an operating system signs (issue 14).

A record is one reading (or a birth / death notice) of one device, signed by its secp256k1 key
and linked into a per-device hash chain: ``seq`` counts from 0 and ``prev`` is the hash of the
record at ``seq - 1`` (:data:`ZERO_HASH` at seq 0), so order, gaps and forks are provable.

Signed hash (the record's id and the chain link)::

    record_hash = keccak256(SIGNING_PREFIX || rlp([version, chain_id, anchor, kind, stream, seq,
                                                   prev, time_ms, content_type, payload]))

Wire form (the domain -- chain id and anchor contract -- is not sent: the receiver supplies it,
and a record signed for another domain does not recover to the device)::

    rlp([version, kind, stream, seq, prev, time_ms, content_type, payload, r || s || y_parity])

Every field is bounded and canonical; :func:`decode_record` refuses anything else. The device
side (:mod:`lightpost.device`, which runs on MicroPython) builds the same bytes independently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import cast

from lightpost.core import rlp
from lightpost.core.hashing import keccak256
from lightpost.core.keys import PrivateKey, Signature, recover_address
from lightpost.errors import DecodingError, RLPDecodingError

__all__ = [
    "MAX_PAYLOAD",
    "MAX_RECORD_BYTES",
    "MAX_STREAM",
    "RECORD_VERSION",
    "SIGNING_PREFIX",
    "SILENCE_GRACE",
    "ZERO_HASH",
    "Birth",
    "ChainEntry",
    "DeviceReceipt",
    "Domain",
    "Kind",
    "Link",
    "LinkVerdict",
    "Liveness",
    "Record",
    "SignedRecord",
    "birth_payload",
    "classify_link",
    "death_for",
    "decode_device_receipt",
    "decode_record",
    "encode_device_receipt",
    "encode_record",
    "liveness",
    "open_record",
    "parse_birth",
    "receipt_topic",
    "record_hash",
    "record_topic",
    "sign_record",
    "signing_preimage",
]

RECORD_VERSION = 1
"""Protocol version of the record format; signed, and the only one :func:`decode_record` takes."""

SIGNING_PREFIX = b"\xb0lp"
"""First bytes of every signed preimage. No Ethereum signing preimage can begin with 0xb0: a
typed transaction begins with its type (0x00-0x7f, EIP-2718), a legacy one with an RLP list
header (0xc0-0xff), EIP-191 / EIP-712 messages with 0x19, EIP-7702 authorizations with 0x05.
So a record's signed hash is never the hash of a transaction or message (short of a keccak
collision), and a device key's signature can never be replayed as one."""

ZERO_HASH = bytes(32)
"""``prev`` of the record at seq 0: a device's chain starts here."""

MAX_STREAM = 32
"""Longest stream name, bytes (a short label such as ``b"temp"``; topics stay short)."""

MAX_PAYLOAD = 1024
"""Largest payload, bytes: readings, not files; fits an MQTT packet in a 64 KiB device heap."""

MAX_RECORD_BYTES = 1200
"""Largest encoded record (a maximal one is 1,186 bytes; test_record checks it): the decoder
refuses longer input before parsing."""

_U64 = 1 << 64
"""seq, time_ms and chain_id are below 2^64 (chain ids: EIP-2294)."""

MAX_CONTENT_TYPE = 0xFFFF
"""content_type is a small number (0 bytes, 1 UTF-8 text, 2 JSON, 3 CBOR; others application's)."""

MAX_CADENCE_S = 1 << 32
"""A birth's declared cadence (seconds between records at most) is below 2^32."""

_WIRE_FIELDS = 9
"""Items in a wire record: version .. payload, signature."""

TOPIC_ROOT = "lp/1"
"""MQTT topic root of this record version: records on ``lp/1/d/<address>``, receipts to the
device on ``lp/1/r/<address>`` (address: 40 lowercase hex digits, no 0x)."""


class Kind(IntEnum):
    """What a record is. DATA and BIRTH are links of the device's chain; DEATH is not."""

    DATA = 0
    BIRTH = 1
    """Signed on every connect: payload ``rlp([cadence_s, unanchored_from])``; its own seq - 1
    and prev declare the device's last seq and head."""
    DEATH = 2
    """The MQTT will: seq and prev are its birth's seq and hash; empty stream and payload."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Domain:
    """Where records count: the chain and the anchoring contract (signed, never sent)."""

    chain_id: int
    anchor: bytes

    def __post_init__(self) -> None:
        if not 0 < self.chain_id < _U64 or len(self.anchor) != 20:
            raise ValueError("a domain is a chain id in [1, 2^64) and a 20-byte anchor address")


@dataclass(frozen=True, kw_only=True, slots=True)
class Record:
    """The signed fields of one record; every bound is checked here."""

    kind: Kind
    stream: bytes
    seq: int
    prev: bytes
    time_ms: int = 0
    """Milliseconds since the Unix epoch, 0 = no clock (a claim of the device, never trusted)."""
    content_type: int = 0
    payload: bytes = b""

    def __post_init__(self) -> None:
        problem = _record_problem(self)
        if problem:
            raise DecodingError("record", problem)


def _record_problem(r: Record) -> str:
    if r.kind not in (Kind.DATA, Kind.BIRTH, Kind.DEATH):
        return "unknown kind"
    if not 0 <= r.seq < _U64 or not 0 <= r.time_ms < _U64:
        return "seq or time out of range"
    if len(r.prev) != 32:
        return "prev must be 32 bytes"
    if r.seq == 0 and r.prev != ZERO_HASH and r.kind != Kind.DEATH:
        return "the record at seq 0 must have a zero prev"
    if not 0 <= r.content_type <= MAX_CONTENT_TYPE:
        return "content type out of range"
    if len(r.stream) > MAX_STREAM or len(r.payload) > MAX_PAYLOAD:
        return "stream or payload too long"
    if r.kind == Kind.DATA:
        return "" if r.stream else "a data record names its stream"
    if r.stream or r.content_type:
        return "births and deaths have no stream or content type"
    if r.kind == Kind.DEATH:
        return "a death has no time or payload" if r.time_ms or r.payload else ""
    try:
        birth = _parse_birth_payload(r.payload)
    except DecodingError as exc:
        return exc.reason
    return "" if birth.unanchored_from <= r.seq else "unanchored_from is past the birth's seq"


@dataclass(frozen=True, kw_only=True, slots=True)
class Birth:
    """A birth's declaration: at most ``cadence_s`` seconds between records while connected;
    records ``unanchored_from`` .. seq - 1 are retained and will be republished."""

    cadence_s: int
    unanchored_from: int


def birth_payload(cadence_s: int, unanchored_from: int) -> bytes:
    """The payload of a birth record."""
    return rlp.encode([cadence_s, unanchored_from])


def _parse_birth_payload(payload: bytes) -> Birth:
    try:
        item = rlp.decode(payload)
    except RLPDecodingError as exc:
        raise DecodingError("birth", exc.reason) from None
    if not isinstance(item, list) or len(item) != 2 or not all(isinstance(x, bytes) for x in item):
        raise DecodingError("birth", "payload is rlp([cadence_s, unanchored_from])")
    raw_cadence, raw_from = cast("list[bytes]", item)
    cadence = _int(raw_cadence, 4, "cadence")
    unanchored_from = _int(raw_from, 8, "unanchored_from")
    if not 0 < cadence < MAX_CADENCE_S:
        raise DecodingError("birth", "cadence out of range")
    return Birth(cadence_s=cadence, unanchored_from=unanchored_from)


def parse_birth(record: Record) -> Birth:
    """The declaration of a BIRTH record (its payload was checked when it was made)."""
    if record.kind != Kind.BIRTH:
        raise DecodingError("birth", "not a birth record")
    return _parse_birth_payload(record.payload)


@dataclass(frozen=True, kw_only=True, slots=True)
class SignedRecord:
    record: Record
    signature: Signature


def _fields(r: Record) -> list[bytes | int]:
    """The signed fields after the domain, in wire order."""
    return [int(r.kind), r.stream, r.seq, r.prev, r.time_ms, r.content_type, r.payload]


def signing_preimage(record: Record, domain: Domain) -> bytes:
    """SIGNING_PREFIX || rlp(version, domain, fields): the bytes whose keccak the device signs."""
    domain_fields: list[bytes | int] = [RECORD_VERSION, domain.chain_id, domain.anchor]
    return SIGNING_PREFIX + rlp.encode(domain_fields + _fields(record))


def record_hash(record: Record, domain: Domain) -> bytes:
    """The record's id: what the device signs and what the next record's ``prev`` holds."""
    return keccak256(signing_preimage(record, domain))


def sign_record(record: Record, domain: Domain, key: PrivateKey) -> SignedRecord:
    return SignedRecord(record=record, signature=key.sign_hash(record_hash(record, domain)))


def encode_record(signed: SignedRecord) -> bytes:
    """The wire form (canonical: one record has one encoding per signature)."""
    return rlp.encode([RECORD_VERSION, *_fields(signed.record), signed.signature.to_bytes()])


def _int(raw: bytes, max_len: int, what: str) -> int:
    if len(raw) > max_len:
        raise DecodingError("record", f"{what} too long")
    try:
        return rlp.decode_int(raw, what=what)
    except RLPDecodingError as exc:
        raise DecodingError("record", exc.reason) from None


def decode_record(data: bytes) -> SignedRecord:
    """Strict decoder of the wire form: bounded size, canonical RLP, exact field count and
    lengths, no trailing bytes, low-s signature. Does not check who signed (:func:`open_record`)."""
    if len(data) > MAX_RECORD_BYTES:
        raise DecodingError("record", f"longer than {MAX_RECORD_BYTES} bytes")
    try:
        item = rlp.decode(data)
    except RLPDecodingError as exc:
        raise DecodingError("record", exc.reason, exc.offset) from None
    if not isinstance(item, list) or len(item) != _WIRE_FIELDS:
        raise DecodingError("record", f"expected a list of {_WIRE_FIELDS} fields")
    if not all(isinstance(x, bytes) for x in item):
        raise DecodingError("record", "nested list in a field")
    version, kind, stream, seq, prev, time_ms, ctype, payload, sig = cast("list[bytes]", item)
    if _int(version, 1, "version") != RECORD_VERSION:
        raise DecodingError("record", "unknown version")
    kind_n = _int(kind, 1, "kind")
    if kind_n not in (Kind.DATA, Kind.BIRTH, Kind.DEATH):
        raise DecodingError("record", "unknown kind")
    if len(sig) != 65:
        raise DecodingError("record", "signature must be 65 bytes")
    record = Record(
        kind=Kind(kind_n),
        stream=stream,
        seq=_int(seq, 8, "seq"),
        prev=prev,
        time_ms=_int(time_ms, 8, "time"),
        content_type=_int(ctype, 2, "content type"),
        payload=payload,
    )
    signature = Signature(
        y_parity=sig[64], r=int.from_bytes(sig[:32], "big"), s=int.from_bytes(sig[32:64], "big")
    )
    return SignedRecord(record=record, signature=signature)


def open_record(data: bytes, domain: Domain) -> tuple[SignedRecord, bytes, bytes]:
    """Decode and recover: (record, device address, record hash). A record signed for another
    chain, anchor or version recovers to another address, which the caller's authorization
    check (is this address a known device?) refuses."""
    signed = decode_record(data)
    digest = record_hash(signed.record, domain)
    return signed, recover_address(digest, signed.signature), digest


def death_for(birth: Record, domain: Domain) -> Record:
    """The death notice (MQTT will) for a birth: signed with the birth, before CONNECT."""
    if birth.kind != Kind.BIRTH:
        raise ValueError("a death notice is made for a birth record")
    return Record(kind=Kind.DEATH, stream=b"", seq=birth.seq, prev=record_hash(birth, domain))


def record_topic(address: bytes) -> str:
    """Where a device publishes its records (births, data) and its will."""
    return f"{TOPIC_ROOT}/d/{address.hex()}"


def receipt_topic(address: bytes) -> str:
    """Where gateways send a device its anchoring receipts."""
    return f"{TOPIC_ROOT}/r/{address.hex()}"


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceReceipt:
    """Gateway -> device: the record at ``seq`` (whose hash is ``record_hash``) is anchored in
    transaction ``tx_hash`` at ``block``. The device cannot check the chain; it checks the hash
    against its own record at seq and only then stops retaining that record -- that one only:
    a gateway vouches for the records it holds, one receipt each, never for records below."""

    seq: int
    record_hash: bytes
    tx_hash: bytes
    block: int


_RECEIPT_FIELDS = 4
"""Items in a device receipt: seq, record hash, tx hash, block."""


def encode_device_receipt(receipt: DeviceReceipt) -> bytes:
    return rlp.encode([receipt.seq, receipt.record_hash, receipt.tx_hash, receipt.block])


def decode_device_receipt(data: bytes) -> DeviceReceipt:
    """Strict: rlp([seq, record_hash(32), tx_hash(32), block]), nothing else."""
    try:
        item = rlp.decode(data)
    except RLPDecodingError as exc:
        raise DecodingError("receipt", exc.reason) from None
    if (
        not isinstance(item, list)
        or len(item) != _RECEIPT_FIELDS
        or not all(isinstance(x, bytes) for x in item)
    ):
        raise DecodingError("receipt", f"expected a list of {_RECEIPT_FIELDS} strings")
    seq, digest, tx_hash, block = cast("list[bytes]", item)
    if len(digest) != 32 or len(tx_hash) != 32:
        raise DecodingError("receipt", "hashes must be 32 bytes")
    return DeviceReceipt(
        seq=_int(seq, 8, "seq"),
        record_hash=bytes(digest),
        tx_hash=bytes(tx_hash),
        block=_int(block, 8, "block"),
    )


# --- the chain link rule -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ChainEntry:
    """What the link rule needs of a record: its seq, its hash and its prev."""

    seq: int
    hash: bytes
    prev: bytes


class Link(Enum):
    """Verdict of :func:`classify_link` on one record of a device's chain."""

    FIRST = "first"
    """Nothing known of this device yet: the record starts what a receiver follows."""
    NEXT = "next"
    """Links to the record before it (and, if known, to the one after it)."""
    GAP = "gap"
    """Above everything known, and its predecessor is missing: ``missing`` says which seqs."""
    LATE = "late"
    """Below the highest known seq (it arrived after a later record: reordered) and consistent
    with every known neighbour; it fills (part of) a gap."""
    REPLAY = "replay"
    """The very record already known at this seq: drop it, deliver nothing."""
    FORK = "fork"
    """Contradicts a known record: another record at this seq, or a neighbour's link does not
    match. Two records signed by the device at one seq prove the device (or its key) forked."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LinkVerdict:
    link: Link
    missing: tuple[int, int] | None = None
    """For GAP: the first and last missing seq."""


def classify_link(known: Mapping[int, ChainEntry], entry: ChainEntry) -> LinkVerdict:
    """The chain-link rule: judge ``entry`` against the device's records already accepted
    (``known``, by seq; may have holes). Pure; the caller stores the entry unless REPLAY/FORK."""
    same = known.get(entry.seq)
    if same is not None:
        return LinkVerdict(link=Link.REPLAY if same.hash == entry.hash else Link.FORK)
    before = known.get(entry.seq - 1)
    after = known.get(entry.seq + 1)
    if (before is not None and before.hash != entry.prev) or (
        after is not None and after.prev != entry.hash
    ):
        return LinkVerdict(link=Link.FORK)
    if not known:
        return LinkVerdict(link=Link.FIRST)
    highest = max(known)
    if entry.seq < highest:
        return LinkVerdict(link=Link.LATE)
    if before is not None:
        return LinkVerdict(link=Link.NEXT)
    return LinkVerdict(link=Link.GAP, missing=(highest + 1, entry.seq - 1))


# --- the liveness rule ---------------------------------------------------------------------------

SILENCE_GRACE = 2
"""A device is silent after this many declared cadences without a record (one missed reading is
jitter or a retransmission; two are a finding)."""


class Liveness(Enum):
    """What a receiver can say of a device from its births, deaths and records."""

    ALIVE = "alive"
    """A record arrived within SILENCE_GRACE cadences."""
    DEAD = "dead"
    """The broker published the death notice of the device's latest birth, and no record has
    come since: the device dropped its connection (power, network), nobody withheld it."""
    SILENT = "silent"
    """No record for SILENCE_GRACE cadences and no death notice: the device is connected as far
    as the broker knows, so its records are being withheld (gateway or broker) or lost."""


def liveness(*, last_record_ms: int, cadence_s: int, death_ms: int | None, now_ms: int) -> Liveness:
    """The liveness rule. Times are the receiver's own clock (when it saw the last record or
    birth, and the death notice of the latest birth, if any), never the device's claim;
    ``cadence_s`` is the latest birth's declaration. A record seen after the death notice wins:
    a death notice is public and can be republished by anyone, a later record cannot be forged."""
    if death_ms is not None and death_ms >= last_record_ms:
        return Liveness.DEAD
    if now_ms - last_record_ms <= SILENCE_GRACE * cadence_s * 1000:
        return Liveness.ALIVE
    return Liveness.SILENT
