"""Device config validation: one clear ConfigError per mistake, never a secret in it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lightpost.errors import ConfigError
from lightpost.node.config import load_config, parse_config, read_password

INBOX = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
SECRET = "KEY123SECRET"


def base(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "chain_id": 31337,
        "endpoints": ["http://127.0.0.1:8545", f"https://rpc.invalid/{SECRET}"],
        "keystore": "k.json",
        "data_dir": "data",
        "inbox": INBOX,
    }
    raw.update(over)
    return raw


def parse(raw: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    return parse_config(raw, path=Path("/tmp/dev/device.toml"), env=env or {})


def test_a_minimal_config_gets_documented_defaults() -> None:
    cfg = parse(base())
    assert cfg.quorum == 2  # majority of 2
    assert cfg.mode == "channel"
    assert cfg.fees.policy == "eip1559"
    assert cfg.fees.max_fee_per_gas == 200 * 10**9
    assert cfg.finality_depth == 0
    assert cfg.keystore == Path("/tmp/dev/k.json")
    assert SECRET not in repr(cfg)  # endpoint URLs are kept out of repr


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (base(quorom=2), "unknown key `quorom`"),
        (base(fees={"max_fee_gewi": 5}), "unknown key `fees.max_fee_gewi`"),
        (base(send={"max_delay": 1}), "unknown key `send.max_delay`"),
        (base(channels={"c": {"trustd": []}}), "unknown key `channels.c.trustd`"),
        (base(send={"batch_bytes": 10}), "batch_bytes must be at least"),
        (base(finality_depth=2.9), "non-negative integer"),
        (base(quorum=3), "between 1 and the number of endpoints"),
        (base(mode="carrier-pigeon"), "`mode`"),
        (base(inbox="0x1234"), "inbox"),
        (base(fees={"policy": "free"}), "fees.policy"),
        (base(endpoints=[f"ftp://x/{SECRET}"]), "endpoints[0] is not an http(s) URL"),
        (base(endpoints=[f"http://[{SECRET}"]), "endpoints[0] is not a valid URL"),
        (base(endpoints=[f"http://user:{SECRET}@127.0.0.1:8545"]), "credentials"),
    ],
)
def test_each_mistake_is_one_clear_error_without_secrets(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(raw)
    assert needle in str(err.value)
    assert SECRET not in str(err.value)
    assert "\n" not in str(err.value)


def test_environment_overrides_win() -> None:
    cfg = parse(
        base(),
        env={
            "LIGHTPOST_ENDPOINTS": "http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3",
            "LIGHTPOST_QUORUM": "3",
        },
    )
    assert len(cfg.endpoints) == 3 and cfg.quorum == 3


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("chain_id = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_password_comes_from_env_then_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("hunter2\n")
    cfg = parse_config(base(password_file="pw"), path=tmp_path / "d.toml", env={})
    assert read_password(cfg, env={}) == "hunter2"
    assert read_password(cfg, env={"LIGHTPOST_PASSWORD": "env"}) == "env"
    nofile = parse_config(base(), path=tmp_path / "d.toml", env={})
    with pytest.raises(ConfigError, match="LIGHTPOST_PASSWORD"):
        read_password(nofile, env={})


@pytest.mark.parametrize(
    ("value", "wei"),
    [
        (2, 2 * 10**9),
        (1.5, 1_500_000_000),
        ("1.5", 1_500_000_000),
        ("0.000000001", 1),
        (1e-09, 1),  # str(1e-09) == "1e-09": the exponent form of a TOML float
        ("2.5e3", 2_500 * 10**9),
        (0, 0),
        ("-0", 0),
        (".5", 500_000_000),
    ],
)
def test_fee_amounts_in_gwei_are_exact_wei(value: Any, wei: int) -> None:
    cfg = parse(base(fees={"max_fee_gwei": value}))
    assert cfg.fees.max_fee_per_gas == wei


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("nan", "must be a number"),
        ("inf", "must be a number"),
        ("", "must be a number"),
        (".", "must be a number"),
        ("1.2.3", "must be a number"),
        (True, "must be a number"),
        ("0x10", "must be a number"),
        (-1, "non-negative amount of gwei"),
        ("0.0000000001", "non-negative amount of gwei"),  # a tenth of a wei
    ],
)
def test_fee_amounts_that_are_not_gwei_are_refused(value: Any, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse(base(fees={"max_fee_gwei": value}))


# --- quorum must be a majority unless the config says otherwise -----------------------

FOUR = [f"http://127.0.0.1:{8545 + i}" for i in range(4)]


@pytest.mark.parametrize(
    ("endpoints", "quorum", "env"),
    [
        (base()["endpoints"], 1, {}),  # 1 of 2: the highest `finalized` of either wins
        (FOUR, 2, {}),  # 2 of 4: two disjoint quorums
        (FOUR[:3], 1, {}),
        (base()["endpoints"], 2, {"LIGHTPOST_QUORUM": "1"}),
    ],
)
def test_a_minority_quorum_is_refused(endpoints: list[str], quorum: int, env: Any) -> None:
    with pytest.raises(ConfigError) as err:
        parse(base(endpoints=endpoints, quorum=quorum), env)
    assert "is not a majority" in str(err.value)
    assert "allow_minority_quorum = true" in str(err.value)
    assert SECRET not in str(err.value)


@pytest.mark.parametrize(
    ("endpoints", "quorum"), [(["http://127.0.0.1:8545"], 1), (FOUR[:3], 2), (FOUR, 3)]
)
def test_a_majority_quorum_needs_no_opt_in(endpoints: list[str], quorum: int) -> None:
    cfg = parse(base(endpoints=endpoints, quorum=quorum))
    assert (cfg.quorum, cfg.allow_minority_quorum, cfg.warnings) == (quorum, False, ())


def test_an_explicit_minority_quorum_is_loaded_with_a_warning() -> None:
    cfg = parse(base(quorum=1, allow_minority_quorum=True))
    assert cfg.quorum == 1
    (line,) = cfg.warnings
    assert line.startswith("quorum 1 of 2 endpoints is not a majority")
    assert SECRET not in line
    # the opt-in only accepts a minority; it never changes a majority config
    assert parse(base(allow_minority_quorum=True)).warnings == ()
    with pytest.raises(ConfigError, match="allow_minority_quorum` must be true or false"):
        parse(base(quorum=1, allow_minority_quorum="yes"))


def test_the_env_password_is_removed_once_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIGHTPOST_PASSWORD", "s3cret-env")
    cfg = parse_config(base(), path=tmp_path / "d.toml", env={})
    assert read_password(cfg) == "s3cret-env"
    assert "LIGHTPOST_PASSWORD" not in os.environ
    # a child process started afterwards does not inherit it
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('LIGHTPOST_PASSWORD'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == "None"
    # an explicit mapping (tests, embedding) is read, not changed
    env = {"LIGHTPOST_PASSWORD": "mapped"}
    assert read_password(cfg, env=env) == "mapped"
    assert env == {"LIGHTPOST_PASSWORD": "mapped"}


def test_the_scrypt_memory_ceiling_is_configurable() -> None:
    assert parse(base()).scrypt_max_memory == 257 << 20
    assert parse(base(scrypt_max_memory_mib=64)).scrypt_max_memory == 64 << 20
    with pytest.raises(ConfigError, match="scrypt_max_memory_mib"):
        parse(base(scrypt_max_memory_mib="lots"))


def test_channel_mode_defaults_to_the_protocol_inbox_address() -> None:
    """The inbox is deployed through the CREATE2 deployer at one address on every chain."""
    from lightpost.core.inbox import INBOX_ADDRESS

    config = parse({k: v for k, v in base().items() if k != "inbox"})
    assert config.mode == "channel" and config.inbox == INBOX_ADDRESS
