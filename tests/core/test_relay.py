"""A malicious gateway, without a socket: what it relays is checked against an anchoring
transaction and its receipt (proven by the caller); every alteration, reordering, insertion,
drop, replay, forged leaf or wrong transaction is caught; the honest relay passes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from lightpost.core import rlp
from lightpost.core.keys import PrivateKey
from lightpost.core.receipts import Log, Receipt
from lightpost.core.tx import DynamicFeeTx, SignedTransaction, sign_transaction
from lightpost.errors import ProofError
from lightpost_gateway.anchor import EVENT_TOPIC, accumulate, batch_digest, posted_calldata
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
from lightpost_gateway.relay import posted_records, verify_complete, verify_relayed

DEVICE = PrivateKey(b"\x11" * 32)
NEIGHBOUR = PrivateKey(b"\x12" * 32)
GATEWAY = PrivateKey(b"\x33" * 32)
DOMAIN = Domain(chain_id=31337, anchor=b"\xaa" * 20)


def _chain(key: PrivateKey, n: int) -> tuple[list[bytes], list[bytes]]:
    wires, hashes, prev = [], [], ZERO_HASH
    for seq in range(n):
        rec = Record(kind=Kind.DATA, stream=b"t", seq=seq, prev=prev, payload=b"reading %d" % seq)
        wires.append(encode_record(sign_record(rec, DOMAIN, key)))
        prev = record_hash(rec, DOMAIN)
        hashes.append(prev)
    return wires, hashes


WIRES, HASHES = _chain(DEVICE, 5)
_, N_HASHES = _chain(NEIGHBOUR, 2)
LEAVES = sorted(
    [
        Leaf(device=DEVICE.address, first_seq=0, last_seq=4, head=HASHES[-1]),
        Leaf(device=NEIGHBOUR.address, first_seq=0, last_seq=1, head=N_HASHES[-1]),
    ],
    key=lambda leaf: leaf.device,
)
INDEX = next(i for i, leaf in enumerate(LEAVES) if leaf.device == DEVICE.address)
ROOT = batch_root(LEAVES)


def _tx(data: bytes = ROOT, to: bytes = DOMAIN.anchor) -> SignedTransaction:
    tx = DynamicFeeTx(
        chain_id=DOMAIN.chain_id,
        nonce=0,
        max_priority_fee_per_gas=1,
        max_fee_per_gas=2,
        gas=60_000,
        to=to,
        data=data,
    )
    return sign_transaction(tx, GATEWAY)


def _receipt(digest: bytes = batch_digest(ROOT), status: int = 1, sender: bytes = GATEWAY.address):
    log = Log(
        address=DOMAIN.anchor,
        topics=(EVENT_TOPIC, bytes(12) + sender),
        data=(1).to_bytes(32, "big") + digest,
    )
    return Receipt(
        tx_type=2, cumulative_gas_used=1, logs_bloom=bytes(256), logs=(log,), status=status
    )


def _honest() -> dict[str, Any]:
    return {
        "records": list(WIRES),
        "device": DEVICE.address,
        "leaf": LEAVES[INDEX],
        "proof": prove_inclusion(LEAVES, INDEX),
        "tx": _tx(),
        "receipt": _receipt(),
        "domain": DOMAIN,
    }


def test_the_honest_relay_passes() -> None:
    got = verify_relayed(**_honest())
    assert [h for _, h in got] == HASHES


def _altered_payload(wire: bytes) -> bytes:
    items = rlp.decode(wire)
    assert isinstance(items, list)
    items[7] = b"reading 99"  # the payload; the device's signature is kept
    return rlp.encode(items)


def _forged_by_gateway() -> bytes:
    # a record the gateway made up at seq 2, linked correctly, signed by the gateway's key
    rec = Record(kind=Kind.DATA, stream=b"t", seq=2, prev=HASHES[1], payload=b"forged")
    return encode_record(sign_record(rec, DOMAIN, GATEWAY))


ATTACKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "alters a payload": lambda c: c["records"].__setitem__(2, _altered_payload(WIRES[2])),
    "reorders": lambda c: c.__setitem__("records", [*WIRES[:2], WIRES[3], WIRES[2], WIRES[4]]),
    "drops one": lambda c: c.__setitem__("records", [*WIRES[:2], *WIRES[3:]]),
    "replays one": lambda c: c.__setitem__("records", [*WIRES[:3], WIRES[2], *WIRES[3:]]),
    "inserts a forged record": lambda c: c["records"].__setitem__(2, _forged_by_gateway()),
    "withholds the head": lambda c: c.__setitem__("records", WIRES[:4]),
    "claims another head": lambda c: c.__setitem__(
        "leaf", dataclasses.replace(LEAVES[INDEX], head=HASHES[3], last_seq=3)
    ),
    "relays another device's leaf": lambda c: c.__setitem__("device", NEIGHBOUR.address),
    "forges the proof": lambda c: c.__setitem__("proof", prove_inclusion(LEAVES, 1 - INDEX)),
    "points at a transaction elsewhere": lambda c: c.__setitem__("tx", _tx(to=b"\xbb" * 20)),
    "points at another root": lambda c: c.__setitem__("tx", _tx(data=b"\x01" * 32)),
    "points at a posted batch": lambda c: c.__setitem__("tx", _tx(data=b"\x01" * 40)),
    "a reverted transaction": lambda c: c.__setitem__("receipt", _receipt(status=0)),
    "an event of another batch": lambda c: c.__setitem__(
        "receipt", _receipt(digest=batch_digest(b"\x01" * 32))
    ),
    "an event of another gateway": lambda c: c.__setitem__(
        "receipt", _receipt(sender=NEIGHBOUR.address)
    ),
    "relays nothing": lambda c: c.__setitem__("records", []),
    "a record for another chain": lambda c: c["records"].__setitem__(
        0,
        encode_record(
            sign_record(
                Record(kind=Kind.DATA, stream=b"t", seq=0, prev=ZERO_HASH, payload=b"reading 0"),
                Domain(chain_id=1, anchor=DOMAIN.anchor),
                DEVICE,
            )
        ),
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_malicious_gateway_is_caught(attack: str) -> None:
    claim = _honest()
    ATTACKS[attack](claim)
    with pytest.raises(ProofError):
        verify_relayed(**claim)


DIGESTS = [batch_digest(bytes([i]) * 32) for i in range(3)]
ACC = int.from_bytes(
    accumulate(accumulate(accumulate(bytes(32), DIGESTS[0]), DIGESTS[1]), DIGESTS[2]), "big"
)


@pytest.mark.parametrize(
    ("seen", "ok"),
    [
        (DIGESTS, True),
        (DIGESTS[:2], False),  # a batch withheld
        ([DIGESTS[1], DIGESTS[0], DIGESTS[2]], False),  # reordered
        ([DIGESTS[0], DIGESTS[1], batch_digest(b"\x09" * 32)], False),  # another batch
        ([*DIGESTS, DIGESTS[2]], False),  # one replayed
    ],
)
def test_complete_for_a_gateway(seen: list[bytes], ok: bool) -> None:
    if ok:
        verify_complete(seen, proven_acc=ACC, proven_count=3)
    else:
        with pytest.raises(ProofError):
            verify_complete(seen, proven_acc=ACC, proven_count=3)


POSTED = posted_calldata(WIRES)


def test_posted_records_are_read_from_the_proven_transaction() -> None:
    got = posted_records(_tx(data=POSTED), _receipt(digest=batch_digest(POSTED)), domain=DOMAIN)
    assert [(d, h) for _, d, h in got] == [(DEVICE.address, h) for h in HASHES]


@pytest.mark.parametrize(
    ("data", "digest_of"),
    [
        (POSTED, ROOT),  # the event is of another batch
        (ROOT, ROOT),  # an anchored batch, not a posted one
        (posted_calldata([*WIRES[:2], _altered_payload(WIRES[2])]), None),  # decodes, opens
    ],
)
def test_posted_batches_that_do_not_prove(data: bytes, digest_of: bytes | None) -> None:
    receipt = _receipt(digest=batch_digest(data if digest_of is None else digest_of))
    if digest_of is None:
        # the altered record still opens, but to another address than the device's
        got = posted_records(_tx(data=data), receipt, domain=DOMAIN)
        assert got[2][1] != DEVICE.address
        return
    with pytest.raises(ProofError):
        posted_records(_tx(data=data), receipt, domain=DOMAIN)
