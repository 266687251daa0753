"""The receiver's rules about endpoint claims, as pure functions returning values.

An ``eth_getLogs`` answer is a *claim*: one no honest endpoint could give for the question
(:func:`claim_violation`) is that endpoint's lie. For a proven block, :func:`block_truth`
picks the followed posts and :func:`reconcile_block` judges the claims:

========================================  ==============================================
claim / truth                             verdict
========================================  ==============================================
claim names another block hash            disagreement: both sides named (the claimer and
                                          the endpoints that agreed the hash); no blame
claim names the agreed hash, not in truth forged: proof-failure against the claimers
truth position an endpoint did not return hidden: named -- unless that endpoint disagreed
                                          about this block (it cannot hide what it does
                                          not consider part of the chain)
========================================  ==============================================

:func:`dissent` names every side of a quorum read with dissenting answers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from lightpost.core.envelope import MAGIC, POST_HEADER_SIZE
from lightpost.core.inbox import EVENT_TOPIC
from lightpost.core.quorum import QuorumReport
from lightpost.core.receipts import Log, Receipt
from lightpost.core.rpcfields import data_field, get_list, get_object, parse_data, quantity_field
from lightpost.core.tx import DecodedTransaction, SignedTransaction
from lightpost.core.verify import Problem, ProblemKind
from lightpost.errors import LightpostError

__all__ = [
    "Claim",
    "ClaimSet",
    "DirectPick",
    "LogQuestion",
    "Reconciled",
    "block_truth",
    "claim_violation",
    "cursor_after",
    "dissent",
    "finality_dissent",
    "follows",
    "parse_claim",
    "pick_direct",
    "reconcile_block",
    "sender_topic",
    "sort_claims",
]

_ADDRESS_WORD_PAD = bytes(12)
"""The zero bytes in front of an address inside a 32-byte topic."""

_LOG_TOPICS = 4
"""LOG4: event topic, channel, sender word, recipient word."""

Policies = Mapping[bytes, frozenset[bytes]]
"""channel id -> the senders trusted on it."""


def sender_topic(sender: bytes) -> bytes:
    """The 32-byte topic word of an address (topic 2 of an inbox post)."""
    return _ADDRESS_WORD_PAD + sender


@dataclass(frozen=True, slots=True)
class Claim:
    """One log as an endpoint reported it (unproven)."""

    block_number: int
    block_hash: bytes
    tx_hash: bytes
    tx_index: int
    log_index: int
    log: Log

    @property
    def position(self) -> tuple[int, int]:
        """(transaction index, block-wide log index)."""
        return (self.tx_index, self.log_index)


def parse_claim(obj: object) -> Claim:
    """A log object of an eth_getLogs answer; DecodingError if malformed."""
    what = "log"
    entry = get_object(obj, what)
    topics = get_list(entry.get("topics"), "log.topics")
    return Claim(
        block_number=quantity_field(entry, "blockNumber", what),
        block_hash=data_field(entry, "blockHash", what, 32),
        tx_hash=data_field(entry, "transactionHash", what, 32),
        tx_index=quantity_field(entry, "transactionIndex", what),
        log_index=quantity_field(entry, "logIndex", what),
        log=Log(
            address=data_field(entry, "address", what, 20),
            topics=tuple(parse_data(t, "log.topic", 32) for t in topics),
            data=data_field(entry, "data", what),
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LogQuestion:
    """What one eth_getLogs asked: range, inbox, topics (``senders``: the topic-2 OR-list; None: any
    sender)."""

    from_block: int
    to_block: int
    inbox: bytes
    channels: frozenset[bytes]
    senders: frozenset[bytes] | None = None


def claim_violation(claim: Claim, question: LogQuestion) -> str | None:
    """Why ``claim`` cannot be an honest answer to ``question`` (None: it can be)."""
    if not question.from_block <= claim.block_number <= question.to_block:
        return (
            f"log of block {claim.block_number} outside the asked range "
            f"{question.from_block}..{question.to_block}"
        )
    log = claim.log
    if log.address != question.inbox:
        return "log of another contract than the asked inbox"
    if len(log.topics) != _LOG_TOPICS or log.topics[0] != EVENT_TOPIC:
        return "log is not an inbox post event"
    if log.topics[1] not in question.channels:
        return "log of a channel that was not asked for"
    word, senders = log.topics[2], question.senders
    if word[:12] != _ADDRESS_WORD_PAD or (senders is not None and word[12:] not in senders):
        return "log of a sender that was not asked for"
    return None


def follows(sender: bytes, channel: bytes, policies: Policies, only: bytes | None) -> bool:
    """Whether the device follows ``sender`` on ``channel``: trusted there (and the ``--from`` one
    if asked)."""
    return sender in policies.get(channel, frozenset()) and (only is None or sender == only)


def _log_follows(log: Log, policies: Policies, only: bytes | None) -> bool:
    return len(log.topics) == _LOG_TOPICS and follows(
        log.topics[2][12:], log.topics[1], policies, only
    )


@dataclass(frozen=True, slots=True)
class ClaimSet:
    """Kept claims (claim -> labels), the labels whose answers counted, and the problems found."""

    claims: dict[Claim, frozenset[str]] = field(default_factory=dict)
    answered: frozenset[str] = frozenset()
    problems: tuple[Problem, ...] = ()

    def by_block(self) -> dict[int, list[Claim]]:
        """The kept claims grouped by their block number."""
        out: dict[int, list[Claim]] = {}
        for claim in self.claims:
            out.setdefault(claim.block_number, []).append(claim)
        return out


def sort_claims(
    answers: Mapping[str, Sequence[object]],
    question: LogQuestion,
    policies: Policies,
    only: bytes | None = None,
) -> ClaimSet:
    """Parse and check every endpoint's eth_getLogs answer: bad logs and violations are its
    problems; only followed streams' claims are kept."""
    kept: dict[Claim, set[str]] = {}
    problems: list[Problem] = []
    for label, answer in answers.items():
        for i, obj in enumerate(answer):
            try:
                claim = parse_claim(obj)
            except LightpostError as exc:
                problems.append(_lie(label, f"malformed log {i}: {exc}"))
                continue
            why = claim_violation(claim, question)
            if why is not None:
                problems.append(
                    _lie(label, f"eth_getLogs: {why}; not proven", claim.block_number, claim)
                )
            elif _log_follows(claim.log, policies, only):
                kept.setdefault(claim, set()).add(label)
    return ClaimSet(
        claims={c: frozenset(labels) for c, labels in kept.items()},
        answered=frozenset(answers),
        problems=tuple(problems),
    )


def _lie(
    label: str, details: str, number: int | None = None, claim: Claim | None = None
) -> Problem:
    return Problem(
        kind=ProblemKind.PROOF_FAILURE,
        details=details,
        endpoints=(label,),
        block_number=number,
        tx_hash=claim.tx_hash if claim is not None else None,
    )


def block_truth(
    receipts: Sequence[Receipt], *, inbox: bytes, policies: Policies, only: bytes | None
) -> dict[tuple[int, int], Log]:
    """The followed inbox posts in a block's PROVEN receipts, by (tx index, block-wide
    log index); logs of failed transactions are not posts."""
    truth: dict[tuple[int, int], Log] = {}
    log_index = 0
    for tx_index, receipt in enumerate(receipts):
        for log in receipt.logs:
            if (
                receipt.status == 1
                and log.address == inbox
                and log.topics[:1] == (EVENT_TOPIC,)
                and _log_follows(log, policies, only)
            ):
                truth[(tx_index, log_index)] = log
            log_index += 1
    return truth


@dataclass(frozen=True, slots=True)
class Reconciled:
    """A proven block against its claims: proven post positions (ascending) and problems."""

    positions: tuple[tuple[int, int], ...]
    problems: tuple[Problem, ...]


def _names(labels: Iterable[str]) -> str:
    return ", ".join(sorted(labels)) or "no endpoint"


def reconcile_block(
    *,
    number: int,
    agreed_hash: bytes,
    agreeing: frozenset[str],
    dissenting: frozenset[str],
    truth: Mapping[tuple[int, int], Log],
    claims: Mapping[Claim, frozenset[str]],
    answered: frozenset[str],
    tx_hashes: Sequence[bytes],
) -> Reconciled:
    """Judge the claims about block ``number`` against its proven ``truth`` (module table);
    ``agreeing``/``dissenting``: who answered the quorum's hash / another."""
    problems: list[Problem] = []
    returned: dict[tuple[int, int], set[str]] = {}
    other_view = set(dissenting)
    for claim, labels in sorted(claims.items(), key=lambda item: item[0].position):
        if claim.block_number != number:
            continue
        if claim.block_hash != agreed_hash:
            other_view |= labels
            problems.append(
                Problem(
                    kind=ProblemKind.DISAGREEMENT,
                    details=f"block {number}: {_names(labels)} returned a log of block "
                    f"0x{claim.block_hash.hex()}; {_names(agreeing)} agree on block "
                    f"0x{agreed_hash.hex()}, which the log is not proven in; not delivered",
                    block_number=number,
                    tx_hash=claim.tx_hash,
                    endpoints=tuple(sorted(labels | agreeing)),
                )
            )
            continue
        if truth.get(claim.position) != claim.log:
            problems.append(
                Problem(
                    kind=ProblemKind.PROOF_FAILURE,
                    details="log is not in the proven receipts of the block it names "
                    "(forged or never emitted); not delivered",
                    block_number=number,
                    tx_hash=claim.tx_hash,
                    endpoints=tuple(sorted(labels)),
                )
            )
            continue
        returned.setdefault(claim.position, set()).update(labels)
    for position in sorted(truth):
        missing = sorted(answered - returned.get(position, set()) - other_view)
        if missing:
            tx_index = position[0]
            problems.append(
                Problem(
                    kind=ProblemKind.HIDDEN,
                    details="endpoint(s) omitted a proven post from eth_getLogs",
                    block_number=number,
                    tx_hash=tx_hashes[tx_index] if tx_index < len(tx_hashes) else None,
                    endpoints=tuple(missing),
                )
            )
    return Reconciled(positions=tuple(sorted(truth)), problems=tuple(problems))


def dissent(report: QuorumReport[object], block_number: int | None = None) -> Problem | None:
    """A disagreement naming every side of a quorum read with a dissenting answer (None when all
    agreed); no one is called a liar."""
    if not report.dissenters:
        return None
    sides: dict[str, list[str]] = {}
    for label, rendered in report.answers.items():
        if label not in report.failed:
            sides.setdefault(rendered, []).append(label)
    text = "; ".join(
        f"{_names(labels)} answered {value}"
        for value, labels in sorted(sides.items(), key=lambda s: (-len(s[1]), s[1]))
    )
    verdict = "the quorum's answer is used" if report.reached else "no quorum"
    return Problem(
        kind=ProblemKind.DISAGREEMENT,
        details=f"{report.question}: {text} ({verdict})",
        block_number=block_number,
        endpoints=tuple(sorted(label for labels in sides.values() for label in labels)),
    )


def finality_dissent(height: int, readings: Mapping[str, int], block_number: int) -> Problem | None:
    """A disagreement when ``block_number`` is final only by the quorum's height (an answering
    endpoint reports a lower finalized height). Honest lag looks the same, so no one is blamed,
    but a `final` delivery resting on a majority is never silent (None: all agree)."""
    below = {label: h for label, h in readings.items() if h < block_number}
    if not below or block_number > height:
        return None
    above = sorted(label for label, h in readings.items() if h >= block_number)
    said = "; ".join(f"{label} says {h}" for label, h in sorted(below.items()))
    return Problem(
        kind=ProblemKind.DISAGREEMENT,
        details=f"block {block_number} is final by the quorum's finalized height {height} "
        f"({_names(above)}) but not by every endpoint: {said}",
        block_number=block_number,
        endpoints=tuple(sorted([*above, *below])),
    )


def cursor_after(scanned_to: int, holds: Iterable[int | None]) -> int:
    """The cursor to persist: block ``scanned_to`` + 1, or a lower block where a stream holds
    something undelivered."""
    return min([scanned_to + 1, *(h for h in holds if h is not None)])


@dataclass(frozen=True, slots=True)
class DirectPick:
    """Direct mode: the posts picked from one proven block (tx index, channel id,
    transaction) and the problems found."""

    picked: tuple[tuple[int, bytes, SignedTransaction], ...]
    problems: tuple[Problem, ...]


def pick_direct(
    txs: Sequence[DecodedTransaction],
    *,
    number: int,
    me: bytes,
    chain_id: int,
    channels: Iterable[bytes],
    policies: Policies,
    only: bytes | None,
) -> DirectPick:
    """Posts of a proven block for this device: addressed to it or by a trusted sender of a
    subscribed channel (whose seq is shared across recipients)."""
    asked = set(channels)
    known = {(s, cid) for cid in asked for s in policies.get(cid, frozenset())}
    picked: list[tuple[int, bytes, SignedTransaction]] = []
    problems: list[Problem] = []
    for tx_index, tx in enumerate(txs):
        if not isinstance(tx, SignedTransaction):
            continue
        data = tx.tx.data
        if len(data) <= POST_HEADER_SIZE or data[POST_HEADER_SIZE - 2] != MAGIC:
            continue  # not a lightpost post (cheap filter before anything else)
        cid = bytes(data[:32])
        if tx.tx.to != me and (tx.sender, cid) not in known:
            continue
        if only is not None and tx.sender != only:
            continue
        if cid not in asked and cid not in policies:
            if tx.tx.to == me:  # addressed to this device: never dropped silently
                problems.append(
                    Problem(
                        kind=ProblemKind.UNAUTHORIZED,
                        sender=tx.sender,
                        channel=cid,
                        tx_hash=tx.hash,
                        block_number=number,
                        details=f"direct post on channel 0x{cid.hex()}, which is not configured: "
                        'add it under [channels."NAME"] (the id is keccak256 of NAME) with the '
                        "sender in `trusted` to receive it; not delivered",
                    )
                )
            continue
        if tx.chain_id != chain_id:
            problems.append(
                Problem(
                    kind=ProblemKind.PROOF_FAILURE,
                    tx_hash=tx.hash,
                    block_number=number,
                    details=f"signed for chain id {tx.chain_id}",
                )
            )
            continue
        if tx.tx.to == me and data[32:64] != sender_topic(me):
            problems.append(
                Problem(
                    kind=ProblemKind.UNDECODABLE,
                    tx_hash=tx.hash,
                    sender=tx.sender,
                    block_number=number,
                    details="post recipient differs from the tx's `to`",
                )
            )
            continue
        picked.append((tx_index, cid, tx))
    return DirectPick(picked=tuple(picked), problems=tuple(problems))
