"""Device commands and their results: the messages, their codec, and the decision rules.

A command (:data:`CONTENT_TYPE_COMMAND`) is answered by a signed result on chain
(:data:`CONTENT_TYPE_RESULT`). Pure: the agent (``lightpost_agent.agent``) persists,
runs handlers and sends.

:func:`decide` applies these rules in order, the first match wins. "seq": ``command_seq``;
"consume": the agent persists seq as the controller's highest *before* it acts, so a crash
never replays it (go-tuf CVE-2022-29173); "reply": a result is sent on chain.

====  ===========================================  =======================  =======  =====
 #    condition                                    reason                   consume  reply
====  ===========================================  =======================  =======  =====
 1    payload does not decode                      malformed                no       [a]
 2    sender not in ``policy.controllers``         unauthorized-controller  no       [b]
 3    target is another device / another class     wrong-target             yes      no
 4    seq <= highest seq seen from this controller replayed                 no       yes
 5    name not allowed for this controller         command-not-allowed      yes      yes
 6    delivered.level < policy.min_level           level-too-low            no       yes
 6a   at ``signed``, no quorum-agreed chain time   no-chain-time            no       yes
 7    time < not_before                            not-yet-valid            yes      yes
 8    time >= expiry, or the device clock (when    expired                  yes      yes
      given) >= expiry + CLOCK_SKEW_S
 9    arguments do not fit the built-in command    malformed                yes      yes
 10   ``config`` key / ``set`` actuator not listed not-whitelisted          yes      yes
 11   ``update``: manifest class != device class   class-mismatch           yes      yes
 12   ``update``: version <= installed version     rollback                 yes      yes
 13   otherwise                                    ok (execute)             yes      yes
====  ===========================================  =======================  =======  =====

[a] only if the sender is a configured controller. [b] only if ``reply_to_unauthorized``.

"time" is :func:`validity_time`; the device clock can only *add* a refusal. Handlers may
still refuse or fail after rule 13 (:class:`Reason`). Why this order, the wire format,
versions and the ``[agent]`` table: docs/protocol.md, "Commands"."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lightpost.core import rlp
from lightpost.core.keys import parse_address
from lightpost.core.levels import Delivered, Level
from lightpost.errors import ConfigError, DecodingError

__all__ = [
    "BUILTIN_COMMANDS",
    "CLOCK_SKEW_S",
    "COMMANDS_CHANNEL",
    "COMMAND_FORMAT",
    "CONTENT_TYPE_COMMAND",
    "CONTENT_TYPE_RESULT",
    "FAILURE_REASONS",
    "MAX_ARGS",
    "MAX_ARG_VALUE_BYTES",
    "MAX_OUTPUT_BYTES",
    "MAX_VERSION_PARTS",
    "REFUSAL_REASONS",
    "RESULTS_CHANNEL",
    "AgentPolicy",
    "AgentState",
    "Command",
    "CommandResult",
    "Decision",
    "Reason",
    "Status",
    "Target",
    "UpdateManifest",
    "Version",
    "decide",
    "decode_command",
    "decode_result",
    "encode_command",
    "encode_result",
    "explain",
    "format_version",
    "parse_agent_policy",
    "parse_version",
    "truncate_output",
    "validity_time",
    "version_key",
]

COMMANDS_CHANNEL = "lightpost/commands"
"""Channel of controller -> device commands (recipient: the device, or broadcast for a
device class)."""

RESULTS_CHANNEL = "lightpost/results"
"""Channel of device -> controller signed command results (recipient: the controller)."""

CONTENT_TYPE_COMMAND = 4
"""Envelope content type of a lightpost command (reserved by core/envelope.py)."""

CONTENT_TYPE_RESULT = 5
"""Envelope content type of a command result (reserved by core/envelope.py)."""

COMMAND_FORMAT = 1
"""First list element of both encodings; a new layout gets a new number."""

MAX_U64 = 2**64 - 1
"""Largest sequence number / timestamp / size on the wire (u64)."""

MAX_NAME_BYTES = 32
"""Longest command name; names are short identifiers like ``set``."""

MAX_KEY_BYTES = 64
"""Longest argument key, device class or actuator name."""

MAX_ARGS = 16
"""Most key/value pairs in one command (a command is a small instruction)."""

MAX_ARG_VALUE_BYTES = 1024
"""Longest argument value; bigger data belongs in an update image."""

MAX_OUTPUT_BYTES = 512
"""Longest handler output carried back in a result (each nonzero byte costs 40 gas,
EIP-7623)."""

MAX_VERSION_PARTS = 4
"""Most components of a dotted software version."""

MAX_VERSION_PART = 2**32 - 1
"""Largest single version component."""

DIGEST_BYTES = 32
"""SHA-256 digest length of an update image (SUIT RFC 9124 uses SHA-256 by default)."""

ADDRESS_BYTES = 20
"""Ethereum address length."""

CLOCK_SKEW_S = 300
"""Tolerance before the device clock alone declares a delivered command stale."""

BUILTIN_COMMANDS = ("set", "config", "update")
"""Commands the agent implements itself (lightpost_agent.handlers)."""

_TARGET_ADDRESS = 0
"""Target kind tag: a single device address."""

_TARGET_CLASS = 1
"""Target kind tag: every device of a class."""

_NAME_RE = re.compile(r"[a-z][a-z0-9_-]*\Z")
"""Command names: lowercase identifiers."""

_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
"""Argument keys, device classes, actuator and config names."""


class Status(enum.StrEnum):
    """Outcome of a command as reported to the controller."""

    EXECUTED = "executed"
    REFUSED = "refused"
    FAILED = "failed"


class Reason(enum.StrEnum):
    """Reason codes carried in results and the audit log (the public strings)."""

    OK = "ok"
    # refusals by decide() -- see the rule table
    MALFORMED = "malformed"
    UNAUTHORIZED_CONTROLLER = "unauthorized-controller"
    WRONG_TARGET = "wrong-target"
    REPLAYED = "replayed"
    COMMAND_NOT_ALLOWED = "command-not-allowed"
    LEVEL_TOO_LOW = "level-too-low"
    NOT_YET_VALID = "not-yet-valid"
    EXPIRED = "expired"
    NOT_WHITELISTED = "not-whitelisted"
    CLASS_MISMATCH = "class-mismatch"
    ROLLBACK = "rollback"
    NO_CHAIN_TIME = "no-chain-time"
    # refusals by a handler
    INTEGRITY = "integrity"
    # failures (the command was accepted, then did not complete)
    FETCH_FAILED = "fetch-failed"
    POST_INSTALL_CHECK = "post-install-check"
    HANDLER_ERROR = "handler-error"


REFUSAL_REASONS = frozenset(
    {
        Reason.MALFORMED,
        Reason.UNAUTHORIZED_CONTROLLER,
        Reason.WRONG_TARGET,
        Reason.REPLAYED,
        Reason.COMMAND_NOT_ALLOWED,
        Reason.LEVEL_TOO_LOW,
        Reason.NOT_YET_VALID,
        Reason.EXPIRED,
        Reason.NOT_WHITELISTED,
        Reason.CLASS_MISMATCH,
        Reason.ROLLBACK,
        Reason.NO_CHAIN_TIME,
        Reason.INTEGRITY,
    }
)
"""Reasons that go with status ``refused`` (nothing was changed)."""

FAILURE_REASONS = frozenset({Reason.FETCH_FAILED, Reason.POST_INSTALL_CHECK, Reason.HANDLER_ERROR})
"""Reasons that go with status ``failed`` (the handler ran and did not complete)."""


# --- versions ---

Version = tuple[int, ...]
"""A software version: 1..MAX_VERSION_PARTS integers; ``()`` = nothing installed."""


def version_key(version: Version) -> Version:
    """The comparison key: trailing zeros dropped, so ``(1, 2) == (1, 2, 0)``."""
    end = len(version)
    while end and version[end - 1] == 0:
        end -= 1
    return version[:end]


def parse_version(text: str | int) -> Version:
    """``"1.4.2"`` -> ``(1, 4, 2)``, ``7`` -> ``(7,)``; ValueError if not a version."""
    if isinstance(text, bool):
        raise ValueError("a version is not a bool")
    parts = [str(text)] if isinstance(text, int) else text.split(".")
    if not 1 <= len(parts) <= MAX_VERSION_PARTS or not all(
        p.isascii() and p.isdigit() for p in parts
    ):
        raise ValueError(f"not a dotted version of 1..{MAX_VERSION_PARTS} integers")
    version = tuple(int(p) for p in parts)
    _check_version(version)
    return version


def format_version(version: Version) -> str:
    """``(1, 4, 2)`` -> ``"1.4.2"``; ``()`` -> ``"none"``."""
    return ".".join(str(p) for p in version) if version else "none"


def _check_version(version: Version) -> None:
    if not 1 <= len(version) <= MAX_VERSION_PARTS:
        raise ValueError(f"a version has 1..{MAX_VERSION_PARTS} parts")
    if not all(isinstance(p, int) and 0 <= p <= MAX_VERSION_PART for p in version):
        raise ValueError(f"version parts are integers in 0..{MAX_VERSION_PART}")
    if not version_key(version):
        raise ValueError("version 0 is reserved for 'nothing installed'")


# --- field checks (one place; the decoder maps ValueError to DecodingError) ---


def _check_u64(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_U64:
        raise ValueError(f"{what} must be an integer in 0..2**64-1")


def _check_text(value: str, what: str, pattern: re.Pattern[str] | None, limit: int) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode text") from None
    if size > limit:
        raise ValueError(f"{what} is longer than {limit} bytes")
    if pattern is not None and not pattern.match(value):
        raise ValueError(f"{what} {value!r} has characters outside {pattern.pattern}")


def _check_bytes(value: bytes, what: str, length: int) -> None:
    if not isinstance(value, bytes) or len(value) != length:
        raise ValueError(f"{what} must be {length} bytes")


# --- the messages ---


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Whom a command is for: one device (``address``) XOR a device class."""

    address: bytes | None = None
    device_class: str | None = None

    def __post_init__(self) -> None:
        if (self.address is None) == (self.device_class is None):
            raise ValueError("a target is either an address or a device class")
        if self.address is not None:
            _check_bytes(self.address, "target address", ADDRESS_BYTES)
        if self.device_class is not None:
            _check_text(self.device_class, "target class", _KEY_RE, MAX_KEY_BYTES)

    def matches(self, address: bytes, device_class: str) -> bool:
        """Does this target name the device with ``address`` and ``device_class``?"""
        if self.address is not None:
            return self.address == address
        return self.device_class == device_class


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateManifest:
    """What an update must be (SUIT RFC 9124 / Uptane, small): the untrusted image applies only if
    digest and size match, the version is higher, the class ours."""

    digest: bytes
    size: int
    version: Version
    device_class: str

    def __post_init__(self) -> None:
        _check_bytes(self.digest, "manifest digest", DIGEST_BYTES)
        _check_u64(self.size, "manifest size")
        _check_version(self.version)
        _check_text(self.device_class, "manifest class", _KEY_RE, MAX_KEY_BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """One instruction from a controller to a device or class: ``args`` sorted, keys unique; valid
    while ``not_before <= block_timestamp < expiry`` (unix s); ``command_seq`` counts from 1 per
    controller."""

    name: str
    args: tuple[tuple[str, str], ...] = ()
    target: Target
    command_seq: int
    not_before: int
    expiry: int
    manifest: UpdateManifest | None = None

    def __post_init__(self) -> None:
        _check_text(self.name, "command name", _NAME_RE, MAX_NAME_BYTES)
        if not isinstance(self.args, tuple) or len(self.args) > MAX_ARGS:
            raise ValueError(f"args must be a tuple of at most {MAX_ARGS} pairs")
        for pair in self.args:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ValueError("each argument is a (key, value) pair")
            _check_text(pair[0], "argument key", _KEY_RE, MAX_KEY_BYTES)
            _check_text(pair[1], "argument value", None, MAX_ARG_VALUE_BYTES)
        ordered = tuple(sorted(self.args, key=lambda kv: kv[0].encode("utf-8")))
        if len({k for k, _ in ordered}) != len(ordered):
            raise ValueError("argument keys must be unique")
        object.__setattr__(self, "args", ordered)
        if not isinstance(self.target, Target):
            raise ValueError("target must be a Target")
        _check_u64(self.command_seq, "command_seq")
        if self.command_seq == 0:
            raise ValueError("command_seq counts from 1 (0 means 'none seen')")
        _check_u64(self.not_before, "not_before")
        _check_u64(self.expiry, "expiry")
        if self.not_before >= self.expiry:
            raise ValueError("not_before must be earlier than expiry")
        if self.manifest is not None and not isinstance(self.manifest, UpdateManifest):
            raise ValueError("manifest must be an UpdateManifest")

    def arg(self, key: str) -> str | None:
        """The value of argument ``key``, or None."""
        for k, v in self.args:
            if k == key:
                return v
        return None


def truncate_output(text: str, limit: int = MAX_OUTPUT_BYTES) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes on a character boundary."""
    data = text.encode("utf-8", "replace")  # a lone surrogate becomes "?"
    if len(data) <= limit:
        return data.decode("utf-8")
    return data[:limit].decode("utf-8", "ignore")


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult:
    """The device's answer, in its own tx (``command_seq`` 0: did not decode); status/reason:
    executed/ok, refused/refusal, failed/failure."""

    controller: bytes
    command_seq: int
    status: Status
    reason: Reason
    output: str = ""

    def __post_init__(self) -> None:
        _check_bytes(self.controller, "controller", ADDRESS_BYTES)
        _check_u64(self.command_seq, "command_seq")
        status = Status(self.status)
        reason = Reason(self.reason)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "reason", reason)
        allowed = {
            Status.EXECUTED: frozenset({Reason.OK}),
            Status.REFUSED: REFUSAL_REASONS,
            Status.FAILED: FAILURE_REASONS,
        }[status]
        if reason not in allowed:
            raise ValueError(f"reason {reason} does not go with status {status}")
        _check_text(self.output, "output", None, MAX_OUTPUT_BYTES)


# --- codec ---


def _manifest_item(m: UpdateManifest | None) -> list[object]:
    if m is None:
        return []
    return [m.digest, m.size, list(m.version), m.device_class.encode("utf-8")]


def encode_command(command: Command) -> bytes:
    """Canonical RLP bytes of ``command`` (layout in the module docstring)."""
    t = command.target
    target: list[object] = (
        [_TARGET_ADDRESS, t.address]
        if t.address is not None
        else [_TARGET_CLASS, (t.device_class or "").encode("utf-8")]
    )
    return rlp.encode(
        [
            COMMAND_FORMAT,
            command.name.encode("utf-8"),
            [[k.encode("utf-8"), v.encode("utf-8")] for k, v in command.args],
            target,
            command.command_seq,
            command.not_before,
            command.expiry,
            _manifest_item(command.manifest),
        ]
    )


def encode_result(result: CommandResult) -> bytes:
    """Canonical RLP bytes of ``result``."""
    return rlp.encode(
        [
            COMMAND_FORMAT,
            result.controller,
            result.command_seq,
            result.status.value.encode("ascii"),
            result.reason.value.encode("ascii"),
            result.output.encode("utf-8"),
        ]
    )


class _Reader:
    """Typed access to a decoded RLP structure; every failure is a DecodingError."""

    def __init__(self, what: str) -> None:
        self.what = what

    def fail(self, reason: str) -> DecodingError:
        return DecodingError(self.what, reason)

    def items(self, item: rlp.Item, field_name: str, length: int | None = None) -> list[rlp.Item]:
        if not isinstance(item, list):
            raise self.fail(f"{field_name} must be a list")
        if length is not None and len(item) != length:
            raise self.fail(f"{field_name} must have {length} elements, got {len(item)}")
        return item

    def raw(self, item: rlp.Item, field_name: str) -> bytes:
        if not isinstance(item, bytes):
            raise self.fail(f"{field_name} must be a string")
        return item

    def uint(self, item: rlp.Item, field_name: str, limit: int = MAX_U64) -> int:
        value = rlp.decode_int(self.raw(item, field_name), what=field_name)
        if value > limit:
            raise self.fail(f"{field_name} is larger than {limit}")
        return value

    def text(self, item: rlp.Item, field_name: str) -> str:
        try:
            return self.raw(item, field_name).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{field_name} is not UTF-8") from None

    def top(self, data: bytes, length: int) -> list[rlp.Item]:
        if not isinstance(data, bytes):
            raise self.fail("expected bytes")
        items = self.items(rlp.decode(data), self.what, length)
        if self.uint(items[0], "format") != COMMAND_FORMAT:
            raise self.fail(f"unknown format {self.uint(items[0], 'format')}")
        return items


def decode_command(data: bytes) -> Command:
    """Decode and validate a command; raises only :class:`DecodingError`."""
    r = _Reader("command")
    items = r.top(data, 8)
    args: list[tuple[str, str]] = []
    previous: bytes | None = None
    for pair in r.items(items[2], "args"):
        key_item, value_item = r.items(pair, "argument", 2)
        key = r.raw(key_item, "argument key")
        if previous is not None and key <= previous:
            raise r.fail("argument keys must be unique and strictly ascending")
        previous = key
        args.append((r.text(key_item, "argument key"), r.text(value_item, "argument value")))
    kind_item, value_item = r.items(items[3], "target", 2)
    kind = r.uint(kind_item, "target kind")
    if kind == _TARGET_ADDRESS:
        target_kw: dict[str, Any] = {"address": r.raw(value_item, "target address")}
    elif kind == _TARGET_CLASS:
        target_kw = {"device_class": r.text(value_item, "target class")}
    else:
        raise r.fail(f"unknown target kind {kind}")
    manifest_items = r.items(items[7], "manifest")
    try:
        manifest = None
        if manifest_items:
            digest, size, version, device_class = r.items(manifest_items, "manifest", 4)
            manifest = UpdateManifest(
                digest=r.raw(digest, "manifest digest"),
                size=r.uint(size, "manifest size"),
                version=tuple(
                    r.uint(p, "version part", MAX_VERSION_PART)
                    for p in r.items(version, "manifest version")
                ),
                device_class=r.text(device_class, "manifest class"),
            )
        return Command(
            name=r.text(items[1], "command name"),
            args=tuple(args),
            target=Target(**target_kw),
            command_seq=r.uint(items[4], "command_seq"),
            not_before=r.uint(items[5], "not_before"),
            expiry=r.uint(items[6], "expiry"),
            manifest=manifest,
        )
    except ValueError as exc:
        raise r.fail(str(exc)) from None


def decode_result(data: bytes) -> CommandResult:
    """Decode and validate a command result; raises only :class:`DecodingError`."""
    r = _Reader("command result")
    items = r.top(data, 6)
    try:
        return CommandResult(
            controller=r.raw(items[1], "controller"),
            command_seq=r.uint(items[2], "command_seq"),
            status=Status(r.text(items[3], "status")),
            reason=Reason(r.text(items[4], "reason")),
            output=r.text(items[5], "output"),
        )
    except ValueError as exc:
        raise r.fail(str(exc)) from None


# --- policy ---


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentPolicy:
    """What this device accepts (the ``[agent]`` table); ``controllers``: address -> command names;
    paths relative to the data dir."""

    device_address: bytes
    device_class: str
    min_level: Level = Level.FINAL
    controllers: Mapping[bytes, frozenset[str]] = field(default_factory=dict)
    config_whitelist: frozenset[str] = frozenset()
    actuators: frozenset[str] = frozenset()
    handlers: tuple[tuple[str, str], ...] = ()
    state_dir: str = "agent"
    update_source: str | None = field(default=None, repr=False)
    post_install_check: str | None = None
    reply_to_unauthorized: bool = False

    def allowed(self, controller: bytes) -> frozenset[str] | None:
        """Command names ``controller`` may issue, or None for a stranger."""
        return self.controllers.get(controller)


_POLICY_KEYS = frozenset(
    {
        "enabled",
        "device_class",
        "min_level",
        "controllers",
        "config_whitelist",
        "actuators",
        "handlers",
        "state_dir",
        "update_source",
        "post_install_check",
        "reply_to_unauthorized",
    }
)
"""Every key the [agent] table may hold."""


def _names(raw: Mapping[str, Any], key: str, pattern: re.Pattern[str]) -> frozenset[str]:
    values = raw.get(key, [])
    if not isinstance(values, list):
        raise ConfigError(f"config: agent.{key} must be a list of names")
    for i, v in enumerate(values):
        try:
            _check_text(v, f"agent.{key}[{i}]", pattern, MAX_KEY_BYTES)
        except ValueError as exc:
            raise ConfigError(f"config: {exc}") from None
    return frozenset(values)


def _optional_str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"config: agent.{key} must be a non-empty string")
    return value


_IMPORT_PATH_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")
"""A plugin reference: ``package.module:attribute``."""


def _import_path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _IMPORT_PATH_RE.match(value):
        raise ConfigError(f"config: {where} must be an import path like `pkg.module:callable`")
    return value


def parse_agent_policy(raw: Mapping[str, Any], *, device_address: bytes) -> AgentPolicy | None:
    """Validate the ``[agent]`` table (None when absent, empty or disabled); :class:`ConfigError`
    names the key; each allowed command needs a handler."""
    if not isinstance(raw, Mapping):
        raise ConfigError("config: [agent] must be a table")
    unknown = sorted(set(raw) - _POLICY_KEYS)
    if unknown:
        raise ConfigError(f"config: unknown key agent.{unknown[0]}")
    enabled = raw.get("enabled", bool(raw))
    if not isinstance(enabled, bool):
        raise ConfigError("config: agent.enabled must be true or false")
    if not enabled:
        return None
    device_class = raw.get("device_class")
    if not isinstance(device_class, str):
        raise ConfigError("config: agent.device_class must be a string (required)")
    try:
        _check_text(device_class, "agent.device_class", _KEY_RE, MAX_KEY_BYTES)
    except ValueError as exc:
        raise ConfigError(f"config: {exc} (required)") from None
    level_text = raw.get("min_level", str(Level.FINAL))
    try:
        min_level = Level.parse(level_text) if isinstance(level_text, str) else None
    except ValueError:
        min_level = None
    if min_level is None:
        raise ConfigError("config: agent.min_level must be signed, included, final or complete")
    handlers_raw = raw.get("handlers", {})
    if not isinstance(handlers_raw, Mapping):
        raise ConfigError("config: [agent.handlers] must be a table of name = import path")
    handlers: list[tuple[str, str]] = []
    for name, path in sorted(handlers_raw.items()):
        if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > MAX_NAME_BYTES:
            raise ConfigError(f"config: agent.handlers: {name!r} is not a command name")
        handlers.append((name, _import_path(path, f"agent.handlers.{name}")))
    known = set(BUILTIN_COMMANDS) | {n for n, _ in handlers}
    controllers_raw = raw.get("controllers", {})
    if not isinstance(controllers_raw, Mapping):
        raise ConfigError("config: [agent.controllers] must be a table of address = [names]")
    controllers: dict[bytes, frozenset[str]] = {}
    for text, names in controllers_raw.items():
        where = f"agent.controllers.{text}"
        try:
            address = parse_address(text)
        except (DecodingError, TypeError):
            raise ConfigError(f"config: {where} is not a 0x address") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"config: {where} must be a list of command names")
        missing = sorted(set(names) - known)
        if missing:
            raise ConfigError(f"config: {where}: no handler for command `{missing[0]}`")
        if address in controllers:
            raise ConfigError(f"config: {where} is listed twice")
        controllers[address] = frozenset(names)
    state_dir = _optional_str(raw, "state_dir") or "agent"
    update_source = _optional_str(raw, "update_source")
    check = raw.get("post_install_check")
    reply = raw.get("reply_to_unauthorized", False)
    if not isinstance(reply, bool):
        raise ConfigError("config: agent.reply_to_unauthorized must be true or false")
    return AgentPolicy(
        device_address=device_address,
        device_class=device_class,
        min_level=min_level,
        controllers=controllers,
        config_whitelist=_names(raw, "config_whitelist", _KEY_RE),
        actuators=_names(raw, "actuators", _KEY_RE),
        handlers=tuple(handlers),
        state_dir=state_dir,
        update_source=update_source,
        post_install_check=None
        if check is None
        else _import_path(check, "agent.post_install_check"),
        reply_to_unauthorized=reply,
    )


# --- the decision ---


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentState:
    """The durable facts a decision rests on: ``highest_seq`` from the controller (0 = none),
    ``installed_version`` (``()`` = none)."""

    highest_seq: int = 0
    installed_version: Version = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What to do with one command (rule table): ``consume``: persist the seq first; ``reply``: send
    a result."""

    execute: bool
    reason: Reason
    consume: bool
    reply: bool

    @property
    def status(self) -> Status:
        """``executed`` when the command is to run (its handler may still fail)."""
        return Status.EXECUTED if self.execute else Status.REFUSED


def _refuse(reason: Reason, *, consume: bool = True, reply: bool = True) -> Decision:
    return Decision(execute=False, reason=reason, consume=consume, reply=reply)


def _argument_rule(command: Command, policy: AgentPolicy) -> Reason | None:
    """Rules 9 and 10 for the built-in commands; None when the arguments fit."""
    keys = [k for k, _ in command.args]
    if (command.name == "update") != (command.manifest is not None):
        return Reason.MALFORMED  # a manifest belongs to exactly the update command
    if command.name in ("set", "config") and not keys:
        return Reason.MALFORMED
    if command.name == "config" and not set(keys) <= policy.config_whitelist:
        return Reason.NOT_WHITELISTED
    if command.name == "set" and policy.actuators and not set(keys) <= policy.actuators:
        return Reason.NOT_WHITELISTED
    return None


def validity_time(delivered: Delivered, chain_time: int | None) -> int | None:
    """The time validity is judged by: the verified block timestamp from ``included`` up, else
    ``chain_time`` (quorum's latest; None: unknown)."""
    return delivered.block_timestamp if delivered.level >= Level.INCLUDED else chain_time


def decide(
    command: Command | None,
    delivered: Delivered,
    policy: AgentPolicy,
    state: AgentState,
    *,
    now: int | None = None,
    chain_time: int | None = None,
) -> Decision:
    """Apply the rule table to one command (None: did not decode); ``now`` (device clock) can only
    add ``expired``; ``chain_time`` is needed at ``signed`` only."""
    allowed = policy.allowed(delivered.sender)
    if command is None:
        return _refuse(Reason.MALFORMED, consume=False, reply=allowed is not None)
    if allowed is None:
        return _refuse(
            Reason.UNAUTHORIZED_CONTROLLER, consume=False, reply=policy.reply_to_unauthorized
        )
    if not command.target.matches(policy.device_address, policy.device_class):
        return _refuse(Reason.WRONG_TARGET, reply=False)
    if command.command_seq <= state.highest_seq:
        return _refuse(Reason.REPLAYED, consume=False)
    if command.name not in allowed:
        return _refuse(Reason.COMMAND_NOT_ALLOWED)
    if delivered.level < policy.min_level:
        return _refuse(Reason.LEVEL_TOO_LOW, consume=False)
    time = validity_time(delivered, chain_time)
    if time is None:
        return _refuse(Reason.NO_CHAIN_TIME, consume=False)
    if time < command.not_before:
        return _refuse(Reason.NOT_YET_VALID)
    stale = now is not None and now >= command.expiry + CLOCK_SKEW_S
    if time >= command.expiry or stale:
        return _refuse(Reason.EXPIRED)
    argument_refusal = _argument_rule(command, policy)
    if argument_refusal is not None:
        return _refuse(argument_refusal)
    manifest = command.manifest
    if manifest is not None:
        if manifest.device_class != policy.device_class:
            return _refuse(Reason.CLASS_MISMATCH)
        if version_key(manifest.version) <= version_key(state.installed_version):
            return _refuse(Reason.ROLLBACK)
    return Decision(execute=True, reason=Reason.OK, consume=True, reply=True)


def explain(
    reason: Reason,
    command: Command | None,
    delivered: Delivered,
    policy: AgentPolicy,
    state: AgentState,
    *,
    chain_time: int | None = None,
) -> str:
    """A short human-readable detail for a refusal by :func:`decide` ("" if none)."""
    if command is None:
        return ""
    m = command.manifest
    time = validity_time(delivered, chain_time)
    what = "block time" if delivered.level >= Level.INCLUDED else "chain time"
    details = {
        Reason.REPLAYED: f"seq {command.command_seq} <= highest seen {state.highest_seq}",
        Reason.LEVEL_TOO_LOW: f"delivered at {delivered.level}, policy needs {policy.min_level}",
        Reason.NO_CHAIN_TIME: "no quorum-agreed latest block time to judge a signed command",
        Reason.NOT_YET_VALID: f"{what} {time} < not_before {command.not_before}",
        Reason.EXPIRED: f"{what} {time}, expiry {command.expiry}",
        Reason.CLASS_MISMATCH: f"image for {m.device_class if m else '?'}",
        Reason.ROLLBACK: (
            f"version {format_version(m.version if m else ())} <= installed "
            f"{format_version(state.installed_version)}"
        ),
    }
    return details.get(reason, "")
