"""The demo's three attacks, as lies of the lying proxy (lightpost_operator.proxy).

Each picks its victim once and then lies about it consistently, as a real attacker
would: altering one reading's log data, hiding one reading's log, and injecting a
command log that the controller never emitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightpost.core.envelope import ContentType, Post, Record, encode_post
from lightpost.core.inbox import encode_post_log, inbox_calldata
from lightpost_agent.command import Command, Target, encode_command
from lightpost_operator.proxy import Lie, Upstream, flip_hex

__all__ = ["FORGED_TX_HASH", "CommandForgery", "HideOneReading", "ReadingAlteration"]

VICTIM_INDEX_ALTER = 3
"""Alter the 3rd distinct reading log the proxy sees (the run starts honestly)."""

VICTIM_INDEX_HIDE = 6
"""Hide the 6th distinct reading log the proxy sees."""

FORGED_TX_HASH = "0x" + "fa" * 32
"""The transaction hash the forged command log claims (no such transaction exists)."""

FORGED_COMMAND_SEQ = 9_999
"""The forged command's sequence number (any value: it must be refused regardless)."""


def _log_key(log: dict[str, Any]) -> tuple[str, str]:
    return str(log.get("transactionHash")), str(log.get("logIndex"))


def _on_channel(log: dict[str, Any], channel: bytes) -> bool:
    topics = log.get("topics") or []
    return len(topics) > 1 and str(topics[1]).lower() == "0x" + channel.hex()


class _PickOne(Lie):
    """Chooses the n-th distinct log on ``channel`` it sees, then acts on it every time."""

    methods = frozenset({"eth_getLogs"})

    def __init__(self, channel: bytes, index: int) -> None:
        super().__init__()
        self.channel = channel
        self.index = index
        self._seen: list[tuple[str, str]] = []
        self.victim: tuple[str, str] | None = None

    def _is_victim(self, log: dict[str, Any]) -> bool:
        if not _on_channel(log, self.channel):
            return False
        key = _log_key(log)
        if self.victim is None and key not in self._seen:
            self._seen.append(key)
            if len(self._seen) == self.index:
                self.victim = key
        return key == self.victim


class ReadingAlteration(_PickOne):
    """Alter one reading: flip a nibble of its log data (inside the payload)."""

    def __init__(self, channel: bytes) -> None:
        super().__init__(channel, VICTIM_INDEX_ALTER)

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        if not isinstance(result, list):
            return result
        out = []
        for log in result:
            if isinstance(log, dict) and self._is_victim(log):
                log = {**log, "data": flip_hex(str(log["data"]), -4)}
                self.fired += 1
            out.append(log)
        return out


class HideOneReading(_PickOne):
    """Hide one reading's log from every eth_getLogs answer."""

    def __init__(self, channel: bytes) -> None:
        super().__init__(channel, VICTIM_INDEX_HIDE)

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        if not isinstance(result, list):
            return result
        kept = [log for log in result if not (isinstance(log, dict) and self._is_victim(log))]
        self.fired += len(result) - len(kept)
        return kept


def _asks_only_for(params: Sequence[Any], channel: bytes) -> bool:
    """The eth_getLogs filter asks for ``channel`` alone (a device's command subscription,
    not a controller scanning every channel)."""
    if not params or not isinstance(params[0], dict):
        return False
    topics = params[0].get("topics") or []
    if len(topics) < 2 or not topics[1]:
        return False
    wanted = topics[1] if isinstance(topics[1], list) else [topics[1]]
    return [str(w).lower() for w in wanted] == ["0x" + channel.hex()]


class CommandForgery(Lie):
    """Inject a command post "from the controller" to the valve that was never emitted:
    a log in a real block, with the real inbox address and well-formed topics and data."""

    methods = frozenset({"eth_getLogs"})

    MAX_INJECTIONS = 3
    """Inject into this many answers, then stop (the run goes on honestly)."""

    def __init__(self, channel: bytes) -> None:
        super().__init__()
        self.channel = channel
        self.controller = bytes(20)
        self.valve = bytes(20)

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        if (
            not isinstance(result, list)
            or self.fired >= self.MAX_INJECTIONS
            or not _asks_only_for(params, self.channel)
            or self.valve == bytes(20)
        ):
            return result
        query = params[0]
        to_block = query.get("toBlock", "latest")
        block = upstream("eth_getBlockByNumber", [to_block, False])
        if not isinstance(block, dict):
            return result
        command = Command(
            name="set",
            args=(("valve", "100"),),
            target=Target(address=self.valve),
            command_seq=FORGED_COMMAND_SEQ,
            not_before=0,
            expiry=2**40,
        )
        record = Record(
            seq=FORGED_COMMAND_SEQ,
            timestamp=int(block.get("timestamp", "0x0"), 16) * 1000,
            content_type=ContentType.COMMAND,
            payload=encode_command(command),
        )
        body = encode_post(Post(channel=self.channel, recipient=self.valve, records=(record,)))
        calldata = inbox_calldata(self.channel, self.valve, body)
        topics, data = encode_post_log(self.controller, calldata, FORGED_COMMAND_SEQ)
        fake = {
            "address": query.get("address"),
            "topics": ["0x" + t.hex() for t in topics],
            "data": "0x" + data.hex(),
            "blockNumber": block["number"],
            "blockHash": block["hash"],
            "transactionHash": FORGED_TX_HASH,
            "transactionIndex": "0x0",
            "logIndex": "0x0",
            "removed": False,
        }
        self.fired += 1
        return [*result, fake]
