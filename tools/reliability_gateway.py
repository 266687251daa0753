"""The gateway chaos run of `make reliability` (issue 14's 'done when'): two gateways share one
broker; kill -9 of a gateway and of the broker at random moments; 0 lost, 0 duplicated deliveries.

The world, all real processes on loopback: an anvil devnet (`lightpost devnet up`, 1 s blocks by
default), the anchoring contract deployed, one Mosquitto (persistence with autosave on every
change, issue 14), two `lightpost gateway run` processes in one shared-subscription group, each
paying from its own devnet key. In this process: ``devices`` simulated devices, each the CPython
:class:`lightpost.device.Device` with its own key and flash directory and a persistent MQTT
session, publishing ``records`` data records in all, round robin, as fast as the broker
acknowledges them. A device reconnects (a new birth, every retained record published again)
when the broker drops it, and republishes a retained record that got no receipt within
REPUBLISH_S.

The seeded schedule kills: at random points of the run (a random record count, the first in the
first half), a gateway (chosen at random) or the broker is SIGKILLed and restarted after a random
pause -- the broker on the same port with the same persistence directory. A gateway reconnects
to a lost broker by itself (`gateway_exits` counts any exit it was not killed for); one that
exits on its own anyway is restarted by this supervisor after RESTART_S.

Truth is the chain. :func:`count_deliveries` is the receiving end, in one function: every batch
event of the anchoring contract, its transaction and receipt proven in its block
(lightpost_gateway.receiver.prove_anchor_tx), the batch's leaves as the gateway that anchored it
stored them, each leaf's records (fetched from any gateway's store) checked by the pure relay rule
(lightpost_gateway.relay.verify_relayed), then the receiving rule per device (device, seq, hash
chain: lightpost_gateway.record.classify_link) that drops a replay -- a record anchored twice
(re-anchoring after a crash; a device republishing to the other gateway) is delivered once. A
record the devices signed (data and births) and the rule did not deliver is *lost*; a (device,
seq) delivered more than once is *duplicated*; a delivered hash that no device signed is
*forged*.

:class:`MergedCount` counts the same through the receiver a user runs: the merging receiver
(lightpost_gateway.follow, `lightpost receive` on a ``[gateways]`` config) at ``complete``,
following both gateways live through the kills (a broker kill is a receiver restart on its
SQLite file); ``merged_lost``/``merged_duplicated``/``merged_forged`` must be 0 as well.

Usage: python tools/reliability_gateway.py [--records N] [--devices N] [--kills N] [--seed N]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.levels import Level
from lightpost.device import Device, MQTTError
from lightpost.device.store import StoreFull
from lightpost.errors import LightpostError
from lightpost.node.chain import Chain, parse_quantity
from lightpost.node.config import load_config
from lightpost.node.runtime import load_key
from lightpost_gateway.anchor import ANCHOR_ADDRESS, EVENT_TOPIC
from lightpost_gateway.batch import Leaf, prove_inclusion
from lightpost_gateway.follow import Delivery, Follower, ReceiverStore
from lightpost_gateway.mqtt import MQTTError as GatewayMQTTError
from lightpost_gateway.receiver import prove_anchor_tx
from lightpost_gateway.record import ChainEntry, Domain, Link, classify_link
from lightpost_gateway.relay import anchored_root, verify_relayed
from lightpost_gateway.service import GatewayClient
from lightpost_operator.anvil import LOOPBACK, free_port
from lightpost_operator.devnet import devnet_down, devnet_up
from lightpost_operator.gateway_cmd import deploy_anchor
from lightpost_operator.mosquitto import MOSQUITTO_CONF, Mosquitto

Progress = Callable[[str], None]

BROKER_CONF = MOSQUITTO_CONF.replace("max_queued_messages 0\n", "")
"""The devnet's broker (lightpost_operator.mosquitto: persistence saved on every change, run as
whoever runs it) with Mosquitto's default per-client queue of 1,000 kept: the harsher case, in
which the broker drops records it acknowledged while a gateway anchors, and devices must
republish them."""

GROUP = "chaos"
"""The gateways' shared-subscription group."""

BATCH_INTERVAL_S = 1.0
"""The gateways' --interval: a batch a second keeps many anchoring transactions in flight, so
kills land inside anchoring as often as inside receiving."""

REPUBLISH_S = 20.0
"""A device republishes a retained record that got no receipt for this long (a gateway's
restart, its key decryption and a batch take a few seconds on the busy 2-core machine)."""

RESTART_S = 1.0
"""Pause before the supervisor restarts a gateway that exited on its own."""

RECONNECT_S = 1.0
"""A device's pause before reconnecting after the broker dropped it (each connect signs a
birth: a tight loop would fill its flash with births)."""

KILL_PAUSE_S = (0.2, 3.0)
"""A killed process stays down for a random time in this range, seconds."""

MERGED_S = 180.0
"""After every receipt, how long the merging receiver may take to deliver the rest at complete."""

MERGED_FINALITY_DEPTH = 2
"""The merging receiver's finality depth on the devnet (blocks below latest)."""

MAX_PROBLEMS_KEPT = 200
"""Receiver problems kept for the report (all are counted by kind)."""

DRAIN_S = 180.0
"""After the last record and the last kill: how long every device may take to receive the
receipts of all its records."""

PAYLOAD = 100
"""Bytes per reading (the issue's 100-byte reading)."""


# --- the processes ---------------------------------------------------------------------------


class Broker(Mosquitto):
    """One Mosquitto; ``kill`` is SIGKILL, ``start`` again reuses port and persistence dir."""

    def __init__(self, workdir: Path, conf: str | None = None) -> None:
        super().__init__(workdir, conf=conf or BROKER_CONF)


class GatewayProcess:
    """One `lightpost gateway run` (stderr appended to its log file)."""

    def __init__(self, name: str, config: Path, db: Path, broker_port: int, log: Path) -> None:
        self.name, self.config, self.db, self.port, self.log = name, config, db, broker_port, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.interval = BATCH_INTERVAL_S
        self.down_until = 0.0
        self.starts = 0
        self.exits: Counter[str] = Counter()

    def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "lightpost.cli.main", "gateway", "run"),
                    *("--config", str(self.config), "--db", str(self.db)),
                    *("--broker", f"{LOOPBACK}:{self.port}", "--group", GROUP),
                    *("--interval", str(self.interval)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.starts += 1

    def kill(self, pause: float) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        self.down_until = time.monotonic() + pause

    def supervise(self) -> None:
        """Restart when it is due: after a kill's pause, or RESTART_S after it exited itself."""
        now = time.monotonic()
        if self.proc is not None and self.proc.poll() is not None:
            self.exits[f"exit status {self.proc.returncode}"] += 1
            self.proc = None
            self.down_until = now + RESTART_S
        if self.proc is None and now >= self.down_until:
            self.start()

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code


def _last_error(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if "error" in ln]
    return lines[-1].strip()[:160] if lines else "exited without an error line"


# --- the devices -----------------------------------------------------------------------------


class ChaosDevice(Device):  # type: ignore[misc]  # the device library is untyped (MicroPython)
    """A lightpost.device.Device that remembers every record it signed (the truth of the count)
    and when it last published each retained one."""

    def __init__(self, secret: bytes, chain_id: int, state_dir: Path) -> None:
        super().__init__(secret, chain_id, ANCHOR_ADDRESS, str(state_dir), cadence_s=60)
        self.signed: dict[int, bytes] = {}
        self.sent_at: dict[int, float] = {}
        self.online = False
        self.retry_at = 0.0
        self.data = 0
        self.republished = 0
        self.reconnects = 0

    def record(self, kind: int, stream: bytes = b"", payload: bytes = b"", content_type: int = 0,
               time_ms: int = 0) -> tuple[int, bytes, bytes]:  # fmt: skip
        seq, digest, wire = super().record(kind, stream, payload, content_type, time_ms)
        self.signed[seq] = digest
        self.sent_at[seq] = time.monotonic()
        return seq, digest, wire

    def drop(self, now: float) -> None:
        """The broker went away: close without DISCONNECT (the will goes out if it still can)."""
        if self.mqtt is not None:
            self.mqtt.close()
            self.mqtt = None
        self.online = False
        self.retry_at = now + RECONNECT_S

    def try_connect(self, port: int, now: float) -> None:
        if now < self.retry_at:
            return
        try:
            socket.create_connection((LOOPBACK, port), timeout=0.5).close()
        except OSError:  # the broker is down: no birth for a connection that cannot happen
            self.retry_at = now + RECONNECT_S
            return
        try:
            self.connect(LOOPBACK, port)
        except (OSError, MQTTError, StoreFull):
            self.drop(now)
            return
        self.online = True
        self.reconnects += 1
        for seq in self.store.retained():
            self.sent_at[seq] = now

    def publish_next(self, rng: random.Random, now: float) -> bool:
        payload = rng.randbytes(PAYLOAD)
        try:
            self.publish(b"temp", payload)
        except StoreFull:
            return False
        except (OSError, MQTTError):  # signed and retained: published again on reconnect
            self.data += 1
            self.drop(now)
            return True
        self.data += 1
        return True

    def drain(self) -> None:
        """Take every receipt the broker has for this device."""
        for _ in range(64):
            if self.mqtt is None or self.mqtt.sock is None:
                return
            if not select.select([self.mqtt.sock], [], [], 0)[0]:
                return
            self.poll(0)

    def overdue(self, now: float) -> None:
        """Republish (Device.republish: every retained record) when a receipt is overdue."""
        retained = self.store.retained()
        if any(now - self.sent_at.get(seq, now) >= REPUBLISH_S for seq in retained):
            self.republish()
            self.republished += len(retained)
            for seq in retained:
                self.sent_at[seq] = now


# --- the count -------------------------------------------------------------------------------


@dataclass
class Deliveries:
    """What the receiving end delivered, from the chain."""

    delivered: dict[tuple[bytes, int], bytes] = field(default_factory=dict)
    """(device, seq) -> record hash, each delivered once by the rule."""
    deliveries: Counter[tuple[bytes, int]] = field(default_factory=Counter)
    """(device, seq) -> how many times it was delivered (1, or a duplicated delivery)."""
    anchor_txs: int = 0
    roots_anchored_twice: int = 0
    replays: int = 0
    """Records the receiving rule dropped as replays: anchored twice, or already delivered
    through another gateway's leaf (a leaf's range may hold records of the other gateway)."""
    anchored_twice: int = 0
    """Records in two or more anchored batches (republished to the other gateway, or a batch
    anchored again after a crash): on chain more than once."""
    forks: int = 0
    unexplained_anchors: int = 0
    """Batch events whose root no gateway's store explains (missing off-chain data)."""
    unlinked: int = 0
    """Records of an anchored leaf that could not be delivered: a record below them is held by
    no gateway, so they do not link to the anchored head."""
    problems: list[str] = field(default_factory=list)


def _stored_batches(
    stores: Sequence[Path],
) -> tuple[dict[bytes, list[Leaf]], dict[Any, bytes], dict[bytes, list[Any]]]:
    """Every anchored batch's leaves (by root), every held record (by (device, seq)) and each
    batch's own records (by root), from the gateways' SQLite files, read as a receiver asking
    them would get them."""
    leaves_by_root: dict[bytes, list[Leaf]] = {}
    held: dict[tuple[bytes, int], bytes] = {}
    own: dict[bytes, list[Any]] = {}
    for path in stores:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            for device, seq, wire in db.execute("SELECT device, seq, wire FROM records"):
                held.setdefault((bytes(device), seq), bytes(wire))
            for batch, root in db.execute("SELECT id, root FROM batches WHERE root IS NOT NULL"):
                leaves = []
                for device, first, last in db.execute(
                    "SELECT device, MIN(seq), MAX(seq) FROM records WHERE batch = ? "
                    "GROUP BY device ORDER BY device",
                    (batch,),
                ).fetchall():
                    (head,) = db.execute(
                        "SELECT hash FROM records WHERE device = ? AND seq = ?", (device, last)
                    ).fetchone()
                    leaves.append(
                        Leaf(device=bytes(device), first_seq=first, last_seq=last, head=bytes(head))
                    )
                leaves_by_root.setdefault(bytes(root), leaves)
                own.setdefault(bytes(root), []).extend(
                    (bytes(d), s)
                    for d, s in db.execute(
                        "SELECT device, seq FROM records WHERE batch = ?", (batch,)
                    )
                )
        finally:
            db.close()
    return leaves_by_root, held, own


def count_deliveries(rpc_url: str, domain: Domain, stores: Sequence[Path]) -> Deliveries:
    """The receiving end of the count, in one function (a merging multi-gateway receiver can
    take its place): every anchor transaction on chain, proven; each leaf's records from any
    gateway, verified by the pure relay rule; delivered once per (device, seq) by the chain-link
    rule, which drops replays."""
    out = Deliveries()
    leaves_by_root, held, own = _stored_batches(stores)
    on_chain: Counter[tuple[bytes, int]] = Counter()
    endpoint = HttpEndpoint(rpc_url, "rpc#0", retries=2, timeout=60)
    logs = endpoint.call(
        "eth_getLogs",
        [
            {
                "fromBlock": "0x0",
                "toBlock": "latest",
                "address": "0x" + ANCHOR_ADDRESS.hex(),
                "topics": ["0x" + EVENT_TOPIC.hex()],
            }
        ],
    )
    logs.sort(
        key=lambda g: (
            parse_quantity(g["blockNumber"], "block"),
            parse_quantity(g["logIndex"], "index"),
        )
    )
    chain = Chain([HttpEndpoint(rpc_url, "rpc#0")], quorum=1)
    known: dict[bytes, dict[int, ChainEntry]] = {}
    seen_roots: Counter[bytes] = Counter()
    try:
        for log in logs:
            tx_hash = bytes.fromhex(log["transactionHash"][2:])
            block = parse_quantity(log["blockNumber"], "block")
            tx, receipt = prove_anchor_tx(
                chain, chain_id=domain.chain_id, tx_hash=tx_hash, block=block
            )
            root = anchored_root(tx, receipt, domain=domain)
            out.anchor_txs += 1
            seen_roots[root] += 1
            leaves = leaves_by_root.get(root)
            on_chain.update(own.get(root, ()))
            if leaves is None:
                out.unexplained_anchors += 1
                out.problems.append(f"no gateway holds the batch of 0x{tx_hash.hex()}")
                continue
            for i, leaf in enumerate(leaves):
                wires: list[bytes] = []
                for seq in range(leaf.last_seq, leaf.first_seq - 1, -1):
                    wire = held.get((leaf.device, seq))
                    if wire is None:
                        out.unlinked += seq - leaf.first_seq
                        out.problems.append(
                            f"device {leaf.device.hex()[:8]} seq {seq}: anchored, held by no "
                            f"gateway (leaf {leaf.first_seq}..{leaf.last_seq})"
                        )
                        break
                    wires.append(wire)
                if not wires:
                    continue
                try:
                    got = verify_relayed(
                        wires[::-1],
                        device=leaf.device,
                        leaf=leaf,
                        proof=prove_inclusion(leaves, i),
                        tx=tx,
                        receipt=receipt,
                        domain=domain,
                    )
                except LightpostError as exc:
                    out.problems.append(f"relay of {leaf.device.hex()[:8]}: {exc}")
                    continue
                chain_of = known.setdefault(leaf.device, {})
                for signed, digest in got:
                    entry = ChainEntry(seq=signed.record.seq, hash=digest, prev=signed.record.prev)
                    link = classify_link(chain_of, entry).link
                    if link == Link.REPLAY:
                        out.replays += 1
                    elif link == Link.FORK:
                        out.forks += 1
                    else:
                        chain_of[entry.seq] = entry
                        out.delivered[(leaf.device, entry.seq)] = digest
                        out.deliveries[(leaf.device, entry.seq)] += 1
    finally:
        chain.close()
    out.roots_anchored_twice = sum(1 for n in seen_roots.values() if n > 1)
    out.anchored_twice = sum(1 for n in on_chain.values() if n > 1)
    return out


class MergedCount:
    """The same count through the receiver a user runs: the merging receiver
    (lightpost_gateway.follow.Follower, what `lightpost receive` runs on a config with a
    ``[gateways]`` table) at ``complete``, following both gateways live over the broker through
    the whole run, kills included. A lost broker connection (the broker's kill -9) is a receiver
    restart: a new Follower on the same SQLite file, after RECONNECT_S. Every Delivery is
    counted; a (device, seq) delivered twice, also across those restarts, is a duplicate."""

    def __init__(self, rpc_url: str, domain: Domain, gateways: Sequence[bytes], port: int,
                 db: Path) -> None:  # fmt: skip
        self.chain = Chain([HttpEndpoint(rpc_url, "rpc#0")], quorum=1)
        self.store = ReceiverStore(db)
        self.domain, self.gateways, self.port = domain, list(gateways), port
        self.follower: Follower | None = None
        self.down_until = 0.0
        self.restarts = 0
        self.got = Deliveries()
        self.kinds: Counter[str] = Counter()

    def turn(self, now: float, timeout_ms: int = 0) -> None:
        """Connect when due, then take what arrived; a lost connection drops the follower."""
        try:
            if self.follower is None:
                if now < self.down_until:
                    return
                client = GatewayClient("chaos-receiver")
                client.open(LOOPBACK, self.port)
                self.follower = Follower(
                    chain=self.chain,
                    domain=self.domain,
                    gateways=self.gateways,
                    client=client,
                    store=self.store,
                    level=Level.COMPLETE,
                    reply_id="chaos-receiver",
                    finality_depth=MERGED_FINALITY_DEPTH,
                )
                self.follower.start()
                self.restarts += 1
            for item in self.follower.poll(timeout_ms):
                if isinstance(item, Delivery):
                    self.got.delivered[(item.device, item.seq)] = item.hash
                    self.got.deliveries[(item.device, item.seq)] += 1
                else:
                    self.kinds[item.kind] += 1
                    if len(self.got.problems) < MAX_PROBLEMS_KEPT:
                        self.got.problems.append(f"receiver: {item.kind}: {item.details}")
        except (OSError, MQTTError, GatewayMQTTError, ValueError):
            if self.follower is not None:
                with contextlib.suppress(OSError, GatewayMQTTError):
                    self.follower.client.shut()
            self.follower = None
            self.down_until = now + RECONNECT_S

    def caught_up(self, want: Collection[tuple[bytes, int]]) -> bool:
        return (
            self.follower is not None
            and self.follower.caught_up()
            and all(k in self.got.delivered for k in want)
        )

    def close(self) -> None:
        if self.follower is not None:
            with contextlib.suppress(OSError, GatewayMQTTError):
                self.follower.client.shut()
        self.store.close()
        self.chain.close()


# --- the run ---------------------------------------------------------------------------------


@dataclass
class ChaosResult:
    seed: int
    devices: int
    records: int
    """Data records the devices published."""
    signed: int = 0
    """Records the devices signed: data and births."""
    births: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    forged: int = 0
    gateway_kills: int = 0
    broker_kills: int = 0
    gateway_exits: dict[str, int] = field(default_factory=dict)
    anchor_txs: int = 0
    roots_anchored_twice: int = 0
    replays_dropped: int = 0
    anchored_twice: int = 0
    republished: int = 0
    reconnects: int = 0
    unexplained_anchors: int = 0
    unlinked: int = 0
    undrained_devices: int = 0
    merged_delivered: int = 0
    """Through the merging receiver at complete (MergedCount): delivered, lost, duplicated,
    forged; its restarts (one per broker connection) and problems by kind."""
    merged_lost: int = 0
    merged_duplicated: int = 0
    merged_forged: int = 0
    merged_restarts: int = 0
    merged_problems: dict[str, int] = field(default_factory=dict)
    kills: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    publish_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        chain = self.lost == 0 and self.duplicated == 0 and self.forged == 0
        return (
            chain
            and self.merged_lost == 0
            and self.merged_duplicated == 0
            and (self.merged_forged == 0)
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok, "problems": self.problems[:20]}


def kill_schedule(
    rng: random.Random, records: int, gateway_kills: int, broker_kills: int
) -> list[tuple[int, str]]:
    """(published record count, "gateway" | "broker") of each kill, in order; seeded."""
    kinds = ["gateway"] * gateway_kills + ["broker"] * broker_kills
    points = sorted(rng.randrange(records // 20, records * 19 // 20) for _ in kinds)
    rng.shuffle(kinds)
    return list(zip(points, kinds, strict=True))


@contextlib.contextmanager
def _world(tmp: Path, block_time: float, progress: Progress) -> Iterator[dict[str, Any]]:
    desc = devnet_up(tmp / "net", port=free_port(), block_time=block_time, devices=2)
    try:
        yield desc
    finally:
        devnet_down(tmp / "net")


def chaos(
    *,
    records: int,
    devices: int,
    gateway_kills: int,
    broker_kills: int,
    seed: int = 1,
    block_time: float = 1.0,
    progress: Progress = print,
    workdir: Path | None = None,
) -> ChaosResult:
    """One chaos run (module docstring); every process it starts is stopped in a finally."""
    rng = random.Random(seed)
    result = ChaosResult(seed=seed, devices=devices, records=records)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lp-chaos-")))
        desc = stack.enter_context(_world(workdir, block_time, progress))
        configs = [Path(d["config"]) for d in desc["devices"]]
        chain_id = int(desc["chain_id"])
        domain = Domain(chain_id=chain_id, anchor=ANCHOR_ADDRESS)
        chain = Chain([HttpEndpoint(desc["rpc_url"], "rpc#0")], quorum=1)
        try:
            deploy_anchor(chain, chain_id, load_key(load_config(configs[0])))
        finally:
            chain.close()
        broker = Broker(workdir / "broker")
        broker.start()
        stack.callback(broker.stop)
        gateways = [
            GatewayProcess(
                f"gw{i}", cfg, workdir / f"gw{i}.sqlite", broker.port, workdir / f"gw{i}.log"
            )
            for i, cfg in enumerate(configs)
        ]
        for g in gateways:
            g.start()
            stack.callback(g.stop)
        deadline = time.monotonic() + 60
        while not all("subscribed" in g.log.read_text() for g in gateways):
            if time.monotonic() > deadline:
                raise RuntimeError("the gateways did not subscribe: " + _last_error(g.log))
            time.sleep(0.1)
        receiver = MergedCount(
            desc["rpc_url"],
            domain,
            [load_key(load_config(c)).address for c in configs],
            broker.port,
            workdir / "receiver.sqlite",
        )
        stack.callback(receiver.close)
        (workdir / "flash").mkdir(exist_ok=True)
        fleet = [
            ChaosDevice(
                hashlib.sha256(b"lightpost chaos device %d %d" % (seed, i)).digest(),
                chain_id,
                workdir / "flash" / str(i),
            )
            for i in range(devices)
        ]
        schedule = kill_schedule(rng, records, gateway_kills, broker_kills)
        per_device = -(-records // devices)
        progress(f"gateway chaos: {records:,} records from {devices} devices, kills {schedule}")
        broker_up_at: float | None = None
        published = 0
        last_report = time.monotonic()
        pub_started = time.monotonic()
        while published < records or schedule or broker_up_at is not None:
            now = time.monotonic()
            while schedule and published >= schedule[0][0]:
                at, kind = schedule.pop(0)
                pause = rng.uniform(*KILL_PAUSE_S)
                if kind == "gateway":
                    g = rng.choice(gateways)
                    g.kill(pause)
                    result.gateway_kills += 1
                    result.kills.append(f"{g.name} at record {at}, down {pause:.1f} s")
                else:
                    broker.kill()
                    broker_up_at = now + pause
                    result.broker_kills += 1
                    result.kills.append(f"broker at record {at}, down {pause:.1f} s")
                progress(f"gateway chaos: kill -9 {result.kills[-1]}")
            if broker_up_at is not None and now >= broker_up_at:
                broker.start()
                broker_up_at = None
            if broker_up_at is None:
                for g in gateways:
                    g.supervise()
            for dev in fleet:
                if not dev.online:
                    dev.try_connect(broker.port, now)
                    continue
                try:
                    due = published < records and dev.data < per_device
                    if due and dev.publish_next(rng, now):
                        published += 1
                    dev.drain()
                    dev.overdue(now)
                except (OSError, MQTTError):
                    dev.drop(now)
            if broker_up_at is None:
                receiver.turn(now)
            if now - last_report > 10:
                last_report = now
                progress(f"gateway chaos: {published:,} of {records:,} records published")
        result.publish_seconds = time.monotonic() - pub_started
        progress("gateway chaos: every record published; waiting for every receipt")
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline:
            now = time.monotonic()
            for g in gateways:
                g.supervise()
            waiting = 0
            for dev in fleet:
                if not dev.online:
                    dev.try_connect(broker.port, now)
                try:
                    dev.drain()
                    dev.overdue(now)
                except (OSError, MQTTError):
                    dev.drop(now)
                waiting += bool(dev.store.retained())
            if not waiting:
                break
            receiver.turn(now)
            time.sleep(0.05)
        result.undrained_devices = sum(1 for d in fleet if d.store.retained())
        want = {(d.address, seq) for d in fleet for seq in d.signed}
        progress("gateway chaos: every receipt in; the merging receiver catching up")
        deadline = time.monotonic() + MERGED_S
        while not receiver.caught_up(want) and time.monotonic() < deadline:
            for g in gateways:
                g.supervise()
            receiver.turn(time.monotonic(), 100)
            if receiver.follower is None:
                time.sleep(0.1)
        for dev in fleet:
            with contextlib.suppress(OSError, MQTTError):
                dev.close()
        for g in gateways:
            g.stop()
            result.gateway_exits.update(g.exits)
        progress("gateway chaos: counting from the chain")
        got = count_deliveries(desc["rpc_url"], domain, [g.db for g in gateways])
    truth = {(d.address, seq): h for d in fleet for seq, h in d.signed.items()}
    result.signed = len(truth)
    result.births = result.signed - sum(d.data for d in fleet)
    result.delivered = sum(1 for k, h in got.delivered.items() if truth.get(k) == h)
    result.lost = sum(1 for k, h in truth.items() if got.delivered.get(k) != h)
    result.duplicated = sum(n - 1 for n in got.deliveries.values() if n > 1)
    result.forged = sum(1 for k, h in got.delivered.items() if truth.get(k) != h)
    result.anchor_txs = got.anchor_txs
    result.roots_anchored_twice = got.roots_anchored_twice
    result.replays_dropped = got.replays
    result.anchored_twice = got.anchored_twice
    result.unexplained_anchors = got.unexplained_anchors
    result.unlinked = got.unlinked
    result.republished = sum(d.republished for d in fleet)
    result.reconnects = sum(d.reconnects for d in fleet)
    result.problems = got.problems
    merged = receiver.got
    result.merged_delivered = sum(1 for k, h in merged.delivered.items() if truth.get(k) == h)
    result.merged_lost = sum(1 for k, h in truth.items() if merged.delivered.get(k) != h)
    result.merged_duplicated = sum(n - 1 for n in merged.deliveries.values() if n > 1)
    result.merged_forged = sum(1 for k, h in merged.delivered.items() if truth.get(k) != h)
    result.merged_restarts = receiver.restarts
    result.merged_problems = dict(receiver.kinds)
    result.problems += merged.problems
    lost = sorted((k[0].hex()[:8], k[1]) for k, h in truth.items() if got.delivered.get(k) != h)
    if lost:
        result.problems.append(f"lost (device, seq): {lost[:30]}")
    result.seconds = time.monotonic() - started
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--kills", type=int, default=4, help="kills of a gateway, and of the broker")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--block-time", type=float, default=1.0)
    ap.add_argument("--keep", type=Path, help="run in this directory and keep it")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    r = chaos(
        records=args.records,
        devices=args.devices,
        gateway_kills=args.kills,
        broker_kills=args.kills,
        seed=args.seed,
        block_time=args.block_time,
        workdir=args.keep,
    )
    print(json.dumps(r.as_dict(), indent=2, default=str))
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
