"""One SQLite bootstrap for every lightpost state file (outbox, receiver, agent).

:func:`connect`: directory 0700, file 0600, WAL, ``synchronous=FULL``, schema migrated by
:func:`migrate` (``application_id``: kind; ``user_version``: version; ``Schema.migrations[i]``: i ->
i + 1 in one transaction; unversioned files of known tables adopted). Every ``sqlite3`` error
becomes a :class:`StoreError` (:func:`translate`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lightpost.errors import StoreError

__all__ = [
    "BUSY_TIMEOUT_S",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "Schema",
    "connect",
    "migrate",
    "private_dir",
    "script",
    "translate",
]

BUSY_TIMEOUT_S = 5.0
"""Seconds to wait for another process's write lock before "locked"."""

PRIVATE_DIR_MODE = 0o700
"""Data directories: the state (and config secrets beside it) is the device's alone."""

PRIVATE_FILE_MODE = 0o600
"""State files and their -wal/-shm: message payloads, keys' nonces, audit logs."""

_SIDE_FILES = ("-wal", "-shm", "-journal")
"""Files SQLite keeps beside a database."""


@dataclass(frozen=True, slots=True)
class Schema:
    """One kind of state file: ``application_id``, migrations (i -> i + 1; never edit a released
    step), the tables an unversioned file may hold."""

    kind: str
    application_id: int
    migrations: tuple[Callable[[sqlite3.Connection], None], ...]
    legacy_tables: frozenset[str] = frozenset()

    @property
    def version(self) -> int:
        return len(self.migrations)


def script(sql: str) -> Callable[[sqlite3.Connection], None]:
    """A migration step running ``sql``'s statements one by one inside :func:`migrate`'s
    transaction (``executescript`` would commit it first)."""

    def step(conn: sqlite3.Connection) -> None:
        for statement in sql.split(";"):
            if statement.strip():
                conn.execute(statement)

    return step


def translate(exc: sqlite3.Error, action: str, name: str) -> StoreError:
    """The one place an sqlite3 error becomes a StoreError that says what to do."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        reason = "is locked by another process; is another lightpost node running?"
    elif "not a database" in text or "malformed" in text:
        reason = "is not a lightpost store (not an SQLite database, or corrupt)"
    elif "unable to open" in text or "readonly" in text or "read-only" in text:
        reason = "cannot be opened for writing: directory missing or not writable"
    elif "disk is full" in text or "disk i/o" in text:
        reason = f"cannot be written: {text}"
    elif isinstance(exc, sqlite3.IntegrityError):
        reason = f"refused a duplicate or inconsistent row ({text})"
    else:
        reason = f"failed: {text}"
    return StoreError(f"{name} {reason} (while {action})")


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed; the directory itself is made 0700."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR_MODE:
        path.chmod(PRIVATE_DIR_MODE)
    return path


def _private_file(path: Path) -> None:
    # Create ``path`` 0600 before SQLite does (umask), and tighten an old world-readable file and
    # its side files.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE))
    for p in (path, *(Path(f"{path}{suffix}") for suffix in _SIDE_FILES)):
        with contextlib.suppress(FileNotFoundError):
            if p.stat().st_mode & 0o077:
                p.chmod(PRIVATE_FILE_MODE)


def migrate(conn: sqlite3.Connection, schema: Schema, name: str) -> int:
    """Migrate to ``schema.version`` in one transaction; return the version found. Other kinds and
    newer versions refused; an up-to-date file is only read-locked."""
    conn.execute("BEGIN")
    try:
        current = (
            conn.execute("PRAGMA application_id").fetchone()[0] == schema.application_id
            and conn.execute("PRAGMA user_version").fetchone()[0] == schema.version
        )
    finally:
        conn.execute("COMMIT")
    if current:
        return schema.version
    conn.execute("BEGIN IMMEDIATE")
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        legacy = app_id == 0 and version == 0 and tables <= schema.legacy_tables
        if app_id != schema.application_id and not legacy:
            raise StoreError(f"{name} is not a lightpost {schema.kind} (another SQLite database)")
        if version > schema.version:
            raise StoreError(
                f"{name} has schema version {version}, newer than this lightpost "
                f"({schema.version}); upgrade lightpost"
            )
        for step in schema.migrations[version:]:
            step(conn)
        # Pragmas cannot take bound parameters; both values are ints we control.
        conn.execute(f"PRAGMA application_id = {schema.application_id:d}")
        conn.execute(f"PRAGMA user_version = {schema.version:d}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return int(version)


def connect(
    path: Path,
    schema: Schema,
    *,
    name: str,
    timeout: float = BUSY_TIMEOUT_S,
    check_same_thread: bool = True,
) -> sqlite3.Connection:
    """Open ``path`` (directory must exist): autocommit, WAL, FULL sync, migrated; every failure
    is one StoreError line.
    """
    if not path.parent.is_dir():
        raise StoreError(f"{name} cannot be created: directory {path.parent} is missing")
    try:
        _private_file(path)
    except OSError as exc:
        raise StoreError(
            f"{name} cannot be opened for writing: directory missing or not writable "
            f"({exc.strerror})"
        ) from None
    try:
        conn = sqlite3.connect(
            path, timeout=timeout, isolation_level=None, check_same_thread=check_same_thread
        )
    except sqlite3.Error as exc:
        raise translate(exc, "opening", name) from exc
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{name} cannot use WAL journaling (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        migrate(conn, schema, name)
    except sqlite3.Error as exc:
        conn.close()
        raise translate(exc, "opening", name) from exc
    except BaseException:
        conn.close()
        raise
    return conn
