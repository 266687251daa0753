"""The console's HTTP side on loopback: who may read it, what it serves, the event stream and the
command route's confirmations (the model behind it is tests/console/test_console_model.py)."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from lightpost.errors import ConfigError
from lightpost_operator.console_model import DeviceInfo, Model
from lightpost_operator.console_server import Console, Hub

METER = "0x" + "11" * 20
TOKEN = "t0ken-" + "x" * 20
SECRET_URL = "http://127.0.0.1:1/key-abc"


def _console(**kw: Any) -> Console:
    model = Model([DeviceInfo(address=METER, name="meter-1")], secrets=[SECRET_URL])
    return Console(Hub(model), secrets=(SECRET_URL,), **kw).start()


@pytest.fixture
def console() -> Iterator[Console]:
    c = _console()
    yield c
    c.stop()


def request(
    c: Console, method: str, path: str, *, headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=headers or {})
    resp = conn.getresponse()
    out = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    conn.close()
    return out


def test_binding_off_loopback_needs_a_long_token() -> None:
    with pytest.raises(ConfigError, match="needs a token"):
        Console(Hub(Model()), host="0.0.0.0", port=0)
    with pytest.raises(ConfigError, match="at least"):
        Console(Hub(Model()), host="0.0.0.0", port=0, token="short")


def test_page_and_state_are_served_with_a_strict_policy(console: Console) -> None:
    status, headers, body = request(console, "GET", "/")
    assert status == 200 and b'src="/console.js"' in body
    assert "default-src 'self'" in headers["content-security-policy"]
    for path in ("/console.js", "/console.css"):
        assert request(console, "GET", path)[0] == 200
    status, _, body = request(console, "GET", "/api/state")
    state = json.loads(body)
    assert status == 200 and state["fleet"][0]["name"] == "meter-1"
    assert state["commands_enabled"] is False
    assert request(console, "GET", "/../../etc/passwd")[0] == 404


def test_a_foreign_host_header_is_refused_on_loopback(console: Console) -> None:
    # DNS rebinding: a web page on evil.example resolving to 127.0.0.1
    assert request(console, "GET", "/api/state", headers={"Host": "evil.example"})[0] == 403
    assert request(console, "GET", "/api/state", headers={"Host": "localhost:1"})[0] == 200


def test_with_a_token_nothing_is_served_without_it() -> None:
    c = _console(token=TOKEN)
    try:
        assert request(c, "GET", "/api/state")[0] == 401
        assert request(c, "GET", "/")[0] == 401
        bad = {"Authorization": "Bearer " + "y" * len(TOKEN)}
        assert request(c, "GET", "/api/state", headers=bad)[0] == 401
        good = {"Authorization": "Bearer " + TOKEN}
        assert request(c, "GET", "/api/state", headers=good)[0] == 200
        status, headers, _ = request(c, "GET", "/?token=" + TOKEN)
        assert status == 303 and headers["location"] == "/"  # the token leaves the address bar
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
        assert request(c, "GET", "/api/state", headers={"Cookie": cookie})[0] == 200
        assert TOKEN.encode() not in request(c, "GET", "/", headers={"Cookie": cookie})[2]
    finally:
        c.stop()


def test_the_event_stream_sends_each_change_once(console: Console) -> None:
    version = console.hub.read(lambda m: m.version)
    conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=10)
    conn.request("GET", f"/api/events?since={version}")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
    threading.Timer(0.2, lambda: console.hub.apply(lambda m: m.on_balance(METER, 7, 1.0))).start()
    lines = [resp.fp.readline() for _ in range(3)]
    conn.close()
    assert lines[0] == f"id: {version + 1}\n".encode()
    change = json.loads(lines[1].removeprefix(b"data: "))
    assert change["kind"] == "device" and change["data"]["balance_wei"] == 7
    assert lines[2] == b"\n"
    assert console.sse_events == 1 and console.sse_bytes == sum(len(x) for x in lines)


def test_tabs_beyond_the_cap_are_refused(console: Console) -> None:
    console.streams = threading.BoundedSemaphore(1)
    conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=10)
    conn.request("GET", "/api/events")
    assert conn.getresponse().status == 200
    try:
        assert request(console, "GET", "/api/events")[0] == 503
    finally:
        conn.close()


def test_commands_need_enabling_the_header_and_an_explicit_confirmation() -> None:
    issued: list[tuple[str, str, list[str]]] = []

    def issue(target: str, name: str, args: list[str]) -> int:
        issued.append((target, name, args))
        if name == "bad":
            raise ConfigError(f"invalid command near {SECRET_URL}")
        return 42

    body = {"target": METER, "name": "set", "args": ["valve=60"], "confirm": True}
    confirm = {"Content-Type": "application/json", "X-Lightpost-Confirm": "yes"}
    off = _console()
    try:
        assert request(off, "POST", "/api/command", headers=confirm, body=body)[0] == 403
    finally:
        off.stop()
    c = _console(issue=issue)
    try:
        assert json.loads(request(c, "GET", "/api/state")[2])["commands_enabled"] is True
        plain = {"Content-Type": "application/json"}  # what a cross-site form could send
        assert request(c, "POST", "/api/command", headers=plain, body=body)[0] == 403
        unconfirmed = {**body, "confirm": "yes"}
        assert request(c, "POST", "/api/command", headers=confirm, body=unconfirmed)[0] == 400
        assert issued == []
        status, _, out = request(c, "POST", "/api/command", headers=confirm, body=body)
        assert status == 200 and json.loads(out) == {"command_seq": 42}
        assert issued == [(METER, "set", ["valve=60"])]
        status, _, out = request(
            c, "POST", "/api/command", headers=confirm, body={**body, "name": "bad"}
        )
        assert status == 400 and SECRET_URL.encode() not in out and b"[redacted]" in out
    finally:
        c.stop()


def test_a_bad_devices_file_is_one_clear_error(tmp_path: Any) -> None:
    from lightpost_operator.console_server import load_devices

    path = tmp_path / "devices.json"
    path.write_text(json.dumps({"0x1234": {"name": "x"}}))
    with pytest.raises(ConfigError, match="--devices"):
        load_devices(str(path))
    path.write_text(json.dumps({METER.upper().replace("0X", "0x"): {"name": "m", "cadence_s": 2}}))
    (info,) = load_devices(str(path))
    assert info.name == "m" and info.cadence_s == 2.0
