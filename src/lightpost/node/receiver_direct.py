"""Receiver, direct mode: every block proven (pages of :data:`DIRECT_PAGE_BLOCKS`: the quorum-agreed
top hash, the rest chained by parent hashes); :func:`lightpost.core.reconcile.pick_direct` picks
this device's posts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from lightpost.core.l2 import ETHEREUM, BlockFormat
from lightpost.core.levels import Delivered, Level
from lightpost.core.reconcile import pick_direct
from lightpost.core.rpcfields import data_field, get_list, get_object, quantity_field
from lightpost.core.tx import rpc_hash_matches
from lightpost.core.verify import (
    Problem,
    prove_block_transactions,
    rebuild_transaction,
    verify_block_header,
)
from lightpost.errors import ConfigError, ProofError
from lightpost.node.rawforms import raw_forms
from lightpost.node.receiver_channel import StopPoll, refuse
from lightpost.node.receiver_delivery import ProvenPost, _ReceiverHost

__all__ = ["DIRECT_PAGE_BLOCKS"]

DIRECT_PAGE_BLOCKS = 32
"""Blocks per direct-mode page: a quorum read of the top hash, the rest chained by parent hashes."""


def _rebuild_each(txs_json: Sequence[object], fmt: BlockFormat = ETHEREUM) -> tuple[Any, ...]:
    out = []
    for i, obj in enumerate(txs_json):
        tx_obj = get_object(obj, f"transactions[{i}]")
        decoded = rebuild_transaction(tx_obj, fmt)
        if not rpc_hash_matches(tx_obj, decoded):
            raise ProofError("signed", f"transaction {i} does not match its hash")
        out.append(decoded)
    return tuple(out)


class DirectMixin(_ReceiverHost):
    """Direct mode of :class:`~lightpost.node.receiver.Receiver`."""

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
                try:
                    posts = self._direct_page(lo, hi, level, channels, sender, problems)
                finally:
                    yield from problems
                stopped = yield from self._deliver(sub, level, posts)
                scanned_to = hi if stopped is None else stopped - 1
                self._finish(sub, scanned_to)
                if stopped is not None:
                    break
                lo = hi + 1
        except StopPoll as stop:
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
    ) -> list[ProvenPost]:
        # Prove blocks hi..lo (top hash by quorum, then parent hashes) and pick posts.
        blocks: dict[int, tuple[int, bytes, tuple[Any, ...]]] = {}
        among: frozenset[str] | None = None
        expected: bytes | None = None
        if level >= Level.INCLUDED:
            side = self._block_side(hi, problems)
            expected, among = side.hash, side.agreeing
        for number in range(hi, lo - 1, -1):

            def check(answer: Any, expected: bytes | None = expected) -> Any:
                obj = get_object(answer, "block")
                txs_json = get_list(obj.get("transactions"), "transactions")
                if expected is None:  # signed: each tx rebuilt and hash-checked, no header proof
                    return (
                        None,
                        data_field(obj, "hash", "block", 32),
                        _rebuild_each(txs_json, self.chain.block_format),
                        quantity_field(obj, "timestamp", "block"),
                    )
                fmt = self.chain.block_format
                header = verify_block_header(answer, expected, fmt=fmt)
                forms = raw_forms(self.endpoints, answer, fmt)
                return (
                    header,
                    expected,
                    prove_block_transactions(header, txs_json, fmt=fmt, raw_forms=forms),
                    header.timestamp,
                )

            got = self._ask_in_turn(
                "eth_getBlockByNumber",
                [hex(number), True],
                check,
                f"block {number}",
                problems,
                number,
                among,
            )
            if got is None:
                raise refuse(self._refusal(f"block {number}"), number)
            header, block_hash, txs, timestamp = got
            blocks[number] = (timestamp, block_hash, txs)
            if header is not None:
                expected = header.parent_hash
        posts: list[ProvenPost] = []
        for number in range(lo, hi + 1):
            timestamp, block_hash, txs = blocks[number]
            pick = pick_direct(
                txs,
                number=number,
                me=self.me,
                chain_id=self.config.chain_id,
                channels=channels,
                policies=self.policies,
                only=sender,
            )
            problems += pick.problems
            posts += [
                ProvenPost(
                    sender=tx.sender,
                    channel=cid,
                    calldata=bytes(tx.tx.data),
                    index=None,
                    tx_hash=tx.hash,
                    block_number=number,
                    block_hash=block_hash,
                    block_timestamp=timestamp,
                    order=(number, tx_index, 0),
                )
                for tx_index, cid, tx in pick.picked
            ]
        return posts
