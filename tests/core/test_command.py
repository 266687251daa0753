"""Commands: codec (strict, canonical), the [agent] policy parser and the rule table."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightpost.core import rlp
from lightpost.core.levels import Delivered, Level
from lightpost.errors import ConfigError, DecodingError, LightpostError
from lightpost_agent.command import (
    CLOCK_SKEW_S,
    MAX_OUTPUT_BYTES,
    AgentPolicy,
    AgentState,
    Command,
    CommandResult,
    Reason,
    Status,
    Target,
    UpdateManifest,
    decide,
    decode_command,
    decode_result,
    encode_command,
    encode_result,
    explain,
    format_version,
    parse_agent_policy,
    parse_version,
    truncate_output,
    validity_time,
    version_key,
)

DEVICE = bytes.fromhex("11" * 20)
OTHER_DEVICE = bytes.fromhex("22" * 20)
CONTROLLER = bytes.fromhex("aa" * 20)
LIMITED = bytes.fromhex("bb" * 20)
STRANGER = bytes.fromhex("cc" * 20)
T0 = 1_700_000_000

POLICY = AgentPolicy(
    device_address=DEVICE,
    device_class="valve-v2",
    controllers={
        CONTROLLER: frozenset({"set", "config", "update"}),
        LIMITED: frozenset({"set"}),
    },
    config_whitelist=frozenset({"interval"}),
    actuators=frozenset({"valve-1"}),
)


def manifest(version: tuple[int, ...] = (2, 0), device_class: str = "valve-v2") -> UpdateManifest:
    return UpdateManifest(
        digest=hashlib.sha256(b"image").digest(), size=5, version=version, device_class=device_class
    )


def command(**kw: object) -> Command:
    base: dict[str, object] = {
        "name": "set",
        "args": (("valve-1", "40"),),
        "target": Target(address=DEVICE),
        "command_seq": 5,
        "not_before": T0,
        "expiry": T0 + 600,
    }
    base.update(kw)
    return Command(**base)  # type: ignore[arg-type]


def delivered(**kw: object) -> Delivered:
    base: dict[str, object] = {
        "sender": CONTROLLER,
        "channel": b"\x00" * 32,
        "recipient": DEVICE,
        "seq": 1,
        "timestamp": T0,
        "content_type": 4,
        "payload": b"",
        "tx_hash": b"\x01" * 32,
        "block_number": 10,
        "block_hash": b"\x02" * 32,
        "block_timestamp": T0 + 10,
        "level": Level.FINAL,
    }
    base.update(kw)
    return Delivered(**base)  # type: ignore[arg-type]


# --- codec --------------------------------------------------------------------------

keys = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
u64 = st.integers(0, 2**64 - 1)


@st.composite
def commands(draw: st.DrawFn) -> Command:
    pairs = draw(st.dictionaries(keys, st.text(max_size=30), max_size=5))
    target = draw(
        st.one_of(
            st.binary(min_size=20, max_size=20).map(lambda a: Target(address=a)),
            keys.map(lambda c: Target(device_class=c)),
        )
    )
    not_before = draw(st.integers(0, 2**64 - 2))
    m = draw(
        st.none()
        | st.builds(
            UpdateManifest,
            digest=st.binary(min_size=32, max_size=32),
            size=u64,
            version=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4)
            .map(tuple)
            .filter(lambda v: any(v)),
            device_class=keys,
        )
    )
    return Command(
        name=draw(st.from_regex(r"[a-z][a-z0-9_-]{0,15}", fullmatch=True)),
        args=tuple(pairs.items()),
        target=target,
        command_seq=draw(st.integers(1, 2**64 - 1)),
        not_before=not_before,
        expiry=draw(st.integers(not_before + 1, 2**64 - 1)),
        manifest=m,
    )


results = st.builds(
    CommandResult,
    controller=st.binary(min_size=20, max_size=20),
    command_seq=u64,
    status=st.just(Status.REFUSED),
    reason=st.sampled_from(sorted(Reason.__members__.values())).filter(
        lambda r: (
            r
            not in (Reason.OK, Reason.FETCH_FAILED, Reason.POST_INSTALL_CHECK, Reason.HANDLER_ERROR)
        )
    ),
    output=st.text(max_size=60),
)


@settings(max_examples=150)
@given(commands())
def test_command_round_trip(c: Command) -> None:
    data = encode_command(c)
    assert decode_command(data) == c
    assert encode_command(decode_command(data)) == data


@settings(max_examples=100)
@given(results)
def test_result_round_trip(r: CommandResult) -> None:
    assert decode_result(encode_result(r)) == r


@settings(max_examples=200)
@given(st.binary(max_size=120))
def test_random_bytes_raise_only_decoding_errors(data: bytes) -> None:
    for decoder in (decode_command, decode_result):
        with contextlib.suppress(DecodingError):
            decoder(data)


@settings(max_examples=150)
@given(commands(), st.data())
def test_mutated_command_raises_only_decoding_errors(c: Command, data: st.DataObject) -> None:
    raw = bytearray(encode_command(c))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    try:
        decode_command(bytes(raw))
    except LightpostError as exc:
        assert isinstance(exc, DecodingError)


def test_args_are_sorted_and_unique() -> None:
    c = command(args=(("b", "2"), ("a", "1")))
    assert c.args == (("a", "1"), ("b", "2"))
    assert c.arg("b") == "2" and c.arg("z") is None
    with pytest.raises(ValueError, match="unique"):
        command(args=(("a", "1"), ("a", "2")))


def test_decoder_rejects_unsorted_args() -> None:
    good = rlp.decode(encode_command(command(args=(("a", "1"), ("b", "2")))))
    assert isinstance(good, list)
    bad = [*good[:2], [[b"b", b"2"], [b"a", b"1"]], *good[3:]]
    with pytest.raises(DecodingError, match="ascending"):
        decode_command(rlp.encode(bad))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda it: [b"\x02", *it[1:]], "format"),
        (lambda it: it[:7], "8 elements"),
        (lambda it: [*it[:3], [b"\x05", b"x"], *it[4:]], "target kind"),
        (lambda it: [*it[:3], [b"", b"\x11" * 19], *it[4:]], "20 bytes"),
        (lambda it: [*it[:4], b"", *it[5:]], "command_seq counts from 1"),
        (lambda it: [*it[:4], b"\x00\x05", *it[5:]], "leading zero"),
        (lambda it: [*it[:4], b"\x01" * 9, *it[5:]], "larger than"),
        (lambda it: [*it[:6], rlp.encode_int(T0), it[7]], "earlier than expiry"),
        (lambda it: [it[0], b"Set", *it[2:]], "command name"),
        (lambda it: [it[0], b"\xff", *it[2:]], "UTF-8"),
        (lambda it: [*it[:7], [b"\x01" * 31, b"\x05", [b"\x01"], b"c"]], "32 bytes"),
        (lambda it: [*it[:7], [b"\x01" * 32, b"\x05", [b""], b"c"]], "reserved"),
    ],
)
def test_decoder_rejects(mutate: object, match: str) -> None:
    items = rlp.decode(encode_command(command()))
    assert isinstance(items, list)
    with pytest.raises(DecodingError, match=match):
        decode_command(rlp.encode(mutate(items)))  # type: ignore[operator]


def test_result_status_and_reason_must_agree() -> None:
    with pytest.raises(ValueError, match="does not go with"):
        CommandResult(
            controller=CONTROLLER, command_seq=1, status=Status.EXECUTED, reason=Reason.EXPIRED
        )
    bad = rlp.encode([1, CONTROLLER, 1, b"refused", b"ok", b""])
    with pytest.raises(DecodingError, match="does not go with"):
        decode_result(bad)
    with pytest.raises(DecodingError):
        decode_result(rlp.encode([1, CONTROLLER, 1, b"refused", b"nonsense", b""]))


def test_output_is_truncated_on_a_character_boundary() -> None:
    text = "é" * MAX_OUTPUT_BYTES
    cut = truncate_output(text)
    assert len(cut.encode()) <= MAX_OUTPUT_BYTES and text.startswith(cut)
    assert truncate_output("short") == "short"


def test_versions() -> None:
    assert parse_version("1.4.2") == (1, 4, 2) and parse_version(7) == (7,)
    assert version_key((1, 2, 0)) == version_key((1, 2)) < version_key((1, 10))
    assert format_version((1, 4, 2)) == "1.4.2" and format_version(()) == "none"
    for bad in ("1..2", "v1", "1.2.3.4.5", "0.0", "-1", ""):
        with pytest.raises(ValueError):
            parse_version(bad)


# --- decide: the rule table ---------------------------------------------------------

C = command()
UPD = command(name="update", args=(), manifest=manifest())
STATE = AgentState(highest_seq=4, installed_version=(1, 5))

UPDATE_TO = {
    "meter": command(name="update", args=(), manifest=manifest(device_class="meter")),
    "1.5.0": command(name="update", args=(), manifest=manifest((1, 5, 0))),
    "1.4.9": command(name="update", args=(), manifest=manifest((1, 4, 9))),
}
CONFIG_INTERVAL = command(name="config", args=(("interval", "5"),))
ANSWER_STRANGERS = replace(POLICY, reply_to_unauthorized=True)
R = Reason

# id: (command (None = undecodable), delivered overrides, state, policy, reason,
#      consume, reply)
REFUSALS: dict[
    str, tuple[Command | None, dict[str, object], AgentState, AgentPolicy, Reason, bool, bool]
] = {
    "malformed": (None, {}, STATE, POLICY, R.MALFORMED, False, True),
    "malformed-stranger": (None, {"sender": STRANGER}, STATE, POLICY, R.MALFORMED, False, False),
    "stranger": (C, {"sender": STRANGER}, STATE, POLICY, R.UNAUTHORIZED_CONTROLLER, False, False),
    "stranger-answered": (
        C,
        {"sender": STRANGER},
        STATE,
        ANSWER_STRANGERS,
        R.UNAUTHORIZED_CONTROLLER,
        False,
        True,
    ),
    "other-device": (
        command(target=Target(address=OTHER_DEVICE)),
        {},
        STATE,
        POLICY,
        R.WRONG_TARGET,
        True,
        False,
    ),
    "other-class": (
        command(target=Target(device_class="meter")),
        {},
        STATE,
        POLICY,
        R.WRONG_TARGET,
        True,
        False,
    ),
    "replayed-equal": (C, {}, AgentState(highest_seq=5), POLICY, R.REPLAYED, False, True),
    "replayed-lower": (C, {}, AgentState(highest_seq=9), POLICY, R.REPLAYED, False, True),
    "not-allowed": (
        CONFIG_INTERVAL,
        {"sender": LIMITED},
        STATE,
        POLICY,
        R.COMMAND_NOT_ALLOWED,
        True,
        True,
    ),
    "included-only": (C, {"level": Level.INCLUDED}, STATE, POLICY, R.LEVEL_TOO_LOW, False, True),
    "signed-no-chain-time": (
        C,
        {"level": Level.SIGNED},
        STATE,
        replace(POLICY, min_level=Level.SIGNED),
        R.NO_CHAIN_TIME,
        False,
        True,
    ),
    "early": (C, {"block_timestamp": T0 - 1}, STATE, POLICY, R.NOT_YET_VALID, True, True),
    "expired-at": (C, {"block_timestamp": T0 + 600}, STATE, POLICY, R.EXPIRED, True, True),
    "expired-after": (C, {"block_timestamp": T0 + 9999}, STATE, POLICY, R.EXPIRED, True, True),
    "set-no-args": (command(args=()), {}, STATE, POLICY, R.MALFORMED, True, True),
    "manifest-on-set": (command(manifest=manifest()), {}, STATE, POLICY, R.MALFORMED, True, True),
    "update-no-manifest": (
        command(name="update", args=()),
        {},
        STATE,
        POLICY,
        R.MALFORMED,
        True,
        True,
    ),
    "config-key": (
        command(name="config", args=(("secret", "1"),)),
        {},
        STATE,
        POLICY,
        R.NOT_WHITELISTED,
        True,
        True,
    ),
    "set-actuator": (
        command(args=(("breaker", "off"),)),
        {},
        STATE,
        POLICY,
        R.NOT_WHITELISTED,
        True,
        True,
    ),
    "class": (UPDATE_TO["meter"], {}, STATE, POLICY, R.CLASS_MISMATCH, True, True),
    "rollback-equal": (UPDATE_TO["1.5.0"], {}, STATE, POLICY, R.ROLLBACK, True, True),
    "rollback-lower": (UPDATE_TO["1.4.9"], {}, STATE, POLICY, R.ROLLBACK, True, True),
}


@pytest.mark.parametrize(
    ("cmd", "over", "state", "policy", "reason", "consume", "reply"),
    list(REFUSALS.values()),
    ids=list(REFUSALS),
)
def test_decide_refuses(
    cmd: Command | None,
    over: dict[str, object],
    state: AgentState,
    policy: AgentPolicy,
    reason: Reason,
    consume: bool,
    reply: bool,
) -> None:
    d = decide(cmd, delivered(**over), policy, state)
    assert (d.execute, d.reason, d.consume, d.reply) == (False, reason, consume, reply)
    assert d.status is Status.REFUSED


def test_every_decide_refusal_reason_is_covered() -> None:
    from_decide = {case[4] for case in REFUSALS.values()}
    handler_only = {Reason.INTEGRITY}
    refusals = {r for r in Reason if r not in (Reason.OK, Reason.FETCH_FAILED)}
    refusals -= {Reason.POST_INSTALL_CHECK, Reason.HANDLER_ERROR}
    assert refusals - handler_only == from_decide


@pytest.mark.parametrize(
    ("cmd", "over", "state"),
    [
        (C, {}, STATE),
        (C, {"block_timestamp": T0}, STATE),  # not_before is inclusive
        (C, {"block_timestamp": T0 + 599}, STATE),  # expiry is exclusive
        (command(target=Target(device_class="valve-v2")), {}, STATE),
        (command(name="config", args=(("interval", "5"),)), {"level": Level.COMPLETE}, STATE),
        (UPD, {}, STATE),
        (UPD, {}, AgentState()),  # first install
        (command(name="update", args=(), manifest=manifest((1, 10))), {}, STATE),  # 1.10 > 1.5
    ],
)
def test_decide_executes(cmd: Command, over: dict[str, object], state: AgentState) -> None:
    d = decide(cmd, delivered(**over), POLICY, state)
    assert (d.execute, d.reason, d.consume, d.reply) == (True, Reason.OK, True, True)


def test_time_is_judged_by_the_block_timestamp_not_the_device_clock() -> None:
    # the device clock inside the window cannot admit a command the block refuses
    late_block = delivered(block_timestamp=T0 + 600)
    assert decide(C, late_block, POLICY, STATE, now=T0 + 1).reason is Reason.EXPIRED
    early_block = delivered(block_timestamp=T0 - 5)
    assert decide(C, early_block, POLICY, STATE, now=T0 + 1).reason is Reason.NOT_YET_VALID
    # a wrong (e.g. reset) device clock does not refuse a command the block admits
    assert decide(C, delivered(), POLICY, STATE, now=0).execute
    assert decide(C, delivered(), POLICY, STATE, now=T0 + 600 + CLOCK_SKEW_S - 1).execute
    # but a command delivered long after it expired is stale (Uptane freeze attack)
    stale = decide(C, delivered(), POLICY, STATE, now=T0 + 600 + CLOCK_SKEW_S)
    assert stale.reason is Reason.EXPIRED


def test_explain_names_the_numbers() -> None:
    late = delivered(block_timestamp=T0 + 700)
    assert (
        explain(Reason.EXPIRED, C, late, POLICY, STATE)
        == f"block time {T0 + 700}, expiry {T0 + 600}"
    )
    old = UPDATE_TO["1.4.9"]
    assert explain(Reason.ROLLBACK, old, late, POLICY, STATE) == "version 1.4.9 <= installed 1.5"
    assert explain(Reason.MALFORMED, None, late, POLICY, STATE) == ""


def test_level_policy_is_configurable() -> None:
    signed_ok = replace(POLICY, min_level=Level.SIGNED)
    at_signed = delivered(level=Level.SIGNED)
    assert decide(C, at_signed, signed_ok, STATE, chain_time=T0 + 10).execute
    assert not decide(C, at_signed, POLICY, STATE, chain_time=T0 + 10).execute


@pytest.mark.parametrize(
    ("level", "claimed", "chain_time", "expected"),
    [
        (Level.SIGNED, 0, T0 + 10, T0 + 10),  # the log path: no block time at all
        (Level.SIGNED, T0 + 10, T0 + 9999, T0 + 9999),  # the claim is not used
        (Level.SIGNED, T0 + 10, None, None),
        (Level.INCLUDED, T0 + 10, T0 + 9999, T0 + 10),  # verified from included up
        (Level.FINAL, T0 + 10, None, T0 + 10),
        (Level.COMPLETE, T0 + 10, None, T0 + 10),
    ],
)
def test_validity_time(level: Level, claimed: int, chain_time: int | None, expected: int) -> None:
    d = delivered(level=level, block_timestamp=claimed)
    assert validity_time(d, chain_time) == expected


def test_a_signed_command_is_judged_by_the_quorum_time_not_the_claim() -> None:
    signed_ok = replace(POLICY, min_level=Level.SIGNED)
    logged = delivered(level=Level.SIGNED, block_timestamp=0)  # what the receiver hands over
    assert decide(C, logged, signed_ok, STATE, chain_time=T0 + 10).execute
    late = decide(C, delivered(level=Level.SIGNED), signed_ok, STATE, chain_time=T0 + 600)
    assert (late.reason, late.consume) == (Reason.EXPIRED, True)
    assert explain(late.reason, C, logged, signed_ok, STATE, chain_time=T0 + 600) == (
        f"chain time {T0 + 600}, expiry {T0 + 600}"
    )


# --- [agent] policy parsing ---------------------------------------------------------

CTRL_HEX = "0x" + CONTROLLER.hex()


def test_parse_agent_policy_full_table() -> None:
    p = parse_agent_policy(
        {
            "device_class": "valve-v2",
            "min_level": "complete",
            "controllers": {CTRL_HEX: ["set", "update", "reboot"]},
            "config_whitelist": ["interval"],
            "actuators": ["valve-1"],
            "handlers": {"reboot": "mypkg.handlers:reboot"},
            "state_dir": "agent-state",
            "update_source": "http://127.0.0.1:8000/images",
            "post_install_check": "mypkg.checks:boot_ok",
            "reply_to_unauthorized": True,
        },
        device_address=DEVICE,
    )
    assert p is not None
    assert p.min_level is Level.COMPLETE
    assert p.allowed(CONTROLLER) == frozenset({"set", "update", "reboot"})
    assert p.allowed(STRANGER) is None
    assert p.handlers == (("reboot", "mypkg.handlers:reboot"),)
    assert "127.0.0.1" not in repr(p)


def test_parse_agent_policy_defaults_and_disabled() -> None:
    p = parse_agent_policy({"device_class": "m"}, device_address=DEVICE)
    assert p is not None and p.min_level is Level.FINAL and p.state_dir == "agent"
    assert p.controllers == {} and not p.reply_to_unauthorized
    assert parse_agent_policy({}, device_address=DEVICE) is None
    assert (
        parse_agent_policy({"enabled": False, "device_class": "m"}, device_address=DEVICE) is None
    )


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"device_class": "m", "min_levle": "final"}, "unknown key agent.min_levle"),
        ({"enabled": True}, "device_class"),
        ({"device_class": "m", "min_level": "sure"}, "min_level"),
        ({"device_class": "m", "controllers": {"0x12": ["set"]}}, "not a 0x address"),
        ({"device_class": "m", "controllers": {CTRL_HEX: "set"}}, "list of command names"),
        ({"device_class": "m", "controllers": {CTRL_HEX: ["reboot"]}}, "no handler for command"),
        ({"device_class": "m", "handlers": {"reboot": "not an import path"}}, "import path"),
        ({"device_class": "m", "config_whitelist": "interval"}, "list of names"),
        ({"device_class": "m", "enabled": "yes"}, "true or false"),
        ({"device_class": "m", "update_source": 5}, "non-empty string"),
    ],
)  # fmt: skip
def test_parse_agent_policy_errors_are_one_line(table: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse_agent_policy(table, device_address=DEVICE)
    assert "\n" not in str(info.value)
