"""The chain as seen through several JSON-RPC endpoints, never trusting one: reads that matter go to
all in parallel and count only when k agree (lightpost.core.quorum), at fixed heights or
``finalized``, never ``latest`` compared verbatim (Hyperlane #1119); failures are non-answers;
broadcast goes to ALL ("already known" = success, execution-apis #245). Bounds: docs/protocol.md,
"Adversary model"."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lightpost.adapters.rpc import DEFAULT_TIMEOUT_S, Endpoint
from lightpost.core.diagnosis import failure_text, refusal
from lightpost.core.l2 import ETHEREUM, BlockFormat
from lightpost.core.quorum import QuorumReport, agree, quorum_fee, quorum_height, report
from lightpost.core.rpcfields import (
    data_field,
    get_list,
    get_object,
    optional_field,
    parse_quantity,
    quantity_field,
)
from lightpost.core.verify import ProvenBlock, prove_block_transactions, verify_block_header
from lightpost.errors import (
    AlreadyKnown,
    ChainProcessError,
    DecodingError,
    LightpostError,
    NodeError,
    NotProvable,
    ProofError,
    QuorumError,
    TransportError,
)
from lightpost.node.block_receipts import MethodSupport
from lightpost.node.rawforms import raw_forms

__all__ = ["BroadcastResult", "Chain", "parse_quantity", "prove_in_turn"]

T = TypeVar("T")

RECEIPT_POLL_S = 0.2
"""How often operator helpers poll for a receipt."""

ROUND_SLACK_S = 2.0
"""Added to the endpoints' total deadline (their ``timeout``, else DEFAULT_TIMEOUT_S): one still
silent is stuck."""

MAX_INFLIGHT_PER_ENDPOINT = 2
"""Calls one endpoint may have outstanding (its pool slots): a slow call does not queue the next."""


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    """What each endpoint said to eth_sendRawTransaction."""

    tx_hash: bytes
    accepted: tuple[str, ...]
    errors: Mapping[str, LightpostError]

    @property
    def ok(self) -> bool:
        return bool(self.accepted)


def _non_answer(label: str, method: str, exc: Exception) -> LightpostError:
    # An endpoint's failure as a non-answer (a ProofError stays evidence); foreign exceptions become
    # a TransportError without their text (it could hold a URL).
    if isinstance(exc, TransportError):
        if exc.endpoint == label:
            return exc
    elif isinstance(exc, LightpostError):
        return exc
    if isinstance(exc, LightpostError):
        return TransportError(label, f"bad answer to {method}: {exc}")
    return TransportError(label, f"bad answer to {method} ({type(exc).__name__})")


def prove_in_turn(
    endpoints: Iterable[Endpoint],
    method: str,
    params: Sequence[Any],
    check: Callable[[Any], T],
    blame: Callable[[str, str], None],
    skipped: Callable[[str, str], None] = lambda label, why: None,
) -> tuple[T, Any, str] | None:
    """Ask ``endpoints`` in order until an answer passes ``check``: (its value, the answer,
    the endpoint's label); None if none did. A transport failure, a null answer or a
    TransportError or NotProvable from ``check`` is a non-answer (an endpoint that is down or
    behind, or whose answer lightpost cannot check, is no liar), its reason handed to
    ``skipped(label, reason)``; any other failure of ``check`` is that endpoint's failed proof,
    handed to ``blame(label, reason)``."""
    for ep in endpoints:
        try:
            answer = ep.call(method, params)
        except LightpostError as exc:
            skipped(ep.label, failure_text(exc))
            continue
        if answer is None:
            skipped(ep.label, failure_text(None))
            continue
        try:
            return check(answer), answer, ep.label
        except (TransportError, NotProvable) as exc:
            skipped(ep.label, failure_text(exc))
            continue
        except (LightpostError, KeyError, TypeError, ValueError, IndexError) as exc:
            blame(ep.label, str(exc) if isinstance(exc, LightpostError) else type(exc).__name__)
    return None


def _render(answers: Mapping[str, Any]) -> dict[str, str]:
    return {label: str(value) for label, value in answers.items()}


@dataclass
class Chain:
    """Quorum reads and broadcast over a list of endpoints."""

    endpoints: Sequence[Endpoint]
    quorum: int
    round_deadline: float = 0.0
    """Longest wait of one round; 0: the slowest endpoint's timeout + ROUND_SLACK_S."""
    block_format: BlockFormat = ETHEREUM
    """The chain's extra tx types and header keys (from its profile; core.l2)."""
    capabilities: MethodSupport = field(default_factory=MethodSupport)
    """What each endpoint is known to serve (receipts methods), learned from its answers:
    ``capabilities.known(label)`` / ``.describe(label)``."""
    _pool: ThreadPoolExecutor = field(init=False, repr=False)
    _inflight: list[int] = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ChainProcessError("no RPC endpoints configured")
        self._inflight = [0] * len(self.endpoints)
        if self.round_deadline <= 0:
            own = (getattr(ep, "timeout", DEFAULT_TIMEOUT_S) for ep in self.endpoints)
            self.round_deadline = max(own) + ROUND_SLACK_S
        # each endpoint's own slots: a stuck one can hold only its share of the pool
        self._pool = ThreadPoolExecutor(max_workers=MAX_INFLIGHT_PER_ENDPOINT * len(self.endpoints))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def begin_round(self, problems: dict[str, str]) -> None:
        """A round of inclusion proofs starts (trust = beacon: lightpost_beacon.sending syncs)."""

    # --- asking ---

    def _one(
        self,
        index: int,
        method: str,
        params: Sequence[Any],
        convert: Callable[[Any], Any],
    ) -> Any:
        # One endpoint's converted answer, or the TransportError standing in for one.
        ep = self.endpoints[index]
        try:
            return convert(ep.call(method, params))
        except Exception as exc:  # anything one endpoint causes is its error, never a crash
            return _non_answer(ep.label, method, exc)
        finally:
            with self._lock:
                self._inflight[index] -= 1

    def _submit(
        self,
        method: str,
        params: Sequence[Any],
        convert: Callable[[Any], Any],
        among: frozenset[str] | None = None,
    ) -> dict[Future[Any], str]:
        # Ask every endpoint (or ``among``) in parallel; no free slot: a non-answer at once.
        futures: dict[Future[Any], str] = {}
        for index, ep in enumerate(self.endpoints):
            if among is not None and ep.label not in among:
                continue
            with self._lock:
                free = self._inflight[index] < MAX_INFLIGHT_PER_ENDPOINT
                if free:
                    self._inflight[index] += 1
            if free:
                fut = self._pool.submit(self._one, index, method, params, convert)
            else:
                fut = Future()
                fut.set_result(TransportError(ep.label, "still busy with earlier calls"))
            futures[fut] = ep.label
        return futures

    def _gather(
        self,
        futures: Mapping[Future[Any], str],
        enough: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        # label -> answer within ``round_deadline`` (late: TransportError), until ``enough``.
        heard: dict[str, Any] = {}
        try:
            for fut in as_completed(futures, timeout=self.round_deadline):
                heard[futures[fut]] = fut.result()
                if enough is not None and enough(heard):
                    return heard
        except TimeoutError:
            pass
        late = f"no answer within {self.round_deadline:g} s"
        return {
            label: heard[label] if label in heard else TransportError(label, late)
            for label in futures.values()
        }

    def ask_all(
        self, method: str, params: Sequence[Any], among: frozenset[str] | None = None
    ) -> dict[str, Any]:
        """Ask every endpoint (or ``among``) in parallel: label -> result or the exception."""
        return self._gather(self._submit(method, params, lambda v: v, among))

    def ask_each(
        self, method: str, params: Sequence[Any], convert: Callable[[Any], Any]
    ) -> dict[str, Any]:
        """Like ask_all, with each answer converted (conversion errors become non-answers)."""
        return self._gather(self._submit(method, params, convert))

    def agreed(
        self,
        method: str,
        params: Sequence[Any],
        *,
        question: str,
        convert: Callable[[Any], Any] = lambda v: v,
    ) -> Any:
        """The answer ``quorum`` endpoints gave identically, else QuorumError; returns once k agree
        if 2k > n, else hears everyone (conflicting quorums)."""

        def reached(heard: Mapping[str, Any]) -> bool:
            values = [a for a in heard.values() if not isinstance(a, Exception)]
            return any(values.count(v) >= self.quorum for v in values)

        early = 2 * self.quorum > len(self.endpoints)
        answers = self._gather(self._submit(method, params, convert), reached if early else None)
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

    # --- questions that matter ---

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
        what = f"block {number}"

        def convert(block: Any) -> bytes:
            if block is None:
                raise DecodingError(what, "unknown")
            return data_field(get_object(block, what), "hash", what, 32)

        return bytes(
            self.agreed(
                "eth_getBlockByNumber",
                [hex(number), False],
                question=f"block hash at {number}",
                convert=convert,
            )
        )

    def proven_block(self, number: int, *, full: bool = False) -> ProvenBlock:
        """The header at ``number`` proven against the agreed hash (``full``: and its transactions),
        asking in turn; else ProofError with each endpoint's reason by label."""
        agreed, why, fmt = self.block_hash_at(number), dict[str, str](), self.block_format

        def check(answer: Any) -> ProvenBlock:
            header = verify_block_header(answer, agreed, fmt=fmt)
            if not full:
                return ProvenBlock(header=header, hash=agreed)
            txs = get_list(get_object(answer, "block").get("transactions"), "transactions")
            forms = raw_forms(self.endpoints, answer, fmt)
            return ProvenBlock(
                header=header,
                hash=agreed,
                transactions=prove_block_transactions(header, txs, fmt=fmt, raw_forms=forms),
            )

        found = prove_in_turn(
            self.endpoints, "eth_getBlockByNumber", [hex(number), full], check,
            why.__setitem__, why.__setitem__,
        )  # fmt: skip
        if found is None:
            raise ProofError("header", refusal(f"block {number}", why))
        return found[0]

    def tag_height(self, tag: str) -> int:
        """The quorum's height of block(``tag``): see core.quorum.quorum_height."""
        return self.tag_reading(tag)[0]

    def tag_reading(self, tag: str) -> tuple[int, dict[str, int]]:
        """The quorum's height of block(``tag``) and each answering endpoint's height."""
        what = f"{tag} block"

        def convert(block: Any) -> int | None:
            if block is None:  # e.g. `finalized` before any finality: a non-answer, not block 0
                return None
            return quantity_field(get_object(block, what), "number", what)

        answers = {
            label: TransportError(label, f"does not serve the {tag} tag (answered null)")
            if value is None
            else value
            for label, value in self.ask_each("eth_getBlockByNumber", [tag, False], convert).items()
        }
        readings = {label: v for label, v in answers.items() if isinstance(v, int)}
        height = quorum_height(list(readings.values()), self.quorum)
        if height is None:
            raise QuorumError(f"{tag} height", _render(answers), self.quorum)
        return height, readings

    def final_height(self, finality_depth: int = 0) -> int:
        """The quorum's finalized height, or ``latest - finality_depth`` when configured."""
        return self.final_reading(finality_depth)[0]

    def final_reading(self, finality_depth: int = 0) -> tuple[int, dict[str, int]]:
        """:meth:`final_height` and each answering endpoint's own final height."""
        if finality_depth > 0:
            latest, readings = self.tag_reading("latest")
            final = {label: max(0, h - finality_depth) for label, h in readings.items()}
            return max(0, latest - finality_depth), final
        return self.tag_reading("finalized")

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
        """The quorum's base fee of the latest blocks (core.quorum.quorum_fee); pre-London: 0."""

        def convert(block: Any) -> int:
            fee = optional_field(get_object(block, "latest block"), "baseFeePerGas")
            return 0 if fee is None else parse_quantity(fee, "latest block.baseFeePerGas")

        answers = self.ask_each("eth_getBlockByNumber", ["latest", False], convert)
        fee = quorum_fee([v for v in answers.values() if isinstance(v, int)], self.quorum)
        if fee is None:
            raise QuorumError("base fee", _render(answers), self.quorum)
        return fee

    def balance(self, address: bytes) -> int:
        return int(
            self.agreed(
                "eth_getBalance",
                ["0x" + address.hex(), "latest"],
                question="balance",
                convert=lambda v: parse_quantity(v, "balance"),
            )
        )

    # --- sending ---

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
        """The receipt of ``tx_hash`` PROVEN in the quorum-agreed block, else None; endpoints
        that failed proof go to ``problems``.
        """
        # imported here: the rule's I/O module is the sender's (one implementation)
        from lightpost.core.inclusion import ProvenReceipt
        from lightpost.node.sender_track import InclusionProver, hints_by_endpoint

        answers = self.ask_all("eth_getTransactionReceipt", ["0x" + tx_hash.hex()])
        by_label = {
            label: value if isinstance(value, Exception) else {tx_hash: value}
            for label, value in answers.items()
        }
        prover = InclusionProver(
            self.endpoints, self.block_hash_at, fmt=self.block_format, support=self.capabilities
        )
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
        """Poll until a proven receipt exists (operator tools); the timeout names liars."""
        deadline = clock() + timeout
        problems: dict[str, str] = {}
        while True:
            self.begin_round(problems)
            receipt = self.confirmed_receipt(tx_hash, problems)
            if receipt is not None:
                return receipt
            if clock() >= deadline:
                blamed = "".join(f"; {label} {why}" for label, why in sorted(problems.items()))
                raise ChainProcessError(
                    f"transaction 0x{tx_hash.hex()} not mined within {timeout:.0f} s{blamed}"
                )
            sleep(RECEIPT_POLL_S)
