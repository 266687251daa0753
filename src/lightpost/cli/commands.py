"""Implementations of the CLI sub-commands (argument parsing lives in cli/main.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["cmd_devnet"]


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def cmd_devnet(args: argparse.Namespace) -> int:
    from lightpost.ops import devnet

    directory = Path(args.dir)
    if args.devnet_cmd == "up":
        desc = devnet.devnet_up(
            directory,
            port=args.port,
            block_time=args.block_time,
            devices=args.devices,
            log=lambda m: print(f"devnet: {m}", file=sys.stderr),
        )
        print(
            f"devnet up: anvil pid {desc['pid']} on {desc['rpc_url']} "
            f"(chain id {desc['chain_id']}), inbox {desc['inbox']}"
        )
        for d in desc["devices"]:
            print(f"  {d['name']:<12} {d['address']}  {d['config']}")
        print(f"stop it with: lightpost devnet down --dir {directory}")
        return 0
    if args.devnet_cmd == "down":
        stopped = devnet.devnet_down(directory)
        print("devnet stopped" if stopped else "devnet was not running")
        return 0
    status = devnet.devnet_status(directory)
    if args.json:
        _print_json(status)
    elif status["up"]:
        print(
            f"devnet up: {status['rpc_url']} chain {status['chain_id']} "
            f"latest {status['latest']} safe {status['safe']} finalized {status['finalized']}"
        )
        for d in status["devices"]:
            print(f"  {d['name']:<12} {d['address']}  {d['balance_wei'] / 1e18:.4f} ETH")
    else:
        print(f"devnet down: {status['reason']}")
    return 0 if status["up"] else 1
