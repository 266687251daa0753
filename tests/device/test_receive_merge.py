"""The merge rules (lightpost_gateway.merge) and the feed codec (lightpost_gateway.feed), table
driven, without a socket: one device's chain split across gateways A and B."""

from __future__ import annotations

import pytest

from lightpost.core.hashing import keccak256
from lightpost.core.levels import Level
from lightpost.errors import DecodingError
from lightpost_gateway.anchor import accumulate
from lightpost_gateway.batch import InclusionProof, Leaf
from lightpost_gateway.feed import (
    MAX_FEED_MESSAGE,
    End,
    Notice,
    Relayed,
    Request,
    decode_feed,
    decode_request,
    encode_end,
    encode_notice,
    encode_relayed,
    encode_request,
)
from lightpost_gateway.merge import (
    Cursor,
    Head,
    Held,
    Judgement,
    completeness,
    deliverable,
    judge,
    usable,
    watch_check,
    watch_death,
    watch_record,
)
from lightpost_gateway.record import ZERO_HASH

A, B = b"\xaa" * 20, b"\xbb" * 20


def h(seq: int, fork: int = 0) -> bytes:
    return keccak256(b"%d/%d" % (seq, fork))


def rec(seq: int, gw: bytes = A, fork: int = 0, prev: bytes | None = None) -> Held:
    """The device's record at ``seq`` (``fork``: another record it signed at that seq)."""
    before = ZERO_HASH if seq == 0 else h(seq - 1)
    return Held(
        seq=seq, hash=h(seq, fork), prev=before if prev is None else prev, wire=b"", gateway=gw
    )


def pool(*records: Held) -> dict[int, Held]:
    return {r.seq: r for r in records}


def head(seq: int, block: int = 10, gw: bytes = A, fork: int = 0) -> Head:
    return Head(seq=seq, hash=h(seq, fork), block=block, gateway=gw)


AT = lambda n: Cursor(next_seq=n, prev=ZERO_HASH if n == 0 else h(n - 1))  # noqa: E731

JUDGE = [
    # name, cursor, delivered hash at seq, pool, record, verdict
    ("first record", AT(0), None, {}, rec(0), Judgement.HOLD),
    ("next after the cursor", AT(3), None, {}, rec(3), Judgement.HOLD),
    (
        "from the other gateway, filling a hole",
        AT(0),
        None,
        pool(rec(0), rec(2, B)),
        rec(1, B),
        Judgement.HOLD,
    ),
    (
        "above a hole (held by another gateway)",
        AT(0),
        None,
        pool(rec(0)),
        rec(5, B),
        Judgement.HOLD,
    ),
    ("same record from both gateways", AT(0), None, pool(rec(1, A)), rec(1, B), Judgement.REPLAY),
    ("already delivered, same record", AT(4), h(2), {}, rec(2), Judgement.REPLAY),
    ("already delivered, below what is kept", AT(4), None, {}, rec(2), Judgement.REPLAY),
    ("delivered seq, another record", AT(4), h(2), {}, rec(2, fork=1), Judgement.FORK),
    ("pooled seq, another record", AT(0), None, pool(rec(3)), rec(3, B, fork=1), Judgement.FORK),
    ("does not link to the cursor", AT(3), None, {}, rec(3, prev=h(2, 1)), Judgement.FORK),
    (
        "its successor does not link to it",
        AT(0),
        None,
        pool(rec(4)),
        rec(3, fork=1),
        Judgement.FORK,
    ),
    ("seq 0 with a non-zero prev", AT(0), None, {}, rec(0, prev=h(9)), Judgement.FORK),
]


@pytest.mark.parametrize(("name", "cursor", "delivered", "held", "record", "verdict"), JUDGE)
def test_judge(
    name: str,
    cursor: Cursor,
    delivered: bytes | None,
    held: dict[int, Held],
    record: Held,
    verdict: Judgement,
) -> None:
    assert judge(record, cursor=cursor, delivered_hash=delivered, pool=held) == verdict, name


DELIVER = [
    # name, level, cursor, pool, heads, delivered seqs, stop (kind, first, last) or None
    ("signed: the linked run", Level.SIGNED, AT(0),
     pool(rec(0), rec(1, B), rec(2)), [], [0, 1, 2], None),
    ("signed: stops at a hole", Level.SIGNED, AT(0), pool(rec(0), rec(2)), [], [0], None),
    ("included: nothing without a head", Level.INCLUDED, AT(0), pool(rec(0), rec(1)), [], [], None),
    ("included: up to the head, across gateways", Level.INCLUDED, AT(0),
     pool(rec(0), rec(1, B), rec(2), rec(3, B)), [head(2)], [0, 1, 2], None),
    ("included: the highest head in the run", Level.INCLUDED, AT(0),
     pool(rec(0), rec(1, B), rec(2), rec(3, B)), [head(1, gw=B), head(3, gw=B)], [0, 1, 2, 3],
     None),
    ("included: from the cursor", Level.INCLUDED, AT(2),
     pool(rec(2), rec(3)), [head(1), head(3)], [2, 3], None),
    ("missing: anchored above a record nobody relayed", Level.INCLUDED, AT(0),
     pool(rec(0), rec(2)), [head(0), head(2)], [0], ("missing", 1, 2)),
    ("missing: never skipped, even at signed", Level.SIGNED, AT(0),
     pool(rec(2)), [head(2)], [], ("missing", 0, 2)),
    ("fork: the anchored hash is another record", Level.INCLUDED, AT(0),
     pool(rec(0), rec(1)), [head(1, fork=1)], [], ("fork", 1, 1)),
    ("fork: a pooled record that does not link", Level.SIGNED, AT(0),
     pool(rec(0), rec(1, prev=h(0, 1))), [], [0], ("fork", 1, 1)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "level", "cursor", "held", "heads", "seqs", "stop"), DELIVER)
def test_deliverable(
    name: str,
    level: Level,
    cursor: Cursor,
    held: dict[int, Held],
    heads: list[Head],
    seqs: list[int],
    stop: tuple[str, int, int] | None,
) -> None:
    run, found = deliverable(cursor, held, heads, level=level)
    assert [r.seq for r in run] == seqs, name
    assert (None if found is None else (found.kind, found.first, found.last)) == stop, name


USABLE = [
    # level, final, complete, blocks of the usable heads
    (Level.INCLUDED, 0, 0, [5, 10, 15]),
    (Level.FINAL, 10, 0, [5, 10]),
    (Level.COMPLETE, 10, 5, [5]),
    (Level.COMPLETE, 10, 20, [5, 10]),
    (Level.COMPLETE, 10, -1, []),
]


@pytest.mark.parametrize(("level", "final", "complete", "blocks"), USABLE)
def test_usable(level: Level, final: int, complete: int, blocks: list[int]) -> None:
    heads = [head(i, block=b) for i, b in enumerate([5, 10, 15])]
    assert [x.block for x in usable(heads, level=level, final=final, complete=complete)] == blocks


LEAF = Leaf(device=A, first_seq=0, last_seq=3, head=h(3))
PROOF = InclusionProof(index=1, count=3, siblings=(h(7), h(8)))


@pytest.mark.parametrize(
    "message",
    [
        Notice(number=1, tx_hash=h(1), block=7, records=3),
        Relayed(number=2, device=A, wire=b"\xc0" * 100),
        Relayed(number=2, device=A, wire=b"x", leaf=LEAF, proof=PROOF),
        End(next_number=65, last=70),
    ],
)
def test_feed_round_trip(message: Notice | Relayed | End) -> None:
    encode = {Notice: encode_notice, Relayed: encode_relayed, End: encode_end}[type(message)]
    assert decode_feed(encode(message)) == message  # type: ignore[operator]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc0",
        encode_notice(Notice(number=1, tx_hash=h(1), block=7, records=3))[:-1],
        encode_end(End(next_number=1, last=1)) + b"\x00",
        b"\xc3\x09\x01\x01",  # unknown kind
        b"\x00" * (MAX_FEED_MESSAGE + 1),
    ],
)
def test_feed_decoder_is_strict(data: bytes) -> None:
    with pytest.raises(DecodingError):
        decode_feed(data)


def test_request_round_trip_and_reply_id_bound() -> None:
    r = Request(reply_id="office-1", first=3, count=64)
    assert decode_request(encode_request(r)) == r
    for bad in ("", "a/b", "#", "UPPER", "x" * 65):
        with pytest.raises(DecodingError):
            decode_request(encode_request(Request(reply_id=bad, first=1, count=1)))


def fold(*digests: bytes) -> int:
    acc = ZERO_HASH
    for d in digests:
        acc = accumulate(acc, d)
    return int.from_bytes(acc, "big")


D1, D2, D3 = keccak256(b"batch 1"), keccak256(b"batch 2"), keccak256(b"batch 3")

COMPLETENESS = [
    # name, proven anchorings (count -> digest), proven count, proven acc, digests taken, verdict
    ("nothing anchored", {}, 0, 0, set(), ("complete", ())),
    ("every batch taken", {1: D1, 2: D2}, 2, fold(D1, D2), {D1, D2}, ("complete", ())),
    (
        "a batch anchored twice after a crash: its contents once",
        {1: D1, 2: D1, 3: D2},
        3,
        fold(D1, D1, D2),
        {D1, D2},
        ("complete", ()),
    ),
    (
        "the second anchoring not proven yet",
        {1: D1, 3: D2},
        3,
        fold(D1, D1, D2),
        {D1, D2},
        ("unknown", (2,)),
    ),
    ("a batch anchored, not served", {1: D1, 2: D2}, 2, fold(D1, D2), {D1}, ("withheld", (2,))),
    (
        "a batch anchored twice, served by nobody",
        {1: D3, 2: D3},
        2,
        fold(D3, D3),
        set(),
        ("withheld", (1, 2)),
    ),
    ("an anchoring proven past the count", {1: D1, 2: D2}, 1, fold(D1), {D1}, ("complete", ())),
    ("reordered (a reorg moved them)", {1: D2, 2: D1}, 2, fold(D1, D2), {D1, D2}, ("mismatch", ())),
    ("substituted", {1: D1, 2: D3}, 2, fold(D1, D2), {D1, D2, D3}, ("mismatch", ())),
]


@pytest.mark.parametrize(
    ("anchorings", "count", "acc", "have", "want"),
    [c[1:] for c in COMPLETENESS],
    ids=[c[0] for c in COMPLETENESS],
)
def test_completeness(
    anchorings: dict[int, bytes],
    count: int,
    acc: int,
    have: set[bytes],
    want: tuple[str, tuple[int, ...]],
) -> None:
    got = completeness(anchorings, count=count, acc=acc, have=have)
    assert (got.kind, got.counts) == want


S = 1000  # ms
# Each step: at ms, ("birth", seq, cadence) | ("record", seq) | ("death", seq, prev) | ("check",);
# the reports the checks give, in order. Cadence 60 s: silent past 120 s without a record.
WATCH = [
    ("no birth yet: not watched", [(0, "record", 0), (500 * S, "check")], []),
    ("records within two cadences", [(0, "birth", 0, 60), (60 * S, "record", 1),
        (179 * S, "check")], []),
    ("silent past two cadences, once", [(0, "birth", 0, 60), (121 * S, "check"),
        (122 * S, "check"), (900 * S, "check")], ["silent"]),
    ("silent again after a record", [(0, "birth", 0, 60), (121 * S, "check"),
        (130 * S, "record", 1), (131 * S, "check"), (251 * S, "check")], ["silent", "silent"]),
    ("a replayed record keeps nobody alive", [(0, "birth", 0, 60), (100 * S, "record", 0),
        (121 * S, "check")], ["silent"]),
    ("the death of the latest birth: dead, once", [(0, "birth", 0, 60), (10 * S, "death", 0, 0),
        (11 * S, "check"), (500 * S, "check")], ["dead"]),
    ("a death of a later birth (withheld) counts", [(0, "birth", 0, 60),
        (10 * S, "death", 7, 9), (11 * S, "check")], ["dead"]),
    ("an older birth's death notice is ignored", [(0, "birth", 0, 60), (5 * S, "birth", 3, 60),
        (10 * S, "death", 0, 0), (11 * S, "check"), (130 * S, "check")], ["silent"]),
    ("a death naming another hash at the birth's seq is ignored", [(0, "birth", 0, 60),
        (10 * S, "death", 0, 5), (130 * S, "check")], ["silent"]),
    ("a record after the death notice: alive, then silent", [(0, "birth", 0, 60),
        (10 * S, "death", 0, 0), (11 * S, "check"), (20 * S, "record", 1), (21 * S, "check"),
        (141 * S, "check")], ["dead", "silent"]),
    ("silent, then dead", [(0, "birth", 0, 60), (121 * S, "check"), (200 * S, "death", 0, 0),
        (201 * S, "check")], ["silent", "dead"]),
]  # fmt: skip


@pytest.mark.parametrize("steps, want", [c[1:] for c in WATCH], ids=[c[0] for c in WATCH])
def test_watch(steps: list[tuple[object, ...]], want: list[str]) -> None:
    w = None
    got: list[str] = []
    for at, what, *args in steps:
        assert isinstance(at, int)
        if what == "birth":
            seq, cadence = args
            w = watch_record(w, seq=seq, hash=h(int(seq)), cadence_s=cadence, now_ms=at)
        elif what == "record":
            (seq,) = args
            w = watch_record(w, seq=seq, hash=h(int(seq)), cadence_s=None, now_ms=at)
        elif what == "death":
            seq, of = args
            w = watch_death(w, seq=seq, prev=h(int(of)), now_ms=at)
        elif w is not None:
            w, report = watch_check(w, now_ms=at)
            if report is not None:
                got.append(report.value)
    assert got == want
