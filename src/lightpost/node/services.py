"""Services the node loop runs beside the sender (``step(now)``, at most every ``interval_s``):
receiving; the command agent's service is lightpost_agent.service (the ``lightpost[agent]``
extra)."""

from __future__ import annotations

from collections.abc import Callable

from lightpost.core.levels import Delivered, Level
from lightpost.core.rpcfields import data_field, get_object, quantity_field
from lightpost.core.verify import Problem
from lightpost.node.chain import Chain
from lightpost.node.receiver import Receiver

__all__ = ["RECEIVE_INTERVAL_S", "ReceiveService", "quorum_time"]

RECEIVE_INTERVAL_S = 1.0
"""Shortest time between a service's polls (blocks: ~1 s devnet, 12 s mainnet; faster repeats
questions)."""

Item = Delivered | Problem


class ReceiveService:
    """Poll ``receiver`` at ``level`` (optionally one channel); hand every item over."""

    name = "receiver"

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

    def due(self, now: float) -> bool:
        """True (and the poll clock reset) when ``interval_s`` passed since the last poll."""
        if self._last is not None and now - self._last < self.interval_s:
            return False
        self._last = now
        return True

    def step(self, now: float) -> None:
        if self.due(now):
            for item in self.receiver.poll(self.level, self.channel):
                self.on_item(item)


def quorum_time(chain: Chain) -> int:
    """Timestamp of the quorum's latest block: at the height ``quorum`` endpoints reached, the
    (hash, timestamp) ``quorum`` endpoints report identically; no single endpoint dates anything."""
    height = chain.tag_height("latest")

    def hash_and_time(answer: object) -> tuple[bytes, int]:
        block = get_object(answer, "block")
        return data_field(block, "hash", "block", 32), quantity_field(block, "timestamp", "block")

    agreed: tuple[bytes, int] = chain.agreed(
        "eth_getBlockByNumber",
        [hex(height), False],
        question=f"block time at {height}",
        convert=hash_and_time,
    )
    return agreed[1]
