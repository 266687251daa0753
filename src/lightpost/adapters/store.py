"""The durable outbox store (stdlib ``sqlite3``).

"Accepted" means "on disk": every state-changing method commits (WAL, ``synchronous=FULL``, ``BEGIN
IMMEDIATE``) before it returns, so :meth:`Store.record_signed` lands whole or not at all; every
change passes :func:`lightpost.core.outbox.next_state` first. Schema steps: :data:`MIGRATIONS`.
docs/protocol.md, "Local state".
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightpost.adapters import sqlite
from lightpost.adapters.sqlite import BUSY_TIMEOUT_S, translate
from lightpost.core.fees import FeeQuote
from lightpost.core.outbox import (
    PENDING_TX_STATES,
    BlockRef,
    Broadcast,
    Candidate,
    Event,
    Finalized,
    Held,
    Included,
    Message,
    NonceConsumed,
    Released,
    ReorgedOut,
    Replaced,
    Sighting,
    Signed,
    State,
    Transaction,
    next_state,
)
from lightpost.errors import StoreError

__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT_S",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "NonceInputs",
    "RowNotFound",
    "Store",
    "migrate",
]

APPLICATION_ID = 0x4C504F53
"""``PRAGMA application_id`` of a lightpost store: ASCII "LPOS" (sqlite.org/fileformat2)."""

META_NEXT_NONCE = "next_nonce"
"""meta key: the durable next nonce (see lightpost.core.nonce)."""

META_FINAL_NEXT = "final_next_nonce"
"""meta key: one past the highest nonce seen FINAL; survives prune_final."""

META_SEQ_PREFIX = "seq:"
"""meta key prefix: next message seq per channel."""

SQLITE_MAX_INT = 2**63 - 1
"""Largest SQLite INTEGER (sqlite.org/datatype3): nonces, seqs and heights must fit."""

_NO_BLOCK = BlockRef(hash=bytes(32), number=0)
# Payload for ReorgedOut/Finalized built for a tx that has no inclusion block: such a tx
# is not INCLUDED, so the transition table refuses the event -- in its one place.


# --- schema ---

_SCHEMA_V1 = (
    """CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE transactions (
        id                       INTEGER PRIMARY KEY,
        nonce                    INTEGER NOT NULL UNIQUE,
        raw                      BLOB NOT NULL,
        hash                     BLOB NOT NULL,
        state                    TEXT NOT NULL,
        max_fee_per_gas          TEXT NOT NULL,  -- decimal wei: may exceed int64
        max_priority_fee_per_gas TEXT NOT NULL,
        gas_limit                INTEGER NOT NULL,
        signed_at                REAL NOT NULL,
        broadcast_at             REAL,
        block_hash               BLOB,
        block_number             INTEGER,
        mined_hash               BLOB,
        final_at                 REAL
    )""",
    "CREATE INDEX transactions_state ON transactions(state, nonce)",
    """CREATE TABLE tx_candidates (
        hash                     BLOB PRIMARY KEY,
        tx_id                    INTEGER NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
        version                  INTEGER NOT NULL,
        raw                      BLOB NOT NULL,
        max_fee_per_gas          TEXT NOT NULL,
        max_priority_fee_per_gas TEXT NOT NULL,
        gas_limit                INTEGER NOT NULL,
        signed_at                REAL NOT NULL,
        UNIQUE (tx_id, version)
    )""",
    """CREATE TABLE messages (
        id           INTEGER PRIMARY KEY,
        channel      TEXT NOT NULL,
        recipient    BLOB NOT NULL,
        seq          INTEGER NOT NULL,
        payload      BLOB NOT NULL,
        content_type TEXT NOT NULL,
        created_at   REAL NOT NULL,
        state        TEXT NOT NULL,
        tx_id        INTEGER REFERENCES transactions(id),
        hold_reason  TEXT,
        UNIQUE (channel, seq)
    )""",
    "CREATE INDEX messages_state ON messages(state, id)",
    "CREATE INDEX messages_tx ON messages(tx_id)",
    """CREATE TABLE accumulators (
        sender     BLOB NOT NULL,
        channel    TEXT NOT NULL,
        acc        BLOB NOT NULL,
        count      INTEGER NOT NULL,
        last_seq   INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (sender, channel)
    ) WITHOUT ROWID""",
    """CREATE TABLE seen_commands (
        sender     BLOB NOT NULL,
        command_id BLOB NOT NULL,
        seq        INTEGER NOT NULL,
        seen_at    REAL NOT NULL,
        PRIMARY KEY (sender, command_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX seen_commands_seq ON seen_commands(sender, seq)",
)


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1:
        conn.execute(statement)


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    # Drop the never-written v1 receiver and command tables (they have their own files).
    for table in ("seen_commands", "accumulators"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_migrate_0_to_1, _migrate_1_to_2)
"""``MIGRATIONS[i]`` upgrades schema version i to i + 1 (never edit a released step)."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this code writes (``PRAGMA user_version``)."""

SCHEMA = sqlite.Schema("store", APPLICATION_ID, MIGRATIONS)
"""The outbox store's kind, for the shared bootstrap."""


def migrate(conn: sqlite3.Connection, name: str = "store") -> int:
    """Bring the schema up to :data:`SCHEMA_VERSION`; return the version found."""
    return sqlite.migrate(conn, SCHEMA, name)


# --- value records ---


@dataclass(frozen=True, slots=True, kw_only=True)
class NonceInputs:
    """The local half of ``lightpost.core.nonce.decide``'s inputs, read atomically."""

    local_next: int
    in_flight: tuple[int, ...]
    included: tuple[int, ...]
    final_next: int


_TX_COLUMNS = (
    "id, nonce, raw, hash, state, max_fee_per_gas, max_priority_fee_per_gas, gas_limit, "
    "signed_at, broadcast_at, block_hash, block_number, mined_hash, final_at"
)
_MSG_COLUMNS = (
    "id, channel, recipient, seq, payload, content_type, created_at, state, tx_id, hold_reason"
)


def _fees(row: Sequence[Any]) -> FeeQuote:
    return FeeQuote(
        max_fee_per_gas=int(row[0]), max_priority_fee_per_gas=int(row[1]), gas_limit=row[2]
    )


def _message(row: Sequence[Any]) -> Message:
    return Message(
        id=row[0],
        channel=row[1],
        recipient=bytes(row[2]),
        seq=row[3],
        payload=bytes(row[4]),
        content_type=row[5],
        created_at=row[6],
        state=State(row[7]),
        tx_id=row[8],
        hold_reason=row[9],
    )


def _block(row: Sequence[Any]) -> BlockRef:
    return _NO_BLOCK if row[0] is None else BlockRef(hash=bytes(row[0]), number=row[1])


def _check_seq_int(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SQLITE_MAX_INT:
        raise StoreError(f"{what} must be an int in 0..{SQLITE_MAX_INT}, got {value!r}")


# --- the store ---


class RowNotFound(StoreError):
    """No message/transaction with that id (never stored, or pruned after FINAL)."""


class Store:
    """The durable outbox of one device; one :class:`Store` per thread."""

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        """Use :meth:`open`."""
        self._conn: sqlite3.Connection | None = conn
        self._name = name

    def __repr__(self) -> str:
        return f"Store({self._name!r}, open={self._conn is not None})"

    # -- life cycle ---

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, timeout: float = BUSY_TIMEOUT_S) -> Store:
        """Open (creating if needed) the store at ``path``; its directory must exist."""
        target = Path(path)
        name = f"store {target.name!r}"
        conn = sqlite.connect(target, SCHEMA, name=name, timeout=timeout)
        return cls(conn, name)

    def close(self) -> None:
        """Close the connection (idempotent). Everything was committed already."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """``PRAGMA user_version`` of the open file."""
        with self._tx("reading the schema version", write=False) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _tx(self, action: str, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        # One explicit transaction; commits (and fsyncs) before the caller continues.
        conn = self._conn
        if conn is None:
            raise StoreError(f"{self._name} is closed (while {action})")
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as exc:
            raise translate(exc, action, self._name) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise translate(exc, action, self._name) from exc
            raise

    # -- meta ---

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """A meta value (receive cursors, counters), or ``default``."""
        with self._tx(f"reading meta {key!r}", write=False) as conn:
            return self._meta(conn, key, default)

    def set_meta(self, key: str, value: str) -> None:
        """Durably set a meta value."""
        with self._tx(f"writing meta {key!r}") as conn:
            self._put_meta(conn, key, value)

    def bump_counter(self, key: str) -> int:
        """Atomically add one to meta ``key`` (0 if unset) and return it, durably: never handed
        out twice.
        """
        with self._tx(f"bumping counter {key!r}") as conn:
            value = int(self._meta(conn, key, "0") or "0") + 1
            self._put_meta(conn, key, str(value))
            return value

    @staticmethod
    def _meta(conn: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    @staticmethod
    def _put_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _meta_int(self, conn: sqlite3.Connection, key: str) -> int:
        return int(self._meta(conn, key, "0") or "0")

    # -- nonce ---

    def next_nonce(self) -> int:
        """The durable next nonce (0 for a new store)."""
        with self._tx("reading the next nonce", write=False) as conn:
            return self._meta_int(conn, META_NEXT_NONCE)

    def set_next_nonce(self, nonce: int) -> None:
        """Raise the durable next nonce; never lowered (a nonce handed out may be signed)."""
        _check_seq_int(nonce, "nonce")
        with self._tx("writing the next nonce") as conn:
            current = self._meta_int(conn, META_NEXT_NONCE)
            if nonce < current:
                raise StoreError(f"refusing to lower the next nonce from {current} to {nonce}")
            self._put_meta(conn, META_NEXT_NONCE, str(nonce))

    def nonce_inputs(self) -> NonceInputs:
        """Local counter, in-flight and mined nonces, final floor -- in one read."""
        with self._tx("reading nonce state", write=False) as conn:
            rows = conn.execute("SELECT nonce, state FROM transactions ORDER BY nonce").fetchall()
            mined = {State.INCLUDED.value, State.FINAL.value}
            return NonceInputs(
                local_next=self._meta_int(conn, META_NEXT_NONCE),
                in_flight=tuple(n for n, s in rows if s not in mined),
                included=tuple(n for n, s in rows if s in mined),
                final_next=self._meta_int(conn, META_FINAL_NEXT),
            )

    # -- messages ---

    def next_seq(self, channel: str) -> int:
        """Allocate the next message seq of ``channel`` (atomic, durable increment)."""
        with self._tx(f"allocating a seq on {channel!r}") as conn:
            return self._next_seq(conn, channel)

    def _next_seq(self, conn: sqlite3.Connection, channel: str) -> int:
        key = META_SEQ_PREFIX + channel
        seq = self._meta_int(conn, key)
        self._put_meta(conn, key, str(seq + 1))
        return seq

    def enqueue(
        self,
        *,
        channel: str,
        recipient: bytes,
        payload: bytes,
        content_type: str,
        created_at: float,
        seq: int | None = None,
    ) -> int:
        """Accept a message (QUEUED), durable before the id returns; ``seq`` None: the channel's
        next, else it must be unused."""
        if not isinstance(payload, bytes) or not isinstance(recipient, bytes):
            raise StoreError("enqueue: payload and recipient must be bytes")
        with self._tx(f"enqueueing a message on {channel!r}") as conn:
            if seq is None:
                seq = self._next_seq(conn, channel)
            _check_seq_int(seq, "seq")
            cur = conn.execute(
                "INSERT INTO messages (channel, recipient, seq, payload, content_type, "
                "created_at, state) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (channel, recipient, seq, payload, content_type, created_at, State.QUEUED.value),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def message(self, message_id: int) -> Message:
        """One message by id (StoreError if unknown)."""
        with self._tx("reading a message", write=False) as conn:
            row = self._one(conn, "messages", _MSG_COLUMNS, message_id)
        return _message(row)

    def queued_messages(self, limit: int) -> list[Message]:
        """Up to ``limit`` QUEUED messages, oldest first (the batcher's input)."""
        return self._messages_in(State.QUEUED, limit)

    def held_messages(self, limit: int) -> list[Message]:
        """Up to ``limit`` HELD messages, oldest first."""
        return self._messages_in(State.HELD, limit)

    def _messages_in(self, state: State, limit: int) -> list[Message]:
        with self._tx(f"listing {state.value} messages", write=False) as conn:
            rows = conn.execute(
                f"SELECT {_MSG_COLUMNS} FROM messages WHERE state = ? ORDER BY id LIMIT ?",
                (state.value, limit),
            ).fetchall()
        return [_message(r) for r in rows]

    def hold(self, message_ids: Iterable[int], reason: str) -> None:
        """Fee cap refused: QUEUED (or HELD) -> HELD with ``reason``."""
        event = Held(reason=reason)
        with self._tx("holding messages") as conn:
            for mid in message_ids:
                self._message_event(conn, mid, event, hold_reason=reason)

    def release(self, message_ids: Iterable[int]) -> None:
        """Fees fell: HELD -> QUEUED."""
        with self._tx("releasing messages") as conn:
            for mid in message_ids:
                self._message_event(conn, mid, Released(), hold_reason=None)

    def _message_event(
        self, conn: sqlite3.Connection, mid: int, event: Event, *, hold_reason: str | None
    ) -> None:
        row = self._one(conn, "messages", "state", mid)
        new = next_state(State(row[0]), event)
        conn.execute(
            "UPDATE messages SET state = ?, hold_reason = ? WHERE id = ?",
            (new.value, hold_reason, mid),
        )

    def counts_by_state(self) -> dict[State, int]:
        """Number of messages in each state (every state present, zeros included)."""
        with self._tx("counting messages", write=False) as conn:
            rows = conn.execute("SELECT state, count(*) FROM messages GROUP BY state").fetchall()
        counts = dict.fromkeys(State, 0)
        counts.update({State(s): n for s, n in rows})
        return counts

    # -- transactions ---

    def record_signed(
        self,
        *,
        nonce: int,
        raw: bytes,
        tx_hash: bytes,
        fees: FeeQuote,
        message_ids: Sequence[int],
        signed_at: float,
    ) -> int:
        """Store a signed tx BEFORE broadcast, in one transaction: tx, first candidate, links (->
        SIGNED), next nonce past ``nonce``; returns the tx id."""
        event = Signed(nonce=nonce, tx_hash=tx_hash, raw=raw, fees=fees)
        _check_seq_int(nonce, "nonce")
        if len(set(message_ids)) != len(message_ids):
            raise StoreError("record_signed: duplicate message ids")
        with self._tx(f"recording signed tx at nonce {nonce}") as conn:
            cur = conn.execute(
                f"INSERT INTO transactions ({_TX_COLUMNS}) VALUES "
                "(NULL, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL)",
                (
                    nonce,
                    raw,
                    tx_hash,
                    State.SIGNED.value,
                    str(fees.max_fee_per_gas),
                    str(fees.max_priority_fee_per_gas),
                    fees.gas_limit,
                    signed_at,
                ),
            )
            tx_id = cur.lastrowid
            assert tx_id is not None
            self._add_candidate(conn, tx_id, 0, tx_hash, raw, fees, signed_at)
            for mid in message_ids:
                row = self._one(conn, "messages", "state", mid)
                new = next_state(State(row[0]), event)
                conn.execute(
                    "UPDATE messages SET state = ?, tx_id = ? WHERE id = ?",
                    (new.value, tx_id, mid),
                )
            if self._meta_int(conn, META_NEXT_NONCE) <= nonce:
                self._put_meta(conn, META_NEXT_NONCE, str(nonce + 1))
            return tx_id

    @staticmethod
    def _add_candidate(
        conn: sqlite3.Connection,
        tx_id: int,
        version: int,
        tx_hash: bytes,
        raw: bytes,
        fees: FeeQuote,
        signed_at: float,
    ) -> None:
        conn.execute(
            "INSERT INTO tx_candidates (hash, tx_id, version, raw, max_fee_per_gas, "
            "max_priority_fee_per_gas, gas_limit, signed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                tx_hash,
                tx_id,
                version,
                raw,
                str(fees.max_fee_per_gas),
                str(fees.max_priority_fee_per_gas),
                fees.gas_limit,
                signed_at,
            ),
        )

    def _one(
        self, conn: sqlite3.Connection, table: str, columns: str, row_id: int
    ) -> Sequence[Any]:
        # One row of ``messages``/``transactions`` by id, or StoreError naming it.
        row = conn.execute(f"SELECT {columns} FROM {table} WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            raise RowNotFound(f"no {table[:-1]} {row_id} in {self._name}")
        return tuple(row)

    def _tx_event(self, conn: sqlite3.Connection, tx_id: int, event: Event) -> tuple[State, int]:
        # Move the tx AND its messages by ``event`` (table-checked); returns (new state, nonce).
        row = self._one(conn, "transactions", "state, nonce", tx_id)
        old = State(row[0])
        new = next_state(old, event)
        stray = conn.execute(
            "SELECT count(*) FROM messages WHERE tx_id = ? AND state != ?", (tx_id, old.value)
        ).fetchone()[0]
        if stray:
            raise StoreError(f"{self._name} is inconsistent: tx {tx_id} messages not {old.value}")
        conn.execute("UPDATE transactions SET state = ? WHERE id = ?", (new.value, tx_id))
        conn.execute("UPDATE messages SET state = ? WHERE tx_id = ?", (new.value, tx_id))
        return new, int(row[1])

    def _candidate_hashes(self, conn: sqlite3.Connection, tx_id: int) -> set[bytes]:
        rows = conn.execute("SELECT hash FROM tx_candidates WHERE tx_id = ?", (tx_id,))
        return {bytes(r[0]) for r in rows}

    def mark_broadcast(self, tx_id: int, *, at: float) -> None:
        """Accepted or "already known" (-> BROADCAST; again: updates ``broadcast_at``)."""
        with self._tx(f"marking tx {tx_id} broadcast") as conn:
            row = self._one(conn, "transactions", "hash", tx_id)
            self._tx_event(conn, tx_id, Broadcast(tx_hash=bytes(row[0])))
            conn.execute("UPDATE transactions SET broadcast_at = ? WHERE id = ?", (at, tx_id))

    def mark_included(
        self, tx_id: int, block_hash: bytes, block_number: int, *, tx_hash: bytes | None = None
    ) -> None:
        """Candidate ``tx_hash`` (default: current) has a receipt in that block (-> INCLUDED)."""
        _check_seq_int(block_number, "block number")
        with self._tx(f"marking tx {tx_id} included") as conn:
            row = self._one(conn, "transactions", "hash", tx_id)
            mined = bytes(row[0]) if tx_hash is None else tx_hash
            sighting = Sighting(tx_hash=mined, block=BlockRef(hash=block_hash, number=block_number))
            if mined not in self._candidate_hashes(conn, tx_id):
                raise StoreError(f"tx {tx_id}: 0x{mined.hex()} is not one of its candidates")
            self._tx_event(conn, tx_id, Included(sighting=sighting))
            conn.execute(
                "UPDATE transactions SET block_hash = ?, block_number = ?, mined_hash = ? "
                "WHERE id = ?",
                (block_hash, block_number, mined, tx_id),
            )

    def mark_final(self, tx_id: int, *, at: float) -> None:
        """The inclusion block is canonical and finalized (INCLUDED -> FINAL)."""
        with self._tx(f"marking tx {tx_id} final") as conn:
            row = self._one(conn, "transactions", "block_hash, block_number", tx_id)
            _, nonce = self._tx_event(conn, tx_id, Finalized(block=_block(row)))
            conn.execute("UPDATE transactions SET final_at = ? WHERE id = ?", (at, tx_id))
            if self._meta_int(conn, META_FINAL_NEXT) <= nonce:
                self._put_meta(conn, META_FINAL_NEXT, str(nonce + 1))

    def reorged(self, tx_id: int) -> None:
        """The inclusion block left the canonical chain (-> SIGNED, block fields cleared)."""
        with self._tx(f"marking tx {tx_id} reorged out") as conn:
            row = self._one(conn, "transactions", "block_hash, block_number", tx_id)
            self._tx_event(conn, tx_id, ReorgedOut(block=_block(row)))
            conn.execute(
                "UPDATE transactions SET block_hash = NULL, block_number = NULL, "
                "mined_hash = NULL WHERE id = ?",
                (tx_id,),
            )

    def replace(
        self, tx_id: int, *, raw: bytes, tx_hash: bytes, fees: FeeQuote, signed_at: float
    ) -> None:
        """A fee bump: store a new raw version, SAME nonce, before sending (-> SIGNED)."""
        with self._tx(f"replacing tx {tx_id}") as conn:
            self._tx_event(conn, tx_id, Replaced(tx_hash=tx_hash, raw=raw, fees=fees))
            version = conn.execute(
                "SELECT max(version) FROM tx_candidates WHERE tx_id = ?", (tx_id,)
            ).fetchone()[0]
            self._add_candidate(conn, tx_id, int(version) + 1, tx_hash, raw, fees, signed_at)
            conn.execute(
                "UPDATE transactions SET raw = ?, hash = ?, max_fee_per_gas = ?, "
                "max_priority_fee_per_gas = ?, gas_limit = ?, signed_at = ? WHERE id = ?",
                (
                    raw,
                    tx_hash,
                    str(fees.max_fee_per_gas),
                    str(fees.max_priority_fee_per_gas),
                    fees.gas_limit,
                    signed_at,
                    tx_id,
                ),
            )

    def nonce_consumed(self, tx_id: int) -> tuple[int, ...]:
        """Nonce mined (at finality) by none of ours: re-queue the messages, drop the tx and
        candidates; returns the re-queued ids."""
        with self._tx(f"re-queueing the messages of tx {tx_id}") as conn:
            row = self._one(conn, "transactions", "nonce", tx_id)
            self._tx_event(conn, tx_id, NonceConsumed(nonce=row[0]))
            ids = tuple(
                r[0]
                for r in conn.execute(
                    "SELECT id FROM messages WHERE tx_id = ? ORDER BY id", (tx_id,)
                )
            )
            conn.execute("UPDATE messages SET tx_id = NULL WHERE tx_id = ?", (tx_id,))
            conn.execute("DELETE FROM transactions WHERE id = ?", (tx_id,))
            return ids

    def apply(self, tx_id: int, event: Event, *, at: float) -> None:
        """Dispatch an outbox event (e.g. from ``check_inclusion``) to the method above."""
        match event:
            case Broadcast():
                self.mark_broadcast(tx_id, at=at)
            case Included(sighting=s):
                self.mark_included(tx_id, s.block.hash, s.block.number, tx_hash=s.tx_hash)
            case ReorgedOut():
                self.reorged(tx_id)
            case Finalized():
                self.mark_final(tx_id, at=at)
            case Replaced(tx_hash=h, raw=raw, fees=fees):
                self.replace(tx_id, raw=raw, tx_hash=h, fees=fees, signed_at=at)
            case NonceConsumed():
                self.nonce_consumed(tx_id)
            case _:
                raise StoreError(f"{type(event).__name__} is not a transaction event")

    # -- reading transactions ---

    def _load_tx(self, conn: sqlite3.Connection, row: Sequence[Any]) -> Transaction:
        tx_id = row[0]
        candidates = tuple(
            Candidate(tx_hash=bytes(c[0]), raw=bytes(c[1]), fees=_fees(c[2:5]), signed_at=c[5])
            for c in conn.execute(
                "SELECT hash, raw, max_fee_per_gas, max_priority_fee_per_gas, gas_limit, "
                "signed_at FROM tx_candidates WHERE tx_id = ? ORDER BY version",
                (tx_id,),
            )
        )
        message_ids = tuple(
            r[0]
            for r in conn.execute("SELECT id FROM messages WHERE tx_id = ? ORDER BY id", (tx_id,))
        )
        return Transaction(
            id=tx_id,
            nonce=row[1],
            raw=bytes(row[2]),
            tx_hash=bytes(row[3]),
            state=State(row[4]),
            fees=_fees(row[5:8]),
            signed_at=row[8],
            broadcast_at=row[9],
            included=None if row[10] is None else BlockRef(hash=bytes(row[10]), number=row[11]),
            mined_hash=None if row[12] is None else bytes(row[12]),
            final_at=row[13],
            message_ids=message_ids,
            candidates=candidates,
        )

    def transaction(self, tx_id: int) -> Transaction:
        """One transaction with its candidates and message ids (StoreError if unknown)."""
        with self._tx("reading a transaction", write=False) as conn:
            row = self._one(conn, "transactions", _TX_COLUMNS, tx_id)
            return self._load_tx(conn, row)

    def find_by_hash(self, tx_hash: bytes) -> Transaction | None:
        """The transaction that has ``tx_hash`` among its candidates, if any."""
        with self._tx("looking up a tx hash", write=False) as conn:
            row = conn.execute(
                f"SELECT {_TX_COLUMNS} FROM transactions WHERE id = "
                "(SELECT tx_id FROM tx_candidates WHERE hash = ?)",
                (tx_hash,),
            ).fetchone()
            return None if row is None else self._load_tx(conn, row)

    def pending_transactions(self) -> list[Transaction]:
        """Every SIGNED, BROADCAST or INCLUDED transaction, by nonce."""
        states = tuple(s.value for s in PENDING_TX_STATES)
        with self._tx("listing pending transactions", write=False) as conn:
            rows = conn.execute(
                f"SELECT {_TX_COLUMNS} FROM transactions WHERE state IN (?, ?, ?) ORDER BY nonce",
                states,
            ).fetchall()
            return [self._load_tx(conn, r) for r in rows]

    def prune_final(self, older_than_ts: float) -> int:
        """Delete FINAL transactions (and messages) final before ``older_than_ts``; returns the
        count."""
        with self._tx("pruning final rows") as conn:
            final = State.FINAL.value
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM transactions WHERE state = ? AND final_at < ?",
                    (final, older_than_ts),
                )
            ]
            for tx_id in ids:
                conn.execute("DELETE FROM messages WHERE tx_id = ?", (tx_id,))
                conn.execute("DELETE FROM transactions WHERE id = ?", (tx_id,))
            return len(ids)
