"""Raw forms of transactions whose type lightpost cannot encode (an L2's own types on a chain
configured without them): each asked of the endpoints in turn with
eth_getRawTransactionByBlockHashAndIndex and kept only if it hashes to the hash the block lists;
:func:`lightpost.core.verify.prove_block_transactions` then checks it again and rebuilds the
transactionsRoot. An endpoint that serves none leaves the type refused, saying so."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

from lightpost.adapters.rpc import Endpoint
from lightpost.core.hashing import keccak256
from lightpost.core.l2 import BlockFormat, unknown_indexes
from lightpost.core.rpcfields import parse_data
from lightpost.errors import LightpostError, MethodNotSupported

__all__ = ["MAX_RAW_FORMS_PER_BLOCK", "MAX_RAW_FORMS_WAIT_S", "RAW_TX_METHOD", "raw_forms"]

MAX_RAW_FORMS_PER_BLOCK = 16
"""Raw forms fetched for one block answer: a lying answer listing many unknown types cannot make
lightpost ask more (the block is refused instead)."""

RAW_TX_METHOD = "eth_getRawTransactionByBlockHashAndIndex"
"""execution-apis: the canonical bytes of the transaction at an index of a block."""

MAX_RAW_FORMS_WAIT_S = 30.0
"""Longest time spent fetching one block's raw forms, all endpoints together (three timeouts)."""

_HASH_BYTES = 32


def raw_forms(
    endpoints: Iterable[Endpoint], block_json: object, fmt: BlockFormat
) -> dict[int, bytes]:
    """index -> raw bytes for each transaction of ``block_json`` no encoding here covers (at most
    :data:`MAX_RAW_FORMS_PER_BLOCK`; none when every type is covered, the usual case)."""
    if not isinstance(block_json, Mapping):
        return {}
    txs = block_json.get("transactions")
    if not isinstance(txs, Sequence) or isinstance(txs, str):
        return {}
    wanted = unknown_indexes(txs, fmt)
    if not wanted or len(wanted) > MAX_RAW_FORMS_PER_BLOCK:
        return {}
    endpoints = list(endpoints)
    out: dict[int, bytes] = {}
    try:
        block_hash = block_json["hash"]
        listed = {i: parse_data(txs[i]["hash"], "transaction hash", _HASH_BYTES) for i in wanted}
    except (LightpostError, KeyError, TypeError):
        return {}  # malformed: the proof refuses it
    deadline = time.monotonic() + MAX_RAW_FORMS_WAIT_S
    for i in wanted:
        for ep in list(endpoints):
            if time.monotonic() > deadline:
                return out  # what is still missing is refused, saying so
            try:
                raw = parse_data(ep.call(RAW_TX_METHOD, [block_hash, hex(i)]), "raw transaction")
            except MethodNotSupported:
                endpoints.remove(ep)  # not asked again for this block
                continue
            except LightpostError:
                continue
            if keccak256(raw) == listed[i]:
                out[i] = raw
                break
    return out
