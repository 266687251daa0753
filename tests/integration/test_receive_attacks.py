"""The receiver against lying endpoints on a real anvil (issue #5's done-bar).

One chain per module: two trusted senders (A, B) and an untrusted one (C) post on
channel ``c1`` -- broadcasts, a message to this device, one to another device (not
delivered, but it advances A's seq), a chunked message -- then blocks are mined so
everything is final. Each attack puts a :class:`LyingProxy` in front of anvil as one
(or two) of three endpoints, the liar first so it is always asked first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.envelope import Message
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem
from lightpost.node.config import load_config
from lightpost.node.receiver import Receiver
from lightpost_operator.anvil import AnvilProcess
from lightpost_operator.proxy import (
    ForgeLogData,
    ForgeTxInput,
    HideLogs,
    InjectLog,
    Lie,
    LyingProxy,
    StaleFinalized,
    WrongBlockHash,
    WrongHeaderField,
    WrongProof,
    flip_hex,
)
from tests.conftest import NODES, run_cli
from tests.integration.receive_chain import InboxChain, MeteredEndpoint, hx, text, write_config

pytestmark = pytest.mark.integration

CHUNKED = bytes(range(256)) * 3
"""A 768-byte message cut into chunks (max_post_bytes 400)."""


class World:
    """The module's chain, its posts and the honest expectation."""

    def __init__(self, anvil: AnvilProcess) -> None:
        self.anvil = anvil
        self.chain = c = InboxChain(anvil.url)
        self.a, self.b, self.c = c.keys[1], c.keys[2], c.keys[3]
        self.me = c.keys[0].address
        other = bytes.fromhex("11" * 20)
        c.post(self.a, "c1", [text(0, "a0"), text(1, "a1")])
        self.to_me = c.post(self.a, "c1", [text(2, "a2 for me")], recipient=self.me)
        c.post(self.a, "c1", [text(3, "a3 for another device")], recipient=other)
        c.post_messages(
            self.a,
            "c1",
            [Message(seq=4, timestamp=5, content_type=0, payload=CHUNKED)],
            max_post_bytes=400,
        )
        c.post(self.b, "c1", [text(0, "b0")])
        self.untrusted = c.post(self.c, "c1", [text(0, "c0 untrusted")])
        c.mine()
        self.expected = {
            (self.a.address, 0, b"a0"),
            (self.a.address, 1, b"a1"),
            (self.a.address, 2, b"a2 for me"),
            (self.a.address, 4, CHUNKED),
            (self.b.address, 0, b"b0"),
        }

    def config(self, tmp: Path, urls: list[str], quorum: int = 2) -> Any:
        return load_config(
            write_config(
                tmp,
                endpoints=urls,
                quorum=quorum,
                inbox=self.chain.inbox,
                me=self.me,
                trusted={"c1": [self.a.address, self.b.address]},
                chain_id=self.chain.chain_id,
            )
        )

    def receive(
        self,
        tmp: Path,
        lies: list[list[Lie]],
        level: Level,
        honest: int = 1,
        quorum: int = 2,
        asked: list[tuple[str, Any]] | None = None,
    ) -> tuple[list[Delivered], list[Problem], list[LyingProxy]]:
        proxies = [LyingProxy(self.anvil.url, group).start() for group in lies]
        try:
            urls = [p.url for p in proxies] + [self.anvil.url] * honest
            config = self.config(tmp, urls, quorum)
            endpoints: list[Any] = [
                Recording(
                    HttpEndpoint(u, f"rpc#{i}", retries=0), asked if asked is not None else []
                )
                for i, u in enumerate(urls)
            ]
            with Receiver(config, endpoints=endpoints) as receiver:
                out = list(receiver.poll(level))
        finally:
            for p in proxies:
                p.stop()
        return (
            [o for o in out if isinstance(o, Delivered)],
            [o for o in out if isinstance(o, Problem)],
            proxies,
        )


class Recording:
    """An endpoint that appends every (method, params) it is asked to ``asked``."""

    def __init__(self, inner: HttpEndpoint, asked: list[tuple[str, Any]]) -> None:
        self.inner, self.asked, self.label = inner, asked, inner.label

    def call(self, method: str, params: Any) -> Any:
        self.asked.append((method, list(params)))
        return self.inner.call(method, params)

    def batch(self, calls: Any) -> list[Any]:
        return [self.call(m, p) for m, p in calls]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    from lightpost_operator.anvil import free_port

    proc = AnvilProcess(port=free_port()).start()
    try:
        yield World(proc)
    finally:
        proc.stop()


def _got(delivered: list[Delivered]) -> set[tuple[bytes, int, bytes]]:
    return {(d.sender, d.seq, d.payload) for d in delivered}


def _kinds(problems: list[Problem]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in problems:
        out[p.kind] = out.get(p.kind, 0) + 1
    return out


def _fake_log(world: World) -> Any:
    def make(answer: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not answer:
            return []
        fake = dict(answer[0])
        fake["data"] = flip_hex(fake["data"], -4)  # another payload, same everything else
        return [fake]

    return make


def _hide_to_me(world: World) -> Any:
    tx_hash = world.to_me["transactionHash"]
    return lambda log: log.get("transactionHash") == tx_hash


# --- honest baseline -----------------------------------------------------------------


@pytest.fixture(scope="module")
def ganache_world(ganache: AnvilProcess) -> World:
    """The same posts on Ganache (no eth_getBlockReceipts: per-transaction receipts)."""
    return World(ganache)


@pytest.mark.parametrize("on", NODES)
@pytest.mark.parametrize("level", list(Level))
def test_honest_endpoints_deliver_everything_once(
    request: pytest.FixtureRequest, tmp_path: Path, level: Level, on: str
) -> None:
    world: World = request.getfixturevalue("world" if on == "anvil" else "ganache_world")
    asked: list[tuple[str, Any]] = []
    delivered, problems, _ = world.receive(tmp_path, [], level, honest=3, asked=asked)
    assert _got(delivered) == world.expected
    assert len(delivered) == len(world.expected)
    # Finding 6: the untrusted sender C's post is filtered out before any fetch (it was
    # proven, then reported `unauthorized`, before): no problem, no block, no tx asked.
    assert problems == []
    c_block = world.untrusted["blockNumber"]
    c_tx = world.untrusted["transactionHash"]
    assert not [a for a in asked if a[1][:1] in ([c_block], [c_tx])], asked
    assert all(d.level == level for d in delivered)
    # in order per stream
    a_seqs = [d.seq for d in delivered if d.sender == world.a.address]
    assert a_seqs == sorted(a_seqs)


# --- one of three endpoints lies -------------------------------------------------------

ONE_LIAR = [
    (
        "forged calldata",
        lambda w: [ForgeTxInput(to=hx(w.chain.inbox))],
        Level.SIGNED,
        "proof-failure",
    ),
    (
        "forged calldata (block)",
        lambda w: [ForgeTxInput(to=hx(w.chain.inbox))],
        Level.FINAL,
        "proof-failure",
    ),
    ("forged log data", lambda w: [ForgeLogData()], Level.COMPLETE, "proof-failure"),
    ("forged log data, signed", lambda w: [ForgeLogData()], Level.SIGNED, "proof-failure"),
    ("fake log", lambda w: [InjectLog(_fake_log(w))], Level.COMPLETE, "proof-failure"),
    ("fake log, signed", lambda w: [InjectLog(_fake_log(w))], Level.SIGNED, "proof-failure"),
    ("hidden message", lambda w: [HideLogs(_hide_to_me(w))], Level.COMPLETE, "hidden"),
    ("wrong block hash", lambda w: [WrongBlockHash()], Level.COMPLETE, "proof-failure"),
    (
        "wrong header field",
        lambda w: [WrongHeaderField("stateRoot")],
        Level.COMPLETE,
        "proof-failure",
    ),
    (
        "wrong receipts root",
        lambda w: [WrongHeaderField("receiptsRoot")],
        Level.FINAL,
        "proof-failure",
    ),
    ("stale finalized head", lambda w: [StaleFinalized(lag=3)], Level.FINAL, None),
    ("wrong eth_getProof value", lambda w: [WrongProof("value")], Level.COMPLETE, "proof-failure"),
    ("wrong eth_getProof node", lambda w: [WrongProof("account")], Level.COMPLETE, "proof-failure"),
]


@pytest.mark.parametrize(("name", "make", "level", "kind"), ONE_LIAR, ids=[x[0] for x in ONE_LIAR])
def test_one_liar_of_three_forges_nothing(
    world: World, tmp_path: Path, name: str, make: Any, level: Level, kind: str | None
) -> None:
    delivered, problems, proxies = world.receive(tmp_path, [make(world)], level, honest=2)
    liar = proxies[0]
    assert all(lie.fired for lie in liar.lies), f"{name}: the lie never fired"
    # Nothing forged is delivered, nothing honest is lost, each message once.
    assert _got(delivered) == world.expected
    assert len(delivered) == len(world.expected)
    kinds = _kinds(problems)
    if kind is not None:
        assert kinds.get(kind), f"{name}: expected a {kind} problem, got {kinds}"
        blamed = {e for p in problems if p.kind == kind for e in p.endpoints}
        assert blamed <= {"rpc#0"}, f"{name}: an honest endpoint was blamed: {blamed}"
    if name == "hidden message":
        hidden = [p for p in problems if p.kind == "hidden"]
        assert hidden[0].endpoints == ("rpc#0",)
        assert hidden[0].tx_hash == bytes.fromhex(world.to_me["transactionHash"][2:])


def test_a_message_hidden_by_every_endpoint_is_detected(world: World, tmp_path: Path) -> None:
    """All endpoints hide the post addressed to this device: eth_getLogs cannot tell,
    the eth_getProof of A's (acc, count) can."""
    hide = _hide_to_me(world)
    delivered, problems, _ = world.receive(
        tmp_path / "complete", [[HideLogs(hide)]], Level.COMPLETE, honest=0, quorum=1
    )
    hidden = [p for p in problems if p.kind == "hidden"]
    assert len(hidden) == 1 and hidden[0].sender == world.a.address and hidden[0].missing == 1
    # Stream A is incomplete: nothing of it is delivered at `complete`; B is.
    assert _got(delivered) == {(world.b.address, 0, b"b0")}
    # At `final` the same lie shows as a held gap: a2 missing, a4 held behind it.
    delivered, problems, _ = world.receive(
        tmp_path / "final", [[HideLogs(hide)]], Level.FINAL, honest=0, quorum=1
    )
    assert _got(delivered) == {
        (world.a.address, 0, b"a0"),
        (world.a.address, 1, b"a1"),
        (world.b.address, 0, b"b0"),
    }
    gaps = [p for p in problems if p.kind == "gap"]
    assert len(gaps) == 1 and gaps[0].seq == 2 and gaps[0].missing == 1


# --- two of three endpoints lie ---------------------------------------------------------

TWO_LIARS = [
    ("same wrong block hash", lambda: [[WrongBlockHash()], [WrongBlockHash()]], True),
    (
        "different wrong block hashes",
        lambda: [[WrongBlockHash()], [WrongBlockHash(nibble=-5)]],
        True,
    ),
    ("stale finalized head", lambda: [[StaleFinalized(lag=3)], [StaleFinalized(lag=3)]], False),
    ("forged log data", lambda: [[ForgeLogData()], [ForgeLogData()]], False),
    ("wrong proofs", lambda: [[WrongProof("value")], [WrongProof("count-down")]], False),
    ("fake log", lambda: [[InjectLog(lambda a: [])], [ForgeTxInput()]], False),
]


@pytest.mark.parametrize(("name", "make", "refuses"), TWO_LIARS, ids=[x[0] for x in TWO_LIARS])
def test_two_liars_of_three_cause_refusal_never_acceptance(
    world: World, tmp_path: Path, name: str, make: Any, refuses: bool
) -> None:
    delivered, problems, _ = world.receive(tmp_path, make(), Level.COMPLETE, honest=1)
    # Never a forged message: whatever is delivered is an honest message.
    assert _got(delivered) <= world.expected
    if refuses:
        assert delivered == []
        expected_kind = "disagreement" if name.startswith("different") else "proof-failure"
        assert any(p.kind == expected_kind for p in problems), problems


# --- CLI ----------------------------------------------------------------------------------


def test_cli_receive_json_lines_and_exit_code(world: World, tmp_path: Path) -> None:
    # One liar adds a never-emitted log: a problem (the untrusted sender's post no
    # longer is one -- it is filtered out before any fetch).
    with LyingProxy(world.anvil.url, [InjectLog(_fake_log(world))]) as liar:
        path = write_config(
            tmp_path,
            endpoints=[liar.url, world.anvil.url, world.anvil.url],
            quorum=2,
            inbox=world.chain.inbox,
            me=world.me,
            trusted={"c1": [world.a.address, world.b.address]},
        )
        done = run_cli("receive", "--config", str(path), "--json", "--level", "final")
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    messages = [o for o in lines if "problem" not in o]
    problems = [o for o in lines if "problem" in o]
    assert done.returncode == 3, done.stderr  # problems were reported
    assert [(p["problem"], p["endpoints"]) for p in problems] == [("proof-failure", ["rpc#0"])]
    assert len(messages) == len(world.expected)
    first = messages[0]
    for key in (
        "sender",
        "channel",
        "seq",
        "payload",
        "content_type",
        "tx_hash",
        "block_number",
        "block_hash",
        "level",
        "payload_encoding",
    ):
        assert key in first
    assert first["root"] == "quorum"  # what `level` rests on (trust = beacon: beacon-finalized)
    assert first["payload"] == "a0" and first["payload_encoding"] == "utf-8"
    assert first["channel"] == "c1" and first["level"] == "final"
    chunked = next(m for m in messages if m["seq"] == 4)
    assert chunked["payload_encoding"] == "hex"
    assert bytes.fromhex(chunked["payload"][2:]) == CHUNKED
    # The cursor is persisted: a second run delivers nothing new and reports nothing.
    again = run_cli("receive", "--config", str(path), "--json", "--level", "final")
    assert again.returncode == 0 and again.stdout == ""


def test_cli_bad_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("chain_id = 'x'\n")
    done = run_cli("receive", "--config", str(bad), "--json")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("lightpost: error:")
    assert "Traceback" not in done.stderr


def test_rpc_cost_per_message(world: World, tmp_path: Path) -> None:
    """Measures (prints with -s) calls and bytes per delivered message at each level."""
    config = world.config(tmp_path, [world.anvil.url] * 3)
    for level in Level:
        eps = [MeteredEndpoint(HttpEndpoint(world.anvil.url, f"rpc#{i}")) for i in range(3)]
        with Receiver(config, endpoints=eps) as receiver:
            n = sum(isinstance(o, Delivered) for o in receiver.poll(level))
        calls = sum(sum(e.calls.values()) for e in eps)
        size = sum(sum(e.bytes_in.values()) for e in eps)
        print(
            f"{level}: {n} messages, {calls} calls, {size} bytes -> "
            f"{calls / n:.1f} calls, {size / n:.0f} bytes per message"
        )
        assert n == len(world.expected)
