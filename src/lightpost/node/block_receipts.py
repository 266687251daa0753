"""A block's receipts, proven, from whatever an endpoint serves: ``eth_getBlockReceipts``, else one
``eth_getTransactionReceipt`` per proven transaction (each bound to its block, index and hash),
else ``debug_getRawReceipts``. Every path must rebuild the proven header's receiptsRoot. What each
endpoint serves is learned once (:class:`MethodSupport`, one per Chain): only "method not found"
marks a method unsupported. The order is one pure rule, :func:`next_receipts_method`."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from lightpost.adapters.rpc import Endpoint
from lightpost.core.l2 import ETHEREUM, BlockFormat
from lightpost.core.receipts import (
    RECEIPT_TYPES,
    decode_receipt,
    receipt_from_rpc,
    verify_receipts_root,
)
from lightpost.core.rpcfields import data_field, get_list, get_object, parse_data, quantity_field
from lightpost.core.tx import ForeignTransaction
from lightpost.core.verify import ProvenBlock
from lightpost.errors import (
    AnswerTooLarge,
    EndpointUnavailable,
    LightpostError,
    MethodNotSupported,
    ProofError,
    TransportError,
)

__all__ = ["RECEIPT_METHODS", "MethodSupport", "next_receipts_method", "prove_receipts_in_turn"]

BLOCK_RECEIPTS = "eth_getBlockReceipts"
TX_RECEIPT = "eth_getTransactionReceipt"
RAW_RECEIPTS = "debug_getRawReceipts"

RECEIPT_METHODS = (BLOCK_RECEIPTS, TX_RECEIPT, RAW_RECEIPTS)
"""Ways to get a block's receipts, best first: one call; one per transaction (Hardhat and Ganache
serve no eth_getBlockReceipts); raw bytes (geth/reth debug namespace)."""

MAX_PARALLEL_RECEIPT_CALLS = 4
"""Per-transaction receipt calls outstanding at one endpoint: a 300-tx block in ~75 round trips,
without flooding a rate-limited provider."""

MAX_PER_TX_RECEIPTS_WAIT_S = 30.0
"""Longest wait for one endpoint's per-transaction receipts of a block (three call timeouts)."""


def next_receipts_method(known: Mapping[str, bool], tried: Collection[str]) -> str | None:
    """The first of RECEIPT_METHODS neither tried this time nor known unsupported (``known``:
    method -> served); None: none left."""
    return next((m for m in RECEIPT_METHODS if m not in tried and known.get(m) is not False), None)


class MethodSupport:
    """label -> method -> True (answered) / False ("method not found"), learned from answers for
    the Chain's life; doctor and status read :meth:`known` and :meth:`describe`."""

    def __init__(self) -> None:
        self._known: dict[str, dict[str, bool]] = {}

    def learn(self, label: str, method: str, served: bool) -> None:
        self._known.setdefault(label, {})[method] = served

    def known(self, label: str) -> dict[str, bool]:
        """method -> served for one endpoint (a copy; methods never asked are absent)."""
        return dict(self._known.get(label, {}))

    def describe(self, label: str) -> str:
        """E.g. ``eth_getBlockReceipts not supported, eth_getTransactionReceipt ok``."""
        known = self.known(label)
        return ", ".join(f"{m} {'ok' if known[m] else 'not supported'}" for m in known)


def _per_tx(ep: Endpoint, hashes: Sequence[bytes]) -> list[Any]:
    # One receipt call per hash: the first alone (an endpoint without the method or the block is
    # asked once), the rest MAX_PARALLEL_RECEIPT_CALLS at a time within MAX_PER_TX_RECEIPTS_WAIT_S.
    answers = [ep.call(TX_RECEIPT, ["0x" + h.hex()]) for h in hashes[:1]]
    if len(hashes) < 2 or answers[0] is None:
        return answers
    pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL_RECEIPT_CALLS)
    deadline = time.monotonic() + MAX_PER_TX_RECEIPTS_WAIT_S
    try:
        futures = [pool.submit(ep.call, TX_RECEIPT, ["0x" + h.hex()]) for h in hashes[1:]]
        return answers + [f.result(max(0.0, deadline - time.monotonic())) for f in futures]
    except TimeoutError:
        why = f"per-transaction receipts took over {MAX_PER_TX_RECEIPTS_WAIT_S:g} s"
        raise EndpointUnavailable(ep.label, why) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # one failed or late: the rest not asked


def _same_block(ep: Endpoint, obj: Mapping[str, Any], block: ProvenBlock, what: str) -> None:
    # A receipt naming another block hash is an answer about another block (an endpoint on another
    # fork, or behind a reorg): a non-answer, not a failed proof. (Without the field, the
    # receiptsRoot alone binds the answer.)
    if "blockHash" in obj and data_field(obj, "blockHash", what, 32) != block.hash:
        raise EndpointUnavailable(ep.label, f"{what} is of another block at {block.number}")


def _ask(
    ep: Endpoint, method: str, block: ProvenBlock, fmt: BlockFormat
) -> tuple[Any, list[Any]] | None:
    # (receipts, their JSON) of ``block`` from ``ep`` by ``method``, checked (None: no answer);
    # raises what the endpoint or the check raised.
    hashes = [tx.hash for tx in block.transactions]
    if method == TX_RECEIPT:
        items: Sequence[Any] = _per_tx(ep, hashes)
        if None in items:
            return None
        for i, (item, h) in enumerate(zip(items, hashes, strict=True)):
            what = f"receipt {i}"
            obj = get_object(item, what)
            _same_block(ep, obj, block, what)
            if (
                data_field(obj, "transactionHash", what, 32) != h
                or quantity_field(obj, "blockNumber", what) != block.number
                or quantity_field(obj, "transactionIndex", what) != i
            ):
                raise ProofError("receipt", f"{what} is not transaction {i} of the proven block")
    else:
        # by hash: an endpoint on another fork has no answer (by number: an honest mismatch)
        answer = ep.call(method, ["0x" + block.hash.hex()])
        if answer is None:
            return None
        items = get_list(answer, method)
        if method == BLOCK_RECEIPTS:
            for i, item in enumerate(items):
                _same_block(ep, get_object(item, f"receipt {i}"), block, f"receipt {i}")
    # the chain's L2 types, and any type the block's transactions were proven with (raw forms)
    types = RECEIPT_TYPES | fmt.tx_types
    types |= {t.type for t in block.transactions if isinstance(t, ForeignTransaction)}
    if method == RAW_RECEIPTS:
        receipts = tuple(decode_receipt(parse_data(x, "raw receipt"), types=types) for x in items)
    else:
        receipts = tuple(receipt_from_rpc(x, types=types) for x in items)
    if len(receipts) != len(hashes):
        raise ProofError("receiptsRoot", "not one receipt per transaction")
    verify_receipts_root(block.header.receipts_root, receipts)
    if method == RAW_RECEIPTS:  # the fields callers read, from the proven receipts
        used = [0, *(r.cumulative_gas_used for r in receipts)]
        items = [
            {
                "transactionHash": "0x" + h.hex(),
                # pre-Byzantium: a root, no status
                **(
                    {"root": "0x" + r.post_state.hex()}
                    if r.post_state
                    else {"status": hex(r.status or 0)}
                ),
                "gasUsed": hex(b - a),
            }
            for h, r, a, b in zip(hashes, receipts, used, used[1:], strict=False)
        ]
    return receipts, list(items)


def prove_receipts_in_turn(
    endpoints: Sequence[Endpoint],
    block: ProvenBlock,
    support: MethodSupport,
    blame: Callable[[str, str], None],
    reasons: dict[str, str] | None = None,
    fmt: BlockFormat = ETHEREUM,
) -> tuple[ProvenBlock, list[Any], str] | None:
    """``block`` (header and transactions proven) with its receipts, their JSON and the label of
    the first endpoint whose answer rebuilds the receiptsRoot, each endpoint's methods tried in
    :func:`next_receipts_method` order; None if none did. Down or behind: a non-answer; an answer
    that fails the check: ``blame``d. ``reasons``: each failed endpoint's outcome by label."""
    for ep in endpoints:
        tried: list[str] = []
        notes: list[str] = []
        while (method := next_receipts_method(support.known(ep.label), tried)) is not None:
            tried.append(method)
            try:
                got = _ask(ep, method, block, fmt)
            except MethodNotSupported:
                support.learn(ep.label, method, False)
                notes.append(f"{method} not supported")
                continue
            except TransportError as exc:
                notes.append(f"{method}: {exc.reason}")
                # down: its other methods would wait as long; too large, refused: try another
                if isinstance(exc, EndpointUnavailable) and not isinstance(exc, AnswerTooLarge):
                    break
                continue
            except (LightpostError, KeyError, TypeError, ValueError, IndexError) as exc:
                support.learn(ep.label, method, True)
                notes.append(f"{method} failed proof")
                blame(ep.label, str(exc) if isinstance(exc, LightpostError) else type(exc).__name__)
                break
            if got is None:
                notes.append(f"{method}: no answer for block {block.number}")
                break  # behind: the block is not there by any method
            if block.transactions:  # an empty block's per-tx path asks nothing
                support.learn(ep.label, method, True)
            return replace(block, receipts=got[0]), got[1], ep.label
        if reasons is not None:
            reasons[ep.label] = ", ".join(notes) or "no receipts method left to try"
    return None
