"""`lightpost command`: the controller side of the on-device agent.

``lightpost command --config CONTROLLER.toml --target ADDRESS|class:NAME NAME [k=v ...]``
builds a signed command (lightpost_agent.command), sends it through the controller's
durable outbox on the commands channel (recipient: the device, or broadcast for a
device class) and, with ``--wait-result``, receives the device's signed result at
``final`` on the results channel.

Validity is judged by block time: ``not_before`` is the quorum-agreed latest block time minus
:data:`NOT_BEFORE_SLACK_S`, ``expiry`` is that timestamp plus ``--expires-in``. The
command sequence number comes from the controller's store and is persisted before use.

``update`` takes ``image=PATH version=X.Y.Z [class=NAME]``: the controller hashes the
image (sha256) and puts digest, size, version and device class into the manifest; the
device fetches the image itself over its own (untrusted) path and checks it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

from lightpost.core.keys import parse_address, to_checksum_address
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem
from lightpost.errors import ConfigError, DecodingError
from lightpost.node.config import DeviceConfig, load_config
from lightpost.node.receiver import Receiver
from lightpost.node.runtime import build_chain, keystore_address, open_store
from lightpost.node.services import quorum_time
from lightpost_agent.command import (
    COMMANDS_CHANNEL,
    CONTENT_TYPE_COMMAND,
    CONTENT_TYPE_RESULT,
    RESULTS_CHANNEL,
    Command,
    CommandResult,
    Target,
    UpdateManifest,
    decode_result,
    encode_command,
    parse_version,
)
from lightpost_agent.service import next_command_seq

__all__ = ["NOT_BEFORE_SLACK_S", "build_command", "cmd_command"]

NOT_BEFORE_SLACK_S = 60
"""not_before = latest block time - 60 s, so honest clock/block skew never refuses it."""

UPDATE_KEYS = ("image", "version", "class")
"""``update`` arguments that go into the manifest rather than the argument list."""

MAX_EXPIRES_IN_S = 366 * 24 * 3600
"""A command valid for more than a year is a mistake (and a standing replay window)."""

RESULT_POLL_S = 1.0
"""How often --wait-result polls for the result."""

MAX_WHY_PROBLEMS = 5
"""Problems quoted when --wait-result gives up (the latest distinct ones)."""


def _parse_target(text: str) -> tuple[Target, bytes | None]:
    if text.startswith("class:"):
        name = text[len("class:") :]
        if not name:
            raise ConfigError("--target class:NAME needs a class name")
        return Target(device_class=name), None
    try:
        address = parse_address(text)
    except DecodingError as exc:
        raise ConfigError(f"--target: {exc.reason} (use an address or class:NAME)") from None
    return Target(address=address), address


def _parse_args(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"command argument {pair!r} is not key=value")
        if key in out:
            raise ConfigError(f"command argument {key!r} given twice")
        out[key] = value
    return out


def _manifest(args: dict[str, str], target: Target) -> UpdateManifest:
    if "image" not in args or "version" not in args:
        raise ConfigError("update needs image=PATH and version=X.Y.Z")
    try:
        image = Path(args["image"]).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read image {args['image']}: {exc.strerror}") from None
    device_class = args.get("class") or target.device_class
    if not device_class:
        raise ConfigError("update needs class=NAME (or a class:NAME target)")
    return UpdateManifest(
        digest=hashlib.sha256(image).digest(),
        size=len(image),
        version=parse_version(args["version"]),
        device_class=device_class,
    )


def build_command(
    name: str, pairs: list[str], target_text: str, *, seq: int, block_time: int, expires_in: int
) -> tuple[Command, bytes | None]:
    """The command and its recipient (None: broadcast to a device class)."""
    if expires_in <= 0:
        raise ConfigError("--expires-in must be a positive number of seconds")
    target, recipient = _parse_target(target_text)
    args = _parse_args(pairs)
    try:
        manifest = None
        if name == "update":
            manifest = _manifest(args, target)
            args = {k: v for k, v in args.items() if k not in UPDATE_KEYS}
        command = Command(
            name=name,
            args=tuple(sorted(args.items())),
            target=target,
            command_seq=seq,
            not_before=block_time - NOT_BEFORE_SLACK_S,
            expiry=block_time + expires_in,
            manifest=manifest,
        )
    except ValueError as exc:  # the command's own field checks
        raise ConfigError(f"invalid command: {exc}") from None
    return command, recipient


def _latest_block_time(config: DeviceConfig) -> int:
    """The quorum-agreed time of the latest block (never one endpoint's word)."""
    chain = build_chain(config)
    try:
        return quorum_time(chain)
    finally:
        chain.close()


def _problem_line(problem: Problem) -> str:
    who = f" ({', '.join(problem.endpoints)})" if problem.endpoints else ""
    return f"{problem.kind}: {problem.details}{who}"


def _wait_result(
    config: DeviceConfig, me: bytes, recipient: bytes | None, seq: int, timeout: float
) -> tuple[Delivered, CommandResult] | str:
    """The device's signed result for command ``seq`` at ``final``, else why none came: the
    latest distinct problems the receiver reported, results for other commands."""
    if not any(c.name == RESULTS_CHANNEL for c in config.channels):
        raise ConfigError(
            f'--wait-result: add [channels."{RESULTS_CHANNEL}"] trusted = [device addresses] '
            "to the controller config"
        )
    seen: list[str] = []
    others = 0
    with Receiver(config, me=me) as receiver:
        for item in receiver.follow(
            Level.FINAL, RESULTS_CHANNEL, recipient, interval=RESULT_POLL_S, timeout=timeout
        ):
            line = None
            if isinstance(item, Problem):
                line = _problem_line(item)
            elif isinstance(item, Delivered) and item.content_type == CONTENT_TYPE_RESULT:
                try:
                    result = decode_result(item.payload)
                except DecodingError as exc:
                    line = f"undecodable result from {to_checksum_address(item.sender)}: {exc}"
                else:
                    if result.command_seq == seq and result.controller == me:
                        return item, result
                    others += 1
            if line is not None:
                kept = [s for s in seen if s != line]
                seen = [*kept[max(0, len(kept) - MAX_WHY_PROBLEMS + 1) :], line]
    why = f"no signed result for command seq {seq} at final within {timeout:.0f} s"
    if others:
        why += f"; {others} result(s) of other commands seen"
    if seen:
        return why + "; problems: " + "; ".join(seen)
    return why + (
        "; no problem seen: is the device's `lightpost node` running with its agent, and is "
        "the device trusted on the results channel of this config?"
    )


def cmd_command(args: argparse.Namespace) -> int:
    from lightpost.cli.node_cmds import send_and_wait  # the one send path

    config = load_config(args.config)
    me = keystore_address(config)
    if me is None:
        raise ConfigError("the controller keystore has no address field")
    if not math.isfinite(args.expires_in) or not 0 < args.expires_in < MAX_EXPIRES_IN_S:
        raise ConfigError(f"--expires-in must be between 0 and {MAX_EXPIRES_IN_S} seconds")
    block_time = _latest_block_time(config)
    # validate everything with a dummy seq first: a refused command uses up no number
    build_command(
        args.name,
        list(args.args),
        args.target,
        seq=1,
        block_time=block_time,
        expires_in=int(args.expires_in),
    )
    with open_store(config) as store:
        seq = next_command_seq(store)
    command, recipient = build_command(
        args.name,
        list(args.args),
        args.target,
        seq=seq,
        block_time=block_time,
        expires_in=int(args.expires_in),
    )
    started = time.monotonic()
    view = send_and_wait(
        config,
        payload=encode_command(command),
        channel=COMMANDS_CHANNEL,
        recipient=recipient,
        content_type=CONTENT_TYPE_COMMAND,
        wait="included",
        timeout=args.timeout,
    )
    out: dict[str, Any] = {
        "command": command.name,
        "command_seq": seq,
        "target": args.target,
        "state": view["state"],
        "tx_hash": view.get("tx_hash"),
        "expiry": command.expiry,
    }
    ok = view["state"] in ("included", "final")
    if not ok:
        out["why"] = f"the command reached only `{view['state']}` within {args.timeout:g} s" + (
            f": {view['hold_reason']}" if view.get("hold_reason") else ""
        )
    if ok and args.wait_result:
        remaining = max(1.0, args.timeout - (time.monotonic() - started))
        got = _wait_result(config, me, recipient, seq, remaining)
        if isinstance(got, str):
            out["result"] = None
            out["why"] = got
            ok = False
        else:
            delivered, result = got
            out["result"] = {
                "from": to_checksum_address(delivered.sender),
                "status": str(result.status),
                "reason": str(result.reason),
                "output": result.output,
                "tx_hash": "0x" + delivered.tx_hash.hex(),
                "level": str(delivered.level),
            }
            ok = str(result.status) == "executed"
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print(
            f"command {command.name} seq {seq} -> {args.target}: {view['state']}"
            + (f", tx {view['tx_hash']}" if view.get("tx_hash") else "")
        )
        if "why" in out and "result" not in out:
            print(f"why: {out['why']}")
        if args.wait_result and "result" in out:
            res = out["result"]
            print(
                f"result: none: {out.get('why', 'not waited for')}"
                if res is None
                else f"result from {res['from']}: {res['status']} ({res['reason']})"
                + (f": {res['output']}" if res["output"] else "")
            )
    return 0 if ok else 1
