"""The HTTP JSON-RPC adapter against a scripted loopback server: status codes, bodies
and broken URLs map to lightpost errors; retries only for transport trouble."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.errors import EndpointUnavailable, NonceTooLow, RateLimited

SECRET = "APIKEY-123"


class Script:
    """What the server answers next: (status, body) pairs, the last one repeated."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes]] = []
        self.seen: list[tuple[str, dict[str, object]]] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            script.seen.append((self.path, json.loads(body)))
            status, answer = script.answers.pop(0) if len(script.answers) > 1 else script.answers[0]
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
