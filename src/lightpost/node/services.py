"""Services the node loop runs beside the sender: receiving, and the command agent.

A service is anything with ``step(now)`` (lightpost.node.runtime.Service). Both here
poll the receiver at most every ``interval_s`` and never block the loop for long: one
poll verifies what is new since the persisted cursor and returns.

The agent receives on :data:`~lightpost.core.command.COMMANDS_CHANNEL` at its policy's
minimum level (default ``final``), trusting exactly the controllers of its policy, and
answers each command with a signed result on
:data:`~lightpost.core.command.RESULTS_CHANNEL` through the durable outbox.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from lightpost.adapters.store import Store
from lightpost.core.command import (
    COMMANDS_CHANNEL,
    CONTENT_TYPE_RESULT,
    RESULTS_CHANNEL,
    AgentPolicy,
    CommandResult,
    parse_agent_policy,
)
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem
from lightpost.node.agent import Agent
from lightpost.node.config import ChannelPolicy, DeviceConfig
from lightpost.node.receiver import Receiver
from lightpost.node.sender import Sender

__all__ = [
    "RECEIVE_INTERVAL_S",
    "AgentService",
    "ReceiveService",
    "build_agent",
    "next_command_seq",
    "with_command_channel",
]

RECEIVE_INTERVAL_S = 1.0
"""Shortest time between two receiver polls of one service (a block is ~1 s on the devnet
and 12 s on mainnet; polling faster only repeats the same RPC questions)."""

COMMAND_SEQ_META = "command_seq"
"""Store meta key of the controller's last used command sequence number."""

Item = Delivered | Problem


class ReceiveService:
    """Poll ``receiver`` at ``level`` (optionally one channel) and hand every item over."""

    def __init__(
        self,
        receiver: Receiver,
        *,
        level: Level,
        on_item: Callable[[Item], object],
        channel: str | None = None,
        interval_s: float = RECEIVE_INTERVAL_S,
    ) -> None:
        self.receiver = receiver
        self.level = level
        self.channel = channel
        self.on_item = on_item
        self.interval_s = interval_s
        self._last: float | None = None

    def close(self) -> None:
        """Close the receiver (its state file and endpoint threads)."""
        self.receiver.close()

    def step(self, now: float) -> None:
        if self._last is not None and now - self._last < self.interval_s:
            return
        self._last = now
        for item in self.receiver.poll(self.level, self.channel):
            self.on_item(item)


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
    """Feed verified commands to the agent; report decisions through ``on_result``."""

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
            on_item=self._item,
            interval_s=interval_s,
        )

    def _item(self, item: Item) -> None:
        if isinstance(item, Problem):
            self.on_problem(item)
            return
        result = self.agent.process(item)
        if result is not None:
            self.on_result(item, result)

    def step(self, now: float) -> None:
        self._receive.step(now)

    def close(self) -> None:
        """Close the agent's state and its receiver."""
        self.agent.close()
        self._receive.close()


def next_command_seq(store: Store) -> int:
    """The controller's next command sequence number, persisted before it is used."""
    return store.bump_counter(COMMAND_SEQ_META)
