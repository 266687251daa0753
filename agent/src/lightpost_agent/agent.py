"""The on-device command agent: decide, persist, run, audit, answer.

:meth:`Agent.process` records the :func:`lightpost_agent.command.decide` decision and the seq in ONE
committed transaction *before* any handler runs (at most once: go-tuf CVE-2022-29173), then runs,
audits and answers. docs/protocol.md, "The agent and its handlers".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from lightpost.adapters.sqlite import private_dir
from lightpost.core.levels import Delivered
from lightpost.errors import ConfigError, DecodingError, StoreError
from lightpost_agent.command import (
    CONTENT_TYPE_COMMAND,
    AgentPolicy,
    AgentState,
    Command,
    CommandResult,
    Reason,
    Status,
    decide,
    decode_command,
    encode_result,
    explain,
    truncate_output,
)
from lightpost_agent.handlers import (
    CommandFailed,
    CommandRefused,
    Handler,
    HandlerContext,
    builtin_handlers,
    load_object,
    recover_images,
)
from lightpost_agent.store import (
    STATE_FILE,
    AgentStore,
    AuditEntry,
    InstalledSoftware,
    read_audit,
)

__all__ = [
    "STATE_FILE",
    "Agent",
    "AgentStore",
    "AuditEntry",
    "InstalledSoftware",
    "Job",
    "SendResult",
    "read_audit",
]

SendResult = Callable[[bytes, bytes], object]
"""``send_result(controller_address, encoded_result)``; content type 5."""


Outcome = tuple[Status, Reason, str, str]
"""A handler's outcome: status, reason, output for the signed result, audit detail."""


@dataclass(frozen=True, slots=True)
class Job:
    """An accepted command whose handler is still to run (see :meth:`Agent.start`)."""

    entry: AuditEntry
    run: Callable[[], Outcome]


class Agent:
    """Executes commands for one device under an :class:`AgentPolicy`; ``clock`` dates audits and is
    the secondary staleness check."""

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
            private_dir(self.state_dir)
        except OSError as exc:
            raise StoreError(f"cannot create agent state dir: {exc.strerror}") from None
        self._store = AgentStore(self.state_dir / STATE_FILE)
        #: what start-up recovery did to the images (None = nothing to do)
        self.recovery = recover_images(self.state_dir / "images", self.installed.digest)

    # -- state ---

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

    # -- processing ---

    def process(
        self, delivered: Delivered, *, now: int | None = None, chain_time: int | None = None
    ) -> CommandResult | None:
        """Decide on and run one delivered command; the result sent, or None (not a command, or
        silence). Every decision is audited.
        """
        started = self.start(delivered, now=now, chain_time=chain_time)
        return self.finish(started, started.run()) if isinstance(started, Job) else started

    def start(
        self, delivered: Delivered, *, now: int | None = None, chain_time: int | None = None
    ) -> Job | CommandResult | None:
        """:meth:`process` up to the handler: a refusal is answered here; an accepted command (seq
        committed) becomes a :class:`Job` whose ``run()`` goes to :meth:`finish`."""
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
            return Job(entry, lambda: self._run(command, delivered, state, now))
        if not decision.reply:
            return None
        return self._answer(entry, Status.REFUSED, decision.reason, detail)

    def finish(self, job: Job, outcome: Outcome) -> CommandResult:
        """Audit a job's outcome (from ``job.run()``) and answer the controller."""
        status, reason, output, local_detail = outcome
        self._store.record(
            replace(job.entry, decision=str(status), reason=str(reason), detail=local_detail)
        )
        return self._answer(job.entry, status, reason, output)

    def _answer(
        self, entry: AuditEntry, status: Status, reason: Reason, output: str
    ) -> CommandResult:
        result = CommandResult(
            controller=entry.controller,
            command_seq=entry.command_seq,
            status=status,
            reason=reason,
            output=truncate_output(output),
        )
        try:
            self._send(entry.controller, encode_result(result))
        except Exception as exc:  # the command is done; record that the answer was not
            self._store.record(replace(entry, decision="send-failed", detail=type(exc).__name__))
        return result

    def _run(self, command: Command, delivered: Delivered, state: AgentState, now: int) -> Outcome:
        """(status, reason, output, audit detail); a plugin's unexpected exception is published by
        type only (its text may hold a URL), audited in full."""
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
