"""`lightpost send`, `node` and `status` (parsers in cli/main.py). Only the holder of ``node.lock``
signs and broadcasts: ``send`` enqueues durably, then drives the outbox itself if no daemon holds
the lock, else polls the store."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from lightpost.adapters.store import RowNotFound, Store
from lightpost.cli.receive_cmd import delivered_json, problem_json
from lightpost.core.envelope import DIRECT_CHANNEL_NAME, ContentType
from lightpost.core.keys import parse_address, to_checksum_address
from lightpost.core.levels import Delivered, Level
from lightpost.core.outbox import State
from lightpost.core.verify import Problem
from lightpost.errors import ChainProcessError, ConfigError, DecodingError, LightpostError
from lightpost.node.config import DeviceConfig, load_config
from lightpost.node.probe import beacon_probe, receives
from lightpost.node.receiver import Receiver
from lightpost.node.runtime import (
    POLL_INTERVAL_S,
    Node,
    NodeLock,
    Service,
    build_chain,
    keystore_address,
    load_key,
    make_sender,
    open_store,
)
from lightpost.node.sender import Sender, SenderSettings, enqueue_message
from lightpost.node.services import ReceiveService
from lightpost.node.status import collect_status

__all__ = [
    "WAIT_ORDER",
    "build_services",
    "cmd_node",
    "cmd_send",
    "cmd_status",
    "send_and_wait",
]

WAIT_ORDER: dict[str, int] = {
    State.QUEUED.value: 0,
    State.HELD.value: 0,
    State.SIGNED.value: 1,
    State.BROADCAST.value: 2,
    State.INCLUDED.value: 3,
    State.FINAL.value: 4,
}
"""How far along the outbox each state is (``--wait LEVEL`` compares with this)."""

STATUS_RPC_TIMEOUT_S = 5.0
"""`lightpost status` gives up on an endpoint after this long (it reports it down)."""

EXIT_UNHEALTHY = 1
"""`lightpost status` exit code when the verdict is not healthy; also `send --timeout`."""


def _log_line(text: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"{stamp} {text}", file=sys.stderr, flush=True)


def build_services(
    config: DeviceConfig, sender: Sender, *, receive_level: Level | None = None
) -> list[Service]:
    """Services after the sender: the agent (an enabled ``[agent]``) and, with ``receive_level``,
    each delivery printed as a ``receive --json`` line."""
    services: list[Service] = []
    built = None
    anchor = getattr(sender.chain, "anchor", None)  # one light client per node (trust = beacon)
    if config.agent and config.agent.get("enabled") is not False:  # an [agent] table in use
        try:
            from lightpost_agent.service import AgentService, build_agent, with_command_channel
        except ImportError:
            raise ConfigError(
                "config: the [agent] table needs the agent: pip install 'lightpost[agent]'"
            ) from None
        built = build_agent(config, sender, address=sender.address)
    if built is not None:
        agent, policy = built
        receiver = Receiver(with_command_channel(config, policy), me=sender.address, anchor=anchor)
        services.append(
            AgentService(
                agent,
                receiver,
                level=policy.min_level,
                on_result=lambda d, r: _log_line(
                    f"agent: command seq {r.command_seq} from "
                    f"{to_checksum_address(d.sender)}: {r.status} ({r.reason})"
                ),
                on_problem=lambda p: _log_line(f"agent: {p.kind}: {p.details}"),
            )
        )
        _log_line(f"agent: enabled (class {policy.device_class}, min level {policy.min_level})")
    if receive_level is not None:
        receiver = Receiver(config, me=sender.address, anchor=anchor)
        names = dict(receiver.channel_names)

        def emit(item: Delivered | Problem) -> None:
            line = (
                problem_json(item, names)
                if isinstance(item, Problem)
                else delivered_json(item, names)
            )
            print(json.dumps(line, sort_keys=True), flush=True)

        services.append(ReceiveService(receiver, level=receive_level, on_item=emit))
    return services


# --- send ---


def _payload(args: argparse.Namespace) -> tuple[bytes, int]:
    if args.data is not None:
        return str(args.data).encode("utf-8"), int(ContentType.TEXT)
    try:
        return Path(args.file).read_bytes(), int(ContentType.OCTET_STREAM)
    except OSError as exc:
        raise ConfigError(f"cannot read --file {args.file}: {exc.strerror}") from None


def _target(args: argparse.Namespace) -> tuple[str | None, bytes | None]:
    if args.to:
        try:
            return None, parse_address(args.to)
        except DecodingError as exc:
            raise ConfigError(f"--to: {exc.reason}") from None
    if args.channel:
        if args.channel == DIRECT_CHANNEL_NAME:
            raise ConfigError(f"channel name {DIRECT_CHANNEL_NAME!r} is reserved")
        return str(args.channel), None
    raise ConfigError("say where the message goes: --channel NAME or --to ADDRESS")


def _message_view(store: Store, message_id: int) -> dict[str, Any]:
    # The message's state and its transaction, for printing.
    try:
        m = store.message(message_id)
    except RowNotFound:
        # FINAL rows are pruned after PRUNE_AFTER_S: a vanished message was final.
        return {"id": message_id, "state": State.FINAL.value, "pruned": True}
    view: dict[str, Any] = {
        "id": m.id,
        "channel": m.channel,
        "recipient": to_checksum_address(m.recipient) if m.recipient else None,
        "seq": m.seq,
        "state": m.state.value,
        "hold_reason": m.hold_reason,
        "tx_hash": None,
        "nonce": None,
        "block_number": None,
        "block_hash": None,
    }
    if m.tx_id is not None:
        tx = store.transaction(m.tx_id)
        mined = tx.mined_hash or tx.tx_hash
        view.update(
            tx_hash="0x" + mined.hex(),
            tx_hashes=["0x" + h.hex() for h in tx.candidate_hashes],
            nonce=tx.nonce,
            block_number=tx.included.number if tx.included else None,
            block_hash="0x" + tx.included.hash.hex() if tx.included else None,
        )
    return view


def _wait(
    store: Store,
    message_id: int,
    level: str,
    deadline: float,
    work: Callable[[], object],
) -> dict[str, Any]:
    target = WAIT_ORDER[level]
    while True:
        work()
        view = _message_view(store, message_id)
        if WAIT_ORDER[view["state"]] >= target or time.monotonic() >= deadline:
            return view
        time.sleep(POLL_INTERVAL_S)


def send_and_wait(
    config: DeviceConfig,
    *,
    payload: bytes,
    channel: str | None,
    recipient: bytes | None,
    content_type: int,
    wait: str,
    timeout: float,
) -> dict[str, Any]:
    """Enqueue durably, then wait (at most ``timeout`` s) for state ``wait``: without a running node
    this process takes the lock and drives the outbox, with one it only polls. Returns the
    message view."""
    lock = NodeLock.for_config(config)
    drive = wait != State.QUEUED.value and lock.acquire()
    try:
        key = load_key(config) if drive else None  # a wrong password fails before enqueue
        with open_store(config) as store:
            message_id = enqueue_message(
                store,
                payload=payload,
                channel=channel,
                recipient=recipient,
                content_type=content_type,
                now=time.time(),
            )
            deadline = time.monotonic() + timeout
            if wait == State.QUEUED.value:
                return _message_view(store, message_id)
            if key is None:
                return _wait(store, message_id, wait, deadline, lambda: None)
            chain = build_chain(config)
            sender = make_sender(config, key, store, chain)
            try:
                return _wait(store, message_id, wait, deadline, lambda: sender.step(time.time()))
            finally:
                sender.close()
                chain.close()
    finally:
        lock.release()


def cmd_send(args: argparse.Namespace) -> int:
    """Enqueue one message durably; optionally wait until it reaches ``--wait``."""
    config = load_config(args.config)
    payload, content_type = _payload(args)
    channel, recipient = _target(args)
    view = send_and_wait(
        config,
        payload=payload,
        channel=channel,
        recipient=recipient,
        content_type=content_type,
        wait=args.wait,
        timeout=args.timeout,
    )
    message_id = view["id"]
    reached = WAIT_ORDER[view["state"]] >= WAIT_ORDER[args.wait]
    view["waited_for"] = args.wait
    view["reached"] = reached
    if args.json:
        print(json.dumps(view, sort_keys=True))
    else:
        line = f"message {message_id}: {view['state']}"
        if view.get("tx_hash"):
            line += f", tx {view['tx_hash']} (nonce {view['nonce']}"
            if view.get("block_number") is not None:
                line += f", block {view['block_number']}"
            line += ")"
        if view.get("hold_reason"):
            line += f", held: {view['hold_reason']}"
        print(line)
        if not reached:
            print(
                f"lightpost: timed out waiting for {args.wait}; the message stays in the "
                "outbox and `lightpost node` will send it",
                file=sys.stderr,
            )
    return 0 if reached else EXIT_UNHEALTHY


# --- node ---


def cmd_node(args: argparse.Namespace) -> int:
    """Run the device node until SIGTERM/SIGINT or ``--duration`` seconds."""
    config = load_config(args.config)
    key = load_key(config)
    lock = NodeLock.for_config(config)
    if not lock.acquire():
        raise ChainProcessError(
            f"another lightpost process (pid {lock.holder()}) is already sending from "
            f"{config.data_dir}"
        )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with open_store(config) as store:
            chain = build_chain(config)
            try:
                try:
                    remote = chain.chain_id()
                except LightpostError as exc:
                    _log_line(f"warning: chain id not confirmed yet ({exc}); retrying as we go")
                else:
                    if remote != config.chain_id:
                        raise ConfigError(
                            f"endpoints serve chain id {remote}, the config says {config.chain_id}"
                        )
                sender = make_sender(config, key, store, chain, log=_log_line)
                services = build_services(
                    config,
                    sender,
                    receive_level=None if args.receive is None else Level.parse(args.receive),
                )
                node = Node(sender, services, log=_log_line)
                _log_line(
                    f"lightpost node {config.name}: {key.checksum_address}, "
                    f"{len(config.endpoints)} endpoint(s), quorum {config.quorum}, "
                    f"{config.mode} mode"
                )
                try:
                    node.run(stop, duration=args.duration)
                finally:
                    sender.close()
                    for service in services:
                        service.close()
            finally:
                chain.close()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        lock.release()
    _log_line("lightpost node: stopped")
    return 0


# --- status ---


def _gwei(wei: int | None) -> str:
    return "?" if wei is None else f"{wei / 1e9:.3f} gwei"


def _render_status(st: dict[str, Any]) -> str:
    lines = [
        f"{st['device']}  {st['address']}  ({st['mode']} mode, chain {st['chain_id']}, "
        f"keccak {st['keccak']})"
    ]
    lines.append(
        "node:       "
        + (f"running (pid {st['node_pid']})" if st["node_running"] else "not running")
    )
    n = st["nonce"]
    answers = ", ".join(f"{k}={v}" for k, v in n["answers"].items())
    lines.append(f"nonce:      local next {n['local_next']}, quorum {n['quorum']} ({answers})")
    lines.append("outbox:     " + ", ".join(f"{k} {v}" for k, v in st["outbox"].items()))
    for h in st["held"]:
        lines.append(f"held:       {h['count']} x {h['reason']}")
    bal = st["balance_wei"]
    lines.append("balance:    " + ("?" if bal is None else f"{bal / 1e18:.6f} ETH ({bal} wei)"))
    f = st["fees"]
    state = "ABOVE CAP: messages wait" if f["above_cap"] else "ok"
    lines.append(
        f"fees:       base fee {_gwei(f['base_fee_wei'])}, cap {_gwei(f['cap_wei'])} "
        f"({f['policy']}): {state}"
    )
    fin = st["finalized"]
    lines.append("finalized:  " + ("?" if fin is None else f"#{fin['number']} {fin['hash']}"))
    for i, ep in enumerate(st["endpoints"]):
        head = "endpoints:  " if i == 0 else "            "
        if ep["reachable"]:
            cannot = ", ".join(f"{c['capability']} ({c['detail']})" for c in ep["cannot"])
            lines.append(
                f"{head}{ep['label']} "
                + (f"CANNOT SERVE {st['level']}: {cannot}" if cannot else "ok")
                + f", chain {ep['chain_id']}, head {ep['head']}, {ep['latency_ms']} ms"
            )
        else:
            lines.append(f"{head}{ep['label']} DOWN ({ep['error']}), {ep['latency_ms']} ms")
    if st.get("beacon"):  # trust = beacon/both
        from lightpost_beacon.probe import render_rows

        lines += ["beacon:     " + line.strip() for line in render_rows(st["beacon"])]
    for w in st["warnings"]:
        lines.append(f"warning:    {w}")
    lines.append(f"verdict:    {st['verdict']}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    """One screen of device health; exit 0 when healthy, 1 otherwise."""
    config = load_config(args.config)
    address = keystore_address(config)
    if address is None:
        address = load_key(config).address
    holder = NodeLock.for_config(config).holder()
    with open_store(config) as store:
        chain = build_chain(config, timeout=STATUS_RPC_TIMEOUT_S)
        try:
            st = collect_status(
                store=store,
                chain=chain,
                address=address,
                settings=SenderSettings.from_config(config),
                now=time.time(),
                node_running=holder is not None,
                level=args.level,
                receives=receives(config),
                beacon=beacon_probe(config),
            )
        finally:
            chain.close()
    st["device"] = config.name
    st["node_pid"] = holder
    st["data_dir"] = str(config.data_dir)
    if args.json:
        print(json.dumps(st, sort_keys=True))
    else:
        print(_render_status(st))
    return 0 if st["healthy"] else EXIT_UNHEALTHY
