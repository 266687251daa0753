"""Proving receipts of our own transactions over the endpoints: the I/O around
:mod:`lightpost.core.inclusion` (the rules live there).

One :class:`InclusionProver` serves one round (a sender step, one
``Chain.confirmed_receipt`` call): it caches the agreed hashes and proven blocks of that
round. A receipt is a hint; it becomes a :class:`~lightpost.core.inclusion.ProvenReceipt`
only when the block hash at its height is quorum-agreed, the block is proven from its
header and transactions and the block's receipts rebuild receiptsRoot. Blocks and their
receipts are asked of the endpoints in turn until one answer proves; every endpoint
whose answer fails proof -- or whose receipt names an agreed block that does not hold
the transaction -- is named in :attr:`InclusionProver.problems` (by label, never URL).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

from lightpost.adapters.rpc import Endpoint
from lightpost.core.inclusion import (
    ProvenReceipt,
    prove_block,
    prove_receipts,
    proven_receipt,
    receipt_hint,
    tx_index,
)
from lightpost.core.outbox import BlockRef, Sighting
from lightpost.core.verify import ProvenBlock
from lightpost.errors import LightpostError, TransportError

__all__ = [
    "MAX_BLOCK_PROOFS_PER_ROUND",
    "UNKNOWN",
    "InclusionProver",
    "Unknown",
    "hints_by_endpoint",
]

T = TypeVar("T")

MAX_BLOCK_PROOFS_PER_ROUND = 32
"""Blocks one round fetches and proves at most: every transaction of a full in-flight
window (16, geth AccountSlots) in its own block, twice over. A liar naming a new block
per hint costs a bounded amount of work; the rest waits for the next round."""


class Unknown:
    """Marker: the chain could not be asked or nothing could be proven now (no quorum,
    endpoints down, every answer failed proof) -- no decision, ask again later."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = Unknown()


def hints_by_endpoint(
    answers: Mapping[str, Mapping[bytes, Any] | Exception], tx_hashes: Iterable[bytes]
) -> dict[Sighting, set[str]]:
    """Every receipt hint for ``tx_hashes`` and the endpoint labels that gave it
    (``answers``: label -> tx hash -> receipt JSON, or the error of that endpoint)."""
    hints: dict[Sighting, set[str]] = {}
    wanted = tuple(tx_hashes)
    for label, by_hash in answers.items():
        if isinstance(by_hash, Exception):
            continue
        for h in wanted:
            hint = receipt_hint(h, by_hash.get(h))
            if hint is not None:
                hints.setdefault(hint, set()).add(label)
    return hints


class InclusionProver:
    """Turns receipt hints into proven receipts for one round (see the module doc)."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        agreed_hash: Callable[[int], bytes],
        *,
        disproven: set[Sighting] | None = None,
        max_blocks: int = MAX_BLOCK_PROOFS_PER_ROUND,
    ):
        self._endpoints = endpoints
        self._agreed_hash = agreed_hash
        self._disproven = set() if disproven is None else disproven
        """Hints proven false, kept by the caller across rounds: a block hash commits to
        its transactions, so "not in block H" stays true and is never fetched again."""
        self._budget = max_blocks
        self._canonical: dict[int, bytes | Unknown] = {}
        self._blocks: dict[bytes, ProvenBlock | Unknown] = {}
        self._receipts: dict[bytes, tuple[ProvenBlock, object] | Unknown] = {}
        self.problems: dict[str, str] = {}
        """Endpoint label -> what of its answers failed proof, this round."""
        self.attempted = False
        """True once a hint was checked against the agreed chain this round."""

    def canonical(self, number: int) -> bytes | Unknown:
        """The quorum-agreed block hash at ``number`` (UNKNOWN: no quorum now)."""
        if number not in self._canonical:
            try:
                self._canonical[number] = self._agreed_hash(number)
            except LightpostError:
                self._canonical[number] = UNKNOWN
        return self._canonical[number]

    def prove(self, hint: Sighting, claimed_by: Collection[str]) -> ProvenReceipt | Unknown | None:
        """The hint, proven; None when it is false (not the canonical block, or the
        proven block does not hold the transaction: ``claimed_by`` are then named);
        UNKNOWN when it cannot be decided now."""
        self.attempted = True
        agreed = self.canonical(hint.block.number)
        if isinstance(agreed, Unknown):
            return UNKNOWN
        if agreed != hint.block.hash:
            return None  # not canonical (a stale endpoint after a reorg, or a lie)
        if hint not in self._disproven:
            block = self.block(hint.block)
            if isinstance(block, Unknown):
                return UNKNOWN
            if tx_index(block, hint.tx_hash) is not None:
                got = self._with_receipts(block)
                if isinstance(got, Unknown):
                    return UNKNOWN
                proven, receipts_json = got
                return proven_receipt(proven, receipts_json, hint.tx_hash)
            self._disproven.add(hint)
        for label in sorted(claimed_by):
            self._blame(
                label,
                f"its receipt puts tx 0x{hint.tx_hash.hex()} in block {hint.block.number}, "
                "whose proven transactions do not include it",
            )
        return None

    def block(self, ref: BlockRef) -> ProvenBlock | Unknown:
        """The block ``ref`` (agreed by the caller) proven from its header and
        transactions, the first endpoint whose answer proves it winning."""
        if ref.hash not in self._blocks:
            if self._budget <= 0:
                return UNKNOWN  # this round's proof budget is spent: next round
            self._budget -= 1
            found = self._in_turn(
                "eth_getBlockByNumber",
                [hex(ref.number), True],
                lambda answer: prove_block(answer, ref),
                f"block {ref.number}",
            )
            self._blocks[ref.hash] = UNKNOWN if found is None else found[0]
        return self._blocks[ref.hash]

    def _with_receipts(self, block: ProvenBlock) -> tuple[ProvenBlock, object] | Unknown:
        if block.hash not in self._receipts:
            found = self._in_turn(
                "eth_getBlockReceipts",
                [hex(block.number)],
                lambda answer: prove_receipts(block, answer),
                f"receipts of block {block.number}",
            )
            self._receipts[block.hash] = UNKNOWN if found is None else found
        return self._receipts[block.hash]

    def _blame(self, label: str, why: str) -> None:
        known = self.problems.get(label)
        if known is None:
            self.problems[label] = why
        elif why not in known:
            self.problems[label] = f"{known}; {why}"

    def _in_turn(
        self, method: str, params: Sequence[Any], check: Callable[[Any], T], what: str
    ) -> tuple[T, object] | None:
        """(proven value, the answer) from the first endpoint whose answer proves."""
        for ep in self._endpoints:
            try:
                answer = ep.call(method, params)
            except LightpostError:
                continue  # unreachable or refused: a non-answer, not a liar
            if answer is None:
                continue  # does not know the block (yet): a non-answer
            try:
                return check(answer), answer
            except TransportError:
                continue
            except (LightpostError, KeyError, TypeError, ValueError, IndexError) as exc:
                self._blame(ep.label, f"its {what} failed proof: {exc}")
        return None
