"""The anchoring contract's rules, mirrored in Python (issue 14). Pure.

The contract (``anchor.easm``, hand-assembled like the inbox; ``anchor.json`` is generated from
it and a test checks they agree) records one batch per call of the calling gateway:

- ``anchored`` mode: the calldata is the batch's Merkle root (:mod:`lightpost_gateway.batch`),
  exactly 32 bytes; the records travel over MQTT and are kept by gateways.
- ``posted`` mode: the calldata is the wire records themselves in a compact columnar form
  (:func:`posted_calldata`; always longer than 32 bytes: a record carries a 64-byte signature).

Per gateway it keeps ``acc = keccak256(acc_old || keccak256(calldata))`` and a batch count in
two storage slots (:func:`gateway_slots`), so a receiver that recomputes the accumulator over the
batches it saw and proves the slot with ``eth_getProof`` knows it saw every batch, in order.
It is created by the CREATE2 deployment proxy with a fixed salt: one address on every chain.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from lightpost.core.envelope import DEFLATE_LEVEL, DEFLATE_WBITS
from lightpost.core.hashing import keccak256
from lightpost.core.inbox import CREATE2_DEPLOYER, create2_address
from lightpost.core.keys import Signature
from lightpost.errors import DecodingError, LightpostError

from .record import (
    MAX_PAYLOAD,
    MAX_STREAM,
    Kind,
    Record,
    SignedRecord,
    decode_record,
    encode_record,
)

__all__ = [
    "ANCHOR_ADDRESS",
    "ANCHOR_EXECUTION_GAS_FIXED",
    "ANCHOR_INITCODE_HASH",
    "ANCHOR_SALT",
    "EVENT_SIGNATURE",
    "EVENT_TOPIC",
    "MAX_POSTED_BYTES",
    "MAX_POSTED_INFLATED",
    "MAX_POSTED_RECORDS",
    "POSTED_VERSION",
    "ROOT_BYTES",
    "accumulate",
    "anchor_execution_gas",
    "anchored_calldata",
    "batch_digest",
    "decode_posted",
    "gateway_slots",
    "posted_calldata",
]

ROOT_BYTES = 32
"""An anchored batch's calldata: its Merkle root; anything longer is a posted batch."""

MAX_POSTED_RECORDS = 256
"""Most records in one posted batch: 256 100-byte readings are ~31 KB of calldata, far under the
common 128 KiB-per-transaction mempool limits (maximal records would not be: the gateway also
cuts batches by records, its own tunable); the decoder bounds what a peer can hand over."""

EVENT_SIGNATURE = "LightpostBatchV1(address,uint256,bytes32)"
"""The contract's one event: topics [topic, gateway word], data = count || digest."""

EVENT_TOPIC = keccak256(EVENT_SIGNATURE.encode())
"""topic 0 of every batch event (a PUSH32 in the runtime)."""

ANCHOR_SALT = keccak256(b"lightpost anchor v1")
"""The fixed CREATE2 salt of the anchoring contract."""

ANCHOR_INITCODE_HASH = bytes.fromhex(
    "82bbc17f0f4506f0bd997656602407a86a67f49819f2b06f8dcea57481b1c7eb"
)
"""keccak256 of the shipped initcode (anchor.json; a test recomputes it: a new contract is a new
protocol constant)."""

ANCHOR_ADDRESS = create2_address(CREATE2_DEPLOYER, ANCHOR_SALT, ANCHOR_INITCODE_HASH)
"""The anchoring contract's address on every EVM chain: the ``anchor`` of every record Domain."""

ANCHOR_EXECUTION_GAS_FIXED = 50_000
"""Upper bound of the contract's execution gas apart from the calldata-sized terms: two cold
SSTOREs from zero (2 x 22,100, EIP-2929/2200) on a gateway's first batch, LOG2 with 64 bytes
(1,637), two cold SLOADs already counted in the SSTOREs, two keccaks of 64 bytes and ~200 of
straight-line opcodes; measured 46,084 on anvil for a gateway's first anchored batch, 11,884 for
later ones (tests/integration/test_anchor_anvil.py)."""

_WORD = 32
_COPY_AND_HASH_PER_WORD = 3 + 6
"""CALLDATACOPY (3/word) and SHA3 (6/word) over the calldata (Yellow Paper G_copy, G_sha3word)."""

_MEMORY_PER_WORD = 3
_MEMORY_QUADRATIC_DIVISOR = 512
"""Memory expansion: 3/word + words^2/512 (Yellow Paper C_mem)."""


def anchor_execution_gas(calldata_len: int) -> int:
    """An upper bound of the execution gas of one batch call with ``calldata_len`` bytes."""
    words = (calldata_len + 2 * _WORD + _WORD - 1) // _WORD
    return (
        ANCHOR_EXECUTION_GAS_FIXED
        + _COPY_AND_HASH_PER_WORD * words
        + _MEMORY_PER_WORD * words
        + words * words // _MEMORY_QUADRATIC_DIVISOR
    )


def batch_digest(calldata: bytes) -> bytes:
    """What the accumulator absorbs for one batch: keccak256 of its calldata."""
    return keccak256(calldata)


def accumulate(acc: bytes, digest: bytes) -> bytes:
    """One step of a gateway's accumulator (starts at 32 zero bytes)."""
    return keccak256(acc + digest)


def gateway_slots(gateway: bytes) -> tuple[int, int]:
    """The storage slots (accumulator, batch count) of a gateway's address."""
    key = int.from_bytes(keccak256(bytes(12) + gateway), "big")
    return key, (key + 1) % (1 << 256)


def anchored_calldata(root: bytes) -> bytes:
    if len(root) != ROOT_BYTES:
        raise ValueError("an anchored batch's calldata is its 32-byte root")
    return root


# --- posted batches ---------------------------------------------------------------------------
#
# calldata = POSTED_VERSION (1) || count (2, big-endian) || sigs || prevs || raw_deflate(body)
#   sigs  = count x (r (32) || s (32))             random: sent as is (DEFLATE cannot shrink them)
#   prevs = count x prev (32)                      random: sent as is
#   body  = kinds (count) || y_parities (count) || content types (2 byte planes of count)
#           || seqs (8 byte planes) || times (8 byte planes)
#           || count x (len (1) || stream) || count x (len (2) || payload)
# Byte planes: byte k of every record's big-endian number, then byte k + 1 ...; the high bytes
# of seqs and times are the same across records and DEFLATE folds them to almost nothing, and
# the readings of many devices share their keys and shape (the payload column).

POSTED_VERSION = 2
"""First byte of a posted batch (version 1 was rlp([record, ...]), whose first byte is an RLP list
header >= 0xc0: the two can never be confused)."""

_KINDS = frozenset(int(k) for k in Kind)
_COUNT_BYTES = 2
_SIG_RS = 64
_PREV = 32
_U64_PLANES = 8
_CTYPE_PLANES = 2
_PAYLOAD_LEN_BYTES = 2
_HEADER = 1 + _COUNT_BYTES

_BODY_FIXED_PER_RECORD = 1 + 1 + _CTYPE_PLANES + 2 * _U64_PLANES + 1 + _PAYLOAD_LEN_BYTES
"""Body bytes of one record apart from its stream and payload (kind, y, planes, lengths)."""

MAX_POSTED_INFLATED = MAX_POSTED_RECORDS * (_BODY_FIXED_PER_RECORD + MAX_STREAM + MAX_PAYLOAD)
"""Bytes a posted batch's body may inflate to at most (the DEFLATE bomb bound): every record at
its longest stream and payload: 276,224 bytes at 256 records."""

MAX_POSTED_BYTES = (
    _HEADER
    + MAX_POSTED_RECORDS * (_SIG_RS + _PREV)
    + MAX_POSTED_INFLATED
    + (MAX_POSTED_INFLATED >> 12)
    + (MAX_POSTED_INFLATED >> 14)
    + 13
)
"""Longest posted calldata the decoder reads: header, the random columns and the longest body as
zlib compresses it at worst (its deflateBound: n + n/4096 + n/16384 + 13 for incompressible
input); 300,899 bytes."""


def _planes(values: Sequence[int], width: int) -> bytes:
    rows = [v.to_bytes(width, "big") for v in values]
    return bytes(row[k] for k in range(width) for row in rows)


def _unplanes(data: bytes, count: int, width: int) -> list[int]:
    return [
        int.from_bytes(bytes(data[k * count + i] for k in range(width)), "big")
        for i in range(count)
    ]


def posted_calldata(records: Sequence[bytes]) -> bytes:
    """A posted batch of wire records (lightpost_gateway.record.encode_record), in the columnar
    form above; :func:`decode_posted` gives back the very same wire records."""
    if not 0 < len(records) <= MAX_POSTED_RECORDS:
        raise ValueError(f"a posted batch has 1 .. {MAX_POSTED_RECORDS} records")
    signed = [decode_record(wire) for wire in records]
    rs = [x.record for x in signed]
    body = b"".join(
        [
            bytes(int(r.kind) for r in rs),
            bytes(x.signature.y_parity for x in signed),
            _planes([r.content_type for r in rs], _CTYPE_PLANES),
            _planes([r.seq for r in rs], _U64_PLANES),
            _planes([r.time_ms for r in rs], _U64_PLANES),
            *(bytes([len(r.stream)]) + r.stream for r in rs),
            *(len(r.payload).to_bytes(_PAYLOAD_LEN_BYTES, "big") + r.payload for r in rs),
        ]
    )
    deflater = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, DEFLATE_WBITS)
    return b"".join(
        [
            bytes([POSTED_VERSION]),
            len(records).to_bytes(_COUNT_BYTES, "big"),
            *(x.signature.to_bytes()[:_SIG_RS] for x in signed),
            *(r.prev for r in rs),
            deflater.compress(body) + deflater.flush(),
        ]
    )


def _inflate(data: bytes, limit: int) -> bytes:
    """Strict raw DEFLATE, refused past ``limit`` bytes (the bomb bound)."""
    inflater = zlib.decompressobj(DEFLATE_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise DecodingError("batch", f"invalid deflate stream ({exc})") from None
    if len(out) > limit:
        raise DecodingError("batch", f"the body inflates past {limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise DecodingError("batch", "truncated deflate stream or bytes after it")
    return out


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        if len(self.data) - self.at < n:
            raise DecodingError("batch", "the body is truncated")
        self.at += n
        return self.data[self.at - n : self.at]


def decode_posted(calldata: bytes) -> list[bytes]:
    """The wire records of a posted batch (each still to be opened and checked). Strict: bounded
    calldata, 1 .. MAX_POSTED_RECORDS records, the body inflated to at most what that count of
    maximal records takes, every byte of it consumed, every record within its bounds (the same
    checks as lightpost_gateway.record.decode_record, low-s signature included)."""
    if len(calldata) <= ROOT_BYTES or len(calldata) > MAX_POSTED_BYTES:
        raise DecodingError("batch", "not a posted batch's length")
    if calldata[0] != POSTED_VERSION:
        raise DecodingError("batch", "unknown posted batch version")
    count = int.from_bytes(calldata[1:_HEADER], "big")
    if not 0 < count <= MAX_POSTED_RECORDS:
        raise DecodingError("batch", f"expected 1 .. {MAX_POSTED_RECORDS} records")
    fixed = _HEADER + count * (_SIG_RS + _PREV)
    if len(calldata) <= fixed:
        raise DecodingError("batch", "truncated signatures or prevs")
    sigs = [calldata[_HEADER + i * _SIG_RS : _HEADER + (i + 1) * _SIG_RS] for i in range(count)]
    at = _HEADER + count * _SIG_RS
    prevs = [calldata[at + i * _PREV : at + (i + 1) * _PREV] for i in range(count)]
    body = _Reader(
        _inflate(calldata[fixed:], count * (_BODY_FIXED_PER_RECORD + MAX_STREAM + MAX_PAYLOAD))
    )
    kinds, ys = body.take(count), body.take(count)
    ctypes = _unplanes(body.take(count * _CTYPE_PLANES), count, _CTYPE_PLANES)
    seqs = _unplanes(body.take(count * _U64_PLANES), count, _U64_PLANES)
    times = _unplanes(body.take(count * _U64_PLANES), count, _U64_PLANES)
    streams = [body.take(body.take(1)[0]) for _ in range(count)]
    payloads = [
        body.take(int.from_bytes(body.take(_PAYLOAD_LEN_BYTES), "big")) for _ in range(count)
    ]
    if body.at != len(body.data):
        raise DecodingError("batch", f"{len(body.data) - body.at} bytes after the last record")
    out = []
    for i in range(count):
        if kinds[i] not in _KINDS:
            raise DecodingError("batch", f"record {i}: unknown kind")
        try:
            record = Record(
                kind=Kind(kinds[i]),
                stream=streams[i],
                seq=seqs[i],
                prev=prevs[i],
                time_ms=times[i],
                content_type=ctypes[i],
                payload=payloads[i],
            )
            signature = Signature(
                y_parity=ys[i],
                r=int.from_bytes(sigs[i][:_WORD], "big"),
                s=int.from_bytes(sigs[i][_WORD:], "big"),
            )
        except LightpostError as exc:
            raise DecodingError("batch", f"record {i}: {exc}") from None
        out.append(encode_record(SignedRecord(record=record, signature=signature)))
    return out
