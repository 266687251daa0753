"""The chain scenarios of `make reliability` (1-6), each against a real anvil devnet.

Truth is always the chain: every inbox post from the device on the scenario's channel is
fetched (eth_getLogs), decoded, and its records' seqs counted; a message is *lost* when
its seq is missing, *duplicated* when it is there more than once. The helpers that do
this (and start/kill `lightpost node`) are the integration tests' own
(tests/integration/test_send_anvil.py, test_receive_attacks.py): one piece of code for
the short and the long versions.

Every anvil, node process and proxy started here is stopped in a ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.integration.receive_chain import hx
from tests.integration.test_receive_attacks import World, _fake_log
from tests.integration.test_send_anvil import (
    counts,
    device_config,
    enqueue_many,
    in_process,
    mined_count,
    node_process,
    on_chain,
    rpc,
    step_until,
)

from lightpost.core.levels import Delivered, Level
from lightpost.core.outbox import State
from lightpost.node.config import load_config
from lightpost.node.runtime import load_key, open_store
from lightpost_operator.anvil import LOOPBACK, AnvilProcess, free_port
from lightpost_operator.devnet import devnet_down, devnet_up
from lightpost_operator.proxy import (
    ForgeLogData,
    ForgeTxInput,
    HideLogs,
    InjectLog,
    Lie,
    StaleFinalized,
    WrongBlockHash,
    WrongHeaderField,
    WrongProof,
)

GWEI = 10**9
DEVICE_CAP_GWEI = 100
"""The devnet device's fee cap (max_fee_gwei in its config)."""
Progress = Callable[[str], None]


@dataclass
class Outcome:
    """One scenario's result: a row of the table, plus the details behind it."""

    scenario: str
    runs: str
    counted: str
    result: str
    ok: bool
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


def tally(seqs: Counter[int], expected: int) -> dict[str, int]:
    """Lost / duplicated / unexpected seqs of ``expected`` messages (seqs 0..n-1)."""
    return {
        "messages": expected,
        "on_chain": sum(1 for s in range(expected) if seqs[s]),
        "lost": sum(1 for s in range(expected) if not seqs[s]),
        "duplicated": sum(n - 1 for s, n in seqs.items() if n > 1),
        "unexpected": sum(1 for s in seqs if not 0 <= s < expected),
    }


def _clean(t: dict[str, int]) -> bool:
    return t["lost"] == 0 and t["duplicated"] == 0 and t["unexpected"] == 0


@contextlib.contextmanager
def devnet(tmp: Path) -> Iterator[dict[str, Any]]:
    """A one-device automining devnet in ``tmp`` (always brought down)."""
    desc = devnet_up(tmp / "net", port=free_port(), block_time=0, devices=1)
    try:
        yield desc
    finally:
        devnet_down(tmp / "net")


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="lightpost-reliability-") as tmp:
        yield Path(tmp)


# --- 1. SIGKILL -----------------------------------------------------------------------------


def _unfinished(config: Any) -> int:
    with open_store(config) as store:
        c = store.counts_by_state()
    return c[State.QUEUED] + c[State.HELD] + c[State.SIGNED] + c[State.BROADCAST]


def _in_flight(config: Any) -> bool:
    with open_store(config) as store:
        c = store.counts_by_state()
    return c[State.SIGNED] + c[State.BROADCAST] > 0


KILL_POLL_S = 0.01
"""How often the SIGKILL scenario looks at the outbox while waiting for its kill point."""


def sigkill(kills: int, messages: int, *, seed: int = 1, progress: Progress = print) -> Outcome:
    """A ``messages``-message run cut into ``kills + 1`` waves. Per wave, half its
    messages are enqueued, `lightpost node` is started, the other half is enqueued while
    it runs (the durable outbox is shared), and the node is SIGKILLed at a random point
    of the wave's work: once a random fraction of the wave is mined (0 = before the
    first inclusion), plus a random 0-30 ms, or after 2 s. The last start runs until
    everything is mined; then the chain is counted."""
    rng = random.Random(seed)
    started = time.monotonic()
    waves = [messages // (kills + 1)] * (kills + 1)
    waves[-1] += messages - sum(waves)
    mined_at_kill: list[int] = []
    during_work = in_flight = 0
    with scratch() as tmp, devnet(tmp) as desc:
        path = device_config(desc, batch_bytes=200)  # ~2 messages per transaction
        config = load_config(path)
        proc = None
        try:
            for i, wave in enumerate(waves):
                enqueue_many(config, "crash", wave // 2)
                proc = node_process(path)
                enqueue_many(config, "crash", wave - wave // 2)
                if i == kills:
                    break
                if rng.random() < 0.5:  # a random time into the wave
                    time.sleep(rng.uniform(0, 0.5))
                else:  # a random moment once transactions are signed / in flight
                    deadline = time.monotonic() + 2.0
                    while not _in_flight(config) and time.monotonic() < deadline:
                        time.sleep(KILL_POLL_S)
                    time.sleep(rng.uniform(0, 0.03))
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                proc = None
                mined_at_kill.append(mined_count(config))
                left = _unfinished(config)
                during_work += left > 0
                in_flight += _in_flight(config)
                if (i + 1) % 5 == 0:
                    progress(f"sigkill: kill {i + 1}/{kills}, {mined_at_kill[-1]} mined so far")
            deadline = time.monotonic() + 900
            while (done := mined_count(config)) < messages:
                if proc is None or proc.poll() is not None:
                    raise RuntimeError("the node died during the final drain")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {done}/{messages} mined after the kills")
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            clean_exit = proc.wait(timeout=30) == 0
            proc = None
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        t = tally(on_chain(desc, config, "crash"), messages)
    ok = _clean(t) and clean_exit
    return Outcome(
        "SIGKILL of `lightpost node` at random points, restart",
        f"{kills} kills ({during_work} with unsent/unmined messages, {in_flight} with "
        f"transactions signed or in flight), {messages:,} messages",
        "messages lost / duplicated on chain",
        f"{t['lost']} lost, {t['duplicated']} duplicated ({t['on_chain']:,}/{messages:,} on "
        f"chain once)",
        ok,
        time.monotonic() - started,
        {**t, "mined_at_each_kill": mined_at_kill, "clean_exit": clean_exit},
    )


# --- 2. lying endpoints -------------------------------------------------------------------

HEADER_FIELDS = ("stateRoot", "receiptsRoot", "transactionsRoot", "parentHash", "logsBloom")
"""Header fields a WrongHeaderField lie picks from."""


def _hide_some(rng: random.Random) -> Callable[[dict[str, Any]], bool]:
    k, r = rng.randint(2, 4), rng.randrange(4)
    return lambda log: int(str(log.get("transactionHash", "0x0"))[-4:], 16) % k == r % k


LIES: dict[str, Callable[[World, random.Random], Lie]] = {
    "ForgeTxInput": lambda w, rng: ForgeTxInput(to=hx(w.chain.inbox)),
    "ForgeLogData": lambda w, rng: ForgeLogData(),
    "InjectLog": lambda w, rng: InjectLog(_fake_log(w)),
    "HideLogs": lambda w, rng: HideLogs(_hide_some(rng)),
    "WrongBlockHash": lambda w, rng: WrongBlockHash(nibble=-rng.randint(1, 64)),
    "WrongHeaderField": lambda w, rng: WrongHeaderField(rng.choice(HEADER_FIELDS)),
    "StaleFinalized": lambda w, rng: StaleFinalized(lag=rng.randint(1, 4)),
    "WrongProof": lambda w, rng: WrongProof(rng.choice(("value", "count-down", "account"))),
}
"""The proxy's 8 kinds of lie, each with randomised parameters."""

DETECTING = frozenset({"hidden", "gap", "proof-failure", "disagreement"})
"""Problem kinds that report a lie."""


def lying(reps: int, *, seed: int = 2, progress: Progress = print) -> Outcome:
    """Each lie kind, one liar of three endpoints, at every verification level, ``reps``
    times; then the post addressed to this device hidden by *every* endpoint."""
    rng = random.Random(seed)
    started = time.monotonic()
    per_kind: dict[str, Counter[str]] = {name: Counter() for name in LIES}
    all_hide: Counter[str] = Counter()
    with scratch() as tmp:
        proc = AnvilProcess(port=free_port()).start()
        try:
            world = World(proc)
            n = 0
            for rep in range(reps):
                for name, make in LIES.items():
                    for level in Level:
                        n += 1
                        lie = make(world, rng)
                        delivered, problems, _ = world.receive(
                            tmp / f"r{n}", [[lie]], level, honest=2
                        )
                        _count_run(per_kind[name], world, lie, delivered, problems, level)
                progress(f"lying: round {rep + 1}/{reps} ({n} receiver runs)")
            hide_me = world.to_me["transactionHash"]
            for _ in range(reps):
                for level in (Level.FINAL, Level.COMPLETE):
                    n += 1
                    lie = HideLogs(lambda log: log.get("transactionHash") == hide_me)
                    delivered, problems, _ = world.receive(
                        tmp / f"r{n}", [[lie]], level, honest=0, quorum=1
                    )
                    kinds = {p.kind for p in problems}
                    got = {(d.sender, d.seq, d.payload) for d in delivered}
                    all_hide["runs"] += 1
                    all_hide["forged"] += len(got - world.expected)
                    all_hide["detected"] += bool(kinds & {"hidden", "gap"})
            progress(f"lying: every endpoint hiding, {all_hide['runs']} runs")
        finally:
            proc.stop()
    total = sum((c for c in per_kind.values()), Counter())
    forged = total["forged"] + all_hide["forged"]
    ok = (
        forged == 0
        and total["lost"] == 0
        and total["duplicated"] == 0
        and all_hide["detected"] == all_hide["runs"]
    )
    hide = per_kind["HideLogs"]
    return Outcome(
        "Lying endpoints (1 liar of 3; 8 lie kinds x 4 levels)",
        f"{total['runs']} receiver runs + {all_hide['runs']} with every endpoint hiding",
        "forgeries accepted; honest messages lost; lies reported; hidings detected",
        f"{forged} forgeries accepted, {total['lost']} lost, {total['duplicated']} duplicated; "
        f"lie fired in {total['fired']} runs, reported in {total['detected']}; 1 of 3 hiding: "
        f"{hide['detected']}/{hide['fired']} reported, none lost; all 3 hiding: "
        f"{all_hide['detected']}/{all_hide['runs']} detected",
        ok,
        time.monotonic() - started,
        {
            "per_kind": {k: dict(v) for k, v in per_kind.items()},
            "every_endpoint_hiding": dict(all_hide),
        },
    )


def _count_run(
    c: Counter[str],
    world: World,
    lie: Lie,
    delivered: list[Delivered],
    problems: list[Any],
    level: Level,
) -> None:
    got = {(d.sender, d.seq, d.payload) for d in delivered}
    c["runs"] += 1
    c["fired"] += bool(lie.fired)
    c["forged"] += len(got - world.expected)
    c["lost"] += len(world.expected - got)
    c["duplicated"] += len(delivered) - len(got)
    detected = bool(lie.fired) and any(p.kind in DETECTING for p in problems)
    c["detected"] += detected
    c[f"{level}: fired"] += bool(lie.fired)
    c[f"{level}: detected"] += detected


# --- 3. reorgs ----------------------------------------------------------------------------------


def reorgs(runs: int, *, progress: Progress = print) -> Outcome:
    """Run i: ``depth = 1 + i % 3`` messages, each in its own block, then anvil_reorg of
    that depth (all of them leave the chain); the sender must put each on the new chain
    exactly once, and see it final there."""
    started = time.monotonic()
    totals: Counter[str] = Counter()
    with scratch() as tmp, devnet(tmp) as desc:
        url = desc["rpc_url"]
        config = load_config(device_config(desc))
        sender, close = in_process(config, finality_depth=0)
        try:
            for i in range(runs):
                depth = 1 + i % 3
                channel = f"reorg-{i}"
                ids = []
                for j in range(depth):  # one block each (automine)
                    ids.append(sender.enqueue(payload=f"r{i} m{j}".encode(), channel=channel))
                    step_until(sender, partial(_all_in, sender, list(ids), State.INCLUDED))
                head = int(rpc(url, "eth_blockNumber", []), 16)
                before = {_block_of(sender, m) for m in ids}
                rpc(url, "anvil_reorg", [depth, []])
                # Until the sender has seen the reorg and put every message on the new chain.
                step_until(
                    sender,
                    partial(_moved, sender, ids, before),
                    120,
                )
                rpc(url, "anvil_mine", ["0x8"])
                step_until(sender, partial(_all_in, sender, ids, State.FINAL), 120)
                t = tally(on_chain(desc, config, channel), depth)
                totals.update(t)
                totals["runs"] += 1
                totals[f"depth-{depth}"] += 1
                progress(f"reorgs: run {i + 1}/{runs} depth {depth} (head was {head})")
        finally:
            close()
    ok = totals["lost"] == 0 and totals["duplicated"] == 0 and totals["unexpected"] == 0
    depths = ", ".join(f"{totals[f'depth-{d}']}x depth {d}" for d in (1, 2, 3))
    return Outcome(
        "Reorg of depth 1-3 (anvil_reorg) after inclusion",
        f"{runs} reorgs ({depths}), {totals['messages']} messages",
        "messages lost / duplicated on the final chain",
        f"{totals['lost']} lost, {totals['duplicated']} duplicated "
        f"({totals['on_chain']}/{totals['messages']} final once)",
        ok,
        time.monotonic() - started,
        dict(totals),
    )


def _block_of(sender: Any, message_id: int) -> bytes | None:
    tx_id = sender.store.message(message_id).tx_id
    included = sender.store.transaction(tx_id).included if tx_id else None
    return included.hash if included else None


def _moved(sender: Any, ids: list[int], before: set[bytes | None]) -> bool:
    """Every message included again, none in a block it was in before the reorg."""
    return _all_in(sender, ids, State.INCLUDED) and not before & {_block_of(sender, m) for m in ids}


def _included(sender: Any, messages: int) -> bool:
    return counts(sender)[State.INCLUDED] == messages


def _all_in(sender: Any, ids: list[int], *states: State) -> bool:
    return all(sender.store.message(i).state in states for i in ids)


# --- 4. base fee above the cap ------------------------------------------------------------------


def base_fee(blocks: int, messages: int, *, progress: Progress = print) -> Outcome:
    """The base fee is set to 3x the device's fee cap for ``blocks`` consecutive blocks
    while ``messages`` are enqueued; then it drops back."""
    started = time.monotonic()
    with scratch() as tmp, devnet(tmp) as desc:
        url = desc["rpc_url"]
        config = load_config(device_config(desc))
        high = hex(3 * DEVICE_CAP_GWEI * GWEI)
        sender, close = in_process(config)
        seen_on_chain = 0
        held_max = 0
        try:
            every = max(1, blocks // messages)
            enqueued = 0
            for b in range(blocks):
                rpc(url, "anvil_setNextBlockBaseFeePerGas", [high])
                rpc(url, "anvil_mine", ["0x1"])
                if b % every == 0 and enqueued < messages:
                    sender.enqueue(payload=f"spike {enqueued}".encode(), channel="spike")
                    enqueued += 1
                sender.step(time.time())
                held_max = max(held_max, counts(sender)[State.HELD])
                if (b + 1) % 25 == 0:
                    seen_on_chain = sum(on_chain(desc, config, "spike").values())
                    progress(
                        f"base fee: block {b + 1}/{blocks} above the cap, "
                        f"{counts(sender)[State.HELD]} held, {seen_on_chain} on chain"
                    )
            while enqueued < messages:
                sender.enqueue(payload=f"spike {enqueued}".encode(), channel="spike")
                enqueued += 1
            sender.step(time.time())
            held_at_end = counts(sender)[State.HELD]
            seen_on_chain = sum(on_chain(desc, config, "spike").values())
            rpc(url, "anvil_setNextBlockBaseFeePerGas", [hex(GWEI)])
            rpc(url, "anvil_mine", ["0x1"])
            step_until(sender, lambda: counts(sender)[State.INCLUDED] == messages, 120)
        finally:
            close()
        t = tally(on_chain(desc, config, "spike"), messages)
    ok = _clean(t) and seen_on_chain == 0 and held_at_end == messages
    return Outcome(
        "Base fee 3x above the device's cap",
        f"{blocks} blocks, {messages} messages",
        "held during the spike; sent during it; lost / duplicated after",
        f"{held_at_end}/{messages} held, {seen_on_chain} sent during the spike; after: "
        f"{t['lost']} lost, {t['duplicated']} duplicated",
        ok,
        time.monotonic() - started,
        {**t, "held_at_end": held_at_end, "on_chain_during": seen_on_chain},
    )


# --- 5. endpoints down / slow / flapping -------------------------------------------------------


class FlakyProxy:
    """A loopback JSON-RPC proxy that is slow (``delay``) and/or flaps: up for
    ``period`` seconds, then down for ``period`` seconds. While down, a request is
    either refused (HTTP 503, not forwarded) or forwarded and its answer lost (the
    connection is dropped): the worst case for a broadcast."""

    def __init__(
        self, upstream: str, *, delay: float = 0.0, period: float = 0.0, seed: int = 0
    ) -> None:
        outer = self
        self.delay, self.period = delay, period
        self.rng = random.Random(seed)
        self.started = time.monotonic()
        self.refused = self.dropped = self.forwarded = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                time.sleep(outer.delay)
                down = outer.down()
                if down and outer.rng.random() < 0.5:
                    outer.refused += 1
                    self.send_response(503)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                req = urllib.request.Request(upstream, body, {"content-type": "application/json"})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    data = resp.read()
                if down:
                    outer.dropped += 1
                    self.close_connection = True
                    return  # forwarded, but the answer never comes back
                outer.forwarded += 1
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> bool:
        if not self.period:
            return False
        return int((time.monotonic() - self.started) / self.period) % 2 == 0  # starts down

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


ENDPOINT_MODES = ("down", "slow", "flapping", "flapping-all")
"""down: one of three refuses connections; slow: one of three answers after 1 s;
flapping: the only endpoint flaps; flapping-all: all three flap out of phase (quorum 2)."""


def endpoints(
    reps: int,
    messages: int,
    *,
    modes: tuple[str, ...] = ENDPOINT_MODES,
    progress: Progress = print,
) -> Outcome:
    """Each of ``modes`` ``reps`` times with ``messages`` messages, in-process sender."""
    started = time.monotonic()
    rows: dict[str, Counter[str]] = {m: Counter() for m in modes}
    with scratch() as tmp, devnet(tmp) as desc:
        url = desc["rpc_url"]
        path = device_config(desc, batch_bytes=300)
        n = 0
        for rep in range(reps):
            for mode in modes:
                n += 1
                proxies: list[FlakyProxy] = []
                try:
                    if mode == "down":
                        urls = [url, f"http://{LOOPBACK}:{free_port()}", url]
                    elif mode == "slow":
                        proxies = [FlakyProxy(url, delay=1.0)]
                        urls = [url, proxies[0].url, url]
                    elif mode == "flapping":
                        proxies = [FlakyProxy(url, period=0.7, seed=n)]
                        urls = [proxies[0].url]
                    else:
                        proxies = [
                            FlakyProxy(url, period=p, seed=n + i)
                            for i, p in enumerate((0.5, 0.7, 1.1))
                        ]
                        urls = [p.url for p in proxies]
                    config = load_config(
                        path,
                        env={
                            **os.environ,
                            "LIGHTPOST_ENDPOINTS": ",".join(urls),
                            "LIGHTPOST_QUORUM": "1" if len(urls) == 1 else "2",
                            "LIGHTPOST_DATA_DIR": str(tmp / f"data-{n}"),
                        },
                    )
                    channel = f"ep-{n}"
                    enqueue_many(config, channel, messages)
                    sender, close = in_process(config)
                    try:
                        step_until(
                            sender,
                            partial(_included, sender, messages),
                            timeout=180,
                        )
                    finally:
                        close()
                    t = tally(on_chain(desc, config, channel), messages)
                    rows[mode].update(t)
                    rows[mode]["runs"] += 1
                    for p in proxies:
                        rows[mode]["answers_lost"] += p.dropped
                        rows[mode]["refused"] += p.refused
                finally:
                    for p in proxies:
                        p.close()
            progress(f"endpoints: round {rep + 1}/{reps}")
    total = sum(rows.values(), Counter())
    ok = total["lost"] == 0 and total["duplicated"] == 0 and total["unexpected"] == 0
    return Outcome(
        "Endpoint down / slow (1 s) / flapping (answers refused or lost)",
        f"{reps}x each of {len(modes)} modes, {total['messages']} messages",
        "messages lost / duplicated on chain",
        f"{total['lost']} lost, {total['duplicated']} duplicated; flapping proxies "
        f"refused {total['refused']:,} requests and lost {total['answers_lost']:,} answers",
        ok,
        time.monotonic() - started,
        {m: dict(c) for m, c in rows.items()},
    )


# --- 6. insufficient funds ----------------------------------------------------------------------


def funds(runs: int, messages: int, *, progress: Progress = print) -> Outcome:
    """The device's balance is set to 0, ``messages`` are enqueued and the sender
    steps; then the device is funded again."""
    started = time.monotonic()
    totals: Counter[str] = Counter()
    with scratch() as tmp, devnet(tmp) as desc:
        url = desc["rpc_url"]
        config = load_config(device_config(desc))
        address = "0x" + load_key(config).address.hex()
        sender, close = in_process(config)
        try:
            for i in range(runs):
                channel = f"funds-{i}"
                rpc(url, "anvil_setBalance", [address, "0x0"])
                ids = [
                    sender.enqueue(payload=f"f{i} m{j}".encode(), channel=channel)
                    for j in range(messages)
                ]
                for _ in range(5):
                    sender.step(time.time())
                    time.sleep(0.05)
                held = counts(sender)[State.HELD]
                during = sum(on_chain(desc, config, channel).values())
                rpc(url, "anvil_setBalance", [address, hex(100 * 10**18)])
                step_until(sender, partial(_all_in, sender, ids, State.INCLUDED, State.FINAL), 120)
                t = tally(on_chain(desc, config, channel), messages)
                totals.update(t)
                totals["runs"] += 1
                totals["held"] += held
                totals["sent_unfunded"] += during
                progress(f"funds: run {i + 1}/{runs}: {held}/{messages} held while unfunded")
        finally:
            close()
    ok = _clean(totals) and totals["held"] == totals["messages"] and totals["sent_unfunded"] == 0
    return Outcome(
        "Insufficient funds: device balance 0, then funded",
        f"{runs} runs, {totals['messages']} messages",
        "held while unfunded; lost / duplicated after funding",
        f"{totals['held']}/{totals['messages']} held, {totals['sent_unfunded']} sent unfunded; "
        f"after: {totals['lost']} lost, {totals['duplicated']} duplicated",
        ok,
        time.monotonic() - started,
        dict(totals),
    )
