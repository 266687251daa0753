"""The receiver runtime: find posts, prove them up the ladder, deliver them in order.

Theory of operation (docs/protocol.md, "Receiving with proof", has the full story)
-----------------------------------------------------------
A *subscription* is (mode, level, channel filter, sender filter); each has a persisted
cursor (next block to scan) and per-(sender, channel) stream state (next seq, the
accumulator and count of the posts folded so far) in ``<data_dir>/receiver.sqlite3``.
That is all the receiver keeps on disk: O(channels), never O(chain).

Channel mode, one :meth:`Receiver.poll`:

1. head = the quorum-agreed finalized height (levels ``final``/``complete``; or
   ``latest - finality_depth``) or the quorum's latest height (``signed``/``included``).
2. ``eth_getLogs`` (inbox address, topics [event, channel ids, sender word?]) in pages of
   :data:`LOG_PAGE_BLOCKS`, asked of ALL endpoints and UNIONED: one honest endpoint is
   enough to defeat one that hides a post. Fewer than ``quorum`` answers: refusal.
3. Per block holding a candidate: block hash agreed by the quorum, the full block's
   header rebuilt and hashed, transactionsRoot and receiptsRoot rebuilt from every
   transaction / receipt (endpoints tried in turn until one proves). The proven
   receipts are the truth for that block: a candidate not in them is a forgery
   (``proof-failure``, never delivered); a proven post an endpoint did not return is
   reported as ``hidden`` (and delivered, since it is proven). Each post is bound to its
   proven transaction (signer = log sender, ``to`` = inbox, calldata equal).
   At ``signed`` only the transaction (eth_getTransactionByHash) is checked.
4. ``complete``: eth_getProof of the (acc, count) slots of every trusted sender at the
   finalized block, verified against the verified finalized header's stateRoot; the
   receiver's fold over its posts must match, else ``hidden`` (missing count) or a
   ``proof-failure`` (altered), and that stream delivers nothing new.
5. Records are decoded, chunks reassembled (content hash checked) and offered to the
   stream's :class:`~lightpost.core.verify.Sequencer`: delivered in seq order, once;
   duplicates dropped; gaps held and reported. Only posts addressed to this device (or
   broadcast) are delivered, but every post of the stream advances its seq.

Direct mode walks every block from the cursor (full blocks, transactionsRoot rebuilt;
the quorum-agreed hash of each page's top block proves the page by parent hashes) and
keeps the transactions whose ``to`` is this device. ``complete`` is channel-only.

The persisted cursor never passes a block that holds something undelivered (a held
gap, an incomplete chunked message, a stream that failed completeness): after a
restart the rescan re-offers it and already delivered seqs are dropped as duplicates.
Deliveries below ``final`` are remembered until final; if their block leaves the
canonical chain they are retracted (a ``retracted`` problem) and rescanned.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightpost.adapters.contracts import inbox_runtime
from lightpost.adapters.receiver_store import ReceiverStore, StreamRow, UnfinalRow
from lightpost.adapters.rpc import Endpoint
from lightpost.core.envelope import (
    DIRECT_CHANNEL,
    DIRECT_CHANNEL_NAME,
    MAGIC,
    POST_HEADER_SIZE,
    Message,
    Reassembler,
    channel_id,
    decode_post,
)
from lightpost.core.hashing import keccak256
from lightpost.core.header import BlockHeader
from lightpost.core.inbox import ACC_ZERO, EVENT_TOPIC, InboxPost, accumulator_slots
from lightpost.core.levels import Delivered, Level
from lightpost.core.receipts import Log
from lightpost.core.rpcfields import data_field, get_list, get_object, quantity_field
from lightpost.core.trie import check_eth_get_proof
from lightpost.core.tx import SignedTransaction
from lightpost.core.verify import (
    Complete,
    Hidden,
    Problem,
    ProvenBlock,
    Sequencer,
    check_post_tx,
    decode_inbox_log,
    prove_block_receipts,
    prove_block_transactions,
    proven_accumulator,
    verify_block_header,
    verify_complete,
    verify_signed,
)
from lightpost.errors import ConfigError, LightpostError
from lightpost.node.chain import Chain
from lightpost.node.config import DeviceConfig
from lightpost.node.runtime import build_endpoints, keystore_address

__all__ = [
    "DIRECT_PAGE_BLOCKS",
    "FOLLOW_INTERVAL_S",
    "LOG_PAGE_BLOCKS",
    "MeteredEndpoint",
    "Receiver",
]

GENESIS_BLOCK = 0
"""Block 0 holds no transactions: no post is ever final at it."""

LOG_PAGE_BLOCKS = 2_000
"""Blocks per eth_getLogs request: providers cap the range (Alchemy/Infura document
2,000-10,000 blocks or 10,000 results); the smallest common cap keeps every provider happy."""

DIRECT_PAGE_BLOCKS = 32
"""Direct mode proves blocks in pages: one quorum read (the page's top block hash),
the rest chained by verified parent hashes."""

FOLLOW_INTERVAL_S = 2.0
"""Pause between polls in --follow (a sixth of a 12 s mainnet slot)."""

_ADDRESS_WORD_PAD = bytes(12)
"""The zero bytes in front of an address inside a 32-byte topic."""


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


@dataclass
class MeteredEndpoint:
    """Wraps an endpoint and counts calls and answer bytes per method (measurements)."""

    inner: Endpoint
    calls: dict[str, int] = field(default_factory=dict)
    bytes_in: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.inner.label

    def _count(self, method: str, result: Any) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        self.bytes_in[method] = self.bytes_in.get(method, 0) + len(json.dumps(result))

    def call(self, method: str, params: Sequence[Any]) -> Any:
        result = self.inner.call(method, params)
        self._count(method, result)
        return result

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        results = self.inner.batch(calls)
        for (method, _), result in zip(calls, results, strict=False):
            self._count(method, result)
        return results


# --- internal records ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Claim:
    """One log as an endpoint reported it (unproven)."""

    block_number: int
    block_hash: bytes
    tx_hash: bytes
    tx_index: int
    log_index: int
    log: Log


@dataclass(frozen=True, slots=True, kw_only=True)
class _Post:
    """A post proven at ``level``: who sent what, where."""

    sender: bytes
    channel: bytes
    calldata: bytes
    index: int | None  # inbox count_new (channel mode); None in direct mode
    tx_hash: bytes
    block_number: int
    block_hash: bytes
    block_timestamp: int
    order: tuple[int, int, int]  # (block, tx index, log index) for chain order


@dataclass(frozen=True, slots=True)
class _Pending:
    """A whole message waiting in a sequencer."""

    message: Message
    post: _Post
    recipient: bytes | None
    for_us: bool


@dataclass
class _Stream:
    """In-memory state of one (sender, channel) stream of a subscription."""

    sequencer: Sequencer[_Pending]
    acc: bytes
    count: int
    proven_at: int | None = None
    reassembler: Reassembler = field(default_factory=Reassembler)
    partial_blocks: dict[int, int] = field(default_factory=dict)  # seq -> first block
    reported_gaps: set[tuple[int, int]] = field(default_factory=set)

    def hold_block(self) -> int | None:
        """Lowest block holding something not yet delivered (None: nothing held)."""
        blocks = [p.post.block_number for p in self.sequencer.held.values()]
        blocks += list(self.partial_blocks.values())
        return min(blocks) if blocks else None


# --- the receiver ------------------------------------------------------------------------


class Receiver:
    """Receives verified messages for one device (see the module docstring).

    ``endpoints`` defaults to HTTP endpoints built from the config (labels ``rpc#i``);
    ``store`` to ``<data_dir>/receiver.sqlite3``; ``me`` (this device's address) to
    the keystore's ``address`` field.
    """

    def __init__(
        self,
        config: DeviceConfig,
        *,
        endpoints: Sequence[Endpoint] | None = None,
        store: ReceiverStore | None = None,
        me: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        if endpoints is None:
            endpoints = build_endpoints(config)
        self.endpoints = list(endpoints)
        self.chain = Chain(self.endpoints, config.quorum)
        self.store = store if store is not None else ReceiverStore.open(config.data_dir)
        me = me if me is not None else keystore_address(config)
        if me is None:
            raise ConfigError(f"keystore {config.keystore.name} has no `address` field")
        self.me = me
        self.clock = clock
        self.sleep = sleep
        self.policies: dict[bytes, frozenset[bytes]] = {
            channel_id(p.name): frozenset(p.trusted) for p in config.channels
        }
        self.channel_names: dict[bytes, str] = {channel_id(p.name): p.name for p in config.channels}
        self.channel_names.setdefault(DIRECT_CHANNEL, DIRECT_CHANNEL_NAME)
        self._inbox_code_hash = keccak256(inbox_runtime())
        self._streams: dict[tuple[str, bytes, bytes], _Stream] = {}
        self._scan: dict[str, int] = {}
        self._final_at_poll = -1
        """Finalized height read at the start of the current poll below `final`."""
        self._loaded: set[str] = set()

    def close(self) -> None:
        """Checkpoint and close the state; stop the endpoint thread pool."""
        self.chain.close()
        self.store.close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API --------------------------------------------------------------------

    def poll(
        self,
        level: Level = Level.FINAL,
        channel: str | None = None,
        sender: bytes | None = None,
        since: int | None = None,
    ) -> Iterator[Delivered | Problem]:
        """Scan from the cursor (or ``since``) to the level's head once; yield every
        delivered message and every problem, in chain order."""
        level = Level(level)
        channels = self._channels(channel)
        sub = self._sub_key(level, channels, sender)
        self._load(sub)
        start = since if since is not None else self._scan.get(sub, self.store.cursor(sub) or 0)
        try:
            if level < Level.FINAL:
                self._final_at_poll = self._final_or_unknown()
                yield from self._retractions(sub, self._final_at_poll)
            head, head_hash = self._head(level)
            if self.config.mode == "direct":
                yield from self._poll_direct(sub, level, channels, sender, start, head)
            else:
                yield from self._poll_channel(sub, level, channels, sender, start, head, head_hash)
        except _StopWith as stop:
            yield stop.problem

    def follow(
        self,
        level: Level = Level.FINAL,
        channel: str | None = None,
        sender: bytes | None = None,
        since: int | None = None,
        *,
        interval: float = FOLLOW_INTERVAL_S,
        timeout: float | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[Delivered | Problem]:
        """Poll forever (or until ``timeout`` seconds / ``stop()``), pausing ``interval``."""
        deadline = None if timeout is None else self.clock() + timeout
        first = True
        while True:
            yield from self.poll(level, channel, sender, since if first else None)
            first = False
            if stop() or (deadline is not None and self.clock() >= deadline):
                return
            self.sleep(interval)

    # -- subscription and state ------------------------------------------------------------

    def _channels(self, name: str | None) -> tuple[bytes, ...]:
        if name is not None:
            cid = channel_id(name)
            if cid not in self.policies:
                raise ConfigError(f"channel {name!r} is not in the config's [channels]")
            return (cid,)
        if self.config.mode == "direct":
            return tuple(self.policies) or (DIRECT_CHANNEL,)
        if not self.policies:
            raise ConfigError("no channels configured: add a [channels.NAME] table")
        return tuple(sorted(self.policies))

    def _sub_key(self, level: Level, channels: tuple[bytes, ...], sender: bytes | None) -> str:
        digest = keccak256(b"".join(channels)).hex()[:16]
        who = sender.hex() if sender else "*"
        return f"{self.config.mode}:{level}:{digest}:{who}"

    def _load(self, sub: str) -> None:
        if sub in self._loaded:
            return
        self._loaded.add(sub)
        for row in self.store.streams(sub):
            self._streams[(sub, row.sender, row.channel)] = _Stream(
                sequencer=Sequencer(next_seq=row.next_seq),
                acc=row.acc,
                count=row.count,
                proven_at=row.proven_at,
            )

    def _stream(self, sub: str, sender: bytes, channel: bytes) -> _Stream:
        key = (sub, sender, channel)
        stream = self._streams.get(key)
        if stream is None:
            stream = _Stream(sequencer=Sequencer(), acc=ACC_ZERO, count=0)
            self._streams[key] = stream
        return stream

    def _save(self, sub: str, sender: bytes, channel: bytes) -> None:
        s = self._stream(sub, sender, channel)
        self.store.save_stream(
            sub, StreamRow(sender, channel, s.sequencer.next_seq, s.acc, s.count, s.proven_at)
        )

    def _finish(self, sub: str, scanned_to: int) -> None:
        """Persist the cursor: the next block, unless something is still held."""
        self._scan[sub] = scanned_to + 1
        holds = [
            b
            for (s, _, _), stream in self._streams.items()
            if s == sub and (b := stream.hold_block()) is not None
        ]
        self.store.set_cursor(sub, min([scanned_to + 1, *holds]))

    def _authorized(self, sender: bytes, channel: bytes) -> bool:
        return sender in self.policies.get(channel, frozenset())

    # -- quorum reads --------------------------------------------------------------------

    def _head(self, level: Level) -> tuple[int, bytes | None]:
        try:
            if level >= Level.FINAL:
                return self.chain.finalized(self.config.finality_depth)
            return self.chain.tag_height("latest"), None
        except LightpostError as exc:
            raise _StopWith(Problem(kind="disagreement", details=f"head: {exc}")) from None

    def _agreed_hash(self, number: int) -> bytes:
        try:
            return self.chain.block_hash_at(number)
        except LightpostError as exc:
            raise _StopWith(
                Problem(kind="disagreement", details=f"block {number}: {exc}", block_number=number)
            ) from None

    def _finalized_height(self) -> int:
        try:
            return self.chain.final_height(self.config.finality_depth)
        except LightpostError as exc:
            raise _StopWith(Problem(kind="disagreement", details=f"finalized: {exc}")) from None

    def _ask_in_turn(
        self,
        method: str,
        params: Sequence[Any],
        check: Callable[[Any], Any],
        what: str,
        problems: list[Problem],
        block_number: int | None = None,
    ) -> Any:
        """Ask endpoints one at a time until an answer passes ``check``; each failing
        endpoint is reported as a proof-failure. None if none passed."""
        for ep in self.endpoints:
            try:
                answer = ep.call(method, params)
                return check(answer)
            except LightpostError as exc:
                problems.append(
                    Problem(
                        kind="proof-failure",
                        details=f"{what}: {exc}",
                        endpoints=(ep.label,),
                        block_number=block_number,
                    )
                )
        return None

    # -- retraction -------------------------------------------------------------------------

    def _retractions(self, sub: str, finalized: int) -> Iterator[Problem]:
        """Retract deliveries whose block left the chain; ``finalized`` is the height read
        for this poll (-1: unknown, asked again here, where no quorum stops the poll)."""
        rows = self.store.unfinal(sub)
        if not rows:
            return
        if finalized < 0:
            finalized = self._finalized_height()
        blocks = sorted({(r.block_number, r.block_hash) for r in rows})
        reorg_from: int | None = None
        for number, expected in blocks:
            answers = self.chain.ask_each(
                "eth_getBlockByNumber",
                [hex(number), False],
                lambda b: bytes.fromhex(str(b["hash"])[2:]) if b else b"",
            )
            report = self._report(answers, f"block hash at {number}")
            if report is None:
                raise _StopWith(
                    Problem(
                        kind="disagreement",
                        details=f"block {number}: no quorum",
                        block_number=number,
                    )
                )
            if report != expected:
                reorg_from = number
                break
            if number <= finalized:
                self.store.drop_unfinal(sub, up_to_block=number)
        if reorg_from is None:
            return
        for r in rows:
            if r.block_number >= reorg_from:
                yield Problem(
                    kind="retracted",
                    details="the including block is no longer canonical (reorg)",
                    sender=r.sender,
                    channel=r.channel,
                    seq=r.seq,
                    tx_hash=r.tx_hash,
                    block_number=r.block_number,
                )
                stream = self._stream(sub, r.sender, r.channel)
                stream.sequencer.rewind(r.seq)
                self._save(sub, r.sender, r.channel)
        self.store.drop_unfinal(sub, from_block=reorg_from)
        self._scan[sub] = min(self._scan.get(sub, reorg_from), reorg_from)
        self.store.set_cursor(sub, min(self.store.cursor(sub) or reorg_from, reorg_from))

    def _report(self, answers: Mapping[str, Any], question: str) -> bytes | None:
        from lightpost.core.quorum import report

        result = report(answers, self.chain.quorum, question=question)
        return result.agreed if result.reached else None

    # -- channel mode ------------------------------------------------------------------------

    def _topics(self, channels: tuple[bytes, ...], sender: bytes | None) -> list[Any]:
        chans: Any = _hex(channels[0]) if len(channels) == 1 else [_hex(c) for c in channels]
        topics: list[Any] = [_hex(EVENT_TOPIC), chans]
        if sender is not None:
            topics.append(_hex(_ADDRESS_WORD_PAD + sender))
        return topics

    def _get_logs(
        self, start: int, end: int, topics: list[Any], problems: list[Problem]
    ) -> tuple[dict[_Claim, set[str]], set[str]]:
        """Union of every endpoint's eth_getLogs over [start, end]; labels that answered."""
        assert self.config.inbox is not None
        claims: dict[_Claim, set[str]] = {}
        answered: set[str] | None = None
        for lo in range(start, end + 1, LOG_PAGE_BLOCKS):
            hi = min(end, lo + LOG_PAGE_BLOCKS - 1)
            flt = {
                "fromBlock": hex(lo),
                "toBlock": hex(hi),
                "address": _hex(self.config.inbox),
                "topics": topics,
            }
            answers = self.chain.ask_all("eth_getLogs", [flt])
            page_ok: set[str] = set()
            for label, value in answers.items():
                if isinstance(value, Exception) or not isinstance(value, list):
                    continue
                page_ok.add(label)
                for i, obj in enumerate(value):
                    try:
                        claim = _parse_claim(obj)
                    except LightpostError as exc:
                        problems.append(
                            Problem(
                                kind="proof-failure",
                                details=f"malformed log {i}: {exc}",
                                endpoints=(label,),
                            )
                        )
                        continue
                    claims.setdefault(claim, set()).add(label)
            if len(page_ok) < self.chain.quorum:
                raise _StopWith(
                    Problem(
                        kind="disagreement",
                        details=f"eth_getLogs {lo}..{hi}: only {len(page_ok)} endpoint(s) "
                        f"answered, "
                        f"{self.chain.quorum} needed",
                    )
                )
            answered = page_ok if answered is None else answered & page_ok
        return claims, answered or set()

    def _poll_channel(
        self,
        sub: str,
        level: Level,
        channels: tuple[bytes, ...],
        sender: bytes | None,
        start: int,
        head: int,
        head_hash: bytes | None,
    ) -> Iterator[Delivered | Problem]:
        assert self.config.inbox is not None
        if start > head:
            if level == Level.COMPLETE:
                yield from self._complete_only(
                    sub, channels, sender, start, head, head_hash, [], head
                )
            return
        problems: list[Problem] = []
        claims, answered = self._get_logs(start, head, self._topics(channels, sender), problems)
        yield from problems
        by_block: dict[int, list[_Claim]] = {}
        for claim in claims:
            by_block.setdefault(claim.block_number, []).append(claim)
        posts: list[_Post] = []
        scanned_to = start - 1
        try:
            for number in sorted(by_block):
                problems = []
                if level >= Level.INCLUDED:
                    found = self._prove_channel_block(
                        number, by_block[number], claims, answered, channels, sender, problems
                    )
                else:
                    found = self._sign_check_claims(by_block[number], claims, problems)
                yield from problems
                posts.extend(found)
                scanned_to = number - 1
            scanned_to = head
        except _StopWith as stop:
            yield stop.problem
            # deliver what was proven below the refusal point, then stop
        if level == Level.COMPLETE:
            yield from self._complete_only(
                sub, channels, sender, start, head, head_hash, posts, scanned_to
            )
            return
        yield from self._deliver(sub, level, sorted(posts, key=lambda p: p.order))
        self._finish(sub, scanned_to)

    def _prove_block(
        self, number: int, agreed: bytes, problems: list[Problem], *, receipts: bool
    ) -> ProvenBlock:
        def full(answer: Any) -> tuple[BlockHeader, tuple[Any, ...], int]:
            header = verify_block_header(answer, agreed)
            txs = prove_block_transactions(
                header, get_list(get_object(answer, "block").get("transactions"), "transactions")
            )
            return header, txs, header.timestamp

        got = self._ask_in_turn(
            "eth_getBlockByNumber", [hex(number), True], full, f"block {number}", problems, number
        )
        if got is None:
            raise _StopWith(
                Problem(
                    kind="proof-failure",
                    details=f"no endpoint proved block {number}; refusing",
                    block_number=number,
                )
            )
        header, txs, _ = got
        proven_receipts: tuple[Any, ...] = ()
        if receipts:
            proven_receipts = self._ask_in_turn(
                "eth_getBlockReceipts",
                [hex(number)],
                lambda answer: prove_block_receipts(header, answer),
                f"receipts of block {number}",
                problems,
                number,
            )
            if proven_receipts is None:
                raise _StopWith(
                    Problem(
                        kind="proof-failure",
                        details=f"no endpoint proved the receipts of block {number}; refusing",
                        block_number=number,
                    )
                )
        return ProvenBlock(header=header, hash=agreed, transactions=txs, receipts=proven_receipts)

    def _prove_channel_block(
        self,
        number: int,
        block_claims: list[_Claim],
        all_claims: dict[_Claim, set[str]],
        answered: set[str],
        channels: tuple[bytes, ...],
        sender: bytes | None,
        problems: list[Problem],
    ) -> list[_Post]:
        assert self.config.inbox is not None
        agreed = self._agreed_hash(number)
        block = self._prove_block(number, agreed, problems, receipts=True)
        # The proven receipts are the truth: every matching inbox log in this block.
        truth: dict[tuple[int, int], Log] = {}
        log_index = 0
        for tx_index, receipt in enumerate(block.receipts):
            for log in receipt.logs:
                if receipt.status == 1 and _matches(log, self.config.inbox, channels, sender):
                    truth[(tx_index, log_index)] = log
                log_index += 1
        returned: dict[tuple[int, int], set[str]] = {}
        for claim in block_claims:
            labels = all_claims[claim]
            position = (claim.tx_index, claim.log_index)
            if claim.block_hash != agreed:
                problems.append(
                    Problem(
                        kind="proof-failure",
                        details="log claims a block hash that is not the agreed one",
                        block_number=number,
                        tx_hash=claim.tx_hash,
                        endpoints=tuple(sorted(labels)),
                    )
                )
                continue
            if truth.get(position) != claim.log:
                problems.append(
                    Problem(
                        kind="proof-failure",
                        details="log is not in the proven receipts "
                        "(forged or never emitted); not delivered",
                        block_number=number,
                        tx_hash=claim.tx_hash,
                        endpoints=tuple(sorted(labels)),
                    )
                )
                continue
            returned.setdefault(position, set()).update(labels)
        posts: list[_Post] = []
        for (tx_index, log_index), log in sorted(truth.items()):
            missing = sorted(answered - returned.get((tx_index, log_index), set()))
            tx = block.transactions[tx_index] if tx_index < len(block.transactions) else None
            tx_hash = tx.hash if tx is not None else bytes(32)
            if missing:
                problems.append(
                    Problem(
                        kind="hidden",
                        details="endpoint(s) omitted a proven post from eth_getLogs",
                        block_number=number,
                        tx_hash=tx_hash,
                        endpoints=tuple(missing),
                    )
                )
            try:
                post = decode_inbox_log(log, inbox=self.config.inbox)
                if not isinstance(tx, SignedTransaction):
                    raise _proof("the post's transaction is not a signed type 0-2 transaction")
                if tx.chain_id != self.config.chain_id:
                    raise _proof(f"transaction signed for chain id {tx.chain_id}")
                check_post_tx(post, tx, inbox=self.config.inbox)
            except LightpostError as exc:
                problems.append(
                    Problem(
                        kind="proof-failure",
                        details=f"post: {exc}",
                        block_number=number,
                        tx_hash=tx_hash,
                    )
                )
                continue
            posts.append(
                _post_of(
                    post,
                    tx_hash,
                    number,
                    agreed,
                    block.header.timestamp,
                    (number, tx_index, log_index),
                )
            )
        return posts

    def _sign_check_claims(
        self,
        block_claims: list[_Claim],
        all_claims: dict[_Claim, set[str]],
        problems: list[Problem],
    ) -> list[_Post]:
        """``signed`` level: each claimed log is bound to its signed transaction."""
        assert self.config.inbox is not None
        inbox = self.config.inbox
        posts: list[_Post] = []
        for claim in sorted(block_claims, key=lambda c: (c.tx_index, c.log_index)):
            labels = tuple(sorted(all_claims[claim]))
            try:
                post = decode_inbox_log(claim.log, inbox=inbox)
            except LightpostError as exc:
                problems.append(
                    Problem(
                        kind="proof-failure",
                        details=f"log: {exc}",
                        tx_hash=claim.tx_hash,
                        endpoints=labels,
                        block_number=claim.block_number,
                    )
                )
                continue

            def check(answer: Any, post: InboxPost = post, claim: _Claim = claim) -> bool:
                tx = verify_signed(get_object(answer, "transaction"), chain_id=self.config.chain_id)
                if tx.hash != claim.tx_hash:
                    raise _proof("the transaction is not the one the log names")
                check_post_tx(post, tx, inbox=inbox)
                return True

            tx_problems: list[Problem] = []
            ok = self._ask_in_turn(
                "eth_getTransactionByHash",
                [_hex(claim.tx_hash)],
                check,
                "transaction",
                tx_problems,
                claim.block_number,
            )
            if ok:
                # Another endpoint's transaction matched: the failed ones lied about it.
                problems.extend(tx_problems)
            else:
                problems.append(
                    Problem(
                        kind="proof-failure",
                        details="log does not match a transaction signed by "
                        "its sender; not delivered",
                        tx_hash=claim.tx_hash,
                        endpoints=labels,
                        block_number=claim.block_number,
                    )
                )
                continue
            posts.append(
                _post_of(
                    post,
                    claim.tx_hash,
                    claim.block_number,
                    claim.block_hash,
                    0,
                    (claim.block_number, claim.tx_index, claim.log_index),
                )
            )
        return posts

    # -- completeness --------------------------------------------------------------------------

    def _complete_only(
        self,
        sub: str,
        channels: tuple[bytes, ...],
        sender: bytes | None,
        start: int,
        head: int,
        head_hash: bytes | None,
        posts: list[_Post],
        scanned_to: int,
    ) -> Iterator[Delivered | Problem]:
        """Prove completeness per trusted stream at the finalized block; deliver only
        the streams that are complete; hold the cursor for the others."""
        assert self.config.inbox is not None and head_hash is not None
        if head == GENESIS_BLOCK:
            # Nothing can be posted in the genesis block, so there is nothing to prove
            # yet -- and anvil's genesis header carries a placeholder stateRoot that no
            # eth_getProof answer matches (measured: 0x56e8...b421 with funded accounts).
            self._finish(sub, scanned_to)
            return
        if scanned_to < head:
            # A refusal stopped the scan: completeness cannot be judged this round.
            self._finish(sub, scanned_to)
            return
        streams = sorted(
            (s, cid)
            for cid in channels
            for s in self.policies.get(cid, frozenset())
            if sender is None or s == sender
        )
        problems: list[Problem] = []
        state_root = self._state_root(head, head_hash, problems)
        for key in streams:
            stream = self._stream(sub, *key)
            if stream.proven_at is None and stream.count == 0 and start - 1 == GENESIS_BLOCK:
                stream.proven_at = GENESIS_BLOCK  # (ACC_ZERO, 0) by definition: no proof
            elif stream.proven_at is None and stream.count == 0 and start > 0:
                # No history for this stream: prove its (acc, count) just before `start`.
                base = self._state_root(start - 1, self._agreed_hash(start - 1), problems)
                stream.acc, stream.count = self._proven_slots(base, start - 1, key, problems)
                stream.proven_at = start - 1
        yield from problems
        ordered = sorted(posts, key=lambda p: p.order)
        complete: dict[tuple[bytes, bytes], Complete] = {}
        for key in streams:
            stream = self._stream(sub, *key)
            fresh = {
                p.index: p.calldata
                for p in ordered
                if (p.sender, p.channel) == key and p.index is not None and p.index > stream.count
            }
            slots = accumulator_slots(*key)
            params = [_hex(self.config.inbox), [f"0x{slot:064x}" for slot in slots], hex(head)]

            def check(
                answer: Any,
                key: tuple[bytes, bytes] = key,
                stream: _Stream = stream,
                fresh: dict[int, bytes] = fresh,
            ) -> Any:
                assert self.config.inbox is not None
                return verify_complete(
                    state_root,
                    answer,
                    inbox=self.config.inbox,
                    inbox_code_hash=self._inbox_code_hash,
                    sender=key[0],
                    channel=key[1],
                    local_acc=stream.acc,
                    local_count=stream.count,
                    new_posts=fresh,
                )

            problems = []
            verdict = self._ask_in_turn(
                "eth_getProof", params, check, "eth_getProof", problems, head
            )
            yield from problems
            s, cid = key
            if verdict is None:
                yield Problem(
                    kind="proof-failure",
                    sender=s,
                    channel=cid,
                    block_number=head,
                    details="no endpoint gave a valid eth_getProof; refusing",
                )
            elif isinstance(verdict, Complete):
                complete[key] = verdict
            elif isinstance(verdict, Hidden):
                yield Problem(
                    kind="hidden",
                    sender=s,
                    channel=cid,
                    missing=verdict.missing,
                    block_number=head,
                    details=f"the chain proves {verdict.proven_count} posts; "
                    f"{verdict.missing} not shown by any endpoint",
                )
            else:
                yield Problem(
                    kind="proof-failure",
                    sender=s,
                    channel=cid,
                    block_number=head,
                    details=f"completeness: {verdict.reason}",
                )
        for key, verdict in complete.items():
            stream = self._stream(sub, *key)
            stream.acc, stream.count, stream.proven_at = verdict.acc, verdict.count, head
            self._save(sub, *key)
        trusted = set(streams)
        deliverable = [
            p
            for p in ordered
            if (p.sender, p.channel) in complete or (p.sender, p.channel) not in trusted
        ]
        yield from self._deliver(sub, Level.COMPLETE, deliverable)
        # An incomplete stream keeps the cursor just after its last proven state, so
        # the next poll asks again (another endpoint may show the hidden posts).
        holds = [
            (self._stream(sub, *key).proven_at or -1) + 1 for key in streams if key not in complete
        ]
        self._finish(sub, min([head + 1, *holds]) - 1)

    def _state_root(self, number: int, agreed: bytes, problems: list[Problem]) -> bytes:
        header = self._ask_in_turn(
            "eth_getBlockByNumber",
            [hex(number), False],
            lambda answer: verify_block_header(answer, agreed),
            f"header {number}",
            problems,
            number,
        )
        if header is None:
            raise _StopWith(
                Problem(
                    kind="proof-failure",
                    block_number=number,
                    details=f"no endpoint proved header {number}; refusing",
                )
            )
        return bytes(header.state_root)

    def _proven_slots(
        self, state_root: bytes, number: int, key: tuple[bytes, bytes], problems: list[Problem]
    ) -> tuple[bytes, int]:
        assert self.config.inbox is not None
        inbox = self.config.inbox
        slots = accumulator_slots(*key)
        params = [_hex(inbox), [f"0x{slot:064x}" for slot in slots], hex(number)]

        def check(answer: Any) -> tuple[bytes, int]:
            proven = check_eth_get_proof(state_root, answer, address=inbox)
            return proven_accumulator(proven, sender=key[0], channel=key[1])

        got = self._ask_in_turn(
            "eth_getProof", params, check, f"eth_getProof at {number}", problems, number
        )
        if got is None:
            raise _StopWith(
                Problem(
                    kind="proof-failure",
                    block_number=number,
                    details=f"no valid baseline proof at block {number}",
                )
            )
        return (bytes(got[0]), int(got[1]))

    # -- delivery -------------------------------------------------------------------------------

    def _deliver(self, sub: str, level: Level, posts: list[_Post]) -> Iterator[Delivered | Problem]:
        touched: set[tuple[bytes, bytes]] = set()
        for post in posts:
            if not self._authorized(post.sender, post.channel):
                yield Problem(
                    kind="unauthorized",
                    details="sender is not in the channel's trusted list; not delivered",
                    sender=post.sender,
                    channel=post.channel,
                    tx_hash=post.tx_hash,
                    block_number=post.block_number,
                )
                continue
            try:
                envelope = decode_post(post.calldata)
            except LightpostError as exc:
                yield Problem(
                    kind="undecodable",
                    details=str(exc),
                    sender=post.sender,
                    channel=post.channel,
                    tx_hash=post.tx_hash,
                    block_number=post.block_number,
                )
                continue
            stream = self._stream(sub, post.sender, post.channel)
            touched.add((post.sender, post.channel))
            for_us = envelope.recipient is None or envelope.recipient == self.me
            for record in envelope.records:
                try:
                    message = stream.reassembler.add(record)
                except LightpostError as exc:
                    stream.partial_blocks.pop(record.seq, None)
                    yield Problem(
                        kind="undecodable",
                        details=str(exc),
                        sender=post.sender,
                        channel=post.channel,
                        seq=record.seq,
                        tx_hash=post.tx_hash,
                        block_number=post.block_number,
                    )
                    continue
                if message is None:
                    stream.partial_blocks.setdefault(record.seq, post.block_number)
                    continue
                stream.partial_blocks.pop(record.seq, None)
                offer = stream.sequencer.offer(
                    message.seq, _Pending(message, post, envelope.recipient, for_us)
                )
                if offer.gap is not None and offer.gap not in stream.reported_gaps:
                    stream.reported_gaps.add(offer.gap)
                    yield Problem(
                        kind="gap",
                        sender=post.sender,
                        channel=post.channel,
                        seq=offer.gap[0],
                        missing=offer.gap[1] - offer.gap[0] + 1,
                        details=f"seq {offer.gap[0]}..{offer.gap[1]} missing; later "
                        "messages are held",
                        block_number=post.block_number,
                    )
                for _, pending in offer.ready:
                    if pending.for_us:
                        yield self._delivered(sub, level, pending)
        for key in touched:
            self._save(sub, *key)

    def _final_or_unknown(self) -> int:
        """The finalized height, or -1 when the endpoints do not agree on one now."""
        try:
            return self._finalized_height()
        except _StopWith:
            return -1

    def _delivered(self, sub: str, level: Level, pending: _Pending) -> Delivered:
        post, message = pending.post, pending.message
        # A delivery below `final` is remembered for retraction on a reorg -- unless its
        # block is already final (a catch-up over old blocks): one durable write saved
        # per message.
        if level < Level.FINAL and post.block_number > self._final_at_poll:
            self.store.add_unfinal(
                sub,
                UnfinalRow(
                    post.block_number,
                    post.block_hash,
                    post.sender,
                    post.channel,
                    message.seq,
                    post.tx_hash,
                ),
            )
        return Delivered(
            sender=post.sender,
            channel=post.channel,
            recipient=pending.recipient,
            seq=message.seq,
            timestamp=message.timestamp,
            content_type=message.content_type,
            payload=message.payload,
            tx_hash=post.tx_hash,
            block_number=post.block_number,
            block_hash=post.block_hash,
            block_timestamp=post.block_timestamp,
            level=level,
        )

    # -- direct mode ------------------------------------------------------------------------------

    def _poll_direct(
        self,
        sub: str,
        level: Level,
        channels: tuple[bytes, ...],
        sender: bytes | None,
        start: int,
        head: int,
    ) -> Iterator[Delivered | Problem]:
        if level == Level.COMPLETE:
            raise ConfigError(
                "level `complete` needs channel mode: direct messages have no on-chain "
                "accumulator to prove (use --level final)"
            )
        scanned_to = start - 1
        lo = start
        try:
            while lo <= head:
                hi = min(head, lo + DIRECT_PAGE_BLOCKS - 1)
                problems: list[Problem] = []
                posts = self._direct_page(lo, hi, level, channels, sender, problems)
                yield from problems
                yield from self._deliver(sub, level, posts)
                scanned_to = hi
                self._finish(sub, scanned_to)
                lo = hi + 1
        except _StopWith as stop:
            yield stop.problem
        self._finish(sub, scanned_to)

    def _direct_page(
        self,
        lo: int,
        hi: int,
        level: Level,
        channels: tuple[bytes, ...],
        sender: bytes | None,
        problems: list[Problem],
    ) -> list[_Post]:
        """Prove blocks hi..lo (top hash by quorum, then parent hashes) and pick posts."""
        blocks: dict[int, tuple[int, bytes, tuple[Any, ...]]] = {}
        expected: bytes | None = self._agreed_hash(hi) if level >= Level.INCLUDED else None
        for number in range(hi, lo - 1, -1):

            def check(answer: Any, expected: bytes | None = expected) -> Any:
                obj = get_object(answer, "block")
                txs_json = get_list(obj.get("transactions"), "transactions")
                if expected is None:  # signed: each tx rebuilt and hash-checked, no header proof
                    return (
                        None,
                        data_field(obj, "hash", "block", 32),
                        _rebuild_each(txs_json),
                        quantity_field(obj, "timestamp", "block"),
                    )
                header = verify_block_header(answer, expected)
                return (
                    header,
                    expected,
                    prove_block_transactions(header, txs_json),
                    header.timestamp,
                )

            got = self._ask_in_turn(
                "eth_getBlockByNumber",
                [hex(number), True],
                check,
                f"block {number}",
                problems,
                number,
            )
            if got is None:
                raise _StopWith(
                    Problem(
                        kind="proof-failure",
                        block_number=number,
                        details=f"no endpoint proved block {number}; refusing",
                    )
                )
            header, block_hash, txs, timestamp = got
            blocks[number] = (timestamp, block_hash, txs)
            if header is not None:
                expected = header.parent_hash
        posts: list[_Post] = []
        for number in range(lo, hi + 1):
            timestamp, block_hash, txs = blocks[number]
            for tx_index, tx in enumerate(txs):
                if not isinstance(tx, SignedTransaction):
                    continue
                data = tx.tx.data
                if len(data) <= POST_HEADER_SIZE or data[POST_HEADER_SIZE - 2] != MAGIC:
                    continue  # not a lightpost post (cheap filter before any recovery)
                if tx.tx.to != self.me and (tx.sender, data[:32]) not in self._known(channels):
                    continue
                if sender is not None and tx.sender != sender:
                    continue
                cid = bytes(data[:32])
                if cid not in channels and cid not in self.policies:
                    continue
                if tx.chain_id != self.config.chain_id:
                    problems.append(
                        Problem(
                            kind="proof-failure",
                            tx_hash=tx.hash,
                            block_number=number,
                            details=f"signed for chain id {tx.chain_id}",
                        )
                    )
                    continue
                if tx.tx.to == self.me and data[32:64] != _ADDRESS_WORD_PAD + self.me:
                    problems.append(
                        Problem(
                            kind="undecodable",
                            tx_hash=tx.hash,
                            sender=tx.sender,
                            block_number=number,
                            details="post recipient differs from the tx's `to`",
                        )
                    )
                    continue
                posts.append(
                    _Post(
                        sender=tx.sender,
                        channel=cid,
                        calldata=bytes(data),
                        index=None,
                        tx_hash=tx.hash,
                        block_number=number,
                        block_hash=block_hash,
                        block_timestamp=timestamp,
                        order=(number, tx_index, 0),
                    )
                )
        return posts

    def _known(self, channels: tuple[bytes, ...]) -> set[tuple[bytes, bytes]]:
        """(sender, channel) pairs whose posts to OTHER devices still advance the seq:
        the trusted senders (their seq is shared across recipients)."""
        return {(s, cid) for cid in channels for s in self.policies.get(cid, frozenset())}


# --- helpers ---------------------------------------------------------------------------------


class _StopWith(Exception):
    """Internal: stop the poll and report ``problem`` (a refusal)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.details)
        self.problem = problem


def _proof(reason: str) -> LightpostError:
    from lightpost.errors import ProofError

    return ProofError("signed", reason)


def _matches(log: Log, inbox: bytes, channels: tuple[bytes, ...], sender: bytes | None) -> bool:
    return (
        log.address == inbox
        and len(log.topics) == 4
        and log.topics[0] == EVENT_TOPIC
        and log.topics[1] in channels
        and (sender is None or log.topics[2] == _ADDRESS_WORD_PAD + sender)
    )


def _parse_claim(obj: object) -> _Claim:
    what = "log"
    entry = get_object(obj, what)
    topics = get_list(entry.get("topics"), "log.topics")
    return _Claim(
        block_number=quantity_field(entry, "blockNumber", what),
        block_hash=data_field(entry, "blockHash", what, 32),
        tx_hash=data_field(entry, "transactionHash", what, 32),
        tx_index=quantity_field(entry, "transactionIndex", what),
        log_index=quantity_field(entry, "logIndex", what),
        log=Log(
            address=data_field(entry, "address", what, 20),
            topics=tuple(_topic(t) for t in topics),
            data=data_field(entry, "data", what),
        ),
    )


def _topic(value: object) -> bytes:
    from lightpost.core.rpcfields import parse_data

    return parse_data(value, "log.topic", 32)


def _rebuild_each(txs_json: Sequence[object]) -> tuple[Any, ...]:
    from lightpost.core.tx import rpc_hash_matches, transaction_from_rpc

    out = []
    for i, obj in enumerate(txs_json):
        tx_obj = get_object(obj, f"transactions[{i}]")
        decoded = transaction_from_rpc(tx_obj)
        if not rpc_hash_matches(tx_obj, decoded):
            raise _proof(f"transaction {i} does not match its hash")
        out.append(decoded)
    return tuple(out)


def _post_of(
    post: InboxPost,
    tx_hash: bytes,
    number: int,
    block_hash: bytes,
    timestamp: int,
    order: tuple[int, int, int],
) -> _Post:
    return _Post(
        sender=post.sender,
        channel=post.channel,
        calldata=post.calldata,
        index=post.index,
        tx_hash=tx_hash,
        block_number=number,
        block_hash=block_hash,
        block_timestamp=timestamp,
        order=order,
    )
