"""`lightpost gateway deploy | run`: the anchoring contract, and a gateway for devices without an
operating system (issue 14; lightpost_gateway.service holds the theory of operation).

``deploy`` puts the anchoring contract at its one address (CREATE2, like the inbox). ``run``
subscribes to ``$share/<group>/lp/1/d/+`` on the broker, verifies, batches and anchors the
devices' records -- one transaction per batch, paid by the config's key, sent through the
anchoring outbox beside it (``<db>.outbox``: fee cap, bumps at the same nonce; see
lightpost_operator.anchoring) -- and sends each device its receipt. Its SQLite file keeps every
record for backfill.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from lightpost.adapters.store import Store
from lightpost.core.fees import Eip1559FeePolicy, FeePolicy
from lightpost.core.keys import PrivateKey, parse_address, to_checksum_address
from lightpost.errors import ConfigError, LightpostError
from lightpost.node.chain import Chain
from lightpost_gateway.anchor import ANCHOR_ADDRESS, ANCHOR_SALT
from lightpost_gateway.artifact import anchor_initcode, anchor_runtime
from lightpost_gateway.mqtt import MQTTError
from lightpost_gateway.publish import Publisher
from lightpost_gateway.record import Domain
from lightpost_gateway.service import Anchored, Gateway, GatewayClient, GatewayStore
from lightpost_operator.anchoring import ANCHOR_WAIT_S, AnchorSender, outbox_path
from lightpost_operator.inbox import deploy_create2

__all__ = [
    "add_gateway",
    "chain_anchor",
    "cmd_gateway",
    "deploy_anchor",
    "read_authorized",
    "shared_topic",
]

RECONNECT_S: Final = (1.0, 2.0, 5.0, 10.0)
"""Waits before each reconnect to a lost broker (then the last, again): the gateway resumes from
its store; the broker redelivers what it had not acknowledged (persistent session)."""

DEFAULT_GROUP = "lightpost"
"""The shared-subscription group of gateways that split one broker's records."""


def shared_topic(group: str) -> str:
    """MQTT shared subscription (Mosquitto grants it to 3.1.1 clients too)."""
    return f"$share/{group}/lp/1/d/+"


def deploy_anchor(
    chain: Chain, chain_id: int, funder: PrivateKey, log: Callable[[str], None] = lambda _m: None
) -> tuple[bytes, bool, int]:
    return deploy_create2(
        chain,
        chain_id,
        funder,
        name="anchoring contract",
        salt=ANCHOR_SALT,
        initcode=anchor_initcode(),
        runtime=anchor_runtime(),
        address=ANCHOR_ADDRESS,
        log=log,
    )


def chain_anchor(
    chain: Chain,
    chain_id: int,
    key: PrivateKey,
    *,
    policy: FeePolicy | None = None,
    timeout: float = ANCHOR_WAIT_S,
) -> Callable[[bytes], Anchored]:
    """One batch -> one transaction to the anchoring contract, waited for until proven (operator
    tools and tests; its outbox is a temporary file). ``lightpost gateway run`` anchors through a
    durable, non-blocking :class:`~lightpost_operator.anchoring.AnchorSender` instead."""
    tmp = tempfile.TemporaryDirectory(prefix="lp-anchor-")
    sender = AnchorSender(
        chain=chain,
        chain_id=chain_id,
        key=key,
        store=Store.open(Path(tmp.name) / "outbox.sqlite"),
        policy=policy or Eip1559FeePolicy(),
    )

    def anchor(calldata: bytes) -> Anchored:
        _keep = tmp  # the outbox lives as long as this callable
        return sender.wait(calldata, timeout)

    return anchor


def read_authorized(path: Path) -> frozenset[bytes]:
    """The device addresses in ``path``: one 0x-address per line, ``#`` comments."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"--devices: cannot read {path}: {exc.strerror}") from None
    out = set()
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if text:
            try:
                out.add(parse_address(text))
            except LightpostError:
                raise ConfigError(f"--devices: line {n} of {path} is not an address") from None
    return frozenset(out)


def add_gateway(sub: Any) -> str:
    gw = sub.add_parser("gateway", help="devices without an OS: anchoring contract and gateway")
    gsub = gw.add_subparsers(dest="gateway_cmd", required=True, metavar="{deploy,run}")
    deploy = gsub.add_parser("deploy", help="deploy the anchoring contract (only where missing)")
    run = gsub.add_parser("run", help="verify, batch and anchor device records from a broker")
    run.add_argument("--broker", default="127.0.0.1:1883", help="HOST:PORT of the MQTT broker")
    run.add_argument("--db", required=True, help="the gateway's SQLite file")
    run.add_argument("--group", default=DEFAULT_GROUP, help="shared-subscription group")
    run.add_argument("--mode", choices=("anchored", "posted"), default="anchored")
    run.add_argument("--interval", type=float, default=60.0, help="seconds per batch at most")
    run.add_argument(
        "--devices",
        default=None,
        help="file of authorized device addresses, one per line (default: any signer)",
    )
    for p in (deploy, run):
        p.add_argument("--config", required=True, help="a device config: endpoints, quorum, key")
    return "lightpost_operator.gateway_cmd:cmd_gateway"


def cmd_gateway(args: argparse.Namespace) -> int:
    from lightpost.node.config import load_config
    from lightpost.node.runtime import build_chain, load_key
    from lightpost.node.sender_settings import fee_policy

    def log(line: str) -> None:
        print(f"gateway: {line}", file=sys.stderr)

    config = load_config(args.config)
    chain = build_chain(config)
    try:
        chain_id = chain.chain_id()
        key = load_key(config)
        if args.gateway_cmd == "deploy":
            address, deployed, _ = deploy_anchor(chain, chain_id, key, log)
            state = "deployed" if deployed else "already"
            print(f"anchoring contract {state} at {to_checksum_address(address)}")
            return 0
        host, _, port = args.broker.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError("--broker is HOST:PORT")
        client_id = f"lpgw-{key.address.hex()[:12]}"
        sub, pub = GatewayClient(client_id), GatewayClient(client_id + "-pub")
        outbox = Store.open(outbox_path(Path(args.db)))
        anchorer = AnchorSender(
            chain=chain,
            chain_id=chain_id,
            key=key,
            store=outbox,
            policy=fee_policy(config),
            finality_depth=config.finality_depth,
            log=log,
        )
        gateway = Gateway(
            store=GatewayStore(Path(args.db)),
            domain=Domain(chain_id=chain_id, anchor=ANCHOR_ADDRESS),
            anchor=anchorer,
            sub=sub,
            pub=pub,
            mode=args.mode,
            authorized=read_authorized(Path(args.devices)) if args.devices else None,
            batch_interval_s=args.interval,
            log=log,
        )
        stopping: list[bool] = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        lost = 0
        try:
            while not stopping:
                try:
                    sub.pending.clear()  # their packet ids belonged to the lost connection
                    pub.pending.clear()
                    sub.open(host, int(port))
                    sub.listen(shared_topic(args.group))
                    pub.open(host, int(port))
                    # after pub.open: it subscribes to the backfill requests (again, on reconnect)
                    publisher = Publisher(store=gateway.store, gateway=key.address, client=pub)
                    topic = shared_topic(args.group)
                    log(f"subscribed to {topic} at {args.broker}, mode {args.mode}")
                    lost = 0
                    gateway.run(stop=lambda: bool(stopping), tick=publisher.tick)
                except (MQTTError, OSError) as exc:
                    sub.shut()
                    pub.shut()
                    wait = RECONNECT_S[min(lost, len(RECONNECT_S) - 1)]
                    lost += 1
                    log(f"broker {args.broker}: {type(exc).__name__}; reconnecting in {wait:g} s")
                    time.sleep(wait)
        except KeyboardInterrupt:
            pass
        finally:
            sub.shut()
            pub.shut()
            gateway.store.close()
            anchorer.close()
            outbox.close()
        return 0
    finally:
        chain.close()
