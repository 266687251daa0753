"""Strict readers for the hex fields (QUANTITY, DATA; execution-apis) of JSON-RPC answers: a
malformed, missing or mistyped field raises :class:`lightpost.errors.DecodingError` naming
structure and field. Redundant leading zeros (``0x01``) are accepted: providers emit them, proofs
commit to the value."""

from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence

from lightpost.errors import DecodingError

__all__ = [
    "data_field",
    "get_field",
    "get_list",
    "get_object",
    "optional_field",
    "parse_data",
    "parse_quantity",
    "quantity_field",
]

_HEX_PREFIX = "0x"
"""execution-apis: every QUANTITY and DATA value starts with ``0x``."""


def get_object(value: object, what: str) -> Mapping[str, object]:
    """Return ``value`` as a JSON object or raise :class:`DecodingError`."""
    if not isinstance(value, Mapping):
        raise DecodingError(what, f"expected a JSON object, got {type(value).__name__}")
    return value


def get_list(value: object, what: str) -> Sequence[object]:
    """Return ``value`` as a JSON array or raise :class:`DecodingError`."""
    if not isinstance(value, list | tuple):
        raise DecodingError(what, f"expected a JSON array, got {type(value).__name__}")
    return value


def get_field(obj: Mapping[str, object], name: str, what: str) -> object:
    """Return the (non-null) field ``name`` of ``obj``; missing or null is an error."""
    value = obj.get(name)
    if value is None:
        raise DecodingError(what, f"missing field {name!r}")
    return value


def optional_field(obj: Mapping[str, object], name: str) -> object | None:
    """Return the field ``name`` of ``obj``, or ``None`` when missing or null."""
    return obj.get(name)


_HEX_DIGITS = "0123456789abcdefABCDEF"
"""The digits a hex string may hold."""


def _hex_body(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise DecodingError(what, f"expected a hex string, got {type(value).__name__}")
    if not value.startswith(_HEX_PREFIX):
        raise DecodingError(what, "hex value lacks the 0x prefix")
    return value[len(_HEX_PREFIX) :]


def parse_quantity(value: object, what: str) -> int:
    """Parse a QUANTITY (``0x``-prefixed hex integer, at least one digit)."""
    body = _hex_body(value, what)
    if not body:
        raise DecodingError(what, "empty quantity")
    if body.strip(_HEX_DIGITS):  # int() would also take "_" and spaces
        raise DecodingError(what, "not hexadecimal")
    return int(body, 16)


def parse_data(value: object, what: str, length: int | None = None) -> bytes:
    """Parse DATA (``0x``-prefixed even-length hex); check ``length`` in bytes if given."""
    body = _hex_body(value, what)
    if len(body) % 2:
        odd = "not hexadecimal" if body.strip(_HEX_DIGITS) else "odd number of hex digits"
        raise DecodingError(what, odd)
    try:
        raw = binascii.a2b_hex(body)  # strict (no spaces, unlike bytes.fromhex) and in C
    except (binascii.Error, ValueError):  # ValueError: a non-ASCII character
        raise DecodingError(what, "not hexadecimal") from None
    if length is not None and len(raw) != length:
        raise DecodingError(what, f"expected {length} bytes, got {len(raw)}")
    return raw


def quantity_field(obj: Mapping[str, object], name: str, what: str) -> int:
    """Parse the required QUANTITY field ``name`` of ``obj``."""
    return parse_quantity(get_field(obj, name, what), f"{what}.{name}")


def data_field(obj: Mapping[str, object], name: str, what: str, length: int | None = None) -> bytes:
    """Parse the required DATA field ``name`` of ``obj`` (optionally fixed-length)."""
    return parse_data(get_field(obj, name, what), f"{what}.{name}", length)
