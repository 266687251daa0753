"""Receiving MQTT devices' readings through a gateway, for the devnet and the demo (issue 14).

:func:`verified_readings` is the one place the demo asks "which of this device's records are
delivered, at which level": it takes what the gateway serves (its records, leaf, proof and
anchoring transaction; here read from the gateway's store, the stand-in for its backfill service)
and trusts none of it -- each batch's transaction and receipt are proven in a quorum-agreed block
(:func:`lightpost_gateway.receiver.prove_anchor_tx`) and the records checked against them
(:func:`lightpost_gateway.relay.verify_relayed`: signature, Merkle inclusion, chain links);
``complete`` folds every batch of the gateway up to the finalized block into the accumulator
proven with eth_getProof (:func:`lightpost_gateway.relay.verify_complete`). A dedicated receiver
module replaces this function's body; its contract stays: a record counts only when verified.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from lightpost.errors import LightpostError
from lightpost.node.chain import Chain
from lightpost_gateway.anchor import batch_digest
from lightpost_gateway.receiver import prove_anchor_tx, prove_gateway_accumulator
from lightpost_gateway.record import Domain
from lightpost_gateway.relay import verify_complete, verify_relayed
from lightpost_gateway.service import Anchored, Gateway, GatewayStore

__all__ = ["GatewayReading", "verified_readings"]


@dataclass(frozen=True, kw_only=True, slots=True)
class GatewayReading:
    """One verified record of a device: its seq, payload and the strongest level it reached."""

    seq: int
    payload: bytes
    block: int
    level: str
    """``included``, ``final`` (its block is at or below the finalized height) or ``complete``
    (and every batch of the gateway up to the finalized block is accounted for on chain)."""


def _no_anchor(_calldata: bytes) -> Anchored:
    raise LightpostError("a read-only view of a gateway's store does not anchor")


def _served(store: GatewayStore, domain: Domain) -> Gateway:
    """A gateway over ``store`` that only serves (Gateway.relay); it has no broker connections."""
    return Gateway(
        store=store, domain=domain, anchor=_no_anchor, sub=cast(Any, None), pub=cast(Any, None)
    )


def verified_readings(
    chain: Chain, db: Path, *, domain: Domain, device: bytes, gateway: bytes
) -> tuple[list[GatewayReading], list[str]]:
    """Every record of ``device`` that ``gateway`` (its paying address) anchored, verified; and
    the problems found (a batch that does not verify is a problem, its records are not
    delivered). Births are records of the chain too: they are returned with an empty payload."""
    store = GatewayStore(db)
    problems: list[str] = []
    out: list[GatewayReading] = []
    try:
        served = _served(store, domain)
        batches = store.db.execute(
            "SELECT DISTINCT r.batch FROM records r JOIN batches b ON r.batch = b.id "
            "WHERE r.device = ? AND b.block IS NOT NULL AND b.mode = 'anchored' ORDER BY r.batch",
            (device,),
        ).fetchall()
        final = chain.final_height()
        complete = _complete_up_to(
            chain, store, gateway=gateway, anchor=domain.anchor, final=final, problems=problems
        )
        for (batch,) in batches:
            wires, leaf, proof, tx_hash, block = served.relay(device, batch)
            try:
                tx, receipt = prove_anchor_tx(
                    chain, chain_id=domain.chain_id, tx_hash=tx_hash, block=block
                )
                if tx.sender != gateway:
                    raise LightpostError("the batch was anchored by another gateway")
                got = verify_relayed(
                    wires,
                    device=device,
                    leaf=leaf,
                    proof=proof,
                    tx=tx,
                    receipt=receipt,
                    domain=domain,
                )
            except LightpostError as exc:
                problems.append(f"batch {batch}: {exc}")
                continue
            level = "complete" if block <= complete else "final" if block <= final else "included"
            out.extend(
                GatewayReading(seq=s.record.seq, payload=s.record.payload, block=block, level=level)
                for s, _ in got
            )
    except (LightpostError, sqlite3.Error) as exc:
        problems.append(str(exc))
    finally:
        store.close()
    return out, problems


def _complete_up_to(
    chain: Chain,
    store: GatewayStore,
    *,
    gateway: bytes,
    anchor: bytes,
    final: int,
    problems: list[str],
) -> int:
    """The finalized height if the gateway's batches anchored up to it fold to the accumulator
    proven there (none withheld, none altered), else -1 (and a problem)."""
    digests = [
        batch_digest(bytes(calldata))
        for (calldata,) in store.db.execute(
            "SELECT calldata FROM batches WHERE block IS NOT NULL AND block <= ? "
            "ORDER BY block, id",
            (final,),
        )
    ]
    if not digests:
        return -1
    try:
        acc, count = prove_gateway_accumulator(chain, gateway=gateway, block=final, anchor=anchor)
        verify_complete(digests, proven_acc=acc, proven_count=count)
    except LightpostError as exc:
        problems.append(f"complete: {exc}")
        return -1
    return final
