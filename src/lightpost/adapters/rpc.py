"""JSON-RPC 2.0 over HTTP(S): one endpoint per URL, errors mapped in one place.

:class:`Endpoint` (``call``, ``batch``) is what tests script; :class:`HttpEndpoint` uses
``http.client`` (``urllib.request`` costs ~0.9 MB), no proxies, retries only transport failures and
rate limits. Bounded: total deadline, body per method (:func:`answer_cap`), JSON depth, sanitized
error text. Endpoints are named by label (``rpc#0``): URLs carry API keys.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from lightpost.core.peerdata import parse_json, peer_text
from lightpost.errors import (
    AlreadyKnown,
    AnswerTooLarge,
    DecodingError,
    EndpointUnavailable,
    InsufficientFunds,
    IntrinsicGasTooLow,
    MethodNotSupported,
    NodeError,
    NonceTooLow,
    Oversized,
    RateLimited,
    ReplacementUnderpriced,
    TransportError,
)

__all__ = [
    "ANSWER_CAPS",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT_S",
    "Endpoint",
    "HttpEndpoint",
    "answer_cap",
    "backoff",
    "map_node_error",
]

DEFAULT_TIMEOUT_S = 10.0
"""Total deadline of one request to an endpoint, retries and backoff included."""

DEFAULT_RETRIES = 2
"""Extra attempts after a transport failure or rate limit (not after a node's answer)."""

MIB = 1 << 20

MAX_ANSWER_BYTES = 1 * MIB
"""Any other answer: scalars, our tx (pools take <= 128 KB), its receipt, code (EIP-170: 24 KiB).
Below: 60M block gas (EIP-7935)."""

MAX_LOGS_ANSWER_BYTES = 8 * MIB
"""eth_getLogs: ~1 KB of JSON per log plus its data as hex, ~7,000 small posts (more:
AnswerTooLarge, ask a smaller range)."""

MAX_BLOCK_ANSWER_BYTES = 1 * MIB
"""eth_getBlockBy* with hashes only: a ~1.5 KB header and <= 2,857 tx hashes (60M / 21,000) = ~200
KB."""

MAX_FULL_BLOCK_ANSWER_BYTES = 16 * MIB
"""... full transactions: 60M gas of zero calldata at the EIP-7623 floor = 6 MB, 12 MB as hex, + ~1
KB per tx."""

MAX_RECEIPTS_ANSWER_BYTES = 16 * MIB
"""eth_getBlockReceipts: ~1.1 KB per receipt plus logs (a block full of log data: ~15 MB as hex;
mainnet 0.5-3 MB)."""

MAX_PROOF_ANSWER_BYTES = 8 * MIB
"""eth_getProof: account proof ~9 KB of hex (8-9 nodes <= 532 bytes), storage proofs ~5 KB: ~1,500
keys per call."""

ANSWER_CAPS: dict[str, int] = {
    "eth_getLogs": MAX_LOGS_ANSWER_BYTES,
    "eth_getBlockByNumber": MAX_BLOCK_ANSWER_BYTES,
    "eth_getBlockByHash": MAX_BLOCK_ANSWER_BYTES,
    "eth_getBlockReceipts": MAX_RECEIPTS_ANSWER_BYTES,
    "eth_getProof": MAX_PROOF_ANSWER_BYTES,
}
"""Largest answer read per method (else MAX_ANSWER_BYTES): what a hostile endpoint can make a device
hold (x25 parsed, measured)."""

MAX_BATCH_ANSWER_BYTES = MAX_FULL_BLOCK_ANSWER_BYTES
"""A batch may hold the sum of its calls' caps, but never more than the largest one."""

READ_CHUNK_BYTES = 64 * 1024
"""Bytes read per step of the body (the deadline and the cap are checked between steps)."""

BACKOFF_BASE_S = 0.2
"""First backoff delay; doubles each attempt, capped by BACKOFF_MAX_S."""

BACKOFF_MAX_S = 2.0
"""Upper bound of one backoff delay."""

# (substring of the lower-cased node message, exception) -- geth, reth, anvil wording.
_ERROR_PATTERNS: tuple[tuple[str, type[NodeError]], ...] = (
    ("nonce too low", NonceTooLow),
    ("already known", AlreadyKnown),
    ("already imported", AlreadyKnown),
    ("transaction already exists", AlreadyKnown),
    ("replacement transaction underpriced", ReplacementUnderpriced),
    ("replacement underpriced", ReplacementUnderpriced),
    ("insufficient funds", InsufficientFunds),
    ("intrinsic gas too low", IntrinsicGasTooLow),
    ("floor data gas", IntrinsicGasTooLow),
    ("gas too low", IntrinsicGasTooLow),
    ("oversized data", Oversized),
    ("too large", Oversized),
    ("exceeds block gas limit", Oversized),
    ("gas limit cap", Oversized),
    ("rate limit", RateLimited),
    ("too many requests", RateLimited),
)

_MISSING_METHOD = re.compile(
    r"\bmethod\s+(?:['\"`]?[\w.]+['\"`]?\s+)?(?:is\s+)?"
    r"(?:not found|does not exist|not supported|not available|unsupported)"
    r"|\bunsupported method\b"
)
"""A message naming the method as missing: geth/Ganache "the method X does not exist/is not
available", "Method not found", Hardhat "Method X is not supported", "Unsupported method: X".
A bare "not supported" (e.g. "... not supported for pruned blocks") is not: it is one answer's
failure, not the method's absence."""

_HEADERS = {"content-type": "application/json", "accept": "application/json"}

_METHOD_NOT_FOUND = -32601
"""JSON-RPC 2.0: the method does not exist."""


def map_node_error(label: str, code: int | None, message: str) -> NodeError:
    """Translate a JSON-RPC error object into the matching lightpost exception."""
    low = message.lower()
    text = peer_text(message)
    if code == _METHOD_NOT_FOUND:
        return MethodNotSupported(label, text, code)
    for needle, exc in _ERROR_PATTERNS:
        if needle in low:
            return exc(label, text, code)
    if _MISSING_METHOD.search(low):
        return MethodNotSupported(label, text, code)
    return NodeError(label, text, code)


def answer_cap(method: str, params: Sequence[Any]) -> int:
    """Largest answer accepted for one call (see ANSWER_CAPS)."""
    if method.startswith("eth_getBlockBy") and len(params) > 1 and params[1] is True:
        return MAX_FULL_BLOCK_ANSWER_BYTES
    return ANSWER_CAPS.get(method, MAX_ANSWER_BYTES)


def backoff(base: float = BACKOFF_BASE_S, cap: float = BACKOFF_MAX_S) -> Iterator[float]:
    """Delays for successive retries: base, 2 base, 4 base ... capped."""
    delay = base
    while True:
        yield min(delay, cap)
        delay *= 2


class Endpoint(Protocol):
    """What the node needs of an RPC endpoint."""

    label: str

    def call(self, method: str, params: Sequence[Any]) -> Any:
        """One request; returns ``result`` or raises a TransportError subclass."""

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Several requests in one round trip; each entry is a result or a NodeError."""


class _Late(TimeoutError):
    """The request's total deadline passed (raised between socket operations)."""


class _DeadlineSocket(io.RawIOBase):
    # A socket whose every send and read gets only the time left until ``deadline``.

    def __init__(self, sock: socket.socket, deadline: float, clock: Callable[[], float]):
        self.sock, self.deadline, self.clock = sock, deadline, clock

    def _arm(self) -> None:
        left = self.deadline - self.clock()
        if left <= 0:
            raise _Late
        self.sock.settimeout(left)

    def sendall(self, data: bytes) -> None:
        self._arm()
        self.sock.sendall(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._arm()
        return self.sock.recv_into(buffer)

    def makefile(self, *_args: object) -> io.BufferedReader:
        return io.BufferedReader(self)

    def close(self) -> None:
        """No-op: http.client closes while the response still reads; _exchange closes."""


def _tls(sock: socket.socket, host: str, left: float) -> ssl.SSLSocket:
    # The TLS handshake within ``left`` seconds in all (the socket timeout bounds the whole
    # handshake).
    context = ssl.create_default_context()  # as HTTPSConnection does, ALPN included
    context.set_alpn_protocols(["http/1.1"])
    sock.settimeout(left)
    return context.wrap_socket(sock, server_hostname=host)


@dataclass
class HttpEndpoint:
    """A JSON-RPC endpoint over HTTP(S). ``url`` is never printed."""

    url: str = field(repr=False)
    label: str = "rpc"
    timeout: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _next_id: int = field(default=0, init=False, repr=False)

    def _connection(self, left: float) -> tuple[http.client.HTTPConnection, str]:
        # A new connection per request (callers are threads) and the target; a bad URL is reported
        # by label only.
        try:
            parts = urlsplit(self.url)
            port = parts.port
        except ValueError:
            raise EndpointUnavailable(self.label, "URL is not valid") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EndpointUnavailable(self.label, "URL is not http(s)")
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return kind(parts.hostname, port, timeout=left), target

    def _exchange(
        self, body: bytes | None, deadline: float, cap: int, path: str = ""
    ) -> tuple[int, bytearray]:
        # One HTTP exchange within ``deadline``: (status, body of at most ``cap`` bytes); ``body``
        # None: a GET of ``path`` under the URL's path (the beacon API).
        left = deadline - self.clock()
        if left <= 0:
            raise _Late
        conn, target = self._connection(left)
        try:
            http.client.HTTPConnection.connect(conn)  # TCP only, within ``left``
            raw = conn.sock
            if isinstance(conn, http.client.HTTPSConnection):
                left = deadline - self.clock()
                if left <= 0:
                    raise _Late
                raw = conn.sock = _tls(raw, conn.host, left)
            conn.sock = _DeadlineSocket(raw, deadline, self.clock)
            try:
                if body is None:
                    target = target.split("?")[0].rstrip("/") + path
                conn.request("POST" if body is not None else "GET", target, body, _HEADERS)
                resp = conn.getresponse()
                if resp.length is not None and resp.length > cap:
                    raise AnswerTooLarge(self.label, cap)
                answer = bytearray()
                while chunk := resp.read(min(READ_CHUNK_BYTES, cap + 1 - len(answer))):
                    answer += chunk
                    if len(answer) > cap:
                        raise AnswerTooLarge(self.label, cap)  # never buffer past the cap
                return resp.status, answer
            finally:
                raw.close()
        finally:
            conn.close()

    def _post(self, payload: object, cap: int) -> Any:
        return self._request(json.dumps(payload).encode(), cap)

    def _request(self, body: bytes | None, cap: int, path: str = "") -> Any:
        # The parsed JSON answer to a POST of ``body`` (None: a GET of ``path``), retried on
        # transport failures and rate limits within the total deadline.
        deadline = self.clock() + self.timeout
        delays = backoff()
        for attempt in range(self.retries + 1):
            try:
                status, answer = self._exchange(body, deadline, cap, path)
                if status == 429:
                    err: TransportError = RateLimited(
                        self.label, "HTTP 429 too many requests", None
                    )
                elif not 200 <= status < 300:
                    err = EndpointUnavailable(self.label, f"HTTP {status}")
                else:
                    return parse_json(answer, "answer")
            except (http.client.HTTPException, OSError, ValueError) as exc:  # ValueError: IDNA
                if isinstance(exc, _Late) or self.clock() >= deadline:
                    break
                err = EndpointUnavailable(self.label, f"unreachable ({type(exc).__name__})")
            except DecodingError as exc:
                err = EndpointUnavailable(self.label, f"answer is {exc.reason}")
            delay = next(delays)
            if attempt == self.retries or self.clock() + delay >= deadline:
                raise err
            self.sleep(delay)
        raise EndpointUnavailable(self.label, f"no complete answer within {self.timeout:g} s")

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _unwrap(self, answer: Any) -> Any:
        if not isinstance(answer, dict) or answer.get("jsonrpc") != "2.0":
            raise EndpointUnavailable(self.label, "answer is not a JSON-RPC 2.0 response")
        if "error" in answer and answer["error"] is not None:
            error = answer["error"]
            if not isinstance(error, dict):
                return NodeError(self.label, "malformed error object")
            code, message = error.get("code"), error.get("message", "")
            return map_node_error(
                self.label,
                code if isinstance(code, int) and not isinstance(code, bool) else None,
                message if isinstance(message, str) else peer_text(message),
            )
        if "result" not in answer:
            raise EndpointUnavailable(self.label, "answer has neither result nor error")
        return answer["result"]

    def call(self, method: str, params: Sequence[Any]) -> Any:
        answer = self._post(
            {"jsonrpc": "2.0", "id": self._id(), "method": method, "params": list(params)},
            answer_cap(method, params),
        )
        result = self._unwrap(answer)
        if isinstance(result, NodeError):
            raise result
        return result

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        if not calls:
            return []
        ids = [self._id() for _ in calls]
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)}
            for i, (m, p) in zip(ids, calls, strict=True)
        ]
        cap = sum(answer_cap(m, p) for m, p in calls)
        answer = self._post(payload, min(cap, MAX_BATCH_ANSWER_BYTES))
        if isinstance(answer, dict):  # some servers answer a batch with one error object
            err = self._unwrap(answer)
            raise (
                err
                if isinstance(err, NodeError)
                else EndpointUnavailable(self.label, "batch answered with a single object")
            )
        if not isinstance(answer, list):
            raise EndpointUnavailable(self.label, "batch answer is not a list")
        by_id = {a["id"]: a for a in answer if isinstance(a, dict) and isinstance(a.get("id"), int)}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise EndpointUnavailable(self.label, f"batch answer misses {len(missing)} entries")
        return [self._unwrap(by_id[i]) for i in ids]
