"""The lightpost envelope: the wire format of a *post* (the calldata of one transaction).

Layout (big-endian, fixed width; version 2 deflates the records): docs/protocol.md, "Post
layout" and "Record layout". Decoders raise :class:`~lightpost.errors.DecodingError`
(``what="envelope"``), or :class:`~lightpost.errors.ProofError` for a wrong content hash; what
the format cannot carry raises :class:`EnvelopeError`. Rules: docs/protocol.md, "Wire format".
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from lightpost.core.gas import calldata_tokens, gas_used
from lightpost.core.hashing import keccak256
from lightpost.errors import DecodingError, LocalError, ProofError

__all__ = [
    "ADDRESS_SIZE",
    "BROADCAST_WORD",
    "CHANNEL_ID_SIZE",
    "CHUNK_RECORD_OVERHEAD",
    "DEFLATE_LEVEL",
    "DEFLATE_WBITS",
    "DIRECT_CHANNEL",
    "DIRECT_CHANNEL_NAME",
    "FLAG_CHUNK",
    "FLAG_COMPRESSED",
    "FLAG_ENCRYPTED",
    "FORMAT_VERSION",
    "FORMAT_VERSION_DEFLATED",
    "KNOWN_FLAGS",
    "MAGIC",
    "MAX_MESSAGE_BYTES",
    "MAX_PARTIAL_BYTES",
    "MAX_POST_INFLATED_BYTES",
    "MIN_POST_BYTES",
    "POST_HEADER_SIZE",
    "RECORD_OVERHEAD",
    "Chunk",
    "ContentType",
    "EnvelopeError",
    "Message",
    "Post",
    "Reassembler",
    "Record",
    "channel_id",
    "choose_compression",
    "decode_post",
    "encode_post",
    "message_from_record",
    "pack_messages",
    "post_body_size",
    "post_calldata_tokens",
    "post_gas",
    "record_size",
    "records_for_message",
]

# --- constants ---

CHANNEL_ID_SIZE = 32
"""Bytes 0..31 of a post: keccak256 of the UTF-8 channel name (read by the inbox contract)."""

ADDRESS_SIZE = 20
"""An Ethereum address (Yellow Paper: the low 160 bits of keccak256 of the public key)."""

_WORD_SIZE = 32
"""Bytes 32..63 of a post hold the recipient as one EVM word (ABI-style left padding)."""

BROADCAST_WORD = bytes(_WORD_SIZE)
"""A recipient word of 32 zero bytes means: broadcast to everyone reading the channel."""

MAGIC = 0x4C
"""Byte 64: ASCII 'L'. Lets a block scanner in direct mode skip foreign calldata cheaply."""

FORMAT_VERSION = 0x01
"""Byte 65: format version 1, records in the clear; decoders accept versions 1 and 2 only."""

FORMAT_VERSION_DEFLATED = 0x02
"""Byte 65 = 2: the body is the version-1 record sequence as one raw DEFLATE stream (same rules once
inflated)."""

POST_HEADER_SIZE = CHANNEL_ID_SIZE + _WORD_SIZE + 2
"""66 bytes: channel id, recipient word, magic, version."""

FLAG_COMPRESSED = 0x01
"""The payload (or, for chunks, the concatenation of all chunk payloads) is raw DEFLATE."""

FLAG_CHUNK = 0x02
"""The record is one chunk of a larger message; the chunk extension follows the flags."""

FLAG_ENCRYPTED = 0x04
"""Reserved for encrypted envelopes (a later issue); version 1 decoders refuse it."""

KNOWN_FLAGS = FLAG_COMPRESSED | FLAG_CHUNK
"""Flags version 1 understands. Any other bit set is a decoding error (no silent skipping)."""

_RECORD_HEAD = struct.Struct(">QQBB")
"""seq u64, timestamp_ms u64, content_type u8, flags u8."""

_CHUNK_EXT = struct.Struct(">II32s")
"""chunk_index u32, chunk_count u32, content_hash (keccak256 of the original payload)."""

_LENGTH = struct.Struct(">I")
"""payload_length u32."""

RECORD_OVERHEAD = _RECORD_HEAD.size + _LENGTH.size
"""22 bytes of fields in front of an unchunked record's payload."""

CHUNK_RECORD_OVERHEAD = RECORD_OVERHEAD + _CHUNK_EXT.size
"""62 bytes of fields in front of a chunk record's payload."""

MIN_POST_BYTES = POST_HEADER_SIZE + CHUNK_RECORD_OVERHEAD + 1
"""Smallest post budget :func:`pack_messages` accepts: room for one chunk of one byte."""

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest payload a decoder accepts (bomb and chunk-flood bound); 4 MiB of calldata is ~168M gas
(EIP-7623)."""

TX_POOL_MAX_BYTES = 4 * 32 * 1024
"""Largest tx geth/reth pools accept (txMaxSize): the largest post mined through the public pool."""

MAX_POST_INFLATED_BYTES = MAX_MESSAGE_BYTES + TX_POOL_MAX_BYTES
"""Bytes ONE post may inflate to in all: one maximal message plus a pool-sized post of records (a 9
KB post of 4 MiB bombs is refused)."""

MAX_PARTIAL_BYTES = 2 * MAX_MESSAGE_BYTES
"""Chunk bytes one :class:`Reassembler` holds for unfinished messages (senders sign chunks in order:
one or two partials)."""

DEFLATE_LEVEL = 9
"""zlib level 9: best ratio; the device pays gas per byte, CPU time is cheap by comparison."""

DEFLATE_WBITS = -15
"""Raw DEFLATE (RFC 1951), 32 KiB window, no zlib header/Adler-32 (the tx is signed; chunks carry a
keccak256)."""

_U8_MAX = 2**8 - 1
_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1

DIRECT_CHANNEL_NAME = "lightpost/direct"
"""Reserved channel name for direct messages that belong to no channel."""

_WHAT = "envelope"


class EnvelopeError(LocalError, ValueError):
    """The caller asked to build a message, record or post the wire format cannot carry."""


class ContentType(enum.IntEnum):
    """Content types (one byte): 6..127 reserved for lightpost, 128..255 for applications;
    decoders accept every value.
    """

    OCTET_STREAM = 0
    """Opaque bytes."""
    TEXT = 1
    """UTF-8 text."""
    JSON = 2
    """UTF-8 JSON (RFC 8259)."""
    CBOR = 3
    """Reserved for CBOR (RFC 8949)."""
    COMMAND = 4
    """A lightpost command (defined by a later issue)."""
    COMMAND_RESULT = 5
    """The result of a lightpost command (defined by a later issue)."""


def channel_id(name: str) -> bytes:
    """Channel id: keccak256 of the UTF-8 channel name (post bytes 0..31)."""
    return keccak256(name.encode("utf-8"))


DIRECT_CHANNEL = channel_id(DIRECT_CHANNEL_NAME)
"""keccak256(b"lightpost/direct"): the channel id of direct messages without a channel."""


# --- data model ---


def _check_uint(name: str, value: object, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EnvelopeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise EnvelopeError(f"{name} {value} outside 0..{maximum}")


def _check_bytes(name: str, value: object, *, size: int | None = None) -> None:
    if not isinstance(value, bytes):
        raise EnvelopeError(f"{name} must be bytes, got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise EnvelopeError(f"{name} must be {size} bytes, got {len(value)}")
    if len(value) > MAX_MESSAGE_BYTES:
        raise EnvelopeError(f"{name} of {len(value)} bytes exceeds {MAX_MESSAGE_BYTES}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A logical message: ``seq`` per sender per channel (u64); ``timestamp`` Unix ms (u64) from the
    caller -- the core never reads a clock."""

    seq: int
    timestamp: int
    content_type: int
    payload: bytes

    def __post_init__(self) -> None:
        _check_uint("seq", self.seq, _U64_MAX)
        _check_uint("timestamp", self.timestamp, _U64_MAX)
        _check_uint("content_type", self.content_type, _U8_MAX)
        _check_bytes("payload", self.payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    """Chunk ``index`` of ``count`` (>= 2) and keccak256 of the original payload."""

    index: int
    count: int
    content_hash: bytes

    def __post_init__(self) -> None:
        _check_uint("chunk index", self.index, _U32_MAX)
        _check_uint("chunk count", self.count, _U32_MAX)
        if self.count < 2:
            raise EnvelopeError("chunk count must be >= 2 (one piece is an unchunked record)")
        if self.index >= self.count:
            raise EnvelopeError(f"chunk index {self.index} not below count {self.count}")
        _check_bytes("content_hash", self.content_hash, size=32)


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One record as in a post; ``payload``: the wire bytes (compressed if ``compressed``; a chunk's
    slice). Build with :func:`records_for_message`; :func:`decode_post` checks a hand-made
    compressed payload."""

    seq: int
    timestamp: int
    content_type: int
    payload: bytes
    compressed: bool = False
    chunk: Chunk | None = None
    inflated: bytes | None = field(default=None, compare=False, repr=False)
    """Set by :func:`decode_post` for a compressed unchunked record: its payload inflated
    (once, within the post's budget), so that :func:`message_from_record` need not again."""

    def __post_init__(self) -> None:
        _check_uint("seq", self.seq, _U64_MAX)
        _check_uint("timestamp", self.timestamp, _U64_MAX)
        _check_uint("content_type", self.content_type, _U8_MAX)
        _check_bytes("payload", self.payload)
        if not isinstance(self.compressed, bool):
            raise EnvelopeError("compressed must be a bool")
        if self.chunk is not None and not isinstance(self.chunk, Chunk):
            raise EnvelopeError("chunk must be a Chunk or None")
        if self.inflated is not None:
            _check_bytes("inflated", self.inflated)
            if not self.compressed or self.chunk is not None:
                raise EnvelopeError("only a compressed unchunked record has an inflated payload")

    @property
    def flags(self) -> int:
        """The flags byte this record is encoded with."""
        flags = FLAG_COMPRESSED if self.compressed else 0
        return flags | (FLAG_CHUNK if self.chunk is not None else 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Post:
    """One transaction's calldata: channel, recipient (None = broadcast), records; ``deflated``:
    version 2 (one DEFLATE stream)."""

    channel: bytes
    recipient: bytes | None
    records: tuple[Record, ...]
    deflated: bool = False
    inflated_bytes: int = field(default=0, compare=False)
    """Bytes :func:`decode_post` inflated for this post (0 for a post built locally): what a
    receiver charges against its per-poll budget."""

    def __post_init__(self) -> None:
        _check_bytes("channel", self.channel, size=CHANNEL_ID_SIZE)
        if self.recipient is not None:
            _check_bytes("recipient", self.recipient, size=ADDRESS_SIZE)
            if self.recipient == bytes(ADDRESS_SIZE):
                # The zero address would encode as the broadcast word: ambiguous.
                raise EnvelopeError("recipient must not be the zero address (use None)")
        records = tuple(self.records)
        if not records:
            raise EnvelopeError("a post needs at least one record")
        for record in records:
            if not isinstance(record, Record):
                raise EnvelopeError(f"records must be Record, got {type(record).__name__}")
        object.__setattr__(self, "records", records)
        if not isinstance(self.deflated, bool):
            raise EnvelopeError("deflated must be a bool")
        _check_uint("inflated_bytes", self.inflated_bytes, _U64_MAX)


# --- encoding ---


def record_size(record: Record) -> int:
    """Encoded size of ``record`` in bytes (overhead + payload)."""
    overhead = CHUNK_RECORD_OVERHEAD if record.chunk is not None else RECORD_OVERHEAD
    return overhead + len(record.payload)


def _encode_record(record: Record) -> bytes:
    parts = [_RECORD_HEAD.pack(record.seq, record.timestamp, record.content_type, record.flags)]
    if record.chunk is not None:
        chunk = record.chunk
        parts.append(_CHUNK_EXT.pack(chunk.index, chunk.count, chunk.content_hash))
    parts.append(_LENGTH.pack(len(record.payload)))
    parts.append(record.payload)
    return b"".join(parts)


def encode_post(post: Post) -> bytes:
    """Serialize ``post`` into calldata (layout: module docstring)."""
    recipient = BROADCAST_WORD
    if post.recipient is not None:
        recipient = post.recipient.rjust(_WORD_SIZE, b"\0")
    body = b"".join(_encode_record(r) for r in post.records)
    if post.deflated:
        return post.channel + recipient + bytes((MAGIC, FORMAT_VERSION_DEFLATED)) + _deflate(body)
    return post.channel + recipient + bytes((MAGIC, FORMAT_VERSION)) + body


def post_body_size(post: Post) -> int:
    """Bytes of the post as version 1: what packing budgets."""
    return POST_HEADER_SIZE + sum(record_size(r) for r in post.records)


def post_calldata_tokens(post: Post) -> int:
    """EIP-7623 tokens of the encoded post (zero bytes + 4 x nonzero bytes)."""
    return calldata_tokens(encode_post(post))


def post_gas(post: Post, *, execution_gas: int = 0) -> int:
    """Gas a tx carrying ``post`` uses (EIP-7623); ``execution_gas``: the contract's."""
    return gas_used(encode_post(post), execution_gas)


# --- compression ---


def _deflate(payload: bytes) -> bytes:
    compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, DEFLATE_WBITS)
    return compressor.compress(payload) + compressor.flush()


def choose_compression(payload: bytes) -> tuple[bytes, bool]:
    """``(wire_payload, compressed)``: raw DEFLATE only if it has fewer EIP-7623 tokens."""
    deflated = _deflate(payload)
    if calldata_tokens(deflated) < calldata_tokens(payload):
        return deflated, True
    return payload, False


def _inflate(data: bytes, *, limit: int, offset: int | None, too_big: str = "") -> bytes:
    # Strict raw DEFLATE capped at ``limit`` (bomb guard; past it the error says ``too_big``).
    inflater = zlib.decompressobj(DEFLATE_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise DecodingError(_WHAT, f"invalid deflate stream ({exc})", offset) from None
    if len(out) > limit:
        raise DecodingError(_WHAT, too_big or f"decompressed payload exceeds {limit} bytes", offset)
    if not inflater.eof:
        raise DecodingError(_WHAT, "truncated deflate stream", offset)
    if inflater.unused_data:
        raise DecodingError(
            _WHAT, f"{len(inflater.unused_data)} bytes after the deflate stream", offset
        )
    return out


# --- decoding ---


def _need(data: bytes, offset: int, size: int, what: str) -> None:
    if len(data) - offset < size:
        raise DecodingError(
            _WHAT, f"truncated {what}: need {size} bytes, {len(data) - offset} left", offset
        )


def _over_budget(budget: int) -> str:
    return f"post inflates to more than its budget of {budget} bytes"


def _decode_record(data: bytes, offset: int, *, room: int, budget: int) -> tuple[Record, int]:
    # One record at ``offset``; a compressed unchunked payload inflated once, within ``room``.
    _need(data, offset, _RECORD_HEAD.size, "record header")
    seq, timestamp, content_type, flags = _RECORD_HEAD.unpack_from(data, offset)
    flags_offset = offset + _RECORD_HEAD.size - 1
    offset += _RECORD_HEAD.size
    if flags & FLAG_ENCRYPTED:
        raise DecodingError(
            _WHAT, "encrypted envelopes are not supported by this version", flags_offset
        )
    if flags & ~KNOWN_FLAGS:
        raise DecodingError(_WHAT, f"unknown flags 0x{flags & ~KNOWN_FLAGS:02x}", flags_offset)
    chunk = None
    if flags & FLAG_CHUNK:
        _need(data, offset, _CHUNK_EXT.size, "chunk extension")
        index, count, content_hash = _CHUNK_EXT.unpack_from(data, offset)
        if count < 2:
            raise DecodingError(_WHAT, f"chunk count {count} below 2", offset + 4)
        if index >= count:
            raise DecodingError(_WHAT, f"chunk index {index} not below count {count}", offset)
        chunk = Chunk(index=index, count=count, content_hash=content_hash)
        offset += _CHUNK_EXT.size
    _need(data, offset, _LENGTH.size, "payload length")
    (length,) = _LENGTH.unpack_from(data, offset)
    if length > MAX_MESSAGE_BYTES:
        raise DecodingError(_WHAT, f"payload length {length} exceeds {MAX_MESSAGE_BYTES}", offset)
    offset += _LENGTH.size
    if len(data) - offset < length:
        raise DecodingError(
            _WHAT,
            f"payload length {length} exceeds the {len(data) - offset} bytes left",
            offset - _LENGTH.size,
        )
    payload = data[offset : offset + length]
    compressed = bool(flags & FLAG_COMPRESSED)
    inflated = None
    if compressed and chunk is None:
        # Inflate now (validates, and a decoded post always yields its unchunked messages).
        if room < MAX_MESSAGE_BYTES:
            inflated = _inflate(payload, limit=room, offset=offset, too_big=_over_budget(budget))
        else:
            inflated = _inflate(payload, limit=MAX_MESSAGE_BYTES, offset=offset)
    record = Record(
        seq=seq,
        timestamp=timestamp,
        content_type=content_type,
        payload=payload,
        compressed=compressed,
        chunk=chunk,
        inflated=inflated,
    )
    return record, offset + length


def decode_post(data: bytes, *, max_inflated: int = MAX_POST_INFLATED_BYTES) -> Post:
    """Strictly decode calldata into a :class:`Post`, else :class:`DecodingError` (every rejection:
    docs/protocol.md, "Strict decoding"). ``max_inflated`` caps the post's total inflated bytes
    (a receiver passes its per-poll remainder; :attr:`Post.inflated_bytes`)."""
    _check_uint("max_inflated", max_inflated, MAX_POST_INFLATED_BYTES)
    data = bytes(data)
    _need(data, 0, POST_HEADER_SIZE, "post header")
    channel = data[:CHANNEL_ID_SIZE]
    word = data[CHANNEL_ID_SIZE : CHANNEL_ID_SIZE + _WORD_SIZE]
    pad = _WORD_SIZE - ADDRESS_SIZE
    if word == BROADCAST_WORD:
        recipient = None
    elif word[:pad] != bytes(pad):
        raise DecodingError(_WHAT, "recipient word has nonzero padding bytes", CHANNEL_ID_SIZE)
    else:
        recipient = word[pad:]
    magic_at = CHANNEL_ID_SIZE + _WORD_SIZE
    if data[magic_at] != MAGIC:
        raise DecodingError(_WHAT, f"bad magic 0x{data[magic_at]:02x}", magic_at)
    version = data[magic_at + 1]
    if version not in (FORMAT_VERSION, FORMAT_VERSION_DEFLATED):
        raise DecodingError(_WHAT, f"unknown envelope version {version}", magic_at + 1)
    deflated = version == FORMAT_VERSION_DEFLATED
    offset = POST_HEADER_SIZE
    if offset == len(data):
        raise DecodingError(_WHAT, "post has no records", offset)
    spent = 0
    if deflated:
        # Offsets in errors below count in the inflated record sequence.
        data = _inflate(
            data[offset:], limit=max_inflated, offset=offset, too_big=_over_budget(max_inflated)
        )
        spent, offset = len(data), 0
        if not data:
            raise DecodingError(_WHAT, "deflated post has no records", POST_HEADER_SIZE)
    records = []
    while offset < len(data):
        if len(data) - offset < RECORD_OVERHEAD:
            raise DecodingError(
                _WHAT, f"{len(data) - offset} trailing bytes do not form a record", offset
            )
        record, offset = _decode_record(
            data, offset, room=max_inflated - spent, budget=max_inflated
        )
        spent += len(record.inflated or b"")
        records.append(record)
    return Post(
        channel=channel,
        recipient=recipient,
        records=tuple(records),
        deflated=deflated,
        inflated_bytes=spent,
    )


# --- messages <-> records ---


def records_for_message(message: Message, *, max_record_bytes: int) -> tuple[Record, ...]:
    """The record(s) carrying ``message``: one, or chunks, each within ``max_record_bytes``."""
    if max_record_bytes < CHUNK_RECORD_OVERHEAD + 1:
        raise EnvelopeError(
            f"max_record_bytes {max_record_bytes} below {CHUNK_RECORD_OVERHEAD + 1}"
        )
    wire, compressed = choose_compression(message.payload)
    if len(wire) > MAX_MESSAGE_BYTES:
        raise EnvelopeError(f"wire payload of {len(wire)} bytes exceeds {MAX_MESSAGE_BYTES}")
    if RECORD_OVERHEAD + len(wire) <= max_record_bytes:
        return (_record(message, wire, compressed, None),)
    # Here len(wire) > max_record_bytes - RECORD_OVERHEAD > step, hence count >= 2.
    step = max_record_bytes - CHUNK_RECORD_OVERHEAD
    count = -(-len(wire) // step)
    content_hash = keccak256(message.payload)
    return tuple(
        _record(
            message,
            wire[i * step : (i + 1) * step],
            compressed,
            Chunk(index=i, count=count, content_hash=content_hash),
        )
        for i in range(count)
    )


def _record(message: Message, wire: bytes, compressed: bool, chunk: Chunk | None) -> Record:
    return Record(
        seq=message.seq,
        timestamp=message.timestamp,
        content_type=message.content_type,
        payload=wire,
        compressed=compressed,
        chunk=chunk,
    )


def message_from_record(record: Record) -> Message:
    """The message an unchunked record carries (decompressed); chunks go to a Reassembler."""
    if record.chunk is not None:
        raise EnvelopeError("a chunk record needs a Reassembler")
    payload = record.payload
    if record.inflated is not None:
        payload = record.inflated  # inflated once already, by decode_post
    elif record.compressed:
        payload = _inflate(payload, limit=MAX_MESSAGE_BYTES, offset=None)
    return Message(
        seq=record.seq,
        timestamp=record.timestamp,
        content_type=record.content_type,
        payload=payload,
    )


def pack_messages(
    channel: bytes,
    recipient: bytes | None,
    messages: Iterable[Message],
    *,
    max_post_bytes: int,
) -> list[Post]:
    """Batch ``messages`` (in order, greedy) into posts of at most ``max_post_bytes``; a message too
    large for an empty post is chunked; no post inflates past :data:`MAX_POST_INFLATED_BYTES`.
    docs/protocol.md, "Batching"."""
    _check_uint("max_post_bytes", max_post_bytes, _U64_MAX)
    if max_post_bytes < MIN_POST_BYTES:
        raise EnvelopeError(f"max_post_bytes {max_post_bytes} below {MIN_POST_BYTES}")
    # Validate channel/recipient even when there is nothing to pack.
    Post(channel=channel, recipient=recipient, records=(_PROBE_RECORD,))
    capacity = max_post_bytes - POST_HEADER_SIZE
    posts: list[Post] = []
    current: list[tuple[Record, bytes]] = []  # each record with its message's payload
    used = inflated = 0
    for message in messages:
        if not isinstance(message, Message):
            raise EnvelopeError(f"messages must be Message, got {type(message).__name__}")
        for record in records_for_message(message, max_record_bytes=capacity):
            size = record_size(record)
            grows = size if record.chunk is not None else RECORD_OVERHEAD + len(message.payload)
            if current and (used + size > capacity or inflated + grows > MAX_POST_INFLATED_BYTES):
                posts.append(_cheaper_version(channel, recipient, current, max_post_bytes))
                current, used, inflated = [], 0, 0
            current.append((record, message.payload))
            used += size
            inflated += grows
    if current:
        posts.append(_cheaper_version(channel, recipient, current, max_post_bytes))
    return posts


def _cheaper_version(
    channel: bytes,
    recipient: bytes | None,
    packed: list[tuple[Record, bytes]],
    max_post_bytes: int,
) -> Post:
    # The post as version 1, or 2 if that has fewer EIP-7623 tokens and fits; version 2 stores
    # unchunked payloads uncompressed (one stream compresses them), chunks as they are (their hash
    # covers the original).
    records = tuple(record for record, _ in packed)
    plain = Post(channel=channel, recipient=recipient, records=records)
    if len(records) < 2 and all(r.chunk is not None or r.compressed for r in records):
        return plain  # a lone record already had its own compression choice
    inner = tuple(
        r
        if r.chunk is not None or not r.compressed
        else Record(seq=r.seq, timestamp=r.timestamp, content_type=r.content_type, payload=raw)
        for r, raw in packed
    )
    deflated = Post(channel=channel, recipient=recipient, records=inner, deflated=True)
    wire = encode_post(deflated)
    if len(wire) <= max_post_bytes and calldata_tokens(wire) < post_calldata_tokens(plain):
        return deflated
    return plain


_PROBE_RECORD = Record(seq=0, timestamp=0, content_type=0, payload=b"")


# --- reassembly ---


@dataclass(slots=True)
class _Partial:
    # Chunks received so far for one seq; the first chunk fixes the shared fields.

    first: Record
    count: int
    content_hash: bytes
    pieces: dict[int, bytes]
    size: int


class Reassembler:
    """Collects chunk records of ONE (sender, channel) stream into whole messages: :meth:`add`
    returns the :class:`Message` a record completes, else None. Identical duplicates are ignored;
    a disagreeing chunk raises :class:`DecodingError` (state unchanged); a wrong content hash
    drops the message and raises :class:`ProofError`. Replays are the receiver's to detect."""

    def __init__(
        self,
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_partial_bytes: int = MAX_PARTIAL_BYTES,
    ) -> None:
        _check_uint("max_message_bytes", max_message_bytes, MAX_MESSAGE_BYTES)
        _check_uint("max_partial_bytes", max_partial_bytes, MAX_PARTIAL_BYTES)
        self._max = max_message_bytes
        self._max_held = max_partial_bytes
        self._held = 0
        self._partials: dict[int, _Partial] = {}

    def pending(self) -> tuple[int, ...]:
        """Seqs with some but not all chunks received, ascending."""
        return tuple(sorted(self._partials))

    def missing(self, seq: int) -> tuple[int, ...]:
        """Chunk indexes still missing for ``seq`` (empty if nothing is pending)."""
        partial = self._partials.get(seq)
        if partial is None:
            return ()
        return tuple(i for i in range(partial.count) if i not in partial.pieces)

    def held_bytes(self) -> int:
        """Chunk bytes held for all unfinished messages (at most ``max_partial_bytes``)."""
        return self._held

    def discard(self, seq: int) -> None:
        """Forget the chunks held for ``seq`` (e.g. after a timeout chosen by the caller)."""
        partial = self._partials.pop(seq, None)
        if partial is not None:
            self._held -= partial.size

    def add(self, record: Record) -> Message | None:
        """Feed one record; return the completed message or ``None``."""
        chunk = record.chunk
        if chunk is None:
            return message_from_record(record)
        partial = self._partials.get(record.seq)
        if partial is None:
            partial = _Partial(
                first=record,
                count=chunk.count,
                content_hash=chunk.content_hash,
                pieces={},
                size=0,
            )
        else:
            self._check_consistent(partial, record, chunk)
        held = partial.pieces.get(chunk.index)
        if held is not None:
            if held != record.payload:
                raise DecodingError(
                    _WHAT,
                    f"seq {record.seq}: chunk {chunk.index} received twice with different bytes",
                )
            return None
        if partial.size + len(record.payload) > self._max:
            self.discard(record.seq)
            raise DecodingError(
                _WHAT, f"seq {record.seq}: chunks exceed {self._max} bytes; message dropped"
            )
        if self._held + len(record.payload) > self._max_held:
            self.discard(record.seq)
            raise DecodingError(
                _WHAT,
                f"seq {record.seq}: unfinished messages of this stream exceed "
                f"{self._max_held} bytes; message dropped",
            )
        partial.pieces[chunk.index] = record.payload
        partial.size += len(record.payload)
        self._held += len(record.payload)
        self._partials[record.seq] = partial
        if len(partial.pieces) < partial.count:
            return None
        self.discard(record.seq)
        return self._complete(partial)

    @staticmethod
    def _check_consistent(partial: _Partial, record: Record, chunk: Chunk) -> None:
        first = partial.first
        mismatches = [
            ("chunk count", partial.count, chunk.count),
            ("content hash", partial.content_hash.hex(), chunk.content_hash.hex()),
            ("timestamp", first.timestamp, record.timestamp),
            ("content type", first.content_type, record.content_type),
            ("compressed flag", first.compressed, record.compressed),
        ]
        for name, held, got in mismatches:
            if held != got:
                raise DecodingError(
                    _WHAT, f"seq {record.seq}: {name} {got} disagrees with earlier {held}"
                )

    def _complete(self, partial: _Partial) -> Message:
        wire = b"".join(partial.pieces[i] for i in range(partial.count))
        payload = _inflate(wire, limit=self._max, offset=None) if partial.first.compressed else wire
        if keccak256(payload) != partial.content_hash:
            raise ProofError(
                "content-hash",
                f"seq {partial.first.seq}: reassembled payload does not match keccak256 "
                f"{partial.content_hash.hex()}",
            )
        first = partial.first
        return Message(
            seq=first.seq,
            timestamp=first.timestamp,
            content_type=first.content_type,
            payload=payload,
        )
