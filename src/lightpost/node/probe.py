"""Ask one endpoint for what a configuration needs (``lightpost doctor``, ``lightpost status``):
chain id, the ``finalized``/``safe`` tags, block receipts (and which of
core.diagnosis.RECEIPT_METHODS proves them), eth_getProof at the final block,
eth_getLogs over the range lightpost pages by. Every answer is checked as a claim (header hash,
receiptsRoot, the proof against the state root) and bounded by the endpoint's own deadline and
answer caps (adapters/rpc.py); core.diagnosis judges."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lightpost.adapters.rpc import Endpoint
from lightpost.core.diagnosis import (
    UNTESTED,
    Cap,
    Finding,
    failure_text,
    logs_finding,
    proof_finding,
    receipts_finding,
    tag_finding,
)
from lightpost.core.header import BlockHeader
from lightpost.core.l2 import ETHEREUM, BlockFormat
from lightpost.core.receipts import RECEIPT_TYPES, decode_receipt, verify_receipts_root
from lightpost.core.rpcfields import (
    data_field,
    get_list,
    get_object,
    parse_data,
    parse_quantity,
    quantity_field,
)
from lightpost.core.trie import check_eth_get_proof
from lightpost.core.verify import prove_block_receipts, verify_block_header
from lightpost.errors import LightpostError, ProofError
from lightpost.node.config import DeviceConfig
from lightpost.node.receiver_channel import LOG_PAGE_BLOCKS
from lightpost.node.sender_track import batch_call

__all__ = [
    "BLOCKS_SEARCHED",
    "MAX_TX_RECEIPTS",
    "Probe",
    "ask",
    "beacon_probe",
    "logs",
    "probe_endpoint",
    "proof_at",
    "receives",
]

BLOCKS_SEARCHED = 16
"""Blocks below final searched for one with transactions to prove receipts on (else: the last)."""

MAX_TX_RECEIPTS = 500
"""Most per-transaction receipts asked (one batch) to rebuild one block's receiptsRoot."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    """What one endpoint serves: its findings (core.diagnosis) and the heights it reported."""

    label: str
    findings: tuple[Finding, ...]
    chain_id: int | None = None
    latest: int | None = None
    final: int | None = None


def receives(config: DeviceConfig) -> bool:
    """Whether a config follows anyone (a channel with trusted senders, or the agent)."""
    return bool(config.agent) or any(ch.trusted for ch in config.channels)


def beacon_probe(config: DeviceConfig) -> Callable[[], dict[str, Any]] | None:
    """trust = beacon/both: lightpost_beacon.probe's report on the beacon endpoints and the stored
    light-client state (the extra is imported only then); None on trust = quorum."""
    if config.beacon is None:
        return None
    from lightpost_beacon.probe import beacon_status

    return lambda: beacon_status(config.beacon)


def ask(ep: Endpoint, method: str, params: Sequence[Any]) -> Any:
    """The answer, or the LightpostError standing in for it (never raises one)."""
    try:
        return ep.call(method, params)
    except LightpostError as exc:
        return exc


def _checked(ep: Endpoint, method: str, params: Sequence[Any], check: Callable[[Any], Any]) -> Any:
    # ``check(answer)`` or the reason it is none (a null, an error, a failed check).
    answer = ask(ep, method, params)
    if answer is None or isinstance(answer, LightpostError):
        return failure_text(answer)
    try:
        return check(answer)
    except (LightpostError, KeyError, TypeError, ValueError, IndexError) as exc:
        return failure_text(exc) if isinstance(exc, LightpostError) else type(exc).__name__


def _height(block: Any) -> int:
    return quantity_field(get_object(block, "block"), "number", "block")


def _tag(ep: Endpoint, tag: str) -> Any:
    # A tag's height, None for a null answer, else the error.
    answer = ask(ep, "eth_getBlockByNumber", [tag, False])
    if answer is None or isinstance(answer, LightpostError):
        return answer
    try:
        return _height(answer)
    except LightpostError as exc:
        return exc


def _header(
    ep: Endpoint, number: int, fmt: BlockFormat = ETHEREUM
) -> tuple[BlockHeader, Sequence[Any]] | str:
    # The block's header (``fmt``'s extra keys allowed), proven against the hash it claims, and its
    # transaction hashes.

    def check(block: Any) -> tuple[BlockHeader, Sequence[Any]]:
        obj = get_object(block, "block")
        header = verify_block_header(block, data_field(obj, "hash", "block", 32), fmt=fmt)
        if header.number != number:
            raise ProofError("header", f"asked for block {number}, answered {header.number}")
        return header, get_list(obj.get("transactions"), "transactions")

    return _checked(ep, "eth_getBlockByNumber", [hex(number), False], check)  # type: ignore[no-any-return]


def _receipts(
    ep: Endpoint, header: BlockHeader, tx_hashes: Sequence[Any], every: bool, fmt: BlockFormat
) -> list[tuple[str, object]]:
    # (method, None if it rebuilt the receiptsRoot else why) per receipts method, in order
    # (``fmt``'s receipt types too); stops at the first that works unless ``every``.
    types = RECEIPT_TYPES | fmt.tx_types
    n = hex(header.number)

    def per_tx() -> Any:
        if not tx_hashes:
            return UNTESTED
        if len(tx_hashes) > MAX_TX_RECEIPTS:
            return f"not tried ({len(tx_hashes)} transactions in the block)"
        answers = batch_call(ep, [("eth_getTransactionReceipt", [h]) for h in tx_hashes])
        failed = next((a for a in answers if a is None or isinstance(a, LightpostError)), 0)
        if failed != 0:
            return failure_text(failed)
        return _checked_value(lambda: prove_block_receipts(header, answers, fmt=fmt))

    def raw() -> Any:
        def check(answer: Any) -> None:
            items = get_list(answer, "raw receipts")
            receipts = [decode_receipt(parse_data(r, "raw receipt"), types=types) for r in items]
            verify_receipts_root(header.receipts_root, receipts)

        return _checked(ep, "debug_getRawReceipts", [n], check)

    def block() -> Any:
        return _checked(
            ep, "eth_getBlockReceipts", [n], lambda a: prove_block_receipts(header, a, fmt=fmt)
        )

    ways: tuple[tuple[str, Callable[[], Any]], ...] = (
        ("eth_getBlockReceipts", block),
        ("eth_getTransactionReceipt", per_tx),
        ("debug_getRawReceipts", raw),
    )
    tried: list[tuple[str, object]] = []
    for method, way in ways:
        result = way()
        tried.append((method, result if isinstance(result, str) else None))
        if not isinstance(result, str) and not every:
            break
    return tried


def _checked_value(check: Callable[[], Any]) -> Any:
    try:
        return check()
    except LightpostError as exc:
        return failure_text(exc)


def logs(ep: Endpoint, lo: int, hi: int, address: bytes | None) -> Any:
    """eth_getLogs over blocks max(0, lo)..hi (of ``address``; None: every contract), or the
    error standing in for the answer."""
    flt: dict[str, Any] = {"fromBlock": hex(max(0, lo)), "toBlock": hex(hi)}
    if address is not None:
        flt["address"] = "0x" + address.hex()
    return ask(ep, "eth_getLogs", [flt])


def proof_at(ep: Endpoint, address: bytes, number: int, fmt: BlockFormat = ETHEREUM) -> str | None:
    """None when eth_getProof at ``number`` verifies against that block's state root."""
    header = _header(ep, number, fmt)
    if isinstance(header, str):
        return f"block {number}: {header}"
    root = header[0].state_root
    got = _checked(
        ep,
        "eth_getProof",
        ["0x" + address.hex(), [], hex(number)],
        lambda a: check_eth_get_proof(root, a, address=address),
    )
    return got if isinstance(got, str) else None


def probe_endpoint(
    ep: Endpoint,
    *,
    chain_id: int,
    finality_depth: int,
    address: bytes,
    inbox: bytes | None,
    need: frozenset[Cap] | None = None,
    fmt: BlockFormat = ETHEREUM,
    logs_range: int = LOG_PAGE_BLOCKS,
) -> Probe:
    """What core.diagnosis judges, from ``ep`` alone. ``need`` None (doctor): every receipts method
    and capability; else (status) only what is needed, the first receipts method that works.
    ``fmt``: the chain's block format (runtime.chain_format); ``logs_range``: the eth_getLogs
    block range the receiver pages by (the profile's logs_block_range)."""
    thorough = need is None
    answer = ask(ep, "eth_chainId", [])
    if isinstance(answer, LightpostError) or answer is None:
        found = Finding(
            cap=Cap.REACH, ok=False, detail=failure_text(answer), fix="check the URL and the node"
        )
        return Probe(label=ep.label, findings=(found,))
    findings = [Finding(cap=Cap.REACH, ok=True, detail="answers")]
    try:
        got_id: int | str = parse_quantity(answer, "chain id")
    except LightpostError as exc:
        got_id = failure_text(exc)
    ids = {"chain_id": got_id if isinstance(got_id, int) else None}
    findings.append(
        Finding(cap=Cap.CHAIN_ID, ok=True, detail=str(got_id))
        if got_id == chain_id
        else Finding(
            cap=Cap.CHAIN_ID,
            ok=False,
            detail=f"{got_id}, config says {chain_id}",
            fix="point this endpoint at the configured chain (or fix chain_id)",
        )
    )
    latest = _tag(ep, "latest")
    latest_n = latest if isinstance(latest, int) else None
    finalized = _tag(ep, "finalized")
    findings.append(tag_finding("finalized", finalized, latest_n, finality_depth))
    findings.append(tag_finding("safe", _tag(ep, "safe"), latest_n))
    if finality_depth > 0 and latest_n is not None:
        final: int | None = max(0, latest_n - finality_depth)
    else:
        final = finalized if isinstance(finalized, int) else latest_n
    heights = {"latest": latest_n, "final": final, **ids}
    if final is None:
        return Probe(label=ep.label, findings=tuple(findings), **heights)

    # receipts: a block at or below final with transactions, else the final block itself
    block: tuple[BlockHeader, Sequence[Any]] | str = "not asked"
    for number in range(final, max(-1, final - BLOCKS_SEARCHED), -1):
        block = _header(ep, number, fmt)
        if isinstance(block, str) or block[1]:
            break
    if isinstance(block, str):
        findings.append(receipts_finding([("eth_getBlockByNumber", block)], final))
    else:
        header, hashes = block
        tried = _receipts(ep, header, hashes, thorough, fmt)
        findings.append(receipts_finding(tried, header.number))

    if need is None or Cap.PROOF in need:
        findings.append(proof_finding(proof_at(ep, address, final, fmt), final))
    if inbox is not None and (need is None or Cap.LOGS in need):
        ranged = logs(ep, final - logs_range + 1, final, inbox)
        one = None if isinstance(ranged, list) else logs(ep, final, final, inbox)
        findings.append(logs_finding(logs_range, ranged, one))
    return Probe(label=ep.label, findings=tuple(findings), **heights)
