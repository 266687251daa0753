"""Test plugins for the agent (loaded by import path) and a crash-test entry point.

``python -m tests.node.agent_plugins STATE_DIR`` runs an Agent whose ``block`` handler
records that it started and then blocks, so the parent test can SIGKILL the process
while the handler is running.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lightpost.core.levels import Delivered, Level
from lightpost_agent.agent import Agent
from lightpost_agent.command import (
    AgentPolicy,
    Command,
    Target,
    UpdateManifest,
    encode_command,
)
from lightpost_agent.handlers import HandlerContext

__all__ = [
    "BLOCK_SECONDS",
    "CONTROLLER",
    "DEVICE",
    "MARKER_FILE",
    "T0",
    "blocking_handler",
    "crash_delivery",
    "crash_policy",
    "delivery",
    "failing_check",
    "main",
    "raising_handler",
]

DEVICE = bytes.fromhex("11" * 20)
CONTROLLER = bytes.fromhex("aa" * 20)
T0 = 1_700_000_000
MARKER_FILE = "handler-started.txt"
BLOCK_SECONDS = 30.0
"""Long enough that only the parent's SIGKILL ends the handler."""


def delivery(command: Command, **kw: object) -> Delivered:
    """A final delivery of ``command`` from CONTROLLER in a block at T0 + 10."""
    base: dict[str, object] = {
        "sender": CONTROLLER,
        "channel": b"\x00" * 32,
        "recipient": DEVICE,
        "seq": command.command_seq,
        "timestamp": T0,
        "content_type": 4,
        "payload": encode_command(command),
        "tx_hash": command.command_seq.to_bytes(32, "big"),
        "block_number": 10,
        "block_hash": b"\x02" * 32,
        "block_timestamp": T0 + 10,
        "level": Level.FINAL,
    }
    base.update(kw)
    return Delivered(**base)  # type: ignore[arg-type]


def blocking_handler(command: Command, context: HandlerContext) -> str:
    """Record a start (one line per run), then block."""
    with open(context.state_dir / MARKER_FILE, "a", encoding="utf-8") as f:
        f.write(f"{command.command_seq}\n")
    time.sleep(BLOCK_SECONDS)
    return "finished"


def raising_handler(command: Command, context: HandlerContext) -> str:
    raise RuntimeError("actuator jammed")


def failing_check(image: Path, manifest: UpdateManifest) -> bool:
    """A post-install check that always fails (e.g. the new image does not boot)."""
    return False


def crash_policy() -> AgentPolicy:
    return AgentPolicy(
        device_address=DEVICE,
        device_class="valve-v2",
        controllers={CONTROLLER: frozenset({"block"})},
        handlers=(("block", "tests.node.agent_plugins:blocking_handler"),),
    )


def crash_delivery() -> Delivered:
    return delivery(
        Command(
            name="block",
            args=(("why", "crash test"),),
            target=Target(address=DEVICE),
            command_seq=7,
            not_before=T0,
            expiry=T0 + 600,
        )
    )


def main(state_dir: str) -> None:
    agent = Agent(crash_policy(), state_dir, lambda controller, payload: None)
    agent.process(crash_delivery(), now=T0 + 20)


if __name__ == "__main__":
    main(sys.argv[1])
