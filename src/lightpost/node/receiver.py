"""The receiver runtime: find posts, prove them up the ladder, deliver them in order.

docs/protocol.md, "Receiving with proof" and "Adversary model", has the steps and bounds.
Rules are pure core functions (:mod:`lightpost.core.reconcile`, :mod:`lightpost.core.verify`);
this is the driver: :mod:`.receiver_channel`, :mod:`.receiver_complete`,
:mod:`.receiver_direct`, :mod:`.receiver_delivery`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, cast

from lightpost.adapters.receiver_store import ReceiverStore
from lightpost.adapters.rpc import Endpoint
from lightpost.core.diagnosis import refusal
from lightpost.core.envelope import DIRECT_CHANNEL, DIRECT_CHANNEL_NAME, channel_id
from lightpost.core.hashing import keccak256
from lightpost.core.header import header_hash, verify_header
from lightpost.core.inbox import INBOX_CODE_HASH
from lightpost.core.l2 import ETHEREUM, BlockFormat
from lightpost.core.levels import Delivered, Level
from lightpost.core.quorum import report as quorum_report
from lightpost.core.reconcile import cursor_after, dissent, finality_dissent
from lightpost.core.verify import Problem, ProblemKind
from lightpost.errors import ConfigError, LightpostError, ProofError, TransportError
from lightpost.node.chain import Chain, prove_in_turn
from lightpost.node.config import DeviceConfig
from lightpost.node.receiver_channel import LOG_PAGE_BLOCKS, ChannelMixin, Side, StopPoll, refuse
from lightpost.node.receiver_complete import CompleteMixin
from lightpost.node.receiver_delivery import DeliveryMixin, ProvenPost, Stream, new_stream
from lightpost.node.receiver_direct import DIRECT_PAGE_BLOCKS, DirectMixin
from lightpost.node.runtime import build_endpoints, chain_format, keystore_address

__all__ = [
    "DIRECT_PAGE_BLOCKS",
    "FOLLOW_INTERVAL_S",
    "LOG_PAGE_BLOCKS",
    "Receiver",
]

FOLLOW_INTERVAL_S = 2.0
"""Pause between polls in --follow (a sixth of a 12 s mainnet slot)."""


def _block_hash(block: Any, fmt: BlockFormat = ETHEREUM) -> bytes:
    # The hash of a block answer whose header fields hash to its claimed hash (ProofError otherwise:
    # the answer contradicts itself).
    if block is None:
        raise TransportError("rpc", "block unknown")
    return header_hash(verify_header(block, extra_allowed=fmt.header_fields))


class Receiver(DeliveryMixin, ChannelMixin, CompleteMixin, DirectMixin):
    """Receives verified messages for one device. Defaults: ``endpoints`` from the config
    (``rpc#i``), ``store`` ``<data_dir>/receiver.sqlite3``, ``me`` the keystore's ``address``.
    For an observer (the operator's console): ``any_recipient`` delivers messages addressed to
    other devices too; ``on_post`` sees each trusted sender's proven post (chunks included)."""

    def __init__(
        self,
        config: DeviceConfig,
        *,
        endpoints: Sequence[Endpoint] | None = None,
        store: ReceiverStore | None = None,
        me: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        anchor: Any = None,
        any_recipient: bool = False,
        on_post: Callable[[ProvenPost], None] | None = None,
    ) -> None:
        self.config = config
        self.any_recipient, self.on_post = any_recipient, on_post
        if endpoints is None:
            endpoints = build_endpoints(config)
        self.endpoints = list(endpoints)
        self.chain = Chain(self.endpoints, config.quorum, block_format=chain_format(config))
        if anchor is None and config.beacon is not None:
            from lightpost_beacon.anchor import Anchor

            anchor = Anchor(config, self.endpoints)
        self.anchor = anchor
        """trust = beacon/both: the light client's (lightpost_beacon.anchor), else None."""
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
        self._inbox_code_hash = INBOX_CODE_HASH
        self._streams: dict[tuple[str, bytes, bytes], Stream] = {}
        self._scan: dict[str, int] = {}
        self._final_at_poll = -1
        """Finalized height read at the start of the current poll below `final`."""
        self._final_readings: dict[str, int] = {}
        """Each answering endpoint's finalized height, from the last finalized read."""
        self._loaded: set[str] = set()
        self._held_total = 0
        """Bytes of messages held behind gaps, all streams (receiver_delivery bounds)."""
        self._partial_total = 0
        """Bytes of chunks of incomplete messages, all streams."""
        self._inflated = 0
        """Inflated message bytes decoded in the current poll."""
        self._sides: dict[int, Side] = {}
        """Block hash reads of the current poll (each block asked once per poll)."""
        self._unproven: dict[str, str] = {}
        """Each endpoint's reason from the last :meth:`_ask_in_turn` that none passed."""

    def close(self) -> None:
        """Checkpoint and close the state; stop the endpoint thread pool."""
        self.chain.close()
        self.store.close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API ---

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
        self._inflated = 0
        self._sides = {}
        for (s, _, _), stream in self._streams.items():
            if s == sub and stream.refused_block is not None and self._room_for(stream):
                start = min(start, stream.refused_block)  # offered again now
                stream.refused_block = None
        problems: list[Problem] = []
        try:
            if self.anchor:
                self.anchor.refresh(problems)
            if level < Level.FINAL:
                self._final_at_poll = self._final_or_unknown()
                yield from self._retractions(sub, self._final_at_poll)
            head = self._head(level, problems)
            yield from problems
            if self.config.mode == "direct":
                items = self._poll_direct(sub, level, channels, sender, start, head.number)
            else:
                items = self._poll_channel(sub, level, channels, sender, start, head)
            yield from self._with_finality_dissent(level, head.number, items)
        except StopPoll as stop:
            yield from problems
            yield stop.problem

    def _with_finality_dissent(
        self, level: Level, height: int, items: Iterator[Delivered | Problem]
    ) -> Iterator[Delivered | Problem]:
        # ``items``, with a disagreement (once per poll) before the first delivery at `final` or
        # above whose block an answering endpoint does not call final yet: a majority's finality is
        # never silent.
        told = level < Level.FINAL
        for item in items:
            if not told and isinstance(item, Delivered):
                problem = finality_dissent(height, self._final_readings, item.block_number)
                if problem is not None:
                    told = True
                    yield problem
            yield item

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

    # -- subscription and state ---

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
            stream = new_stream(row.next_seq, row.acc, row.count, row.last_block)
            stream.proven_at = row.proven_at
            self._streams[(sub, row.sender, row.channel)] = stream

    def _finish(self, sub: str, scanned_to: int) -> None:
        # Persist the cursor: the next block, unless something is still held.
        self._scan[sub] = scanned_to + 1
        holds = [stream.hold_block() for (s, _, _), stream in self._streams.items() if s == sub]
        self.store.set_cursor(sub, cursor_after(scanned_to, holds))

    # -- quorum reads ---

    def _head(self, level: Level, problems: list[Problem]) -> Side:
        # The level's head: the quorum's finalized block (hash read from all, dissent reported), or
        # the quorum's latest height below `final`.
        if level >= Level.FINAL:
            return self._block_side(self._finalized_height(), problems)
        try:
            latest = partial(self.chain.tag_height, "latest")
            height = self.anchor.height(False, latest) if self.anchor else latest()
            return Side(height, b"", frozenset(), frozenset())
        except LightpostError as exc:
            raise refuse(f"head: {exc}", kind=ProblemKind.DISAGREEMENT) from None

    def _block_side(self, number: int, problems: list[Problem]) -> Side:
        # The agreed hash of block ``number`` and who answered it; every endpoint heard, dissent
        # reported (both sides named).
        side = self._sides.get(number)
        if side is None:
            side = self._sides[number] = (
                self.anchor.side(number, problems, self._quorum_side)
                if self.anchor
                else self._quorum_side(number, problems)
            )
        return side

    def _quorum_side(self, number: int, problems: list[Problem]) -> Side:
        answers = self.chain.ask_each(
            "eth_getBlockByNumber",
            [hex(number), False],
            lambda block: _block_hash(block, self.chain.block_format),
        )
        for label, answer in answers.items():
            if isinstance(answer, ProofError):  # its header contradicts its own hash
                problems.append(
                    Problem(
                        kind=ProblemKind.PROOF_FAILURE,
                        details=f"block {number}: {answer}",
                        endpoints=(label,),
                        block_number=number,
                    )
                )
        report = quorum_report(answers, self.chain.quorum, question=f"block hash at {number}")
        seen = dissent(report, number)
        if not report.reached:
            raise StopPoll(
                seen
                or Problem(
                    kind=ProblemKind.DISAGREEMENT, details=str(report.error()), block_number=number
                )
            )
        if seen is not None:
            problems.append(seen)
        dissenting = frozenset(report.dissenters)
        agreeing = frozenset(report.answers) - dissenting - frozenset(report.failed)
        return Side(number, cast(bytes, report.agreed), agreeing, dissenting)

    def _finalized_height(self) -> int:
        try:
            if self.anchor:
                return int(self.anchor.height(True, self._quorum_final))
            return self._quorum_final()
        except LightpostError as exc:
            raise refuse(f"finalized: {exc}", kind=ProblemKind.DISAGREEMENT) from None

    def _quorum_final(self) -> int:
        height, self._final_readings = self.chain.final_reading(self.config.finality_depth)
        return height

    def _final_or_unknown(self) -> int:
        # The finalized height, or -1 when the endpoints do not agree on one now.
        try:
            return self._finalized_height()
        except StopPoll:
            return -1

    def _ask_in_turn(
        self,
        method: str,
        params: Sequence[Any],
        check: Callable[[Any], Any],
        what: str,
        problems: list[Problem],
        block_number: int | None = None,
        among: frozenset[str] | None = None,
    ) -> Any:
        # Ask endpoints in turn until an answer passes ``check`` (None: none did). ``among``: those
        # that agreed the value ``check`` proves against -- one that fails contradicts itself (a
        # proof-failure names it); one that is down or has no answer is not blamed.

        unproven: dict[str, str] = {}

        def blame(label: str, why: str) -> None:
            unproven[label] = f"failed proof: {why}"
            problems.append(
                Problem(
                    kind=ProblemKind.PROOF_FAILURE,
                    details=f"{what}: {why}",
                    endpoints=(label,),
                    block_number=block_number,
                )
            )

        def skipped(label: str, why: str) -> None:
            unproven[label] = f"{why} ({method})"

        asked = [ep for ep in self.endpoints if among is None or ep.label in among]
        found = prove_in_turn(asked, method, params, check, blame, skipped)
        self._unproven = unproven
        return None if found is None else found[0]

    def _refusal(self, what: str) -> str:
        # 'no endpoint proved {what}; refusing: rpc#0 <why>, ...' -- each endpoint's reason from the
        # last :meth:`_ask_in_turn` (labels only, peer text bounded).
        return refusal(what, self._unproven)

    # -- retraction ---

    def _retractions(self, sub: str, finalized: int) -> Iterator[Problem]:
        # Retract deliveries whose block left the chain; ``finalized``: this poll's height (-1: ask
        # again here, no quorum stops the poll).
        rows = self.store.unfinal(sub)
        if not rows:
            return
        if finalized < 0:
            finalized = self._finalized_height()
        blocks = sorted({(r.block_number, r.block_hash) for r in rows})
        reorg_from: int | None = None
        problems: list[Problem] = []
        for number, expected in blocks:
            side = self._block_side(number, problems)
            if side.hash != expected:
                reorg_from = number
                break
            if number <= finalized:
                self.store.drop_unfinal(sub, up_to_block=number)
        yield from problems
        if reorg_from is None:
            return
        for r in rows:
            if r.block_number >= reorg_from:
                yield Problem(
                    kind=ProblemKind.RETRACTED,
                    details="the including block is no longer canonical (reorg)",
                    sender=r.sender,
                    channel=r.channel,
                    seq=r.seq,
                    tx_hash=r.tx_hash,
                    block_number=r.block_number,
                )
                self._stream(sub, r.sender, r.channel).sequencer.rewind(r.seq)
                self._save(sub, r.sender, r.channel)
        self.store.drop_unfinal(sub, from_block=reorg_from)
        self._scan[sub] = min(self._scan.get(sub, reorg_from), reorg_from)
        self.store.set_cursor(sub, min(self.store.cursor(sub) or reorg_from, reorg_from))
