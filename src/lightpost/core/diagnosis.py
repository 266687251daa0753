"""What an endpoint can serve, judged from its answers (``lightpost doctor`` / ``status``), and
refusals that say why: pure functions, each answer a claim (node/probe.py asks; this judges).

An answer is a value, ``None`` (a JSON ``null``) or the :class:`~lightpost.errors.LightpostError`
the call raised. Each rule turns the answers about one capability into a :class:`Finding`: ok,
failed (with the fix), or informational (``ok`` None). :func:`needs` says which capabilities a
configuration relies on; :func:`endpoint_failures` judges an endpoint against them.
Endpoints are named by label only; peer text is sanitized and bounded (core.peerdata.peer_text).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lightpost.core.peerdata import peer_text
from lightpost.errors import LightpostError, TransportError

__all__ = [
    "UNTESTED",
    "Cap",
    "Finding",
    "endpoint_failures",
    "failure_text",
    "logs_finding",
    "needs",
    "proof_finding",
    "receipts_finding",
    "refusal",
    "seq_restart_warning",
    "tag_finding",
]

RECEIPT_METHODS = ("eth_getBlockReceipts", "eth_getTransactionReceipt", "debug_getRawReceipts")
"""Ways to a block's receipts, preferred first (one call; one per transaction; raw RLP)."""


UNTESTED = "untested: no transaction in the blocks searched"
"""A per-transaction way to receipts, on blocks without transactions: it proves nothing."""


class Cap(enum.StrEnum):
    """A capability a configuration may rely on."""

    REACH = "reachable"
    CHAIN_ID = "chain id"
    FINALIZED = "finalized tag"
    SAFE = "safe tag"
    RECEIPTS = "block receipts"
    PROOF = "eth_getProof at final"
    STATE = "state history"
    LOGS = "eth_getLogs"
    ESTIMATE = "eth_estimateGas"


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One capability of one endpoint: ``ok`` True/False, None when only informational."""

    cap: Cap
    ok: bool | None
    detail: str
    fix: str = ""


def seq_restart_warning(*, local_next: int, has_history: bool, chain_next: int) -> str | None:
    """A sender about to start its sequences at 0 although its key has sent before: a data
    directory with no record of anything (``local_next`` 0, no transaction) while
    the chain counts ``chain_next`` > 0 transactions of the key. Receivers would drop its
    messages as duplicates (``seq-restart`` problems). None: nothing to warn about."""
    if local_next or has_history or chain_next <= 0:
        return None
    return (
        f"this key has sent {chain_next} transaction(s) but this data directory has no record "
        "of them: its message seqs start again at 0 and receivers that followed it drop them "
        "as duplicates. Remedy: restore the device's data directory, or use a new key "
        "(or new channel names) for this device"
    )


def failure_text(answer: object) -> str:
    """Why an answer is not one, for humans: the endpoint's own error text (sanitized, bounded,
    without its label), ``null`` for a null answer."""
    if answer is None:
        return "answered null"
    if isinstance(answer, TransportError):
        return peer_text(answer.reason)
    if isinstance(answer, LightpostError):
        return peer_text(str(answer))
    if isinstance(answer, BaseException):
        return type(answer).__name__
    return "answered"


def refusal(what: str, reasons: Mapping[str, str]) -> str:
    """'no endpoint proved {what}; refusing: rpc#0 <why>, rpc#1 <why>' (labels only)."""
    why = ", ".join(f"{label} {peer_text(text)}" for label, text in sorted(reasons.items()))
    return f"no endpoint proved {what}; refusing" + (f": {why}" if why else "")


def needs(*, mode: str, level: str, finality_depth: int, receives: bool) -> frozenset[Cap]:
    """What a configuration relies on: every sender proves its transactions' receipts
    (``included``); ``final`` needs the finalized tag unless ``finality_depth`` stands in for it;
    a channel-mode receiver reads eth_getLogs; ``complete`` reads eth_getProof at final."""
    out = {Cap.REACH, Cap.CHAIN_ID, Cap.RECEIPTS}
    if level in ("final", "complete") and finality_depth <= 0:
        out.add(Cap.FINALIZED)
    if receives and mode == "channel" and level != "signed":
        out.add(Cap.LOGS)
    if level == "complete":
        out.add(Cap.PROOF)
    return frozenset(out)


def tag_finding(tag: str, answer: object, latest: int | None, finality_depth: int = 0) -> Finding:
    """The ``finalized`` / ``safe`` tag: a height, or a non-answer with its reason (null is
    "does not serve the tag", never block 0)."""
    cap = Cap.FINALIZED if tag == "finalized" else Cap.SAFE
    fix = (
        f"set finality_depth = N (blocks deep treated as final) or use an endpoint that serves "
        f"the {tag} tag"
        if cap is Cap.FINALIZED
        else ""
    )
    if isinstance(answer, bool) or not isinstance(answer, int):
        why = (
            f"does not serve the {tag} tag"
            if answer is None
            or (isinstance(answer, LightpostError) and "not supported" in failure_text(answer))
            else f"{tag} tag unreadable: {failure_text(answer)}"
        )
        if cap is Cap.FINALIZED and finality_depth > 0:
            return Finding(cap=cap, ok=None, detail=f"{why} (finality_depth is used)")
        return Finding(cap=cap, ok=False if cap is Cap.FINALIZED else None, detail=why, fix=fix)
    lag = "" if latest is None else f", {latest - answer} behind latest"
    same = latest is not None and answer == latest and cap is Cap.FINALIZED
    note = " (equals latest: the node claims instant finality)" if same else ""
    return Finding(cap=cap, ok=True, detail=f"block {answer}{lag}{note}")


def receipts_finding(tried: Sequence[tuple[str, object]], block: int | None) -> Finding:
    """``tried``: (method, None if it proved the block's receiptsRoot else its failure); the
    first that works is the one used, the others are the fallbacks' story. None works but one
    was :data:`UNTESTED`: unknown (ok None), not failed."""
    where = "" if block is None else f" (block {block})"
    works = [m for m, why in tried if why is None]
    told = "; ".join(
        f"{m}: {'proves' if why is None else why}" for m, why in tried if works[:1] != [m]
    )
    if works:
        rest = f"; {told}" if told else ""
        return Finding(cap=Cap.RECEIPTS, ok=True, detail=f"uses {works[0]}{where}{rest}")
    return Finding(
        cap=Cap.RECEIPTS,
        ok=None if any(why == UNTESTED for _, why in tried) else False,
        detail=(told or "not asked") + where,
        fix="use an endpoint that serves "
        + ", ".join(RECEIPT_METHODS[:-1])
        + " or "
        + RECEIPT_METHODS[-1],
    )


def proof_finding(why: str | None, block: int) -> Finding:
    """eth_getProof at the final block: ``why`` None when it verified, else why not."""
    if why is None:
        return Finding(cap=Cap.PROOF, ok=True, detail=f"verified at block {block}")
    return Finding(
        cap=Cap.PROOF,
        ok=False,
        detail=f"at block {block}: {why}",
        fix="`complete` needs eth_getProof at the final block: use a full or archive node "
        "that serves it",
    )


def logs_finding(asked: int, range_answer: object, one_block: object = None) -> Finding:
    """eth_getLogs over the ``asked`` blocks lightpost pages by (``range_answer``) and, when that
    failed, over one block (``one_block``): answers are the log lists or the errors."""
    if isinstance(range_answer, list):
        return Finding(cap=Cap.LOGS, ok=True, detail=f"{asked}-block range served")
    if isinstance(one_block, list):
        return Finding(
            cap=Cap.LOGS,
            ok=False,
            detail=f"a {asked}-block range refused: {failure_text(range_answer)}",
            fix=f"lightpost pages eth_getLogs by {asked} blocks: use an endpoint (or plan) that "
            "serves that range",
        )
    return Finding(
        cap=Cap.LOGS,
        ok=False,
        detail=f"not served: {failure_text(range_answer)}",
        fix="channel mode reads eth_getLogs: use an endpoint that serves it (or mode = direct)",
    )


def endpoint_failures(findings: Sequence[Finding], need: frozenset[Cap]) -> list[Finding]:
    """The needed capabilities an endpoint failed; of a reachable endpoint, a needed one it gave
    no finding for fails too (it gave no height to check it at)."""
    failed = [f for f in findings if f.cap in need and f.ok is False]
    if any(f.cap is Cap.REACH and f.ok for f in findings):
        seen = {f.cap for f in findings}
        failed += [
            Finding(cap=cap, ok=False, detail="not checked: the endpoint gave no usable height")
            for cap in sorted(need - seen)
        ]
    return failed
