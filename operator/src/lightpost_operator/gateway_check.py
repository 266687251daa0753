"""Receiving MQTT devices' readings through gateways, for the demo and the devnet (issue 14).

:class:`GatewayReceivers` is how the demo asks "which of this device's records are delivered, at
which level": the real merging receiver (:class:`lightpost_gateway.follow.Follower`, what
``lightpost receive`` runs on a config with a ``[gateways]`` table), one per level shown, each
with its own store, broker connection and reply id. It follows the gateway's feed and backfill
over MQTT, proves every batch on chain and delivers each record once, in order, at its level; a
reading counts at a level only when that receiver delivered it.

:func:`verified_readings` is the older, narrower check the devnet test uses: it reads the
gateway's SQLite store directly (the stand-in for its backfill service) and trusts none of it --
each batch's transaction and receipt are proven in a quorum-agreed block
(:func:`lightpost_gateway.receiver.prove_anchor_tx`) and the records checked against them
(:func:`lightpost_gateway.relay.verify_relayed`); ``complete`` folds every batch up to the
finalized block into the accumulator proven with eth_getProof.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from lightpost.core.keccak import keccak256
from lightpost.core.levels import Level
from lightpost.errors import LightpostError
from lightpost.node.chain import Chain
from lightpost_gateway.anchor import batch_digest
from lightpost_gateway.follow import Delivery, Follower, ReceiverStore
from lightpost_gateway.mqtt import MQTTError
from lightpost_gateway.receiver import prove_anchor_tx, prove_gateway_accumulator
from lightpost_gateway.record import Domain
from lightpost_gateway.relay import verify_complete, verify_relayed
from lightpost_gateway.service import Anchored, Gateway, GatewayClient, GatewayStore

__all__ = ["LEVELS", "GatewayReading", "GatewayReceivers", "verified_readings"]

LEVELS: Final = ("included", "final", "complete")
"""The levels the demo shows, one receiver each."""


@dataclass(frozen=True, kw_only=True, slots=True)
class GatewayReading:
    """One verified record of a device: its seq, payload and the strongest level it reached."""

    seq: int
    payload: bytes
    block: int | None
    """The anchoring block, where the check knows it (the merging receiver does not say)."""
    level: str
    """``included``, ``final`` (its block is at or below the finalized height) or ``complete``
    (and every batch of the gateway up to the finalized block is accounted for on chain)."""
    device: bytes = b""
    """The device (the merging receiver says; :func:`verified_readings` was asked for one)."""


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


class GatewayReceivers:
    """One merging receiver per level in ``levels`` following ``gateways`` (payer addresses) over
    the broker at ``host``:``port``, each with its own store in ``directory``. :meth:`poll` hands
    over what each delivered since; a lost broker connection is reopened at the next poll (the
    receiver resumes from its store and asks for what it missed)."""

    def __init__(
        self,
        chain: Chain,
        *,
        domain: Domain,
        gateways: Sequence[bytes],
        host: str,
        port: int,
        directory: Path,
        devices: Collection[bytes] | None = None,
        finality_depth: int = 0,
        levels: Sequence[str] = LEVELS,
    ) -> None:
        self.host, self.port = host, port
        directory.mkdir(parents=True, exist_ok=True)
        tag = keccak256(str(directory.resolve()).encode())[:4].hex()
        self._followers: list[Follower] = []
        self._broken: set[int] = set()
        for level in levels:
            client = GatewayClient(f"lprd-{level}-{tag}")
            self._followers.append(
                Follower(
                    chain=chain,
                    domain=domain,
                    gateways=gateways,
                    client=client,
                    store=ReceiverStore(directory / f"receiver-{level}.sqlite"),
                    level=Level.parse(level),
                    reply_id=f"demo-{level}-{tag}",
                    devices=devices,
                    finality_depth=finality_depth,
                )
            )
        for i in range(len(self._followers)):
            self._connect(i)

    def _connect(self, i: int) -> None:
        follower = self._followers[i]
        try:
            follower.client.pending.clear()  # their packet ids belonged to a lost connection
            follower.client.open(self.host, self.port)
            follower.start()
        except (MQTTError, OSError):
            follower.client.shut()
            self._broken.add(i)
        else:
            self._broken.discard(i)

    def poll(self) -> tuple[list[GatewayReading], list[str]]:
        """What each receiver delivered since the last call, and the problems it reported."""
        readings: list[GatewayReading] = []
        problems: list[str] = []
        for i, follower in enumerate(self._followers):
            if i in self._broken:
                self._connect(i)
                if i in self._broken:
                    problems.append(f"receiver {follower.level}: broker unreachable")
                    continue
            try:
                for item in follower.poll(0):
                    if isinstance(item, Delivery):
                        readings.append(
                            GatewayReading(
                                seq=item.seq,
                                payload=item.record.payload,
                                block=None,
                                level=str(item.level),
                                device=item.device,
                            )
                        )
                    else:
                        problems.append(f"{item.kind}: {item.details}")
            except (MQTTError, OSError) as exc:
                follower.client.shut()
                self._broken.add(i)
                problems.append(f"receiver {follower.level}: broker lost ({type(exc).__name__})")
        return readings, problems

    def close(self) -> None:
        for follower in self._followers:
            follower.client.shut()
            follower.store.close()
