"""The node process: config -> key, store, chain, sender, and the run loop.

``node.lock`` in ``data_dir`` is held (``fcntl.flock``, dropped by the kernel even on SIGKILL) by
the one process that SENDS: the daemon, or ``lightpost send`` when none runs. :meth:`Node.run` steps
the sender and each service; a failure is one logged line, retried while the others run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.adapters.sqlite import private_dir
from lightpost.adapters.store import Store
from lightpost.core.keys import PrivateKey, parse_address
from lightpost.core.keystore import decrypt_key
from lightpost.core.l2 import ETHEREUM, BlockFormat, block_format
from lightpost.errors import ConfigError, DecodingError, KeystoreError, LightpostError
from lightpost.node.chain import Chain
from lightpost.node.config import DeviceConfig, read_password
from lightpost.node.sender import Sender, SenderSettings

__all__ = [
    "LOCK_FILE",
    "POLL_INTERVAL_S",
    "RPC_TIMEOUT_S",
    "STORE_FILE",
    "Node",
    "NodeLock",
    "Service",
    "build_chain",
    "build_endpoints",
    "ensure_data_dir",
    "keystore_address",
    "load_key",
    "make_sender",
    "open_store",
]

STORE_FILE = "lightpost.sqlite3"
"""The store inside the data directory."""

LOCK_FILE = "node.lock"
"""The sending-process lock inside the data directory."""

POLL_INTERVAL_S = 0.25
"""Idle wait between steps: a few cheap RPC rounds per 12 s mainnet slot (anvil automines)."""

RPC_TIMEOUT_S = 10.0
"""Timeout of one JSON-RPC round trip (lightpost.adapters.rpc.DEFAULT_TIMEOUT_S)."""

RPC_RETRIES = 1
"""Retries after a transport failure: one, so a dead endpoint costs one backoff per question."""


class Service(Protocol):
    """Anything the node loop drives besides the sender (receiver, agent)."""

    def step(self, now: float) -> object:
        """One round of work at time ``now``; must not block for long."""

    def close(self) -> None:
        """Release what the service holds (state files, threads)."""


def ensure_data_dir(config: DeviceConfig) -> Path:
    """Create the data directory (0700) if needed; else one ConfigError line."""
    try:
        private_dir(config.data_dir)
    except OSError as exc:
        raise ConfigError(f"cannot create data_dir {config.data_dir}: {exc.strerror}") from None
    return config.data_dir


def open_store(config: DeviceConfig) -> Store:
    """Open (creating the data directory and file if needed) the device store."""
    return Store.open(ensure_data_dir(config) / STORE_FILE)


def build_endpoints(config: DeviceConfig, *, timeout: float = RPC_TIMEOUT_S) -> list[HttpEndpoint]:
    """One HTTP endpoint per configured URL, labelled rpc#0, rpc#1, ..."""
    return [
        HttpEndpoint(url, label, timeout=timeout, retries=RPC_RETRIES)
        for url, label in zip(config.endpoints, config.endpoint_labels, strict=True)
    ]


def chain_format(config: DeviceConfig) -> BlockFormat:
    """The block format of the configured chain's profile (Ethereum's without one)."""
    p = config.profile
    return ETHEREUM if p is None else block_format(p.tx_types, p.header_extra_fields)


def build_chain(config: DeviceConfig, *, timeout: float = RPC_TIMEOUT_S) -> Chain:
    """The chain client over the configured endpoints (labels rpc#0...): trust = beacon/both,
    proven hashes and finality from the light client (lightpost_beacon.sending)."""
    endpoints = build_endpoints(config, timeout=timeout)
    if config.beacon is not None:
        from lightpost_beacon.sending import beacon_chain

        return beacon_chain(config, endpoints)
    return Chain(endpoints, quorum=config.quorum, block_format=chain_format(config))


def _read_keystore(config: DeviceConfig) -> str:
    try:
        return config.keystore.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read keystore {config.keystore}: {exc.strerror}") from None


def load_key(config: DeviceConfig, env: Mapping[str, str] | None = None) -> PrivateKey:
    """Decrypt the device key (password from LIGHTPOST_PASSWORD or the password file)."""
    return decrypt_key(
        _read_keystore(config), read_password(config, env), max_memory=config.scrypt_max_memory
    )


def keystore_address(config: DeviceConfig) -> bytes | None:
    """The address recorded in the keystore (no password needed), if it has one."""
    try:
        doc = json.loads(_read_keystore(config))
        text = doc.get("address") if isinstance(doc, dict) else None
        if not isinstance(text, str):
            return None
        return parse_address(text if text.startswith("0x") else "0x" + text)
    except (ValueError, DecodingError):
        raise KeystoreError(f"keystore {config.keystore.name} is not valid JSON") from None


@dataclass
class NodeLock:
    """An exclusive ``flock`` on ``<data_dir>/node.lock`` (see the module docstring)."""

    path: Path
    _fd: int | None = field(default=None, init=False, repr=False)

    @classmethod
    def for_config(cls, config: DeviceConfig) -> NodeLock:
        return cls(ensure_data_dir(config) / LOCK_FILE)

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        """Release (idempotent)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> int | None:
        """Pid of the process holding the lock, or None when nobody holds it."""
        if self._fd is not None:
            return os.getpid()
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def __enter__(self) -> NodeLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@dataclass
class Node:
    """The long-running loop over the sender and extra services."""

    sender: Sender
    services: Sequence[Service] = ()
    clock: Callable[[], float] = time.time
    poll_s: float = POLL_INTERVAL_S
    log: Callable[[str], None] = lambda _line: None
    _problems: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _failures: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def step(self, now: float | None = None) -> bool:
        """One round over the sender and each service (True: sender busy); a failure is logged once
        and retried next tick, the others run."""
        now = self.clock() if now is None else now
        busy = False
        try:
            busy = self.sender.step(now).busy
            self._failed("sender", None)
        except Exception as exc:
            self._failed("sender", exc)
        problems = dict(self.sender.problems)
        if problems != self._problems:
            for phase, text in problems.items():
                if self._problems.get(phase) != text:
                    self.log(f"sender {phase}: {text}")
            self._problems = problems
        for service in self.services:
            name = getattr(service, "name", type(service).__name__)
            try:
                service.step(now)
                self._failed(name, None)
            except Exception as exc:
                self._failed(name, exc)
        return busy

    def _failed(self, name: str, exc: Exception | None) -> None:
        # Log ``name``'s failure once per change; a foreign exception by type only (its text may
        # quote a URL with an API key).
        if exc is None:
            line = None
        elif isinstance(exc, LightpostError):
            line = f"{name}: {exc} (retrying)"
        else:
            line = f"{name}: unexpected {type(exc).__name__} (retrying)"
        previous = self._failures.pop(name, None)
        if line is not None:
            self._failures[name] = line
            if line != previous:
                self.log(line)
        elif previous is not None:
            self.log(f"{name}: working again")

    def run(self, stop: threading.Event, *, duration: float | None = None) -> None:
        """Step until ``stop`` is set (or ``duration`` seconds passed)."""
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            busy = self.step()
            if deadline is not None and time.monotonic() >= deadline:
                break
            if not busy:
                stop.wait(self.poll_s)

    def status(self) -> dict[str, Any]:
        """The sender's status (see lightpost.node.status.collect_status)."""
        return self.sender.status(self.clock())


def make_sender(
    config: DeviceConfig,
    key: PrivateKey,
    store: Store,
    chain: Chain,
    *,
    log: Callable[[str], None] = lambda _line: None,
    **overrides: Any,
) -> Sender:
    """A :class:`Sender` configured from ``config`` (keyword overrides for tests)."""
    return Sender(
        key=key,
        store=store,
        chain=chain,
        settings=SenderSettings.from_config(config, **overrides),
        log=log,
    )
