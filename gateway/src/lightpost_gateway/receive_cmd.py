"""`lightpost receive --config FILE` on a config that follows gateways (issue 14).

The config is a device config (chain_id, endpoints, quorum, finality_depth, data_dir; no keystore)
with a ``[gateways]`` table::

    [gateways]
    broker = "127.0.0.1:1883"                       # HOST:PORT of the MQTT broker
    follow = ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "0x3C44...93BC"]  # payers
    devices = ["0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"]  # optional: authorized devices
    store = "receiver.sqlite"                      # optional: cursors (in data_dir)
    id = "office-1"                                # optional: this receiver's reply id

One JSON object (``--json``) or text line per delivered record or problem; exit 0, or 3 when a
problem was reported. Without ``--follow`` it stops once every gateway's backfill is taken and
the chain was checked after it (or at ``--timeout``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from lightpost.core.hashing import keccak256
from lightpost.core.keys import parse_address, to_checksum_address
from lightpost.core.levels import Level
from lightpost.errors import ConfigError, DecodingError

from .anchor import ANCHOR_ADDRESS
from .follow import Delivery, Follower, Problem, ReceiverStore
from .record import Domain
from .service import GatewayClient

__all__ = ["GATEWAY_KEYS", "ONE_SHOT_S", "cmd_receive", "delivery_json", "parse_gateways"]

GATEWAY_KEYS = frozenset({"broker", "follow", "devices", "store", "id", "anchor"})
"""Keys of the ``[gateways]`` table."""

ONE_SHOT_S = 60.0
"""Longest run without ``--follow`` (and without ``--timeout``)."""


def _addresses(values: Any, key: str) -> tuple[bytes, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"config: `gateways.{key}` is a list of addresses")
    try:
        return tuple(parse_address(v) for v in values)
    except DecodingError as exc:
        raise ConfigError(f"config: `gateways.{key}`: {exc.reason}") from None


def parse_gateways(table: Any, base: Path) -> dict[str, Any]:
    """The validated ``[gateways]`` table: broker (host, port), follow, devices, store, id."""
    if not isinstance(table, dict):
        raise ConfigError("config: `gateways` is a table")
    unknown = sorted(set(table) - GATEWAY_KEYS)
    if unknown:
        raise ConfigError(f"config: unknown key `gateways.{unknown[0]}`")
    host, _, port = str(table.get("broker", "")).rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("config: `gateways.broker` is HOST:PORT")
    follow = _addresses(table.get("follow"), "follow")
    if not follow:
        raise ConfigError("config: `gateways.follow` names at least one gateway")
    devices = _addresses(table["devices"], "devices") if "devices" in table else None
    store = base / str(table.get("store", "receiver-gateways.sqlite"))
    reply_id = str(table.get("id", "lp-" + keccak256(str(store).encode())[:8].hex()))
    anchor = _addresses([table["anchor"]], "anchor")[0] if "anchor" in table else ANCHOR_ADDRESS
    return {
        "host": host,
        "port": int(port),
        "follow": follow,
        "devices": devices,
        "store": store,
        "id": reply_id,
        "anchor": anchor,
    }


def _hex(data: bytes | None) -> str | None:
    return None if data is None else "0x" + data.hex()


def delivery_json(item: Delivery | Problem) -> dict[str, Any]:
    """One output object: a delivered record, or a problem (``problem``: its kind)."""
    if isinstance(item, Problem):
        return {
            "problem": item.kind,
            "details": item.details,
            "gateway": item.gateway and to_checksum_address(item.gateway),
            "device": item.device and to_checksum_address(item.device),
        }
    r = item.record
    out: dict[str, Any] = {
        "device": to_checksum_address(item.device),
        "seq": item.seq,
        "hash": _hex(item.hash),
        "kind": r.kind.name.lower(),
        "stream": r.stream.decode("utf-8", "replace"),
        "content_type": r.content_type,
        "time_ms": r.time_ms,
        "level": str(item.level),
        "gateway": to_checksum_address(item.gateway),
        "payload_hex": _hex(r.payload),
    }
    with contextlib.suppress(UnicodeDecodeError):
        out["payload"] = r.payload.decode("utf-8")
    return out


def _line(obj: dict[str, Any]) -> str:
    if "problem" in obj:
        return f"problem {obj['problem']}: {obj['details']}"
    text = obj.get("payload", obj["payload_hex"])
    return f"{obj['device']} seq {obj['seq']} {obj['kind']} {obj['stream']}: {text}"


def cmd_receive(args: argparse.Namespace) -> int:
    from lightpost.cli.receive_cmd import EXIT_PROBLEMS
    from lightpost.node.config import parse_config
    from lightpost.node.runtime import build_chain

    path = Path(args.config).resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if args.channel or args.sender or args.since is not None:
        raise ConfigError("--channel, --from and --since do not apply to [gateways]")
    table = raw.pop("gateways", None)
    raw.setdefault("keystore", "-")  # a device config's required key; a receiver signs nothing
    config = parse_config(raw, path=path)
    gw = parse_gateways(table, config.data_dir)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    level = Level.parse(args.level)
    chain = build_chain(config)
    client = GatewayClient("lpr-" + gw["id"])
    store = ReceiverStore(gw["store"])
    try:
        if chain.chain_id() != config.chain_id:
            raise ConfigError("the endpoints serve another chain id than the config's")
        client.open(gw["host"], gw["port"])
        follower = Follower(
            chain=chain,
            domain=Domain(chain_id=config.chain_id, anchor=gw["anchor"]),
            gateways=gw["follow"],
            client=client,
            store=store,
            level=level,
            reply_id=gw["id"],
            devices=gw["devices"],
            finality_depth=config.finality_depth,
        )
        stopping: list[bool] = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        limit = args.timeout if args.timeout is not None else (None if args.follow else ONE_SHOT_S)
        deadline = None if limit is None else time.monotonic() + limit

        def stop() -> bool:
            if stopping or (deadline is not None and time.monotonic() > deadline):
                return True
            return not args.follow and follower.caught_up()

        problems = 0
        try:
            for item in follower.follow(stop=stop):
                problems += isinstance(item, Problem)
                obj = delivery_json(item)
                print(json.dumps(obj, sort_keys=True) if args.json else _line(obj), flush=True)
        except KeyboardInterrupt:
            pass
    finally:
        client.shut()
        store.close()
        chain.close()
    if problems and not args.json:
        print(f"lightpost: {problems} problem(s) reported", file=sys.stderr)
    return EXIT_PROBLEMS if problems else 0
