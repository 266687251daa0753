"""core.rpcfields: DATA and QUANTITY parsing is strict (the C fast path included)."""

from __future__ import annotations

import pytest

from lightpost.core.rpcfields import parse_data, parse_quantity
from lightpost.errors import DecodingError


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0x", b""), ("0x00ff", b"\x00\xff"), ("0xABcd", b"\xab\xcd")],
)
def test_data_accepted(value: str, expected: bytes) -> None:
    assert parse_data(value, "x") == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("0x12 345", "not hexadecimal"),  # bytes.fromhex would take the space
        ("0x 12", "not hexadecimal"),
        ("0x12\n3", "not hexadecimal"),
        ("0x1_23", "not hexadecimal"),
        ("0x12é4", "not hexadecimal"),
        ("0xzz", "not hexadecimal"),
        ("0x123", "odd number"),
        ("12", "0x prefix"),
        (12, "hex string"),
    ],
)
def test_data_rejected(value: object, match: str) -> None:
    with pytest.raises(DecodingError, match=match):
        parse_data(value, "x")


@pytest.mark.parametrize("value", ["0x1_0", "0x 1", "0x", "0xg", "0x1 "])
def test_quantity_rejected(value: str) -> None:
    with pytest.raises(DecodingError):
        parse_quantity(value, "x")
