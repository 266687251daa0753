"""`make bench`, the receiver at city scale: does a controller keep up with 2 s blocks?

Run by tools/bench_runtime.py (``--only follow``); writes its own generated section of
docs/benchmarks.md. One anvil with ``--block-time 2`` (lightpost's devnet), 10,000 sender
identities funded in bulk (``anvil_setBalance`` in JSON-RPC batches). Each identity posts
once (its stream then exists on chain), then a poster keeps :data:`POSTS_PER_BLOCK`
readings per block flowing from random identities (signed raw inbox posts, the calldata
and envelope a lightpost Sender would send) while a controller -- lightpost's own
``Receiver`` -- follows:

1. ``complete``, 1,000 followed streams (the issue's 1,000-sender steady poll);
2. ``complete``, all 10,000 streams;
3. ``final``, all 10,000 streams.

Each phase starts a fresh receiver that first catches up from block 0 (timed), then polls
back to back (at most one poll per :data:`POLL_GAP_S`) for :data:`PHASE_BLOCKS` blocks.
Per steady poll: wall time, blocks it covered, eth_getProof calls and answer bytes, proof
verification time (``verify_accumulators``), and the lag (finalized height at the end of
the poll minus the last block the receiver has judged). Nothing is a timing assert.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core import keccak as pure_keccak
from lightpost.core import trie
from lightpost.core.envelope import ContentType, Post, Record, channel_id, encode_post
from lightpost.core.inbox import HEADER_BYTES, inbox_calldata, inbox_execution_gas
from lightpost.core.keys import PrivateKey
from lightpost.core.levels import Delivered, Level
from lightpost.core.tx import DynamicFeeTx, sign_transaction
from lightpost.core.verify import verify_accumulators
from lightpost.node import receiver_complete
from lightpost.node.config import ChannelPolicy, DeviceConfig, load_config
from lightpost.node.receiver import Receiver
from lightpost.node.runtime import build_endpoints
from lightpost_operator.keywrite import generate_key

BEGIN, END = "<!-- BEGIN GENERATED BENCH-FOLLOW -->", "<!-- END GENERATED BENCH-FOLLOW -->"

BLOCK_TIME_S = 2.0
"""Block time of this measurement (issue 12: keep up with 2 s blocks)."""

DEVICES = 10_000
"""Sender identities followed by the city controller (issue 12)."""

SMALL_FOLLOW = 1_000
"""Streams followed in the first phase (the issue's 1,000-sender `complete` poll)."""

PHASES = ((Level.COMPLETE, SMALL_FOLLOW), (Level.COMPLETE, None), (Level.FINAL, None))
"""(level, streams followed; None: every identity) of each phase, in order."""

POSTS_PER_BLOCK = 50
"""Readings posted per 2 s block once every stream exists: each of 10,000 meters reports
about every 400 s (a reading every ~7 minutes)."""

PHASE_BLOCKS = 30
"""Blocks each follow phase lasts after its catch-up (60 s at 2 s blocks)."""

POLL_GAP_S = 1.0
"""Shortest time between two poll starts (lightpost's ReceiveService: RECEIVE_INTERVAL_S)."""

BATCH = 500
"""JSON-RPC calls per batch when funding and seeding."""

FUNDING_WEI = 10**18
"""Devnet money per identity (anvil_setBalance)."""

MAX_FEE_WEI = 200 * 10**9
"""Fee cap of the bench's posts (the base fee climbs while 10,000 first posts fill blocks)."""

TIP_WEI = 10**9
"""Priority fee of the bench's posts."""

INTRINSIC_GAS = 21_000
"""Base cost of a transaction (Yellow Paper G_transaction)."""

FLOOR_GAS_PER_BYTE = 40
"""Upper bound on calldata gas per byte (EIP-7623 floor for a nonzero byte)."""

PROBLEM_LINES = 3
"""Problems of each kind printed per phase (all are counted)."""

FINALITY_BLOCKS = 5
"""Blocks mined after seeding so that the first posts are final (anvil finalizes 4 blocks
behind `latest` on the devnet)."""

CHANNEL = "city"

Say = Callable[[str], None]


def _rpc(url: str) -> HttpEndpoint:
    return HttpEndpoint(url, "bench", retries=0, timeout=120.0)


def _rss_mib() -> float:
    """This process's resident set now (MiB; /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Poster:
    """Signs one-record inbox posts (a lightpost Sender's calldata and envelope)."""

    def __init__(self, keys: Sequence[PrivateKey], inbox: bytes, chain_id: int) -> None:
        self.keys, self.inbox, self.chain_id = keys, inbox, chain_id
        self.nonce = [0] * len(keys)
        self.channel = channel_id(CHANNEL)
        self.posted = 0

    def raw(self, i: int) -> str:
        seq = self.nonce[i]
        payload = json.dumps({"id": f"meter-{i:05d}", "n": seq, "kWh": 1200 + seq}).encode()
        record = Record(
            seq=seq, timestamp=int(time.time()), content_type=ContentType.JSON, payload=payload
        )
        post = Post(channel=self.channel, recipient=None, records=(record,))
        data = inbox_calldata(self.channel, None, encode_post(post)[HEADER_BYTES:])
        gas = (
            INTRINSIC_GAS
            + FLOOR_GAS_PER_BYTE * len(data)
            + inbox_execution_gas(len(data), first_post=True)
        )
        tx = DynamicFeeTx(
            chain_id=self.chain_id,
            nonce=seq,
            max_priority_fee_per_gas=TIP_WEI,
            max_fee_per_gas=MAX_FEE_WEI,
            gas=gas,
            to=self.inbox,
            value=0,
            data=data,
        )
        self.nonce[i] += 1
        self.posted += 1
        return "0x" + sign_transaction(tx, self.keys[i]).raw.hex()

    def send(self, ep: HttpEndpoint, who: Sequence[int]) -> None:
        for lo in range(0, len(who), BATCH):
            calls = [("eth_sendRawTransaction", [self.raw(i)]) for i in who[lo : lo + BATCH]]
            for answer in ep.batch(calls):
                if isinstance(answer, Exception):
                    raise SystemExit(f"follow: a post was refused: {answer}")


def _fund(ep: HttpEndpoint, keys: Sequence[PrivateKey]) -> None:
    for lo in range(0, len(keys), BATCH):
        calls = [
            ("anvil_setBalance", ["0x" + k.address.hex(), hex(FUNDING_WEI)])
            for k in keys[lo : lo + BATCH]
        ]
        for answer in ep.batch(calls):
            if isinstance(answer, Exception):
                raise SystemExit(f"follow: funding failed: {answer}")


def _seed(ep: HttpEndpoint, poster: Poster, say: Say) -> None:
    """Every identity's first post, mined at once (anvil_mine) until the pool is empty."""
    poster.send(ep, list(range(len(poster.keys))))
    while True:
        status = ep.call("txpool_status", [])
        left = int(status["pending"], 16) + int(status["queued"], 16)
        if not left:
            break
        say(f"follow: seeding, {left:,} first posts still in the pool")
        ep.call("anvil_mine", ["0x1"])
    ep.call("anvil_mine", [hex(FINALITY_BLOCKS)])


class Measured:
    """Counts eth_getProof calls and answer bytes of one endpoint (the byte count's own
    cost is kept apart and taken out of the poll time)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.label = inner, inner.label
        self.proofs = 0
        self.proof_bytes = 0
        self.overhead_s = 0.0

    def call(self, method: str, params: Sequence[Any]) -> Any:
        answer = self.inner.call(method, params)
        if method == "eth_getProof":
            t0 = time.perf_counter()
            self.proofs += 1
            self.proof_bytes += len(json.dumps(answer))
            self.overhead_s += time.perf_counter() - t0
        return answer

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        return list(self.inner.batch(calls))


class VerifyClock:
    """Wraps the receiver's verify_accumulators: time spent proving storage."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.sample: tuple[bytes, Any, dict[str, Any]] | None = None

    def __call__(self, state_root: bytes, answer: Any, **kw: Any) -> Any:
        if self.sample is None:
            self.sample = (state_root, answer, kw)
        t0 = time.perf_counter()
        try:
            return verify_accumulators(state_root, answer, **kw)
        finally:
            self.seconds += time.perf_counter() - t0


def _follow_phase(
    base: DeviceConfig,
    directory: Path,
    url: str,
    keys: Sequence[PrivateKey],
    level: Level,
    say: Say,
    clock: VerifyClock,
) -> dict[str, Any]:
    config = dataclasses.replace(
        base,
        channels=(ChannelPolicy(CHANNEL, tuple(k.address for k in keys)),),
        data_dir=directory,
    )
    eps = [Measured(ep) for ep in build_endpoints(config)]
    ep = _rpc(url)
    receiver = Receiver(config, endpoints=eps)
    name = f"{level} x {len(keys):,}"
    delivered = 0
    problems: Counter[str] = Counter()

    def judged() -> int:
        return max(receiver._scan.values(), default=0) - 1  # the bench reads the cursor

    def finalized() -> int:
        return int(ep.call("eth_getBlockByNumber", ["finalized", False])["number"], 16)

    def poll() -> dict[str, float]:
        nonlocal delivered
        before = judged()
        proofs = sum(e.proofs for e in eps)
        nbytes = sum(e.proof_bytes for e in eps)
        over = sum(e.overhead_s for e in eps)
        verify = clock.seconds
        t0 = time.perf_counter()
        for item in receiver.poll(level, CHANNEL):
            if isinstance(item, Delivered):
                delivered += 1
            else:
                problems[item.kind] += 1
                if problems[item.kind] <= PROBLEM_LINES:
                    say(f"follow: {name}: problem {item.kind}: {item.details}")
        seconds = time.perf_counter() - t0 - (sum(e.overhead_s for e in eps) - over)
        return {
            "s": seconds,
            "blocks": judged() - before,
            "lag": finalized() - judged(),
            "proofs": sum(e.proofs for e in eps) - proofs,
            "bytes": sum(e.proof_bytes for e in eps) - nbytes,
            "verify_s": clock.seconds - verify,
        }

    try:
        catch_up = poll()
        say(f"follow: {name}: caught up in {catch_up['s']:.1f} s ({delivered:,} delivered)")
        start = finalized()
        polls: list[dict[str, float]] = []
        rss = _rss_mib()
        while finalized() < start + PHASE_BLOCKS:
            t0 = time.monotonic()
            polls.append(poll())
            rss = max(rss, _rss_mib())
            p = polls[-1]
            say(
                f"follow: {name}: poll {p['s']:.2f} s over {p['blocks']:.0f} block(s), "
                f"lag {p['lag']:.0f}, {p['proofs']:.0f} eth_getProof ({p['bytes'] / 1e6:.1f} MB)"
            )
            time.sleep(max(0.0, POLL_GAP_S - (time.monotonic() - t0)))
    finally:
        receiver.close()
    return {
        "level": str(level),
        "streams": len(keys),
        "catch_up": catch_up,
        "polls": polls,
        "delivered": delivered,
        "problems": dict(problems),
        "rss_mib": rss,
    }


def _verify_backends(sample: tuple[bytes, Any, dict[str, Any]] | None) -> dict[str, float]:
    """One captured eth_getProof answer verified with the compiled and the pure keccak."""
    if sample is None:
        return {}
    state_root, answer, kw = sample
    out = {}
    fast = trie.keccak256
    for name, fn in (("safe-pysha3", fast), ("pure-python", pure_keccak.keccak256)):
        trie.keccak256 = fn
        try:
            t0 = time.perf_counter()
            verify_accumulators(state_root, answer, **kw)
            out[name] = time.perf_counter() - t0
        finally:
            trie.keccak256 = fast
    out["streams"] = len(kw["keys"])
    return out


def measure_follow(
    directory: Path,
    devnet: Callable[..., Any],
    config_of: Callable[..., str],
    say: Say,
    devices: int = DEVICES,
) -> dict[str, Any]:
    """The follow phases on one 2 s-block devnet with ``devices`` identities (see the
    module docstring)."""
    with devnet(directory, ["controller"], {}, block_time=BLOCK_TIME_S) as desc:
        url = desc["rpc_url"]
        ep = _rpc(url)
        base = load_config(config_of(desc, "controller"))
        say(f"follow: {devices:,} identities, funded with anvil_setBalance in batches")
        keys = [generate_key(os.urandom) for _ in range(devices)]
        _fund(ep, keys)
        assert base.inbox is not None
        poster = Poster(keys, base.inbox, base.chain_id)
        t0 = time.monotonic()
        _seed(ep, poster, say)
        seed_s = time.monotonic() - t0
        say(f"follow: {devices:,} first posts mined in {seed_s:.1f} s")
        stop = threading.Event()
        rng = random.Random(12)

        def post() -> None:
            own = _rpc(url)
            last = int(own.call("eth_blockNumber", []), 16)
            while not stop.is_set():
                head = int(own.call("eth_blockNumber", []), 16)
                if head > last:
                    last = head
                    poster.send(own, rng.sample(range(devices), min(devices, POSTS_PER_BLOCK)))
                stop.wait(0.2)

        thread = threading.Thread(target=post, daemon=True)
        thread.start()
        clock = VerifyClock()
        real = receiver_complete.verify_accumulators
        receiver_complete.verify_accumulators = clock  # type: ignore[assignment]
        phases = []
        try:
            for i, (level, streams) in enumerate(PHASES):
                n = min(devices, streams or devices)
                phases.append(
                    _follow_phase(
                        base, directory / f"recv-{i}-{level}-{n}", url, keys[:n], level, say, clock
                    )
                )
        finally:
            receiver_complete.verify_accumulators = real
            stop.set()
            thread.join(timeout=30)
        head = int(ep.call("eth_blockNumber", []), 16)
    return {
        "devices": devices,
        "block_time_s": BLOCK_TIME_S,
        "posts_per_block": POSTS_PER_BLOCK,
        "phase_blocks": PHASE_BLOCKS,
        "posted": poster.posted,
        "seed_s": seed_s,
        "chain_blocks": head,
        "streams_per_proof_call": receiver_complete.PROOF_STREAMS_PER_CALL,
        "phases": phases,
        "verify_backends": _verify_backends(clock.sample),
    }
