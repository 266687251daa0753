"""The console's one follower: a receiver over the controller's channels, feeding the model.

It runs in one thread, whatever number of browser tabs is open: each round polls the
receiver at each followed level (the same proofs the controller runs, from its own state in
a private temporary directory so the controller's own cursor is never touched), then asks
the quorum for the gas of newly seen transactions and, less often, for balances and the
base fee. Every answer it turns into cost or balance figures is a quorum-agreed one
(lightpost.node.chain.Chain.agreed); nothing it shows comes from one endpoint alone.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from lightpost.adapters.receiver_store import ReceiverStore
from lightpost.adapters.store import Store
from lightpost.cli.receive_cmd import delivered_json, problem_json
from lightpost.core.envelope import decode_post
from lightpost.core.header import header_hash, verify_header
from lightpost.core.keys import to_checksum_address
from lightpost.core.l2 import ETHEREUM, BlockFormat
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem
from lightpost.errors import LightpostError
from lightpost.node.chain import Chain, parse_quantity
from lightpost.node.config import DeviceConfig
from lightpost.node.receiver import Receiver
from lightpost.node.receiver_delivery import ProvenPost
from lightpost.node.runtime import STORE_FILE, build_chain, keystore_address
from lightpost_operator.console_model import Model

__all__ = ["FOLLOW_LEVELS", "Follower", "post_json"]

FOLLOW_LEVELS = (Level.INCLUDED, Level.FINAL, Level.COMPLETE)
"""Levels the console follows: each message climbs them on the page."""

ROUND_INTERVAL_S = 1.0
"""Pause between rounds (the demo's controller polls as often: services.RECEIVE_INTERVAL_S)."""

CHAIN_READ_INTERVAL_S = 10.0
"""Balances, base fee and the controller's outbox are read this often (slow-moving figures)."""

GAS_LOOKUPS_PER_ROUND = 16
"""Receipts asked per round at most (a backlog after a catch-up is worked off over rounds)."""

DEFAULT_HISTORY_BLOCKS = 7200
"""Blocks of history scanned at start when no --since is given: a day of 12 s slots."""

PROOF_CACHE = 128
"""Block-agreement answers kept for the proof trail (each asked once)."""


def post_json(post: ProvenPost, channel_names: Mapping[bytes, str]) -> dict[str, Any] | None:
    """The model's object of one proven post of a trusted sender: its transaction and the
    sequence numbers of the records (or chunks) it carried, so the cost of a chunked message
    counts every chunk's transaction; None when the post does not decode (the receiver
    reports that as a problem)."""
    try:
        envelope = decode_post(post.calldata)
    except LightpostError:
        return None
    return {
        "type": "post",
        "sender": to_checksum_address(post.sender),
        "channel": channel_names.get(post.channel, "0x" + post.channel.hex()),
        "seqs": sorted({r.seq for r in envelope.records}),
        "tx_hash": "0x" + post.tx_hash.hex(),
        "block_timestamp": post.block_timestamp,
    }


def _hash_of(block: Any, fmt: BlockFormat = ETHEREUM) -> str:
    """The hash of the header ``block`` claims (``fmt``'s extra header keys allowed)."""
    return "0x" + header_hash(verify_header(block, extra_allowed=fmt.header_fields)).hex()


class Follower:
    """Polls the chain for the model (``apply(fn)`` runs ``fn(model)`` under the hub's lock)."""

    def __init__(
        self,
        config: DeviceConfig,
        apply: Callable[[Callable[[Any], None]], None],
        *,
        levels: tuple[Level, ...] = FOLLOW_LEVELS,
        since: int | None = None,
        interval_s: float = ROUND_INTERVAL_S,
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.config = config
        self.apply = apply
        self.levels = levels
        self.interval_s = interval_s
        self.clock = clock
        self.log = log
        self.me = keystore_address(config)
        self._state = Path(tempfile.mkdtemp(prefix="lightpost-console-"))
        self._receiver: Receiver | None = None  # made in the follower's thread (sqlite)
        self._since = since
        self._first = {level: True for level in levels}
        self._proof_chain: Chain | None = None
        self._proof_lock = threading.Lock()
        self._proof_cache: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._last_read = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: str | None = None

    # -- the loop ---------------------------------------------------------------------------

    def start(self) -> Follower:
        self._thread = threading.Thread(target=self._run, name="lightpost-console", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._proof_chain is not None:
            self._proof_chain.close()
        shutil.rmtree(self._state, ignore_errors=True)

    @property
    def receiver(self) -> Receiver:
        """The console's receiver: the controller's proofs and ordering, as an observer (it is
        delivered the commands addressed to devices too, and shown every proven post)."""
        if self._receiver is None:
            store = ReceiverStore.open(self._state / "receiver")
            self._receiver = Receiver(
                self.config, store=store, me=self.me, any_recipient=True, on_post=self._on_post
            )
        return self._receiver

    def _on_post(self, post: ProvenPost) -> None:
        obj = post_json(post, self.receiver.channel_names)
        if obj is not None:
            now = self.clock()
            self.apply(partial(Model.on_item, obj=obj, now=now))

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.round()
                self._stop.wait(self.interval_s)
        finally:
            if self._receiver is not None:
                self._receiver.close()

    def round(self) -> None:
        """One round: each level's poll, gas lookups, and (now and then) the slow readings."""
        try:
            if self._since is None:
                head = self.receiver.chain.tag_height("latest")
                self._since = max(0, head - DEFAULT_HISTORY_BLOCKS)
            for level in self.levels:
                since = self._since if self._first[level] else None
                self._first[level] = False
                for item in self.receiver.poll(level, since=since):
                    obj = self._json(item)
                    now = self.clock()
                    self.apply(partial(Model.on_item, obj=obj, now=now))
            self._gas()
            now = self.clock()
            if now - self._last_read >= CHAIN_READ_INTERVAL_S:
                self._last_read = now
                self._slow_readings(now)
            self.apply(lambda m: m.tick(self.clock()))
            self._health(None)
        except LightpostError as exc:
            self._health(f"{exc} (retrying)")
        except Exception as exc:  # a foreign error's text may quote a URL: its type only
            self._health(f"unexpected {type(exc).__name__} (retrying)")

    def _health(self, problem: str | None) -> None:
        if problem != self._failing:
            self._failing = problem
            if problem:
                self.log(f"follower: {problem}")
        text = problem or "following"
        self.apply(lambda m: m.on_status(follower=text))

    def _json(self, item: Delivered | Problem) -> dict[str, Any]:
        names = self.receiver.channel_names
        if isinstance(item, Problem):
            return problem_json(item, names)
        return delivered_json(item, names)

    def _gas(self) -> None:
        pending: list[str] = []
        self.apply(lambda m: pending.extend(m.unknown_gas()[:GAS_LOOKUPS_PER_ROUND]))
        chain = self.receiver.chain
        for tx in pending:
            try:
                gas = chain.agreed(
                    "eth_getTransactionReceipt",
                    [tx],
                    question=f"gas used by {tx[:10]}",
                    convert=lambda r: parse_quantity(r["gasUsed"], "gasUsed"),
                )
            except (LightpostError, KeyError, TypeError):
                continue
            self.apply(partial(Model.on_gas, tx_hash=tx, gas=int(gas)))

    def _slow_readings(self, now: float) -> None:
        chain = self.receiver.chain
        with contextlib.suppress(LightpostError):
            fee = chain.base_fee()
            self.apply(lambda m: m.on_base_fee(fee))
        with contextlib.suppress(LightpostError):
            height = chain.tag_height("latest")
            final = chain.final_height(self.config.finality_depth)
            self.apply(lambda m: m.on_status(heads={"latest": height, "final": final}))
        addresses: list[str] = []
        self.apply(lambda m: addresses.extend(m.devices))
        for address in addresses:
            try:
                wei = chain.balance(bytes.fromhex(address[2:]))
            except LightpostError:
                continue
            self.apply(partial(Model.on_balance, address=address, wei=wei, now=now))
        self._outbox(now)

    def _outbox(self, now: float) -> None:
        """The controller's outbox backlog (its own store, read only when it exists)."""
        path = self.config.data_dir / STORE_FILE
        if self.me is None or not path.exists():
            return
        try:
            with Store.open(path) as store:
                counts = {s.value: n for s, n in store.counts_by_state().items()}
        except LightpostError:
            return
        me = to_checksum_address(self.me)
        self.apply(lambda m: m.on_outbox(me, counts, now))

    # -- proof trail ----------------------------------------------------------------------------

    def agreement(self, block_number: int, block_hash: str) -> dict[str, Any]:
        """Which endpoints give ``block_hash`` for ``block_number`` now (asked once per block,
        on a chain client of its own so a click never waits behind a poll)."""
        with self._proof_lock:
            cached = self._proof_cache.get(block_number)
            if cached is None:
                if self._proof_chain is None:
                    self._proof_chain = build_chain(self.config)
                fmt = self._proof_chain.block_format
                answers = self._proof_chain.ask_each(
                    "eth_getBlockByNumber", [hex(block_number), False], lambda b: _hash_of(b, fmt)
                )
                cached = {
                    label: (None if isinstance(a, Exception) else str(a))
                    for label, a in answers.items()
                }
                self._proof_cache[block_number] = cached
                while len(self._proof_cache) > PROOF_CACHE:
                    self._proof_cache.popitem(last=False)
        agreed = sorted(label for label, h in cached.items() if h == block_hash)
        other = sorted(label for label, h in cached.items() if h is not None and h != block_hash)
        silent = sorted(label for label, h in cached.items() if h is None)
        return {"agreed": agreed, "differ": other, "no_answer": silent}
