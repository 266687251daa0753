"""lightpost: integrity-first IoT messaging over Ethereum.

Importing reads no configuration and opens nothing: the core names below are imported eagerly
(stdlib, coincurve, keccak); the runtime (Receiver, Sender, Agent, Node, load_config, ...) on first
use (Agent from the ``lightpost[agent]`` extra, lightpost-agent).

    from lightpost import Level, Receiver, load_config

    with Receiver(load_config("device.toml")) as receiver:
        for item in receiver.follow(Level.COMPLETE, channel="district-7"):
            ...  # a Delivered message, or a Problem
"""

from __future__ import annotations

import importlib
from typing import Any

from lightpost.core.envelope import ContentType, channel_id
from lightpost.core.keys import PrivateKey, parse_address, to_checksum_address
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem
from lightpost.errors import (
    BeaconRefused,
    ConfigError,
    DecodingError,
    KeystoreError,
    LightpostError,
    PolicyError,
    ProofError,
    QuorumError,
    SignatureError,
    TransportError,
)

__all__ = [
    "Agent",
    "BeaconRefused",
    "ConfigError",
    "ContentType",
    "DecodingError",
    "Delivered",
    "DeviceConfig",
    "KeystoreError",
    "Level",
    "LightpostError",
    "Node",
    "PolicyError",
    "PrivateKey",
    "Problem",
    "ProofError",
    "QuorumError",
    "Receiver",
    "Sender",
    "SignatureError",
    "TransportError",
    "__version__",
    "channel_id",
    "load_config",
    "parse_address",
    "to_checksum_address",
]

__version__ = "0.1.0"

_LAZY = {
    "Agent": "lightpost_agent.agent",
    "DeviceConfig": "lightpost.node.config",
    "Node": "lightpost.node.runtime",
    "Receiver": "lightpost.node.receiver",
    "Sender": "lightpost.node.sender",
    "load_config": "lightpost.node.config",
}
"""Runtime names and the module that defines each (imported on first attribute access)."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lightpost' has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name != "lightpost_agent":
            raise
        raise ImportError(
            f"lightpost.{name} needs the agent: pip install 'lightpost[agent]'"
        ) from None
