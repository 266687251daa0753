"""Beacon-chain light-client containers, their hash_tree_root, the chain configuration, and the
beacon-API JSON form (decoded as untrusted input: every size bounded, every field checked).

Containers follow consensus-specs: phase0 beacon-chain.md (BeaconBlockHeader, ForkData,
SigningData), Altair beacon-chain.md (SyncCommittee, SyncAggregate), Capella/Deneb
beacon-chain.md (ExecutionPayloadHeader) and the light-client sync-protocol.md of Altair,
Capella, Deneb and Electra (LightClientHeader, -Bootstrap, -Update; Fulu changes none of them).
Absent optional parts are the spec's default (all-zero) values, as on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from lightpost.errors import DecodingError
from lightpost_beacon.ssz import bytes_root, merkleize, uint64_root

__all__ = [
    "FORK_NAMES",
    "MAINNET",
    "BeaconBlockHeader",
    "ChainConfig",
    "ExecutionPayloadHeader",
    "LightClientBootstrap",
    "LightClientHeader",
    "LightClientUpdate",
    "SyncCommittee",
    "bootstrap_from_json",
    "committee_from_json",
    "committee_to_json",
    "header_from_json",
    "header_to_json",
    "update_from_json",
    "updates_from_json",
]

FAR_FUTURE_EPOCH: Final = 2**64 - 1
"""An unscheduled fork's epoch (phase0 beacon-chain.md)."""

FORK_NAMES: Final = ("phase0", "altair", "bellatrix", "capella", "deneb", "electra", "fulu")
"""The forks in order; the beacon API's ``version`` field names one."""

BLS_PUBKEY_BYTES: Final = 48
BLS_SIGNATURE_BYTES: Final = 96
MAX_EXTRA_DATA_BYTES: Final = 32
"""ExecutionPayloadHeader.extra_data limit (Bellatrix beacon-chain.md)."""
LOGS_BLOOM_BYTES: Final = 256
MAX_BRANCH_DEPTH: Final = 8
"""Longest Merkle branch a light-client container carries (Electra's finality branch is 7)."""
MAX_UPDATES_PER_ANSWER: Final = 128
"""MAX_REQUEST_LIGHT_CLIENT_UPDATES (Altair light-client p2p-interface.md)."""


@dataclass(frozen=True, kw_only=True)
class ChainConfig:
    """What the light client needs to know of a chain: its genesis validators root, preset sizes
    and fork schedule (``forks``: (name, epoch, version) for each FORK_NAMES entry)."""

    genesis_validators_root: bytes
    slots_per_epoch: int
    epochs_per_period: int
    committee_size: int
    forks: tuple[tuple[str, int, bytes], ...]
    seconds_per_slot: int = 12
    genesis_time: int = 0

    def fork_epoch(self, name: str) -> int:
        """The epoch at which fork ``name`` activates (FAR_FUTURE_EPOCH if unscheduled)."""
        for fork, epoch, _ in self.forks:
            if fork == name:
                return epoch
        return FAR_FUTURE_EPOCH

    def epoch_at(self, slot: int) -> int:
        return slot // self.slots_per_epoch

    def period_at(self, slot: int) -> int:
        """compute_sync_committee_period_at_slot."""
        return slot // (self.slots_per_epoch * self.epochs_per_period)

    def is_active(self, name: str, slot: int) -> bool:
        """Whether fork ``name`` is active at ``slot``."""
        return self.epoch_at(slot) >= self.fork_epoch(name)

    def fork_version_at(self, slot: int) -> bytes:
        """compute_fork_version of the epoch of ``slot``."""
        epoch = self.epoch_at(slot)
        version = self.forks[0][2]
        for _, start, fork_version in self.forks:
            if start <= epoch:
                version = fork_version
        return version

    def slot_at(self, unix_time: int) -> int:
        """The wall-clock slot at ``unix_time`` (0 before genesis)."""
        return max(unix_time - self.genesis_time, 0) // self.seconds_per_slot


MAINNET: Final = ChainConfig(
    genesis_validators_root=bytes.fromhex(
        "4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"
    ),
    slots_per_epoch=32,
    epochs_per_period=256,
    committee_size=512,
    genesis_time=1606824023,
    forks=(
        ("phase0", 0, bytes.fromhex("00000000")),
        ("altair", 74240, bytes.fromhex("01000000")),
        ("bellatrix", 144896, bytes.fromhex("02000000")),
        ("capella", 194048, bytes.fromhex("03000000")),
        ("deneb", 269568, bytes.fromhex("04000000")),
        ("electra", 364032, bytes.fromhex("05000000")),
        ("fulu", 411392, bytes.fromhex("06000000")),
    ),
)
"""Ethereum mainnet (consensus-specs configs/mainnet.yaml, presets/mainnet)."""


@dataclass(frozen=True, kw_only=True)
class BeaconBlockHeader:
    slot: int = 0
    proposer_index: int = 0
    parent_root: bytes = bytes(32)
    state_root: bytes = bytes(32)
    body_root: bytes = bytes(32)

    def root(self) -> bytes:
        """hash_tree_root: the beacon block root."""
        return merkleize(
            [
                uint64_root(self.slot),
                uint64_root(self.proposer_index),
                self.parent_root,
                self.state_root,
                self.body_root,
            ]
        )


@dataclass(frozen=True, kw_only=True)
class ExecutionPayloadHeader:
    """Capella's fields, plus Deneb's two blob fields (None: Capella's shape)."""

    parent_hash: bytes = bytes(32)
    fee_recipient: bytes = bytes(20)
    state_root: bytes = bytes(32)
    receipts_root: bytes = bytes(32)
    logs_bloom: bytes = bytes(LOGS_BLOOM_BYTES)
    prev_randao: bytes = bytes(32)
    block_number: int = 0
    gas_limit: int = 0
    gas_used: int = 0
    timestamp: int = 0
    extra_data: bytes = b""
    base_fee_per_gas: int = 0
    block_hash: bytes = bytes(32)
    transactions_root: bytes = bytes(32)
    withdrawals_root: bytes = bytes(32)
    blob_gas_used: int | None = 0
    excess_blob_gas: int | None = 0

    def root(self, *, capella: bool = False) -> bytes:
        """hash_tree_root in its own shape, or (``capella``) as Capella's container."""
        roots = [
            self.parent_hash,
            bytes_root(self.fee_recipient),
            self.state_root,
            self.receipts_root,
            bytes_root(self.logs_bloom),
            self.prev_randao,
            uint64_root(self.block_number),
            uint64_root(self.gas_limit),
            uint64_root(self.gas_used),
            uint64_root(self.timestamp),
            bytes_root(self.extra_data, MAX_EXTRA_DATA_BYTES),
            self.base_fee_per_gas.to_bytes(32, "little"),
            self.block_hash,
            self.transactions_root,
            self.withdrawals_root,
        ]
        if not capella and self.blob_gas_used is not None and self.excess_blob_gas is not None:
            roots += [uint64_root(self.blob_gas_used), uint64_root(self.excess_blob_gas)]
        return merkleize(roots)


EMPTY_EXECUTIONS: Final = (
    ExecutionPayloadHeader(),
    ExecutionPayloadHeader(blob_gas_used=None, excess_blob_gas=None),
)
"""ExecutionPayloadHeader() in Deneb's and in Capella's shape."""


@dataclass(frozen=True, kw_only=True)
class LightClientHeader:
    """``execution`` None: Altair's header (a beacon block header only)."""

    beacon: BeaconBlockHeader = BeaconBlockHeader()
    execution: ExecutionPayloadHeader | None = None
    execution_branch: tuple[bytes, ...] = ()

    def root(self) -> bytes:
        if self.execution is None:
            return merkleize([self.beacon.root()])
        return merkleize(
            [self.beacon.root(), self.execution.root(), merkleize(self.execution_branch)]
        )

    def is_empty(self) -> bool:
        """Whether this is the default header (LightClientHeader())."""
        return (
            self.beacon == BeaconBlockHeader()
            and (self.execution is None or self.execution in EMPTY_EXECUTIONS)
            and not any(any(b) for b in self.execution_branch)
        )


@dataclass(frozen=True, kw_only=True)
class SyncCommittee:
    pubkeys: tuple[bytes, ...]
    aggregate_pubkey: bytes

    def root(self) -> bytes:
        return merkleize(
            [merkleize([bytes_root(k) for k in self.pubkeys]), bytes_root(self.aggregate_pubkey)]
        )

    def is_empty(self) -> bool:
        """Whether this is the default committee (SyncCommittee())."""
        return not any(self.aggregate_pubkey) and not any(any(k) for k in self.pubkeys)


@dataclass(frozen=True, kw_only=True)
class LightClientBootstrap:
    header: LightClientHeader
    current_sync_committee: SyncCommittee
    current_sync_committee_branch: tuple[bytes, ...]


@dataclass(frozen=True, kw_only=True)
class LightClientUpdate:
    """A LightClientUpdate; finality and optimistic updates are this with the missing parts at
    their defaults (as process_light_client_finality_update / _optimistic_update build them)."""

    attested_header: LightClientHeader
    next_sync_committee: SyncCommittee | None = None
    next_sync_committee_branch: tuple[bytes, ...] = ()
    finalized_header: LightClientHeader = field(default_factory=LightClientHeader)
    finality_branch: tuple[bytes, ...] = ()
    sync_committee_bits: tuple[bool, ...]
    sync_committee_signature: bytes
    signature_slot: int

    @property
    def participants(self) -> int:
        return sum(self.sync_committee_bits)

    def has_next_committee(self) -> bool:
        """is_sync_committee_update: the next-committee branch is not the default."""
        return any(any(b) for b in self.next_sync_committee_branch)

    def has_finality(self) -> bool:
        """is_finality_update: the finality branch is not the default."""
        return any(any(b) for b in self.finality_branch)


# --- the beacon-API JSON form (decoded as untrusted input) ---


def _fail(reason: str) -> DecodingError:
    return DecodingError("beacon json", reason)


def _get(obj: Any, key: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise _fail(f"missing {key}")
    return obj[key]


def _uint(obj: Any, key: str, bits: int = 64) -> int:
    raw = _get(obj, key)
    if not isinstance(raw, str) or not raw.isdigit() or len(raw) > 80 or int(raw) >= 1 << bits:
        raise _fail(f"{key} is not a uint{bits} decimal string")
    return int(raw)


def _hex(raw: Any, key: str, size: int | None = None, limit: int | None = None) -> bytes:
    if not isinstance(raw, str) or not raw.startswith("0x") or len(raw) % 2:
        raise _fail(f"{key} is not 0x-hex")
    try:
        data = bytes.fromhex(raw[2:])
    except ValueError:
        raise _fail(f"{key} is not 0x-hex") from None
    if (size is not None and len(data) != size) or (limit is not None and len(data) > limit):
        raise _fail(f"{key} has {len(data)} bytes")
    return data


def _bytes(obj: Any, key: str, size: int) -> bytes:
    return _hex(_get(obj, key), key, size)


def _branch(obj: Any, key: str) -> tuple[bytes, ...]:
    raw = _get(obj, key)
    if not isinstance(raw, list) or len(raw) > MAX_BRANCH_DEPTH:
        raise _fail(f"{key} is not a list of at most {MAX_BRANCH_DEPTH} roots")
    return tuple(_hex(b, key, 32) for b in raw)


_EXECUTION_BYTES: Final = {
    "parent_hash": 32,
    "fee_recipient": 20,
    "state_root": 32,
    "receipts_root": 32,
    "logs_bloom": LOGS_BLOOM_BYTES,
    "prev_randao": 32,
    "block_hash": 32,
    "transactions_root": 32,
    "withdrawals_root": 32,
}
_EXECUTION_UINTS: Final = ("block_number", "gas_limit", "gas_used", "timestamp")


def header_from_json(obj: Any) -> LightClientHeader:
    """A LightClientHeader from its beacon-API JSON (Altair: ``beacon`` only)."""
    b = _get(obj, "beacon")
    beacon = BeaconBlockHeader(
        slot=_uint(b, "slot"),
        proposer_index=_uint(b, "proposer_index"),
        parent_root=_bytes(b, "parent_root", 32),
        state_root=_bytes(b, "state_root", 32),
        body_root=_bytes(b, "body_root", 32),
    )
    if "execution" not in obj:
        return LightClientHeader(beacon=beacon)
    e = _get(obj, "execution")
    deneb = isinstance(e, dict) and "blob_gas_used" in e
    fields: dict[str, Any] = {k: _bytes(e, k, n) for k, n in _EXECUTION_BYTES.items()}
    fields.update({k: _uint(e, k) for k in _EXECUTION_UINTS})
    execution = ExecutionPayloadHeader(
        **fields,
        extra_data=_hex(_get(e, "extra_data"), "extra_data", limit=MAX_EXTRA_DATA_BYTES),
        base_fee_per_gas=_uint(e, "base_fee_per_gas", 256),
        blob_gas_used=_uint(e, "blob_gas_used") if deneb else None,
        excess_blob_gas=_uint(e, "excess_blob_gas") if deneb else None,
    )
    return LightClientHeader(
        beacon=beacon, execution=execution, execution_branch=_branch(obj, "execution_branch")
    )


def header_to_json(header: LightClientHeader) -> dict[str, Any]:
    """The beacon-API JSON of ``header`` (inverse of :func:`header_from_json`)."""
    b = header.beacon
    out: dict[str, Any] = {
        "beacon": {
            "slot": str(b.slot),
            "proposer_index": str(b.proposer_index),
            "parent_root": "0x" + b.parent_root.hex(),
            "state_root": "0x" + b.state_root.hex(),
            "body_root": "0x" + b.body_root.hex(),
        }
    }
    e = header.execution
    if e is not None:
        ex: dict[str, str] = {k: "0x" + getattr(e, k).hex() for k in _EXECUTION_BYTES}
        ex.update({k: str(getattr(e, k)) for k in _EXECUTION_UINTS})
        ex["extra_data"] = "0x" + e.extra_data.hex()
        ex["base_fee_per_gas"] = str(e.base_fee_per_gas)
        if e.blob_gas_used is not None and e.excess_blob_gas is not None:
            ex["blob_gas_used"] = str(e.blob_gas_used)
            ex["excess_blob_gas"] = str(e.excess_blob_gas)
        out["execution"] = ex
        out["execution_branch"] = ["0x" + x.hex() for x in header.execution_branch]
    return out


def committee_from_json(obj: Any, size: int) -> SyncCommittee:
    """A SyncCommittee of exactly ``size`` keys."""
    keys = _get(obj, "pubkeys")
    if not isinstance(keys, list) or len(keys) != size:
        raise _fail(f"pubkeys is not a list of {size} keys")
    return SyncCommittee(
        pubkeys=tuple(_hex(k, "pubkeys", BLS_PUBKEY_BYTES) for k in keys),
        aggregate_pubkey=_bytes(obj, "aggregate_pubkey", BLS_PUBKEY_BYTES),
    )


def committee_to_json(committee: SyncCommittee) -> dict[str, Any]:
    return {
        "pubkeys": ["0x" + k.hex() for k in committee.pubkeys],
        "aggregate_pubkey": "0x" + committee.aggregate_pubkey.hex(),
    }


def update_from_json(obj: Any, config: ChainConfig) -> LightClientUpdate:
    """A LightClientUpdate, LightClientFinalityUpdate or LightClientOptimisticUpdate (its ``data``
    object); missing parts take their defaults."""
    agg = _get(obj, "sync_aggregate")
    bits = _bytes(agg, "sync_committee_bits", config.committee_size // 8)
    committee = (
        committee_from_json(obj["next_sync_committee"], config.committee_size)
        if isinstance(obj, dict) and "next_sync_committee" in obj
        else None
    )
    return LightClientUpdate(
        attested_header=header_from_json(_get(obj, "attested_header")),
        next_sync_committee=committee,
        next_sync_committee_branch=_branch(obj, "next_sync_committee_branch")
        if committee is not None
        else (),
        finalized_header=header_from_json(obj["finalized_header"])
        if "finalized_header" in obj
        else LightClientHeader(),
        finality_branch=_branch(obj, "finality_branch") if "finalized_header" in obj else (),
        sync_committee_bits=tuple(bool(bits[i // 8] >> (i % 8) & 1) for i in range(len(bits) * 8)),
        sync_committee_signature=_bytes(agg, "sync_committee_signature", BLS_SIGNATURE_BYTES),
        signature_slot=_uint(obj, "signature_slot"),
    )


def _versioned(obj: Any) -> Any:
    """The ``data`` of a ``{"version": fork, "data": ...}`` answer."""
    if _get(obj, "version") not in FORK_NAMES:
        raise _fail("unknown fork version")
    return _get(obj, "data")


def bootstrap_from_json(obj: Any, config: ChainConfig) -> LightClientBootstrap:
    """A ``/eth/v1/beacon/light_client/bootstrap/{root}`` answer (parsed JSON)."""
    data = _versioned(obj)
    return LightClientBootstrap(
        header=header_from_json(_get(data, "header")),
        current_sync_committee=committee_from_json(
            _get(data, "current_sync_committee"), config.committee_size
        ),
        current_sync_committee_branch=_branch(data, "current_sync_committee_branch"),
    )


def updates_from_json(obj: Any, config: ChainConfig) -> list[LightClientUpdate]:
    """An ``updates`` answer (a list), or a ``finality_update`` / ``optimistic_update`` answer
    (one object) as a list of one (parsed JSON)."""
    items = obj if isinstance(obj, list) else [obj]
    if len(items) > MAX_UPDATES_PER_ANSWER:
        raise _fail(f"more than {MAX_UPDATES_PER_ANSWER} updates")
    return [update_from_json(_versioned(item), config) for item in items]
