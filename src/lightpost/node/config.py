"""Device configuration: a TOML file, with environment overrides.

Nothing is read at import: :func:`load_config` takes a path and an environment mapping. An error is
one :class:`ConfigError` line naming the key -- never an endpoint URL (API keys) or a password.
README.md documents every key and LIGHTPOST_* override.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lightpost.core.envelope import MIN_POST_BYTES
from lightpost.core.gas import GAS_LIMIT_SOURCES, TX_BASE_GAS, TX_GAS_LIMIT_CAP
from lightpost.core.inbox import INBOX_ADDRESS
from lightpost.core.keys import parse_address
from lightpost.core.keystore import SCRYPT_MAX_MEMORY
from lightpost.core.profiles import PROFILES, ChainProfile, chain_profile
from lightpost.errors import ConfigError, DecodingError

__all__ = [
    "DEFAULT_BATCH_BYTES",
    "DEFAULT_BATCH_DELAY_S",
    "PASSWORD_ENV",
    "PROFILE_KEYS",
    "ChannelPolicy",
    "DeviceConfig",
    "FeeSettings",
    "env_password",
    "is_minority_quorum",
    "load_config",
    "parse_config",
    "read_password",
    "read_password_file",
]

GWEI = 10**9
"""Wei per gwei."""

DEFAULT_BATCH_BYTES = 4096
"""Aggregation target per tx: from ~2 KB the inbox rides inside the EIP-7623 floor
(docs/benchmarks.md)."""

DEFAULT_BATCH_DELAY_S = 2.0
"""Longest a queued message waits for others to batch with."""

DEFAULT_FINALITY_DEPTH = 0
"""0 = use the node's `finalized` tag; N > 0 = treat blocks N deep as final."""

MAX_TX_TYPE = 0x7F
"""Highest EIP-2718 transaction type byte (0x80 and up start an RLP list: a legacy tx)."""

TOP_LEVEL_KEYS = frozenset(
    {
        "name",
        "chain",
        "profile",
        "chain_id",
        "endpoints",
        "quorum",
        "allow_minority_quorum",
        "keystore",
        "scrypt_max_memory_mib",
        "password_file",
        "data_dir",
        "mode",
        "inbox",
        "finality_depth",
        "fees",
        "send",
        "channels",
        "agent",
        "trust",
        "beacon",
    }
)
"""Every key the top level of a device config may have."""

FEES_KEYS = frozenset(
    {"policy", "max_fee_gwei", "priority_fee_gwei", "gas_price_gwei", "gas_limit"}
)
"""Every key of the [fees] table."""

SEND_KEYS = frozenset({"batch_bytes", "max_delay_s"})
"""Every key of the [send] table."""

PROFILE_KEYS = frozenset(
    {
        "block_time_s",
        "tx_types",
        "header_extra_fields",
        "logs_block_range",
        "gas_limit_source",
        "max_gas_limit",
    }
)
"""Every key of the [profile] table: overrides of the chain profile (lightpost.core.profiles)."""

VERIFICATION_LEVELS = ("signed", "included", "final", "complete")
"""The receiver's guarantee levels, weakest first (docs/protocol.md)."""


@dataclass(frozen=True, slots=True)
class FeeSettings:
    """Fee policy choice and its parameters (wei)."""

    policy: str = "eip1559"
    max_fee_per_gas: int = 200 * GWEI
    priority_fee_per_gas: int = 1 * GWEI
    gas_price: int = 30 * GWEI
    gas_limit: int = 210_000


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    """Who may post on a channel, as far as this device is concerned."""

    name: str
    trusted: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """A validated device configuration. Endpoint URLs are kept out of repr."""

    path: Path
    chain_id: int
    endpoints: tuple[str, ...] = field(repr=False)
    quorum: int
    keystore: Path
    password_file: Path | None
    data_dir: Path
    mode: str = "channel"
    inbox: bytes | None = None
    fees: FeeSettings = FeeSettings()
    channels: tuple[ChannelPolicy, ...] = ()
    batch_bytes: int = DEFAULT_BATCH_BYTES
    batch_delay_s: float = DEFAULT_BATCH_DELAY_S
    finality_depth: int = DEFAULT_FINALITY_DEPTH
    name: str = "device"
    agent: Mapping[str, Any] = field(default_factory=dict)
    trust: str = "quorum"
    beacon: Any = field(default=None, repr=False)
    """trust = beacon/both: lightpost_beacon.anchor.BeaconSettings (URLs inside)."""
    allow_minority_quorum: bool = False
    scrypt_max_memory: int = SCRYPT_MAX_MEMORY
    profile: ChainProfile | None = None
    """The chain profile (``chain = NAME``, else the built-in one of ``chain_id``, else generic),
    with the [profile] table's overrides; set by :func:`parse_config`."""

    @property
    def warnings(self) -> tuple[str, ...]:
        """Lines the CLI prints before it runs: risks the config explicitly accepted."""
        if not is_minority_quorum(self.quorum, len(self.endpoints)):
            return ()
        return (
            f"quorum {self.quorum} of {len(self.endpoints)} endpoints is not a majority "
            "(allow_minority_quorum = true): a minority of endpoints can decide an answer",
        )

    @property
    def endpoint_labels(self) -> tuple[str, ...]:
        """Names safe to print: rpc#0, rpc#1, ..."""
        return tuple(f"rpc#{i}" for i in range(len(self.endpoints)))

    def channel(self, name: str) -> ChannelPolicy | None:
        for ch in self.channels:
            if ch.name == name:
                return ch
        return None


def is_minority_quorum(quorum: int, endpoints: int) -> bool:
    """True when ``quorum`` need not be a majority (n >= 2): two disjoint groups could each
    reach it, and at 1 any single endpoint wins.
    """
    return endpoints >= 2 and 2 * quorum <= endpoints


def _require(raw: Mapping[str, Any], key: str, kind: type) -> Any:
    if key not in raw:
        raise ConfigError(f"config: missing required key `{key}`")
    value = raw[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"config: `{key}` must be a {kind.__name__}")
    return value


_DECIMAL = re.compile(r"(-?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]{1,4}))?")
"""A decimal number as TOML, an environment variable or str(float) writes it."""


def _gwei(section: Mapping[str, Any], key: str, default: int) -> int:
    # Gwei (int, float or decimal string) as exact wei, parsed by hand (no ``decimal`` import).
    if key not in section:
        return default
    value = section[key]
    match = _DECIMAL.fullmatch(str(value).strip())
    if isinstance(value, bool) or match is None or not (match[2] or match[3]):
        raise ConfigError(f"config: fees.{key} must be a number")
    sign, whole, fraction, exponent = str(match[1]), str(match[2]), match[3] or "", match[4]
    digits = int(whole + fraction or "0")
    shift = 9 + int(exponent or 0) - len(fraction)  # wei = digits * 10**shift
    if shift < 0 and digits % 10**-shift:
        raise ConfigError(f"config: fees.{key} must be a non-negative amount of gwei")
    wei: int = digits * 10**shift if shift >= 0 else digits // 10**-shift
    if sign and wei:
        raise ConfigError(f"config: fees.{key} must be a non-negative amount of gwei")
    return wei


def _endpoints(values: Any, source: str) -> tuple[str, ...]:
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    if not isinstance(values, list) or not values:
        raise ConfigError(f"config: {source} must be a non-empty list of RPC URLs")
    out = []
    for i, url in enumerate(values):
        if not isinstance(url, str):
            raise ConfigError(f"config: {source}[{i}] must be a string")
        # never echo the URL: it may carry an API key
        try:
            parts = urlsplit(url)
            hostname = parts.hostname
        except ValueError:
            raise ConfigError(f"config: {source}[{i}] is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not hostname:
            raise ConfigError(f"config: {source}[{i}] is not an http(s) URL")
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                f"config: {source}[{i}] carries user:password credentials, which are not "
                "supported; put the provider's key in the URL path or query instead"
            )
        out.append(url)
    return tuple(out)


def _address(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise ConfigError(f"config: {where} must be a 0x address string")
    try:
        return parse_address(text)
    except DecodingError as exc:
        raise ConfigError(f"config: {where}: {exc.reason}") from None


def _fees(raw: Any) -> FeeSettings:
    if raw is None:
        return FeeSettings()
    if not isinstance(raw, dict):
        raise ConfigError("config: [fees] must be a table")
    _known_keys(raw, FEES_KEYS, "fees.")
    policy = raw.get("policy", "eip1559")
    if policy not in ("eip1559", "fixed"):
        raise ConfigError("config: fees.policy must be `eip1559` or `fixed`")
    base = FeeSettings()
    gas_limit = raw.get("gas_limit", base.gas_limit)
    if not isinstance(gas_limit, int) or isinstance(gas_limit, bool) or gas_limit < 21_000:
        raise ConfigError("config: fees.gas_limit must be an integer >= 21000")
    return FeeSettings(
        policy=policy,
        max_fee_per_gas=_gwei(raw, "max_fee_gwei", base.max_fee_per_gas),
        priority_fee_per_gas=_gwei(raw, "priority_fee_gwei", base.priority_fee_per_gas),
        gas_price=_gwei(raw, "gas_price_gwei", base.gas_price),
        gas_limit=gas_limit,
    )


def _channels(raw: Any) -> tuple[ChannelPolicy, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError("config: [channels] must be a table of channel tables")
    out = []
    for name, body in raw.items():
        if not isinstance(body, dict):
            raise ConfigError(f"config: channels.{name} must be a table")
        _known_keys(body, frozenset({"trusted"}), f"channels.{name}.")
        trusted = body.get("trusted", [])
        if not isinstance(trusted, list):
            raise ConfigError(f"config: channels.{name}.trusted must be a list of addresses")
        out.append(
            ChannelPolicy(
                name=name,
                trusted=tuple(
                    _address(a, f"channels.{name}.trusted[{i}]") for i, a in enumerate(trusted)
                ),
            )
        )
    return tuple(out)


def _positive(raw: Mapping[str, Any], key: str, default: float, kind: type = int) -> Any:
    value = raw.get(key, default)
    allowed = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed) or value < 0:
        noun = "integer" if kind is int else "number"
        raise ConfigError(f"config: `{key}` must be a non-negative {noun}")
    return kind(value)


def _known_keys(raw: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    # A typo must not silently fall back to a default (e.g. a fee cap).
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"config: unknown key `{where}{unknown[0]}`")


def _profile(raw: Mapping[str, Any]) -> ChainProfile:
    # ``chain`` names a built-in profile (else ``chain_id`` picks one, else a generic one); the
    # [profile] table overrides it; a ``chain_id`` contradicting the named chain is refused.
    name, chain_id = raw.get("chain"), raw.get("chain_id")
    if chain_id is not None and (not isinstance(chain_id, int) or isinstance(chain_id, bool)):
        raise ConfigError("config: `chain_id` must be a int")
    if name is None:
        if chain_id is None:
            raise ConfigError(f"config: missing `chain` ({', '.join(PROFILES)}) or `chain_id`")
        known = [p for p in PROFILES.values() if p.chain_id == chain_id]
        base = known[0] if known else ChainProfile(name=f"chain-{chain_id}", chain_id=chain_id)
    else:
        if not isinstance(name, str):
            raise ConfigError("config: `chain` must be a chain name string")
        base = chain_profile(name)
        if chain_id not in (None, base.chain_id):
            raise ConfigError(
                f"config: `chain_id` {chain_id} contradicts chain {name!r} (chain id "
                f"{base.chain_id}); remove `chain_id` or fix `chain`"
            )
    over = raw.get("profile", {})
    if not isinstance(over, dict):
        raise ConfigError("config: [profile] must be a table")
    _known_keys(over, PROFILE_KEYS, "profile.")
    types, extra = over.get("tx_types", []), over.get("header_extra_fields", [])
    if not isinstance(types, list) or not all(_is_byte(t) for t in types):
        raise ConfigError("config: profile.tx_types must be a list of integers 0..127")
    if not isinstance(extra, list) or not all(isinstance(f, str) for f in extra):
        raise ConfigError("config: profile.header_extra_fields must be a list of strings")
    profile = replace(
        base,
        block_time_s=_positive(over, "block_time_s", base.block_time_s, float),
        logs_block_range=_positive(over, "logs_block_range", base.logs_block_range),
        tx_types=base.tx_types | frozenset(types),
        header_extra_fields=base.header_extra_fields | frozenset(extra),
    )
    if not (profile.block_time_s and profile.logs_block_range):
        raise ConfigError("config: profile.block_time_s and profile.logs_block_range must be > 0")
    source = over.get("gas_limit_source", base.gas_limit_source)
    if source not in GAS_LIMIT_SOURCES:
        raise ConfigError(f"config: profile.gas_limit_source must be one of {GAS_LIMIT_SOURCES}")
    ceiling = _positive(over, "max_gas_limit", base.max_gas_limit)
    if not TX_BASE_GAS <= ceiling <= TX_GAS_LIMIT_CAP:
        raise ConfigError(
            f"config: profile.max_gas_limit must be in [{TX_BASE_GAS}, {TX_GAS_LIMIT_CAP}]"
        )
    return replace(profile, gas_limit_source=source, max_gas_limit=ceiling)


def _is_byte(value: Any) -> bool:
    # An EIP-2718 transaction type: an integer 0..0x7f.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TX_TYPE


def parse_config(
    raw: Mapping[str, Any], *, path: Path, env: Mapping[str, str] | None = None
) -> DeviceConfig:
    """Validate a parsed TOML mapping; ``env`` overrides (see module docstring)."""
    env = env or {}
    base = path.parent
    _known_keys(raw, TOP_LEVEL_KEYS, "")
    profile = _profile(raw)
    chain_id = profile.chain_id
    if chain_id <= 0:
        raise ConfigError("config: `chain_id` must be positive")
    if "LIGHTPOST_ENDPOINTS" in env:
        endpoints = _endpoints(env["LIGHTPOST_ENDPOINTS"], "LIGHTPOST_ENDPOINTS")
    else:
        endpoints = _endpoints(raw.get("endpoints"), "endpoints")
    quorum_raw: Any = env.get("LIGHTPOST_QUORUM", raw.get("quorum", len(endpoints) // 2 + 1))
    try:
        quorum = int(quorum_raw)
    except (TypeError, ValueError):
        raise ConfigError("config: `quorum` must be an integer") from None
    if not 1 <= quorum <= len(endpoints):
        raise ConfigError(
            f"config: `quorum` must be between 1 and the number of endpoints ({len(endpoints)})"
        )
    allow_minority = raw.get("allow_minority_quorum", False)
    if not isinstance(allow_minority, bool):
        raise ConfigError("config: `allow_minority_quorum` must be true or false")
    if is_minority_quorum(quorum, len(endpoints)) and not allow_minority:
        raise ConfigError(
            f"config: `quorum` {quorum} of {len(endpoints)} endpoints is not a majority, so "
            f"a minority of endpoints could decide; use quorum >= {len(endpoints) // 2 + 1}, "
            "or set allow_minority_quorum = true to accept that"
        )
    keystore = env.get("LIGHTPOST_KEYSTORE") or _require(raw, "keystore", str)
    data_dir = env.get("LIGHTPOST_DATA_DIR") or _require(raw, "data_dir", str)
    pw_file = env.get("LIGHTPOST_PASSWORD_FILE") or raw.get("password_file")
    if pw_file is not None and not isinstance(pw_file, str):
        raise ConfigError("config: `password_file` must be a path string")
    mode = raw.get("mode", "channel")
    if mode not in ("channel", "direct"):
        raise ConfigError("config: `mode` must be `channel` or `direct`")
    inbox = _address(raw["inbox"], "inbox") if "inbox" in raw else None
    if mode == "channel" and inbox is None:
        inbox = INBOX_ADDRESS  # a protocol constant: CREATE2 via the deterministic deployer
    agent = raw.get("agent", {})
    if not isinstance(agent, dict):
        raise ConfigError("config: [agent] must be a table")
    trust = raw.get("trust", "quorum")
    if trust not in ("quorum", "beacon", "both"):
        raise ConfigError("config: `trust` must be `quorum`, `beacon` or `both`")
    beacon = None
    if trust != "quorum":
        try:
            from lightpost_beacon.anchor import parse_settings
        except ImportError:
            raise ConfigError(
                f"config: trust = {trust!r} needs the light client: pip install 'lightpost[beacon]'"
            ) from None
        beacon = parse_settings(raw.get("beacon"), (base / data_dir).resolve())
    name = raw.get("name", path.stem)
    if not isinstance(name, str):
        raise ConfigError("config: `name` must be a string")
    send = raw.get("send", {})
    if not isinstance(send, dict):
        raise ConfigError("config: [send] must be a table")
    _known_keys(send, SEND_KEYS, "send.")
    batch_bytes = _positive(send, "batch_bytes", DEFAULT_BATCH_BYTES)
    if batch_bytes < MIN_POST_BYTES:
        raise ConfigError(
            f"config: send.batch_bytes must be at least {MIN_POST_BYTES} (one post header "
            "and one record)"
        )
    return DeviceConfig(
        path=path,
        chain_id=chain_id,
        endpoints=endpoints,
        quorum=quorum,
        keystore=(base / keystore).resolve(),
        password_file=(base / pw_file).resolve() if pw_file else None,
        data_dir=(base / data_dir).resolve(),
        mode=mode,
        inbox=inbox,
        fees=_fees(raw.get("fees")),
        channels=_channels(raw.get("channels")),
        batch_bytes=batch_bytes,
        batch_delay_s=_positive(send, "max_delay_s", DEFAULT_BATCH_DELAY_S, float),
        finality_depth=_positive(raw, "finality_depth", profile.finality_depth),
        name=name,
        agent=agent,
        trust=trust,
        beacon=beacon,
        allow_minority_quorum=allow_minority,
        scrypt_max_memory=_positive(raw, "scrypt_max_memory_mib", SCRYPT_MAX_MEMORY >> 20) << 20,
        profile=profile,
    )


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> DeviceConfig:
    """Read and validate a device config file. ``env`` defaults to ``os.environ``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    return parse_config(raw, path=p.resolve(), env=os.environ if env is None else env)


PASSWORD_ENV = "LIGHTPOST_PASSWORD"
"""Keystore password variable; removed from ``os.environ`` once read, so no child process inherits
it."""


def read_password(config: DeviceConfig, env: Mapping[str, str] | None = None) -> str:
    """LIGHTPOST_PASSWORD (then removed from the environment), else the password file."""
    password = env_password(env)
    if password is not None:
        return password
    if config.password_file is None:
        raise ConfigError(
            f"no keystore password: set {PASSWORD_ENV} or `password_file` in the config"
        )
    return read_password_file(config.password_file)


def env_password(env: Mapping[str, str] | None = None) -> str | None:
    """LIGHTPOST_PASSWORD, removed from ``os.environ`` once read; None when unset."""
    env = os.environ if env is None else env
    if PASSWORD_ENV not in env:
        return None
    password = env[PASSWORD_ENV]
    if env is os.environ:
        del os.environ[PASSWORD_ENV]
    return password


def read_password_file(path: Path) -> str:
    """A password file's text without its trailing line break; one ConfigError line if it fails."""
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"cannot read password file {path}: {exc.strerror}") from None
