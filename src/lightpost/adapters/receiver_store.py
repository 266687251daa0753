"""The receiver's durable state: cursors, per-stream seq/accumulator, unfinal deliveries (pruned
once final; kept to retract a reorged delivery). O(streams), never O(chain); WAL +
``synchronous=FULL``. docs/protocol.md, "Local state"."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lightpost.adapters.sqlite import Schema, connect, private_dir, translate
from lightpost.errors import StoreError

__all__ = ["RECEIVER_DB", "ReceiverStore", "StreamRow", "UnfinalRow"]

RECEIVER_DB = "receiver.sqlite3"
"""File name of the receiver state inside the device's data_dir."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS recv_cursor (
        sub        TEXT PRIMARY KEY,
        next_block INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS recv_stream (
        sub      TEXT NOT NULL,
        sender   BLOB NOT NULL,
        channel  BLOB NOT NULL,
        next_seq INTEGER,
        acc      BLOB NOT NULL,
        count    INTEGER NOT NULL,
        proven_at INTEGER,
        PRIMARY KEY (sub, sender, channel)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS recv_unfinal (
        sub          TEXT NOT NULL,
        block_number INTEGER NOT NULL,
        block_hash   BLOB NOT NULL,
        sender       BLOB NOT NULL,
        channel      BLOB NOT NULL,
        seq          INTEGER NOT NULL,
        tx_hash      BLOB NOT NULL,
        PRIMARY KEY (sub, sender, channel, seq)
    ) WITHOUT ROWID""",
)


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        conn.execute(statement)


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE recv_stream ADD COLUMN last_block INTEGER")


SCHEMA = Schema(
    "receiver state",
    0x4C505243,  # ASCII "LPRC"
    (_migrate_0_to_1, _migrate_1_to_2),
    legacy_tables=frozenset({"recv_cursor", "recv_stream", "recv_unfinal"}),
)
"""The receiver state's kind: application id, migrations, unversioned tables adopted."""


@dataclass(frozen=True, slots=True)
class StreamRow:
    """Persisted state of one (sender, channel) stream of a subscription."""

    sender: bytes
    channel: bytes
    next_seq: int | None
    acc: bytes
    count: int
    proven_at: int | None = None
    """Finalized height at which (acc, count) was last proven complete (None: never)."""
    last_block: int | None = None
    """Highest block a message of the stream was sequenced from (a seq again above it: the
    sender restarted its sequence)."""


@dataclass(frozen=True, slots=True)
class UnfinalRow:
    """A message delivered from a block above the finalized height."""

    block_number: int
    block_hash: bytes
    sender: bytes
    channel: bytes
    seq: int
    tx_hash: bytes


class ReceiverStore:
    """Receiver state in ``<data_dir>/receiver.sqlite3``. One per thread."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        """Use :meth:`open`."""
        self._conn: sqlite3.Connection | None = conn
        self.path = path

    def __repr__(self) -> str:
        return f"ReceiverStore({self.path.name!r})"

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str]) -> ReceiverStore:
        """Open (creating the directory and file if needed) the receiver state."""
        directory = Path(data_dir)
        try:
            private_dir(directory)
        except OSError as exc:
            raise StoreError(f"cannot create {directory}: {exc.strerror}") from None
        path = directory / RECEIVER_DB
        return cls(connect(path, SCHEMA, name="receiver state"), path)

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close (idempotent)."""
        if self._conn is None:
            return
        # Another reader may hold the WAL; it is then checkpointed later.
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._conn.close()
        self._conn = None

    def checkpoint(self) -> None:
        """Fold the WAL into the database file (keeps the data dir size constant)."""
        with self._guard("checkpointing") as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def _guard(self, action: str) -> Iterator[sqlite3.Connection]:
        if self._conn is None:
            raise StoreError(f"receiver state is closed (while {action})")
        try:
            yield self._conn
        except sqlite3.Error as exc:
            raise translate(exc, action, "receiver state") from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several writes into one durable commit."""
        with self._guard("committing") as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # -- cursor ---

    def cursor(self, sub: str) -> int | None:
        """The next block to scan for subscription ``sub`` (None: never ran)."""
        with self._guard("reading the cursor") as conn:
            row = conn.execute(
                "SELECT next_block FROM recv_cursor WHERE sub = ?", (sub,)
            ).fetchone()
        return None if row is None else int(row[0])

    def set_cursor(self, sub: str, next_block: int) -> None:
        """Persist the next block to scan."""
        with self._guard("writing the cursor") as conn:
            conn.execute(
                "INSERT INTO recv_cursor (sub, next_block) VALUES (?, ?) "
                "ON CONFLICT (sub) DO UPDATE SET next_block = excluded.next_block",
                (sub, next_block),
            )

    # -- streams ---

    def streams(self, sub: str) -> list[StreamRow]:
        """Every stream of a subscription."""
        with self._guard("reading streams") as conn:
            rows = conn.execute(
                "SELECT sender, channel, next_seq, acc, count, proven_at, last_block "
                "FROM recv_stream WHERE sub = ?",
                (sub,),
            ).fetchall()
        return [
            StreamRow(bytes(r[0]), bytes(r[1]), r[2], bytes(r[3]), r[4], r[5], r[6]) for r in rows
        ]

    def save_stream(self, sub: str, row: StreamRow) -> None:
        """Insert or update one stream's state."""
        with self._guard("writing a stream") as conn:
            conn.execute(
                "INSERT INTO recv_stream "
                "(sub, sender, channel, next_seq, acc, count, proven_at, last_block) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sub, sender, channel) DO UPDATE SET "
                "next_seq = excluded.next_seq, acc = excluded.acc, count = excluded.count, "
                "proven_at = excluded.proven_at, last_block = excluded.last_block",
                (
                    sub,
                    row.sender,
                    row.channel,
                    row.next_seq,
                    row.acc,
                    row.count,
                    row.proven_at,
                    row.last_block,
                ),
            )

    # -- unfinal deliveries ---

    def add_unfinal(self, sub: str, row: UnfinalRow) -> None:
        """Remember a delivery above the finalized height (for retraction)."""
        with self._guard("writing an unfinal delivery") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO recv_unfinal (sub, block_number, block_hash, sender, "
                "channel, seq, tx_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    sub,
                    row.block_number,
                    row.block_hash,
                    row.sender,
                    row.channel,
                    row.seq,
                    row.tx_hash,
                ),
            )

    def unfinal(self, sub: str) -> list[UnfinalRow]:
        """Deliveries not yet final, oldest block first."""
        with self._guard("reading unfinal deliveries") as conn:
            rows = conn.execute(
                "SELECT block_number, block_hash, sender, channel, seq, tx_hash FROM "
                "recv_unfinal WHERE sub = ? ORDER BY block_number, seq",
                (sub,),
            ).fetchall()
        return [
            UnfinalRow(r[0], bytes(r[1]), bytes(r[2]), bytes(r[3]), r[4], bytes(r[5])) for r in rows
        ]

    def drop_unfinal(
        self, sub: str, *, up_to_block: int | None = None, from_block: int | None = None
    ) -> None:
        """Forget deliveries up to ``up_to_block`` (final) or from ``from_block`` (retracted)."""
        with self._guard("pruning unfinal deliveries") as conn:
            if up_to_block is not None:
                conn.execute(
                    "DELETE FROM recv_unfinal WHERE sub = ? AND block_number <= ?",
                    (sub, up_to_block),
                )
            if from_block is not None:
                conn.execute(
                    "DELETE FROM recv_unfinal WHERE sub = ? AND block_number >= ?",
                    (sub, from_block),
                )
