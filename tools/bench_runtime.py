"""`make bench` (second half): latency, receiver throughput and scale on a real anvil devnet.

Four measurements, each on a fresh devnet (``lightpost_operator.devnet``, anvil 1.7.1 with
1 s blocks), all through lightpost's own runtime -- ``Sender`` + SQLite outbox for sending
(signing, nonce, fees, broadcast, inclusion tracking) and ``Receiver`` for verified delivery:

1. latency -- one device sends readings at random moments; four receivers (one per
   verification level, each a ``ReceiveService`` stepped like the node loop does) note when
   each reading is delivered. Sent = the ``now`` given to ``Sender.enqueue`` (the message
   is durable in the outbox); delivered = the moment the receiver service hands the
   ``Delivered`` at that level to its callback.
2. receiver -- a backlog of readings from a few devices, all final on chain; a fresh
   receiver catches up at ``included`` and then at ``complete`` (timed); then it follows
   10,000 more blocks (``anvil_mine``) while the devices keep posting, and its data
   directory is measured before and after.
3. scale -- 1,000 identities, each with its own outbox store and ``Sender``, send 10,000
   readings into one anvil; one receiver follows at ``final`` live, then a fresh one
   verifies everything at ``complete``. Gas comes from the receipts.
4. follow -- 10,000 identities on an anvil with 2 s blocks, a controller following 1,000
   and 10,000 streams at ``complete`` and 10,000 at ``final`` (tools/bench_follow.py; its
   own generated section, which ``--only follow --write-docs`` rewrites alone).

Nothing is a timing assert; with ``--write-docs`` the report replaces the generated section
of docs/benchmarks.md. Progress goes to stderr. ``--quick`` runs small sizes (development).

Usage: python tools/bench_runtime.py [--quick] [--write-docs] [--json] [--only NAME]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_follow import BEGIN as FOLLOW_BEGIN
from bench_follow import END as FOLLOW_END
from bench_follow import POLL_GAP_S, measure_follow
from reports import anvil_version, cpu_model, write_section

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.adapters.store import Store
from lightpost.core.envelope import ContentType
from lightpost.core.hashing import KECCAK_BACKEND
from lightpost.core.keys import PrivateKey
from lightpost.core.levels import Delivered, Level
from lightpost.core.outbox import State
from lightpost.core.verify import Problem
from lightpost.errors import LightpostError
from lightpost.node.chain import Chain, parse_quantity
from lightpost.node.config import ChannelPolicy, DeviceConfig, load_config
from lightpost.node.receiver import Receiver
from lightpost.node.runtime import (
    POLL_INTERVAL_S,
    Node,
    build_chain,
    build_endpoints,
    load_key,
    make_sender,
    open_store,
)
from lightpost.node.sender import Sender
from lightpost.node.services import RECEIVE_INTERVAL_S, ReceiveService
from lightpost_operator.anvil import free_port
from lightpost_operator.devnet import DEVNET_FUNDER_KEY, devnet_down, devnet_up
from lightpost_operator.keywrite import generate_key
from lightpost_operator.wallet import sign_operator_tx

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- BEGIN GENERATED BENCH-RUNTIME -->", "<!-- END GENERATED BENCH-RUNTIME -->"

BLOCK_TIME_S = 1.0
"""Devnet block time (issue 8: latency on a devnet with 1 s blocks)."""

INCLUDED_GOAL_MARGIN_S = 0.3
"""Issue 8's latency goal: `included` within block time + 300 ms at p50."""

LATENCY_GAP_S = (0.3, 0.9)
"""The latency sender enqueues a reading after a random pause in this range, so sending
moments fall at every phase of the block interval."""

LATENCY_DRAIN_S = 40.0
"""After the last reading: longest wait for every level to deliver everything."""

CATCH_UP_REPEATS = 3
"""Fresh receivers timed catching up with the backlog (the median is reported): the
`included` catch-up commits to SQLite per reading, so it swings with the disk's load."""

FOLLOW_ROUND_BLOCKS = 500
"""Blocks per ``anvil_mine`` call while following (measured: 500 blocks take ~0.2 s,
2,000 in one call ~6 s)."""

FOLLOW_POSTS_PER_ROUND = 5
"""Readings each backlog device posts per follow round (the chain is not empty)."""

SCALE_MESSAGES_PER_IDENTITY = 10
"""Readings each scale identity sends (1,000 x 10 = issue 8's 10,000)."""

SCALE_READING_INTERVAL_S = 3.0
"""Each scale identity produces one reading this often (a meter), its first at a random
moment within the first interval."""

SCALE_WORKERS = 4
"""Threads stepping the scale senders (each owns a slice and its own Chain client)."""

SCALE_FUNDING_WEI = 10**18
"""Devnet money per scale identity (1 ETH: hundreds of 4 KB transactions at 100 gwei)."""

FUNDING_BATCH = 200
"""Signed funding transfers per JSON-RPC batch."""

SCALE_TIMEOUT_S = 420.0
"""Longest the scale senders may take to get every message final."""

DELIVERY_WAIT_S = 60.0
"""After the senders are done: longest wait for the live receiver to catch up."""

PROGRESS_EVERY_S = 5.0
"""How often a progress line is printed while waiting."""

RPC_TIMEOUT_S = 120.0
"""Timeout for the bench's own RPC calls (anvil_mine of 500 blocks on a busy box)."""

SEND_AT_ONCE = {"max_delay_s": 0.0}
"""Latency and backlog devices sign as soon as they step (no batching wait)."""

LATENCY_CHANNEL = "latency"
BACKLOG_CHANNEL = "backlog"
SCALE_CHANNEL = "scale"


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is (full run vs --quick)."""

    latency_messages: int
    backlog_devices: int
    backlog_per_device: int
    follow_blocks: int
    scale_identities: int
    follow_devices: int = 10_000


FULL = Sizes(
    latency_messages=60,
    backlog_devices=4,
    backlog_per_device=1_000,
    follow_blocks=10_000,
    scale_identities=1_000,
)
QUICK = Sizes(
    latency_messages=12,
    backlog_devices=2,
    backlog_per_device=100,
    follow_blocks=1_000,
    scale_identities=40,
    follow_devices=500,
)

_T0 = time.monotonic()


def say(line: str) -> None:
    """A progress line on stderr, stamped with the time since start."""
    print(f"[{time.monotonic() - _T0:6.1f}s] {line}", file=sys.stderr, flush=True)


# --- pure helpers (tests/tools/test_bench_runtime.py) ---------------------------------


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, p50, p95 and max of ``values`` (inclusive quantiles; None when empty)."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    if len(ordered) == 1:
        p50 = p95 = ordered[0]
    else:
        cuts = statistics.quantiles(ordered, n=100, method="inclusive")
        p50, p95 = cuts[49], cuts[94]
    return {"count": len(ordered), "p50": p50, "p95": p95, "max": ordered[-1]}


def verdict(met: bool, measured: str) -> str:
    """A goal's line in the report: met, or missed with the measured number."""
    return f"met ({measured})" if met else f"**missed** ({measured})"


def reading(device: int, n: int) -> bytes:
    """A ~60-byte JSON meter reading, distinct per (device, n)."""
    return json.dumps(
        {"id": f"meter-{device:04d}", "n": n, "kWh": round(1200 + n * 0.37, 3), "V": 230.1},
        separators=(",", ":"),
    ).encode()


def dir_bytes(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- the devnet and the machine ---------------------------------------------------------


@contextmanager
def devnet(
    directory: Path,
    names: list[str],
    trusted: dict[str, list[str]],
    *,
    options: dict[str, Any] | None = None,
    block_time: float = BLOCK_TIME_S,
) -> Iterator[Any]:
    """A devnet with 1 s blocks (or ``block_time``); ``options`` override every device's
    config (as devnet_up's ``customize`` does); always stopped."""
    say(f"devnet: starting anvil in {directory} with {len(names)} device(s)")
    desc = devnet_up(
        directory,
        port=free_port(),
        block_time=block_time,
        names=names,
        customize=lambda _name, addrs: {
            **(options or {}),
            "trusted": {ch: [addrs[n] for n in who] for ch, who in trusted.items()},
        },
    )
    try:
        yield desc
    finally:
        devnet_down(directory)


def machine() -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "keccak": KECCAK_BACKEND,
        "anvil": anvil_version(),
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
    }


@dataclass
class DeviceNode:
    """A devnet device as `lightpost node` wires it: config, key, outbox store, chain."""

    config: DeviceConfig
    key: PrivateKey
    store: Store
    chain: Chain
    sender: Sender

    @classmethod
    def load(cls, config_path: str) -> DeviceNode:
        config = load_config(config_path)
        key = load_key(config)
        store = open_store(config)
        chain = build_chain(config)
        return cls(config, key, store, chain, make_sender(config, key, store, chain))

    def close(self) -> None:
        self.sender.close()
        self.chain.close()
        self.store.close()


def rpc(url: str, method: str, params: list[Any]) -> Any:
    return HttpEndpoint(url, "bench", retries=0, timeout=RPC_TIMEOUT_S).call(method, params)


def config_of(desc: dict[str, Any], name: str) -> str:
    return next(d["config"] for d in desc["devices"] if d["name"] == name)


# --- 1. latency -------------------------------------------------------------------------


def measure_latency(directory: Path, sizes: Sizes) -> dict[str, Any]:
    names = ["sender", "receiver"]
    with devnet(directory, names, {LATENCY_CHANNEL: ["sender"]}, options=SEND_AT_ONCE) as desc:
        dev = DeviceNode.load(config_of(desc, "sender"))
        rconfig = load_config(config_of(desc, "receiver"))
        levels = list(Level)
        sent: dict[int, tuple[float, bytes]] = {}
        got: dict[Level, dict[int, float]] = {lv: {} for lv in levels}
        problems: Counter[str] = Counter()
        stop = threading.Event()

        def follow(level: Level) -> None:
            cfg = dataclasses.replace(rconfig, data_dir=directory / "recv" / str(level))
            receiver = Receiver(cfg)

            def on_item(item: Delivered | Problem) -> None:
                now = time.time()
                if isinstance(item, Problem):
                    problems[f"{level}:{item.kind}"] += 1
                elif item.sender == dev.key.address and item.seq in sent:
                    if item.payload != sent[item.seq][1]:
                        problems[f"{level}:payload-mismatch"] += 1
                    got[level].setdefault(item.seq, now)

            service = ReceiveService(
                receiver, level=level, on_item=on_item, channel=LATENCY_CHANNEL
            )
            try:
                while not stop.is_set():  # the node loop's pacing (runtime.Node.run)
                    service.step(time.time())
                    stop.wait(POLL_INTERVAL_S)
            finally:
                receiver.close()

        threads = [threading.Thread(target=follow, args=(lv,), daemon=True) for lv in levels]
        for t in threads:
            t.start()
        node = Node(sender=dev.sender)
        rng = random.Random(8)
        next_send = time.time() + 2.0  # let the receivers take their first look
        last_line = 0.0
        drain_until: float | None = None
        try:
            while True:
                now = time.time()
                if len(sent) < sizes.latency_messages and now >= next_send:
                    payload = reading(0, len(sent))
                    mid = dev.sender.enqueue(
                        payload=payload,
                        channel=LATENCY_CHANNEL,
                        content_type=ContentType.JSON,
                        now=now,
                    )
                    sent[dev.store.message(mid).seq] = (now, payload)
                    next_send = now + rng.uniform(*LATENCY_GAP_S)
                if not node.step(time.time()):
                    stop.wait(POLL_INTERVAL_S)
                if time.time() - last_line >= PROGRESS_EVERY_S:
                    last_line = time.time()
                    counts = ", ".join(f"{lv} {len(got[lv])}" for lv in levels)
                    say(f"latency: {len(sent)}/{sizes.latency_messages} sent; delivered {counts}")
                if len(sent) == sizes.latency_messages:
                    drain_until = drain_until or time.time() + LATENCY_DRAIN_S
                    everything = all(len(got[lv]) == len(sent) for lv in levels)
                    if everything or time.time() >= drain_until:
                        break
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
            dev.close()
        gas = _sender_gas(desc["rpc_url"], dev.key.address, desc["inbox"])
    out: dict[str, Any] = {
        "messages": len(sent),
        "block_time_s": BLOCK_TIME_S,
        "poll_s": POLL_INTERVAL_S,
        "receive_interval_s": RECEIVE_INTERVAL_S,
        "transactions": gas["transactions"],
        "problems": dict(problems),
        "levels": {},
    }
    for lv in levels:
        values = [got[lv][s] - sent[s][0] for s in got[lv]]
        out["levels"][str(lv)] = summarize(values)
    return out


def _sender_gas(url: str, address: bytes, inbox: str) -> dict[str, int]:
    """Transactions and gas of ``address``'s inbox posts, from every block's receipts."""
    head = int(rpc(url, "eth_blockNumber", []), 16)
    return _gas_from_receipts(url, {"0x" + address.hex()}, inbox, 1, head)


def _gas_from_receipts(url: str, senders: set[str], inbox: str, lo: int, hi: int) -> dict[str, int]:
    ep = HttpEndpoint(url, "bench", retries=0, timeout=RPC_TIMEOUT_S)
    total = txs = reverted = 0
    for start in range(lo, hi + 1, 100):
        calls = [("eth_getBlockReceipts", [hex(n)]) for n in range(start, min(hi, start + 99) + 1)]
        for receipts in ep.batch(calls):
            for r in receipts or []:
                if r["from"].lower() in senders and str(r.get("to")).lower() == inbox.lower():
                    txs += 1
                    total += parse_quantity(r["gasUsed"], "gasUsed")
                    reverted += r.get("status") != "0x1"
    return {"gas": total, "transactions": txs, "reverted": reverted}


# --- 2. receiver ------------------------------------------------------------------------


def _step_until_final(devs: Sequence[DeviceNode], expected: dict[int, int], what: str) -> None:
    """Step every device until all its messages are FINAL (progress on stderr)."""
    last_line = 0.0
    deadline = time.monotonic() + SCALE_TIMEOUT_S
    while True:
        final = [d.store.counts_by_state()[State.FINAL] for d in devs]
        done = sum(final)
        total = sum(expected.values())
        if done >= total:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: only {done}/{total} messages final in time")
        if time.monotonic() - last_line >= PROGRESS_EVERY_S:
            last_line = time.monotonic()
            say(f"{what}: {done:,}/{total:,} messages final on chain")
        busy = False
        for i, d in enumerate(devs):
            if final[i] < expected[i]:
                busy |= d.sender.step(time.time()).busy
        if not busy:
            time.sleep(POLL_INTERVAL_S)


def _timed_poll(
    receiver: Receiver, level: Level, expected: dict[tuple[bytes, int], bytes]
) -> dict[str, Any]:
    start = time.perf_counter()
    items = list(receiver.poll(level, BACKLOG_CHANNEL))
    seconds = time.perf_counter() - start
    delivered = [i for i in items if isinstance(i, Delivered)]
    good = sum(1 for d in delivered if expected.get((d.sender, d.seq)) == d.payload)
    return {
        "messages": len(delivered),
        "verified_as_sent": good,
        "blocks": len({d.block_number for d in delivered}),
        "transactions": len({d.tx_hash for d in delivered}),
        "seconds": seconds,
        "per_s": len(delivered) / seconds if seconds else 0.0,
        "problems": dict(Counter(p.kind for p in items if isinstance(p, Problem))),
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median time, with every run's time beside it."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return {**ordered[len(ordered) // 2], "all_seconds": [r["seconds"] for r in runs]}


def measure_receiver(directory: Path, sizes: Sizes) -> dict[str, Any]:
    names = [f"device-{i + 1}" for i in range(sizes.backlog_devices)] + ["receiver"]
    with devnet(directory, names, {BACKLOG_CHANNEL: names[:-1]}, options=SEND_AT_ONCE) as desc:
        devs = [DeviceNode.load(config_of(desc, n)) for n in names[:-1]]
        expected: dict[tuple[bytes, int], bytes] = {}
        try:
            say(
                f"receiver: enqueueing a backlog of {sizes.backlog_devices} x "
                f"{sizes.backlog_per_device:,} readings"
            )
            for i, d in enumerate(devs):
                for n in range(sizes.backlog_per_device):
                    payload = reading(i, n)
                    mid = d.sender.enqueue(
                        payload=payload, channel=BACKLOG_CHANNEL, content_type=ContentType.JSON
                    )
                    expected[(d.key.address, d.store.message(mid).seq)] = payload
            backlog = len(expected)
            quota = {i: sizes.backlog_per_device for i in range(len(devs))}
            _step_until_final(devs, quota, "receiver backlog")
            url = desc["rpc_url"]
            head = int(rpc(url, "eth_blockNumber", []), 16)
            senders = {"0x" + d.key.address.hex() for d in devs}
            gas = _gas_from_receipts(url, senders, desc["inbox"], 1, head)
            block_gas_limit = parse_quantity(
                rpc(url, "eth_getBlockByNumber", ["latest", False])["gasLimit"], "gasLimit"
            )
            base = load_config(config_of(desc, "receiver"))
            runs: dict[str, list[dict[str, Any]]] = {"included": [], "complete": []}
            receivers: list[Receiver] = []
            for rep in range(CATCH_UP_REPEATS):  # fresh receivers: disk load varies
                for older in receivers:
                    older.close()
                rconfig = dataclasses.replace(base, data_dir=directory / f"recv-{rep}")
                receiver = Receiver(rconfig)
                receivers = [receiver]
                for level in (Level.INCLUDED, Level.COMPLETE):
                    run = _timed_poll(receiver, level, expected)
                    runs[str(level)].append(run)
                    say(
                        f"receiver: catch-up {rep + 1}/{CATCH_UP_REPEATS} over {head} blocks at "
                        f"{level}: {run['messages']:,} readings in {run['seconds']:.2f} s"
                    )
            included, complete = (_median_run(runs[lv]) for lv in ("included", "complete"))
            # the first poll after catching up re-checks what `included` delivered
            start = time.perf_counter()
            list(receiver.poll(Level.INCLUDED, BACKLOG_CHANNEL))
            next_included_s = time.perf_counter() - start
            follow = _follow(url, receiver, devs, expected, rconfig.data_dir, sizes)
            receiver.close()
            follow["bytes_closed"] = dir_bytes(rconfig.data_dir)
        finally:
            for d in devs:
                d.close()
    return {
        "devices": sizes.backlog_devices,
        "messages": backlog,
        "chain_blocks": head,
        "gas": gas,
        "block_gas_limit": block_gas_limit,
        "included": included,
        "complete": complete,
        "next_included_poll_s": next_included_s,
        "follow": follow,
    }


def _follow(
    url: str,
    receiver: Receiver,
    devs: Sequence[DeviceNode],
    expected: dict[tuple[bytes, int], bytes],
    data_dir: Path,
    sizes: Sizes,
) -> dict[str, Any]:
    """Follow ``sizes.follow_blocks`` more blocks at included and complete."""
    before = dir_bytes(data_dir)
    start_head = int(rpc(url, "eth_blockNumber", []), 16)
    delivered: Counter[str] = Counter()
    problems: Counter[str] = Counter()
    posted = 0
    rounds = max(1, sizes.follow_blocks // FOLLOW_ROUND_BLOCKS)
    for r in range(rounds):
        for i, d in enumerate(devs):
            for _ in range(FOLLOW_POSTS_PER_ROUND):
                payload = reading(i, sizes.backlog_per_device + posted)
                mid = d.sender.enqueue(
                    payload=payload, channel=BACKLOG_CHANNEL, content_type=ContentType.JSON
                )
                expected[(d.key.address, d.store.message(mid).seq)] = payload
                posted += 1
            d.sender.step(time.time())  # sign + broadcast; mined by the anvil_mine below
        rpc(url, "anvil_mine", [hex(FOLLOW_ROUND_BLOCKS)])
        for d in devs:
            d.sender.step(time.time())
        for level in (Level.INCLUDED, Level.COMPLETE):
            for item in receiver.poll(level, BACKLOG_CHANNEL):
                if isinstance(item, Delivered):
                    ok = expected.get((item.sender, item.seq)) == item.payload
                    delivered[f"{level}" if ok else f"{level}:mismatch"] += 1
                else:
                    problems[item.kind] += 1
        say(
            f"receiver: following {(r + 1) * FOLLOW_ROUND_BLOCKS:,}/{sizes.follow_blocks:,} "
            f"blocks; {delivered['complete']:,}/{posted:,} new readings delivered complete"
        )
    end_head = int(rpc(url, "eth_blockNumber", []), 16)
    return {
        "blocks": end_head - start_head,
        "posted": posted,
        "delivered": dict(delivered),
        "problems": dict(problems),
        "bytes_before": before,
        "bytes_after": dir_bytes(data_dir),
        "files": sorted(p.name for p in data_dir.iterdir()),
    }


# --- 3. scale ---------------------------------------------------------------------------


@dataclass
class Identity:
    """One scale device: its key, outbox store and Sender (built as the node builds it)."""

    index: int
    key: PrivateKey
    store: Store
    sender: Sender
    next_at: float = 0.0
    enqueued: int = 0
    done: bool = False


@dataclass
class ScaleState:
    expected: dict[tuple[bytes, int], bytes] = field(default_factory=dict)
    identities: int = 0
    final_counts: dict[int, int] = field(default_factory=dict)
    pass_seconds: list[float] = field(default_factory=list)
    identities_done: int = 0
    errors: list[str] = field(default_factory=list)
    all_final_at: float | None = None
    senders_with_problems: int = 0
    ready: threading.Barrier = field(
        default_factory=lambda: threading.Barrier(SCALE_WORKERS + 1, timeout=300)
    )
    delivered_final: dict[tuple[bytes, int], float] = field(default_factory=dict)
    live_problems: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _fund(url: str, chain: Chain, keys: Sequence[PrivateKey]) -> None:
    """Fund every key from the devnet funder: signed transfers, sent in JSON-RPC batches."""
    funder = PrivateKey.from_hex(DEVNET_FUNDER_KEY)
    chain_id = chain.chain_id()
    nonce = chain.nonce(funder.address, "pending")
    ep = HttpEndpoint(url, "bench", retries=0, timeout=RPC_TIMEOUT_S)
    hashes: list[str] = []
    for lo in range(0, len(keys), FUNDING_BATCH):
        calls = []
        for key in keys[lo : lo + FUNDING_BATCH]:
            signed = sign_operator_tx(
                chain, chain_id, funder, nonce=nonce, to=key.address, value=SCALE_FUNDING_WEI
            )
            nonce += 1
            calls.append(("eth_sendRawTransaction", ["0x" + signed.raw.hex()]))
            hashes.append("0x" + signed.hash.hex())
        for answer in ep.batch(calls):
            if isinstance(answer, Exception):
                raise SystemExit(f"funding: {answer}")
    deadline = time.monotonic() + 60
    while hashes:
        receipts = ep.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        failed = [h for h, r in zip(hashes, receipts, strict=True) if r and r["status"] != "0x1"]
        if failed:
            raise SystemExit(f"funding: {len(failed)} transfer(s) reverted")
        hashes = [h for h, r in zip(hashes, receipts, strict=True) if not r]
        if hashes and time.monotonic() > deadline:
            raise SystemExit(f"funding: {len(hashes)} transfer(s) not mined in time")
        time.sleep(0.2 if hashes else 0)


def _scale_worker(
    slice_: Sequence[tuple[int, PrivateKey]],
    base: DeviceConfig,
    directory: Path,
    chain: Chain,
    state: ScaleState,
    stop: threading.Event,
) -> None:
    """Build this thread's identities (a store belongs to the thread that opened it) and
    step them round-robin until every message of theirs is final."""
    ids: list[Identity] = []
    try:
        for i, key in slice_:
            cfg = dataclasses.replace(
                base, name=f"id-{i}", data_dir=directory / f"id-{i}", channels=()
            )
            store = open_store(cfg)
            ids.append(Identity(i, key, store, make_sender(cfg, key, store, chain)))
        state.ready.wait()
        start = time.time()
        for ident in ids:  # meters are not in step: each starts at its own moment
            ident.next_at = start + random.Random(ident.index).uniform(0, SCALE_READING_INTERVAL_S)
        while not stop.is_set():
            started = time.monotonic()
            active = [i for i in ids if not i.done]
            if not active:
                return
            for ident in active:
                now = time.time()
                while ident.enqueued < SCALE_MESSAGES_PER_IDENTITY and now >= ident.next_at:
                    payload = reading(ident.index, ident.enqueued)
                    mid = ident.sender.enqueue(
                        payload=payload,
                        channel=SCALE_CHANNEL,
                        content_type=ContentType.JSON,
                        now=now,
                    )
                    state.expected[(ident.key.address, ident.store.message(mid).seq)] = payload
                    ident.enqueued += 1
                    ident.next_at += SCALE_READING_INTERVAL_S
                ident.sender.step(now)
                final = ident.store.counts_by_state()[State.FINAL]
                state.final_counts[ident.index] = final
                if final == SCALE_MESSAGES_PER_IDENTITY:
                    ident.done = True
                    with state.lock:
                        state.identities_done += 1
                        if state.identities_done == state.identities:
                            state.all_final_at = time.time()
            state.pass_seconds.append(time.monotonic() - started)
            pause = POLL_INTERVAL_S - (time.monotonic() - started)
            if pause > 0:
                stop.wait(pause)
    except Exception as exc:  # reported in the run's result, never swallowed
        state.errors.append(f"{type(exc).__name__}: {exc}")
        state.ready.abort()
        raise
    finally:
        with state.lock:
            state.senders_with_problems += sum(1 for i in ids if i.sender.problems)
        for ident in ids:
            ident.sender.close()
            ident.store.close()


def _scale_receiver(config: DeviceConfig, state: ScaleState, stop: threading.Event) -> None:
    receiver = Receiver(config)

    def on_item(item: Delivered | Problem) -> None:
        if isinstance(item, Problem):
            state.live_problems[item.kind] += 1
        else:
            state.delivered_final.setdefault((item.sender, item.seq), time.time())

    service = ReceiveService(receiver, level=Level.FINAL, on_item=on_item, channel=SCALE_CHANNEL)
    try:
        while not stop.is_set():
            service.step(time.time())
            stop.wait(POLL_INTERVAL_S)
    except Exception as exc:
        state.errors.append(f"receiver: {type(exc).__name__}: {exc}")
        raise
    finally:
        receiver.close()


class Counting:
    """An endpoint that counts its calls per method (eth_getProof per poll)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.label, self.calls = inner, inner.label, Counter[str]()

    def call(self, method: str, params: Sequence[Any]) -> Any:
        self.calls[method] += 1
        return self.inner.call(method, params)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        self.calls.update(m for m, _ in calls)
        return list(self.inner.batch(calls))


def measure_scale(directory: Path, sizes: Sizes) -> dict[str, Any]:
    n = sizes.scale_identities
    with devnet(directory, ["receiver"], {}) as desc:
        url = desc["rpc_url"]
        base = load_config(config_of(desc, "receiver"))
        chains = [build_chain(base) for _ in range(SCALE_WORKERS)]
        say(f"scale: creating and funding {n:,} identities (batched transfers)")
        keys = [generate_key(os.urandom) for _ in range(n)]
        _fund(url, chains[0], keys)
        first_block = int(rpc(url, "eth_blockNumber", []), 16) + 1
        rconfig = dataclasses.replace(
            base,
            channels=(ChannelPolicy(SCALE_CHANNEL, tuple(k.address for k in keys)),),
            data_dir=directory / "recv-live",
        )
        state = ScaleState(identities=n)
        stop = threading.Event()
        live = threading.Thread(target=_scale_receiver, args=(rconfig, state, stop), daemon=True)
        live.start()
        total = n * SCALE_MESSAGES_PER_IDENTITY
        say(f"scale: {n:,} senders start ({total:,} readings, {SCALE_WORKERS} stepping threads)")
        indexed = list(enumerate(keys))
        ids_dir = directory / "ids"
        workers = [
            threading.Thread(
                target=_scale_worker,
                args=(indexed[w::SCALE_WORKERS], base, ids_dir, chains[w], state, stop),
                daemon=True,
            )
            for w in range(SCALE_WORKERS)
        ]
        for t in workers:
            t.start()
        say(f"scale: opening {n:,} outbox stores")
        state.ready.wait()  # every thread has built its identities: the clock starts
        started = time.time()
        deadline = time.monotonic() + SCALE_TIMEOUT_S
        last_line = 0.0
        try:
            while time.monotonic() < deadline and not state.errors:
                if time.monotonic() - last_line >= PROGRESS_EVERY_S:
                    last_line = time.monotonic()
                    say(
                        f"scale: {len(state.expected):,}/{total:,} enqueued, "
                        f"{sum(state.final_counts.values()):,} final (sender side), "
                        f"{len(state.delivered_final):,}/{total:,} delivered (final)"
                    )
                if state.all_final_at is not None:
                    deadline = min(deadline, time.monotonic() + DELIVERY_WAIT_S)
                if len(state.delivered_final) >= total:
                    break
                time.sleep(0.5)
        finally:
            stop.set()
            for t in [*workers, live]:
                t.join(timeout=60)
        say(f"scale: {len(state.delivered_final):,}/{total:,} delivered (final)")
        sent_final_s = None if state.all_final_at is None else state.all_final_at - started
        delivered_s = (
            max(state.delivered_final.values()) - started
            if len(state.delivered_final) >= total
            else None
        )
        last_block = int(rpc(url, "eth_blockNumber", []), 16)
        senders = {"0x" + k.address.hex() for k in keys}
        gas = _gas_from_receipts(url, senders, desc["inbox"], first_block, last_block)
        say("scale: a fresh receiver verifies everything at complete")
        cconfig = dataclasses.replace(rconfig, data_dir=directory / "recv-complete")
        eps = [Counting(ep) for ep in build_endpoints(cconfig)]
        receiver = Receiver(cconfig, endpoints=eps)
        t0 = time.perf_counter()
        items = list(receiver.poll(Level.COMPLETE, SCALE_CHANNEL))
        complete_s = time.perf_counter() - t0
        # The steady state: one more block, one more poll -- every stream's (acc, count)
        # proven again, all storage keys in one eth_getProof.
        rpc(url, "anvil_mine", ["0x1"])
        proofs_before = sum(e.calls.get("eth_getProof", 0) for e in eps)
        t0 = time.perf_counter()
        steady = list(receiver.poll(Level.COMPLETE, SCALE_CHANNEL))
        steady_s = time.perf_counter() - t0
        steady_proofs = sum(e.calls.get("eth_getProof", 0) for e in eps) - proofs_before
        receiver.close()
        sender_problems = state.senders_with_problems
        for c in chains:
            c.close()
    delivered = [i for i in items if isinstance(i, Delivered)]
    keys_seen = Counter((d.sender, d.seq) for d in delivered)
    verified = sum(1 for d in delivered if state.expected.get((d.sender, d.seq)) == d.payload)
    lost = sum(1 for k in state.expected if k not in keys_seen)
    return {
        "identities": n,
        "sent": len(state.expected),
        "delivered_final_live": len(state.delivered_final),
        "delivered_complete": len(delivered),
        "verified_complete": verified,
        "duplicates": sum(c - 1 for c in keys_seen.values() if c > 1),
        "lost": lost,
        "complete_problems": dict(Counter(p.kind for p in items if isinstance(p, Problem))),
        "live_problems": dict(state.live_problems),
        "errors": state.errors,
        "senders_with_open_problems": sender_problems,
        "sent_final_s": sent_final_s,
        "delivered_final_s": delivered_s,
        "complete_verify_s": complete_s,
        "steady_complete_s": steady_s,
        "steady_complete_proofs": steady_proofs,
        "steady_complete_problems": dict(Counter(p.kind for p in steady if isinstance(p, Problem))),
        "blocks": last_block - first_block + 1,
        "gas": gas,
        "workers": SCALE_WORKERS,
        "pass_s": summarize(state.pass_seconds),
        "batch_bytes": base.batch_bytes,
        "max_delay_s": base.batch_delay_s,
    }


# --- report -----------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def render(result: dict[str, Any]) -> str:
    m, lat, rec, sc = result["machine"], result["latency"], result["receiver"], result["scale"]
    lines = [
        f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"keccak backend `{m['keccak']}`, {m['anvil']}. The machine was shared with other "
        f"work (load average at start: {' / '.join(str(x) for x in m['load_at_start'])}). "
        f"Run: `{result['command']}`, {result['total_s'] / 60:.1f} min in all.",
        "",
    ]
    # goals
    inc = lat["levels"]["included"]
    goal_s = lat["block_time_s"] + INCLUDED_GOAL_MARGIN_S
    inc_ok = inc["p50"] is not None and inc["p50"] <= goal_s
    scale_ok = (
        sc["sent"] == sc["delivered_complete"] == sc["verified_complete"]
        and sc["lost"] == 0
        and sc["duplicates"] == 0
        and sc["sent"] == sc["identities"] * SCALE_MESSAGES_PER_IDENTITY
    )
    lines += [
        "| goal (issue 8) | result |",
        "|---|---|",
        f"| `included` within block time + 300 ms at p50 (<= {goal_s:.2f} s) | "
        f"{verdict(inc_ok, 'p50 ' + _s(inc['p50']))} |",
        f"| scale: {sc['identities']:,} identities, sent = delivered, zero lost, all verified "
        f"at `complete` | {verdict(scale_ok, _scale_words(sc))} |",
        "",
        f"### Latency: send -> delivered (devnet, {lat['block_time_s']:.0f} s blocks, "
        f"{lat['messages']} readings)",
        "",
        "One device sends ~60-byte JSON readings, each after a random pause of "
        f"{LATENCY_GAP_S[0]}-{LATENCY_GAP_S[1]} s, with `max_delay_s = 0` (no batching wait), "
        "through its real Sender and SQLite outbox (signing, nonce, fees, broadcast). "
        "**Sent** is the time given to `Sender.enqueue` (the reading is durable in the "
        "outbox); the device's loop then steps its node at once, as the demo devices do. "
        "Four receivers, one per level, each a `ReceiveService` (polls at most every "
        f"{lat['receive_interval_s']:.0f} s) stepped every {lat['poll_s']} s like the node "
        "loop, run in threads of the same process; **delivered** is the moment the service "
        "hands the `Delivered` at that level to its callback. Finality on the devnet: "
        "anvil's `finalized` tag, 4 blocks behind `latest`. `signed` finds posts through "
        "`eth_getLogs` like the other levels, so it too waits for the block; it only skips "
        "the header and trie proofs.",
        "",
        "| level | p50 | p95 | max | delivered |",
        "|---|---:|---:|---:|---:|",
    ]
    for level, s in lat["levels"].items():
        lines.append(
            f"| {level} | {_s(s['p50'])} | {_s(s['p95'])} | {_s(s['max'])} | "
            f"{s['count']}/{lat['messages']} |"
        )
    lines += [
        "",
        f"{lat['transactions']} transactions carried the {lat['messages']} readings; "
        f"problems reported: {_problems(lat['problems'])}.",
        "",
        "### Receiver: catching up with a backlog, then following",
        "",
        f"{rec['devices']} devices sent {rec['messages']:,} readings (~60 bytes, packed by "
        f"the sender into 4 KB posts: {rec['gas']['transactions']} transactions over "
        f"{rec['chain_blocks']:,} blocks of 1 s). Once all were final, a fresh receiver "
        "trusting the devices caught up from block 0 in one poll at `included`, then in "
        "one poll at `complete` (every block re-proven, plus one `eth_getProof` of each "
        "device's accumulator at the finalized block). Time = the whole `Receiver.poll`, "
        f"RPC to anvil on loopback included; {CATCH_UP_REPEATS} fresh receivers (own data "
        "directories) did this one after the other: the median run is shown, every run's "
        "time in the last column.",
        "",
        "| level | readings delivered | of them equal to what was sent | blocks | "
        "transactions | time | verified readings/s | all runs |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for level in ("included", "complete"):
        r = rec[level]
        lines.append(
            f"| {level} | {r['messages']:,} | {r['verified_as_sent']:,} | {r['blocks']} | "
            f"{r['transactions']} | {r['seconds']:.2f} s | {r['per_s']:,.0f} | "
            f"{', '.join(f'{x:.2f} s' for x in r['all_seconds'])} |"
        )
    gas_per_msg = rec["gas"]["gas"] / rec["messages"]
    per_block = rec["block_gas_limit"] / gas_per_msg
    f = rec["follow"]
    lines += [
        "",
        f"Derived from these figures: the backlog cost {gas_per_msg:,.0f} gas per reading, so "
        f"a full block ({rec['block_gas_limit']:,} gas) holds ~{per_block:,.0f} such readings, "
        f"which this receiver verifies in ~{per_block / rec['included']['per_s']:.1f} s at "
        f"`included` and ~{per_block / rec['complete']['per_s']:.1f} s at `complete` "
        "(mainnet's slot is 12 s).",
        "",
        "A delivery below `final` is written down for retraction after a reorg only when "
        "its block is above the finalized height, so over this final backlog `included` "
        "writes nothing per reading and costs about what `complete` does. The first "
        f"`included` poll after the catch-up took {rec['next_included_poll_s']:.2f} s.",
        "",
        f"Following: the receiver then followed {f['blocks']:,} more blocks (mined "
        f"{FOLLOW_ROUND_BLOCKS} at a time with `anvil_mine`; each device posted "
        f"{FOLLOW_POSTS_PER_ROUND} readings per round, {f['posted']} in all), polling at "
        f"`included` and `complete` after each round: {f['delivered'].get('complete', 0)}/"
        f"{f['posted']} delivered at `complete`, problems: {_problems(f['problems'])}.",
        "",
        "| receiver data directory | bytes |",
        "|---|---:|",
        f"| after the catch-up (before following) | {f['bytes_before']:,} |",
        f"| after {f['blocks']:,} more blocks (open, WAL included) | {f['bytes_after']:,} |",
        f"| after closing (WAL checkpointed) | {f['bytes_closed']:,} |",
        "",
        f"### Scale: {sc['identities']:,} identities, {sc['sent']:,} readings, one anvil",
        "",
        "How it was driven: one process. Each identity is a fresh key funded by the devnet's "
        "dev account (signed transfers sent as JSON-RPC batches), with its own data "
        "directory, SQLite outbox (`Store`) and `Sender` built by `make_sender` from the "
        "devnet device config as written by `lightpost devnet up` ("
        f"{sc['batch_bytes']:,}-byte posts, `max_delay_s = {sc['max_delay_s']:g}`). Each "
        f"identity is a meter producing one reading every {SCALE_READING_INTERVAL_S:g} s "
        f"({SCALE_MESSAGES_PER_IDENTITY} in all, the first at a random moment), enqueued "
        "through its Sender when the reading is due; "
        f"{sc['workers']} threads step the senders round-robin (each thread with its own "
        "quorum `Chain` client) until every message is final on the sender side. Keys are "
        f"held in memory rather than in {sc['identities']:,} keystores (decrypting them is "
        "start-up cost, not messaging). One receiver trusting all identities follows at "
        "`final` live; afterwards a fresh receiver verifies the whole chain at `complete`. "
        "When a pass over the senders takes longer than the reading interval, due readings "
        "are enqueued late and share a transaction (the pass time is in the table).",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| readings sent (enqueued) | {sc['sent']:,} |",
        f"| delivered at `final` (live receiver) | {sc['delivered_final_live']:,} |",
        f"| delivered at `complete` (fresh receiver) | {sc['delivered_complete']:,} |",
        f"| of them equal to what was sent | {sc['verified_complete']:,} |",
        f"| lost / duplicated | {sc['lost']} / {sc['duplicates']} |",
        f"| wall time: first enqueue -> every message final (sender side; the last readings "
        f"are due >= {(SCALE_MESSAGES_PER_IDENTITY - 1) * SCALE_READING_INTERVAL_S:g} s after "
        "the start) | "
        f"{_s(sc['sent_final_s'])} |",
        f"| wall time: first enqueue -> everything delivered at `final` | "
        f"{_s(sc['delivered_final_s'])} |",
        f"| fresh receiver, whole chain at `complete` (one poll) | {_s(sc['complete_verify_s'])} |",
        f"| then one steady `complete` poll, all {sc['identities']:,} streams proven "
        f"(`eth_getProof` calls) | {_s(sc.get('steady_complete_s'))} "
        f"({sc.get('steady_complete_proofs')}) |",
        f"| transactions (reverted) | {sc['gas']['transactions']:,} ({sc['gas']['reverted']}) |",
        f"| blocks | {sc['blocks']:,} |",
        f"| one pass of a stepping thread over its {sc['identities'] // sc['workers']:,} "
        f"senders, p50 / max | {_s(sc['pass_s']['p50'])} / {_s(sc['pass_s']['max'])} |",
        f"| gas, total | {sc['gas']['gas']:,} |",
        f"| gas per reading | {sc['gas']['gas'] / max(1, sc['sent']):,.0f} |",
        "",
        f"Problems: live {_problems(sc['live_problems'])}; at `complete` "
        f"{_problems(sc['complete_problems'])}; senders with an open problem at the end: "
        f"{sc['senders_with_open_problems']}; errors: {len(sc['errors'])}. Readings per "
        f"transaction: {sc['sent'] / max(1, sc['gas']['transactions']):.1f}; gas per reading "
        "follows from it (the gas table above: one reading per post vs batched), and each "
        "identity's first post pays the inbox's two zero-to-nonzero SSTOREs once.",
    ]
    return "\n".join(lines) + "\n"


def follow_summary(phase: dict[str, Any], block_time_s: float) -> dict[str, Any]:
    """Steady polls of one follow phase: time p50/p95/max and the eth_getProof figures of
    the polls that judged new blocks (the others found none finalized yet: ``idle``),
    blocks per poll, lag (max and at the end) and whether it kept up: at the end at most
    one poll's worth of blocks behind the finalized head (1 + the slowest poll's
    duration in blocks)."""
    lags = [int(p["lag"]) for p in phase["polls"]]
    polls = [p for p in phase["polls"] if p["blocks"] > 0]
    times = summarize([p["s"] for p in polls])
    bound = 1 + math.ceil((times["max"] or 0.0) / block_time_s)
    return {
        "polls": len(polls),
        "idle": len(phase["polls"]) - len(polls),
        "time": times,
        "blocks_per_poll": summarize([p["blocks"] for p in polls]),
        "max_lag": max(lags, default=0),
        "end_lag": lags[-1] if lags else 0,
        "keeps_up": bool(lags) and lags[-1] <= bound,
        "proofs_per_poll": statistics.median([p["proofs"] for p in polls]) if polls else 0,
        "proof_mb_per_poll": statistics.median([p["bytes"] for p in polls]) / 1e6 if polls else 0.0,
        "verify": summarize([p["verify_s"] for p in polls]),
    }


def render_follow(result: dict[str, Any]) -> str:
    m, f = result["machine"], result["follow"]
    lines = [
        f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"keccak backend `{m['keccak']}`, {m['anvil']}; the machine was shared with other work "
        f"(load average at start: {' / '.join(str(x) for x in m['load_at_start'])}). Run: "
        "`python tools/bench_runtime.py --only follow --write-docs`.",
        "",
        f"One anvil with {f['block_time_s']:g} s blocks; {f['devices']:,} sender identities "
        f"(funded with `anvil_setBalance`), each posting once first ({f['seed_s']:.0f} s to "
        f"mine the {f['devices']:,} first posts), then {f['posts_per_block']} readings per "
        "block from random identities (signed inbox posts, one JSON record each) while a "
        "controller -- lightpost's `Receiver`, one endpoint, quorum 1 -- follows. Each "
        "phase starts a fresh receiver that catches up from block 0, then polls back to "
        f"back (at most one poll start per {POLL_GAP_S:g} s) for {f['phase_blocks']} "
        "blocks. Lag = the finalized height when a poll ends minus the last block the "
        "receiver has judged (anvil finalizes 4 blocks behind `latest`). `complete` proves "
        f"every followed stream at every poll: {f['streams_per_proof_call']} streams per "
        "`eth_getProof` (sized for mainnet-depth proofs under the 8 MiB answer cap).",
        "",
        "| phase | catch-up | polls with new blocks (idle) | poll p50 / p95 / max | "
        "blocks per poll (p50 / max) | lag: max / at end | keeps up | eth_getProof per poll (MB) | "
        "proof verification p50 | RSS |",
        "|---|---:|---:|---|---|---|---|---:|---:|---:|",
    ]
    for phase in f["phases"]:
        s = follow_summary(phase, f["block_time_s"])
        t, b = s["time"], s["blocks_per_poll"]
        lines.append(
            f"| `{phase['level']}`, {phase['streams']:,} streams | "
            f"{_s(phase['catch_up']['s'])} | {s['polls']} ({s['idle']}) | "
            f"{_s(t['p50'])} / {_s(t['p95'])} / {_s(t['max'])} | "
            f"{b['p50'] or 0:.0f} / {b['max'] or 0:.0f} | {s['max_lag']} / {s['end_lag']} | "
            f"{'yes' if s['keeps_up'] else '**no**'} | "
            f"{s['proofs_per_poll']:.0f} ({s['proof_mb_per_poll']:.1f}) | "
            f"{_s(s['verify']['p50']) if s['verify']['p50'] else 'n/a'} | "
            f"{phase['rss_mib']:.0f} MiB |"
        )
    vb = f["verify_backends"]
    problems = {k: v for ph in f["phases"] for k, v in ph["problems"].items()}
    delivered = ", ".join(f"{ph['delivered']:,}" for ph in f["phases"])
    lines += [
        "",
        f"Delivered per phase (catch-up included): {delivered}; problems: "
        f"{_problems(problems)}. {f['posted']:,} readings posted over {f['chain_blocks']} "
        "blocks.",
    ]
    if vb:
        lines += [
            "",
            f"Keccak backend: one captured `eth_getProof` answer ({vb['streams']:,} streams, "
            f"{2 * vb['streams']:,} storage proofs) verifies in {vb['safe-pysha3']:.2f} s with "
            f"the `[fast]` extra (safe-pysha3) and {vb['pure-python']:.2f} s with the device "
            "core's pure-Python keccak: a controller following thousands of streams at "
            "`complete` needs `pip install 'lightpost[fast]'`.",
        ]
    return "\n".join(lines) + "\n"


def _scale_words(sc: dict[str, Any]) -> str:
    return (
        f"sent {sc['sent']:,}, delivered at complete {sc['delivered_complete']:,}, "
        f"verified {sc['verified_complete']:,}, lost {sc['lost']}"
    )


def _problems(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="lightpost runtime benchmarks (anvil)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--identities", type=int, help="scale identities (development)")
    parser.add_argument(
        "--only",
        choices=["latency", "receiver", "scale", "follow"],
        help="one measurement (`follow` may --write-docs: its own section)",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.identities:
        sizes = dataclasses.replace(sizes, scale_identities=args.identities)
    if args.write_docs and ((args.only not in (None, "follow")) or args.identities or args.quick):
        parser.error("--write-docs needs every measurement at its set size")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192 <= hard:  # 1,000 SQLite stores hold ~3 files each
        resource.setrlimit(resource.RLIMIT_NOFILE, (8192, hard))
    work = Path(tempfile.mkdtemp(prefix="lightpost-bench-runtime-"))
    result: dict[str, Any] = {
        "machine": machine(),
        "command": "python tools/bench_runtime.py" + (" --quick" if args.quick else ""),
    }
    try:
        for name, measure in (
            ("latency", measure_latency),
            ("receiver", measure_receiver),
            ("scale", measure_scale),
            ("follow", lambda d, s: measure_follow(d, devnet, config_of, say, s.follow_devices)),
        ):
            if args.only in (None, name):
                result[name] = measure(work / name, sizes)
    except LightpostError as exc:
        say(f"error: {exc}")
        return 1
    finally:
        if args.keep:
            say(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    result["total_s"] = time.monotonic() - _T0
    if "follow" in result:
        follow_text = render_follow(result)
        print(json.dumps(result["follow"], indent=2) if args.json else follow_text)
        if args.write_docs:
            write_section(DOC, follow_text, FOLLOW_BEGIN, FOLLOW_END)
            say(f"wrote the follow section of {DOC.relative_to(ROOT)}")
    if args.only:
        if args.only != "follow":
            print(json.dumps(result, indent=2, default=str))
        return 0
    text = render(result)
    print(json.dumps(result, indent=2, default=str) if args.json else text)
    if args.write_docs:
        write_section(DOC, text, BEGIN, END)
        say(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
