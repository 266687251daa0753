"""The on-device agent on a real anvil (issue #6's bar).

Every command here really travels on chain: signed into an inbox post by the
controller's (or a stranger's) sender, proven by the valve's receiver up to the agent's
level, decided by the agent (rule table in lightpost_agent.command), answered with a
signed result through the valve's outbox and received by the controller at ``final``.
"Never executed" is checked three ways: the actuator / image state on disk, the agent's
audit log (no ``accepted`` row) and the persisted anti-replay state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightpost.adapters.receiver_store import ReceiverStore
from lightpost.core.levels import Delivered, Level
from lightpost.node.config import ChannelPolicy, DeviceConfig
from lightpost.node.receiver import Receiver
from lightpost_agent.command import (
    COMMANDS_CHANNEL,
    RESULTS_CHANNEL,
    CommandResult,
    Reason,
    Status,
    encode_command,
)
from tests.conftest import NODES
from tests.conftest import run_cli as cli
from tests.integration.agent_world import (
    CRASH_VALVE,
    VALVE,
    FromBlock,
    Party,
    ValveHarness,
    World,
    command,
    node_process,
    publish,
    read_audit,
    stop_node,
    world,
)
from tests.node.agent_plugins import MARKER_FILE

pytestmark = pytest.mark.integration

OK = ("executed", "ok")
ACCEPTED = ("accepted", "ok")


def refused(reason: Reason) -> tuple[str, str]:
    return ("refused", str(reason))


def audit_of(state_dir: Path, controller: bytes, seq: int) -> list[tuple[str, str]]:
    """(decision, reason) of the audit rows of one command, read from a node's state."""
    return [
        (e.decision, e.reason)
        for e in read_audit(state_dir)
        if (e.controller, e.command_seq) == (controller, seq)
    ]


def outcome(result: CommandResult) -> tuple[Status, Reason]:
    return result.status, result.reason


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with world(tmp_path_factory.mktemp("agent")) as devnet:
        yield devnet


@pytest.fixture(scope="module")
def ganache_w(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The same devnet on Ganache (for the round trip through the CLI)."""
    with world(tmp_path_factory.mktemp("agent-ganache"), node="ganache") as devnet:
        yield devnet


@pytest.fixture
def controller(w: World) -> Iterator[Party]:
    party = w.party("controller")
    try:
        yield party
    finally:
        party.close()


@pytest.fixture
def valve(w: World) -> Iterator[ValveHarness]:
    harness = ValveHarness(w)
    try:
        yield harness
    finally:
        harness.close()


def send_set(
    w: World,
    sender: Party,
    value: str,
    *,
    seq: int | None = None,
    not_before: int | None = None,
    expiry: int | None = None,
) -> tuple[int, bytes]:
    """Post ``set valve=VALUE`` to valve-1; (command seq, encoded command)."""
    seq = sender.next_seq() if seq is None else seq
    _, block_time = w.head()
    cmd = command(
        "set",
        target=w.address(VALVE),
        seq=seq,
        block_time=block_time,
        args=(("valve", value),),
        not_before=not_before,
        expiry=expiry,
    )
    payload = encode_command(cmd)
    sender.post(payload, recipient=w.address(VALVE))
    return seq, payload


# --- the happy path, through the real CLI ---------------------------------------------------


@pytest.mark.parametrize("on", NODES)
def test_cli_controller_sets_an_actuator_and_receives_the_signed_result(
    request: pytest.FixtureRequest, on: str
) -> None:
    w: World = request.getfixturevalue("w" if on == "anvil" else "ganache_w")
    node = node_process(w.path(VALVE))
    started = time.monotonic()
    try:
        with w.miner():
            out = cli(
                "command", "--config", str(w.path("controller")),
                "--target", w.checksum(VALVE), "set", "valve=40",
                "--wait-result", "--json", "--timeout", "90", timeout=120,
            )  # fmt: skip
    finally:
        code = stop_node(node)
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr + "".join(node.lines)
    assert code == 0, "".join(node.lines)
    report = json.loads(out.stdout)
    result = report["result"]
    assert (result["status"], result["reason"]) == ("executed", "ok")
    assert result["from"] == w.checksum(VALVE) and result["level"] == "final"
    assert result["output"] == "set valve=40"
    state_dir = w.config(VALVE).data_dir / "agent"
    assert json.loads((state_dir / "actuators.json").read_text()) == {"valve": "40"}
    seq = report["command_seq"]
    assert audit_of(state_dir, w.address("controller"), seq) == [ACCEPTED, OK]
    log = "".join(node.lines)
    assert "agent: enabled (class valve, min level final)" in log
    assert f"agent: command seq {seq} from {w.checksum('controller')}: executed (ok)" in log
    print(f"\nCLI set -> signed result at final in {elapsed:.1f} s")


# --- refusals ---------------------------------------------------------------------------------


def test_replayed_command_is_refused_and_not_run_again(
    w: World, controller: Party, valve: ValveHarness
) -> None:
    me = controller.address
    seq_a, replay = send_set(w, controller, "41")
    w.mine()
    valve.pump_until_audited(me, seq_a, 2)
    seq_b, _ = send_set(w, controller, "42")
    w.mine()
    valve.pump_until_audited(me, seq_b, 2)
    assert valve.actuators()["valve"] == "42"
    # the very same signed command bytes, posted again (a new inbox post)
    tx = controller.post(replay, recipient=w.address(VALVE))
    w.mine()
    valve.pump_until_audited(me, seq_a, 3)
    assert valve.audit_of(me, seq_a) == [ACCEPTED, OK, refused(Reason.REPLAYED)]
    assert valve.agent.audit()[-1].tx_hash == tx
    assert valve.actuators()["valve"] == "42"  # 41 was not applied again
    assert valve.agent.highest_seq(me) == seq_b
    results = w.results_for(controller, seq_a, 2)
    assert [outcome(r) for r in results] == [
        (Status.EXECUTED, Reason.OK),
        (Status.REFUSED, Reason.REPLAYED),
    ]
    assert results[1].output == f"seq {seq_a} <= highest seen {seq_b}"


def test_expired_command_is_refused_and_not_run(
    w: World, controller: Party, valve: ValveHarness
) -> None:
    me = controller.address
    before = valve.actuators()
    _, now = w.head()
    seq, _ = send_set(w, controller, "13", not_before=now - 120, expiry=now - 1)
    w.mine()
    valve.pump_until_audited(me, seq)
    assert valve.audit_of(me, seq) == [refused(Reason.EXPIRED)]
    assert valve.actuators() == before
    assert valve.agent.highest_seq(me) == seq  # consumed: it can never run later
    (result,) = w.results_for(controller, seq)
    assert outcome(result) == (Status.REFUSED, Reason.EXPIRED)
    assert "expiry" in result.output


def _trusting(config: DeviceConfig, extra: bytes) -> DeviceConfig:
    """``config`` whose commands channel also trusts ``extra`` (a misconfigured device)."""
    channels = tuple(
        ChannelPolicy(c.name, (*c.trusted, extra)) if c.name == COMMANDS_CHANNEL else c
        for c in config.channels
    )
    return dataclasses.replace(config, channels=channels)


def test_command_from_an_unauthorized_address_is_never_run(
    w: World, controller: Party, valve: ValveHarness, tmp_path: Path
) -> None:
    stranger = w.party("stranger")
    before = valve.actuators()
    block, _ = w.head()
    # a well-formed command for valve-1, signed by an address the valve does not trust
    seq, _ = send_set(w, stranger, "99", seq=1)
    w.mine()

    # as the node wires it, the receiver trusts exactly the policy's controllers: the
    # post (final now) is filtered out before any block is fetched (issue 12, finding 6)
    # and never reaches the agent
    valve.pump(lambda: True, "one receive step over the stranger's final block")
    assert [p for p in valve.problems if p.sender == stranger.address] == []
    assert valve.results == []
    assert valve.audit_of(stranger.address, seq) == []

    # defence in depth: even a receiver that (wrongly) trusts the stranger only hands it
    # to the agent, whose policy refuses it -- silently (reply_to_unauthorized = false)
    def lax(config: DeviceConfig, me: bytes) -> Receiver:
        return FromBlock(
            _trusting(config, stranger.address),
            since=block + 1,
            me=me,
            store=ReceiverStore.open(tmp_path / "lax"),
        )

    loose = ValveHarness(w, receiver=lax)
    try:
        loose.pump_until_audited(stranger.address, seq)
        assert loose.audit_of(stranger.address, seq) == [refused(Reason.UNAUTHORIZED_CONTROLLER)]
        assert loose.results == []  # no result: strangers cannot make the valve spend gas
        assert loose.agent.highest_seq(stranger.address) == 0
    finally:
        loose.close()
    assert valve.actuators() == before
    # and nothing was sent back to the stranger (its own receiver finds no result)
    with Receiver(stranger.config, me=stranger.address) as inbox:
        answers = [
            item
            for item in inbox.poll(Level.INCLUDED, RESULTS_CHANNEL)
            if isinstance(item, Delivered)
        ]
    assert answers == []


def test_command_below_the_required_level_is_refused_then_runs_at_final(
    w: World, controller: Party, tmp_path: Path
) -> None:
    me = controller.address
    block, _ = w.head()
    seq, _ = send_set(w, controller, "77")  # included, not final (no blocks mined on top)

    # an agent subscription at `included` while the policy demands `final`
    def early(config: DeviceConfig, me: bytes) -> Receiver:
        return FromBlock(config, since=block + 1, me=me, store=ReceiverStore.open(tmp_path))

    low = ValveHarness(w, level=Level.INCLUDED, receiver=early)
    try:
        assert low.policy.min_level is Level.FINAL
        low.pump_until_audited(me, seq)
        assert low.audit_of(me, seq) == [refused(Reason.LEVEL_TOO_LOW)]
        assert low.actuators().get("valve") != "77"
        assert low.agent.highest_seq(me) < seq  # not consumed: it may run once final
        (delivered, result) = low.results[-1]
        assert delivered.level is Level.INCLUDED and result.reason is Reason.LEVEL_TOO_LOW
    finally:
        low.close()
    # the node's subscription at `final`: the same command now runs, exactly once
    valve = ValveHarness(w)
    try:
        w.mine()
        valve.pump_until_audited(me, seq, 3)
        assert valve.audit_of(me, seq) == [refused(Reason.LEVEL_TOO_LOW), ACCEPTED, OK]
        assert valve.actuators()["valve"] == "77"
    finally:
        valve.close()
    results = w.results_for(controller, seq, 2)
    assert [outcome(r) for r in results] == [
        (Status.REFUSED, Reason.LEVEL_TOO_LOW),
        (Status.EXECUTED, Reason.OK),
    ]


def test_an_agent_at_signed_runs_a_fresh_command_dated_by_the_quorum(
    w: World, controller: Party, tmp_path: Path
) -> None:
    # at `signed` the receiver hands over no verified block time (0 on the log path);
    # the landed agent judged validity by it and refused, and consumed, every command
    me = controller.address
    block, _ = w.head()
    seq, _ = send_set(w, controller, "55")

    def early(config: DeviceConfig, me: bytes) -> Receiver:
        return FromBlock(config, since=block + 1, me=me, store=ReceiverStore.open(tmp_path))

    signed = ValveHarness(w, level=Level.SIGNED, receiver=early)
    try:
        signed.agent.policy = dataclasses.replace(signed.policy, min_level=Level.SIGNED)
        signed.pump_until_audited(me, seq, 2)
        assert signed.audit_of(me, seq) == [ACCEPTED, OK]
        assert signed.actuators()["valve"] == "55"
        (delivered, result) = signed.results[-1]
        assert delivered.level is Level.SIGNED and outcome(result) == (Status.EXECUTED, Reason.OK)
    finally:
        signed.close()


# --- updates ----------------------------------------------------------------------------------


def send_update(
    w: World,
    controller: Party,
    image: bytes,
    version: tuple[int, ...],
    *,
    served: bytes | None = None,
) -> tuple[int, bytes]:
    """Publish ``image`` (or tampered ``served`` bytes) and post its update command."""
    manifest = publish(w.images, image, version, served=served)
    seq = controller.next_seq()
    _, block_time = w.head()
    cmd = command(
        "update", target=w.address(VALVE), seq=seq, block_time=block_time, manifest=manifest
    )
    payload = encode_command(cmd)
    controller.post(payload, recipient=w.address(VALVE))
    w.mine()
    return seq, payload


def image_of(valve: ValveHarness, name: str = "image") -> bytes:
    return (valve.state_dir / "images" / name).read_bytes()


def next_major(valve: ValveHarness) -> int:
    installed = valve.agent.installed.version
    return (installed[0] if installed else 0) + 1


def test_good_update_is_applied_survives_a_restart_and_is_not_replayed(
    w: World, controller: Party, valve: ValveHarness
) -> None:
    me = controller.address
    major = next_major(valve)
    first, second = (f"valve firmware {major}.{i}".encode() * 200 for i in range(2))
    seq, payload = send_update(w, controller, first, (major, 0))
    valve.pump_until_audited(me, seq, 2)
    assert valve.audit_of(me, seq) == [ACCEPTED, OK]
    assert image_of(valve) == first
    assert not (valve.state_dir / "images" / "image.new").exists()

    # restart the agent: the installed version is durable anti-rollback state
    valve.close()
    again = ValveHarness(w)
    try:
        assert again.agent.installed.version == (major, 0)
        assert again.agent.installed.digest == hashlib.sha256(first).digest()
        assert again.agent.recovery is None
        controller.post(payload, recipient=w.address(VALVE))  # the same update, replayed
        w.mine()
        again.pump_until_audited(me, seq, 3)
        assert again.audit_of(me, seq) == [ACCEPTED, OK, refused(Reason.REPLAYED)]
        # a newer image is applied over it; the previous one is kept beside it
        seq2, _ = send_update(w, controller, second, (major, 1))
        again.pump_until_audited(me, seq2, 2)
        assert again.audit_of(me, seq2) == [ACCEPTED, OK]
        assert again.agent.installed.version == (major, 1)
        assert image_of(again) == second and image_of(again, "image.prev") == first
    finally:
        again.close()
    results = w.results_for(controller, seq, 2)
    assert [outcome(r) for r in results] == [
        (Status.EXECUTED, Reason.OK),
        (Status.REFUSED, Reason.REPLAYED),
    ]
    assert results[0].output == f"installed {major}.0 ({len(first)} bytes), was " + (
        "none" if major == 1 else f"{major - 1}.1"
    )
    (newer,) = w.results_for(controller, seq2)
    assert outcome(newer) == (Status.EXECUTED, Reason.OK)


def test_rollback_update_is_refused_and_not_applied(
    w: World, controller: Party, valve: ValveHarness
) -> None:
    me = controller.address
    major = next_major(valve) + 1
    current = f"current firmware {major}".encode() * 150
    seq, _ = send_update(w, controller, current, (major, 0))
    valve.pump_until_audited(me, seq, 2)
    assert valve.agent.installed.version == (major, 0)
    older = f"older firmware {major - 1}".encode() * 150
    equal = f"same version {major}".encode() * 150  # other bytes, equal version
    refusals = []
    for image, version in ((older, (major - 1, 9)), (equal, (major, 0, 0))):
        seq, _ = send_update(w, controller, image, version)
        valve.pump_until_audited(me, seq)
        assert valve.audit_of(me, seq) == [refused(Reason.ROLLBACK)]
        (result,) = w.results_for(controller, seq)
        refusals.append(outcome(result))
    assert refusals == [(Status.REFUSED, Reason.ROLLBACK)] * 2
    assert valve.agent.installed.version == (major, 0)
    assert image_of(valve) == current


def test_update_with_a_tampered_image_is_refused_and_nothing_applied(
    w: World, controller: Party, valve: ValveHarness
) -> None:
    me = controller.address
    before_version = valve.agent.installed.version
    before_image = image_of(valve) if before_version else None
    genuine = b"genuine firmware" * 300
    tampered = genuine[:-8] + b"backdoor"  # same size, other bytes
    seq, _ = send_update(w, controller, genuine, (next_major(valve), 0), served=tampered)
    valve.pump_until_audited(me, seq, 2)
    # accepted by the rule table (its seq is consumed), then refused by the handler
    assert valve.audit_of(me, seq) == [ACCEPTED, refused(Reason.INTEGRITY)]
    assert valve.agent.installed.version == before_version
    if before_image is not None:
        assert image_of(valve) == before_image
    assert not (valve.state_dir / "images" / "image.new").exists()
    (result,) = w.results_for(controller, seq)
    assert outcome(result) == (Status.REFUSED, Reason.INTEGRITY)
    assert result.output == "image digest does not match the manifest"


# --- crash safety -------------------------------------------------------------------------------


def test_sigkill_during_a_handler_never_runs_the_command_twice(w: World, controller: Party) -> None:
    me = controller.address
    state_dir = w.config(CRASH_VALVE).data_dir / "agent"
    marker = state_dir / MARKER_FILE
    seq = controller.next_seq()
    _, block_time = w.head()
    cmd = command(
        "block",
        target=w.address(CRASH_VALVE),
        seq=seq,
        block_time=block_time,
        args=(("why", "sigkill test"),),
    )
    node = node_process(w.path(CRASH_VALVE))
    try:
        controller.post(encode_command(cmd), recipient=w.address(CRASH_VALVE))
        deadline = time.monotonic() + 60
        with w.miner():
            while not marker.exists():
                assert node.proc.poll() is None, "".join(node.lines)
                assert time.monotonic() < deadline, "the handler never started"
                time.sleep(0.05)
        # the node is inside the handler (it blocks for 30 s): kill it there
        assert stop_node(node, signal.SIGKILL) == -signal.SIGKILL
    finally:
        if node.proc.poll() is None:
            stop_node(node, signal.SIGKILL)
    assert marker.read_text().splitlines() == [str(seq)]
    assert audit_of(state_dir, me, seq) == [ACCEPTED]

    node = node_process(w.path(CRASH_VALVE))  # restart: the command is delivered again
    try:
        deadline = time.monotonic() + 60
        with w.miner():
            while True:
                rows = [(e.decision, e.reason) for e in read_audit(state_dir)]
                assert marker.read_text().splitlines() == [str(seq)], "the handler ran again"
                if refused(Reason.REPLAYED) in rows:
                    break
                assert node.proc.poll() is None, "".join(node.lines)
                assert time.monotonic() < deadline, f"not redelivered: {rows}"
                time.sleep(0.1)
            (result,) = w.results_for(controller, seq)  # the restarted node answers
    finally:
        code = stop_node(node)
    assert code == 0, "".join(node.lines)
    assert marker.read_text().splitlines() == [str(seq)]  # the handler ran once, ever
    assert audit_of(state_dir, me, seq) == [ACCEPTED, refused(Reason.REPLAYED)]
    assert outcome(result) == (Status.REFUSED, Reason.REPLAYED)
