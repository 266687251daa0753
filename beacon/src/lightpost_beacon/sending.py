"""The sender's ladder on beacon trust (``trust = "beacon"`` or ``"both"``): a sent transaction is
``included`` only in the execution block the sync committee signed (beacon-optimistic) and
``final`` only under a finalized header (beacon-finalized), never on the word of RPC endpoints.

:class:`BeaconChain` is the :class:`~lightpost.node.chain.Chain` of a device whose config has a
[beacon] table (``lightpost.node.runtime.build_chain``). The sender's tracker
(:mod:`lightpost.node.sender_track`) and ``Chain.wait_receipt`` (the CLI, operator tools) ask it
what they asked the quorum: :meth:`BeaconChain.block_hash_at` (the hash a receipt must be proven
in), :meth:`BeaconChain.final_reading` (the finalized height) and
:meth:`BeaconChain.begin_round` (sync the light client, once a round: every answer of a round rests
on one proven state). Blocks below a proven header are proven by :meth:`Anchor.hash_at`.

RPC endpoints stay data sources (receipts, blocks, parent headers, broadcast): one that serves the
proven chain is enough; any number of liars can only delay ``included`` (the transaction stays in
the outbox and is re-broadcast), never fake it. trust = both: the quorum's hash must also be the
beacon-proven one, and the finalized height is the lower of the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from lightpost.adapters.rpc import Endpoint
from lightpost.core.verify import Problem
from lightpost.errors import ProofError
from lightpost.node.chain import Chain
from lightpost.node.config import DeviceConfig
from lightpost.node.receiver_channel import StopPoll
from lightpost.node.runtime import chain_format
from lightpost_beacon.anchor import Anchor

__all__ = ["ANCHOR_PROBLEM", "BeaconChain", "beacon_chain", "problem_keys"]

ANCHOR_PROBLEM: Final = "anchor"
"""Key (alone, or before a source's label) of the light client's refusals in the sender's
problems: what its status and log show."""


def problem_keys(problems: Sequence[Problem]) -> dict[str, str]:
    """The sender-problem entries of the light client's refusals: one per source named
    (``anchor beacon#0``, ``anchor rpc#1``), ``anchor`` for one naming none; the latest wins."""
    out: dict[str, str] = {}
    for problem in problems:
        for label in problem.endpoints or ("",):
            out[f"{ANCHOR_PROBLEM} {label}".strip()] = problem.details
    return out


@dataclass
class BeaconChain(Chain):
    """A :class:`Chain` whose proven block hashes and finalized height rest on ``anchor`` (the
    light client, :class:`~lightpost_beacon.anchor.Anchor`); every other question (nonce, fees,
    broadcast, receipts as hints) is the quorum's, as before."""

    anchor: Any = None
    """The light client (an Anchor over the same endpoints)."""
    _problems: dict[str, str] = field(init=False, repr=False, default_factory=dict)
    _mine: set[str] = field(init=False, repr=False, default_factory=set)
    _synced_at: float | None = field(init=False, repr=False, default=None)

    def begin_round(self, problems: dict[str, str]) -> None:
        """Sync the light client (at most once a slot: the committee signs at most one header a
        slot); its refusals go to ``problems`` (the sender's) until the next sync."""
        self._problems = problems
        now = self.anchor.client.clock()
        slot_s = self.anchor.settings.config.seconds_per_slot
        if self._synced_at is None or now - self._synced_at >= slot_s:
            self._sync(now)

    def _sync(self, now: float) -> None:
        found: list[Problem] = []
        try:
            self.anchor.refresh(found)
        except StopPoll as stop:  # nothing newer proven: the last proven state stands
            found.append(stop.problem)
        self._synced_at = now
        for key in self._mine:
            self._problems.pop(key, None)
        self._mine = set()
        self._note(found)

    def _note(self, problems: Sequence[Problem]) -> None:
        entries = problem_keys(problems)
        self._problems.update(entries)
        self._mine |= set(entries)

    def _ready(self) -> None:
        """A caller that starts no rounds (status, one question): sync once first."""
        if self._synced_at is None:
            self.begin_round(self._problems)

    def block_hash_at(self, number: int) -> bytes:
        """The beacon-proven hash of block ``number`` (ProofError: above the committee-signed
        head, or no endpoint served the proven chain down to it); trust = both: the quorum's
        hash must be the same."""
        self._ready()
        try:
            proven: bytes = self.anchor.hash_at(number)
        finally:
            blamed, self.anchor.blamed = self.anchor.blamed, []
            self._note(blamed)
        if self.anchor.trust == "both" and super().block_hash_at(number) != proven:
            raise ProofError(
                "beacon anchor", f"block {number}: the quorum's hash is not the beacon-proven one"
            )
        return proven

    def final_reading(self, finality_depth: int = 0) -> tuple[int, dict[str, int]]:
        """The beacon-finalized height (``finality_depth`` does not apply: finality is the
        chain's own); trust = both: no higher than the quorum's, with each endpoint's."""
        self._ready()
        final: int = self.anchor.head(final=True).number
        if self.anchor.trust != "both":
            return final, {}
        quorum, readings = super().final_reading(finality_depth)
        return min(final, quorum), readings


def beacon_chain(
    config: DeviceConfig, endpoints: Sequence[Endpoint], *, anchor: Any = None
) -> BeaconChain:
    """The chain client of a device on beacon trust; ``anchor`` defaults to the light client of
    the config's [beacon] table over ``endpoints``."""
    eps = list(endpoints)
    return BeaconChain(
        eps,
        config.quorum,
        block_format=chain_format(config),
        anchor=anchor if anchor is not None else Anchor(config, eps),
    )
