"""Command handlers: the plugin interface and the built-ins ``set``, ``config``, ``update``.

``handler(command, context) -> str`` raises :class:`CommandRefused` or :class:`CommandFailed`;
writes are atomic; ``update`` trusts the manifest, never the image (SUIT RFC 9124, Uptane).
docs/protocol.md, "The agent and its handlers".
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from lightpost.core.levels import Delivered
from lightpost.errors import ConfigError, LocalError, PolicyError
from lightpost_agent.command import (
    AgentPolicy,
    Command,
    Reason,
    UpdateManifest,
    Version,
    format_version,
    version_key,
)

__all__ = [
    "FETCH_CHUNK_BYTES",
    "FETCH_DEADLINE_S",
    "FETCH_TIMEOUT_S",
    "CommandFailed",
    "CommandRefused",
    "Handler",
    "HandlerContext",
    "PostInstallCheck",
    "UpdateHandler",
    "builtin_handlers",
    "config_handler",
    "file_digest",
    "load_object",
    "read_json",
    "recover_images",
    "set_handler",
    "verify_installed",
    "write_json_atomic",
]

FETCH_TIMEOUT_S = 30.0
"""Socket timeout for fetching an update image over HTTP (httpcore: every I/O call
takes a timeout)."""

FETCH_DEADLINE_S = 600.0
"""Total deadline of one image download, headers included (beats a drip): 64 MiB at ~1 Mbit/s."""

FETCH_CHUNK_BYTES = 64 * 1024
"""Read size while streaming an image to disk."""

ACTUATORS_FILE = "actuators.json"
"""The local actuator state (standing in for GPIO / a PLC register)."""

CONFIG_FILE = "config.json"
"""Values changed by the ``config`` command."""

IMAGES_DIR = "images"
"""Directory holding ``image``, ``image.new`` and ``image.prev``."""


class CommandRefused(PolicyError):
    """Raised by a handler to refuse a command without changing anything."""

    def __init__(self, code: Reason, detail: str) -> None:
        self.code = code
        super().__init__(str(code), detail)


class CommandFailed(LocalError):
    """Raised by a handler when an accepted command could not be completed."""

    def __init__(self, code: Reason, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"failed ({code}): {detail}")


@dataclass(frozen=True, slots=True, kw_only=True)
class HandlerContext:
    """What a handler may use: state dir, policy, delivery, installed version, a persister."""

    state_dir: Path
    policy: AgentPolicy
    delivered: Delivered
    installed_version: Version
    record_install: Callable[[UpdateManifest], None]

    @property
    def actuators_path(self) -> Path:
        return self.state_dir / ACTUATORS_FILE

    @property
    def config_path(self) -> Path:
        return self.state_dir / CONFIG_FILE

    @property
    def images_dir(self) -> Path:
        return self.state_dir / IMAGES_DIR


class Handler(Protocol):
    """The plugin interface: run ``command``; return its output text."""

    def __call__(self, command: Command, context: HandlerContext) -> str: ...


PostInstallCheck = Callable[[Path, UpdateManifest], bool]
"""``check(installed_image_path, manifest) -> ok``; raising counts as not ok."""


def load_object(path: str, where: str) -> Any:
    """Import ``"package.module:attr.attr"``; ConfigError (one line) if it fails."""
    module_name, _, attr_path = path.partition(":")
    if not module_name or not attr_path:
        raise ConfigError(f"config: {where} must be an import path like `pkg.module:callable`")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"config: {where}: cannot import {module_name}: {exc}") from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"config: {where}: {path} has no attribute {part!r}") from None
    if not callable(obj):
        raise ConfigError(f"config: {where}: {path} is not callable")
    return obj


# --- atomic files ---


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, value: Mapping[str, Any]) -> None:
    """Replace ``path`` with JSON ``value``: write beside, fsync, rename, fsync dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(dict(value), f, sort_keys=True, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``{}`` when the file does not exist yet."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CommandFailed(Reason.HANDLER_ERROR, f"cannot read {path.name}: {exc}") from None
    if not isinstance(value, dict):
        raise CommandFailed(Reason.HANDLER_ERROR, f"{path.name} is not a JSON object")
    return value


def _update_json(path: Path, command: Command) -> str:
    state = read_json(path)
    state.update(command.args)
    write_json_atomic(path, state)
    return ", ".join(f"{k}={v}" for k, v in command.args)


def set_handler(command: Command, context: HandlerContext) -> str:
    """Built-in ``set``: every argument is ``actuator = new state`` (e.g. ``valve-1 = 40``)."""
    return "set " + _update_json(context.actuators_path, command)


def config_handler(command: Command, context: HandlerContext) -> str:
    """Built-in ``config``: every argument is a whitelisted ``key = value``."""
    # decide() already refused keys outside the whitelist; checked again because a
    # plugin could register this handler under another name.
    outside = sorted(set(dict(command.args)) - context.policy.config_whitelist)
    if outside:
        raise CommandRefused(Reason.NOT_WHITELISTED, f"config key {outside[0]} not whitelisted")
    return "config " + _update_json(context.config_path, command)


# --- update ---


def file_digest(path: Path) -> tuple[bytes, int]:
    """(SHA-256, size) of a file, streamed."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(FETCH_CHUNK_BYTES):
            h.update(chunk)
            size += len(chunk)
    return h.digest(), size


def verify_installed(image: Path, manifest: UpdateManifest) -> bool:
    """Default post-install check: the installed file has the manifest's digest and size."""
    return file_digest(image) == (manifest.digest, manifest.size)


def _deadline_failure(deadline_s: float) -> CommandFailed:
    return CommandFailed(
        Reason.FETCH_FAILED, f"image download exceeded its {deadline_s:g} s deadline"
    )


@contextlib.contextmanager
def _open_source(source: str, manifest: UpdateManifest, deadline_s: float) -> Iterator[Any]:
    """The untrusted image stream (directory or http(s) base URL): a watchdog cuts HTTP at
    ``deadline_s``; no proxies, no redirects."""
    name = manifest.digest.hex()
    parts = urlsplit(source.rstrip("/") + "/" + name)
    if parts.scheme not in ("http", "https"):
        with open(Path(source) / name, "rb") as f:
            yield f
        return
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname or "", parts.port, timeout=min(FETCH_TIMEOUT_S, deadline_s))
    fired = threading.Event()
    sockets: list[socket.socket] = []  # the response keeps reading after conn drops it

    def cut() -> None:
        fired.set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(deadline_s, cut)
    watchdog.start()
    try:
        conn.connect()  # bounded by the socket timeout (<= the deadline)
        sockets.append(conn.sock)
        if fired.is_set():
            raise _deadline_failure(deadline_s)
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = conn.getresponse()
        if response.status != 200:
            raise http.client.HTTPException(f"status {response.status}")
        yield response
    except (OSError, http.client.HTTPException, ValueError):
        if fired.is_set():
            raise _deadline_failure(deadline_s) from None
        raise
    finally:
        watchdog.cancel()
        conn.close()
    if fired.is_set():  # cut at the very end: the read loop saw a short stream
        raise _deadline_failure(deadline_s)


def _download(source: str, manifest: UpdateManifest, dest: Path, deadline_s: float) -> None:
    """Stream the image to ``dest`` (cap manifest.size + 1, ``deadline_s``), fsync, verify."""
    h = hashlib.sha256()
    size = 0
    try:
        with _open_source(source, manifest, deadline_s) as stream, open(dest, "wb") as out:
            while size <= manifest.size:
                chunk = stream.read1(min(FETCH_CHUNK_BYTES, manifest.size + 1 - size))
                if not chunk:
                    break
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    except CommandFailed:
        dest.unlink(missing_ok=True)
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        dest.unlink(missing_ok=True)
        # never echo the source: an URL may carry credentials
        raise CommandFailed(
            Reason.FETCH_FAILED, f"cannot fetch image: {type(exc).__name__}"
        ) from None
    if size != manifest.size or h.digest() != manifest.digest:
        dest.unlink(missing_ok=True)
        what = "size" if size != manifest.size else "digest"
        raise CommandRefused(Reason.INTEGRITY, f"image {what} does not match the manifest")
    # verify what landed on disk, not only what passed through memory
    if file_digest(dest) != (manifest.digest, manifest.size):
        dest.unlink(missing_ok=True)
        raise CommandFailed(Reason.HANDLER_ERROR, "image on disk does not match after write")


def _keep_previous(current: Path, previous: Path) -> bool:
    """Make ``previous`` a copy of ``current`` (hard link when possible)."""
    if not current.exists():
        return False
    previous.unlink(missing_ok=True)
    try:
        os.link(current, previous)
    except OSError:  # e.g. a filesystem without hard links
        import shutil  # rare path; not imported by every node

        shutil.copy2(current, previous)
        with open(previous, "rb+") as f:
            os.fsync(f.fileno())
    return True


def recover_images(images_dir: Path, installed_digest: bytes | None) -> str | None:
    """Repair a crashed update at agent start (None: nothing to do): drop ``image.new``; restore
    ``image`` from ``image.prev`` (or remove it)."""
    current, new, previous = (images_dir / n for n in ("image", "image.new", "image.prev"))
    new.unlink(missing_ok=True)
    if not current.exists():
        return None
    if installed_digest is not None and file_digest(current)[0] == installed_digest:
        return None
    if installed_digest is None:
        current.unlink()
        action = "removed an unconfirmed first image"
    elif previous.exists() and file_digest(previous)[0] == installed_digest:
        os.replace(previous, current)
        action = "restored image.prev after an unconfirmed update"
    else:
        return "image does not match the installed record and no matching image.prev"
    _fsync_dir(images_dir)
    return action


class UpdateHandler:
    """Built-in ``update``: fetch, verify, swap atomically, check, persist, report."""

    def __init__(
        self,
        source: str | None,
        check: PostInstallCheck = verify_installed,
        *,
        deadline_s: float = FETCH_DEADLINE_S,
    ) -> None:
        self._source = source
        self._check = check
        self.deadline_s = deadline_s

    def __repr__(self) -> str:  # the source may be a URL with credentials
        return "UpdateHandler(source=<hidden>)"

    def __call__(self, command: Command, context: HandlerContext) -> str:
        manifest = command.manifest
        if manifest is None:
            raise CommandRefused(Reason.MALFORMED, "update without a manifest")
        # decide() checked both against the same persisted state; checked again here
        # so the handler is safe on its own (defence in depth against rollback bugs).
        if manifest.device_class != context.policy.device_class:
            raise CommandRefused(Reason.CLASS_MISMATCH, "image is for another device class")
        if version_key(manifest.version) <= version_key(context.installed_version):
            raise CommandRefused(Reason.ROLLBACK, "version is not higher than installed")
        if self._source is None:
            raise CommandFailed(Reason.FETCH_FAILED, "no agent.update_source configured")
        images = context.images_dir
        images.mkdir(parents=True, exist_ok=True)
        current, new, previous = (images / n for n in ("image", "image.new", "image.prev"))
        _download(self._source, manifest, new, self.deadline_s)
        had_previous = _keep_previous(current, previous)
        os.replace(new, current)
        _fsync_dir(images)
        try:
            ok = bool(self._check(current, manifest))
        except Exception as exc:  # a plugin check: any error means "not ok"
            ok = False
            why = f"{type(exc).__name__}"
        else:
            why = "returned false"
        old = format_version(context.installed_version)
        if not ok:
            if had_previous:
                os.replace(previous, current)
            else:
                current.unlink()
            _fsync_dir(images)
            raise CommandFailed(
                Reason.POST_INSTALL_CHECK,
                f"post-install check {why}; rolled back to {old}",
            )
        context.record_install(manifest)
        return f"installed {format_version(manifest.version)} ({manifest.size} bytes), was {old}"


def builtin_handlers(policy: AgentPolicy) -> dict[str, Handler]:
    """The built-in handlers, configured from ``policy``."""
    check: PostInstallCheck = verify_installed
    if policy.post_install_check is not None:
        check = load_object(policy.post_install_check, "agent.post_install_check")
    return {
        "set": set_handler,
        "config": config_handler,
        "update": UpdateHandler(policy.update_source, check),
    }
