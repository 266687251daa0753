"""The operator sub-commands `lightpost devnet`, `lightpost demo`, `lightpost inbox` and the
controller's `lightpost command`.

lightpost's CLI finds them through the ``lightpost.commands`` entry-point group (see
operator/pyproject.toml): each ``add_*`` function adds its parser and returns the
"module:function" of its handler, imported only when the command runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TypeAlias

__all__ = ["add_command", "add_demo", "add_devnet", "add_inbox", "cmd_devnet"]

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_devnet(sub: SubParsers) -> str:
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
    up.add_argument("--port", type=int, default=8545, help="loopback port for the node")
    up.add_argument(
        "--node", choices=("anvil", "ganache"), default="anvil", help="which local chain to run"
    )
    up.add_argument(
        "--beacon",
        action="store_true",
        help='serve a beacon light-client API over anvil; devices get trust = "beacon"',
    )
    up.add_argument(
        "--gateway",
        action="store_true",
        help="devices without an OS: a Mosquitto broker, the anchoring contract, a gateway",
    )
    up.add_argument(
        "--mqtt-devices", type=int, default=2, help="MQTT device identities (with --gateway)"
    )
    down = dsub.add_parser("down", help="stop the devnet's anvil (and broker and gateway)")
    down.add_argument("--dir", required=True)
    status = dsub.add_parser("status", help="is the devnet up; heads; devices")
    status.add_argument("--dir", required=True)
    status.add_argument("--json", action="store_true")
    return "lightpost_operator.cli:cmd_devnet"


def add_demo(sub: SubParsers) -> str:
    demo = sub.add_parser("demo", help="the smart-city demo on a local devnet")
    demo.add_argument("--devices", type=int, default=4)
    demo.add_argument("--duration", type=float, default=60.0)
    demo.add_argument("--block-time", type=float, default=1.0)
    demo.add_argument("--dir", default=None, help="devnet directory (default: a temp dir)")
    demo.add_argument("--json", action="store_true")
    demo.add_argument(
        "--console", action="store_true", help="watch the city in the operator's console"
    )
    demo.add_argument("--console-port", type=int, default=8642, help="the console's port")
    demo.add_argument("--no-browser", action="store_true", help="do not open a browser")
    demo.add_argument(
        "--mqtt-devices",
        type=int,
        default=2,
        help="devices without an OS under MicroPython, through a gateway (0: none)",
    )
    demo.add_argument(
        "--require-mqtt",
        action="store_true",
        help="fail when MicroPython or Mosquitto is missing instead of running without them",
    )
    return "lightpost_operator.demo:cmd_demo"


def add_command(sub: SubParsers) -> str:
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
    return "lightpost_operator.command_cmd:cmd_command"


def add_inbox(sub: SubParsers) -> str:
    inbox = sub.add_parser(
        "inbox", help="the inbox at its one address on every EVM chain: deploy, verify"
    )
    isub = inbox.add_subparsers(dest="inbox_cmd", required=True, metavar="{deploy,verify}")
    deploy = isub.add_parser(
        "deploy", help="deploy it through the CREATE2 deployment proxy (only where missing)"
    )
    verify = isub.add_parser("verify", help="prove its code (eth_getProof) at the final block")
    verify.add_argument("--latest", action="store_true", help="at the latest block instead")
    for p in (deploy, verify):
        p.add_argument("--config", required=True, help="a device config: endpoints, quorum, key")
        p.add_argument("--json", action="store_true")
    return "lightpost_operator.inbox:cmd_inbox"


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def cmd_devnet(args: argparse.Namespace) -> int:
    from lightpost_operator import devnet

    directory = Path(args.dir)
    if args.devnet_cmd == "up":
        desc = devnet.devnet_up(
            directory,
            port=args.port,
            block_time=args.block_time,
            devices=args.devices,
            log=lambda m: print(f"devnet: {m}", file=sys.stderr),
            node=args.node,
            beacon=args.beacon,
            gateway=args.gateway,
            mqtt_devices=args.mqtt_devices,
        )
        print(
            f"devnet up: {desc['node']} pid {desc['pid']} on {desc['rpc_url']} "
            f"(chain id {desc['chain_id']}), inbox {desc['inbox']}"
        )
        for d in desc["devices"]:
            print(f"  {d['name']:<12} {d['address']}  {d['config']}")
        if "gateway" in desc:
            gw = desc["gateway"]
            print(
                f"gateway {gw['address']} (pid {gw['pid']}) on mosquitto {gw['broker']}, "
                f"anchoring contract {gw['anchor']}; MQTT devices (no ETH, no RPC endpoint):"
            )
            for d in gw["mqtt_devices"]:
                print(f"  {d['name']:<12} {d['address']}  {d['config']}")
            print("run one (CPython, then MicroPython with a 64 KiB heap):")
            for line in devnet.device_commands(gw, directory.resolve()):
                print(f"  {line}")
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
        if "gateway" in status:
            gw = status["gateway"]
            state = {True: "up", False: "DOWN"}
            print(
                f"gateway {gw['address']} {state[gw['gateway_up']]}, mosquitto {gw['broker']} "
                f"{state[gw['broker_up']]}"
            )
            for d in gw["mqtt_devices"]:
                anchored = "none" if d["anchored_seq"] is None else f"up to seq {d['anchored_seq']}"
                print(
                    f"  {d['name']:<12} {d['address']}  {d['records']} records, anchored {anchored}"
                )
    else:
        print(f"devnet down: {status['reason']}")
    return 0 if status["up"] else 1
