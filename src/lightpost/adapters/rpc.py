"""JSON-RPC 2.0 over HTTP(S): one endpoint per URL, errors mapped in one place.

The interface a node needs is :class:`Endpoint` (``call`` and ``batch``); tests script
any behaviour with a fake implementing the same two methods, without a socket.
:class:`HttpEndpoint` is the real one: stdlib ``http.client`` (not ``urllib.request``,
which drags the node's memory up by ~0.9 MB for redirects, proxies and cookies a JSON-RPC
call does not want), a timeout on every call, retries with exponential backoff (sleep
injected) for transport failures and rate limits only -- never for a node's definite
answer. Proxies from the environment are not used: the endpoint is what the config says.

An endpoint is named by a *label* (``rpc#0``...) in every error and log line: URLs
often carry API keys and must not leak.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from lightpost.errors import (
    AlreadyKnown,
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
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT_S",
    "MAX_RESPONSE_BYTES",
    "Endpoint",
    "HttpEndpoint",
    "backoff",
    "map_node_error",
]

DEFAULT_TIMEOUT_S = 10.0
"""Timeout of one HTTP round trip to an endpoint."""

DEFAULT_RETRIES = 2
"""Extra attempts after a transport failure or rate limit (not after a node's answer)."""

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""Largest JSON-RPC answer read (a mainnet block's receipts are a few MB)."""

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
    ("method not found", MethodNotSupported),
    ("not supported", MethodNotSupported),
    ("does not exist/is not available", MethodNotSupported),
)

_METHOD_NOT_FOUND = -32601
"""JSON-RPC 2.0: the method does not exist."""


def map_node_error(label: str, code: int | None, message: str) -> NodeError:
    """Translate a JSON-RPC error object into the matching lightpost exception."""
    low = message.lower()
    if code == _METHOD_NOT_FOUND:
        return MethodNotSupported(label, message[:200], code)
    for needle, exc in _ERROR_PATTERNS:
        if needle in low:
            return exc(label, message[:200], code)
    return NodeError(label, message[:200], code)


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


@dataclass
class HttpEndpoint:
    """A JSON-RPC endpoint over HTTP(S). ``url`` is never printed."""

    url: str = field(repr=False)
    label: str = "rpc"
    timeout: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    sleep: Callable[[float], None] = time.sleep
    _next_id: int = field(default=0, init=False, repr=False)

    def _connection(self) -> tuple[http.client.HTTPConnection, str]:
        """A new connection (one per request: endpoints are called from several threads)
        and the request target. A URL that cannot be parsed is reported by label only."""
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
        return kind(parts.hostname, port, timeout=self.timeout), target

    def _post(self, payload: object) -> Any:
        body = json.dumps(payload).encode()
        headers = {"content-type": "application/json", "accept": "application/json"}
        delays = backoff()
        for attempt in range(self.retries + 1):
            conn, target = self._connection()
            try:
                conn.request("POST", target, body, headers)
                resp = conn.getresponse()
                answer = resp.read(MAX_RESPONSE_BYTES + 1)
                if resp.status == 429:
                    err: TransportError = RateLimited(
                        self.label, "HTTP 429 too many requests", None
                    )
                elif not 200 <= resp.status < 300:
                    err = EndpointUnavailable(self.label, f"HTTP {resp.status}")
                elif len(answer) > MAX_RESPONSE_BYTES:
                    # a hostile or broken endpoint must not exhaust the device's memory
                    raise EndpointUnavailable(
                        self.label, f"answer larger than {MAX_RESPONSE_BYTES} bytes"
                    )
                else:
                    return json.loads(answer)
            except (http.client.HTTPException, OSError) as exc:
                err = EndpointUnavailable(self.label, f"unreachable ({type(exc).__name__})")
            except ValueError:
                err = EndpointUnavailable(self.label, "answer is not JSON")
            finally:
                conn.close()
            if attempt < self.retries:
                self.sleep(next(delays))
        raise err

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
            return map_node_error(self.label, error.get("code"), str(error.get("message", "")))
        if "result" not in answer:
            raise EndpointUnavailable(self.label, "answer has neither result nor error")
        return answer["result"]

    def call(self, method: str, params: Sequence[Any]) -> Any:
        answer = self._post(
            {"jsonrpc": "2.0", "id": self._id(), "method": method, "params": list(params)}
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
        answer = self._post(payload)
        if isinstance(answer, dict):  # some servers answer a batch with one error object
            err = self._unwrap(answer)
            raise (
                err
                if isinstance(err, NodeError)
                else EndpointUnavailable(self.label, "batch answered with a single object")
            )
        if not isinstance(answer, list):
            raise EndpointUnavailable(self.label, "batch answer is not a list")
        by_id = {a.get("id"): a for a in answer if isinstance(a, dict)}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise EndpointUnavailable(self.label, f"batch answer misses {len(missing)} entries")
        return [self._unwrap(by_id[i]) for i in ids]
