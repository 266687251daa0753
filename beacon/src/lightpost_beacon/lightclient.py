"""The beacon-chain sync-committee light client (consensus-specs Altair light-client
sync-protocol.md, with Capella's execution header, Deneb's blob fields and Electra's generalized
indices; Fulu changes nothing here). Pure: the clock is ``current_slot``, BLS is injected.

Theory of operation. A :class:`Store` starts from a bootstrap whose header hashes to a block root
the user trusts (a weak-subjectivity checkpoint no older than ``max_age_slots``): that gives the
current sync committee. Each update is signed by the committee of its signature slot's period;
once verified, it may (with a 2/3 supermajority and a newer finalized header) move the finalized
header and hand the committees over. THE COMMITTEE TABLE, :data:`COMMITTEE_STEPS`, is the only
place the committees change: ``(phase, finalized period - store period)`` -> step; any other pair
is refused. Valid updates without a supermajority are kept as ``best_valid_update``, which
:func:`force_update` applies when no finality arrives for UPDATE_TIMEOUT (the force-update rule).
Every refusal is a :class:`~lightpost.errors.BeaconRefused` naming its rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Final, Protocol

from lightpost.core.header import BlockHeader, header_hash
from lightpost.errors import BeaconRefused, ProofError
from lightpost_beacon.containers import (
    EMPTY_EXECUTIONS,
    ChainConfig,
    LightClientBootstrap,
    LightClientHeader,
    LightClientUpdate,
    SyncCommittee,
)
from lightpost_beacon.ssz import (
    bytes_root,
    floorlog2,
    is_valid_merkle_branch,
    is_valid_normalized_merkle_branch,
    merkleize,
)

__all__ = [
    "COMMITTEE_STEPS",
    "BlsVerifier",
    "CommitteeStep",
    "Phase",
    "Store",
    "bootstrap",
    "execution_root",
    "force_update",
    "is_better_update",
    "process_update",
    "signing_root",
    "updates_wanted",
    "validate_header",
    "walk_back",
]

MAX_UPDATES_PER_REQUEST: Final = 8
"""Periods asked for in one ``updates`` request (~8 x 70 KB of JSON at mainnet size)."""
MAX_PARENT_WALK: Final = 8191
"""Execution headers walked back from a proven one at most, per question: EIP-2935's window. The
anchor proves blocks through the history contract's storage first (lightpost_beacon.history) and
walks where no endpoint serves the state that needs: with recent state only, a block at most
2 x 8,191 below the proven header (one history proof, then this walk)."""
GENESIS_SLOT: Final = 0
MIN_SYNC_COMMITTEE_PARTICIPANTS: Final = 1
"""Altair sync-protocol.md preset."""
DOMAIN_SYNC_COMMITTEE: Final = bytes.fromhex("07000000")
"""Altair beacon-chain.md, domain types."""
EXECUTION_PAYLOAD_GINDEX: Final = 25
"""BeaconBlockBody.execution_payload (Capella light-client sync-protocol.md)."""
FINALIZED_ROOT_GINDEX: Final = 105
CURRENT_SYNC_COMMITTEE_GINDEX: Final = 54
NEXT_SYNC_COMMITTEE_GINDEX: Final = 55
"""BeaconState generalized indices before Electra (Altair sync-protocol.md, constants)."""
FINALIZED_ROOT_GINDEX_ELECTRA: Final = 169
CURRENT_SYNC_COMMITTEE_GINDEX_ELECTRA: Final = 86
NEXT_SYNC_COMMITTEE_GINDEX_ELECTRA: Final = 87
"""BeaconState generalized indices from Electra on (Electra sync-protocol.md, new constants)."""
DEFAULT_MAX_CHECKPOINT_AGE_S: Final = 14 * 24 * 3600
"""Oldest trusted checkpoint accepted by default: 14 days, well inside mainnet's weak-subjectivity
period (Helios' default); older ones must come from a fresh trusted root."""


class BlsVerifier(Protocol):
    """BLS FastAggregateVerify (ciphersuite BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_); the
    ``lightpost[beacon]`` extra provides one (lightpost_beacon.bls)."""

    def fast_aggregate_verify(
        self, pubkeys: Sequence[bytes], message: bytes, signature: bytes
    ) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class Store:
    """LightClientStore; ``next_sync_committee`` None: not yet known."""

    finalized_header: LightClientHeader
    current_sync_committee: SyncCommittee
    next_sync_committee: SyncCommittee | None = None
    best_valid_update: LightClientUpdate | None = None
    optimistic_header: LightClientHeader
    previous_max_active_participants: int = 0
    current_max_active_participants: int = 0

    @property
    def phase(self) -> Phase:
        return Phase.NEXT_UNKNOWN if self.next_sync_committee is None else Phase.NEXT_KNOWN


class Phase(Enum):
    NEXT_UNKNOWN = 0
    NEXT_KNOWN = 1


class CommitteeStep(Enum):
    LEARN_NEXT = 0
    """Take the update's next committee (the period stays)."""
    KEEP = 1
    """Same period, committees known: nothing changes."""
    ROTATE = 2
    """Next period: current <- next, next <- the update's (if any)."""


# --- THE committee table ---

COMMITTEE_STEPS: Final[dict[tuple[Phase, int], CommitteeStep]] = {
    (Phase.NEXT_UNKNOWN, 0): CommitteeStep.LEARN_NEXT,
    (Phase.NEXT_KNOWN, 0): CommitteeStep.KEEP,
    (Phase.NEXT_KNOWN, 1): CommitteeStep.ROTATE,
}
"""``(phase, finalized period - store period)`` -> step (apply_light_client_update)."""


def _refuse(rule: str, reason: str) -> BeaconRefused:
    return BeaconRefused(rule, reason)


def _gindex(config: ChainConfig, slot: int, before: int, electra: int) -> int:
    return electra if config.is_active("electra", slot) else before


def execution_root(config: ChainConfig, header: LightClientHeader) -> bytes:
    """get_lc_execution_root (Deneb): the header's execution payload root in its slot's fork."""
    if header.execution is None or not config.is_active("capella", header.beacon.slot):
        return bytes(32)
    return header.execution.root(capella=not config.is_active("deneb", header.beacon.slot))


def validate_header(config: ChainConfig, header: LightClientHeader) -> None:
    """is_valid_light_client_header (Deneb): the execution header is proven by its branch against
    the beacon body root; before Capella it must be empty, before Deneb without blob gas."""
    slot = header.beacon.slot
    execution = header.execution
    blob_gas = execution is not None and (execution.blob_gas_used or execution.excess_blob_gas)
    if blob_gas and not config.is_active("deneb", slot):
        raise _refuse("header", "blob gas before Deneb")
    if not config.is_active("capella", slot):
        if execution is not None and (
            execution not in EMPTY_EXECUTIONS or any(any(b) for b in header.execution_branch)
        ):
            raise _refuse("header", "execution payload before Capella")
        return
    depth = floorlog2(EXECUTION_PAYLOAD_GINDEX)
    if execution is None or not is_valid_merkle_branch(
        execution_root(config, header),
        header.execution_branch,
        depth,
        EXECUTION_PAYLOAD_GINDEX % (1 << depth),
        header.beacon.body_root,
    ):
        raise _refuse("execution_branch", f"execution payload not proven at slot {slot}")


def signing_root(config: ChainConfig, header: LightClientHeader, signature_slot: int) -> bytes:
    """compute_signing_root of the attested beacon header under the sync-committee domain of the
    fork at ``signature_slot - 1`` (validate_light_client_update)."""
    version = config.fork_version_at(max(signature_slot, 1) - 1)
    fork_data_root = merkleize([bytes_root(version), config.genesis_validators_root])
    domain = DOMAIN_SYNC_COMMITTEE + fork_data_root[:28]
    return merkleize([header.beacon.root(), domain])


def bootstrap(
    config: ChainConfig,
    trusted_block_root: bytes,
    data: LightClientBootstrap,
    *,
    current_slot: int,
    max_age_slots: int | None = None,
) -> Store:
    """initialize_light_client_store, and the checkpoint is neither from the future nor older than
    ``max_age_slots`` (default: DEFAULT_MAX_CHECKPOINT_AGE_S)."""
    header = data.header
    slot = header.beacon.slot
    if max_age_slots is None:
        max_age_slots = DEFAULT_MAX_CHECKPOINT_AGE_S // config.seconds_per_slot
    if slot > current_slot:
        raise _refuse("future_slot", f"checkpoint slot {slot} is after slot {current_slot}")
    if current_slot - slot > max_age_slots:
        raise _refuse("checkpoint_age", f"checkpoint slot {slot} older than {max_age_slots} slots")
    validate_header(config, header)
    if header.beacon.root() != trusted_block_root:
        raise _refuse("trusted_root", "bootstrap header is not the trusted block root")
    committee = data.current_sync_committee
    if len(committee.pubkeys) != config.committee_size:
        raise _refuse("committee", "wrong committee size")
    gindex = _gindex(
        config, slot, CURRENT_SYNC_COMMITTEE_GINDEX, CURRENT_SYNC_COMMITTEE_GINDEX_ELECTRA
    )
    if not is_valid_normalized_merkle_branch(
        committee.root(), data.current_sync_committee_branch, gindex, header.beacon.state_root
    ):
        raise _refuse("committee_branch", "current sync committee not proven")
    return Store(
        finalized_header=header, current_sync_committee=committee, optimistic_header=header
    )


def _validate(
    config: ChainConfig,
    store: Store,
    update: LightClientUpdate,
    current_slot: int,
    bls: BlsVerifier,
) -> None:
    """validate_light_client_update."""
    if len(update.sync_committee_bits) != config.committee_size:
        raise _refuse("participants", "sync committee bits of the wrong length")
    if update.participants < MIN_SYNC_COMMITTEE_PARTICIPANTS:
        raise _refuse("participants", "too few signers")
    validate_header(config, update.attested_header)
    attested_slot = update.attested_header.beacon.slot
    finalized_slot = update.finalized_header.beacon.slot
    if update.signature_slot > current_slot:
        raise _refuse("future_slot", f"signature slot {update.signature_slot} is in the future")
    if not update.signature_slot > attested_slot >= finalized_slot:
        raise _refuse("slot_order", "signature, attested and finalized slots out of order")
    store_period = config.period_at(store.finalized_header.beacon.slot)
    signature_period = config.period_at(update.signature_slot)
    allowed = (
        (store_period,) if store.next_sync_committee is None else (store_period, store_period + 1)
    )
    if signature_period not in allowed:
        raise _refuse("period", f"signature period {signature_period} not in {allowed}")
    attested_period = config.period_at(attested_slot)
    supplies_next = (
        store.next_sync_committee is None
        and update.has_next_committee()
        and attested_period == store_period
    )
    if not (attested_slot > store.finalized_header.beacon.slot or supplies_next):
        raise _refuse("stale", f"attested slot {attested_slot} is not newer than finalized")
    state_root = update.attested_header.beacon.state_root
    if not update.has_finality():
        if not update.finalized_header.is_empty():
            raise _refuse("finality_branch", "finalized header without a finality branch")
    else:
        if finalized_slot == GENESIS_SLOT:
            if not update.finalized_header.is_empty():
                raise _refuse("finality_branch", "genesis finalized header is not empty")
            finalized_root = bytes(32)
        else:
            validate_header(config, update.finalized_header)
            finalized_root = update.finalized_header.beacon.root()
        gindex = _gindex(
            config, attested_slot, FINALIZED_ROOT_GINDEX, FINALIZED_ROOT_GINDEX_ELECTRA
        )
        if not is_valid_normalized_merkle_branch(
            finalized_root, update.finality_branch, gindex, state_root
        ):
            raise _refuse("finality_branch", "finalized header not proven")
    nsc = update.next_sync_committee
    if not update.has_next_committee():
        if nsc is not None and not nsc.is_empty():
            raise _refuse("committee_branch", "next committee without a branch")
    else:
        if nsc is None or len(nsc.pubkeys) != config.committee_size:
            raise _refuse("committee_branch", "next committee missing or of the wrong size")
        if (
            attested_period == store_period
            and store.next_sync_committee is not None
            and nsc != store.next_sync_committee
        ):
            raise _refuse("committee", "next committee differs from the one known")
        gindex = _gindex(
            config, attested_slot, NEXT_SYNC_COMMITTEE_GINDEX, NEXT_SYNC_COMMITTEE_GINDEX_ELECTRA
        )
        if not is_valid_normalized_merkle_branch(
            nsc.root(), update.next_sync_committee_branch, gindex, state_root
        ):
            raise _refuse("committee_branch", "next sync committee not proven")
    committee = (
        store.current_sync_committee
        if signature_period == store_period
        else store.next_sync_committee
    )
    assert committee is not None  # allowed periods above
    signers = [
        k for bit, k in zip(update.sync_committee_bits, committee.pubkeys, strict=True) if bit
    ]
    message = signing_root(config, update.attested_header, update.signature_slot)
    if not bls.fast_aggregate_verify(signers, message, update.sync_committee_signature):
        raise _refuse("signature", "sync committee signature does not verify")


def _apply(config: ChainConfig, store: Store, update: LightClientUpdate) -> Store:
    """apply_light_client_update, through THE committee table."""
    delta = config.period_at(update.finalized_header.beacon.slot) - config.period_at(
        store.finalized_header.beacon.slot
    )
    step = COMMITTEE_STEPS.get((store.phase, delta))
    if step is None:
        raise _refuse("period", f"no committee step for {store.phase.name} and period +{delta}")
    nsc = update.next_sync_committee
    incoming = None if nsc is None or nsc.is_empty() else nsc
    if step is CommitteeStep.LEARN_NEXT:
        store = replace(store, next_sync_committee=incoming)
    elif step is CommitteeStep.ROTATE:
        assert store.next_sync_committee is not None  # the table's key
        store = replace(
            store,
            current_sync_committee=store.next_sync_committee,
            next_sync_committee=incoming,
            previous_max_active_participants=store.current_max_active_participants,
            current_max_active_participants=0,
        )
    if update.finalized_header.beacon.slot > store.finalized_header.beacon.slot:
        store = replace(store, finalized_header=update.finalized_header)
        if update.finalized_header.beacon.slot > store.optimistic_header.beacon.slot:
            store = replace(store, optimistic_header=update.finalized_header)
    return store


def is_better_update(config: ChainConfig, new: LightClientUpdate, old: LightClientUpdate) -> bool:
    """is_better_update (Altair sync-protocol.md): the ranking for ``best_valid_update``."""

    def key(u: LightClientUpdate) -> tuple[int, ...]:
        # each element, compared in order, higher = better (the spec's cascade of tests)
        n = u.participants
        size = len(u.sync_committee_bits)
        supermajority = n * 3 >= size * 2
        attested_period = config.period_at(u.attested_header.beacon.slot)
        relevant = u.has_next_committee() and attested_period == config.period_at(u.signature_slot)
        finality = u.has_finality()
        sc_finality = (
            finality and config.period_at(u.finalized_header.beacon.slot) == attested_period
        )
        return (
            supermajority,
            0 if supermajority else n,
            relevant,
            finality,
            sc_finality,
            n,
            -u.attested_header.beacon.slot,
            -u.signature_slot,
        )

    return key(new) > key(old)


def process_update(
    config: ChainConfig,
    store: Store,
    update: LightClientUpdate,
    *,
    current_slot: int,
    bls: BlsVerifier,
) -> Store:
    """process_light_client_update (finality and optimistic updates too: their missing parts are
    defaults); the new store, or :class:`BeaconRefused` naming the failed check."""
    _validate(config, store, update, current_slot, bls)
    n = update.participants
    if store.best_valid_update is None or is_better_update(config, update, store.best_valid_update):
        store = replace(store, best_valid_update=update)
    store = replace(
        store, current_max_active_participants=max(store.current_max_active_participants, n)
    )
    threshold = (
        max(store.previous_max_active_participants, store.current_max_active_participants) // 2
    )
    if n > threshold and update.attested_header.beacon.slot > store.optimistic_header.beacon.slot:
        store = replace(store, optimistic_header=update.attested_header)
    finalized_next = (
        store.next_sync_committee is None
        and update.has_next_committee()
        and update.has_finality()
        and config.period_at(update.finalized_header.beacon.slot)
        == config.period_at(update.attested_header.beacon.slot)
    )
    if n * 3 >= len(update.sync_committee_bits) * 2 and (
        update.finalized_header.beacon.slot > store.finalized_header.beacon.slot or finalized_next
    ):
        store = replace(_apply(config, store, update), best_valid_update=None)
    return store


def force_update(config: ChainConfig, store: Store, *, current_slot: int) -> Store:
    """process_light_client_store_force_update: after UPDATE_TIMEOUT (one period) without
    finality, apply the best valid update, its attested header standing in as finalized."""
    timeout = config.slots_per_epoch * config.epochs_per_period
    best = store.best_valid_update
    if current_slot <= store.finalized_header.beacon.slot + timeout or best is None:
        return store
    if best.finalized_header.beacon.slot <= store.finalized_header.beacon.slot:
        best = replace(best, finalized_header=best.attested_header)
    return replace(_apply(config, store, best), best_valid_update=None)


def updates_wanted(config: ChainConfig, store: Store, current_slot: int) -> tuple[int, int] | None:
    """The ``updates`` request (start period, count) the store needs now, or None: then finality
    and optimistic updates keep it current (Altair light-client.md, "sync process", step 4)."""
    finalized = config.period_at(store.finalized_header.beacon.slot)
    optimistic = config.period_at(store.optimistic_header.beacon.slot)
    current = config.period_at(current_slot)
    if finalized == optimistic and store.next_sync_committee is None:
        return finalized, 1
    if finalized + 1 < current:
        return finalized + 1, min(current - finalized - 1, MAX_UPDATES_PER_REQUEST)
    return None


HEAD_ROUTES: Final = ("finality_update", "optimistic_update")
"""The beacon API's head routes, in the order they are asked."""


def head_routes(
    config: ChainConfig, *, current_slot: int, finality_seen: int | None
) -> tuple[str, ...]:
    """Which head updates to ask for in a new slot: the finality update only in an epoch whose
    finality is not seen yet (``finality_seen``: the slot at which the finalized header last
    advanced; finality moves only at epoch boundaries). With one sync a slot at most (the
    committee signs at most one block a slot), mainnet cadence is 7,200 optimistic and about
    225-450 finality answers a day, not one of each every receiver poll (docs/benchmarks.md)."""
    if finality_seen is None or config.epoch_at(current_slot) > config.epoch_at(finality_seen):
        return HEAD_ROUTES
    return HEAD_ROUTES[1:]


def walk_back(proven_block_hash: bytes, headers: Sequence[BlockHeader]) -> BlockHeader:
    """The last of ``headers`` (newest first), proven by hash links from a block hash the light
    client proved: ``headers[0]`` hashes to it and each is its predecessor's parent."""
    if not headers or len(headers) > MAX_PARENT_WALK:
        raise ProofError("beacon anchor", f"1 to {MAX_PARENT_WALK} headers needed")
    expected = proven_block_hash
    for header in headers:
        if header_hash(header) != expected:
            raise ProofError("beacon anchor", f"block {header.number} is not on the proven chain")
        expected = header.parent_hash
    return headers[-1]
