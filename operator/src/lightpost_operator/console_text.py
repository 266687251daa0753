"""What the console shows of a payload or a problem: titles, redaction, numeric fields (no I/O)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "IGNORED_FIELDS",
    "MAX_FIELDS",
    "MAX_TEXT",
    "event_title",
    "numeric_fields",
    "payload_bytes",
    "redact",
]

MAX_FIELDS = 3
"""Numeric fields of one JSON reading that get a chart each (the rest are in the proof trail)."""

IGNORED_FIELDS = frozenset({"n", "seq", "id", "t", "ts", "time", "timestamp"})
"""JSON keys that count or name a reading rather than measure something."""

MAX_TEXT = 160
"""Characters of a reading or a problem's details shown (the rest is cut with an ellipsis)."""

_KIND_TITLES = {
    "proof-failure": "forged data blocked",
    "hidden": "hidden message detected",
    "gap": "gap in a sequence",
    "disagreement": "endpoints disagree",
    "retracted": "delivery retracted (reorg)",
    "unauthorized": "untrusted sender refused",
    "undecodable": "undecodable message refused",
    "over-budget": "byte budget reached (waiting, nothing lost)",
    "command-refused": "command refused by the device",
    "command-failed": "command failed on the device",
}
"""The page's title of each integrity-event kind (ProblemKind values plus command outcomes)."""


def event_title(kind: str, endpoints: Iterable[str]) -> str:
    """The one-line title of an integrity event, naming the endpoint(s) that lied or hid."""
    base = _KIND_TITLES.get(kind, kind)
    named = ", ".join(endpoints)
    if not named:
        return base
    if kind == "proof-failure":
        return f"{base}: {named} lied"
    if kind == "hidden":
        return f"{base}: {named} hid it"
    return f"{base} ({named})"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (endpoint URL, token) replaced by ``[redacted]``; cut to
    :data:`MAX_TEXT` characters."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "\u2026"


def numeric_fields(payload: str) -> dict[str, float]:
    """The numeric top-level fields of a JSON reading, at most :data:`MAX_FIELDS`, in order
    (counters and names skipped); empty when the payload is not a JSON object."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    out: dict[str, float] = {}
    for key, value in doc.items():
        if len(out) >= MAX_FIELDS:
            break
        if key in IGNORED_FIELDS or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[str(key)[:32]] = float(value)
    return out


def payload_bytes(obj: Mapping[str, Any]) -> bytes:
    text = str(obj.get("payload", ""))
    if obj.get("payload_encoding") == "hex":
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            return b""
    return text.encode("utf-8")
