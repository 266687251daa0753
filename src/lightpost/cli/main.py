"""`lightpost` command-line entry point. Every failure a user can cause or meet prints ONE
``lightpost: error:`` line and exits non-zero; tracebacks only with LIGHTPOST_DEBUG=1."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lightpost.errors import LightpostError

__all__ = ["main"]

EXIT_ERROR = 1
"""Exit status of a command that failed with a clear error line."""

EXIT_USAGE = 2
"""argparse's own exit status for bad usage."""

EXIT_INTERRUPTED = 130
"""Conventional status after Ctrl-C (128 + SIGINT)."""

Handler = Callable[[argparse.Namespace], int]


def _add_node_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = sub.add_parser("send", help="enqueue a message (durable before this returns)")
    send.add_argument("--config", required=True)
    target = send.add_mutually_exclusive_group()
    target.add_argument("--channel", help="channel name (channel mode)")
    target.add_argument("--to", help="recipient address (direct message)")
    data = send.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="message text")
    data.add_argument("--file", help="message bytes from a file")
    send.add_argument(
        "--wait",
        choices=["queued", "broadcast", "included", "final"],
        default="included",
        help="return once the message reached this state",
    )
    send.add_argument("--timeout", type=float, default=120.0, help="seconds to wait at most")
    send.add_argument("--json", action="store_true")

    recv = sub.add_parser("receive", help="receive verified messages")
    recv.add_argument("--config", required=True)
    recv.add_argument("--channel")
    recv.add_argument("--from", dest="sender")
    recv.add_argument(
        "--level", choices=["signed", "included", "final", "complete"], default="final"
    )
    recv.add_argument("--since", type=int, help="start block (default: the persisted cursor)")
    recv.add_argument("--follow", action="store_true", help="keep following new blocks")
    recv.add_argument("--timeout", type=float, default=None, help="with --follow: stop after S s")
    recv.add_argument("--json", action="store_true")

    node = sub.add_parser("node", help="run the device node (send, receive, agent) until SIGTERM")
    node.add_argument("--config", required=True)
    node.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    node.add_argument(
        "--receive",
        choices=["signed", "included", "final", "complete"],
        default=None,
        help="also print messages delivered at this level as JSON lines on stdout",
    )

    status = sub.add_parser("status", help="device health: nonce, outbox, balance, fees, endpoints")
    status.add_argument("--config", required=True)
    status.add_argument(
        "--level",
        choices=("signed", "included", "final", "complete"),
        default="final",
        help="the level the endpoints must serve (default: final)",
    )
    status.add_argument("--json", action="store_true")


HANDLERS = {
    "send": "lightpost.cli.node_cmds:cmd_send",
    "node": "lightpost.cli.node_cmds:cmd_node",
    "status": "lightpost.cli.node_cmds:cmd_status",
    "receive": "lightpost.cli.receive_cmd:cmd_receive",
}
"""Sub-command -> "module:function", imported only when it runs (`lightpost --help` stays cheap)."""

PLUGIN_GROUP = "lightpost.commands"
"""Entry-point group for other distributions' sub-commands (lightpost-operator: ``devnet``,
``demo``, ``command``, ``inbox``, ``doctor``, ...): ``add(subparsers)``."""

OPERATOR_COMMANDS = (
    "devnet",
    "demo",
    "command",
    "key",
    "init",
    "fleet",
    "inbox",
    "doctor",
    "console",
    "gateway",
)
"""lightpost-operator's sub-commands, so a device install can say how to get them."""

OPERATOR_HINT = (
    "`lightpost {cmd}` is an operator tool, not part of the device core: install "
    "lightpost-operator (`pip install ./operator` in the lightpost source tree; "
    "`make demo` and `make test` do this)"
)


def entry_points(group: str) -> Sequence[Any]:
    """The installed entry points of ``group``; importlib.metadata is imported only here (~1.5 MB of
    a running node's memory)."""
    from importlib.metadata import entry_points as installed

    return list(installed(group=group))


def _first_command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(plugins: bool = True) -> tuple[argparse.ArgumentParser, dict[str, str]]:
    """The parser and the handler table: the device commands, plus the registered
    plugins' unless ``plugins`` is false."""
    parser = argparse.ArgumentParser(
        prog="lightpost", description="Integrity-first IoT messaging over Ethereum."
    )
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    _add_node_commands(sub)
    handlers = dict(HANDLERS)
    for entry in entry_points(PLUGIN_GROUP) if plugins else ():
        if entry.name not in handlers:
            handlers[entry.name] = entry.load()(sub)
    return parser, handlers


def _missing_operator_command(first: str | None, handlers: dict[str, str]) -> str | None:
    if first in OPERATOR_COMMANDS and first not in handlers:
        return first
    return None


def follows_gateways(path: str) -> bool:
    """A config with a ``[gateways]`` table, for lightpost[gateway] (unreadable: load_config)."""
    try:
        return "[gateways]" in map(str.strip, Path(path).read_text(encoding="utf-8").split("\n"))
    except (OSError, UnicodeDecodeError):
        return False


def _warn_about_config(args: argparse.Namespace) -> None:
    # One ``lightpost: warning:`` line per risk the device config explicitly accepts.
    path = getattr(args, "config", None)
    if path is not None and not follows_gateways(path):  # a device (or controller) config
        from lightpost.node.config import load_config

        for line in load_config(path).warnings:
            print(f"lightpost: warning: {line}", file=sys.stderr, flush=True)


def _dispatch_handler(args: argparse.Namespace, handlers: dict[str, str]) -> int:
    module, _, name = handlers[args.cmd].partition(":")
    handler: Handler = getattr(importlib.import_module(module), name)
    return handler(args)


def _dispatch(args: argparse.Namespace, handlers: dict[str, str]) -> int:
    _warn_about_config(args)
    return _dispatch_handler(args, handlers)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    first = _first_command(argv)
    # a device command (send, node, ...) does not look for plugins
    parser, handlers = build_parser(plugins=first not in HANDLERS)
    missing = _missing_operator_command(first, handlers)
    if missing is not None:
        print(f"lightpost: error: {OPERATOR_HINT.format(cmd=missing)}", file=sys.stderr)
        return EXIT_ERROR
    args = parser.parse_args(argv)
    try:
        return _dispatch(args, handlers)
    except LightpostError as exc:
        print(f"lightpost: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `lightpost ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("lightpost: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line, unless debugging
        if os.environ.get("LIGHTPOST_DEBUG") == "1":
            raise
        print(
            f"lightpost: internal error: {type(exc).__name__} (rerun with LIGHTPOST_DEBUG=1 "
            "for a traceback, and please report it)",
            file=sys.stderr,
        )
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
