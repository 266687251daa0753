"""A block's receipts, proven, from whatever an endpoint serves: ``eth_getBlockReceipts``, else one
``eth_getTransactionReceipt`` per transaction of the proven block (bounded parallelism, each
checked to be that block's transaction at that index), else ``debug_getRawReceipts`` (raw bytes).
Every path must rebuild the proven header's receiptsRoot: an answer is a claim, never a fact.

What each endpoint serves is learned once per :class:`MethodSupport` (one per Chain, in memory):
"method not found" marks a method unsupported, any other failure does not. The order of trying is
one pure rule, :func:`next_receipts_method`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from lightpost.adapters.rpc import Endpoint
from lightpost.core.receipts import Receipt, decode_receipt, receipt_from_rpc, verify_receipts_root
from lightpost.core.rpcfields import data_field, get_list, get_object, parse_data, quantity_field
from lightpost.core.verify import ProvenBlock
from lightpost.errors import (
    AnswerTooLarge,
    EndpointUnavailable,
    LightpostError,
    MethodNotSupported,
    ProofError,
    TransportError,
)

__all__ = [
    "BLOCK_RECEIPTS",
    "MAX_PARALLEL_RECEIPT_CALLS",
    "RAW_RECEIPTS",
    "RECEIPT_METHODS",
    "TX_RECEIPT",
    "MethodSupport",
    "next_receipts_method",
    "prove_receipts_in_turn",
]

BLOCK_RECEIPTS = "eth_getBlockReceipts"
TX_RECEIPT = "eth_getTransactionReceipt"
RAW_RECEIPTS = "debug_getRawReceipts"

RECEIPT_METHODS = (BLOCK_RECEIPTS, TX_RECEIPT, RAW_RECEIPTS)
"""Ways to get a block's receipts, best first: one call; one call per transaction (Hardhat,
Ganache serve no eth_getBlockReceipts); raw bytes (geth/reth debug namespace)."""

MAX_PARALLEL_RECEIPT_CALLS = 4
"""Per-transaction receipt calls outstanding at one endpoint: a 300-tx mainnet block in ~75 round
trips, without flooding a rate-limited provider."""

MAX_PER_TX_RECEIPTS_WAIT_S = 30.0
"""Longest wait for one endpoint's per-transaction receipts of a block (three call timeouts): a
300-tx block at ~0.1 s per call needs ~8 s."""

Proven = tuple[ProvenBlock, tuple[Mapping[str, Any], ...], str]
"""The block with its proven receipts, each receipt's JSON (synthesized for raw ones), the label."""


def next_receipts_method(known: Mapping[str, bool], tried: Collection[str]) -> str | None:
    """The next method to ask one endpoint for a block's receipts: the first of RECEIPT_METHODS
    neither tried this time nor known unsupported (``known``: method -> served); None: none left."""
    return next((m for m in RECEIPT_METHODS if m not in tried and known.get(m) is not False), None)


class MethodSupport:
    """What each endpoint (by label) is known to serve: label -> method -> True (it answered) /
    False (it said "method not found"). Learned from answers, kept for the Chain's life; doctor and
    status read :meth:`known` / :meth:`describe`. Thread-safe."""

    def __init__(self) -> None:
        self._known: dict[str, dict[str, bool]] = {}
        self._lock = threading.Lock()

    def learn(self, label: str, method: str, served: bool) -> None:
        with self._lock:
            self._known.setdefault(label, {})[method] = served

    def known(self, label: str) -> dict[str, bool]:
        """method -> served, for one endpoint (a copy; unknown methods absent)."""
        with self._lock:
            return dict(self._known.get(label, {}))

    def describe(self, label: str) -> str:
        """One line, e.g. ``eth_getBlockReceipts not supported, eth_getTransactionReceipt ok``."""
        known = self.known(label)
        return ", ".join(
            f"{m} {'ok' if known[m] else 'not supported'}" for m in RECEIPT_METHODS if m in known
        )


def _check_tx_receipt(
    obj: Mapping[str, Any], block: ProvenBlock, index: int, tx_hash: bytes
) -> Receipt:
    """One eth_getTransactionReceipt answer, bound to the proven block, index and tx hash."""
    what = f"receipt {index}"
    if data_field(obj, "transactionHash", what, 32) != tx_hash:
        raise ProofError("receipt", f"{what} is for another transaction")
    if data_field(obj, "blockHash", what, 32) != block.hash:
        raise ProofError("receipt", f"{what} is for another block")
    if quantity_field(obj, "blockNumber", what) != block.number:
        raise ProofError("receipt", f"{what} is for another height")
    if quantity_field(obj, "transactionIndex", what) != index:
        raise ProofError("receipt", f"{what} is at another index")
    return receipt_from_rpc(obj)


def _raw_json(block: ProvenBlock, index: int, receipts: Sequence[Receipt]) -> dict[str, Any]:
    """The JSON fields a caller reads, from a raw receipt proven by the receiptsRoot."""
    r = receipts[index]
    before = receipts[index - 1].cumulative_gas_used if index else 0
    return {
        "transactionHash": "0x" + block.transactions[index].hash.hex(),
        "transactionIndex": hex(index),
        "blockHash": "0x" + block.hash.hex(),
        "blockNumber": hex(block.number),
        "status": None if r.status is None else hex(r.status),
        "cumulativeGasUsed": hex(r.cumulative_gas_used),
        "gasUsed": hex(r.cumulative_gas_used - before),
    }


def _in_parallel(ep: Endpoint, method: str, hashes: Sequence[bytes]) -> list[Any]:
    """``method`` for each hash, MAX_PARALLEL_RECEIPT_CALLS at a time, within
    MAX_PER_TX_RECEIPTS_WAIT_S in all (a slow endpoint cannot hold a round for n timeouts)."""
    pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL_RECEIPT_CALLS)
    deadline = time.monotonic() + MAX_PER_TX_RECEIPTS_WAIT_S
    try:
        futures = [pool.submit(ep.call, method, ["0x" + h.hex()]) for h in hashes]
        return [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures]
    except TimeoutError:
        raise EndpointUnavailable(
            ep.label, f"per-transaction receipts took over {MAX_PER_TX_RECEIPTS_WAIT_S:g} s"
        ) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # one failed or late: the rest not asked


def _ask(
    ep: Endpoint, method: str, block: ProvenBlock
) -> tuple[tuple[Receipt, ...], tuple[Mapping[str, Any], ...]] | None:
    """``block``'s receipts from ``ep`` by ``method``, each checked (None: no answer, e.g. the
    endpoint is behind); raises what the endpoint or the check raised."""
    hashes = [tx.hash for tx in block.transactions]
    if method == TX_RECEIPT:
        # the first alone: an endpoint without the method (or the block) is asked once
        answers = [ep.call(method, ["0x" + h.hex()]) for h in hashes[:1]]
        if len(hashes) > 1 and answers[0] is not None:
            answers += _in_parallel(ep, method, hashes[1:])
        if any(a is None for a in answers):
            return None
        objs = tuple(get_object(a, f"receipt {i}") for i, a in enumerate(answers))
        receipts = tuple(
            _check_tx_receipt(o, block, i, h)
            for i, (o, h) in enumerate(zip(objs, hashes, strict=True))
        )
    else:
        answer = ep.call(method, [hex(block.number)])
        if answer is None:
            return None
        items = get_list(answer, f"{method} answer")
        if method == RAW_RECEIPTS:
            receipts = tuple(
                decode_receipt(parse_data(x, f"raw receipt {i}")) for i, x in enumerate(items)
            )
            objs = ()
        else:
            objs = tuple(get_object(x, f"receipt {i}") for i, x in enumerate(items))
            receipts = tuple(receipt_from_rpc(o) for o in objs)
    if len(receipts) != len(hashes):
        raise ProofError("receiptsRoot", "not one receipt per transaction")
    verify_receipts_root(block.header.receipts_root, receipts)
    if method == RAW_RECEIPTS:
        objs = tuple(_raw_json(block, i, receipts) for i in range(len(receipts)))
    return receipts, objs


def prove_receipts_in_turn(
    endpoints: Sequence[Endpoint],
    block: ProvenBlock,
    support: MethodSupport,
    blame: Callable[[str, str], None],
    reasons: dict[str, str] | None = None,
) -> Proven | None:
    """``block`` (header and transactions proven) with its receipts from the first endpoint whose
    answer rebuilds the receiptsRoot, trying each endpoint's methods in :func:`next_receipts_method`
    order; None if none did. An endpoint that is down or behind is a non-answer; one whose answer
    fails the check is ``blame``d (and not asked again this time). ``reasons`` gets each asked
    endpoint's outcome by label (e.g. ``eth_getBlockReceipts not supported``)."""
    for ep in endpoints:
        tried: list[str] = []
        notes: list[str] = []
        while (method := next_receipts_method(support.known(ep.label), tried)) is not None:
            tried.append(method)
            try:
                got = _ask(ep, method, block)
            except MethodNotSupported:
                support.learn(ep.label, method, False)
                notes.append(f"{method} not supported")
                continue
            except AnswerTooLarge as exc:
                notes.append(f"{method}: {exc.reason}")
                continue  # a big block: per transaction, the answers are small
            except EndpointUnavailable as exc:
                notes.append(f"{method}: {exc.reason}")
                break  # down: its other methods would wait as long
            except TransportError as exc:
                notes.append(f"{method}: {exc.reason}")
                continue  # the node refused this call: another method may work
            except (LightpostError, KeyError, TypeError, ValueError, IndexError) as exc:
                support.learn(ep.label, method, True)
                why = str(exc) if isinstance(exc, LightpostError) else type(exc).__name__
                notes.append(f"{method} failed proof")
                blame(ep.label, why)
                break
            if got is None:
                notes.append(f"{method}: no answer for block {block.number}")
                break  # behind: the block is not there by any method
            support.learn(ep.label, method, True)
            if reasons is not None:
                reasons.pop(ep.label, None)
            receipts, objs = got
            return replace(block, receipts=receipts), objs, ep.label
        if reasons is not None:
            reasons[ep.label] = ", ".join(notes) or "no receipts method left to try"
    return None
