"""Receiver, ``complete`` level: each followed stream's (acc, count) proven by eth_getProof at the
finalized block and judged by :func:`lightpost.core.verify.completeness_verdict`; keys batched
per call, shared proof nodes verified once (:data:`lightpost.core.trie.Known`), a stream proven
at a block not proven there again."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from lightpost.adapters.rpc import MAX_PROOF_ANSWER_BYTES
from lightpost.core.inbox import accumulator_slots
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import (
    Complete,
    Hidden,
    Problem,
    ProblemKind,
    completeness_verdict,
    is_final,
    verify_accumulators,
    verify_block_header,
)
from lightpost.errors import LightpostError
from lightpost.node.receiver_channel import GENESIS_BLOCK, Side, StopPoll, hex_data, refuse
from lightpost.node.receiver_delivery import ProvenPost, _ReceiverHost

__all__ = ["PROOF_CALLS_IN_FLIGHT", "PROOF_STREAMS_PER_CALL", "CompleteMixin"]

TRIE_NODE_JSON_BYTES = 2 * 532 + 4
"""A proof node at its largest: a full branch (16 x 33 + 1 + 3 = 532 bytes, YP appendix D) as quoted
0x-hex with its comma."""

STORAGE_PROOF_NODES = 9
"""Nodes per storage proof for sizing: 16**8 slots give 8 branch levels -- more than any mainnet
contract (~10**8: 7-8). Anvil's inbox: 4-5 (2.9 KB of JSON per key)."""

STORAGE_ENTRY_JSON_BYTES = STORAGE_PROOF_NODES * TRIE_NODE_JSON_BYTES + 256
"""One storageProof entry at its largest: the proof plus key, value and field names."""

PROOF_STREAMS_PER_CALL = (MAX_PROOF_ANSWER_BYTES - STORAGE_ENTRY_JSON_BYTES) // (
    2 * STORAGE_ENTRY_JSON_BYTES
)
"""(sender, channel) streams per eth_getProof (2 keys each) fitting the answer cap at mainnet's
worst depth, one entry kept for the account proof: ~424 (~3.4x anvil's measured size)."""


PROOF_CALLS_IN_FLIGHT = 2
"""eth_getProof calls outstanding at once: the endpoint builds the next proof while one is verified;
bounds the answers held (each <= 8 MiB)."""


class CompleteMixin(_ReceiverHost):
    """``complete`` level of :class:`~lightpost.node.receiver.Receiver`."""

    @property
    def _inbox(self) -> bytes:
        raise NotImplementedError  # ChannelMixin's

    def _state_root(self, side: Side, problems: list[Problem]) -> bytes:
        header = self._ask_in_turn(
            "eth_getBlockByNumber",
            [hex(side.number), False],
            lambda answer: verify_block_header(answer, side.hash, fmt=self.chain.block_format),
            f"header {side.number}",
            problems,
            side.number,
            side.agreeing,
        )
        if header is None:
            raise refuse(self._refusal(f"header {side.number}"), side.number)
        return bytes(header.state_root)

    def _prove_accumulators(
        self, side: Side, keys: Sequence[tuple[bytes, bytes]], problems: list[Problem]
    ) -> dict[tuple[bytes, bytes], tuple[bytes, int]]:
        # (acc, count) of every stream in ``keys`` at ``side``: :data:`PROOF_STREAMS_PER_CALL`
        # streams per eth_getProof, :data:`PROOF_CALLS_IN_FLIGHT` at a time to the first agreeing
        # endpoint; a failed answer goes to the others in turn.
        state_root = self._state_root(side, problems)
        chunks = [
            keys[i : i + PROOF_STREAMS_PER_CALL]
            for i in range(0, len(keys), PROOF_STREAMS_PER_CALL)
        ]
        what = f"eth_getProof at {side.number}"
        first = next((ep for ep in self.endpoints if ep.label in side.agreeing), None)

        def params(chunk: Sequence[tuple[bytes, bytes]]) -> list[Any]:
            slots = [f"0x{slot:064x}" for key in chunk for slot in accumulator_slots(*key)]
            return [hex_data(self._inbox), slots, hex(side.number)]

        pool = ThreadPoolExecutor(PROOF_CALLS_IN_FLIGHT)
        ahead: deque[Future[Any]] = deque()
        out: dict[tuple[bytes, bytes], tuple[bytes, int]] = {}
        try:
            for i, chunk in enumerate(chunks):
                while first is not None and len(ahead) < PROOF_CALLS_IN_FLIGHT:
                    k = i + len(ahead)
                    if k >= len(chunks):
                        break
                    ahead.append(pool.submit(first.call, "eth_getProof", params(chunks[k])))

                def check(answer: Any, chunk: Sequence[tuple[bytes, bytes]] = chunk) -> Any:
                    return verify_accumulators(
                        state_root,
                        answer,
                        inbox=self._inbox,
                        inbox_code_hash=self._inbox_code_hash,
                        keys=chunk,
                    )

                got = None
                if first is not None:
                    try:
                        got = check(ahead.popleft().result())
                    except LightpostError as exc:
                        problems.append(
                            Problem(
                                kind=ProblemKind.PROOF_FAILURE,
                                details=f"{what}: {exc}",
                                endpoints=(first.label,),
                                block_number=side.number,
                            )
                        )
                if got is None:
                    others = side.agreeing - {first.label} if first else side.agreeing
                    got = self._ask_in_turn(
                        "eth_getProof", params(chunk), check, what, problems, side.number, others
                    )
                if got is None:
                    raise refuse(
                        self._refusal(f"the streams' state at block {side.number}"), side.number
                    )
                out.update(got)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return out

    def _complete_only(
        self,
        sub: str,
        channels: tuple[bytes, ...],
        sender: bytes | None,
        start: int,
        head: Side,
        posts: list[ProvenPost],
        scanned_to: int,
    ) -> Iterator[Delivered | Problem]:
        # Prove every followed stream complete at the finalized block; deliver complete streams
        # only, hold the cursor for the others.
        if head.number == GENESIS_BLOCK or scanned_to < head.number:
            # Genesis holds no posts (and anvil's genesis stateRoot matches no proof);
            # a refusal that stopped the scan leaves completeness unjudged this round.
            self._finish(sub, scanned_to)
            return
        streams = self._followed(channels, sender)
        problems: list[Problem] = []
        fresh_base = []
        for key in streams:
            stream = self._stream(sub, *key)
            if stream.proven_at is None and stream.count == 0:
                if start - 1 == GENESIS_BLOCK:
                    stream.proven_at = GENESIS_BLOCK  # (ACC_ZERO, 0) by definition
                elif start > 0:
                    fresh_base.append(key)  # no history: prove (acc, count) before `start`
        try:
            if fresh_base:
                base = self._prove_accumulators(
                    self._block_side(start - 1, problems), fresh_base, problems
                )
                for key, (acc, count) in base.items():
                    stream = self._stream(sub, *key)
                    stream.acc, stream.count, stream.proven_at = acc, count, start - 1
            # A stream proven complete at this very block by an earlier poll is not
            # proven again (a poll that finds no new finalized block costs no proof).
            due = [k for k in streams if self._stream(sub, *k).proven_at != head.number]
            proven = self._prove_accumulators(head, due, problems) if due else {}
        except StopPoll as stop:
            yield from problems
            yield stop.problem
            self._finish(sub, start - 1)
            return
        yield from problems
        ordered = sorted(posts, key=lambda p: p.order)
        by_stream: dict[tuple[bytes, bytes], list[ProvenPost]] = {}
        for p in ordered:  # grouped once: a poll's posts are not scanned per stream
            by_stream.setdefault((p.sender, p.channel), []).append(p)
        complete: dict[tuple[bytes, bytes], Complete] = {}
        for key in streams:
            stream = self._stream(sub, *key)
            if key not in proven:  # complete at head already: rescanned posts are old
                complete[key] = Complete(count=stream.count, acc=stream.acc)
                continue
            fresh = {
                p.index: p.calldata
                for p in by_stream.get(key, ())
                if p.index is not None and p.index > stream.count
            }
            acc, count = proven[key]
            verdict = completeness_verdict(
                proven_acc=acc,
                proven_count=count,
                local_acc=stream.acc,
                local_count=stream.count,
                new_posts=fresh,
            )
            if isinstance(verdict, Complete):
                complete[key] = verdict
                continue
            if isinstance(verdict, Hidden):
                kind, details = (
                    ProblemKind.HIDDEN,
                    (
                        f"the chain proves {verdict.proven_count} posts; "
                        f"{verdict.missing} not shown by any endpoint"
                    ),
                )
            else:
                kind, details = ProblemKind.PROOF_FAILURE, f"completeness: {verdict.reason}"
            yield Problem(
                kind=kind,
                sender=key[0],
                channel=key[1],
                block_number=head.number,
                missing=verdict.missing if isinstance(verdict, Hidden) else None,
                details=details,
            )
        with self.store.transaction():  # one commit (fsync) for every stream, not one each
            for key, done in complete.items():
                if key not in proven:
                    continue
                stream = self._stream(sub, *key)
                stream.acc, stream.count, stream.proven_at = done.acc, done.count, head.number
                self._save(sub, *key)
        deliverable = [
            p
            for p in ordered
            if (p.sender, p.channel) in complete and is_final(p.block_number, head.number)
        ]
        stopped = yield from self._deliver(sub, Level.COMPLETE, deliverable)
        # An incomplete stream keeps the cursor just after its last proven state, so
        # the next poll asks again (another endpoint may show the hidden posts).
        holds = [
            (self._stream(sub, *key).proven_at or -1) + 1 for key in streams if key not in complete
        ]
        if stopped is not None:
            holds.append(stopped)
        self._finish(sub, min([head.number + 1, *holds]) - 1)
