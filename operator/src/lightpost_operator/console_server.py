"""`lightpost console --config CONTROLLER.toml`: the operator's console, a local web page.

Server stack: the standard library's ``http.server.ThreadingHTTPServer`` with server-sent
events. It installs nothing (0 bytes, no dependency) and the console needs only GET of four
files and two JSON routes, one event stream and one POST; a framework (e.g. Starlette +
uvicorn: ~6 MB installed with anyio, h11, click, idna, sniffio) would add nothing the page
uses. One thread per open tab is blocked on a condition while idle; tabs are capped at
:data:`MAX_STREAMS`.

Security: bound to 127.0.0.1 by default; any other address needs a token
(``LIGHTPOST_CONSOLE_TOKEN``, never a command-line argument, which ``ps`` shows). On
loopback the ``Host`` header must be a loopback name (DNS rebinding). The page and its
API never carry an endpoint URL (endpoints are labels; texts are redacted), the key, or the
token; nothing is logged but the request path without its query. Issuing a command needs
``--allow-commands``, the controller's key unlockable on the server, a JSON POST with the
``X-Lightpost-Confirm`` header (a cross-site form cannot send it) and the operator's
explicit confirmation in the page.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from ipaddress import ip_address
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lightpost.core.keys import parse_address, to_checksum_address
from lightpost.errors import ConfigError, DecodingError, LightpostError
from lightpost.node.config import DeviceConfig, load_config
from lightpost_operator.console_model import DeviceInfo, Model, redact

__all__ = [
    "MAX_STREAMS",
    "TOKEN_ENV",
    "Console",
    "Hub",
    "add_console",
    "cmd_console",
    "load_devices",
]

TOKEN_ENV = "LIGHTPOST_CONSOLE_TOKEN"
"""Environment variable holding the access token (required off loopback)."""

COOKIE = "lightpost_console"
"""Cookie carrying the token after the first ``/?token=`` visit (HttpOnly, SameSite=Strict)."""

MAX_STREAMS = 32
"""Event streams (open tabs) served at once: each holds one thread."""

KEEPALIVE_S = 15.0
"""An idle event stream sends a comment this often (proxies and phones drop silent streams)."""

MAX_BODY_BYTES = 4096
"""Largest POST body accepted (a command's text)."""

MIN_TOKEN_CHARS = 16
"""A shorter token is refused (guessable)."""

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/console.css": ("console.css", "text/css; charset=utf-8"),
}
"""The page's files, served from the package (no CDN: the console works with no internet)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Sent with every answer: only the console's own files run in the page."""

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
"""Host-header names accepted on a loopback bind."""


class Hub:
    """The model behind a lock, with a condition the event streams wait on."""

    def __init__(self, model: Model, clock: Callable[[], float] = time.time) -> None:
        self.model = model
        self.clock = clock
        self.cond = threading.Condition()

    def apply(self, fn: Callable[[Model], None]) -> None:
        with self.cond:
            before = self.model.version
            fn(self.model)
            if self.model.version != before:
                self.cond.notify_all()

    def read(self, fn: Callable[[Model], Any]) -> Any:
        with self.cond:
            return fn(self.model)

    def wait_changes(self, version: int, timeout: float) -> tuple[list[tuple[int, str]], bool]:
        with self.cond:
            if self.model.version <= version:
                self.cond.wait(timeout)
            return self.model.changes_since(version)


def _is_loopback(host: str) -> bool:
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def load_devices(path: str | None) -> list[DeviceInfo]:
    """Device names and roles from a JSON file ``{address: {name, role, cadence_s, min_level}}``."""
    if path is None:
        return []
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read --devices {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError("--devices must be a JSON object {address: {name, role, ...}}")
    out = []
    for address, info in raw.items():
        info = info if isinstance(info, dict) else {}
        cadence = info.get("cadence_s")
        try:
            checksum = to_checksum_address(parse_address(str(address)))
        except DecodingError as exc:
            raise ConfigError(f"--devices: {address!r}: {exc.reason}") from None
        out.append(
            DeviceInfo(
                address=checksum,
                name=str(info.get("name", ""))[:40],
                role=str(info.get("role", ""))[:40],
                cadence_s=float(cadence) if isinstance(cadence, (int, float)) else None,
                min_level=info.get("min_level"),
            )
        )
    return out


def fleet_of(config: DeviceConfig, me: bytes | None, known: list[DeviceInfo]) -> list[DeviceInfo]:
    """Every device the controller follows (its channels' trusted senders) and itself."""
    by_address = {d.address: d for d in known}
    addresses: list[str] = []
    if me is not None:
        addresses.append(to_checksum_address(me))
    for channel in config.channels:
        for sender in channel.trusted:
            address = to_checksum_address(sender)
            if address not in addresses:
                addresses.append(address)
    return [by_address.get(a, DeviceInfo(address=a)) for a in addresses]


class _Handler(BaseHTTPRequestHandler):
    console: Console  # set on the subclass made per server
    protocol_version = "HTTP/1.1"
    server_version = "lightpost-console"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        return  # requests are not logged: a query may carry the token

    # -- gatekeeping -------------------------------------------------------------------------

    def _allowed(self) -> bool:
        c = self.console
        if c.loopback:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            if host not in LOOPBACK_NAMES:
                self._send(HTTPStatus.FORBIDDEN, b"forbidden host\n", "text/plain")
                return False
        if c.token is None:
            return True
        given = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[len("Bearer ") :]
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                given = value
        query = parse_qs(urlsplit(self.path).query).get("token")
        if query and urlsplit(self.path).path == "/" and hmac.compare_digest(query[0], c.token):
            # set the cookie and drop the token from the address bar (and history)
            self.send_response(HTTPStatus.SEE_OTHER)
            self.send_header("Set-Cookie", f"{COOKIE}={c.token}; HttpOnly; SameSite=Strict; Path=/")
            self.send_header("Location", "/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        if given is not None and hmac.compare_digest(given, c.token):
            return True
        self._send(HTTPStatus.UNAUTHORIZED, b"token required\n", "text/plain")
        return False

    def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = json.dumps(obj, separators=(",", ":")).encode()
        self._send(status, body, "application/json")

    # -- routes --------------------------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._allowed():
            return
        url = urlsplit(self.path)
        c = self.console
        if url.path in STATIC:
            name, ctype = STATIC[url.path]
            self._send(HTTPStatus.OK, c.static(name), ctype)
        elif url.path == "/api/state":
            state = c.hub.read(lambda m: m.snapshot(c.hub.clock()))
            state["commands_enabled"] = c.issue is not None
            self._json(state)
        elif url.path == "/api/proof":
            self._proof(parse_qs(url.query).get("key", [""])[0])
        elif url.path == "/api/events":
            self._stream(parse_qs(url.query).get("since", [""])[0])
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _proof(self, key: str) -> None:
        c = self.console
        trail = c.hub.read(lambda m: m.proof(key))
        if trail is None:
            self._json({"error": "unknown message"}, HTTPStatus.NOT_FOUND)
            return
        if c.agreement is not None:
            try:
                trail["endpoints"] = c.agreement(trail["block_number"], trail["block_hash"])
            except LightpostError:
                trail["endpoints"] = None
        self._json(trail)

    def _stream(self, since: str) -> None:
        c = self.console
        if not c.streams.acquire(blocking=False):
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"too many open tabs\n", "text/plain")
            return
        try:
            version = int(since) if since.isdigit() else c.hub.read(lambda m: m.version)
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            while not c.stopping.is_set():
                changes, reset = c.hub.wait_changes(version, KEEPALIVE_S)
                if reset:
                    self.wfile.write(b"event: reset\ndata: {}\n\n")
                    self.wfile.flush()
                    return
                if not changes:
                    self.wfile.write(b": keepalive\n\n")
                for v, line in changes:
                    chunk = f"id: {v}\ndata: {line}\n\n".encode()
                    c.sse_bytes += len(chunk)
                    c.sse_events += 1
                    self.wfile.write(chunk)
                    version = v
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            return
        finally:
            c.streams.release()

    def do_POST(self) -> None:
        if not self._allowed():
            return
        c = self.console
        if urlsplit(self.path).path != "/api/command":
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        if c.issue is None:
            self._json(
                {"error": "commands are not enabled (--allow-commands)"}, HTTPStatus.FORBIDDEN
            )
            return
        if self.headers.get("X-Lightpost-Confirm") != "yes" or not (
            self.headers.get("Content-Type", "").startswith("application/json")
        ):
            self._json({"error": "confirmation header missing"}, HTTPStatus.FORBIDDEN)
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY_BYTES:
            self._json({"error": "body too large or empty"}, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return
        try:
            body = json.loads(self.rfile.read(length))
            if body.get("confirm") is not True:
                raise ValueError("not confirmed")
            target, name = str(body["target"]), str(body["name"])
            args = [str(a) for a in body.get("args", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            self._json(
                {"error": "expected {target, name, args, confirm: true}"}, HTTPStatus.BAD_REQUEST
            )
            return
        try:
            seq = c.issue(target, name, args)
        except LightpostError as exc:
            self._json({"error": c.redact(str(exc))}, HTTPStatus.BAD_REQUEST)
            return
        self._json({"command_seq": seq})


class Console:
    """The server: the model, its one follower, and the HTTP side."""

    def __init__(
        self,
        hub: Hub,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        agreement: Callable[[int, str], dict[str, Any]] | None = None,
        issue: Callable[[str, str, list[str]], int] | None = None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.loopback = _is_loopback(host)
        if not self.loopback and token is None:
            raise ConfigError(
                f"binding the console to {host} needs a token: set {TOKEN_ENV} "
                f"(at least {MIN_TOKEN_CHARS} characters)"
            )
        if token is not None and len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"{TOKEN_ENV} must be at least {MIN_TOKEN_CHARS} characters")
        self.hub = hub
        self.token = token
        self.agreement = agreement
        self.issue = issue
        self._secrets = tuple(s for s in (*secrets, token or "") if s)
        self.streams = threading.BoundedSemaphore(MAX_STREAMS)
        self.stopping = threading.Event()
        self.sse_bytes = 0
        self.sse_events = 0
        self._static: dict[str, bytes] = {}
        handler = type("Handler", (_Handler,), {"console": self})
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        name = "127.0.0.1" if self.loopback else self.host
        return f"http://{name}:{self.port}/"

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def static(self, name: str) -> bytes:
        if name not in self._static:
            ref = resources.files("lightpost_operator") / "console_static" / name
            self._static[name] = ref.read_bytes()
        return self._static[name]

    def start(self) -> Console:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="lightpost-console-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        with self.hub.cond:
            self.hub.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()


def add_console(sub: Any) -> str:
    console = sub.add_parser(
        "console", help="operator: a live web page of the controller's devices, data and attacks"
    )
    console.add_argument("--config", required=True, help="the controller's device config")
    console.add_argument("--port", type=int, default=8642, help="port (default 8642; 0: any)")
    console.add_argument(
        "--host",
        default="127.0.0.1",
        help=f"address to bind (default 127.0.0.1; any other needs {TOKEN_ENV})",
    )
    console.add_argument(
        "--devices", default=None, help="JSON {address: {name, role, cadence_s}} for the fleet"
    )
    console.add_argument(
        "--since", type=int, default=None, help="first block to show (default: a day back)"
    )
    console.add_argument(
        "--allow-commands",
        action="store_true",
        help="let the page issue commands (needs the controller key's password on the server)",
    )
    return "lightpost_operator.console_server:cmd_console"


def open_console(
    config: DeviceConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    devices: list[DeviceInfo] | None = None,
    since: int | None = None,
    allow_commands: bool = False,
    token: str | None = None,
    log: Callable[[str], None] = lambda _line: None,
) -> tuple[Console, Any]:
    """Build and start the follower and the server; returns (console, follower)."""
    from lightpost_operator.console_follow import Follower
    from lightpost_operator.console_issue import command_issuer

    secrets = tuple(config.endpoints)
    hub = Hub(Model())

    def quiet(line: str) -> None:  # a log line never names an endpoint URL
        log(redact(line, secrets))

    follower = Follower(config, hub.apply, since=since, log=quiet)
    me = follower.me
    hub.model = Model(
        fleet_of(config, me, devices or []),
        controller=None if me is None else to_checksum_address(me),
        endpoints=config.endpoint_labels,
        secrets=secrets,
    )
    issue = command_issuer(config, hub) if allow_commands else None
    try:
        console = Console(
            hub,
            host=host,
            port=port,
            token=token,
            agreement=follower.agreement,
            issue=issue,
            secrets=secrets,
        )
    except BaseException:
        follower.stop()
        raise
    follower.start()
    return console.start(), follower


def cmd_console(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    token = os.environ.get(TOKEN_ENV) or None
    console, follower = open_console(
        config,
        host=args.host,
        port=args.port,
        devices=load_devices(args.devices),
        since=args.since,
        allow_commands=args.allow_commands,
        token=token,
        log=lambda line: print(f"console: {line}", file=sys.stderr, flush=True),
    )
    hint = "" if token is None else " (open it once with ?token=... to log in)"
    print(f"lightpost console on {console.url}{hint}; Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        console.stop()
        follower.stop()
    return 0
