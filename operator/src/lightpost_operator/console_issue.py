"""Issuing a command from the console page: the same construction and send path as
`lightpost command` (lightpost_operator.command_cmd), one command at a time, in the background.

Enabled only with ``--allow-commands`` and only when the controller's key unlocks on the server
(its password from LIGHTPOST_PASSWORD or the config's password file): the check runs at start,
so a console that cannot sign never offers the form.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from lightpost.core.keys import to_checksum_address
from lightpost.errors import ConfigError, LightpostError
from lightpost.node.config import DeviceConfig
from lightpost.node.runtime import build_chain, load_key, open_store
from lightpost.node.services import quorum_time
from lightpost_agent.command import COMMANDS_CHANNEL, CONTENT_TYPE_COMMAND, encode_command
from lightpost_agent.service import next_command_seq
from lightpost_operator.command_cmd import build_command

__all__ = ["ISSUE_TIMEOUT_S", "command_issuer"]

ISSUE_TIMEOUT_S = 180.0
"""How long the background send waits for the command's transaction to be included."""

VALIDITY_S = 600
"""A command issued from the page is valid for ten minutes of block time (as `lightpost
command`'s default --expires-in)."""


def command_issuer(config: DeviceConfig, hub: Any) -> Callable[[str, str, list[str]], int]:
    """``issue(target, name, args) -> command_seq``; raises ConfigError when busy or invalid."""
    key = load_key(config)  # the key must unlock here, or the console offers no commands
    me = to_checksum_address(key.address)
    del key  # the send path unlocks it again when it drives the outbox
    busy = threading.Lock()

    def issue(target: str, name: str, args: list[str]) -> int:
        from lightpost.cli.node_cmds import send_and_wait  # the one send path

        if not busy.acquire(blocking=False):
            raise ConfigError("a command is being sent; wait for it")
        try:
            chain = build_chain(config)
            try:
                block_time = quorum_time(chain)
            finally:
                chain.close()
            build_command(name, args, target, seq=1, block_time=block_time, expires_in=VALIDITY_S)
            with open_store(config) as store:
                seq = next_command_seq(store)
            command, recipient = build_command(
                name, args, target, seq=seq, block_time=block_time, expires_in=VALIDITY_S
            )
        except BaseException:
            busy.release()
            raise
        text = f"{name} {' '.join(args)}".strip()
        hub.apply(lambda m: m.on_command_issued(me, seq, text, target))

        def send() -> None:
            try:
                view = send_and_wait(
                    config,
                    payload=encode_command(command),
                    channel=COMMANDS_CHANNEL,
                    recipient=recipient,
                    content_type=CONTENT_TYPE_COMMAND,
                    wait="included",
                    timeout=ISSUE_TIMEOUT_S,
                )
                state = str(view.get("state"))
            except LightpostError as exc:
                state = f"not sent: {exc}"
            finally:
                busy.release()
            hub.apply(lambda m: m.on_command_state(me, seq, state))

        threading.Thread(target=send, name="lightpost-console-command", daemon=True).start()
        return seq

    return issue
