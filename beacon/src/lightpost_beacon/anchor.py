"""The beacon anchor of a device's ladder (``trust = "beacon"`` or ``"both"``): which execution
block hashes Ethereum's sync committee has signed, for the receiver's ``included``, ``final`` and
``complete``.

``included`` rests on the execution block hash in the LightClientHeader of the latest update the
committee signed (beacon-optimistic), ``final`` on the one under the latest finalized header
(beacon-finalized); ``complete`` on the state root of that finalized block. A block below a proven
one is proven from a proven state root through EIP-2935's block-hash history contract (one
eth_getProof per 8,191-block window; lightpost_beacon.history) or, where no endpoint serves that
state, by walking parent hashes back through headers any RPC endpoint serves (each must hash to
the hash its child names; at most MAX_PARENT_WALK per question). RPC endpoints are only data
sources here: none is trusted, any one that serves the proven chain is enough.

The [beacon] table (README: config keys): ``endpoints`` (beacon API URLs: secrets, named
beacon#0...), ``trusted_root`` (a block root checkpoint, 0x-hex), ``max_age`` (the checkpoint's
oldest age: slots as an integer, or a duration "14d", "6h", "30m", "90s"), ``network``
(``mainnet``, or ``devnet`` with ``genesis_time``: lightpost devnet's generated chain), and
``state_file`` (under data_dir; default beacon-state.bin).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from hashlib import sha256
from pathlib import Path
from typing import Any, Final, TypeVar

from lightpost.adapters.rpc import Endpoint
from lightpost.core.diagnosis import refusal
from lightpost.core.header import BlockHeader, verify_header
from lightpost.core.verify import Problem, ProblemKind
from lightpost.errors import ConfigError, EndpointUnavailable, LightpostError, ProofError
from lightpost.node.chain import prove_in_turn
from lightpost.node.config import DeviceConfig, _endpoints
from lightpost.node.receiver_channel import Side, StopPoll
from lightpost.node.runtime import chain_format
from lightpost_beacon.containers import MAINNET, ChainConfig, ExecutionPayloadHeader
from lightpost_beacon.history import (
    WALK_PREFERRED,
    history_params,
    hop_plan,
    verify_history_proof,
)
from lightpost_beacon.lightclient import (
    DEFAULT_MAX_CHECKPOINT_AGE_S,
    MAX_PARENT_WALK,
    walk_back,
)

__all__ = [
    "BEACON_KEYS",
    "DEVNET_GENESIS_VALIDATORS_ROOT",
    "FINALIZED",
    "OPTIMISTIC",
    "Anchor",
    "BeaconSettings",
    "devnet_config",
    "parse_settings",
]

BEACON_KEYS: Final = frozenset(
    {"endpoints", "trusted_root", "max_age", "network", "genesis_time", "state_file"}
)
"""Every key the [beacon] table may have."""
FINALIZED: Final = "beacon-finalized"
OPTIMISTIC: Final = "beacon-optimistic"
"""What a proven block hash rests on: a finalized header, or a committee-signed (optimistic) one."""
DEVNET_GENESIS_VALIDATORS_ROOT: Final = sha256(b"lightpost devnet").digest()
"""The generated devnet chain's genesis validators root (lightpost_operator.beacon_chain)."""
DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
"""Suffixes of a ``max_age`` duration, in seconds."""
DEFAULT_STATE_FILE: Final = "beacon-state.bin"
T = TypeVar("T")
MAX_KNOWN_HASHES: Final = 4 * MAX_PARENT_WALK
"""Proven (number -> hash) pairs remembered below the finalized header before starting afresh."""


def devnet_config(*, genesis_time: int, seconds_per_slot: int = 1) -> ChainConfig:
    """Minimal preset (8 slots an epoch, 8 epochs a period, 32 signers), every fork at epoch 0."""
    names = ("phase0", "altair", "bellatrix", "capella", "deneb", "electra", "fulu")
    return ChainConfig(
        genesis_validators_root=DEVNET_GENESIS_VALIDATORS_ROOT,
        slots_per_epoch=8,
        epochs_per_period=8,
        committee_size=32,
        forks=tuple((n, 0, bytes([k, 0, 0, 1])) for k, n in enumerate(names)),
        seconds_per_slot=seconds_per_slot,
        genesis_time=genesis_time,
    )


@dataclass(frozen=True, kw_only=True)
class BeaconSettings:
    """The validated [beacon] table; ``endpoints`` are secrets (never in repr)."""

    endpoints: tuple[str, ...] = field(repr=False)
    trusted_root: bytes
    max_age_slots: int
    config: ChainConfig
    state_file: Path

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(f"beacon#{i}" for i in range(len(self.endpoints)))


def _max_age(raw: Any, config: ChainConfig) -> int:
    if raw is None:
        return DEFAULT_MAX_CHECKPOINT_AGE_S // config.seconds_per_slot
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return raw
    unit = DURATION_UNITS.get(raw[-1:]) if isinstance(raw, str) else None
    if unit is None or not raw[:-1].isdigit() or int(raw[:-1]) <= 0:
        raise ConfigError(
            'config: beacon.max_age must be slots (an integer) or a duration like "14d"'
        )
    return int(raw[:-1]) * unit // config.seconds_per_slot


def parse_settings(table: Any, data_dir: Path) -> BeaconSettings:
    """Validate the [beacon] table: one ConfigError line naming the key, never a URL."""
    if not isinstance(table, dict):
        raise ConfigError("config: trust on the beacon chain needs a [beacon] table")
    unknown = sorted(set(table) - BEACON_KEYS)
    if unknown:
        raise ConfigError(f"config: unknown key `beacon.{unknown[0]}`")
    network = table.get("network", "mainnet")
    if network == "mainnet":
        config = MAINNET
    elif network == "devnet":
        genesis = table.get("genesis_time")
        if not isinstance(genesis, int) or isinstance(genesis, bool) or genesis < 0:
            raise ConfigError("config: beacon.network = devnet needs beacon.genesis_time")
        config = devnet_config(genesis_time=genesis)
    else:
        raise ConfigError("config: beacon.network must be `mainnet` or `devnet`")
    root = table.get("trusted_root")
    try:
        trusted = bytes.fromhex(root[2:]) if isinstance(root, str) and root[:2] == "0x" else b""
    except ValueError:
        trusted = b""
    if len(trusted) != 32:
        raise ConfigError("config: beacon.trusted_root must be a 0x block root (32 bytes)")
    state = table.get("state_file", DEFAULT_STATE_FILE)
    if not isinstance(state, str):
        raise ConfigError("config: beacon.state_file must be a path string")
    return BeaconSettings(
        endpoints=_endpoints(table.get("endpoints"), "beacon.endpoints"),
        trusted_root=trusted,
        max_age_slots=_max_age(table.get("max_age"), config),
        config=config,
        state_file=data_dir / state,
    )


@dataclass(frozen=True, slots=True)
class Proven:
    """An execution block the light client proved, and what it rests on."""

    number: int
    hash: bytes
    state_root: bytes
    timestamp: int
    root: str


def _proven(execution: ExecutionPayloadHeader | None, root: str) -> Proven:
    if execution is None:
        raise ProofError("beacon anchor", "the proven header has no execution payload")
    return Proven(
        execution.block_number,
        execution.block_hash,
        execution.state_root,
        execution.timestamp,
        root,
    )


class Anchor:
    """The light client over the [beacon] endpoints, for the receiver (lightpost.node.receiver):
    :meth:`refresh` once a poll, then :meth:`height`, :meth:`side` and :meth:`root`. Every refused
    beacon answer and every RPC header off the proven chain is a proof-failure naming its source
    (beacon#i, rpc#i), in the poll's problems."""

    def __init__(
        self,
        device: DeviceConfig,
        endpoints: Sequence[Endpoint],
        *,
        clock: Callable[[], float] = time.time,
        sources: Sequence[Any] | None = None,
        bls: Any = None,
    ) -> None:
        from lightpost_beacon.bls import load_bls
        from lightpost_beacon.sources import BeaconLightClient, HttpBeaconEndpoint, load_state

        settings: BeaconSettings = device.beacon
        self.settings = settings
        self.trust = device.trust
        self.endpoints = list(endpoints)
        self.fmt = chain_format(device)
        self.blamed: list[Problem] = []
        if sources is None:
            sources = [
                HttpBeaconEndpoint(url=url, label=label)
                for url, label in zip(settings.endpoints, settings.labels, strict=True)
            ]
        self.client = BeaconLightClient(
            sources,
            settings.config,
            bls if bls is not None else load_bls(),
            store=load_state(settings.state_file, settings.config),
            clock=clock,
            blame=self.blame,
        )
        self._final: Proven | None = None
        self._optimistic: Proven | None = None
        self._synced: Any = None
        """The light client's store as last synced (a sync that changed nothing returns it)."""
        self._known: dict[str, dict[int, bytes]] = {FINALIZED: {}, OPTIMISTIC: {}}
        self._states: dict[str, dict[int, bytes]] = {FINALIZED: {}, OPTIMISTIC: {}}
        """Proven state roots (the heads', the history hops'): number -> root, per anchor."""

    def blame(self, label: str, why: str, number: int | None = None) -> None:
        self.blamed.append(
            Problem(
                kind=ProblemKind.PROOF_FAILURE,
                details=why,
                endpoints=(label,),
                block_number=number,
            )
        )

    def _drain(self, problems: list[Problem]) -> list[str]:
        """Move the blames into ``problems``; the labels blamed."""
        labels = sorted({label for p in self.blamed for label in p.endpoints})
        problems += self.blamed
        self.blamed = []
        return labels

    def refresh(self, problems: list[Problem]) -> None:
        """Bootstrap (first time) and sync, then save the state; StopPoll when nothing is proven."""
        try:
            self._refresh()
        except LightpostError as exc:
            raise StopPoll(
                Problem(
                    kind=ProblemKind.PROOF_FAILURE,
                    details=f"beacon light client: {exc}",
                    endpoints=tuple(self._drain(problems)),
                )
            ) from None
        self._drain(problems)

    def height(self, final: bool, quorum: Callable[[], int]) -> int:
        """The proven head's height (trust = both: no higher than ``quorum()``'s)."""
        height = self.head(final=final).number
        return height if self.trust == "beacon" else min(height, quorum())

    def side(
        self, number: int, problems: list[Problem], quorum: Callable[[int, list[Problem]], Side]
    ) -> Side:
        """Block ``number``'s proven hash (every RPC endpoint may be asked for what is proven
        against it); trust = both: ``quorum``'s side, which must hold the same hash."""
        try:
            proven = self.hash_at(number)
        except LightpostError as exc:
            raise StopPoll(
                Problem(
                    kind=ProblemKind.PROOF_FAILURE,
                    details=f"block {number}: {exc}",
                    endpoints=tuple(self._drain(problems)),
                    block_number=number,
                )
            ) from None
        self._drain(problems)
        if self.trust == "beacon":
            everyone = frozenset(ep.label for ep in self.endpoints)
            return Side(number, proven, everyone, frozenset())
        side = quorum(number, problems)
        if side.hash != proven:
            raise StopPoll(
                Problem(
                    kind=ProblemKind.PROOF_FAILURE,
                    details=f"block {number}: the quorum's hash is not the beacon-proven one",
                    endpoints=tuple(sorted(side.agreeing)),
                    block_number=number,
                )
            )
        return side

    def root(self, number: int) -> str:
        """What a delivery in block ``number`` rests on."""
        root = self.root_of(number)
        return root if self.trust == "beacon" else root + "+quorum"

    def _refresh(self) -> None:
        from lightpost_beacon.sources import save_state

        if self.client.store is None:
            self.client.start(self.settings.trusted_root, max_age_slots=self.settings.max_age_slots)
        store = self.client.sync()
        if store is self._synced:
            return  # nothing new this slot: no write, and the proven hashes stand
        self._synced = store
        self.settings.state_file.parent.mkdir(parents=True, exist_ok=True)
        save_state(self.settings.state_file, store)
        final = _proven(store.finalized_header.execution, FINALIZED)
        optimistic = _proven(store.optimistic_header.execution, OPTIMISTIC)
        if optimistic.number < final.number:
            optimistic = final  # an optimistic header older than finality adds nothing
        if len(self._known[FINALIZED]) > MAX_KNOWN_HASHES:
            self._known[FINALIZED], self._states[FINALIZED] = {}, {}
        self._known[OPTIMISTIC], self._states[OPTIMISTIC] = {}, {}
        self._final, self._optimistic = final, optimistic
        for root, proven in ((FINALIZED, final), (OPTIMISTIC, optimistic)):
            self._known[root][proven.number] = proven.hash
            self._states[root][proven.number] = proven.state_root

    def head(self, *, final: bool) -> Proven:
        """The latest proven finalized block (``final``) or committee-signed block."""
        head = self._final if final else self._optimistic
        if head is None:
            raise EndpointUnavailable("beacon", "the light client has not synced")
        return head

    def root_of(self, number: int) -> str:
        """What a proven block at ``number`` rests on."""
        return FINALIZED if number <= self.head(final=True).number else OPTIMISTIC

    def hash_at(self, number: int) -> bytes:
        """The proven hash of block ``number`` (ProofError: above the proven head, too deep, or no
        RPC endpoint served the proven chain). A block more than WALK_PREFERRED below the nearest
        proven hash is proven from a proven state root through EIP-2935's history contract (one
        eth_getProof a window of 8,191 blocks, hopping window by window: lightpost_beacon.history);
        where no endpoint serves that state, or the chain has no history, parent hashes are walked
        back from the nearest proven hash instead, at most MAX_PARENT_WALK blocks."""
        head = self.head(final=False)
        if number > head.number:
            raise ProofError(
                "beacon anchor", f"block {number} is above the committee-signed head {head.number}"
            )
        root = self.root_of(number)
        known, states = self._known[root], self._states[root]
        if number in known:
            return known[number]
        if min(n for n in known if n > number) - number > WALK_PREFERRED:
            proven = self._through_history(number, known, states)
            if proven is not None:
                return proven
        return self._walk(number, known)

    def _through_history(
        self, number: int, known: dict[int, bytes], states: dict[int, bytes]
    ) -> bytes | None:
        """Block ``number``'s hash proven by history proofs from the nearest proven state above
        it (each hop's block remembered with its state root); None: not served on the way."""
        start = min((n for n in states if n > number), default=None)
        for state_block, target in () if start is None else hop_plan(start, number):
            if target in states:
                continue  # a hop proven before
            proven, _ = self._prove(
                f"block {target} from the history at block {state_block}",
                target,
                "eth_getProof",
                history_params(state_block, target),
                partial(verify_history_proof, states[state_block], number=target),
            )
            if proven is None:
                return None
            known[target] = proven
            if target == number:
                return proven
            header, _ = self._prove_header(target, proven)
            if header is None:
                return None
            states[target] = header.state_root
        return None  # hop_plan ends at ``number``

    def _prove_header(self, n: int, expected: bytes) -> tuple[BlockHeader | None, str]:
        """Block ``n``'s header, which must hash to ``expected`` (a proven hash)."""

        def check(answer: Any) -> BlockHeader:
            header = verify_header(answer, extra_allowed=self.fmt.header_fields)
            return walk_back(expected, [header])

        return self._prove(
            f"block {n} of the proven chain", n, "eth_getBlockByNumber", [hex(n), False], check
        )

    def _prove(
        self, what: str, n: int, method: str, params: list[Any], check: Callable[[Any], T]
    ) -> tuple[T | None, str]:
        """Ask the RPC endpoints in turn until one's answer passes ``check``: (its value, ""); each
        failed proof is blamed on its endpoint. (None, why): no endpoint proved ``what``; (None,
        ""): the chain proves it is not served there (history: no contract, an empty slot)."""
        unproven: dict[str, str] = {}

        def blame(label: str, why: str) -> None:
            unproven[label] = f"failed proof: {why}"
            self.blame(label, f"block {n}: {why}", n)

        def skipped(label: str, why: str) -> None:
            unproven[label] = why

        found = prove_in_turn(self.endpoints, method, params, check, blame, skipped)
        return (None, refusal(what, unproven)) if found is None else (found[0], "")

    def _walk(self, number: int, known: dict[int, bytes]) -> bytes:
        """Walk parent hashes back from the nearest proven hash above ``number``: each header
        fetched must hash to the hash its child names (lightclient.walk_back)."""
        top = min(n for n in known if n > number)
        if top - number > MAX_PARENT_WALK:
            raise ProofError(
                "beacon anchor",
                f"block {number} is more than {MAX_PARENT_WALK} blocks below a proven header"
                " and no endpoint proved it from the block-hash history",
            )
        expected = known[top]
        for n in range(top, number, -1):
            header, why = self._prove_header(n, expected)
            if header is None:
                raise ProofError("beacon anchor", why)
            expected = known[n - 1] = header.parent_hash
        return expected
