"""What ``lightpost status`` and ``lightpost doctor`` show of the light client (``trust = "beacon"``
or ``"both"``): each beacon endpoint -- reachable, the fork and slots of its finality update, and
whether that update verifies against the stored light-client state (or, before the first sync, a
bootstrap from the trusted root that endpoint serves) -- and the stored state: its finalized slot,
age and file. Read-only: the state file is never written here.

Each endpoint is judged alone (its own copy of the stored state, caught up through its own
``updates`` if a period passed), so one endpoint's answer never vouches for another's. The device
is unhealthy when no endpoint serves a verifiable finality update: the receiver could prove
nothing new.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from lightpost.errors import EndpointUnavailable, LightpostError, TransportError
from lightpost_beacon import lightclient
from lightpost_beacon.anchor import BeaconSettings
from lightpost_beacon.containers import ChainConfig, updates_from_json
from lightpost_beacon.lightclient import Store
from lightpost_beacon.sources import (
    MAX_HEAD_UPDATE_BYTES,
    BeaconLightClient,
    BeaconSource,
    HttpBeaconEndpoint,
    load_state,
)

__all__ = ["PROBE_TIMEOUT_S", "beacon_status", "render_rows"]

PROBE_TIMEOUT_S: Final = 10.0
"""A beacon endpoint's total deadline per request when probed (status, doctor)."""
FINALITY_ROUTE: Final = "/eth/v1/beacon/light_client/finality_update"
MAX_FORK_NAME: Final = 16
"""Longest fork name shown from an answer's ``version`` (a claim; longer: not shown)."""


class _UpdatesOnly:
    """``source`` for the catch-up only: the head routes are asked (and judged) by the probe."""

    def __init__(self, source: BeaconSource) -> None:
        self.source, self.label = source, source.label

    def get(self, path: str, cap: int) -> Any:
        if path.endswith(("/finality_update", "/optimistic_update")):
            raise EndpointUnavailable(self.label, "asked by the probe")
        return self.source.get(path, cap)


def _fork(answer: Any) -> str | None:
    version = answer.get("version") if isinstance(answer, dict) else None
    ok = isinstance(version, str) and version.isalpha() and len(version) <= MAX_FORK_NAME
    return version if ok else None


def probe_source(
    source: BeaconSource,
    settings: BeaconSettings,
    stored: Store | None,
    bls: Any,
    now_slot: int,
    clock: Callable[[], float],
) -> dict[str, Any]:
    """One endpoint's row: ``reachable``, ``fork``, ``slot`` (attested), ``finalized_slot``,
    ``verifies`` and ``detail`` (why not)."""
    config = settings.config
    row: dict[str, Any] = {"label": source.label, "reachable": False, "fork": None, "slot": None}
    row.update(finalized_slot=None, verifies=False, detail=None)
    refused: list[str] = []
    client = BeaconLightClient(
        [_UpdatesOnly(source)],
        config,
        bls,
        store=stored,
        clock=clock,
        blame=lambda _label, why: refused.append(why),
    )
    try:
        answer = source.get(FINALITY_ROUTE, MAX_HEAD_UPDATE_BYTES)
    except TransportError as exc:
        row["detail"] = f"finality update: {exc}"
        return row
    row.update(reachable=True, fork=_fork(answer))
    try:
        updates = updates_from_json(answer, config)
        if len(updates) != 1:
            raise EndpointUnavailable(source.label, "the finality update is not one update")
        update = updates[0]
        row.update(
            slot=update.attested_header.beacon.slot,
            finalized_slot=update.finalized_header.beacon.slot,
        )
        if client.store is None:
            client.start(settings.trusted_root, max_age_slots=settings.max_age_slots)
        store = client.sync()  # catch up through this endpoint's own updates, if a period passed
        if refused:
            raise EndpointUnavailable(source.label, refused[0])
        stored_slot = store.finalized_header.beacon.slot
        if update.attested_header.beacon.slot <= stored_slot:
            row["detail"] = f"behind: its attested slot <= the stored finalized slot {stored_slot}"
            return row
        lightclient.process_update(config, store, update, current_slot=now_slot, bls=bls)
    except LightpostError as exc:
        row["detail"] = refused[0] if refused else str(exc)  # the refusal says more
        return row
    row["verifies"] = True
    return row


def _state(path: Path, config: ChainConfig, now: float) -> tuple[dict[str, Any], Store | None]:
    state: dict[str, Any] = {"file": str(path), "bytes": None, "finalized_slot": None}
    state.update(age_s=None, block=None, error=None)
    try:
        stored = load_state(path, config)
    except LightpostError as exc:
        state["error"] = str(exc)
        return state, None
    if stored is None:
        return state, None
    header = stored.finalized_header
    slot = header.beacon.slot
    state.update(
        bytes=path.stat().st_size,
        finalized_slot=slot,
        age_s=round(now - (config.genesis_time + slot * config.seconds_per_slot)),
        block=None if header.execution is None else header.execution.block_number,
    )
    return state, stored


def beacon_status(
    settings: BeaconSettings,
    *,
    clock: Callable[[], float] = time.time,
    sources: Sequence[BeaconSource] | None = None,
    bls: Any = None,
) -> dict[str, Any]:
    """The light client's part of ``lightpost status``: ``endpoints`` (one row each), ``state``
    (the stored light-client state), ``reasons`` (unhealthy) and ``warnings``."""
    from lightpost_beacon.bls import load_bls

    config = settings.config
    now = clock()
    if sources is None:
        sources = [
            HttpBeaconEndpoint(url=url, label=label, retries=0, timeout=PROBE_TIMEOUT_S)
            for url, label in zip(settings.endpoints, settings.labels, strict=True)
        ]
    state, stored = _state(settings.state_file, config, now)
    verifier = bls if bls is not None else load_bls()
    now_slot = config.slot_at(int(now))
    rows = [probe_source(s, settings, stored, verifier, now_slot, clock) for s in sources]
    reasons, warnings = [], []
    if state["error"]:
        reasons.append(f"beacon state file: {state['error']}")
    elif stored is None:
        warnings.append("no beacon light-client state yet (the node bootstraps on its first poll)")
    if not any(r["verifies"] for r in rows):
        why = "; ".join(f"{r['label']}: {r['detail']}" for r in rows)
        reasons.append(f"no beacon endpoint serves a verifiable finality update ({why})")
    else:
        warnings += [
            f"{r['label']} cannot serve the light client: {r['detail']}"
            for r in rows
            if not r["verifies"]
        ]
    return {"endpoints": rows, "state": state, "reasons": reasons, "warnings": warnings}


def render_rows(report: dict[str, Any]) -> list[str]:
    """Text lines for ``lightpost status`` and ``lightpost doctor``."""
    state = report["state"]
    if state["finalized_slot"] is not None:
        age = state["age_s"]
        line = (
            f"finalized slot {state['finalized_slot']} (block {state['block']}), "
            f"{'?' if age is None else f'{age} s'} old; {state['file']} ({state['bytes']} bytes)"
        )
    else:
        line = f"no state ({state['error'] or 'not synced yet'}); {state['file']}"
    lines = [f"light client: {line}"]
    for row in report["endpoints"]:
        if not row["reachable"]:
            lines.append(f"  {row['label']} DOWN ({row['detail']})")
            continue
        what = f"{row['fork'] or '?'}, slot {row['slot']}, finalized slot {row['finalized_slot']}"
        verdict = "verifies" if row["verifies"] else f"DOES NOT VERIFY: {row['detail']}"
        lines.append(f"  {row['label']} {what}: {verdict}")
    return lines
