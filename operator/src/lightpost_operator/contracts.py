"""The inbox's compiled artifact, package data beside this module: ``inbox.json`` is generated
from ``inbox.easm`` by ``tools/build_contracts.py`` (``make contracts``); a test checks they agree.
Deploying is the operator's; a device needs only the code hash (lightpost.core.inbox)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightpost.core.hashing import keccak256
from lightpost.errors import ConfigError

__all__ = [
    "INBOX_ARTIFACT",
    "code_matches",
    "inbox_artifact",
    "inbox_initcode",
    "inbox_runtime",
]

INBOX_ARTIFACT = "inbox.json"
"""File name of the inbox artifact in the package data."""

CONTRACTS_DIR = Path(__file__).resolve().parent
"""Package data dir (never run from a zip; importlib.resources would cost ~0.8 MB of RSS)."""

_REQUIRED_KEYS = ("runtime", "initcode", "event_topic", "source_sha256")
"""Keys every artifact must carry (hex strings, 0x-prefixed except the SHA-256)."""


def inbox_artifact() -> dict[str, Any]:
    """The inbox artifact: runtime, initcode, event_topic, event_signature, source_sha256."""
    try:
        text = (CONTRACTS_DIR / INBOX_ARTIFACT).read_text(encoding="utf-8")
        artifact = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the packaged inbox artifact: {exc}") from None
    if not isinstance(artifact, dict) or any(k not in artifact for k in _REQUIRED_KEYS):
        raise ConfigError("the packaged inbox artifact lacks required keys")
    return artifact


def _hex_field(name: str) -> bytes:
    value = inbox_artifact()[name]
    try:
        return bytes.fromhex(str(value).removeprefix("0x"))
    except ValueError:
        raise ConfigError(f"inbox artifact field {name} is not hex") from None


def inbox_runtime() -> bytes:
    """The inbox's deployed (runtime) bytecode."""
    return _hex_field("runtime")


def inbox_initcode() -> bytes:
    """The inbox's creation code (deploy wrapper + runtime)."""
    return _hex_field("initcode")


def code_matches(code_hash: bytes, runtime: bytes) -> bool:
    """Whether a (proven) account code hash is keccak256 of the expected ``runtime`` code."""
    return code_hash == keccak256(runtime)
