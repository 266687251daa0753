"""Beacon endpoints as untrusted sources (lightpost_beacon.sources), scripted without a socket on
the real mainnet data (periods 862-867), plus one GET over a loopback HTTP server."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightpost.errors import EndpointUnavailable, StoreError
from lightpost_beacon import containers as beacon
from lightpost_beacon import lightclient
from lightpost_beacon.sources import (
    MAX_BOOTSTRAP_BYTES,
    BeaconLightClient,
    HttpBeaconEndpoint,
    decode_state,
    encode_state,
    load_state,
    save_state,
)
from tests.conftest import vector_path

pytest.importorskip("py_arkworks_bls12381", reason="the lightpost[beacon] extra")
from lightpost_beacon.bls import load_bls

BLS = load_bls()
CONFIG = beacon.MAINNET
ROUTE = "/eth/v1/beacon/light_client/"


def _data(name: str) -> Any:
    path = vector_path("beacon", "official-minimal-and-mainnet", "ethereum", "testdata", name)
    return json.loads(path.read_bytes())


BOOTSTRAP = _data("bootstrap.json")
UPDATES = _data("updates.json")
FINALITY = _data("finality.json")
OPTIMISTIC = _data("optimistic.json")
TRUSTED = beacon.bootstrap_from_json(BOOTSTRAP, CONFIG).header.beacon.root()
NOW = CONFIG.genesis_time + int(OPTIMISTIC["data"]["signature_slot"]) * CONFIG.seconds_per_slot


def honest_routes() -> dict[str, Any]:
    return {
        f"bootstrap/0x{TRUSTED.hex()}": BOOTSTRAP,
        "updates?start_period=862&count=1": UPDATES[:1],
        "updates?start_period=863&count=4": UPDATES[1:5],
        "finality_update": FINALITY,
        "optimistic_update": OPTIMISTIC,
    }


class Source:
    """A scripted beacon endpoint: route -> answer (an exception is raised)."""

    def __init__(self, label: str, routes: dict[str, Any]) -> None:
        self.label = label
        self.routes = routes
        self.asked: list[str] = []

    def get(self, path: str, cap: int) -> Any:
        assert path.startswith(ROUTE)
        route = path[len(ROUTE) :]
        self.asked.append(route)
        answer = self.routes.get(route, EndpointUnavailable(self.label, "HTTP 404"))
        if isinstance(answer, Exception):
            raise answer
        return copy.deepcopy(answer)


def client(*sources: Source) -> tuple[BeaconLightClient, list[tuple[str, str]]]:
    blamed: list[tuple[str, str]] = []
    lc = BeaconLightClient(
        list(sources), CONFIG, BLS, clock=lambda: NOW, blame=lambda *b: blamed.append(b)
    )
    return lc, blamed


def _flip_hex(value: str) -> str:
    return value[:2] + ("1" if value[2] != "1" else "2") + value[3:]


def lying_routes() -> dict[str, Any]:
    """Every answer tampered, each in a way the protocol names."""
    routes = copy.deepcopy(honest_routes())
    routes[f"bootstrap/0x{TRUSTED.hex()}"]["data"]["current_sync_committee"]["pubkeys"].reverse()
    for update in routes["updates?start_period=863&count=4"]:  # bad signature
        agg = update["data"]["sync_aggregate"]
        agg["sync_committee_signature"] = _flip_hex(agg["sync_committee_signature"])
    first = routes["updates?start_period=862&count=1"][0]["data"]  # too few signers
    first["sync_aggregate"]["sync_committee_bits"] = "0x" + "00" * 64
    routes["finality_update"]["data"]["finality_branch"][0] = "0x" + "11" * 32  # wrong branch
    execution = routes["optimistic_update"]["data"]["attested_header"]["execution"]
    execution["block_hash"] = "0x" + "ab" * 32  # a block the committee never signed
    return routes


def test_honest_source_syncs_to_the_mainnet_head() -> None:
    lc, blamed = client(Source("beacon#0", honest_routes()))
    lc.start(TRUSTED)
    store = lc.sync()
    assert blamed == []
    assert store.finalized_header.beacon.slot == 7109344
    assert store.optimistic_header.beacon.slot == 7109431
    execution = store.optimistic_header.execution
    assert execution is not None and execution.block_number == 17923113


def test_head_updates_are_asked_once_a_slot_and_finality_once_an_epoch() -> None:
    """Every receiver poll (1 s) used to ask both head routes of every endpoint: 633 MB a day
    at mainnet cadence. Now: nothing at all twice in a slot; finality again only in a new
    epoch (a missing next-committee update is asked again once a slot, not every poll)."""
    source = Source("beacon#0", honest_routes())
    lc, blamed = client(source)
    lc.start(TRUSTED)
    lc.sync()
    assert source.asked[-2:] == ["finality_update", "optimistic_update"]
    asked = len(source.asked)
    lc.sync()  # the same slot: nothing new can be signed
    assert len(source.asked) == asked

    def head(since: int) -> list[str]:
        return [r for r in source.asked[since:] if not r.startswith("updates?")]

    lc.clock = lambda: NOW + 12  # the next slot, finality already seen this epoch
    lc.sync()
    assert head(asked) == ["optimistic_update"]
    asked = len(source.asked)
    lc.clock = lambda: NOW + 12 * 32  # the next epoch
    lc.sync()
    assert head(asked) == ["finality_update", "optimistic_update"]
    assert blamed == []


def test_a_lying_source_is_refused_by_rule_and_the_honest_one_used() -> None:
    liar, honest = Source("beacon#0", lying_routes()), Source("beacon#1", honest_routes())
    lc, blamed = client(liar, honest)
    lc.start(TRUSTED)
    store = lc.sync()
    assert store.finalized_header.beacon.slot == 7109344
    assert store.optimistic_header.beacon.slot == 7109431
    execution = store.optimistic_header.execution
    assert execution is not None and execution.block_hash != b"\xab" * 32
    rules = [reason.split("(")[1].split(")")[0] for label, reason in blamed]
    assert {label for label, _ in blamed} == {"beacon#0"}
    expected = ["committee_branch", "participants", "signature", "finality_branch"]
    assert rules == [*expected, "execution_branch"]


def test_only_liars_leave_the_store_where_it_was() -> None:
    lc, blamed = client(Source("beacon#0", honest_routes()))
    before = lc.start(TRUSTED)
    lc.sources = [Source("beacon#1", lying_routes())]
    assert lc.sync() == before
    rules = [reason.split("(")[1].split(")")[0] for _, reason in blamed]
    # the head updates are signed by a committee not known yet: skipped, not blamed
    assert rules == ["participants"]
    assert lc.store == before
    with pytest.raises(EndpointUnavailable):
        lc.start(TRUSTED)
    assert blamed[-1][0] == "beacon#1" and "committee_branch" in blamed[-1][1]


def test_a_source_that_is_down_is_skipped_not_blamed() -> None:
    down = Source(
        "beacon#0", {r: EndpointUnavailable("beacon#0", "HTTP 503") for r in honest_routes()}
    )
    lc, blamed = client(down, Source("beacon#1", honest_routes()))
    lc.start(TRUSTED)
    assert lc.sync().optimistic_header.beacon.slot == 7109431
    assert blamed == []


def test_a_future_answer_is_refused() -> None:
    lc, blamed = client(Source("beacon#0", honest_routes()))
    lc.clock = lambda: NOW - 24  # the optimistic update's signature slot is now 2 slots ahead
    lc.start(TRUSTED)
    lc.sync()
    assert any("future_slot" in reason for _, reason in blamed)


def test_state_is_constant_size_and_round_trips(tmp_path: Path) -> None:
    lc, _ = client(Source("beacon#0", honest_routes()))
    lc.start(TRUSTED)
    sizes = []
    for routes in (["updates?start_period=862&count=1"], list(honest_routes())):
        lc.sources = [Source("beacon#0", {r: honest_routes()[r] for r in routes})]
        store = lc.sync()
        path = tmp_path / "beacon.json"
        save_state(path, store)
        sizes.append(path.stat().st_size)
        loaded = load_state(path, CONFIG)
        assert loaded is not None
        assert loaded.finalized_header == store.finalized_header
        assert loaded.current_sync_committee == store.current_sync_committee
        assert loaded.next_sync_committee == store.next_sync_committee
    # at most two committees' raw keys and one header, however many periods were crossed
    assert max(sizes) <= 2 * 513 * 48 + 4096
    assert load_state(tmp_path / "absent.json", CONFIG) is None


@given(
    st.binary(max_size=64)
    | st.sampled_from([b"{}", b'{"version":1}', b"[]", b"null", b'{"version":1}\n' + bytes(48)])
)
def test_a_corrupt_state_is_one_clear_error(raw: bytes) -> None:
    with pytest.raises(StoreError):
        decode_state(raw, CONFIG)


def test_state_codec_round_trips_the_real_store() -> None:
    data = beacon.bootstrap_from_json(BOOTSTRAP, CONFIG)
    store = lightclient.bootstrap(CONFIG, TRUSTED, data, current_slot=data.header.beacon.slot)
    again = decode_state(encode_state(store), CONFIG)
    assert again == store


# --- one GET over a loopback server ---


@pytest.fixture
def beacon_server() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = json.dumps(BOOTSTRAP).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/base/", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http_endpoint_gets_the_route_under_the_base_path(
    beacon_server: tuple[str, list[str]],
) -> None:
    url, seen = beacon_server
    lc = BeaconLightClient(
        [HttpBeaconEndpoint(url=url, label="beacon#0")], CONFIG, BLS, clock=lambda: NOW
    )
    store = lc.start(TRUSTED)
    assert store.finalized_header.beacon.root() == TRUSTED
    assert seen == [f"/base/eth/v1/beacon/light_client/bootstrap/0x{TRUSTED.hex()}"]
    small = HttpBeaconEndpoint(url=url, label="beacon#0", retries=0)
    with pytest.raises(EndpointUnavailable, match="larger than"):
        small.get("/eth/v1/beacon/light_client/bootstrap/0x00", MAX_BOOTSTRAP_BYTES // 8)
