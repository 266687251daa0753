"""``lightpost status``: one screen of device health, with a verdict (read-only).
Used by the CLI and by a running node's ``Sender.status`` (which adds its problems)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lightpost.adapters.rpc import Endpoint
from lightpost.adapters.store import Store
from lightpost.core.diagnosis import Cap, endpoint_failures, needs
from lightpost.core.fees import FixedFeePolicy, Hold
from lightpost.core.gas import TX_BASE_GAS
from lightpost.core.hashing import KECCAK_BACKEND
from lightpost.core.keys import to_checksum_address
from lightpost.core.outbox import State
from lightpost.errors import LightpostError
from lightpost.node.chain import Chain, parse_quantity
from lightpost.node.probe import probe_endpoint
from lightpost.node.sender_settings import SenderSettings

__all__ = ["MAX_HELD_LISTED", "collect_status"]

MAX_HELD_LISTED = 10_000
"""Held messages read to group their hold reasons in :func:`collect_status`."""


def _endpoint_health(
    ep: Endpoint, chain: Chain, settings: SenderSettings, address: bytes, need: frozenset[Cap]
) -> dict[str, Any]:
    # What one endpoint serves of ``need`` (node.probe): reachable, chain id, head, and ``cannot``:
    # each needed capability it failed, with its reason and fix.
    start = time.monotonic()
    probe = probe_endpoint(
        ep,
        chain_id=settings.chain_id,
        finality_depth=settings.finality_depth,
        address=address,
        inbox=settings.inbox,
        need=need,
        fmt=chain.block_format,
        logs_range=settings.logs_block_range,
    )
    reach = probe.findings[0]
    failed = endpoint_failures(probe.findings, need - {Cap.REACH, Cap.CHAIN_ID})
    return {
        "label": ep.label,
        "reachable": reach.ok is True,
        "chain_id": probe.chain_id,
        "head": probe.latest,
        "error": None if reach.ok else reach.detail,
        "serves": reach.ok is True and not failed,
        "cannot": [{"capability": str(f.cap), "detail": f.detail, "fix": f.fix} for f in failed],
        "latency_ms": round((time.monotonic() - start) * 1000, 1),
    }


def collect_status(
    *,
    store: Store,
    chain: Chain,
    address: bytes,
    settings: SenderSettings,
    now: float,
    problems: Mapping[str, str] = {},
    node_running: bool | None = None,
    pool: ThreadPoolExecutor | None = None,
    level: str = "final",
    receives: bool = False,
    beacon: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What ``lightpost status`` shows, as a JSON-ready dict. ``warnings``: what does not stop the
    device; ``reasons``: why it is unhealthy (empty = healthy). An endpoint counts only if it
    serves what ``level`` needs (core.diagnosis.needs; ``receives``: the config follows senders).
    ``beacon`` (trust = beacon/both; node.probe.beacon_probe): the light client's report."""
    reasons: list[str] = []
    need = needs(
        mode=settings.mode,
        level=level,
        finality_depth=settings.finality_depth,
        receives=receives,
    )
    own_pool = pool is None
    executor = pool or ThreadPoolExecutor(max_workers=max(2, len(chain.endpoints)))
    try:
        pending = executor.submit(beacon) if beacon is not None else None
        health = list(
            executor.map(
                lambda ep: _endpoint_health(ep, chain, settings, address, need), chain.endpoints
            )
        )
        light = pending.result() if pending is not None else None
    finally:
        if own_pool:
            executor.shutdown(wait=False)
    reachable = [h for h in health if h["reachable"]]
    warnings = [f"{h['label']} unreachable" for h in health if not h["reachable"]]
    if light:
        reasons += light["reasons"]
        warnings += light["warnings"]
    if len(reachable) < chain.quorum:
        reasons.append(
            f"only {len(reachable)} of {len(health)} endpoints reachable, quorum needs "
            f"{chain.quorum}"
        )
    wrong = [h["label"] for h in reachable if h["chain_id"] != settings.chain_id]
    if wrong:
        reasons.append(f"wrong chain id on {', '.join(wrong)} (config: {settings.chain_id})")
    cannot = [
        f"{h['label']} cannot serve {level}: {c['capability']} ({c['detail']}); fix: {c['fix']}"
        for h in reachable
        for c in h["cannot"]
    ]
    serving = sum(1 for h in health if h["serves"])
    if len(reachable) >= chain.quorum and serving < chain.quorum:
        reasons.append(
            f"only {serving} of {len(health)} endpoints serve what {level} needs, quorum needs "
            f"{chain.quorum}: " + "; ".join(cannot)
        )
    else:
        warnings += cannot

    inputs = store.nonce_inputs()
    nonce_info: dict[str, Any] = {"local_next": inputs.local_next, "quorum": None, "answers": {}}
    try:
        rep = chain.report(
            "eth_getTransactionCount",
            ["0x" + address.hex(), "latest"],
            question="nonce at latest",
            convert=lambda v: parse_quantity(v, "nonce"),
        )
        nonce_info["answers"] = dict(rep.answers)
        nonce_info["dissenters"] = list(rep.dissenters)
        if rep.reached:
            nonce_info["quorum"] = rep.agreed
            if rep.dissenters:
                warnings.append(
                    f"nonce disagreement: {', '.join(rep.dissenters)} dissent from the quorum"
                )
        else:
            reasons.append(f"no nonce quorum: {rep.error()}")
    except LightpostError as exc:
        reasons.append(f"nonce unreadable: {exc}")

    counts = {s.value: n for s, n in store.counts_by_state().items()}
    held_reasons: dict[str, int] = {}
    for m in store.held_messages(MAX_HELD_LISTED):
        key = m.hold_reason or "held"
        held_reasons[key] = held_reasons.get(key, 0) + 1
    for reason, n in held_reasons.items():
        reasons.append(f"{n} message(s) held: {reason}")

    policy = settings.policy
    fees: dict[str, Any] = {
        # the config's own word for it ("fixed" / "eip1559"), as the README documents
        "policy": "fixed" if isinstance(policy, FixedFeePolicy) else "eip1559",
        "cap_wei": policy.hard_cap,
        "base_fee_wei": None,
        "above_cap": None,
    }
    try:
        base_fee = chain.base_fee()
        fees["base_fee_wei"] = base_fee
        fees["above_cap"] = isinstance(policy.price(base_fee), Hold)
    except LightpostError as exc:
        reasons.append(f"base fee unreadable: {exc}")

    balance: int | None = None
    try:
        balance = chain.balance(address)
        one_tx = policy.hard_cap * max(TX_BASE_GAS, settings.batch_bytes * 40 + TX_BASE_GAS)
        if balance < one_tx:
            reasons.append(f"balance {balance} wei is below the cost of one full transaction")
    except LightpostError as exc:
        reasons.append(f"balance unreadable: {exc}")

    finalized: dict[str, Any] | None = None
    try:
        number, block_hash = chain.finalized(settings.finality_depth)
        finalized = {"number": number, "hash": "0x" + block_hash.hex()}
    except LightpostError as exc:
        reasons.append(f"finalized head unreadable: {exc}")

    stuck = []
    for tx in store.pending_transactions():
        if tx.state in (State.SIGNED, State.BROADCAST) and now - tx.signed_at > 2 * (
            settings.stuck_after_s
        ):
            stuck.append(tx.nonce)
    if stuck:
        reasons.append(f"{len(stuck)} transaction(s) not mined for a long time: nonces {stuck}")
    queued = store.queued_messages(1)
    oldest_age = round(now - queued[0].created_at, 1) if queued else None
    if node_running is False and queued:
        reasons.append(f"{counts['queued']} message(s) queued but no `lightpost node` is running")
    for name, text in problems.items():
        reasons.append(f"{name}: {text}")

    return {
        "address": to_checksum_address(address),
        "chain_id": settings.chain_id,
        "mode": settings.mode,
        "keccak": KECCAK_BACKEND,
        "node_running": node_running,
        "nonce": nonce_info,
        "outbox": counts,
        "held": [{"reason": r, "count": n} for r, n in held_reasons.items()],
        "oldest_queued_age_s": oldest_age,
        "balance_wei": balance,
        "fees": fees,
        "endpoints": health,
        "finalized": finalized,
        "beacon": light,
        "level": level,
        "healthy": not reasons,
        "reasons": reasons,
        "warnings": warnings,
        "verdict": "healthy" if not reasons else "unhealthy: " + "; ".join(reasons),
    }
