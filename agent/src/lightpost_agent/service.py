"""The command agent as a node service: verified commands on
:data:`~lightpost_agent.command.COMMANDS_CHANNEL` from the device's controllers in, decisions and
signed results on :data:`~lightpost_agent.command.RESULTS_CHANNEL` out through the sender's
durable outbox."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from lightpost.adapters.store import Store
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem
from lightpost.errors import LightpostError
from lightpost.node.config import ChannelPolicy, DeviceConfig
from lightpost.node.receiver import Receiver
from lightpost.node.sender import Sender
from lightpost.node.services import RECEIVE_INTERVAL_S, Item, ReceiveService, quorum_time
from lightpost_agent.agent import Agent, Job, Outcome
from lightpost_agent.command import (
    COMMANDS_CHANNEL,
    CONTENT_TYPE_RESULT,
    RESULTS_CHANNEL,
    AgentPolicy,
    CommandResult,
    parse_agent_policy,
)

__all__ = ["AgentService", "build_agent", "next_command_seq", "with_command_channel"]

COMMAND_SEQ_META = "command_seq"
"""Store meta key of the controller's last used command sequence number."""


def with_command_channel(config: DeviceConfig, policy: AgentPolicy) -> DeviceConfig:
    """``config`` whose commands channel trusts exactly the policy's controllers."""
    channels = tuple(c for c in config.channels if c.name != COMMANDS_CHANNEL)
    trusted = tuple(sorted(policy.controllers))
    return dataclasses.replace(
        config, channels=(*channels, ChannelPolicy(name=COMMANDS_CHANNEL, trusted=trusted))
    )


def build_agent(
    config: DeviceConfig, sender: Sender, *, address: bytes
) -> tuple[Agent, AgentPolicy] | None:
    """The agent of ``config`` (None when no ``[agent]`` is enabled); results go out
    through ``sender``'s durable outbox."""
    policy = parse_agent_policy(config.agent, device_address=address)
    if policy is None:
        return None

    def send_result(controller: bytes, payload: bytes) -> object:
        return sender.enqueue(
            payload=payload,
            channel=RESULTS_CHANNEL,
            recipient=controller,
            content_type=CONTENT_TYPE_RESULT,
        )

    agent = Agent(policy, config.data_dir / policy.state_dir, send_result)
    return agent, policy


class AgentService:
    """Feed verified commands to the agent, decisions to ``on_result``. Handlers run one at a time
    in one worker thread, in delivery order (``step`` returns at once); the poll stays suspended
    until each of its commands is decided (a crash redelivers; replays are refused)."""

    name = "agent"

    def __init__(
        self,
        agent: Agent,
        receiver: Receiver,
        *,
        level: Level,
        on_result: Callable[[Delivered, CommandResult], object] = lambda _d, _r: None,
        on_problem: Callable[[Problem], object] = lambda _p: None,
        interval_s: float = RECEIVE_INTERVAL_S,
    ) -> None:
        self.agent = agent
        self.on_result = on_result
        self.on_problem = on_problem
        self._receive = ReceiveService(
            receiver,
            level=level,
            channel=COMMANDS_CHANNEL,
            on_item=lambda _item: None,
            interval_s=interval_s,
        )
        self._items: Iterator[Item] | None = None
        self._running: tuple[Delivered, Job, Future[Outcome]] | None = None
        self._worker: ThreadPoolExecutor | None = None

    def _chain_time(self, item: Delivered) -> int | None:
        if item.level >= Level.INCLUDED:
            return None
        # the block time is unverified: under trust = beacon/both the committee-signed head's
        # (the poll just refreshed it; no RPC endpoint dates anything), else the quorum's; without
        # an answer the agent refuses the command as no-chain-time, without consuming its seq
        receiver = self._receive.receiver
        with contextlib.suppress(LightpostError):
            if receiver.anchor is not None:
                return int(receiver.anchor.head(final=False).timestamp)
            return quorum_time(receiver.chain)
        return None

    @property
    def busy(self) -> bool:
        """True while a handler runs in the worker."""
        return self._running is not None and not self._running[2].done()

    def step(self, now: float) -> None:
        if self._running is not None:
            delivered, job, future = self._running
            if not future.done():
                return
            self._running = None
            self.on_result(delivered, self.agent.finish(job, future.result()))
        if self._items is None:
            if not self._receive.due(now):
                return
            self._items = iter(self._receive.receiver.poll(self._receive.level, COMMANDS_CHANNEL))
        try:
            for item in self._items:
                if isinstance(item, Problem):
                    self.on_problem(item)
                    continue
                started = self.agent.start(item, chain_time=self._chain_time(item))
                if isinstance(started, Job):
                    if self._worker is None:
                        self._worker = ThreadPoolExecutor(1, thread_name_prefix="lightpost-agent")
                    self._running = (item, started, self._worker.submit(started.run))
                    return
                if started is not None:
                    self.on_result(item, started)
        except BaseException:
            self._items = None  # the poll ended with the error; the next one starts anew
            raise
        self._items = None

    def close(self) -> None:
        """Close the agent's state and receiver (a running handler ends on its own: its seq is
        consumed; start-up recovery repairs a half update)."""
        if self._worker is not None:
            self._worker.shutdown(wait=False)
        if isinstance(self._items, Generator):
            self._items.close()
        self.agent.close()
        self._receive.close()


def next_command_seq(store: Store) -> int:
    """The controller's next command sequence number, persisted before it is used."""
    return store.bump_counter(COMMAND_SEQ_META)
