"""The command agent's durable state (seen seqs, installed software, audit log) in
``<state_dir>/agent.sqlite3``; every write is one transaction, committed before the agent acts."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from lightpost.adapters.sqlite import Schema, connect, script, translate
from lightpost_agent.command import UpdateManifest, Version, format_version, parse_version

__all__ = [
    "SCHEMA",
    "STATE_FILE",
    "AgentStore",
    "AuditEntry",
    "InstalledSoftware",
    "read_audit",
]

STATE_FILE = "agent.sqlite3"
"""The agent's durable state inside its state dir."""

SEQ_BYTES = 8
"""command_seq (u64) as 8 big-endian bytes: memcmp order is numeric (SQLite INTEGER is signed)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    controller BLOB PRIMARY KEY,
    highest_seq BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS software (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version TEXT NOT NULL,
    digest BLOB NOT NULL,
    size INTEGER NOT NULL,
    installed_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    controller BLOB NOT NULL,
    seq BLOB NOT NULL,
    name TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    tx_hash BLOB NOT NULL,
    detail TEXT NOT NULL
);
"""


SCHEMA = Schema(
    "agent state",
    0x4C504147,  # ASCII "LPAG"
    (script(_SCHEMA),),
    legacy_tables=frozenset({"seen", "software", "audit", "sqlite_sequence"}),
)
"""The agent state's kind: application id, migrations, unversioned tables adopted."""


_AUDIT_QUERY = (
    "SELECT at, controller, seq, name, decision, reason, tx_hash, detail FROM audit"
    " ORDER BY id DESC LIMIT ?"
)
"""The newest rows first; callers reverse them to oldest first."""


def _audit_rows(db: sqlite3.Connection, limit: int | None) -> list[AuditEntry]:
    rows = db.execute(_AUDIT_QUERY, (-1 if limit is None else limit,)).fetchall()
    return [
        AuditEntry(
            at=r[0],
            controller=r[1],
            command_seq=int.from_bytes(r[2], "big"),
            name=r[3],
            decision=r[4],
            reason=r[5],
            tx_hash=r[6],
            detail=r[7],
        )
        for r in reversed(rows)
    ]


def read_audit(state_dir: Path, limit: int | None = None) -> list[AuditEntry]:
    """The agent's audit log in ``state_dir``, read-only (safe beside a running node); empty
    when not written yet.
    """
    path = Path(state_dir) / STATE_FILE
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise translate(exc, "opening", "agent state") from None
    try:
        return _audit_rows(conn, limit)
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        conn.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One audit row; ``decision``: accepted (seq committed), executed, refused, failed or
    send-failed.
    """

    at: int
    controller: bytes
    command_seq: int
    name: str
    decision: str
    reason: str
    tx_hash: bytes
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InstalledSoftware:
    """The anti-rollback record: what is installed (version ``()`` = nothing)."""

    version: Version = ()
    digest: bytes | None = None
    size: int = 0


class AgentStore:
    """The agent's SQLite file: seen seqs, installed software, audit log."""

    def __init__(self, path: Path) -> None:
        # the runtime may build the agent in one thread and feed it from another;
        # calls must not overlap (the receiver delivers one message at a time)
        self._db = connect(path, SCHEMA, name="agent state", check_same_thread=False)

    def close(self) -> None:
        self._db.close()

    def _write(self, statements: list[tuple[str, tuple[object, ...]]]) -> None:
        """Run ``statements`` in one transaction and commit (durable on return)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    self._db.execute(sql, params)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise translate(exc, "writing", "agent state") from None

    def highest_seq(self, controller: bytes) -> int:
        """Highest command_seq seen from ``controller`` (0 = none)."""
        row = self._db.execute(
            "SELECT highest_seq FROM seen WHERE controller = ?", (controller,)
        ).fetchone()
        return int.from_bytes(row[0], "big") if row else 0

    def installed(self) -> InstalledSoftware:
        row = self._db.execute("SELECT version, digest, size FROM software").fetchone()
        if row is None:
            return InstalledSoftware()
        return InstalledSoftware(version=parse_version(row[0]), digest=row[1], size=row[2])

    @staticmethod
    def seen_statement(controller: bytes, seq: int) -> tuple[str, tuple[object, ...]]:
        """Raise the controller's highest seq to ``seq`` (never lowers it)."""
        return (
            "INSERT INTO seen (controller, highest_seq) VALUES (?, ?) "
            "ON CONFLICT (controller) DO UPDATE SET highest_seq = excluded.highest_seq "
            "WHERE excluded.highest_seq > seen.highest_seq",
            (controller, seq.to_bytes(SEQ_BYTES, "big")),
        )

    @staticmethod
    def audit_statement(entry: AuditEntry) -> tuple[str, tuple[object, ...]]:
        return (
            "INSERT INTO audit (at, controller, seq, name, decision, reason, tx_hash, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.at,
                entry.controller,
                entry.command_seq.to_bytes(SEQ_BYTES, "big"),
                entry.name,
                entry.decision,
                entry.reason,
                entry.tx_hash,
                entry.detail,
            ),
        )

    def record(self, entry: AuditEntry, *, consume: bool = False) -> None:
        """Append ``entry``; with ``consume`` also mark its seq seen, atomically."""
        statements = [self.audit_statement(entry)]
        if consume:
            statements.insert(0, self.seen_statement(entry.controller, entry.command_seq))
        self._write(statements)

    def record_install(self, manifest: UpdateManifest, at: int) -> None:
        """Persist the newly installed version (anti-rollback) and its digest."""
        self._write(
            [
                (
                    "INSERT INTO software (id, version, digest, size, installed_at)"
                    " VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                    " version = excluded.version, digest = excluded.digest,"
                    " size = excluded.size, installed_at = excluded.installed_at",
                    (format_version(manifest.version), manifest.digest, manifest.size, at),
                )
            ]
        )

    def audit(self, limit: int | None = None) -> list[AuditEntry]:
        """Audit rows, oldest first (the newest ``limit`` when given)."""
        return _audit_rows(self._db, limit)
