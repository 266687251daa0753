"""A JSON-RPC forwarding proxy that lies on purpose: the receiver's adversary.

``LyingProxy(upstream_url, lies)`` listens on 127.0.0.1 (a free port), forwards every
request to the upstream node (anvil) and passes each answer through the lies whose
:meth:`Lie.applies` matches the method and params. Each lie counts how often it fired
(``lie.fired``); the proxy counts requests and answer bytes per method, which is how
the receiver's RPC cost is measured.

Ready-made lies (each a small :class:`Lie` subclass):

- :class:`ForgeTxInput` -- alters a transaction's ``input`` (eth_getTransactionByHash,
  full blocks).
- :class:`ForgeLogData` -- alters log data (eth_getLogs, eth_getBlockReceipts).
- :class:`InjectLog` -- adds a log that was never emitted to eth_getLogs answers.
- :class:`HideLogs` -- drops logs matching a predicate from eth_getLogs.
- :class:`WrongBlockHash` / :class:`WrongHeaderField` -- eth_getBlockByNumber answers
  with another ``hash``, or with one header field changed (hash kept).
- :class:`StaleFinalized` -- the ``finalized`` tag answers an older block.
- :class:`WrongProof` -- eth_getProof with a wrong storage value or a broken node.

Other nodes' behaviours (not lies, but what lightpost must cope with):

- :class:`Unsupported` -- a method answered with a JSON-RPC error (Hardhat and Ganache:
  eth_getBlockReceipts).
- :class:`NullTag` -- a block tag answered ``null`` (EthereumJS: ``finalized``).
- :class:`FirstTopicOnly` -- eth_getLogs filtered on the first topic only (EthereumJS).

Loopback only: the proxy binds 127.0.0.1 and refuses a non-loopback upstream.
"""

from __future__ import annotations

import copy
import json
import threading
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from lightpost.errors import ConfigError

__all__ = [
    "FirstTopicOnly",
    "ForgeLogData",
    "ForgeTxInput",
    "HideLogs",
    "InjectLog",
    "Lie",
    "LyingProxy",
    "NullTag",
    "StaleFinalized",
    "Unsupported",
    "WrongBlockHash",
    "WrongHeaderField",
    "WrongProof",
    "flip_hex",
]

LOOPBACK = "127.0.0.1"
"""The only address the proxy binds and forwards to."""

UPSTREAM_TIMEOUT_S = 30.0
"""Timeout of one forwarded request."""

Upstream = Callable[[str, Sequence[Any]], Any]
"""Lets a lie ask the upstream node a question of its own (method, params) -> result."""


def flip_hex(value: str, index: int = -1) -> str:
    """``value`` (0x-hex) with the nibble at ``index`` changed (a minimal forgery)."""
    body = list(value[2:])
    i = index % len(body)
    body[i] = "1" if body[i] != "1" else "2"
    return "0x" + "".join(body)


class Lie:
    """One way of lying. Subclasses set ``methods`` and override :meth:`rewrite`.

    ``applies`` decides per request; ``rewrite`` returns the (possibly altered) result
    and increments ``fired`` when it actually changed something.
    """

    methods: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.fired = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fired={self.fired})"

    def applies(self, method: str, params: Sequence[Any]) -> bool:
        """Whether this lie looks at the answer to (method, params)."""
        return method in self.methods

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        """The altered result."""
        return result


def _tx_objects(method: str, result: Any) -> list[dict[str, Any]]:
    if method == "eth_getTransactionByHash" and isinstance(result, dict):
        return [result]
    if method == "eth_getBlockByNumber" and isinstance(result, dict):
        return [t for t in result.get("transactions", []) if isinstance(t, dict)]
    return []


def _log_objects(method: str, result: Any) -> list[dict[str, Any]]:
    if method == "eth_getLogs" and isinstance(result, list):
        return [log for log in result if isinstance(log, dict)]
    if method == "eth_getBlockReceipts" and isinstance(result, list):
        return [log for r in result if isinstance(r, dict) for log in r.get("logs", [])]
    return []


class ForgeTxInput(Lie):
    """Change the last byte of ``input`` of transactions sent to ``to`` (any if None)."""

    methods = frozenset({"eth_getTransactionByHash", "eth_getBlockByNumber"})

    def __init__(self, to: str | None = None) -> None:
        super().__init__()
        self.to = to.lower() if to else None

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        for tx in _tx_objects(method, result):
            if len(tx.get("input", "0x")) > 2 and (self.to is None or tx.get("to") == self.to):
                tx["input"] = flip_hex(tx["input"])
                self.fired += 1
        return result


class ForgeLogData(Lie):
    """Change the last byte of every log's data (eth_getLogs and/or block receipts)."""

    def __init__(self, methods: Sequence[str] = ("eth_getLogs", "eth_getBlockReceipts")) -> None:
        super().__init__()
        self.methods = frozenset(methods)

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        for log in _log_objects(method, result):
            if len(log.get("data", "0x")) > 2:
                log["data"] = flip_hex(log["data"])
                self.fired += 1
        return result


class InjectLog(Lie):
    """Add ``make(answer)``'s logs to eth_getLogs answers (e.g. a copy of a real log
    with another payload: a log that was never emitted)."""

    methods = frozenset({"eth_getLogs"})

    def __init__(self, make: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
        super().__init__()
        self.make = make

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        if not isinstance(result, list):
            return result
        extra = self.make(copy.deepcopy(result))
        self.fired += len(extra)
        return result + extra


class HideLogs(Lie):
    """Drop the eth_getLogs entries for which ``hide(log)`` is true."""

    methods = frozenset({"eth_getLogs"})

    def __init__(self, hide: Callable[[dict[str, Any]], bool]) -> None:
        super().__init__()
        self.hide = hide

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        if not isinstance(result, list):
            return result
        kept = [log for log in result if not self.hide(log)]
        self.fired += len(result) - len(kept)
        return kept


class WrongBlockHash(Lie):
    """eth_getBlockByNumber answers carry a different ``hash`` (numbers: all if None)."""

    methods = frozenset({"eth_getBlockByNumber"})

    def __init__(self, numbers: Sequence[int] | None = None, *, nibble: int = -1) -> None:
        super().__init__()
        self.numbers = None if numbers is None else frozenset(numbers)
        self.nibble = nibble

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        wanted = self.numbers is None or (
            isinstance(result, dict) and int(result["number"], 16) in self.numbers
        )
        if isinstance(result, dict) and "hash" in result and wanted:
            result["hash"] = flip_hex(result["hash"], self.nibble)
            self.fired += 1
        return result


class WrongHeaderField(Lie):
    """eth_getBlockByNumber answers with one header field changed (``hash`` kept)."""

    methods = frozenset({"eth_getBlockByNumber"})

    def __init__(self, field: str = "receiptsRoot") -> None:
        super().__init__()
        self.field = field

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        if isinstance(result, dict) and isinstance(result.get(self.field), str):
            value = result[self.field]
            result[self.field] = flip_hex(value) if len(value) > 3 else hex(int(value, 16) + 1)
            self.fired += 1
        return result


class StaleFinalized(Lie):
    """The ``finalized`` (and ``safe``) tag answers the block ``lag`` below the truth."""

    methods = frozenset({"eth_getBlockByNumber"})

    def __init__(self, lag: int = 3) -> None:
        super().__init__()
        self.lag = lag

    def applies(self, method: str, params: Sequence[Any]) -> bool:
        return method in self.methods and bool(params) and params[0] in ("finalized", "safe")

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        if not isinstance(result, dict):
            return result
        older = max(0, int(result["number"], 16) - self.lag)
        self.fired += 1
        return upstream("eth_getBlockByNumber", [hex(older), *params[1:]])


class WrongProof(Lie):
    """eth_getProof with a wrong claimed storage value (``what="value"``), a wrong
    claimed value that is lower (``"count-down"``: claims fewer posts) or a corrupted
    account-proof node (``"account"``)."""

    methods = frozenset({"eth_getProof"})

    def __init__(self, what: str = "value") -> None:
        super().__init__()
        self.what = what

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        if not isinstance(result, dict):
            return result
        if self.what == "account" and result.get("accountProof"):
            result["accountProof"][-1] = flip_hex(result["accountProof"][-1], -3)
        else:
            for entry in result.get("storageProof", []):
                value = int(entry["value"], 16)
                entry["value"] = hex(max(0, value - 1) if self.what == "count-down" else value + 1)
        self.fired += 1
        return result


class RpcErrorAnswer:
    """What :meth:`Lie.rewrite` returns to answer with a JSON-RPC error instead of a result."""

    def __init__(self, code: int, message: str) -> None:
        self.code, self.message = code, message


class Unsupported(Lie):
    """``methods`` answered with a JSON-RPC error, as Hardhat (-32004 "Method ... is not
    supported") and Ganache (-32700) answer eth_getBlockReceipts."""

    def __init__(
        self,
        methods: Sequence[str] = ("eth_getBlockReceipts",),
        *,
        code: int = -32004,
        message: str = "Method {method} is not supported",
    ) -> None:
        super().__init__()
        self.methods = frozenset(methods)
        self.code, self.message = code, message

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        self.fired += 1
        return RpcErrorAnswer(self.code, self.message.format(method=method))


class NullTag(Lie):
    """eth_getBlockByNumber(``tag``) answers ``null`` (EthereumJS with a clique genesis:
    ``finalized``)."""

    methods = frozenset({"eth_getBlockByNumber"})

    def __init__(self, tag: str = "finalized") -> None:
        super().__init__()
        self.tag = tag

    def applies(self, method: str, params: Sequence[Any]) -> bool:
        return method in self.methods and bool(params) and params[0] == self.tag

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        self.fired += 1
        return None


class FirstTopicOnly(Lie):
    """eth_getLogs filtered on the first topic only (EthereumJS 0.10.5): the answer holds the
    genuine logs and every other log of the address with the same event topic."""

    methods = frozenset({"eth_getLogs"})

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        flt = dict(params[0]) if params and isinstance(params[0], dict) else {}
        if not isinstance(result, list) or len(flt.get("topics") or []) < 2:
            return result
        flt["topics"] = flt["topics"][:1]
        wider = upstream("eth_getLogs", [flt])
        if len(wider) > len(result):
            self.fired += 1
        return wider


class LyingProxy:
    """A threaded HTTP JSON-RPC proxy on loopback applying ``lies`` to answers."""

    def __init__(self, upstream_url: str, lies: Sequence[Lie] = (), *, label: str = "liar") -> None:
        if urlsplit(upstream_url).hostname not in (LOOPBACK, "localhost"):
            raise ConfigError("the lying proxy only forwards to a loopback upstream")
        self.upstream_url = upstream_url
        self.lies = list(lies)
        self.label = label
        self.requests: dict[str, int] = {}
        self.bytes_out: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT of the running proxy."""
        if self._server is None:
            raise ConfigError("the proxy is not started")
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def upstream(self, method: str, params: Sequence[Any]) -> Any:
        """Ask the upstream node directly (no lies)."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        return self._forward(body.encode())["result"]

    def _forward(self, body: bytes) -> Any:
        req = urllib.request.Request(self.upstream_url, body, {"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=UPSTREAM_TIMEOUT_S) as resp:
            return json.loads(resp.read())

    def _lie(self, request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        method = str(request.get("method"))
        params = request.get("params") or []
        with self._lock:
            self.requests[method] = self.requests.get(method, 0) + 1
        if "result" in answer:
            for lie in self.lies:
                if lie.applies(method, params):
                    answer["result"] = lie.rewrite(method, params, answer["result"], self.upstream)
                    if isinstance(answer["result"], RpcErrorAnswer):
                        error = answer.pop("result")
                        answer["error"] = {"code": error.code, "message": error.message}
                        break
        with self._lock:
            self.bytes_out[method] = self.bytes_out.get(method, 0) + len(json.dumps(answer))
        return answer

    def handle(self, body: bytes) -> bytes:
        """Forward one HTTP body (a request or a batch) and return the lied answer."""
        request = json.loads(body)
        answer = self._forward(body)
        if isinstance(request, list) and isinstance(answer, list):
            by_id = {a.get("id"): a for a in answer}
            answer = [self._lie(r, by_id.get(r.get("id"), {})) for r in request]
        elif isinstance(request, dict) and isinstance(answer, dict):
            answer = self._lie(request, answer)
        return json.dumps(answer).encode()

    def start(self) -> LyingProxy:
        """Listen on a free loopback port in a daemon thread."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                try:
                    out = proxy.handle(self.rfile.read(length))
                    self.send_response(200)
                except Exception:  # the upstream failed: answer like an unreachable node
                    out = b'{"error": "upstream failed"}'
                    self.send_response(502)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LyingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
