"""The on-device agent: handlers, durable replay/rollback protection, audit, crash safety."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lightpost.core.levels import Level
from lightpost.errors import ConfigError
from lightpost_agent.agent import Agent
from lightpost_agent.command import (
    AgentPolicy,
    Command,
    CommandResult,
    Reason,
    Status,
    Target,
    UpdateManifest,
    decode_result,
)
from lightpost_agent.handlers import recover_images
from tests.node.agent_plugins import (
    CONTROLLER,
    DEVICE,
    MARKER_FILE,
    T0,
    crash_delivery,
    delivery,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
STRANGER = bytes.fromhex("cc" * 20)
NOW = T0 + 20


class Outbox:
    """The injected send_result: remembers what would go on chain."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, CommandResult]] = []

    def __call__(self, controller: bytes, payload: bytes) -> None:
        self.sent.append((controller, decode_result(payload)))


def make_policy(images: Path | str | None = None, **kw: object) -> AgentPolicy:
    base = AgentPolicy(
        device_address=DEVICE,
        device_class="valve-v2",
        controllers={CONTROLLER: frozenset({"set", "config", "update", "jam"})},
        config_whitelist=frozenset({"interval"}),
        handlers=(("jam", "tests.node.agent_plugins:raising_handler"),),
        update_source=None if images is None else str(images),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def cmd(
    seq: int, name: str = "set", args: tuple[tuple[str, str], ...] = (), **kw: object
) -> Command:
    return Command(
        name=name,
        args=args,
        target=Target(address=DEVICE),
        command_seq=seq,
        not_before=T0,
        expiry=T0 + 600,
        **kw,  # type: ignore[arg-type]
    )


def update_cmd(seq: int, image: bytes, version: tuple[int, ...], **kw: object) -> Command:
    m = UpdateManifest(
        digest=hashlib.sha256(image).digest(),
        size=len(image),
        version=version,
        device_class="valve-v2",
    )
    return cmd(seq, "update", manifest=replace(m, **kw))  # type: ignore[arg-type]


def publish(images: Path, image: bytes) -> None:
    """Put ``image`` on the (untrusted) source under its content address."""
    images.mkdir(exist_ok=True)
    (images / hashlib.sha256(image).hexdigest()).write_bytes(image)


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


# --- set / config ------------------------------------------------------------------


def test_set_changes_the_actuator_state_and_answers(tmp_path: Path, outbox: Outbox) -> None:
    with Agent(make_policy(), tmp_path, outbox) as agent:
        result = agent.process(
            delivery(cmd(1, args=(("valve-1", "40"), ("plan", "night")))), now=NOW
        )
        agent.process(delivery(cmd(2, args=(("valve-1", "75"),))), now=NOW)
        audit = agent.audit()
    assert result is not None and result.status is Status.EXECUTED and "valve-1=40" in result.output
    state = json.loads((tmp_path / "actuators.json").read_text())
    assert state == {"valve-1": "75", "plan": "night"}
    assert [(c, r.command_seq, r.reason) for c, r in outbox.sent] == [
        (CONTROLLER, 1, Reason.OK),
        (CONTROLLER, 2, Reason.OK),
    ]
    assert [(e.command_seq, e.decision) for e in audit] == [
        (1, "accepted"), (1, "executed"), (2, "accepted"), (2, "executed"),
    ]  # fmt: skip
    assert audit[0].tx_hash == (1).to_bytes(32, "big") and audit[0].name == "set"


def test_config_changes_only_whitelisted_keys(tmp_path: Path, outbox: Outbox) -> None:
    with Agent(make_policy(), tmp_path, outbox) as agent:
        ok = agent.process(delivery(cmd(1, "config", (("interval", "30"),))), now=NOW)
        bad = agent.process(
            delivery(cmd(2, "config", (("interval", "1"), ("owner", "x")))), now=NOW
        )
    assert ok is not None and ok.status is Status.EXECUTED
    assert bad is not None and bad.reason is Reason.NOT_WHITELISTED
    assert json.loads((tmp_path / "config.json").read_text()) == {"interval": "30"}


def test_plugin_errors_are_reported_as_failed(tmp_path: Path, outbox: Outbox) -> None:
    with Agent(make_policy(), tmp_path, outbox) as agent:
        result = agent.process(delivery(cmd(1, "jam", (("x", "1"),))), now=NOW)
        audit = agent.audit()
    assert result is not None and (result.status, result.reason) == (
        Status.FAILED,
        Reason.HANDLER_ERROR,
    )
    # the signed result goes on chain: only the exception type, never its text (which
    # may carry a URL with a key); the local audit log keeps the text
    assert "actuator jammed" not in result.output
    assert result.output == "RuntimeError in the jam handler"
    assert "actuator jammed" in audit[-1].detail


def test_bad_plugin_path_is_one_config_line(tmp_path: Path, outbox: Outbox) -> None:
    policy = make_policy(handlers=(("jam", "tests.node.no_such_module:handler"),))
    with pytest.raises(ConfigError, match=r"agent\.handlers\.jam") as info:
        Agent(policy, tmp_path, outbox)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="no handler for command `jam`"):
        Agent(make_policy(handlers=()), tmp_path, outbox)


# --- replay, level, silence --------------------------------------------------------


def test_replay_is_refused_after_restart(tmp_path: Path, outbox: Outbox) -> None:
    with Agent(make_policy(), tmp_path, outbox) as agent:
        agent.process(delivery(cmd(5, args=(("valve-1", "40"),))), now=NOW)
    (tmp_path / "actuators.json").write_text('{"valve-1": "manual"}')
    with Agent(make_policy(), tmp_path, outbox) as agent:
        again = agent.process(delivery(cmd(5, args=(("valve-1", "40"),))), now=NOW)
        older = agent.process(delivery(cmd(4, args=(("valve-1", "10"),))), now=NOW)
        assert agent.highest_seq(CONTROLLER) == 5
    assert again is not None and again.reason is Reason.REPLAYED
    assert again.output == "seq 5 <= highest seen 5"
    assert older is not None and older.reason is Reason.REPLAYED
    assert json.loads((tmp_path / "actuators.json").read_text()) == {"valve-1": "manual"}


def test_level_too_low_does_not_burn_the_sequence_number(tmp_path: Path, outbox: Outbox) -> None:
    c = cmd(1, args=(("valve-1", "40"),))
    with Agent(make_policy(), tmp_path, outbox) as agent:
        early = agent.process(delivery(c, level=Level.INCLUDED), now=NOW)
        final = agent.process(delivery(c), now=NOW)
    assert early is not None and early.reason is Reason.LEVEL_TOO_LOW
    assert final is not None and final.status is Status.EXECUTED


def test_wrong_target_strangers_and_other_content_stay_silent(
    tmp_path: Path, outbox: Outbox
) -> None:
    other = replace(cmd(1, args=(("valve-1", "1"),)), target=Target(device_class="meter"))
    with Agent(make_policy(), tmp_path, outbox) as agent:
        assert agent.process(delivery(other), now=NOW) is None
        assert (
            agent.process(delivery(cmd(2, args=(("valve-1", "1"),)), sender=STRANGER), now=NOW)
            is None
        )
        assert agent.process(delivery(cmd(3), content_type=1), now=NOW) is None
        garbage = agent.process(delivery(cmd(3), payload=b"\xc0"), now=NOW)
        audit = agent.audit()
    assert outbox.sent == [(CONTROLLER, garbage)]
    assert garbage is not None and (garbage.reason, garbage.command_seq) == (Reason.MALFORMED, 0)
    assert [e.reason for e in audit] == ["wrong-target", "unauthorized-controller", "malformed"]
    assert not (tmp_path / "actuators.json").exists()


def test_a_failing_sender_is_audited(tmp_path: Path) -> None:
    def broken(controller: bytes, payload: bytes) -> None:
        raise OSError("outbox full")

    with Agent(make_policy(), tmp_path, broken) as agent:
        result = agent.process(delivery(cmd(1, args=(("valve-1", "1"),))), now=NOW)
        audit = agent.audit()
    assert result is not None and result.status is Status.EXECUTED
    assert (audit[-1].decision, audit[-1].detail) == ("send-failed", "OSError")


# --- update ------------------------------------------------------------------------

V1, V2, V3 = b"firmware one" * 100, b"firmware two" * 100, b"firmware three" * 100


def installed_image(state: Path) -> bytes:
    return (state / "images" / "image").read_bytes()


def test_good_update_is_applied_and_survives_reopening(tmp_path: Path, outbox: Outbox) -> None:
    src, state = tmp_path / "src", tmp_path / "state"
    for image in (V1, V2):
        publish(src, image)
    with Agent(make_policy(src), state, outbox) as agent:
        first = agent.process(delivery(update_cmd(1, V1, (1, 0))), now=NOW)
        second = agent.process(delivery(update_cmd(2, V2, (1, 2))), now=NOW)
    assert first is not None and first.status is Status.EXECUTED, first
    assert second is not None and "installed 1.2" in second.output
    assert installed_image(state) == V2
    assert (state / "images" / "image.prev").read_bytes() == V1
    assert not (state / "images" / "image.new").exists()
    with Agent(make_policy(src), state, outbox) as agent:
        assert agent.installed.version == (1, 2)
        assert agent.installed.digest == hashlib.sha256(V2).digest()
        assert agent.recovery is None
        # anti-rollback state persisted: an older or equal version is refused
        older = agent.process(delivery(update_cmd(3, V1, (1, 1))), now=NOW)
        same = agent.process(delivery(update_cmd(4, V2, (1, 2, 0))), now=NOW)
    assert older is not None and older.reason is Reason.ROLLBACK
    assert same is not None and same.reason is Reason.ROLLBACK
    assert installed_image(state) == V2


@pytest.mark.parametrize(
    ("published", "detail"),
    [
        (V2[:-1] + b"X", "digest"),  # same size, other bytes
        (V2 + b"extra", "size"),  # longer than the manifest says
        (V2[:-5], "size"),  # truncated
    ],
)
def test_tampered_image_is_refused_and_nothing_applied(
    tmp_path: Path, outbox: Outbox, published: bytes, detail: str
) -> None:
    src, state = tmp_path / "src", tmp_path / "state"
    publish(src, V1)
    src.joinpath(hashlib.sha256(V2).hexdigest()).write_bytes(published)
    with Agent(make_policy(src), state, outbox) as agent:
        agent.process(delivery(update_cmd(1, V1, (1,))), now=NOW)
        result = agent.process(delivery(update_cmd(2, V2, (2,))), now=NOW)
        assert agent.installed.version == (1,)
    assert result is not None and (result.status, result.reason) == (
        Status.REFUSED,
        Reason.INTEGRITY,
    )
    assert detail in result.output
    assert installed_image(state) == V1
    assert sorted(p.name for p in (state / "images").iterdir()) == ["image"]


def test_missing_image_is_a_fetch_failure(tmp_path: Path, outbox: Outbox) -> None:
    (tmp_path / "src").mkdir()
    with Agent(make_policy(tmp_path / "src"), tmp_path / "state", outbox) as agent:
        result = agent.process(delivery(update_cmd(1, V1, (1,))), now=NOW)
        assert agent.installed.version == ()
    assert result is not None and (result.status, result.reason) == (
        Status.FAILED,
        Reason.FETCH_FAILED,
    )


def test_failing_post_install_check_rolls_back(tmp_path: Path, outbox: Outbox) -> None:
    src, state = tmp_path / "src", tmp_path / "state"
    for image in (V1, V2):
        publish(src, image)
    with Agent(make_policy(src), state, outbox) as agent:
        agent.process(delivery(update_cmd(1, V1, (1,))), now=NOW)
    failing = make_policy(src, post_install_check="tests.node.agent_plugins:failing_check")
    with Agent(failing, state, outbox) as agent:
        result = agent.process(delivery(update_cmd(2, V2, (2,))), now=NOW)
        assert agent.installed.version == (1,)
    assert result is not None and (result.status, result.reason) == (
        Status.FAILED,
        Reason.POST_INSTALL_CHECK,
    )
    assert "rolled back to 1" in result.output
    assert installed_image(state) == V1


def test_update_over_http(tmp_path: Path, outbox: Outbox) -> None:
    src, state = tmp_path / "src", tmp_path / "state"
    publish(src, V3)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(src))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        with Agent(make_policy(base), state, outbox) as agent:
            ok = agent.process(delivery(update_cmd(1, V3, (3, 1))), now=NOW)
            missing = agent.process(delivery(update_cmd(2, V2, (4,))), now=NOW)
            assert agent.installed.version == (3, 1)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert ok is not None and ok.status is Status.EXECUTED, ok
    assert missing is not None and missing.reason is Reason.FETCH_FAILED
    assert "127.0.0.1" not in missing.output
    assert installed_image(state) == V3


def test_recovery_after_a_crash_between_swap_and_persist(tmp_path: Path, outbox: Outbox) -> None:
    src, state = tmp_path / "src", tmp_path / "state"
    publish(src, V1)
    with Agent(make_policy(src), state, outbox) as agent:
        agent.process(delivery(update_cmd(1, V1, (1,))), now=NOW)
    images = state / "images"
    # what a crash right after os.replace(image.new, image) leaves behind
    os.link(images / "image", images / "image.prev")
    (images / "image.tmp").write_bytes(V2)
    os.replace(images / "image.tmp", images / "image")
    (images / "image.new").write_bytes(b"partial")
    with Agent(make_policy(src), state, outbox) as agent:
        assert agent.recovery == "restored image.prev after an unconfirmed update"
        assert agent.installed.version == (1,)
    assert installed_image(state) == V1 and not (images / "image.new").exists()
    # nothing installed on record: an unconfirmed first image is removed
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "image").write_bytes(V2)
    assert recover_images(fresh, None) == "removed an unconfirmed first image"
    assert not (fresh / "image").exists()


# --- crash safety ------------------------------------------------------------------


def test_a_crash_inside_the_handler_does_not_replay_the_command(tmp_path: Path) -> None:
    state = tmp_path / "state"
    marker = state / MARKER_FILE
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.node.agent_plugins", str(state)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"agent exited early: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                pytest.fail("the handler never started")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # inside the handler
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    assert marker.read_text().splitlines() == ["7"]

    outbox = Outbox()
    from tests.node.agent_plugins import crash_policy

    with Agent(crash_policy(), state, outbox) as agent:
        result = agent.process(crash_delivery(), now=NOW)
        audit = agent.audit()
    assert result is not None and result.reason is Reason.REPLAYED
    assert marker.read_text().splitlines() == ["7"]  # the handler did not run again
    assert [(e.decision, e.reason) for e in audit] == [
        ("accepted", "ok"),  # committed before the handler ran; no outcome: it crashed
        ("refused", "replayed"),
    ]
    assert outbox.sent == [(CONTROLLER, result)]
