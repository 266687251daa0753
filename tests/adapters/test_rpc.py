"""The HTTP JSON-RPC adapter against a scripted loopback server: status codes, bodies
and broken URLs map to lightpost errors; retries only for transport trouble; time, bytes,
depth and text of an answer are bounded."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lightpost.adapters.rpc import (
    MAX_ANSWER_BYTES,
    MAX_BLOCK_ANSWER_BYTES,
    MAX_FULL_BLOCK_ANSWER_BYTES,
    MAX_LOGS_ANSWER_BYTES,
    HttpEndpoint,
    answer_cap,
)
from lightpost.errors import (
    AnswerTooLarge,
    EndpointUnavailable,
    NodeError,
    NonceTooLow,
    RateLimited,
)

SECRET = "APIKEY-123"


Writer = Callable[[BaseHTTPRequestHandler], None]
"""A raw answer: writes the status line, headers and body itself (slow drips, lies)."""


class Script:
    """What the server answers next: (status, body) pairs or raw writers, the last one
    repeated."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes] | Writer] = []
        self.seen: list[tuple[str, dict[str, object]]] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            script.seen.append((self.path, json.loads(body)))
            step = script.answers.pop(0) if len(script.answers) > 1 else script.answers[0]
            if callable(step):
                with contextlib.suppress(OSError):  # the client hung up (deadline, cap)
                    step(self)
                return
            status, answer = step
            self.send_response(status)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/{SECRET}?x=1", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def endpoint(url: str, **kw: object) -> HttpEndpoint:
    return HttpEndpoint(url, label="rpc#0", sleep=lambda _s: None, **kw)  # type: ignore[arg-type]


def ok(result: object) -> tuple[int, bytes]:
    return 200, json.dumps({"jsonrpc": "2.0", "id": 1, "result": result}).encode()


def test_call_posts_to_the_url_path_and_returns_the_result(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [ok("0x7a69")]
    assert endpoint(url).call("eth_chainId", []) == "0x7a69"
    path, request = script.seen[0]
    assert path == f"/v1/{SECRET}?x=1"
    assert request["method"] == "eth_chainId" and request["jsonrpc"] == "2.0"


def test_node_error_is_mapped_and_not_retried(server: tuple[str, Script]) -> None:
    url, script = server
    error = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "nonce too low"}}
    script.answers = [(200, json.dumps(error).encode())]
    with pytest.raises(NonceTooLow):
        endpoint(url).call("eth_sendRawTransaction", ["0x00"])
    assert len(script.seen) == 1


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        ((429, b"slow down"), RateLimited, "HTTP 429"),
        ((503, b"busy"), EndpointUnavailable, "HTTP 503"),
        ((302, b""), EndpointUnavailable, "HTTP 302"),  # redirects are not followed
        ((200, b"<html>"), EndpointUnavailable, "not JSON"),
        ((200, b"[1]"), EndpointUnavailable, "not a JSON-RPC 2.0 response"),
    ],
)
def test_bad_answers_are_retried_then_one_clear_error(
    server: tuple[str, Script], answer: tuple[int, bytes], error: type, text: str
) -> None:
    url, script = server
    script.answers = [answer]
    with pytest.raises(error, match=re.escape(text)) as err:
        endpoint(url, retries=2).call("eth_chainId", [])
    assert SECRET not in str(err.value) and "rpc#0" in str(err.value)
    retried = 3 if "JSON-RPC" not in text else 1  # a well-formed non-answer is not retried
    assert len(script.seen) == retried


def test_transport_failure_recovers_on_retry(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(503, b""), ok("0x1")]
    assert endpoint(url, retries=1).call("eth_blockNumber", []) == "0x1"


@pytest.mark.parametrize(
    ("url", "text"),
    [
        (f"http://[{SECRET}/", "URL is not valid"),
        (f"ftp://127.0.0.1/{SECRET}", "URL is not http(s)"),
        (f"http://127.0.0.1:1/{SECRET}", "unreachable (ConnectionRefusedError)"),
        (f"http://{SECRET}..invalid/", "unreachable (UnicodeError)"),  # was: UnicodeError raised
    ],
)
def test_broken_urls_never_echo_the_url(url: str, text: str) -> None:
    with pytest.raises(EndpointUnavailable, match=re.escape(text)) as err:
        endpoint(url, retries=0).call("eth_chainId", [])
    assert SECRET not in str(err.value)


def test_environment_proxies_are_not_used(
    server: tuple[str, Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, script = server
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    script.answers = [ok("0x2")]
    assert endpoint(url, retries=0).call("eth_blockNumber", []) == "0x2"


# --- bounds: time ----------------------------------------------------------------------

DRIP_S = 0.05
"""Pause between two dripped bytes: each read succeeds long before a per-read timeout."""


def drip(text: bytes) -> Writer:
    def write(handler: BaseHTTPRequestHandler) -> None:
        for i in range(len(text)):
            handler.wfile.write(text[i : i + 1])
            handler.wfile.flush()
            time.sleep(DRIP_S)

    return write


def _answer_bytes(result: object) -> bytes:
    body = ok(result)[1]
    return b"HTTP/1.0 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_slow_drip_is_cut_off_at_the_total_deadline(
    server: tuple[str, Script], where: str
) -> None:
    # ~3 s of drip at 20 bytes/s; every read returns within 0.05 s, so only a total
    # deadline (0.5 s here, retries included) stops it. The old per-read timeout read it
    # all and returned the answer.
    url, script = server
    raw = _answer_bytes("0x" + "11" * 20)
    split = raw.index(b"\r\n\r\n") + 4
    head, body = raw[:split], raw[split:]

    def headers_then_body(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(head)
        handler.wfile.flush()
        drip(body)(handler)

    script.answers = [drip(raw) if where == "headers" else headers_then_body]
    with pytest.raises(EndpointUnavailable, match=r"no complete answer within 0.5 s") as err:
        endpoint(url, timeout=0.5, retries=2).call("eth_chainId", [])
    assert str(err.value).startswith("rpc#0: ") and SECRET not in str(err.value)
    assert len(script.seen) == 1  # no retry once the deadline has passed


def test_retries_and_backoff_fit_inside_the_deadline(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(503, b"busy")]
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    ep = HttpEndpoint(
        url, label="rpc#0", timeout=1.0, retries=10, sleep=sleep, clock=lambda: now[0]
    )
    with pytest.raises(EndpointUnavailable, match="HTTP 503"):
        ep.call("eth_chainId", [])
    # attempts at t = 0, 0.2, 0.6; the next backoff (0.8 s) would end past the deadline
    assert len(script.seen) == 3 and now[0] == pytest.approx(0.6)


# --- bounds: bytes ---------------------------------------------------------------------


def test_caps_are_per_method() -> None:
    assert answer_cap("eth_chainId", []) == MAX_ANSWER_BYTES
    assert answer_cap("eth_getLogs", [{}]) == MAX_LOGS_ANSWER_BYTES
    assert answer_cap("eth_getBlockByNumber", ["0x1", False]) == MAX_BLOCK_ANSWER_BYTES
    assert answer_cap("eth_getBlockByNumber", ["0x1", True]) == MAX_FULL_BLOCK_ANSWER_BYTES
    assert answer_cap("eth_getBlockByHash", ["0x00", True]) == MAX_FULL_BLOCK_ANSWER_BYTES
    assert MAX_ANSWER_BYTES < MAX_LOGS_ANSWER_BYTES < MAX_FULL_BLOCK_ANSWER_BYTES


def test_a_content_length_above_the_cap_is_refused_before_reading(
    server: tuple[str, Script],
) -> None:
    url, script = server
    claimed = MAX_ANSWER_BYTES + 1

    def liar(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(b"HTTP/1.0 200 OK\r\ncontent-length: %d\r\n\r\n{" % claimed)

    script.answers = [liar]
    with pytest.raises(AnswerTooLarge, match=f"answer larger than {MAX_ANSWER_BYTES} bytes"):
        endpoint(url, retries=2).call("eth_chainId", [])
    assert len(script.seen) == 1


def _unsized(body: bytes) -> Writer:
    """An answer without Content-Length (read until the server closes)."""

    def write(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(b"HTTP/1.0 200 OK\r\n\r\n" + body)

    return write


def test_an_unsized_answer_is_cut_at_its_methods_cap(server: tuple[str, Script]) -> None:
    url, script = server
    logs = [{"data": "0x" + "ab" * 1000}] * 1000  # ~2 MB: too big for a scalar, fine as logs
    script.answers = [_unsized(ok(logs)[1])]
    with pytest.raises(AnswerTooLarge, match=f"answer larger than {MAX_ANSWER_BYTES}"):
        endpoint(url).call("eth_chainId", [])
    assert endpoint(url).call("eth_getLogs", [{}]) == logs


# --- bounds: depth, malformed answers, text --------------------------------------------


@pytest.mark.parametrize("depth", [40, 100_000])
def test_deep_nesting_is_the_endpoints_error_not_a_crash(
    server: tuple[str, Script], depth: int
) -> None:
    url, script = server
    script.answers = [_unsized(b'{"jsonrpc":"2.0","id":1,"result":' + b"[" * depth)]
    with pytest.raises(EndpointUnavailable, match="answer is nested deeper than 32 levels"):
        endpoint(url, retries=0).call("eth_chainId", [])


def test_batch_ids_that_cannot_be_keys_are_a_clear_error(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers = [(200, json.dumps([{"jsonrpc": "2.0", "id": [1], "result": "0x1"}]).encode())]
    with pytest.raises(EndpointUnavailable, match="misses 1 entries"):
        endpoint(url, retries=0).batch([("eth_chainId", [])])


@pytest.mark.parametrize(
    "message",
    ['boom\x1b[2J\x1b]0;owned\x07\n{"fake":"log"}\r\u2028\u202e', ["not", "text"]],
)
def test_node_error_text_is_sanitized(server: tuple[str, Script], message: object) -> None:
    url, script = server
    error = {"jsonrpc": "2.0", "id": 1, "error": {"code": {"x": 1}, "message": message}}
    script.answers = [(200, json.dumps(error).encode())]
    with pytest.raises(NodeError) as err:
        endpoint(url).call("eth_chainId", [])
    text = str(err.value)
    assert text.isprintable() and err.value.code is None
    assert "\x1b" not in text and "\n" not in text and "\u2028" not in text
    if isinstance(message, str):
        assert text == r'rpc#0: boom\x1b[2J\x1b]0;owned\x07\n{"fake":"log"}\r\u2028\u202e'


# --- TLS: the handshake is inside the deadline too --------------------------------------

CERTS = Path(sysconfig.get_path("stdlib")) / "test" / "certdata"
"""CPython's own test certificates: keycert3.pem (CN=localhost) signed by pycacert.pem."""


@pytest.mark.skipif(not (CERTS / "keycert3.pem").exists(), reason="no CPython test certs")
def test_https_round_trip(server: tuple[str, Script], monkeypatch: pytest.MonkeyPatch) -> None:
    url, script = server
    httpd_port = url.split(":")[2].split("/")[0]
    tls_server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls_server.load_cert_chain(CERTS / "keycert3.pem")
    proxy = socket.create_server(("127.0.0.1", 0))

    def relay() -> None:  # TLS on the outside, the scripted plain server inside
        conn, _ = proxy.accept()
        with tls_server.wrap_socket(conn, server_side=True) as tls:
            request = b""
            while b"\r\n\r\n" not in request:
                request += tls.recv(65536)
            length = int(re.findall(rb"content-length: (\d+)", request, re.I)[0])
            while len(request.split(b"\r\n\r\n", 1)[1]) < length:
                request += tls.recv(65536)
            with socket.create_connection(("127.0.0.1", int(httpd_port))) as plain:
                plain.sendall(request)
                while chunk := plain.recv(65536):
                    tls.sendall(chunk)

    threading.Thread(target=relay, daemon=True).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(CERTS / "pycacert.pem"))
    script.answers = [ok("0x7a69")]
    tls_url = f"https://localhost:{proxy.getsockname()[1]}/v1/{SECRET}?x=1"
    try:
        assert endpoint(tls_url, retries=0).call("eth_chainId", []) == "0x7a69"
    finally:
        proxy.close()


def test_a_slow_tls_handshake_is_cut_off_at_the_deadline() -> None:
    # A server that drips a (never ending) handshake record: each byte arrives well within
    # a per-read timeout, so only a deadline on the whole handshake stops it.
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def dripper() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)  # the ClientHello
            conn.sendall(b"\x16\x03\x03\x40\x00")  # a 16 KiB handshake record follows...
            while not stop.wait(DRIP_S):
                conn.sendall(b"\x00")

    threading.Thread(target=dripper, daemon=True).start()
    url = f"https://127.0.0.1:{listener.getsockname()[1]}/{SECRET}"
    try:
        with pytest.raises(EndpointUnavailable, match=r"no complete answer within 0.5 s") as err:
            endpoint(url, timeout=0.5, retries=2).call("eth_chainId", [])
        assert SECRET not in str(err.value)
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize(
    ("code", "message", "missing"),
    [
        (-32601, "anything at all", True),
        (-32000, "the method eth_getBlockReceipts does not exist/is not available", True),  # geth
        (-32700, "The method eth_getBlockReceipts does not exist/is not available", True),
        (-32004, "Method eth_getBlockReceipts is not supported", True),  # Hardhat
        (-32000, "Method not found", True),
        (-32000, "Unsupported method: debug_getRawReceipts on ETH_MAINNET", True),
        (-32000, "debug_getRawReceipts not supported for pruned blocks", False),
        (-32000, "transaction type not supported", False),
        (-32000, "historical state not supported: pruned", False),
    ],
)  # fmt: skip
def test_only_a_named_missing_method_is_method_not_supported(
    code: int, message: str, missing: bool
) -> None:
    """One answer's "not supported" must not mark the method unsupported for good."""
    from lightpost.adapters.rpc import map_node_error
    from lightpost.errors import MethodNotSupported

    assert isinstance(map_node_error("rpc#0", code, message), MethodNotSupported) is missing
