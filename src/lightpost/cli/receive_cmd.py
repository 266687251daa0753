"""`lightpost receive`: print verified messages and problems (text or JSON lines).

``--json``: one object per line, a message or a problem (``problem``: a ``ProblemKind`` value;
``endpoints``: every side by label). Exit 0 without problems, 3 with one, 1 on an error (one
``lightpost: error:`` line). Fields: docs/protocol.md, "CLI and Python API".
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lightpost.core.envelope import ContentType
from lightpost.core.keys import parse_address, to_checksum_address
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem
from lightpost.errors import ConfigError, DecodingError

__all__ = ["EXIT_PROBLEMS", "cmd_receive", "delivered_json", "problem_json"]

EXIT_PROBLEMS = 3
"""Exit status when problems were reported (distinct from 1 = error, 2 = usage)."""


def _hex(data: bytes | None) -> str | None:
    return None if data is None else "0x" + data.hex()


def _content_type(code: int) -> str:
    try:
        return ContentType(code).name.lower().replace("_", "-")
    except ValueError:
        return str(code)


def delivered_json(msg: Delivered, channel_names: dict[bytes, str]) -> dict[str, Any]:
    """The JSON object of one delivered message (see the module docstring)."""
    try:
        payload, encoding = msg.payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = "0x" + msg.payload.hex(), "hex"
    return {
        "type": "message",
        "sender": to_checksum_address(msg.sender),
        "channel": channel_names.get(msg.channel, _hex(msg.channel)),
        "channel_id": _hex(msg.channel),
        "recipient": None if msg.recipient is None else to_checksum_address(msg.recipient),
        "seq": msg.seq,
        "timestamp": msg.timestamp,
        "content_type": _content_type(msg.content_type),
        "content_type_code": msg.content_type,
        "payload": payload,
        "payload_encoding": encoding,
        "tx_hash": _hex(msg.tx_hash),
        "block_number": msg.block_number,
        "block_hash": _hex(msg.block_hash),
        "block_timestamp": msg.block_timestamp,
        "level": str(msg.level),
        "root": msg.root,
    }


def problem_json(problem: Problem, channel_names: dict[bytes, str]) -> dict[str, Any]:
    """The JSON object of one problem line."""
    out: dict[str, Any] = {"type": "problem", "problem": problem.kind, "details": problem.details}
    if problem.sender is not None:
        out["sender"] = to_checksum_address(problem.sender)
    if problem.channel is not None:
        out["channel"] = channel_names.get(problem.channel, _hex(problem.channel))
    for name in ("seq", "block_number", "missing"):
        value = getattr(problem, name)
        if value is not None:
            out[name] = value
    if problem.tx_hash is not None:
        out["tx_hash"] = _hex(problem.tx_hash)
    if problem.endpoints:
        out["endpoints"] = list(problem.endpoints)
    return out


def _text_line(obj: dict[str, Any]) -> str:
    if obj["type"] == "problem":
        who = f" endpoints={','.join(obj['endpoints'])}" if "endpoints" in obj else ""
        return f"PROBLEM {obj['problem']}: {obj['details']}{who}"
    return (
        f"[{obj['level']}] {obj['channel']} #{obj['seq']} from {obj['sender']} "
        f"(block {obj['block_number']}): {obj['payload']}"
    )


def cmd_receive(args: argparse.Namespace) -> int:
    """Run one receive (or follow) and print each message / problem as it comes."""
    from lightpost.cli.main import follows_gateways

    if follows_gateways(args.config):
        try:
            from lightpost_gateway.receive_cmd import cmd_receive as gateways
        except ImportError:
            raise ConfigError("[gateways] needs lightpost[gateway]") from None
        return gateways(args)
    from lightpost.node.config import load_config
    from lightpost.node.receiver import Receiver

    config = load_config(args.config)
    level = Level.parse(args.level)
    sender = None
    if args.sender:
        try:
            sender = parse_address(args.sender)
        except DecodingError as exc:
            raise ConfigError(f"--from: {exc.reason}") from None
    if args.since is not None and args.since < 0:
        raise ConfigError("--since must be a block number >= 0")
    problems = 0
    with Receiver(config) as receiver:
        if args.follow:
            stream = receiver.follow(
                level, args.channel, sender, args.since, timeout=getattr(args, "timeout", None)
            )
        else:
            stream = receiver.poll(level, args.channel, sender, args.since)
        for item in stream:
            if isinstance(item, Problem):
                problems += 1
                obj = problem_json(item, receiver.channel_names)
            else:
                obj = delivered_json(item, receiver.channel_names)
            line = json.dumps(obj, sort_keys=True) if args.json else _text_line(obj)
            print(line, flush=True)
    if problems and not args.json:
        print(f"lightpost: {problems} problem(s) reported", file=sys.stderr)
    return EXIT_PROBLEMS if problems else 0
