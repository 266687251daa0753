"""Beacon endpoints as untrusted data sources for the sync-committee light client: the standard
beacon API's light-client routes in JSON form (``/eth/v1/beacon/light_client/bootstrap``,
``updates``, ``finality_update``, ``optimistic_update``), several endpoints, any one enough.

Every answer is a claim: it is decoded with bounds and verified by lightpost_beacon.lightclient
before it changes anything; an endpoint whose answer is refused is blamed by label (``beacon#0``),
one that is down is skipped. Bounded: each request's time (the endpoint's total deadline) and
bytes (a cap per route), updates per request, rounds per sync. Persisted state is the finalized
header and the current and next committees: constant size, never chain data.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.peerdata import parse_json
from lightpost.errors import (
    DecodingError,
    EndpointUnavailable,
    LightpostError,
    StoreError,
    TransportError,
)
from lightpost_beacon import lightclient
from lightpost_beacon.containers import (
    BLS_PUBKEY_BYTES,
    ChainConfig,
    LightClientUpdate,
    SyncCommittee,
    bootstrap_from_json,
    header_from_json,
    header_to_json,
    updates_from_json,
)
from lightpost_beacon.lightclient import BlsVerifier, Store

__all__ = [
    "BeaconLightClient",
    "BeaconSource",
    "HttpBeaconEndpoint",
    "decode_state",
    "encode_state",
    "load_state",
    "save_state",
]

KIB: Final = 1024
MAX_BOOTSTRAP_BYTES: Final = 256 * KIB
"""A bootstrap answer: mainnet's is ~64 KB of JSON (512 keys of 98 hex characters)."""
MAX_UPDATE_BYTES: Final = 160 * KIB
"""Per update in an ``updates`` answer: mainnet's are ~70 KB (a committee and two headers)."""
MAX_HEAD_UPDATE_BYTES: Final = 64 * KIB
"""A finality or optimistic update: ~6 KB on mainnet (headers and an aggregate, no committee)."""
MAX_SYNC_ROUNDS: Final = 64
"""``updates`` requests per sync: 64 x 8 periods = ~1.5 years of catching up at most."""
STATE_VERSION: Final = 1

T = TypeVar("T")


class BeaconSource(Protocol):
    """What the light client needs of a beacon endpoint (tests script it)."""

    label: str

    def get(self, path: str, cap: int) -> Any:
        """The parsed JSON of a GET of ``path``, at most ``cap`` bytes; TransportError if none."""


@dataclass
class HttpBeaconEndpoint(HttpEndpoint):
    """A beacon node's REST API over HTTP(S), with rpc.HttpEndpoint's deadline, caps and retries;
    ``url`` (the API's base) is never printed."""

    def get(self, path: str, cap: int) -> Any:
        return self._request(None, cap, path)


def _ask(
    sources: Sequence[BeaconSource],
    path: str,
    cap: int,
    use: Callable[[Any], T],
    blame: Callable[[str, str], None],
) -> T | None:
    """Ask ``sources`` in turn until one's answer passes ``use``: a transport failure (or a
    TransportError from ``use``: nothing to say yet) is a non-answer; a refused or malformed answer
    is that source's fault, blamed by label."""
    for source in sources:
        try:
            answer = source.get(path, cap)
        except TransportError:
            continue
        try:
            return use(answer)
        except TransportError:
            continue
        except LightpostError as exc:
            blame(source.label, str(exc))
    return None


class BeaconLightClient:
    """The light client over ``sources``; ``clock``: wall time (seconds), ``blame(label, reason)``
    hears every refused answer."""

    def __init__(
        self,
        sources: Sequence[BeaconSource],
        config: ChainConfig,
        bls: BlsVerifier,
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        blame: Callable[[str, str], None] = lambda label, reason: None,
    ) -> None:
        self.sources = list(sources)
        self.config = config
        self.bls = bls
        self.store = store
        self.clock = clock
        self.blame = blame
        self._asked: int | None = None
        """The slot of the last sync (at most one a slot)."""
        self._finality_seen: int | None = None
        """The slot at which the finalized header last advanced."""

    def current_slot(self) -> int:
        return self.config.slot_at(int(self.clock()))

    def start(self, trusted_block_root: bytes, *, max_age_slots: int | None = None) -> Store:
        """Bootstrap from ``trusted_block_root`` (a weak-subjectivity checkpoint)."""
        now = self.current_slot()

        def use(answer: Any) -> Store:
            data = bootstrap_from_json(answer, self.config)
            return lightclient.bootstrap(
                self.config, trusted_block_root, data, current_slot=now, max_age_slots=max_age_slots
            )

        path = f"/eth/v1/beacon/light_client/bootstrap/0x{trusted_block_root.hex()}"
        store = _ask(self.sources, path, MAX_BOOTSTRAP_BYTES, use, self.blame)
        if store is None:
            raise EndpointUnavailable("beacon", "no endpoint served a valid bootstrap")
        self.store = store
        return store

    def _apply_all(self, updates: list[LightClientUpdate], now: int) -> Store:
        """Process ``updates`` in order; the first refusal refuses the whole answer."""
        assert self.store is not None
        store = self.store
        for update in updates:
            store = lightclient.process_update(
                self.config, store, update, current_slot=now, bls=self.bls
            )
        return store

    def sync(self) -> Store:
        """Catch up period by period, then follow finality and optimistic updates from every
        source (each verified; withholding by some cannot hide what one serves); force-update
        when finality is stuck for a period."""
        if self.store is None:
            raise StoreError("beacon light client not started")
        now = self.current_slot()
        if self._asked is not None and now <= self._asked:
            return self.store  # at most one sync a slot: nothing new can be signed within one
        finalized = self.store.finalized_header.beacon.slot
        for _ in range(MAX_SYNC_ROUNDS):
            wanted = lightclient.updates_wanted(self.config, self.store, now)
            if wanted is None:
                break
            start, count = wanted
            path = f"/eth/v1/beacon/light_client/updates?start_period={start}&count={count}"

            def use(answer: Any, count: int = count) -> Store:
                updates = updates_from_json(answer, self.config)
                if not updates:  # none for those periods yet (behind, or slots without blocks)
                    raise EndpointUnavailable("beacon", "no updates for those periods")
                if len(updates) > count:
                    raise DecodingError("beacon updates", f"{len(updates)} updates for {count}")
                return self._apply_all(updates, now)

            before = self.store
            store = _ask(self.sources, path, count * MAX_UPDATE_BYTES, use, self.blame)
            if store is None or store == before:
                break
            self.store = store
        routes = lightclient.head_routes(
            self.config, current_slot=now, finality_seen=self._finality_seen
        )
        for route in routes:
            for source in self.sources:
                _ask(
                    [source],
                    f"/eth/v1/beacon/light_client/{route}",
                    MAX_HEAD_UPDATE_BYTES,
                    lambda answer: self._head(answer, now),
                    self.blame,
                )
        self.store = lightclient.force_update(self.config, self.store, current_slot=now)
        self._asked = now
        if self.store.finalized_header.beacon.slot > finalized:
            self._finality_seen = now
        return self.store

    def _head(self, answer: Any, now: int) -> None:
        updates = updates_from_json(answer, self.config)
        if len(updates) != 1:
            raise DecodingError("beacon update", "not one update")
        store = self.store
        assert store is not None
        update = updates[0]
        period = self.config.period_at(store.finalized_header.beacon.slot)
        reach = period + (store.next_sync_committee is not None)
        if update.attested_header.beacon.slot <= store.finalized_header.beacon.slot:
            return  # behind what is final here: a lagging source, not a liar
        if self.config.period_at(update.signature_slot) > reach:
            return  # signed by a committee not known yet (catching up failed): unverifiable
        self.store = self._apply_all(updates, now)


# --- persisted state: constant size ---


def _committee_bytes(committee: SyncCommittee) -> bytes:
    return b"".join(committee.pubkeys) + committee.aggregate_pubkey


def encode_state(store: Store) -> bytes:
    """One JSON line (version, finalized header, participation maxima, committees known), then
    the committees' keys as raw bytes: ~26 KB with one committee, ~51 KB with two (mainnet)."""
    committees = [store.current_sync_committee]
    if store.next_sync_committee is not None:
        committees.append(store.next_sync_committee)
    head = {
        "version": STATE_VERSION,
        "finalized_header": header_to_json(store.finalized_header),
        "max_active_participants": [
            store.previous_max_active_participants,
            store.current_max_active_participants,
        ],
        "committees": len(committees),
    }
    line = json.dumps(head, separators=(",", ":")).encode()
    return line + b"\n" + b"".join(_committee_bytes(c) for c in committees)


def decode_state(raw: bytes, config: ChainConfig) -> Store:
    """A store from :func:`encode_state`'s bytes (the optimistic header restarts at the finalized
    one); StoreError if they do not decode."""
    try:
        line, _, keys = raw.partition(b"\n")
        head = parse_json(line, "beacon state")
        if not isinstance(head, dict) or head.get("version") != STATE_VERSION:
            raise DecodingError("beacon state", "unknown version")
        header = header_from_json(head["finalized_header"])
        previous, current = head["max_active_participants"]
        count = head["committees"]
        width = (config.committee_size + 1) * BLS_PUBKEY_BYTES
        if count not in (1, 2) or len(keys) != count * width:
            raise DecodingError("beacon state", "committee bytes of the wrong size")
        if not all(
            isinstance(n, int) and 0 <= n <= config.committee_size for n in (previous, current)
        ):
            raise DecodingError("beacon state", "participation out of range")
        committees = [
            SyncCommittee(
                pubkeys=tuple(
                    keys[at + k * BLS_PUBKEY_BYTES : at + (k + 1) * BLS_PUBKEY_BYTES]
                    for k in range(config.committee_size)
                ),
                aggregate_pubkey=keys[at + width - BLS_PUBKEY_BYTES : at + width],
            )
            for at in range(0, len(keys), width)
        ]
        return Store(
            finalized_header=header,
            optimistic_header=header,
            current_sync_committee=committees[0],
            next_sync_committee=committees[1] if count == 2 else None,
            previous_max_active_participants=previous,
            current_max_active_participants=current,
        )
    except (DecodingError, KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"beacon light-client state does not decode: {exc}") from None


def save_state(path: Path, store: Store) -> None:
    """Write atomically (a crash leaves the old or the new state, never half of one)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(encode_state(store))
    os.replace(tmp, path)


def load_state(path: Path, config: ChainConfig) -> Store | None:
    """The saved store, or None when there is none yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode_state(raw, config)
