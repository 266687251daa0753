"""Receiver, channel mode: eth_getLogs claims -> proven posts (``complete``:
:mod:`.receiver_complete`). The rules are pure functions in :mod:`lightpost.core.reconcile` and
:mod:`lightpost.core.verify`; this module asks the endpoints and feeds them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from lightpost.core.diagnosis import refusal
from lightpost.core.header import BlockHeader
from lightpost.core.inbox import EVENT_TOPIC, InboxPost
from lightpost.core.levels import Delivered, Level
from lightpost.core.reconcile import (
    Claim,
    ClaimSet,
    LogQuestion,
    block_truth,
    reconcile_block,
    sender_topic,
    sort_claims,
)
from lightpost.core.rpcfields import get_list, get_object
from lightpost.core.tx import SignedTransaction
from lightpost.core.verify import (
    Problem,
    ProblemKind,
    ProvenBlock,
    check_post_tx,
    decode_inbox_log,
    prove_block_transactions,
    verify_block_header,
    verify_signed,
)
from lightpost.errors import AnswerTooLarge, LightpostError, ProofError
from lightpost.node.block_receipts import prove_receipts_in_turn
from lightpost.node.rawforms import raw_forms
from lightpost.node.receiver_delivery import ProvenPost, _ReceiverHost

__all__ = ["GENESIS_BLOCK", "LOG_PAGE_BLOCKS", "MAX_TOPIC_SENDERS"]

GENESIS_BLOCK = 0
"""Block 0 holds no transactions: no post is ever final at it."""

LOG_PAGE_BLOCKS = 2_000
"""Blocks per eth_getLogs: the smallest common provider cap (Alchemy/Infura: 2,000-10,000)."""

MAX_TOPIC_SENDERS = 1_000
"""Trusted senders sent as the topic-2 OR-list; above, any sender is asked (request size) and the
client-side filter drops others."""


def hex_data(data: bytes) -> str:
    return "0x" + data.hex()


class StopPoll(Exception):
    """Internal: stop the poll and report ``problem`` (a refusal)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.details)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Side:
    """A quorum-agreed block hash and who answered it (``agreeing``) or another one."""

    number: int
    hash: bytes
    agreeing: frozenset[str]
    dissenting: frozenset[str]


def refuse(
    details: str, number: int | None = None, kind: ProblemKind = ProblemKind.PROOF_FAILURE
) -> StopPoll:
    return StopPoll(Problem(kind=kind, details=details, block_number=number))


class ChannelMixin(_ReceiverHost):
    """Channel mode of :class:`~lightpost.node.receiver.Receiver`."""

    @property
    def _inbox(self) -> bytes:
        assert self.config.inbox is not None
        return self.config.inbox

    def _followed(
        self, channels: tuple[bytes, ...], sender: bytes | None
    ) -> list[tuple[bytes, bytes]]:
        # (sender, channel) streams this subscription follows.
        return sorted(
            (s, cid)
            for cid in channels
            for s in self.policies.get(cid, frozenset())
            if sender is None or s == sender
        )

    def _get_logs(
        self, start: int, end: int, channels: tuple[bytes, ...], sender: bytes | None
    ) -> ClaimSet:
        # Checked, followed claims of every endpoint over [start, end], unioned (one honest endpoint
        # defeats one that hides); refusal below a quorum.
        senders = {s for s, _ in self._followed(channels, sender)}
        asked = frozenset(senders) if len(senders) <= MAX_TOPIC_SENDERS else None
        chans: Any = (
            hex_data(channels[0]) if len(channels) == 1 else [hex_data(c) for c in channels]
        )
        topics: list[Any] = [hex_data(EVENT_TOPIC), chans]
        if asked is not None:
            topics.append([hex_data(sender_topic(s)) for s in sorted(asked)])
        pages: list[ClaimSet] = []
        answered: frozenset[str] | None = None
        profile = self.config.profile
        step = LOG_PAGE_BLOCKS if profile is None else profile.logs_block_range
        for lo in range(start, end + 1, step):
            hi = min(end, lo + step - 1)
            page = self._log_page(lo, hi, topics, frozenset(channels), asked, sender)
            if len(page.answered) < self.chain.quorum:
                raise refuse(
                    f"eth_getLogs {lo}..{hi}: only {len(page.answered)} endpoint(s) answered, "
                    f"{self.chain.quorum} needed",
                    kind=ProblemKind.DISAGREEMENT,
                )
            pages.append(page)
            answered = page.answered if answered is None else answered & page.answered
        return _union(pages, answered or frozenset())

    def _log_page(
        self,
        lo: int,
        hi: int,
        topics: list[Any],
        channels: frozenset[bytes],
        asked: frozenset[bytes] | None,
        sender: bytes | None,
    ) -> ClaimSet:
        # eth_getLogs [lo, hi] from every endpoint. An answer over the size cap is asked again as
        # two halves, down to one block; still too large, or any other failure, is a non-answer for
        # the page. Each part is checked against its own range.
        todo: list[tuple[int, int, frozenset[str] | None]] = [(lo, hi, None)]
        parts: list[ClaimSet] = []
        problems: list[Problem] = []
        heard: set[str] = set()
        dropped: set[str] = set()
        while todo:
            a, b, among = todo.pop()
            if among is not None:
                among = among - dropped
                if not among:
                    continue
            flt = {
                "fromBlock": hex(a),
                "toBlock": hex(b),
                "address": hex_data(self._inbox),
                "topics": topics,
            }
            lists: dict[str, list[Any]] = {}
            split: set[str] = set()
            for label, value in self.chain.ask_all("eth_getLogs", [flt], among).items():
                if isinstance(value, list):
                    lists[label] = value
                elif isinstance(value, AnswerTooLarge) and a < b:
                    split.add(label)
                else:
                    dropped.add(label)
                    if isinstance(value, AnswerTooLarge):
                        problems.append(
                            Problem(
                                kind=ProblemKind.OVER_BUDGET,
                                details=f"eth_getLogs of block {a}: {value.reason}; "
                                f"no answer from it for blocks {lo}..{hi}",
                                endpoints=(label,),
                                block_number=a,
                            )
                        )
            heard |= lists.keys() | split
            question = LogQuestion(
                from_block=a, to_block=b, inbox=self._inbox, channels=channels, senders=asked
            )
            parts.append(sort_claims(lists, question, self.policies, sender))
            if split:
                mid = (a + b) // 2  # the lower half is asked first (popped last-in)
                todo += [(mid + 1, b, frozenset(split)), (a, mid, frozenset(split))]
        page = _union(parts, frozenset(heard - dropped))
        return ClaimSet(
            claims=page.claims, answered=page.answered, problems=(*problems, *page.problems)
        )

    def _poll_channel(
        self,
        sub: str,
        level: Level,
        channels: tuple[bytes, ...],
        sender: bytes | None,
        start: int,
        head: Side,
    ) -> Iterator[Delivered | Problem]:
        if start > head.number:
            # Nothing new up to the head (or `since` above it): remember the start; a
            # stream still to be proven complete holds the cursor at or below the head.
            self._finish(sub, start - 1)
            return
        if not self._followed(channels, sender):
            self._finish(sub, head.number)
            return
        found = self._get_logs(start, head.number, channels, sender)
        yield from found.problems
        posts: list[ProvenPost] = []
        scanned_to = start - 1
        try:
            for number, block_claims in sorted(found.by_block().items()):
                problems: list[Problem] = []
                if level >= Level.INCLUDED:
                    posts += self._prove_channel_block(number, found, sender, problems)
                else:
                    posts += self._sign_check_claims(block_claims, found, problems)
                yield from problems
                scanned_to = number - 1
            scanned_to = head.number
        except StopPoll as stop:
            yield stop.problem  # deliver what was proven below the refusal point, then stop
        if level == Level.COMPLETE:
            yield from self._complete_only(sub, channels, sender, start, head, posts, scanned_to)
            return
        stopped = yield from self._deliver(sub, level, sorted(posts, key=lambda p: p.order))
        self._finish(sub, scanned_to if stopped is None else min(scanned_to, stopped - 1))

    def _prove_block(self, side: Side, problems: list[Problem]) -> ProvenBlock:
        # The full block and its receipts, proven against the agreed hash.
        number = side.number

        def full(answer: Any) -> tuple[BlockHeader, tuple[Any, ...]]:
            fmt = self.chain.block_format
            header = verify_block_header(answer, side.hash, fmt=fmt)
            txs = get_list(get_object(answer, "block").get("transactions"), "transactions")
            forms = raw_forms(self.endpoints, answer, fmt)
            return header, prove_block_transactions(header, txs, fmt=fmt, raw_forms=forms)

        got = self._ask_in_turn(
            "eth_getBlockByNumber", [hex(number), True], full, f"block {number}", problems,
            number, side.agreeing,
        )  # fmt: skip
        if got is None:
            raise refuse(self._refusal(f"block {number}"), number)
        header, txs = got
        reasons: dict[str, str] = {}
        found = prove_receipts_in_turn(
            [ep for ep in self.endpoints if ep.label in side.agreeing],
            ProvenBlock(header=header, hash=side.hash, transactions=txs),
            self.chain.capabilities,
            lambda label, why: problems.append(
                Problem(
                    kind=ProblemKind.PROOF_FAILURE,
                    details=f"receipts of block {number}: {why}",
                    endpoints=(label,),
                    block_number=number,
                )
            ),
            reasons,
            fmt=self.chain.block_format,
        )
        if found is None:
            raise refuse(refusal(f"the receipts of block {number}", reasons), number)
        return found[0]

    def _prove_channel_block(
        self, number: int, found: ClaimSet, sender: bytes | None, problems: list[Problem]
    ) -> list[ProvenPost]:
        side = self._block_side(number, problems)
        block = self._prove_block(side, problems)
        truth = block_truth(block.receipts, inbox=self._inbox, policies=self.policies, only=sender)
        verdict = reconcile_block(
            number=number,
            agreed_hash=side.hash,
            agreeing=side.agreeing,
            dissenting=side.dissenting,
            truth=truth,
            claims=found.claims,
            answered=found.answered,
            tx_hashes=[t.hash for t in block.transactions],
        )
        problems += verdict.problems
        posts: list[ProvenPost] = []
        for tx_index, log_index in verdict.positions:
            tx = block.transactions[tx_index] if tx_index < len(block.transactions) else None
            tx_hash = tx.hash if tx is not None else bytes(32)
            try:
                post = decode_inbox_log(truth[(tx_index, log_index)], inbox=self._inbox)
                if not isinstance(tx, SignedTransaction):
                    raise ProofError(
                        "signed", "the post's transaction is not a signed type 0-2 transaction"
                    )
                if tx.chain_id != self.config.chain_id:
                    raise ProofError("signed", f"transaction signed for chain id {tx.chain_id}")
                check_post_tx(post, tx, inbox=self._inbox)
            except LightpostError as exc:
                problems.append(
                    Problem(
                        kind=ProblemKind.PROOF_FAILURE,
                        details=f"post: {exc}",
                        block_number=number,
                        tx_hash=tx_hash,
                    )
                )
                continue
            posts.append(
                _proven(
                    post,
                    tx_hash,
                    number,
                    side.hash,
                    block.header.timestamp,
                    (number, tx_index, log_index),
                )
            )
        return posts

    def _sign_check_claims(
        self, block_claims: list[Claim], found: ClaimSet, problems: list[Problem]
    ) -> list[ProvenPost]:
        # ``signed``: each claimed log bound to its signed transaction; the claim's block stays an
        # endpoint's word (no reorg tracking).
        inbox = self._inbox
        posts: list[ProvenPost] = []
        seen: set[tuple[bytes, Any]] = set()
        for claim in sorted(block_claims, key=lambda c: c.position):
            if (claim.tx_hash, claim.log) in seen:
                continue  # the same log claimed at another position: proven once
            labels = tuple(sorted(found.claims[claim]))
            try:
                post = decode_inbox_log(claim.log, inbox=inbox)
            except LightpostError as exc:
                problems.append(
                    Problem(
                        kind=ProblemKind.PROOF_FAILURE,
                        details=f"log: {exc}",
                        tx_hash=claim.tx_hash,
                        endpoints=labels,
                        block_number=claim.block_number,
                    )
                )
                continue

            def check(answer: Any, post: InboxPost = post, claim: Claim = claim) -> bool:
                tx = verify_signed(get_object(answer, "transaction"), chain_id=self.config.chain_id)
                if tx.hash != claim.tx_hash:
                    raise ProofError("signed", "the transaction is not the one the log names")
                check_post_tx(post, tx, inbox=inbox)
                return True

            tx_problems: list[Problem] = []
            if self._ask_in_turn(
                "eth_getTransactionByHash",
                [hex_data(claim.tx_hash)],
                check,
                "transaction",
                tx_problems,
                claim.block_number,
            ):
                problems.extend(tx_problems)  # another endpoint's tx matched: these lied
            else:
                problems.append(
                    Problem(
                        kind=ProblemKind.PROOF_FAILURE,
                        details="log does not match a transaction signed by its sender; "
                        "not delivered",
                        tx_hash=claim.tx_hash,
                        endpoints=labels,
                        block_number=claim.block_number,
                    )
                )
                continue
            seen.add((claim.tx_hash, claim.log))
            posts.append(
                _proven(
                    post,
                    claim.tx_hash,
                    claim.block_number,
                    claim.block_hash,
                    0,
                    (claim.block_number, claim.tx_index, claim.log_index),
                )
            )
        return posts


def _union(parts: Sequence[ClaimSet], answered: frozenset[str]) -> ClaimSet:
    # The claims and problems of ``parts`` together (a claim's labels unioned).
    claims: dict[Claim, frozenset[str]] = {}
    for part in parts:
        for claim, labels in part.claims.items():
            claims[claim] = claims.get(claim, frozenset()) | labels
    problems = tuple(p for part in parts for p in part.problems)
    return ClaimSet(claims=claims, answered=answered, problems=problems)


def _proven(
    post: InboxPost,
    tx_hash: bytes,
    number: int,
    block_hash: bytes,
    timestamp: int,
    order: tuple[int, int, int],
) -> ProvenPost:
    return ProvenPost(
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
