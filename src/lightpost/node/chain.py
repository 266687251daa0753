"""The chain as seen through several JSON-RPC endpoints, never trusting one.

Reads that matter go to every endpoint (in parallel, each call with its own timeout)
and are accepted only when k agree (lightpost.core.quorum). Questions are asked at
fixed heights or at `finalized`, never as "what is latest" compared verbatim: heads
differ between honest providers (Hyperlane #1119).

- finalized height: the highest h such that >= k endpoints report finalized >= h,
  then the block hash at h must itself be agreed by k. A stale endpoint can only make
  finality look older (safe), never newer.
- broadcast: the raw transaction goes to ALL endpoints; "already known" for an
  identical raw transaction is success (execution-apis #245).
- receipts are hints from any endpoint: a receipt counts only when it is proven in the
  quorum-agreed block at its height (lightpost.core.inclusion; web3.js #3608).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from lightpost.adapters.rpc import Endpoint
from lightpost.core.quorum import QuorumReport, agree, report
from lightpost.errors import (
    AlreadyKnown,
    ChainProcessError,
    LightpostError,
    NodeError,
    QuorumError,
    TransportError,
)

__all__ = ["BroadcastResult", "Chain", "parse_quantity"]

RECEIPT_POLL_S = 0.2
"""How often operator helpers poll for a receipt."""


def parse_quantity(value: Any, what: str = "quantity") -> int:
    """A JSON-RPC hex quantity ("0x1a") as int; anything else is a TransportError."""
    if not isinstance(value, str) or not value.startswith("0x"):
        raise TransportError("rpc", f"{what} is not a hex quantity")
    try:
        return int(value, 16)
    except ValueError:
        raise TransportError("rpc", f"{what} is not a hex quantity") from None


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    """What each endpoint said to eth_sendRawTransaction."""

    tx_hash: bytes
    accepted: tuple[str, ...]
    errors: Mapping[str, LightpostError]

    @property
    def ok(self) -> bool:
        return bool(self.accepted)


@dataclass
class Chain:
    """Quorum reads and broadcast over a list of endpoints."""

    endpoints: Sequence[Endpoint]
    quorum: int
    _pool: ThreadPoolExecutor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ChainProcessError("no RPC endpoints configured")
        # two calls per endpoint may be in flight: one stuck on a slow endpoint must not
        # queue the next question behind it
        self._pool = ThreadPoolExecutor(max_workers=max(2, 2 * len(self.endpoints)))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- asking ------------------------------------------------------------------

    def _submit(
        self, method: str, params: Sequence[Any], convert: Callable[[Any], Any]
    ) -> dict[Future[Any], str]:
        """Ask every endpoint in parallel; each future yields a converted answer or the
        LightpostError that stood in for one."""

        def one(ep: Endpoint) -> Any:
            try:
                answer = ep.call(method, params)
            except LightpostError as exc:
                return exc
            try:
                return convert(answer)
            except LightpostError as exc:
                return exc
            except (TypeError, KeyError, AttributeError, ValueError, IndexError):
                # a malformed answer (wrong JSON shape) is a non-answer, never a crash
                return TransportError(ep.label, f"malformed answer to {method}")

        return {self._pool.submit(one, ep): ep.label for ep in self.endpoints}

    def ask_all(self, method: str, params: Sequence[Any]) -> dict[str, Any]:
        """Ask every endpoint in parallel: label -> result or the exception raised."""
        return self.ask_each(method, params, lambda v: v)

    def ask_each(
        self, method: str, params: Sequence[Any], convert: Callable[[Any], Any]
    ) -> dict[str, Any]:
        """Like ask_all, with each answer converted (conversion errors become non-answers)."""
        futures = self._submit(method, params, convert)
        return {futures[f]: f.result() for f in futures}

    def agreed(
        self,
        method: str,
        params: Sequence[Any],
        *,
        question: str,
        convert: Callable[[Any], Any] = lambda v: v,
    ) -> Any:
        """The answer at least ``quorum`` endpoints gave identically, else QuorumError.

        With a majority quorum (2k > n) no second value can also reach k, so the answer
        is returned as soon as k endpoints agree: a slow endpoint delays nothing. With a
        smaller k every endpoint is heard, so that conflicting quorums are reported."""
        futures = self._submit(method, params, convert)
        answers: dict[str, Any] = {}
        early = 2 * self.quorum > len(self.endpoints)
        for fut in as_completed(futures):
            value = answers[futures[fut]] = fut.result()
            if early and not isinstance(value, Exception):
                votes = sum(
                    1 for a in answers.values() if not isinstance(a, Exception) and a == value
                )
                if votes >= self.quorum:
                    return value
        return agree(answers, self.quorum, question=question)

    def report(
        self,
        method: str,
        params: Sequence[Any],
        *,
        question: str,
        convert: Callable[[Any], Any] = lambda v: v,
    ) -> QuorumReport[Any]:
        return report(self.ask_each(method, params, convert), self.quorum, question=question)

    # --- questions that matter ------------------------------------------------------

    def chain_id(self) -> int:
        return int(
            self.agreed(
                "eth_chainId",
                [],
                question="chain id",
                convert=lambda v: parse_quantity(v, "chain id"),
            )
        )

    def nonce(self, address: bytes, tag: str = "latest") -> int:
        """Transaction count of ``address`` at ``tag``, quorum-agreed."""
        return int(
            self.agreed(
                "eth_getTransactionCount",
                ["0x" + address.hex(), tag],
                question=f"nonce at {tag}",
                convert=lambda v: parse_quantity(v, "nonce"),
            )
        )

    def block_hash_at(self, number: int) -> bytes:
        """The canonical block hash at ``number``, quorum-agreed."""

        def convert(block: Any) -> bytes:
            if block is None:
                raise TransportError("rpc", f"block {number} unknown")
            return bytes.fromhex(str(block["hash"])[2:])

        return bytes(
            self.agreed(
                "eth_getBlockByNumber",
                [hex(number), False],
                question=f"block hash at {number}",
                convert=convert,
            )
        )

    def tag_height(self, tag: str) -> int:
        """Highest h such that >= k endpoints report block(tag).number >= h."""
        answers = self.ask_each(
            "eth_getBlockByNumber",
            [tag, False],
            lambda b: parse_quantity(b["number"], f"{tag} number") if b else 0,
        )
        heights = sorted((v for v in answers.values() if isinstance(v, int)), reverse=True)
        if len(heights) < self.quorum:
            raise QuorumError(f"{tag} height", {k: str(v) for k, v in answers.items()}, self.quorum)
        return heights[self.quorum - 1]

    def final_height(self, finality_depth: int = 0) -> int:
        """The quorum's finalized height, or ``latest - finality_depth`` when the config
        sets a depth (chains without the `finalized` tag)."""
        if finality_depth > 0:
            return max(0, self.tag_height("latest") - finality_depth)
        return self.tag_height("finalized")

    def finalized(self, finality_depth: int = 0) -> tuple[int, bytes]:
        """(height, hash) of the quorum-agreed final block (see :meth:`final_height`)."""
        height = self.final_height(finality_depth)
        return height, self.block_hash_at(height)

    def block(self, number: int, *, full: bool = False) -> Mapping[str, Any] | None:
        """One endpoint's block JSON (the first that answers): a HINT, verify before use."""
        for ep in self.endpoints:
            try:
                block = ep.call("eth_getBlockByNumber", [hex(number), full])
            except TransportError:
                continue
            if isinstance(block, dict):
                return block
        return None

    def base_fee(self) -> int:
        """Highest base fee any endpoint reports for its latest block (conservative)."""
        answers = self.ask_each(
            "eth_getBlockByNumber",
            ["latest", False],
            lambda b: parse_quantity(b.get("baseFeePerGas", "0x0"), "base fee"),
        )
        fees = [v for v in answers.values() if isinstance(v, int)]
        if not fees:
            raise QuorumError("base fee", {k: str(v) for k, v in answers.items()}, 1)
        return max(fees)

    def balance(self, address: bytes) -> int:
        return int(
            self.agreed(
                "eth_getBalance",
                ["0x" + address.hex(), "latest"],
                question="balance",
                convert=lambda v: parse_quantity(v, "balance"),
            )
        )

    # --- sending -------------------------------------------------------------------

    def broadcast(self, raw: bytes, tx_hash: bytes) -> BroadcastResult:
        """Send ``raw`` to every endpoint. Idempotent: resending is always safe."""
        answers = self.ask_all("eth_sendRawTransaction", ["0x" + raw.hex()])
        accepted: list[str] = []
        errors: dict[str, LightpostError] = {}
        for label, value in answers.items():
            if isinstance(value, AlreadyKnown):
                accepted.append(label)
            elif isinstance(value, LightpostError):
                errors[label] = value
            elif isinstance(value, str) and value.lower() == "0x" + tx_hash.hex():
                accepted.append(label)
            else:
                errors[label] = NodeError(label, "returned a different transaction hash")
        return BroadcastResult(tx_hash=tx_hash, accepted=tuple(accepted), errors=errors)

    def receipt_hint(self, tx_hash: bytes) -> Mapping[str, Any] | None:
        """A receipt from any endpoint (unverified)."""
        for value in self.ask_all("eth_getTransactionReceipt", ["0x" + tx_hash.hex()]).values():
            if isinstance(value, dict) and value.get("blockHash"):
                return value
        return None

    def confirmed_receipt(
        self, tx_hash: bytes, problems: dict[str, str] | None = None
    ) -> Mapping[str, Any] | None:
        """The receipt of ``tx_hash`` PROVEN in the quorum-agreed block at its height:
        header, transactionsRoot and receiptsRoot rebuilt (lightpost.core.inclusion,
        the sender's own rule). None while no receipt proves; endpoints whose answers
        failed proof are added to ``problems`` (label -> why)."""
        # imported here: the rule's I/O module is the sender's (one implementation)
        from lightpost.core.inclusion import ProvenReceipt
        from lightpost.node.sender_track import InclusionProver, hints_by_endpoint

        answers = self.ask_all("eth_getTransactionReceipt", ["0x" + tx_hash.hex()])
        by_label = {
            label: value if isinstance(value, Exception) else {tx_hash: value}
            for label, value in answers.items()
        }
        prover = InclusionProver(self.endpoints, self.block_hash_at)
        try:
            for hint, labels in hints_by_endpoint(by_label, [tx_hash]).items():
                proven = prover.prove(hint, labels)
                if isinstance(proven, ProvenReceipt):
                    return proven.receipt
            return None
        finally:
            if problems is not None:
                problems.update(prover.problems)

    def wait_receipt(
        self,
        tx_hash: bytes,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Mapping[str, Any]:
        """Poll until a proven receipt exists (operator tools; the node never blocks).
        The timeout error names the endpoints whose answers failed proof."""
        deadline = clock() + timeout
        problems: dict[str, str] = {}
        while True:
            receipt = self.confirmed_receipt(tx_hash, problems)
            if receipt is not None:
                return receipt
            if clock() >= deadline:
                blamed = "".join(f"; {label} {why}" for label, why in sorted(problems.items()))
                raise ChainProcessError(
                    f"transaction 0x{tx_hash.hex()} not mined within {timeout:.0f} s{blamed}"
                )
            sleep(RECEIPT_POLL_S)
