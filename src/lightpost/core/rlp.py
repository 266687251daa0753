"""Recursive Length Prefix (RLP) encoding, strict and canonical (Yellow Paper, appendix B).

Integers are big-endian without leading zeros (0 -> empty string). Decoding rejects
non-minimal prefixes, wrapped single bytes < 0x80, lengths with leading zeros,
truncation and trailing bytes, raising :class:`lightpost.errors.RLPDecodingError`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union, cast

from lightpost.errors import RLPDecodingError

__all__ = [
    "Item",
    "decode",
    "decode_int",
    "encode",
    "encode_int",
]

Item = Union[bytes, "list[Item]"]
"""A decoded RLP item: a byte string or a list of items."""

_SHORT = 56
"""Payloads shorter than this carry their length in the prefix byte itself."""

_MAX_DEPTH = 128
"""Deepest list nesting :func:`decode` accepts: Ethereum nests ~5; hostile input must not exhaust
the recursion limit."""


def encode_int(value: int) -> bytes:
    """Big-endian minimal encoding of a non-negative integer (0 -> b"")."""
    if value < 0:
        raise ValueError("RLP integers must be non-negative")
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _length_prefix(length: int, offset: int) -> bytes:
    if length < _SHORT:
        return bytes([offset + length])
    len_bytes = encode_int(length)
    return bytes([offset + _SHORT - 1 + len(len_bytes)]) + len_bytes


def encode(item: bytes | int | Sequence[object]) -> bytes:
    """RLP-encode bytes, a non-negative int, or a (nested) sequence of those."""
    data: bytes
    kind = type(item)  # exact-type fast paths first: this runs ~12 times per transaction
    if kind is bytes:
        data = cast(bytes, item)
    elif kind is int:
        data = encode_int(cast(int, item))
    elif isinstance(item, (list, tuple)):
        body = b"".join([encode(x) for x in item])
        return _length_prefix(len(body), 0xC0) + body
    elif isinstance(item, bool):
        raise TypeError("RLP cannot encode bool; use an int")
    elif isinstance(item, int):  # int subclasses, e.g. IntEnum
        data = encode_int(int(item))
    elif isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
    else:
        raise TypeError(f"RLP cannot encode {type(item).__name__}")
    length = len(data)
    if length == 1 and data[0] < 0x80:
        return data
    if length < _SHORT:
        return bytes((0x80 + length,)) + data
    return _length_prefix(length, 0x80) + data


def decode_int(data: bytes, *, what: str = "integer") -> int:
    """Decode a canonical RLP integer payload (no leading zero bytes)."""
    if not isinstance(data, bytes):
        raise RLPDecodingError(f"{what} must be a string, not a list")
    if data[:1] == b"\x00":
        raise RLPDecodingError(f"{what} has a leading zero byte")
    return int.from_bytes(data, "big")


def _read_length(data: bytes, pos: int, n: int) -> int:
    if pos + n > len(data):
        raise RLPDecodingError("length bytes truncated", pos)
    raw = data[pos : pos + n]
    if raw[0] == 0:
        raise RLPDecodingError("length has a leading zero byte", pos)
    length = int.from_bytes(raw, "big")
    if length < _SHORT:
        raise RLPDecodingError("long form used for a short length", pos)
    return length


def _decode_at(data: bytes, pos: int, depth: int = 0) -> tuple[Item, int]:
    # Decode one item starting at ``pos``; return it and the position after it.
    if pos >= len(data):
        raise RLPDecodingError("unexpected end of input", pos)
    b0 = data[pos]
    if b0 < 0x80:
        return data[pos : pos + 1], pos + 1
    if b0 < 0xB8:
        length = b0 - 0x80
        start = pos + 1
        end = start + length
        if end > len(data):
            raise RLPDecodingError("string truncated", pos)
        if length == 1 and data[start] < 0x80:
            raise RLPDecodingError("single byte below 0x80 must not be prefixed", pos)
        return data[start:end], end
    if b0 < 0xC0:
        n = b0 - 0xB7
        length = _read_length(data, pos + 1, n)
        start = pos + 1 + n
        end = start + length
        if end > len(data):
            raise RLPDecodingError("string truncated", pos)
        return data[start:end], end
    if b0 < 0xF8:
        length = b0 - 0xC0
        start = pos + 1
    else:
        n = b0 - 0xF7
        length = _read_length(data, pos + 1, n)
        start = pos + 1 + n
    end = start + length
    if end > len(data):
        raise RLPDecodingError("list truncated", pos)
    if depth >= _MAX_DEPTH:
        raise RLPDecodingError(f"lists nested deeper than {_MAX_DEPTH}", pos)
    items: list[Item] = []
    cur = start
    while cur < end:
        item, cur = _decode_at(data, cur, depth + 1)
        if cur > end:
            raise RLPDecodingError("list element overruns its list", cur)
        items.append(item)
    return items, end


def decode(data: bytes) -> Item:
    """Decode exactly one RLP item; trailing bytes are an error."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("RLP decodes bytes")
    data = bytes(data)
    item, end = _decode_at(data, 0)
    if end != len(data):
        raise RLPDecodingError(f"{len(data) - end} trailing bytes", end)
    return item
