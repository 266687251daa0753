"""Verification levels, weakest first: ``signed``, ``included``, ``final``, ``complete`` (each
implies those below; docs/protocol.md, "Verification levels"), and the delivered-message record."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Delivered", "Level"]


class Level(enum.IntEnum):
    """Guarantee levels; a higher value implies every lower one."""

    SIGNED = 1
    INCLUDED = 2
    FINAL = 3
    COMPLETE = 4

    @classmethod
    def parse(cls, text: str) -> Level:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown verification level {text!r}") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivered:
    """One message handed to the application, with what was proven; ``block_timestamp`` is verified
    from ``included`` up and dates command validity, never the device clock alone."""

    sender: bytes
    channel: bytes
    recipient: bytes | None
    seq: int
    timestamp: int
    content_type: int
    payload: bytes
    tx_hash: bytes
    block_number: int
    block_hash: bytes
    block_timestamp: int
    level: Level
    root: str = "quorum"
    """What ``level`` rests on: quorum, beacon-finalized or beacon-optimistic (+quorum)."""
