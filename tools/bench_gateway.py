"""Measure the gateway's CPU side (issue 14): records admitted per second on one core (strict
decode, signer recovery under the domain, chain link against SQLite, durable insert) and batched
(one leaf per device, Merkle root), and relayed records verified per second by a receiver
(lightpost_gateway.relay, anchor tx and receipt given). No broker, no chain: the gateway's own
work. The keccak is the compiled one when installed (`fast` extra), as on a gateway.

Gas per reading in ``posted`` mode (:func:`posted_gas`): one minute of 1,000 and 10,000 devices,
each sending one 100-byte JSON reading that varies per device and per minute
(:func:`reading_json`), cut into batches as the gateway cuts them and priced by the EIP-7623
rule (lightpost.core.gas.gas_used; tests/integration/test_anchor_anvil.py checks the model
against anvil's gasUsed).

Prints one JSON object. Usage: python tools/bench_gateway.py [--devices N] [--per-device K]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import tempfile
import time
from pathlib import Path

from lightpost.core import hashing
from lightpost.core.gas import gas_used
from lightpost.core.keys import PrivateKey
from lightpost.core.receipts import Log, Receipt
from lightpost.core.tx import DynamicFeeTx, sign_transaction
from lightpost_gateway.admit import Verdict
from lightpost_gateway.anchor import (
    EVENT_TOPIC,
    anchor_execution_gas,
    batch_digest,
    decode_posted,
    posted_calldata,
)
from lightpost_gateway.batch import Leaf, batch_root, prove_inclusion
from lightpost_gateway.record import (
    ZERO_HASH,
    Domain,
    Kind,
    Record,
    encode_record,
    record_hash,
    sign_record,
)
from lightpost_gateway.relay import verify_relayed
from lightpost_gateway.service import MAX_BATCH_RECORDS, RECORDS_PER_POLL, GatewayStore

DOMAIN = Domain(chain_id=31337, anchor=b"\xaa" * 20)
PAYLOAD = 100
"""Bytes per reading (the issue's 100-byte reading)."""


def _records(devices: int, per_device: int) -> tuple[list[tuple[str, bytes]], list[Leaf]]:
    out, leaves = [], []
    for d in range(devices):
        key = PrivateKey(hashlib.sha256(b"bench device %d" % d).digest())
        prev = ZERO_HASH
        for seq in range(per_device):
            rec = Record(
                kind=Kind.DATA,
                stream=b"temp",
                seq=seq,
                prev=prev,
                payload=hashlib.sha256(b"%d %d" % (d, seq)).digest() * 3 + b"\x00" * 4,
            )
            out.append(
                (f"lp/1/d/{key.address.hex()}", encode_record(sign_record(rec, DOMAIN, key)))
            )
            prev = record_hash(rec, DOMAIN)
        leaves.append(Leaf(device=key.address, first_seq=0, last_seq=per_device - 1, head=prev))
    return out, sorted(leaves, key=lambda leaf: leaf.device)


READING_BYTES = 100
"""The issue's reading: 100 bytes of JSON."""

MINUTE_MS = 60_000
EPOCH_MS = 1_790_000_000_000
"""A fixed start time (November 2026) so that runs compare."""

POSTED_DEVICES = (1_000, 10_000)
"""The issue's fleets, each device reporting every 60 s."""


def reading_json(device: int, minute: int, rng: random.Random) -> bytes:
    """A smart meter's reading, exactly READING_BYTES of JSON: its id, the minute's timestamp, a
    cumulative energy counter that grows per device, voltage, current, temperature and power
    factor drawn at random (measurement noise), padded with random digits of a serial field when
    shorter -- random digits are the pessimistic padding: they do not compress."""
    fields = {
        "id": f"meter-{device:05d}",
        "ts": (EPOCH_MS + minute * MINUTE_MS) // 1000,
        "kwh": round(1000 + device * 3.7 + minute * 0.0213 * (1 + device % 7), 3),
        "v": round(rng.gauss(230, 2), 1),
        "a": round(abs(rng.gauss(4, 1.5)), 2),
        "t": round(rng.gauss(21, 3), 1),
        "pf": round(rng.uniform(0.8, 1), 2),
    }
    text = json.dumps(fields, separators=(",", ":"))
    room = READING_BYTES - len(text) - len(',"n":""')
    text = text[:-1] + ',"n":"' + "".join(rng.choice("0123456789") for _ in range(room)) + '"}'
    data = text.encode()
    assert len(data) == READING_BYTES, len(data)
    return data


def posted_gas(devices: int, minute: int = 17, seed: int = 1) -> dict[str, float | int]:
    """One minute of ``devices`` readings as posted batches of MAX_BATCH_RECORDS, in arrival
    order; each device is somewhere in its life (a random seq, a random previous hash)."""
    rng = random.Random(seed)
    domain = Domain(chain_id=1, anchor=b"\xaa" * 20)
    wires = []
    for d in range(devices):
        key = PrivateKey(hashlib.sha256(b"bench device %d" % d).digest())
        record = Record(
            kind=Kind.DATA,
            stream=b"energy",
            seq=rng.randrange(1, 1_000_000),
            prev=rng.randbytes(32),
            time_ms=EPOCH_MS + minute * MINUTE_MS + rng.randrange(MINUTE_MS),
            content_type=2,  # JSON
            payload=reading_json(d, minute, rng),
        )
        wires.append((record.time_ms, encode_record(sign_record(record, domain, key))))
    wires.sort()
    gas = size = 0
    batches = [wires[i : i + MAX_BATCH_RECORDS] for i in range(0, devices, MAX_BATCH_RECORDS)]
    for batch in batches:
        records = [w for _, w in batch]
        data = posted_calldata(records)
        assert decode_posted(data) == records
        gas += gas_used(data, anchor_execution_gas(len(data)))
        size += len(data)
    return {
        "devices": devices,
        "batches": len(batches),
        "calldata_bytes_per_reading": round(size / devices, 1),
        "gas_per_reading": round(gas / devices),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--per-device", type=int, default=3)
    args = parser.parse_args()
    messages, leaves = _records(args.devices, args.per_device)
    with tempfile.TemporaryDirectory() as tmp:
        store = GatewayStore(Path(tmp) / "gw.sqlite")
        t0 = time.perf_counter()
        for i in range(0, len(messages), RECORDS_PER_POLL):  # as Gateway.receive: group commit
            chunk = messages[i : i + RECORDS_PER_POLL]
            got = store.admit_all(chunk, domain=DOMAIN, authorized=None, now=0.0)
            assert all(a.verdict == Verdict.ACCEPT for a in got)
        admitted = time.perf_counter() - t0
        t0 = time.perf_counter()
        root = batch_root(leaves)
        batched = time.perf_counter() - t0
        store.close()

    gateway = PrivateKey(b"\x33" * 32)
    tx = sign_transaction(
        DynamicFeeTx(
            chain_id=DOMAIN.chain_id,
            nonce=0,
            max_priority_fee_per_gas=1,
            max_fee_per_gas=2,
            gas=60_000,
            to=DOMAIN.anchor,
            data=root,
        ),
        gateway,
    )
    log = Log(
        address=DOMAIN.anchor,
        topics=(EVENT_TOPIC, bytes(12) + gateway.address),
        data=(1).to_bytes(32, "big") + batch_digest(root),
    )
    receipt = Receipt(
        tx_type=2, cumulative_gas_used=1, logs_bloom=bytes(256), logs=(log,), status=1
    )
    by_device: dict[str, list[bytes]] = {}
    for topic, wire in messages:
        by_device.setdefault(topic[-40:], []).append(wire)
    proofs = [prove_inclusion(leaves, i) for i in range(len(leaves))]  # the gateway's work
    t0 = time.perf_counter()
    for leaf, proof in zip(leaves, proofs, strict=True):
        verify_relayed(
            by_device[leaf.device.hex()],
            device=leaf.device,
            leaf=leaf,
            proof=proof,
            tx=tx,
            receipt=receipt,
            domain=DOMAIN,
        )
    verified = time.perf_counter() - t0
    n = len(messages)
    print(
        json.dumps(
            {
                "records": n,
                "devices": args.devices,
                "keccak": hashing.KECCAK_BACKEND,
                "admitted_and_stored_per_s": round(n / admitted),
                "merkle_root_ms": round(batched * 1000, 1),
                "relayed_verified_per_s_incl_proofs": round(n / verified),
                "posted_gas": [posted_gas(d) for d in POSTED_DEVICES],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
