"""The merging receiver's SQLite file (issue 14): cursors and delivered hashes per device, pooled
records, proven heads, the batches taken from each gateway and every anchoring of it proven on
chain (:mod:`lightpost_gateway.anchorings`)."""

from __future__ import annotations

from pathlib import Path

from lightpost.adapters.sqlite import Schema, connect, script

from .anchorings import Anchoring
from .merge import Cursor, Head, Held, Watch
from .record import Liveness

__all__ = ["ReceiverStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cursors (device BLOB PRIMARY KEY, next_seq INTEGER NOT NULL,
    prev BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS delivered (device BLOB NOT NULL, seq INTEGER NOT NULL,
    hash BLOB NOT NULL, PRIMARY KEY (device, seq));
CREATE TABLE IF NOT EXISTS pool (device BLOB NOT NULL, seq INTEGER NOT NULL, hash BLOB NOT NULL,
    prev BLOB NOT NULL, wire BLOB NOT NULL, gateway BLOB NOT NULL, PRIMARY KEY (device, seq));
CREATE TABLE IF NOT EXISTS heads (device BLOB NOT NULL, seq INTEGER NOT NULL, hash BLOB NOT NULL,
    block INTEGER NOT NULL, gateway BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS batches (gateway BLOB NOT NULL, number INTEGER NOT NULL,
    tx_hash BLOB NOT NULL, block INTEGER NOT NULL, digest BLOB NOT NULL,
    PRIMARY KEY (gateway, number));
CREATE TABLE IF NOT EXISTS gateways (gateway BLOB PRIMARY KEY, next_number INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS anchorings (gateway BLOB NOT NULL, count INTEGER NOT NULL,
    digest BLOB NOT NULL, block INTEGER NOT NULL, tx_hash BLOB NOT NULL,
    PRIMARY KEY (gateway, count));
CREATE TABLE IF NOT EXISTS unfinal (gateway BLOB NOT NULL, number INTEGER NOT NULL,
    block INTEGER NOT NULL, tx_hash BLOB NOT NULL, device BLOB NOT NULL, first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS watches (device BLOB PRIMARY KEY, cadence_s INTEGER NOT NULL,
    birth_seq INTEGER NOT NULL, birth_hash BLOB NOT NULL, last_seq INTEGER NOT NULL,
    seen_ms INTEGER NOT NULL, death_ms INTEGER, reported TEXT NOT NULL);
"""


SCHEMA = Schema(
    "gateway receiver state",
    0x4C504652,  # ASCII "LPFR"
    (script(_SCHEMA),),
    legacy_tables=frozenset(
        {
            "gateways",
            "batches",
            "heads",
            "cursors",
            "anchorings",
            "pool",
            "watches",
            "delivered",
            "unfinal",
        }
    ),
)
"""The gateway receiver state's kind for lightpost.adapters.sqlite (0600 file, WAL, FULL sync,
versioned); files of the first release, unversioned, are adopted."""


class ReceiverStore:
    """The receiver's cursors, pooled records, proven heads and batches (WAL, synchronous=FULL)."""

    def __init__(self, path: Path) -> None:
        self.db = connect(path, SCHEMA, name=f"gateway receiver state {path.name}")

    def close(self) -> None:
        self.db.close()

    def next_number(self, gateway: bytes) -> int:
        row = self.db.execute(
            "SELECT next_number FROM gateways WHERE gateway = ?", (gateway,)
        ).fetchone()
        return 1 if row is None else int(row[0])

    def cursor(self, device: bytes) -> Cursor:
        row = self.db.execute(
            "SELECT next_seq, prev FROM cursors WHERE device = ?", (device,)
        ).fetchone()
        return Cursor() if row is None else Cursor(next_seq=row[0], prev=bytes(row[1]))

    def pool(self, device: bytes) -> dict[int, Held]:
        rows = self.db.execute(
            "SELECT seq, hash, prev, wire, gateway FROM pool WHERE device = ?", (device,)
        ).fetchall()
        return {
            s: Held(seq=s, hash=bytes(h), prev=bytes(p), wire=bytes(w), gateway=bytes(g))
            for s, h, p, w, g in rows
        }

    def heads(self, device: bytes) -> list[Head]:
        rows = self.db.execute(
            "SELECT seq, hash, block, gateway FROM heads WHERE device = ?", (device,)
        ).fetchall()
        return [Head(seq=s, hash=bytes(h), block=b, gateway=bytes(g)) for s, h, b, g in rows]

    def delivered_hash(self, device: bytes, seq: int) -> bytes | None:
        row = self.db.execute(
            "SELECT hash FROM delivered WHERE device = ? AND seq = ?", (device, seq)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def anchorings(self, gateway: bytes, up_to_block: int) -> dict[int, Anchoring]:
        """The gateway's proven anchorings at or below ``up_to_block``, by batch count."""
        rows = self.db.execute(
            "SELECT count, digest, block, tx_hash FROM anchorings WHERE gateway = ? AND block <= ?",
            (gateway, up_to_block),
        ).fetchall()
        return {
            c: Anchoring(count=c, digest=bytes(d), block=b, tx_hash=bytes(t)) for c, d, b, t in rows
        }

    def put_anchoring(self, gateway: bytes, a: Anchoring) -> None:
        """One proven anchoring (the latest proof of a count wins: a reorg may have moved it)."""
        self.db.execute(
            "INSERT OR REPLACE INTO anchorings VALUES (?, ?, ?, ?, ?)",
            (gateway, a.count, a.digest, a.block, a.tx_hash),
        )

    def forget_anchorings(self, gateway: bytes, above_block: int) -> None:
        """Drop the gateway's anchorings above ``above_block`` (they are proven again)."""
        self.db.execute(
            "DELETE FROM anchorings WHERE gateway = ? AND block > ?", (gateway, above_block)
        )

    def taken(self, gateway: bytes) -> set[bytes]:
        """The digests of the gateway's batches whose contents were taken."""
        rows = self.db.execute("SELECT digest FROM batches WHERE gateway = ?", (gateway,))
        return {bytes(d) for (d,) in rows}

    def watches(self) -> dict[bytes, Watch]:
        """Each watched device's liveness state (lightpost_gateway.follow_live)."""
        rows = self.db.execute("SELECT * FROM watches").fetchall()
        return {
            bytes(d): Watch(
                cadence_s=c,
                birth_seq=bs,
                birth_hash=bytes(bh),
                last_seq=ls,
                seen_ms=sm,
                death_ms=dm,
                reported=Liveness(r),
            )
            for d, c, bs, bh, ls, sm, dm, r in rows
        }

    def put_watch(self, device: bytes, w: Watch) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO watches VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (device, w.cadence_s, w.birth_seq, w.birth_hash, w.last_seq, w.seen_ms, w.death_ms,
             w.reported.value),
        )  # fmt: skip

    def unfinal(self, up_to_block: int, limit: int) -> list[tuple[bytes, int, int, bytes]]:
        """(gateway, number, block, tx hash) of batches taken at ``included`` whose block is
        now at or below ``up_to_block`` (to check again once final), at most ``limit``."""
        rows = self.db.execute(
            "SELECT DISTINCT gateway, number, block, tx_hash FROM unfinal WHERE block <= ? "
            "ORDER BY block LIMIT ?",
            (up_to_block, limit),
        ).fetchall()
        return [(bytes(g), n, b, bytes(t)) for g, n, b, t in rows]

    def unfinal_devices(self, gateway: bytes, number: int) -> list[tuple[bytes, int, int]]:
        rows = self.db.execute(
            "SELECT device, first_seq, last_seq FROM unfinal WHERE gateway = ? AND number = ?",
            (gateway, number),
        ).fetchall()
        return [(bytes(d), f, last) for d, f, last in rows]

    def drop_unfinal(self, gateway: bytes, number: int) -> None:
        self.db.execute("DELETE FROM unfinal WHERE gateway = ? AND number = ?", (gateway, number))

    def devices(self) -> list[bytes]:
        return [bytes(d) for (d,) in self.db.execute("SELECT DISTINCT device FROM pool")]

    def advance(self, device: bytes, held: Held) -> None:
        """Commit one delivery: the cursor moves past ``held``, which leaves the pool."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(
            "INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)", (device, held.seq + 1, held.hash)
        )
        self.db.execute(
            "INSERT OR REPLACE INTO delivered VALUES (?, ?, ?)", (device, held.seq, held.hash)
        )
        self.db.execute("DELETE FROM pool WHERE device = ? AND seq = ?", (device, held.seq))
        self.db.execute("COMMIT")
