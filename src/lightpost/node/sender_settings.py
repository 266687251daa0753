"""The sender's tunables, settings, step result and durable enqueue (no chain access)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightpost.adapters.store import Store
from lightpost.core import nonce as nonce_rules
from lightpost.core.envelope import DIRECT_CHANNEL_NAME, MIN_POST_BYTES
from lightpost.core.envelope import Message as EnvelopeMessage
from lightpost.core.fees import Eip1559FeePolicy, FeePolicy, FixedFeePolicy, max_payload_for
from lightpost.core.gas import TX_GAS_LIMIT_CAP
from lightpost.core.inbox import INBOX_EXECUTION_GAS_FIRST_POST, INBOX_EXECUTION_GAS_PER_BYTE
from lightpost.core.profiles import DEFAULT_LOGS_BLOCK_RANGE
from lightpost.errors import ConfigError
from lightpost.node.config import DeviceConfig

__all__ = [
    "MAX_IN_FLIGHT",
    "MAX_QUEUED_PER_STEP",
    "PRUNE_AFTER_S",
    "PRUNE_CHECKS_PER_PERIOD",
    "REBROADCAST_INTERVAL_S",
    "SIGNED_RETRY_S",
    "STUCK_AFTER_S",
    "SenderSettings",
    "StepResult",
    "enqueue_message",
    "fee_policy",
]

STUCK_AFTER_S = 36.0
"""Unmined this long after its current version was signed: fee bump (3 mainnet slots of 12 s)."""

REBROADCAST_INTERVAL_S = 12.0
"""Re-send an unmined BROADCAST tx every mainnet slot (a pool may have evicted it; geth drops after
3 h)."""

SIGNED_RETRY_S = 1.0
"""Retry a SIGNED transaction that no endpoint accepted after this many seconds."""

MAX_IN_FLIGHT = 16
"""Unmined transactions at once: geth legacypool AccountSlots (16 per account guaranteed a slot)."""

MAX_QUEUED_PER_STEP = 1000
"""Queued messages the batcher reads per step (the rest waits for the next step)."""

PRUNE_AFTER_S = 3600.0
"""FINAL rows are deleted an hour after they became final (status keeps recent ones)."""

PRUNE_CHECKS_PER_PERIOD = 4
"""Pruning runs every prune_after_s / 4 seconds (one cheap DELETE)."""


def fee_policy(config: DeviceConfig) -> FeePolicy:
    """The fee policy the config asks for."""
    fees = config.fees
    if fees.policy == "fixed":
        return FixedFeePolicy(gas_price=fees.gas_price, gas_limit=fees.gas_limit)
    return Eip1559FeePolicy(
        max_fee_cap=fees.max_fee_per_gas, priority_fee=fees.priority_fee_per_gas
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderSettings:
    """Everything the sender needs from the config, plus timing knobs tests shorten."""

    chain_id: int
    mode: str
    inbox: bytes | None
    policy: FeePolicy
    batch_bytes: int
    batch_delay_s: float
    finality_depth: int = 0
    stuck_after_s: float = STUCK_AFTER_S
    rebroadcast_interval_s: float = REBROADCAST_INTERVAL_S
    signed_retry_s: float = SIGNED_RETRY_S
    reconcile_interval_s: float = nonce_rules.RECONCILE_INTERVAL_S
    prune_after_s: float = PRUNE_AFTER_S
    max_in_flight: int = MAX_IN_FLIGHT
    logs_block_range: int = DEFAULT_LOGS_BLOCK_RANGE
    gas_limit_source: str = "local"
    max_gas_limit: int = TX_GAS_LIMIT_CAP

    def __post_init__(self) -> None:
        if self.mode not in ("channel", "direct"):
            raise ConfigError("sender: mode must be `channel` or `direct`")
        if self.mode == "channel" and self.inbox is None:
            raise ConfigError("sender: channel mode needs the inbox address")

    @classmethod
    def from_config(cls, config: DeviceConfig, **overrides: Any) -> SenderSettings:
        """Settings from a validated :class:`DeviceConfig` (keyword overrides win)."""
        values: dict[str, Any] = {
            "chain_id": config.chain_id,
            "mode": config.mode,
            "inbox": config.inbox,
            "policy": fee_policy(config),
            "batch_bytes": config.batch_bytes,
            "batch_delay_s": config.batch_delay_s,
            "finality_depth": config.finality_depth,
        }
        if config.profile is not None:
            values["logs_block_range"] = config.profile.logs_block_range
            values["gas_limit_source"] = config.profile.gas_limit_source
            values["max_gas_limit"] = config.profile.max_gas_limit
        values.update(overrides)
        return cls(**values)

    @property
    def max_post_bytes(self) -> int:
        """Largest post per tx: the batch target, within what the fee policy can carry."""
        if self.mode == "channel":
            limit = max_payload_for(
                self.policy, INBOX_EXECUTION_GAS_FIRST_POST, INBOX_EXECUTION_GAS_PER_BYTE
            )
        else:
            limit = max_payload_for(self.policy)
        size = min(self.batch_bytes, limit)
        if size < MIN_POST_BYTES:
            raise ConfigError(
                f"send.batch_bytes gives posts of {size} bytes, below the minimum {MIN_POST_BYTES}"
            )
        return size


@dataclass(slots=True)
class StepResult:
    """What one :meth:`Sender.step` did (for tests, logs and the loop's pacing)."""

    signed: int = 0
    broadcast: int = 0
    events: int = 0
    held: int = 0
    released: int = 0
    bumped: int = 0
    pruned: int = 0

    @property
    def busy(self) -> bool:
        """True when the step changed something (the loop steps again without waiting)."""
        return bool(
            self.signed + self.broadcast + self.events + self.held + self.released + self.bumped
        )


def enqueue_message(
    store: Store,
    *,
    payload: bytes,
    channel: str | None,
    recipient: bytes | None,
    content_type: int,
    now: float,
) -> int:
    """Durably enqueue one message (the sender's, and ``lightpost send`` beside a daemon)."""
    if channel is None:
        if recipient is None:
            raise ConfigError("a direct message needs a recipient address")
        channel = DIRECT_CHANNEL_NAME
    if recipient is not None and (len(recipient) != 20 or recipient == bytes(20)):
        raise ConfigError("the recipient must be a non-zero 20-byte address")
    # Validate now, not at signing time: the envelope must be able to carry it.
    EnvelopeMessage(seq=0, timestamp=int(now * 1000), content_type=content_type, payload=payload)
    return store.enqueue(
        channel=channel,
        recipient=recipient or b"",
        payload=payload,
        content_type=str(int(content_type)),
        created_at=now,
    )
