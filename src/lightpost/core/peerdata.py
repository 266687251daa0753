"""Bounds on what a network peer sends: JSON nesting depth (``json.loads`` recurses;
:func:`parse_json` measures first, every failure a :class:`DecodingError`) and text shown to
humans (:func:`peer_text`: no controls, escapes or line breaks)."""

from __future__ import annotations

import json
from itertools import accumulate, count
from operator import sub

from lightpost.errors import DecodingError

__all__ = ["MAX_JSON_DEPTH", "MAX_PEER_TEXT_CHARS", "json_depth", "parse_json", "peer_text"]

MAX_JSON_DEPTH = 32
"""Deepest JSON accepted: a batch of full blocks nests 8 (batch > response > block > txs > tx >
accessList > entry > keys)."""

MAX_PEER_TEXT_CHARS = 200
"""Longest peer-written text kept in an error (one readable log line)."""

_SCAN_CHUNK = 1 << 16
"""Bytes split at once by :func:`json_depth` (bounds its transient list of pieces)."""

_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
"""Openers count 2, closers 0: the running sum minus the position is the depth."""


def json_depth(doc: bytes | bytearray, chunk: int = _SCAN_CHUNK) -> int:
    """Deepest nesting in ``doc`` (invalid JSON: where a parser fails); linear: outside strings is
    every other piece between quotes."""
    if b"\\" in doc:
        doc = doc.replace(b"\\\\", b"").replace(b'\\"', b"")
    deepest = level = inside = 0
    for start in range(0, len(doc), chunk):
        pieces = doc[start : start + chunk].split(b'"')
        steps = b"".join(pieces[inside::2]).translate(_STEP, _NOT_BRACKET)
        if steps:
            deepest = max(deepest, level + max(map(sub, accumulate(steps), count(1))))
            level += 2 * steps.count(2) - len(steps)
        inside ^= (len(pieces) - 1) & 1
    return deepest


def parse_json(doc: bytes | bytearray, what: str, max_depth: int = MAX_JSON_DEPTH) -> object:
    """``json.loads(doc)``, refusing nesting deeper than ``max_depth``; every failure is a
    :class:`DecodingError` about ``what``."""
    if json_depth(doc) > max_depth:
        raise DecodingError(what, f"nested deeper than {max_depth} levels")
    try:
        return json.loads(doc)
    except (ValueError, RecursionError):
        raise DecodingError(what, "not JSON") from None


def peer_text(value: object, limit: int = MAX_PEER_TEXT_CHARS) -> str:
    """Peer text safe for one log line: non-printables (controls, ESC, newlines, Unicode separators,
    bidi marks) escaped, clipped to ``limit``; a non-string shows its type only."""
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in value[: limit + 1])
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
