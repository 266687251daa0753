"""The anchoring contract's rules, mirrored in Python (issue 14). Pure.

The contract (``anchor.easm``, hand-assembled like the inbox; ``anchor.json`` is generated from
it and a test checks they agree) records one batch per call of the calling gateway:

- ``anchored`` mode: the calldata is the batch's Merkle root (:mod:`lightpost_gateway.batch`),
  exactly 32 bytes; the records travel over MQTT and are kept by gateways.
- ``posted`` mode: the calldata is ``rlp([record, ...])`` -- the wire records themselves (always
  longer than 32 bytes: a record carries a 65-byte signature).

Per gateway it keeps ``acc = keccak256(acc_old || keccak256(calldata))`` and a batch count in
two storage slots (:func:`gateway_slots`), so a receiver that recomputes the accumulator over the
batches it saw and proves the slot with ``eth_getProof`` knows it saw every batch, in order.
It is created by the CREATE2 deployment proxy with a fixed salt: one address on every chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from lightpost.core import rlp
from lightpost.core.hashing import keccak256
from lightpost.core.inbox import CREATE2_DEPLOYER, create2_address
from lightpost.errors import DecodingError, RLPDecodingError

from .record import MAX_RECORD_BYTES

__all__ = [
    "ANCHOR_ADDRESS",
    "ANCHOR_EXECUTION_GAS_FIXED",
    "ANCHOR_INITCODE_HASH",
    "ANCHOR_SALT",
    "EVENT_SIGNATURE",
    "EVENT_TOPIC",
    "MAX_POSTED_RECORDS",
    "ROOT_BYTES",
    "accumulate",
    "anchor_execution_gas",
    "anchored_calldata",
    "batch_digest",
    "decode_posted",
    "gateway_slots",
    "posted_calldata",
]

ROOT_BYTES = 32
"""An anchored batch's calldata: its Merkle root; anything longer is a posted batch."""

MAX_POSTED_RECORDS = 256
"""Most records in one posted batch: at MAX_RECORD_BYTES each it stays near 300 KB of calldata,
under common 128 KiB-per-transaction mempool limits only when records are small, so the gateway
also cuts batches by bytes (its own tunable); the decoder bounds what a peer can hand over."""

EVENT_SIGNATURE = "LightpostBatchV1(address,uint256,bytes32)"
"""The contract's one event: topics [topic, gateway word], data = count || digest."""

EVENT_TOPIC = keccak256(EVENT_SIGNATURE.encode())
"""topic 0 of every batch event (a PUSH32 in the runtime)."""

ANCHOR_SALT = keccak256(b"lightpost anchor v1")
"""The fixed CREATE2 salt of the anchoring contract."""

ANCHOR_INITCODE_HASH = bytes.fromhex(
    "82bbc17f0f4506f0bd997656602407a86a67f49819f2b06f8dcea57481b1c7eb"
)
"""keccak256 of the shipped initcode (anchor.json; a test recomputes it: a new contract is a new
protocol constant)."""

ANCHOR_ADDRESS = create2_address(CREATE2_DEPLOYER, ANCHOR_SALT, ANCHOR_INITCODE_HASH)
"""The anchoring contract's address on every EVM chain: the ``anchor`` of every record Domain."""

_MAX_POSTED_BYTES = MAX_POSTED_RECORDS * (MAX_RECORD_BYTES + 3) + 9
"""Longest posted calldata the decoder reads (every record maximal, with its RLP header)."""


ANCHOR_EXECUTION_GAS_FIXED = 50_000
"""Upper bound of the contract's execution gas apart from the calldata-sized terms: two cold
SSTOREs from zero (2 x 22,100, EIP-2929/2200) on a gateway's first batch, LOG2 with 64 bytes
(1,637), two cold SLOADs already counted in the SSTOREs, two keccaks of 64 bytes and ~200 of
straight-line opcodes; measured 46,084 on anvil for a gateway's first anchored batch, 11,884 for
later ones (tests/integration/test_anchor_anvil.py)."""

_WORD = 32
_COPY_AND_HASH_PER_WORD = 3 + 6
"""CALLDATACOPY (3/word) and SHA3 (6/word) over the calldata (Yellow Paper G_copy, G_sha3word)."""

_MEMORY_PER_WORD = 3
_MEMORY_QUADRATIC_DIVISOR = 512
"""Memory expansion: 3/word + words^2/512 (Yellow Paper C_mem)."""


def anchor_execution_gas(calldata_len: int) -> int:
    """An upper bound of the execution gas of one batch call with ``calldata_len`` bytes."""
    words = (calldata_len + 2 * _WORD + _WORD - 1) // _WORD
    return (
        ANCHOR_EXECUTION_GAS_FIXED
        + _COPY_AND_HASH_PER_WORD * words
        + _MEMORY_PER_WORD * words
        + words * words // _MEMORY_QUADRATIC_DIVISOR
    )


def batch_digest(calldata: bytes) -> bytes:
    """What the accumulator absorbs for one batch: keccak256 of its calldata."""
    return keccak256(calldata)


def accumulate(acc: bytes, digest: bytes) -> bytes:
    """One step of a gateway's accumulator (starts at 32 zero bytes)."""
    return keccak256(acc + digest)


def gateway_slots(gateway: bytes) -> tuple[int, int]:
    """The storage slots (accumulator, batch count) of a gateway's address."""
    key = int.from_bytes(keccak256(bytes(12) + gateway), "big")
    return key, (key + 1) % (1 << 256)


def anchored_calldata(root: bytes) -> bytes:
    if len(root) != ROOT_BYTES:
        raise ValueError("an anchored batch's calldata is its 32-byte root")
    return root


def posted_calldata(records: Sequence[bytes]) -> bytes:
    """rlp([record, ...]) of wire records (lightpost_gateway.record.encode_record)."""
    if not 0 < len(records) <= MAX_POSTED_RECORDS:
        raise ValueError(f"a posted batch has 1 .. {MAX_POSTED_RECORDS} records")
    return rlp.encode(list(records))


def decode_posted(calldata: bytes) -> list[bytes]:
    """The wire records of a posted batch (each still to be opened and checked). Strict:
    bounded, canonical RLP, a non-empty flat list of at most MAX_POSTED_RECORDS strings."""
    if len(calldata) <= ROOT_BYTES or len(calldata) > _MAX_POSTED_BYTES:
        raise DecodingError("batch", "not a posted batch's length")
    try:
        item = rlp.decode(calldata)
    except RLPDecodingError as exc:
        raise DecodingError("batch", exc.reason, exc.offset) from None
    if (
        not isinstance(item, list)
        or not 0 < len(item) <= MAX_POSTED_RECORDS
        or not all(isinstance(x, bytes) for x in item)
    ):
        raise DecodingError("batch", f"expected a list of 1 .. {MAX_POSTED_RECORDS} records")
    return [bytes(x) for x in cast("list[bytes]", item)]
