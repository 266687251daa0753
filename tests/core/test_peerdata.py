"""Bounds on peer data: JSON depth scan (against json.loads) and peer text rendering."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core.peerdata import (
    MAX_JSON_DEPTH,
    MAX_PEER_TEXT_CHARS,
    json_depth,
    parse_json,
    peer_text,
)
from lightpost.errors import DecodingError


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@pytest.mark.parametrize(
    ("doc", "depth"),
    [
        (b"1", 0),
        (b'"[[["', 0),
        (b"[]", 1),
        (b"[[],{}]", 2),
        (b'{"a":[1,{"b":"]]]}"}]}', 3),
        (rb'["\"[[[", "\\", [[]]]', 3),  # escaped quote, escaped backslash before a quote
        (rb'["\\\"]]]"]', 1),
        (b"[" * 50, 50),  # unterminated: the depth a parser reaches before failing
        (b'["' + b"[" * 50, 1),  # unterminated string
        (b'["\\', 1),  # ends inside an escape
    ],
)
def test_json_depth_table(doc: bytes, depth: int) -> None:
    assert json_depth(doc) == depth
    assert json_depth(doc, chunk=3) == depth  # the scan is cut in small pieces too


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(alphabet='[]{}"\\/ab\n\x00\u20ac', max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_json, st.booleans(), st.integers(1, 17))
def test_json_depth_matches_the_parsed_document(
    value: object, ascii_only: bool, chunk: int
) -> None:
    doc = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert json_depth(doc, chunk=chunk) == _depth(json.loads(doc))
    if _depth(value) <= MAX_JSON_DEPTH:
        assert parse_json(doc, "doc") == json.loads(doc)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), "nested deeper than 32"),
        (b"[" * 100_000, "nested deeper than 32"),  # json.loads: RecursionError
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "nested deeper than 32"),
        (b"<html>", "not JSON"),
        (b"\xff\xfe[", "not JSON"),
        (b"1" * 5_000, "not JSON"),  # int digits limit: a ValueError
        (b"", "not JSON"),
    ],
)
def test_parse_json_failures_are_decoding_errors(doc: bytes, reason: str) -> None:
    with pytest.raises(DecodingError, match=reason):
        parse_json(doc, "answer")


def test_parse_json_accepts_the_bound() -> None:
    doc = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert json_depth(doc) == MAX_JSON_DEPTH and parse_json(doc, "answer") is not None


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("nonce too low", "nonce too low"),
        ('x\n{"fake":"log"}', r'x\n{"fake":"log"}'),
        ("\x1b[31mred\x1b[0m\r\t", r"\x1b[31mred\x1b[0m\r\t"),
        ("\x9b2J\x7f", r"\x9b2J\x7f"),  # C1 CSI and DEL
        ("a\u2028b\u2029c\u202ed\u200b", r"a\u2028b\u2029c\u202ed\u200b"),  # separators, bidi
        ("caf\u00e9 \u20ac", "caf\u00e9 \u20ac"),  # printable Unicode stays
        (None, "<NoneType>"),
        ({"message": "x"}, "<dict>"),
    ],
)
def test_peer_text_table(text: object, shown: str) -> None:
    assert peer_text(text) == shown


@given(st.text(max_size=400))
def test_peer_text_is_one_printable_clipped_line(text: str) -> None:
    shown = peer_text(text)
    assert shown.isprintable() and len(shown) <= MAX_PEER_TEXT_CHARS
    if len(text) <= MAX_PEER_TEXT_CHARS // 10:  # short enough to survive escaping whole
        assert not shown.endswith("...") or text.endswith("...")
