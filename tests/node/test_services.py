"""Node services without sockets: the quorum's block time, the agent at `signed`."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lightpost.core.levels import Delivered, Level
from lightpost.errors import EndpointUnavailable, QuorumError, StoreError
from lightpost.node.chain import Chain
from lightpost.node.runtime import Node
from lightpost.node.services import quorum_time
from lightpost_agent.agent import Agent
from lightpost_agent.command import Reason, Status
from lightpost_agent.handlers import UpdateHandler
from lightpost_agent.service import AgentService
from lightpost_operator import command_cmd
from tests.node.agent_plugins import T0, delivery
from tests.node.test_agent import NOW, Outbox, cmd, make_policy, update_cmd

SECRET_URL = "https://rpc.invalid/v3/KEY123SECRET"
HONEST_TIME = T0 + 100
LIE_TIME = T0 + 10**6


def block(number: int, timestamp: int, tag: str = "aa") -> dict[str, str]:
    return {"number": hex(number), "hash": "0x" + tag * 32, "timestamp": hex(timestamp)}


@dataclass
class Blocks:
    """Answers eth_getBlockByNumber with one block for every question."""

    label: str
    answer: Any
    calls: list[Sequence[Any]] = field(default_factory=list)

    def call(self, method: str, params: Sequence[Any]) -> Any:
        assert method == "eth_getBlockByNumber"
        self.calls.append(params)
        return self.answer


def liar_first(lie: dict[str, str]) -> Chain:
    """rpc#0 (asked first, answers first) lies; rpc#1 and rpc#2 are honest; quorum 2."""
    honest = block(50, HONEST_TIME)
    return Chain([Blocks("rpc#0", lie), Blocks("rpc#1", honest), Blocks("rpc#2", honest)], 2)


@pytest.mark.parametrize(
    "lie",
    [block(50, LIE_TIME), block(50, LIE_TIME, "bb"), block(50, HONEST_TIME, "bb")],
    ids=["time", "time-and-hash", "hash"],
)
def test_quorum_time_is_the_agreed_header_not_the_first_answer(lie: dict[str, str]) -> None:
    chain = liar_first(lie)
    try:
        assert quorum_time(chain) == HONEST_TIME
    finally:
        chain.close()


def test_quorum_time_without_agreement_is_a_quorum_error() -> None:
    chain = Chain(
        [Blocks("rpc#0", block(50, T0)), Blocks("rpc#1", block(50, T0 + 1)), Blocks("rpc#2", None)],
        2,
    )
    try:
        with pytest.raises(QuorumError):
            quorum_time(chain)
    finally:
        chain.close()


def test_the_controller_dates_commands_by_the_quorum_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the old code took the latest block from whichever endpoint answered first
    monkeypatch.setattr(command_cmd, "build_chain", lambda _config: liar_first(block(50, LIE_TIME)))
    assert command_cmd._latest_block_time(None) == HONEST_TIME  # type: ignore[arg-type]


# --- the agent at `signed` ------------------------------------------------------------


class FakeReceiver:
    """Delivers scripted items once; its chain answers the block-time question."""

    def __init__(self, items: list[Delivered], chain: Chain, anchor: Any = None) -> None:
        self.items = items
        self.chain = chain
        self.anchor = anchor  # trust = beacon/both: the light client (lightpost_beacon.anchor)
        self.saved = 0  # polls whose state was saved (as the receiver does: at the end)

    def poll(self, level: Level, channel: str | None) -> Iterator[Delivered]:
        items, self.items = self.items, []
        yield from items
        self.saved += 1

    def close(self) -> None:
        self.chain.close()


def signed(seq: int, claimed_time: int) -> Delivered:
    """A `signed` delivery: the block time is one endpoint's claim (0 on the log path)."""
    c = cmd(seq, args=(("valve-1", "40"),))
    return delivery(c, level=Level.SIGNED, block_timestamp=claimed_time)


def drain(service: AgentService) -> None:
    """Step until the worker has nothing left (handlers run there)."""
    service.step(0.0)
    deadline = time.monotonic() + 10
    while service.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    service.step(1.0)


def run_signed(
    tmp_path: Path, items: list[Delivered], chain: Chain, anchor: Any = None
) -> list[Any]:
    results: list[Any] = []
    agent = Agent(make_policy(min_level=Level.SIGNED), tmp_path, Outbox(), clock=lambda: T0 + 20)
    service = AgentService(
        agent,
        FakeReceiver(items, chain, anchor),  # type: ignore[arg-type]
        level=Level.SIGNED,
        on_result=lambda _d, r: results.append(r),
    )
    try:
        drain(service)
        results.append(agent.highest_seq(items[0].sender))
    finally:
        service.close()
    return results


def test_a_signed_agent_runs_fresh_commands_judged_by_the_quorum_time(tmp_path: Path) -> None:
    # the old code judged by block_timestamp 0 and refused (and consumed) every command
    result, highest = run_signed(tmp_path, [signed(1, 0)], liar_first(block(50, LIE_TIME)))
    assert (result.status, result.reason) == (Status.EXECUTED, Reason.OK)
    assert highest == 1


def test_a_signed_agent_ignores_the_claimed_block_time(tmp_path: Path) -> None:
    # the claim says "inside the window"; the quorum's latest block is past expiry
    chain = Chain([Blocks(f"rpc#{i}", block(50, T0 + 9999)) for i in range(3)], 2)
    result, _ = run_signed(tmp_path, [signed(1, T0 + 10)], chain)
    assert result.reason is Reason.EXPIRED
    assert "chain time" in result.output


def test_no_quorum_time_refuses_without_consuming(tmp_path: Path) -> None:
    chain = Chain([Blocks("rpc#0", None), Blocks("rpc#1", None), Blocks("rpc#2", None)], 2)
    result, highest = run_signed(tmp_path, [signed(1, T0 + 10)], chain)
    assert result.reason is Reason.NO_CHAIN_TIME
    assert highest == 0  # the seq is not burnt: a later delivery can still run


class BeaconHead:
    """A synced light client whose committee-signed head is dated ``timestamp`` (None: unsynced)."""

    def __init__(self, timestamp: int | None) -> None:
        self.timestamp = timestamp

    def head(self, *, final: bool) -> Any:
        if self.timestamp is None:
            raise EndpointUnavailable("beacon", "the light client has not synced")
        return SimpleNamespace(number=50, timestamp=self.timestamp)


def test_under_beacon_trust_a_signed_agent_dates_by_the_signed_head_not_the_rpc_quorum(
    tmp_path: Path,
) -> None:
    # every RPC endpoint agrees on a time inside the window; the committee-signed head is past
    # expiry. The landed agent asked the RPC quorum and ran the expired command.
    chain = Chain([Blocks(f"rpc#{i}", block(50, T0 + 10)) for i in range(3)], 2)
    result, _ = run_signed(tmp_path, [signed(1, T0 + 10)], chain, BeaconHead(T0 + 9999))
    assert result.reason is Reason.EXPIRED
    assert f"chain time {T0 + 9999}" in result.output


def test_under_beacon_trust_an_unsynced_light_client_refuses_without_consuming(
    tmp_path: Path,
) -> None:
    chain = Chain([Blocks(f"rpc#{i}", block(50, T0 + 10)) for i in range(3)], 2)
    result, highest = run_signed(tmp_path, [signed(1, T0 + 10)], chain, BeaconHead(None))
    assert result.reason is Reason.NO_CHAIN_TIME
    assert highest == 0


# --- the node loop survives any one failing service -----------------------------------


class Flaky:
    """A service (or sender) that raises ``error`` while it is set, and counts steps."""

    def __init__(self, name: str, error: Exception | None = None) -> None:
        self.name = name
        self.error = error
        self.steps = 0
        self.problems: dict[str, str] = {}

    def step(self, now: float) -> Any:
        self.steps += 1
        if self.error is not None:
            raise self.error
        return SimpleNamespace(busy=False)

    def close(self) -> None:
        pass


def test_one_failing_service_never_stops_the_node_or_the_others() -> None:
    sender = Flaky("sender", RecursionError("maximum recursion depth exceeded"))
    receiver = Flaky("receiver", RuntimeError(f"GET {SECRET_URL} failed"))
    agent = Flaky("agent", StoreError("agent state write failed: disk is full"))
    healthy = Flaky("printer")
    lines: list[str] = []
    node = Node(sender, [receiver, agent, healthy], log=lines.append)  # type: ignore[arg-type]
    for tick in range(3):
        assert node.step(float(tick)) is False
    # every one was retried on every tick; each failure is one line, logged once
    assert [s.steps for s in (sender, receiver, agent, healthy)] == [3, 3, 3, 3]
    assert lines == [
        "sender: unexpected RecursionError (retrying)",
        "receiver: unexpected RuntimeError (retrying)",
        "agent: agent state write failed: disk is full (retrying)",
    ]
    assert not any(SECRET_URL in line for line in lines)  # foreign text may hold a key
    receiver.error = None
    node.step(3.0)
    assert lines[-1] == "receiver: working again"


def test_the_node_loop_keeps_running_through_failures() -> None:
    failing = Flaky("receiver", ValueError("boom"))
    healthy = Flaky("agent")
    node = Node(Flaky("sender"), [failing, healthy], poll_s=0.0)  # type: ignore[arg-type]
    node.run(threading.Event(), duration=0.05)
    assert failing.steps >= 2 and healthy.steps == failing.steps


# --- update downloads: a total deadline, in a worker -----------------------------------

IMAGE = b"firmware four" * 100  # 1300 bytes: ~65 s at the drip rate below


class Drip:
    """A loopback HTTP server that sends one byte every ``DRIP_S``: in the body
    (``where="body"``) or inside the headers (``where="headers"``)."""

    DRIP_S = 0.05

    def __init__(self, where: str) -> None:
        self.stop = threading.Event()
        self.finished = threading.Event()
        drip = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(IMAGE)))
                if where == "headers":
                    self.wfile.write(b"X-Slow: ")
                    drip.send(self.wfile, b"a" * len(IMAGE))
                self.end_headers()
                drip.send(self.wfile, IMAGE)
                drip.finished.set()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def send(self, out: Any, data: bytes) -> None:
        for i in range(len(data)):
            if self.stop.wait(self.DRIP_S):
                return
            out.write(data[i : i + 1])
            out.flush()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/img"

    def __enter__(self) -> Drip:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def update_delivery(seq: int = 1) -> Delivered:
    return delivery(update_cmd(seq, IMAGE, (5,)))


@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_slow_drip_download_fails_at_its_total_deadline(tmp_path: Path, where: str) -> None:
    # each byte arrives well within the per-read timeout; only a total deadline ends it
    outbox = Outbox()
    with Drip(where) as drip:
        handler = UpdateHandler(drip.url, deadline_s=0.5)
        with Agent(
            make_policy(drip.url), tmp_path, outbox, handlers={"update": handler}, clock=lambda: NOW
        ) as agent:
            result = agent.process(update_delivery())
            assert agent.installed.version == ()
        assert not drip.finished.is_set()  # cut off, not waited out
    assert result is not None
    assert (result.status, result.reason) == (Status.FAILED, Reason.FETCH_FAILED)
    assert result.output == "image download exceeded its 0.5 s deadline"
    assert not (tmp_path / "images" / "image.new").exists()


def test_the_node_loop_keeps_serving_while_an_update_downloads(tmp_path: Path) -> None:
    results: list[Any] = []
    with Drip("body") as drip:
        handler = UpdateHandler(drip.url, deadline_s=1.0)
        agent = Agent(
            make_policy(drip.url),
            tmp_path,
            Outbox(),
            handlers={"update": handler},
            clock=lambda: NOW,
        )
        chain = Chain([Blocks("rpc#0", block(50, NOW))], 1)
        receiver = FakeReceiver(
            [update_delivery(1), delivery(cmd(2, args=(("valve-1", "7"),)))], chain
        )
        service = AgentService(
            agent,
            receiver,  # type: ignore[arg-type]
            level=Level.FINAL,
            on_result=lambda _d, r: results.append(r),
        )
        other = Flaky("sender")
        node = Node(other, [service])  # type: ignore[arg-type]
        try:
            node.step(0.0)  # starts the download in the worker and returns
            assert service.busy and not drip.finished.is_set()
            for tick in range(1, 4):  # the loop goes on: the sender is served every tick
                node.step(float(tick))
            assert other.steps == 4 and results == []
            assert receiver.saved == 0  # the poll waits: a crash now redelivers both
            drain(service)  # the download hits its deadline; then the queued `set` runs
            drain(service)
        finally:
            service.close()
    assert [(r.command_seq, r.status, r.reason) for r in results] == [
        (1, Status.FAILED, Reason.FETCH_FAILED),
        (2, Status.EXECUTED, Reason.OK),
    ]
