"""Merging one device's records across the gateways a receiver follows (issue 14). Pure.

With MQTT 5 shared subscriptions the broker splits ONE device's chain across gateways: gateway A
holds seqs 0, 2, 5, gateway B 1, 3, 4, and each anchors only the heads of its own stretches. The
receiver pools what every followed gateway relays (each record opened under the domain and
signed by the device it names) and what each proved on chain (``Head``: device, seq, hash, block),
and delivers each record exactly once, in seq order, at the requested level:

- ``signed``: the record links to the last delivered one (its ``prev`` is that record's hash);
- ``included`` / ``final`` / ``complete``: and a proven head at or above it, reached by the
  ``prev`` links of the records in between, is usable at the level (any proven block / a block
  at or below the finalized height / and at or below the height where every followed gateway's
  accumulator is proven).

Two rules, each one table-driven in tests/device/test_receive_merge.py:

:func:`judge` (a relayed record against what is delivered and pooled; the chain-link rule of
:func:`lightpost_gateway.record.classify_link`):

=======  =================================================================================
HOLD     pool it until it can be delivered
REPLAY   the very record is delivered or pooled already (another gateway, a re-anchored
         batch, a backfill): drop it, deliver nothing, report it
FORK     another record of the device at this seq, or a link that contradicts a neighbour:
         drop it and report it (two records the device signed at one seq)
=======  =================================================================================

:func:`deliverable` (what the pool lets the cursor pass): the run of linked records from the
cursor, cut at the highest usable head in it; and a finding when a usable head lies past a
record nobody relayed (MISSING: anchored off-chain data withheld or lost -- never skipped), or
when the anchored hash at a seq is not the relayed record there (FORK).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum

from lightpost.core.levels import Level

from .anchor import accumulate
from .record import ZERO_HASH, ChainEntry, Link, Liveness, classify_link, liveness

__all__ = [
    "Completeness",
    "Cursor",
    "Head",
    "Held",
    "Judgement",
    "Stop",
    "Watch",
    "completeness",
    "deliverable",
    "judge",
    "usable",
    "watch_check",
    "watch_death",
    "watch_record",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class Held:
    """A relayed record of one device, opened and signed by it: pooled until delivered."""

    seq: int
    hash: bytes
    prev: bytes
    wire: bytes
    gateway: bytes
    """The gateway that relayed it (the first one, if several did)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Head:
    """A device's head hash at ``seq``, proven in a batch of ``gateway`` anchored at ``block``."""

    seq: int
    hash: bytes
    block: int
    gateway: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class Cursor:
    """Where a device's delivery stands: the next seq to deliver and the hash it must link to."""

    next_seq: int = 0
    prev: bytes = ZERO_HASH


class Judgement(Enum):
    HOLD = "hold"
    REPLAY = "replay"
    FORK = "fork"


def judge(
    record: Held,
    *,
    cursor: Cursor,
    delivered_hash: bytes | None,
    pool: Mapping[int, Held],
) -> Judgement:
    """A relayed record against the device's delivered and pooled records. ``delivered_hash``:
    the hash delivered at ``record.seq`` when it is below the cursor (None if not kept)."""
    known: dict[int, ChainEntry] = {}
    if cursor.next_seq > 0:
        before = cursor.next_seq - 1
        known[before] = ChainEntry(seq=before, hash=cursor.prev, prev=b"")
    if record.seq < cursor.next_seq:
        if delivered_hash is None:  # below what is kept: nothing new can be delivered there
            return Judgement.REPLAY
        known[record.seq] = ChainEntry(seq=record.seq, hash=delivered_hash, prev=b"")
    for seq in (record.seq - 1, record.seq, record.seq + 1):
        held = pool.get(seq)
        if held is not None:
            known[seq] = ChainEntry(seq=seq, hash=held.hash, prev=held.prev)
    entry = ChainEntry(seq=record.seq, hash=record.hash, prev=record.prev)
    if record.seq == 0 and record.prev != ZERO_HASH:
        return Judgement.FORK
    link = classify_link(known, entry).link
    if link == Link.REPLAY:
        return Judgement.REPLAY
    if link == Link.FORK:
        return Judgement.FORK
    return Judgement.HOLD


def usable(heads: Sequence[Head], *, level: Level, final: int, complete: int) -> list[Head]:
    """The heads a level may rely on: ``included`` every proven one; ``final`` those at or below
    the finalized height; ``complete`` those at or below min(final, complete height)."""
    if level <= Level.INCLUDED:
        return list(heads)
    limit = final if level == Level.FINAL else min(final, complete)
    return [h for h in heads if h.block <= limit]


@dataclass(frozen=True, kw_only=True, slots=True)
class Stop:
    """Why delivery stopped short of a usable head: ``kind`` missing or fork, at seqs
    first .. last (last: the usable head's seq)."""

    kind: str
    first: int
    last: int


def deliverable(
    cursor: Cursor, pool: Mapping[int, Held], heads: Sequence[Head], *, level: Level
) -> tuple[list[Held], Stop | None]:
    """The records the cursor may pass now, in order, and a finding that blocks the rest
    (``heads``: already :func:`usable` at ``level``; ignored at ``signed``)."""
    run: list[Held] = []
    seq, prev = cursor.next_seq, cursor.prev
    while (held := pool.get(seq)) is not None and held.prev == prev:
        run.append(held)
        seq, prev = seq + 1, held.hash
    stop: Stop | None = None
    broken = pool.get(seq)
    if broken is not None:  # present but not linking: judge() keeps such records out
        stop = Stop(kind="fork", first=seq, last=seq)
    by_seq = {r.seq: r for r in run}
    cut = cursor.next_seq - 1
    for head in sorted(heads, key=lambda h: h.seq):
        if head.seq < cursor.next_seq:
            continue
        held = by_seq.get(head.seq)
        if held is None:
            if stop is None:
                stop = Stop(kind="missing", first=seq, last=head.seq)
            break
        if held.hash != head.hash:
            stop = Stop(kind="fork", first=head.seq, last=head.seq)
            break
        cut = head.seq
    if level == Level.SIGNED:
        return run, stop
    return [r for r in run if r.seq <= cut], stop


@dataclass(frozen=True, kw_only=True, slots=True)
class Completeness:
    """One gateway at ``complete``: ``kind`` complete; unknown (its anchorings ``counts`` are not
    proven yet: look for them on chain); withheld (anchored at ``counts``, content not served);
    mismatch (the proven anchorings do not fold to the proven accumulator)."""

    kind: str
    counts: tuple[int, ...] = ()


def completeness(
    anchorings: Mapping[int, bytes], *, count: int, acc: int, have: Collection[bytes]
) -> Completeness:
    """Does the receiver hold every batch of a gateway up to a height? ``anchorings``: the
    gateway's batch count -> batch digest of each anchoring proven (its event in a proven
    receipt); ``count``/``acc``: the contract's count and accumulator proven there (eth_getProof);
    ``have``: the digests of the batches whose contents were taken. A batch anchored twice (a
    re-anchoring after a crash) is two anchorings of one digest: its contents are needed once."""
    unknown = tuple(c for c in range(1, count + 1) if c not in anchorings)
    if unknown:
        return Completeness(kind="unknown", counts=unknown)
    fold = ZERO_HASH
    for c in range(1, count + 1):
        fold = accumulate(fold, anchorings[c])
    if int.from_bytes(fold, "big") != acc:
        return Completeness(kind="mismatch")
    withheld = tuple(c for c in range(1, count + 1) if anchorings[c] not in have)
    if withheld:
        return Completeness(kind="withheld", counts=withheld)
    return Completeness(kind="complete")


@dataclass(frozen=True, kw_only=True, slots=True)
class Watch:
    """What the receiver knows of one device's liveness (record.liveness), its own clock's ms:
    the latest birth taken from a gateway (its seq, hash, declared cadence), the highest seq
    taken and when, the death notice of that birth (when it arrived), and the last state
    reported (so a silence is reported once, not at every check)."""

    cadence_s: int
    birth_seq: int
    birth_hash: bytes
    last_seq: int
    seen_ms: int
    death_ms: int | None = None
    reported: Liveness = Liveness.ALIVE


def watch_record(
    w: Watch | None, *, seq: int, hash: bytes, cadence_s: int | None, now_ms: int
) -> Watch | None:
    """A record of the device taken from a gateway (``cadence_s``: its declaration if it is a
    birth). Only a seq above the highest taken is news: a replayed or late record cannot keep a
    silent device alive. A device is watched from its first birth on (before, no cadence)."""
    if w is None:
        if cadence_s is None:
            return None
        return Watch(
            cadence_s=cadence_s, birth_seq=seq, birth_hash=hash, last_seq=seq, seen_ms=now_ms
        )
    if seq <= w.last_seq:
        return w
    w = replace(w, last_seq=seq, seen_ms=now_ms)
    if cadence_s is not None:
        w = replace(w, cadence_s=cadence_s, birth_seq=seq, birth_hash=hash)
    return w


def watch_death(w: Watch | None, *, seq: int, prev: bytes, now_ms: int) -> Watch | None:
    """A death notice signed by the device (its MQTT will: the birth's seq, prev = the birth's
    hash) arrived: it counts for the latest birth taken, or for a later one (a birth no gateway
    relayed yet: the device signed it, so it connected); an older birth's notice is ignored."""
    if w is None or seq < w.birth_seq or (seq == w.birth_seq and prev != w.birth_hash):
        return w
    return replace(w, death_ms=now_ms)


def watch_check(w: Watch, *, now_ms: int) -> tuple[Watch, Liveness | None]:
    """The device's liveness now, and what to report: SILENT or DEAD once, when it becomes so
    (again after a record made it ALIVE in between); nothing while it stays so or is ALIVE."""
    state = liveness(
        last_record_ms=w.seen_ms, cadence_s=w.cadence_s, death_ms=w.death_ms, now_ms=now_ms
    )
    report = state if state not in (w.reported, Liveness.ALIVE) else None
    return replace(w, reported=state), report
