"""The anchoring contract's compiled artifact (``anchor.json``, generated from ``anchor.easm`` by
``tools/build_contracts.py``; a test checks they agree)."""

from __future__ import annotations

import json
from pathlib import Path

from lightpost.errors import ConfigError

__all__ = ["ANCHOR_ARTIFACT", "anchor_initcode", "anchor_runtime"]

ANCHOR_ARTIFACT = Path(__file__).resolve().parent / "anchor.json"
"""Package data beside this module."""


def _field(name: str) -> bytes:
    try:
        artifact = json.loads(ANCHOR_ARTIFACT.read_text(encoding="utf-8"))
        return bytes.fromhex(str(artifact[name]).removeprefix("0x"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the packaged anchor artifact: {exc}") from None


def anchor_runtime() -> bytes:
    """The anchoring contract's deployed (runtime) bytecode."""
    return _field("runtime")


def anchor_initcode() -> bytes:
    """Its creation code (deploy wrapper + runtime)."""
    return _field("initcode")
