"""`lightpost init`: write a ready device config for a chain and its endpoints.

Endpoint URLs usually carry a provider's API key, so they are never taken from the command line
(``ps`` shows argv to every user): they come from ``--endpoints-file`` (one URL per line, ``-`` =
stdin) or LIGHTPOST_ENDPOINTS (comma-separated). The config is validated exactly as the node will
load it, then created with mode 0600; an existing file is never replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

from lightpost.core.keys import to_checksum_address
from lightpost.core.profiles import PROFILES
from lightpost.errors import ConfigError
from lightpost.node.config import DeviceConfig, parse_config
from lightpost_operator.key_cmd import write_new_private

__all__ = [
    "add_endpoint_args",
    "add_init",
    "cmd_init",
    "parse_inbox",
    "read_endpoints",
    "render_config",
    "write_config",
]

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

ENDPOINTS_ENV = "LIGHTPOST_ENDPOINTS"
"""Comma-separated endpoint URLs (also the node's runtime override of `endpoints`)."""

MAX_ENDPOINTS_TEXT = 64 * 1024
"""Longest endpoints file read: a few dozen URLs fit many times over."""


def add_endpoint_args(parser: argparse.ArgumentParser, *, chain_id: bool = False) -> None:
    """``--chain`` (or, with ``chain_id``, ``--chain-id`` for a chain without a built-in
    profile) and ``--endpoints-file``, shared by init and fleet provision."""
    if chain_id:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--chain", choices=sorted(PROFILES), help="chain profile")
        which.add_argument(
            "--chain-id", type=int, help="any other EVM chain: its id (a generic profile)"
        )
    else:
        parser.add_argument(
            "--chain", required=True, choices=sorted(PROFILES), help="chain profile"
        )
    parser.add_argument(
        "--endpoints-file",
        help=f"RPC URLs, one per line ('-' = stdin; else ${ENDPOINTS_ENV}); never on argv",
    )
    parser.add_argument("--quorum", type=int, help="agreeing endpoints needed (default: majority)")
    parser.add_argument(
        "--inbox", help="inbox contract address (channel mode; default: the protocol address)"
    )
    parser.add_argument("--mode", choices=["channel", "direct"], default="channel")


def add_init(sub: SubParsers) -> str:
    init = sub.add_parser("init", help="write a ready device config (0600) for a chain")
    add_endpoint_args(init, chain_id=True)
    init.add_argument("--keystore", required=True, help="the device's keystore (`key new`)")
    init.add_argument("--out", required=True, help="config file to create (never overwritten)")
    init.add_argument("--password-file", help="keystore password file (else LIGHTPOST_PASSWORD)")
    init.add_argument("--data-dir", help="data directory (default: <out name>-data beside it)")
    init.add_argument("--name", help="device name (default: the config file's stem)")
    init.add_argument("--channel", action="append", default=[], help="a channel to receive on")
    init.add_argument("--trust", action="append", default=[], help="a sender trusted on them")
    return "lightpost_operator.provision:cmd_init"


def read_endpoints(source: str | None, env: Mapping[str, str] | None = None) -> list[str]:
    """URLs from a file (``-``: stdin; blank lines and ``#`` comments skipped), else the env."""
    env = os.environ if env is None else env
    if source is None:
        text = env.get(ENDPOINTS_ENV, "").replace(",", "\n")
    elif source == "-":
        text = sys.stdin.read(MAX_ENDPOINTS_TEXT)
    else:
        try:
            with open(source, encoding="utf-8") as fh:
                text = fh.read(MAX_ENDPOINTS_TEXT)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read endpoints file {source}: {exc}") from None
    urls = [line.strip() for line in text.splitlines()]
    urls = [u for u in urls if u and not u.startswith("#")]
    if not urls:
        raise ConfigError(
            f"no endpoints: pass --endpoints-file FILE (one URL per line) or set {ENDPOINTS_ENV}"
        )
    return urls


def _q(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid TOML basic string


def render_config(
    *,
    chain: str | int,
    endpoints: Sequence[str],
    keystore: str,
    data_dir: str,
    name: str,
    mode: str = "channel",
    inbox: bytes | None = None,
    quorum: int | None = None,
    password_file: str | None = None,
    channels: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The TOML text of a device config (paths relative to the config's directory); ``chain``: a
    profile name, or the id of a chain without one."""
    lines = [
        "# lightpost device config (`lightpost init`). Mode 0600: endpoint URLs carry API keys.",
        f"name = {_q(name)}",
        f"chain = {_q(chain)}" if isinstance(chain, str) else f"chain_id = {chain}",
        f"endpoints = [{', '.join(_q(e) for e in endpoints)}]",
        f"keystore = {_q(keystore)}",
        f"data_dir = {_q(data_dir)}",
        f"mode = {_q(mode)}",
    ]
    if quorum is not None:
        lines.append(f"quorum = {quorum}")
    if password_file is not None:
        lines.append(f"password_file = {_q(password_file)}")
    if inbox is not None:
        lines.append(f"inbox = {_q(to_checksum_address(inbox))}")
    for channel, trusted in (channels or {}).items():
        lines += ["", f"[channels.{_q(channel)}]", f"trusted = [{', '.join(map(_q, trusted))}]"]
    return "\n".join(lines) + "\n"


def write_config(path: Path, text: str) -> DeviceConfig:
    """Validate ``text`` as the node will load it (no environment overrides), then create ``path``
    0600 (an existing file is refused)."""
    try:
        config = parse_config(tomllib.loads(text), path=path.resolve(), env={})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"init: generated config is not valid TOML: {exc}") from None
    write_new_private(path, text)
    return config


def relative_to(target: Path, config_path: Path) -> str:
    """``target`` as the config will resolve it: relative to the config's directory."""
    return os.path.relpath(target.resolve(), config_path.resolve().parent)


def parse_inbox(text: str | None) -> bytes | None:
    """``--inbox`` as an address (None when not given); one ConfigError line if malformed."""
    if text is None:
        return None
    from lightpost.core.keys import parse_address
    from lightpost.errors import DecodingError

    try:
        return parse_address(text)
    except DecodingError as exc:
        raise ConfigError(f"--inbox: {exc.reason}") from None


def cmd_init(args: argparse.Namespace) -> int:
    if args.trust and not args.channel:
        raise ConfigError("--trust needs --channel: the channel(s) on which to trust those senders")
    out = Path(args.out)
    if out.exists():
        raise ConfigError(f"{out} already exists; refusing to overwrite it")
    keystore = Path(args.keystore)
    if not keystore.is_file():
        raise ConfigError(f"no keystore at {keystore}: create one with `lightpost key new`")
    name = args.name or out.stem
    data_dir = Path(args.data_dir) if args.data_dir else out.parent / f"{out.stem}-data"
    text = render_config(
        chain=args.chain if args.chain is not None else args.chain_id,
        endpoints=read_endpoints(args.endpoints_file),
        keystore=relative_to(keystore, out),
        data_dir=relative_to(data_dir, out),
        name=name,
        mode=args.mode,
        inbox=parse_inbox(args.inbox),
        quorum=args.quorum,
        password_file=relative_to(Path(args.password_file), out) if args.password_file else None,
        channels={c: args.trust for c in args.channel},
    )
    config = write_config(out, text)
    print(
        f"wrote {out} (chain {args.chain or 'without a profile'}, id {config.chain_id}, "
        f"{len(config.endpoints)} endpoint(s), quorum {config.quorum}, mode {config.mode})"
    )
    return 0
