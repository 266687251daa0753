"""What a gateway does with one message on ``lp/1/d/<address>`` (issue 14). Pure.

:func:`admit` applies, in order: the topic names a device; the record decodes strictly
(:func:`lightpost_gateway.record.decode_record`); it recovers, under the gateway's domain, to the
address its topic names (a record signed for another chain, anchor or version, or by another
key, recovers elsewhere); the device is authorized; the chain link
(:func:`lightpost_gateway.record.classify_link`) against what the gateway already holds of the
device. Its verdicts:

==========  =========================================================================
ACCEPT      store it durably, then acknowledge; it joins the next batch
DUPLICATE   the very record is already held: acknowledge, store nothing (if it is
            already anchored, the device gets its receipt again)
DEATH       the device's death notice (its MQTT will): liveness only, never batched
REJECT      acknowledge and drop; ``reason`` goes back to the device on
            ``lp/1/x/<address>`` (a fork, a wrong key or domain, a malformed record)
==========  =========================================================================

A GAP (records the gateway never saw, e.g. taken by another gateway of a shared subscription)
is accepted: a batch leaf anchors its head hash, and the records below it are bound to it by
their ``prev`` links, whichever gateway holds them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import Enum

from lightpost.errors import LightpostError

from .record import (
    TOPIC_ROOT,
    ChainEntry,
    Domain,
    Kind,
    Link,
    SignedRecord,
    classify_link,
    open_record,
)

__all__ = ["Admission", "Verdict", "admit", "reject_topic", "topic_device"]

_RECORD_PREFIX = f"{TOPIC_ROOT}/d/"
_REJECT_PREFIX = f"{TOPIC_ROOT}/x/"
_ADDRESS_HEX = 40


class Verdict(Enum):
    ACCEPT = "accept"
    DUPLICATE = "duplicate"
    DEATH = "death"
    REJECT = "reject"


@dataclass(frozen=True, kw_only=True, slots=True)
class Admission:
    verdict: Verdict
    reason: str = ""
    device: bytes | None = None
    record: SignedRecord | None = None
    hash: bytes | None = None


def topic_device(topic: str) -> bytes | None:
    """The address a record topic names (40 lowercase hex digits), or None."""
    if not topic.startswith(_RECORD_PREFIX):
        return None
    text = topic[len(_RECORD_PREFIX) :]
    if len(text) != _ADDRESS_HEX or text != text.lower():
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def reject_topic(device: bytes) -> str:
    """Where a gateway tells a device why it refused a record."""
    return f"{_REJECT_PREFIX}{device.hex()}"


def admit(
    topic: str,
    wire: bytes,
    *,
    domain: Domain,
    known: Callable[[bytes, int], Mapping[int, ChainEntry]],
    authorized: Collection[bytes] | None = None,
) -> Admission:
    """The admission rule. ``known(device, seq)`` returns what the gateway holds of the device's
    chain at seq - 1, seq and seq + 1 and its highest record (by seq); ``authorized`` None admits
    every device that signs correctly (an open gateway)."""
    device = topic_device(topic)
    if device is None:
        return Admission(verdict=Verdict.REJECT, reason="not a record topic")
    try:
        signed, signer, digest = open_record(wire, domain)
    except LightpostError as exc:
        return Admission(verdict=Verdict.REJECT, reason=str(exc), device=device)
    if signer != device:
        return Admission(
            verdict=Verdict.REJECT,
            reason="not signed by this device's key for this chain and anchor",
            device=device,
        )
    if authorized is not None and device not in authorized:
        return Admission(verdict=Verdict.REJECT, reason="not an authorized device", device=device)
    if signed.record.kind == Kind.DEATH:
        return Admission(verdict=Verdict.DEATH, device=device, record=signed, hash=digest)
    entry = ChainEntry(seq=signed.record.seq, hash=digest, prev=signed.record.prev)
    link = classify_link(known(device, entry.seq), entry).link
    if link == Link.REPLAY:
        return Admission(verdict=Verdict.DUPLICATE, device=device, record=signed, hash=digest)
    if link == Link.FORK:
        return Admission(
            verdict=Verdict.REJECT,
            reason=f"fork: contradicts the device's chain at seq {entry.seq}",
            device=device,
        )
    return Admission(verdict=Verdict.ACCEPT, device=device, record=signed, hash=digest)
