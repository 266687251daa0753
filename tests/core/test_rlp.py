"""RLP: ethereum/tests vectors, invalid encodings, hypothesis round trips and fuzzing."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rlp as pyrlp  # test-only independent reference (pyrlp, pulled in by eth-account)
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core import rlp
from lightpost.core.rlp import Item
from lightpost.errors import RLPDecodingError
from tests.conftest import VECTORS, vector_path

KNOWN_BAD = {
    "listofbinaries": "known-bad upstream vector: wrong outer prefix f8a7, should be f90140",
}


def _load(name: str) -> dict[str, Any]:
    with open(vector_path("rlp", name), encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def _cases(name: str, key: str | None = None) -> list[str]:
    """Case names for parametrization; empty (the test then skips) if vectors are absent."""
    path = VECTORS / "rlp" / name
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return sorted(data[key] if key else data)


def _to_item(value: Any) -> bytes | int | list[Any]:
    """ethereum/tests notation: str = raw bytes, '#digits' = big int, int, list."""
    if isinstance(value, list):
        return [_to_item(v) for v in value]
    if isinstance(value, int):
        return value
    if value.startswith("#"):
        return int(value[1:])
    return value.encode("utf-8")


def _as_decoded(value: bytes | int | list[Any]) -> Item:
    """What ``decode`` returns for an input item: ints come back as minimal bytes."""
    if isinstance(value, list):
        return [_as_decoded(v) for v in value]
    if isinstance(value, int):
        return rlp.encode_int(value)
    return value


def _hex(text: str) -> bytes:
    text = text.strip()
    return bytes.fromhex(text[2:] if text[:2].lower() == "0x" else text)


@pytest.mark.parametrize("name", _cases("rlptest.json"))
def test_rlptest_vectors(name: str) -> None:
    if name in KNOWN_BAD:
        pytest.skip(KNOWN_BAD[name])
    case = _load("rlptest.json")[name]
    item = _to_item(case["in"])
    encoded = _hex(case["out"])
    assert rlp.encode(item) == encoded
    assert rlp.decode(encoded) == _as_decoded(item)


def test_known_bad_vector_really_is_bad() -> None:
    """The skip above is justified: only the outer prefix is wrong (its items are 0x-hex).

    The payload after the 3-byte prefix is exactly our encoding of the items, the outer
    prefix we compute is f90140 (320 bytes), and the upstream f8a7 (167 bytes) is rejected.
    """
    case = _load("rlptest.json")["listofbinaries"]
    expected = rlp.encode([_hex(x) for x in case["in"]])
    upstream = _hex(case["out"])
    assert expected[:3] == bytes.fromhex("f90140")
    assert upstream[:2] == bytes.fromhex("f8a7")
    assert upstream[2:] == expected[3:]
    with pytest.raises(RLPDecodingError):
        rlp.decode(upstream)


def test_rlptest_vector_count() -> None:
    assert len(_load("rlptest.json")) == 29


@pytest.mark.parametrize("name", _cases("invalid.json", "tests"))
def test_invalid_vectors_are_rejected(name: str) -> None:
    case = _load("invalid.json")["tests"][name]
    with pytest.raises(RLPDecodingError):
        rlp.decode(_hex(case["out"]))


def test_invalid_vector_count() -> None:
    assert len(_load("invalid.json")["tests"]) == 25


# --- unit checks -----------------------------------------------------------------


def test_errors_carry_offsets() -> None:
    with pytest.raises(RLPDecodingError) as info:
        rlp.decode(b"\xc2\x01\x81\x00")
    assert info.value.offset is not None


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80\x00", b"\xc0\xc0", b"\x82\x01", b"\xc1\x82\x01\x02", b"\xb8"],
)
def test_truncation_and_trailing_bytes(data: bytes) -> None:
    with pytest.raises(RLPDecodingError):
        rlp.decode(data)


def _nested(depth: int) -> bytes:
    """``depth`` lists inside each other, built by prefixing (encode() would recurse)."""
    encoded = b"\xc0"
    for _ in range(depth - 1):
        n = len(encoded)
        if n < 56:
            encoded = bytes([0xC0 + n]) + encoded
        else:
            length = rlp.encode_int(n)
            encoded = bytes([0xF7 + len(length)]) + length + encoded
    return encoded


def test_deep_nesting_raises_rlp_error_not_recursion_error() -> None:
    deep = _nested(5000)  # ~15 KB of nested lists: must not blow the Python stack
    with pytest.raises(RLPDecodingError):
        rlp.decode(deep)


def test_nesting_limit_is_exact() -> None:
    limit = rlp._MAX_DEPTH
    item = rlp.decode(_nested(limit))
    depth = 0
    while isinstance(item, list) and item:
        item = item[0]
        depth += 1
    assert depth == limit - 1
    with pytest.raises(RLPDecodingError):
        rlp.decode(_nested(limit + 1))


def test_decode_int() -> None:
    assert rlp.decode_int(b"") == 0
    assert rlp.decode_int(b"\x01\x00") == 256
    with pytest.raises(RLPDecodingError):
        rlp.decode_int(b"\x00\x01")
    with pytest.raises(RLPDecodingError):
        rlp.decode_int([b"\x01"])  # type: ignore[arg-type]


def test_encode_refuses_bool_negative_and_other_types() -> None:
    with pytest.raises(TypeError):
        rlp.encode(True)
    with pytest.raises(ValueError):
        rlp.encode(-1)
    with pytest.raises(TypeError):
        rlp.encode("text")  # type: ignore[arg-type]


# --- hypothesis ------------------------------------------------------------------

items: st.SearchStrategy[Item] = st.recursive(
    st.binary(max_size=70),
    lambda children: st.lists(children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=200)
@given(items)
def test_round_trip(item: Item) -> None:
    encoded = rlp.encode(item)
    assert rlp.decode(encoded) == item
    assert encoded == pyrlp.encode(item)  # independent reference encoder


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=2**300))
def test_int_round_trip(value: int) -> None:
    encoded = rlp.encode(value)
    payload = rlp.decode(encoded)
    assert isinstance(payload, bytes)
    assert rlp.decode_int(payload) == value
    assert encoded == pyrlp.encode(value)


def _decode_or_none(data: bytes) -> Item | None:
    try:
        return rlp.decode(data)
    except RLPDecodingError:
        return None


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_random_bytes_raise_only_rlp_errors_or_are_canonical(data: bytes) -> None:
    item = _decode_or_none(data)
    if item is not None:
        assert rlp.encode(item) == data  # canonical: one encoding per item


@settings(max_examples=200)
@given(items, st.data())
def test_mutated_encodings_are_rejected_or_canonical(item: Item, data: st.DataObject) -> None:
    encoded = bytearray(rlp.encode(item))
    index = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[index] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded)))
    for candidate in (bytes(encoded), bytes(encoded[:cut])):
        decoded = _decode_or_none(candidate)
        if decoded is not None:
            assert rlp.encode(decoded) == candidate
