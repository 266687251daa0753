"""The on-device command agent: decide, persist, run, audit, answer.

For each delivered command (:meth:`Agent.process`) the agent

1. decodes the payload and reads its durable state (highest seq seen from the sender,
   installed software version);
2. asks the pure rule table :func:`lightpost.core.command.decide` what to do;
3. in ONE SQLite transaction records the decision in the audit log and, when the rule
   says so, the command's seq as seen -- and commits (WAL, ``synchronous=FULL``)
   *before* any handler runs. A crash inside the handler therefore cannot replay the
   command: after a restart the same delivery is refused as ``replayed``
   (at-most-once; the lesson of go-tuf CVE-2022-29173: trust state persists);
4. runs the handler, records its outcome in the audit log;
5. hands the encoded :class:`CommandResult` (content type 5) to the injected
   ``send_result(controller, payload)`` -- the sender signs it into a transaction.

The state lives in ``<state_dir>/agent.sqlite3``; the built-in handlers keep their
files beside it (``actuators.json``, ``config.json``, ``images/``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from lightpost.core.command import (
    CONTENT_TYPE_COMMAND,
    AgentPolicy,
    AgentState,
    Command,
    CommandResult,
    Reason,
    Status,
    UpdateManifest,
    Version,
    decide,
    decode_command,
    encode_result,
    explain,
    format_version,
    parse_version,
    truncate_output,
)
from lightpost.core.levels import Delivered
from lightpost.errors import ConfigError, DecodingError, StoreError
from lightpost.node.handlers import (
    CommandFailed,
    CommandRefused,
    Handler,
    HandlerContext,
    builtin_handlers,
    load_object,
    recover_images,
)

__all__ = [
    "STATE_FILE",
    "Agent",
    "AgentStore",
    "AuditEntry",
    "InstalledSoftware",
    "SendResult",
    "read_audit",
]

STATE_FILE = "agent.sqlite3"
"""The agent's durable state inside its state dir."""

SEQ_BYTES = 8
"""command_seq is a u64; stored as 8 big-endian bytes so SQLite's memcmp order is
numeric order (SQLite INTEGER is signed 64-bit)."""

SendResult = Callable[[bytes, bytes], object]
"""``send_result(controller_address, encoded_result)``; content type 5."""

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
    """The audit log of the agent in ``state_dir``, opened read-only (safe while a node
    process holds it open); empty when the agent has not written it yet."""
    path = Path(state_dir) / STATE_FILE
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open agent state {path.name}: {exc}") from None
    try:
        return _audit_rows(conn, limit)
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        conn.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One audit-log row. ``decision`` is ``accepted`` (seq committed, handler about
    to run), ``executed``, ``refused``, ``failed`` or ``send-failed``."""

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
        try:
            # the runtime may build the agent in one thread and feed it from another;
            # calls must not overlap (the receiver delivers one message at a time)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open agent state {path.name}: {exc}") from None

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
            raise StoreError(f"agent state write failed: {exc}") from None

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


class Agent:
    """Executes commands for one device under an :class:`AgentPolicy`.

    ``handlers`` add to or replace the built-ins and the ``[agent.handlers]`` plugins
    (useful for embedding and tests). ``clock`` is the device clock (unix seconds),
    used for audit times and as the secondary staleness check; validity is judged by
    the block timestamp.
    """

    def __init__(
        self,
        policy: AgentPolicy,
        state_dir: str | Path,
        send_result: SendResult,
        *,
        handlers: Mapping[str, Handler] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.state_dir = Path(state_dir)
        self._send = send_result
        self._clock = clock
        table: dict[str, Handler] = builtin_handlers(policy)
        for name, path in policy.handlers:
            table[name] = load_object(path, f"agent.handlers.{name}")
        table.update(handlers or {})
        for names in policy.controllers.values():
            missing = sorted(names - set(table))
            if missing:
                raise ConfigError(f"config: agent: no handler for command `{missing[0]}`")
        self._handlers = table
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create agent state dir: {exc.strerror}") from None
        self._store = AgentStore(self.state_dir / STATE_FILE)
        #: what start-up recovery did to the images (None = nothing to do)
        self.recovery = recover_images(self.state_dir / "images", self.installed.digest)

    # -- state -----------------------------------------------------------------------

    @property
    def installed(self) -> InstalledSoftware:
        """The persisted anti-rollback record."""
        return self._store.installed()

    def highest_seq(self, controller: bytes) -> int:
        """Highest command_seq seen (persisted) from ``controller``."""
        return self._store.highest_seq(controller)

    def audit(self, limit: int | None = None) -> list[AuditEntry]:
        """The audit log, oldest first."""
        return self._store.audit(limit)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- processing --------------------------------------------------------------------

    def process(
        self, delivered: Delivered, *, now: int | None = None, chain_time: int | None = None
    ) -> CommandResult | None:
        """Decide on and run one delivered command; return the result that was sent.

        None when the message is not a command (content type) or the decision is to
        stay silent (wrong target, a stranger); every command decision is audited.
        ``chain_time`` is the quorum-agreed latest block time: at ``signed`` the command's
        validity is judged by it (the block timestamp is unverified there).
        """
        if delivered.content_type != CONTENT_TYPE_COMMAND:
            return None
        now = int(self._clock()) if now is None else now
        command: Command | None
        try:
            command = decode_command(delivered.payload)
            detail = ""
        except DecodingError as exc:
            command, detail = None, exc.reason
        state = AgentState(
            highest_seq=self._store.highest_seq(delivered.sender),
            installed_version=self.installed.version,
        )
        decision = decide(command, delivered, self.policy, state, now=now, chain_time=chain_time)
        if not decision.execute and command is not None:
            detail = explain(
                decision.reason, command, delivered, self.policy, state, chain_time=chain_time
            )
        entry = AuditEntry(
            at=now,
            controller=delivered.sender,
            command_seq=command.command_seq if command else 0,
            name=command.name if command else "",
            decision="accepted" if decision.execute else "refused",
            reason=str(decision.reason),
            tx_hash=delivered.tx_hash,
            detail=detail,
        )
        # commit the decision (and the seq) before anything runs
        self._store.record(entry, consume=decision.consume)
        if command is not None and decision.execute:
            status, reason, output, local_detail = self._run(command, delivered, state, now)
            self._store.record(
                replace(entry, decision=str(status), reason=str(reason), detail=local_detail)
            )
        else:
            status, reason, output = Status.REFUSED, decision.reason, detail
        result = CommandResult(
            controller=delivered.sender,
            command_seq=entry.command_seq,
            status=status,
            reason=reason,
            output=truncate_output(output),
        )
        if not decision.reply:
            return None
        try:
            self._send(delivered.sender, encode_result(result))
        except Exception as exc:  # the command is done; record that the answer was not
            self._store.record(replace(entry, decision="send-failed", detail=type(exc).__name__))
        return result

    def _run(
        self, command: Command, delivered: Delivered, state: AgentState, now: int
    ) -> tuple[Status, Reason, str, str]:
        """(status, reason, output for the signed on-chain result, detail for the local
        audit log). A plugin's unexpected exception is published by type only: its text
        may hold a URL with a key or other local detail; the audit keeps the text."""
        context = HandlerContext(
            state_dir=self.state_dir,
            policy=self.policy,
            delivered=delivered,
            installed_version=state.installed_version,
            record_install=lambda manifest: self._store.record_install(manifest, now),
        )
        handler = self._handlers[command.name]
        try:
            output = handler(command, context)
        except CommandRefused as exc:
            return Status.REFUSED, exc.code, exc.reason, exc.reason
        except CommandFailed as exc:
            return Status.FAILED, exc.code, exc.detail, exc.detail
        except Exception as exc:  # a plugin's bug must not take the agent down
            public = f"{type(exc).__name__} in the {command.name} handler"
            return Status.FAILED, Reason.HANDLER_ERROR, public, f"{type(exc).__name__}: {exc}"
        return Status.EXECUTED, Reason.OK, str(output), str(output)
