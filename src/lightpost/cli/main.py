"""`lightpost` command-line entry point.

Every failure a user can cause or meet (missing anvil, busy port, devnet not up, bad
config, wrong password, unreachable endpoints) prints ONE line starting with
``lightpost: error:`` and exits non-zero. Tracebacks only with LIGHTPOST_DEBUG=1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from lightpost.errors import LightpostError

__all__ = ["main"]

EXIT_ERROR = 1
"""Exit status of a command that failed with a clear error line."""

EXIT_USAGE = 2
"""argparse's own exit status for bad usage."""

EXIT_INTERRUPTED = 130
"""Conventional status after Ctrl-C (128 + SIGINT)."""

Handler = Callable[[argparse.Namespace], int]


def _add_devnet(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    devnet = sub.add_parser(
        "devnet", help="a local anvil chain with deployed contracts and devices"
    )
    dsub = devnet.add_subparsers(dest="devnet_cmd", required=True, metavar="{up,down,status}")
    up = dsub.add_parser("up", help="start anvil, deploy the inbox, create and fund devices")
    up.add_argument("--dir", required=True, help="devnet directory (created)")
    up.add_argument(
        "--block-time", type=float, default=1.0, help="seconds per block (0 = automine)"
    )
    up.add_argument("--devices", type=int, default=2, help="number of device identities")
    up.add_argument("--port", type=int, default=8545, help="loopback port for anvil")
    down = dsub.add_parser("down", help="stop the devnet's anvil")
    down.add_argument("--dir", required=True)
    status = dsub.add_parser("status", help="is the devnet up; heads; devices")
    status.add_argument("--dir", required=True)
    status.add_argument("--json", action="store_true")


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
    status.add_argument("--json", action="store_true")

    demo = sub.add_parser("demo", help="the smart-city demo on a local devnet")
    demo.add_argument("--devices", type=int, default=4)
    demo.add_argument("--duration", type=float, default=60.0)
    demo.add_argument("--block-time", type=float, default=1.0)
    demo.add_argument("--dir", default=None, help="devnet directory (default: a temp dir)")
    demo.add_argument("--json", action="store_true")


def _add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "command", help="controller: send a signed command to a device or a device class"
    )
    cmd.add_argument("--config", required=True, help="the controller's device config")
    cmd.add_argument("--target", required=True, help="device ADDRESS or class:NAME")
    cmd.add_argument("name", help="command name: set, config, update or a plugin's")
    cmd.add_argument(
        "args", nargs="*", help="key=value arguments (update: image=PATH version=X.Y.Z)"
    )
    cmd.add_argument("--wait-result", action="store_true", help="wait for the signed result")
    cmd.add_argument("--expires-in", type=float, default=600.0, help="validity window, seconds")
    cmd.add_argument("--timeout", type=float, default=180.0, help="seconds to wait at most")
    cmd.add_argument("--json", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightpost", description="Integrity-first IoT messaging over Ethereum."
    )
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    _add_devnet(sub)
    _add_node_commands(sub)
    _add_command(sub)
    return parser


HANDLERS = {
    "devnet": "lightpost.cli.commands:cmd_devnet",
    "send": "lightpost.cli.node_cmds:cmd_send",
    "node": "lightpost.cli.node_cmds:cmd_node",
    "status": "lightpost.cli.node_cmds:cmd_status",
    "receive": "lightpost.cli.receive_cmd:cmd_receive",
    "command": "lightpost.cli.command_cmd:cmd_command",
    "demo": "lightpost.ops.demo:cmd_demo",
}
"""Sub-command -> "module:function", imported only when that command runs (so that
`lightpost --help` does not pay for the whole runtime)."""


def _dispatch(args: argparse.Namespace) -> int:
    module, _, name = HANDLERS[args.cmd].partition(":")
    handler: Handler = getattr(importlib.import_module(module), name)
    return handler(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
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
