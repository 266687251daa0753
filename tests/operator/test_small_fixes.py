"""Small refusals and wiring: `fleet provision` builds its chain with the profile's block format
(on an L2 without --transfer-overhead-wei too); `init --trust` needs --channel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lightpost.cli.main import main
from lightpost.core.keys import PrivateKey
from lightpost.core.l2 import ARBITRUM, ETHEREUM, OP_STACK, BlockFormat
from lightpost_operator import fleet
from lightpost_operator.keywrite import LIGHT_SCRYPT_N, LIGHT_SCRYPT_P, encrypt_key
from tests.conftest import ANVIL_DEV_KEYS

URL = "http://127.0.0.1:9/SECRETKEY123"


@pytest.fixture
def funder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A light funder keystore and password file; provision_fleet scripted to record its chain."""
    key = PrivateKey.from_hex(ANVIL_DEV_KEYS[0])
    doc = encrypt_key(key, "pw", randbytes=bytes, scrypt_n=LIGHT_SCRYPT_N, scrypt_p=LIGHT_SCRYPT_P)
    (tmp_path / "funder.json").write_text(json.dumps(doc))
    (tmp_path / "pw").write_text("pw\n")
    monkeypatch.setenv("LIGHTPOST_ENDPOINTS", URL)
    seen: dict[str, Any] = {}

    def record(chain: Any, directory: Path, **kw: Any) -> dict[str, Any]:
        seen["format"] = chain.block_format
        seen["overhead"] = kw["transfer_overhead_wei"]
        return {}

    monkeypatch.setattr(fleet, "provision_fleet", record)
    seen["argv"] = [
        "fleet", "provision", "--dir", str(tmp_path / "fleet"), "--devices", "1",
        "--funder-keystore", str(tmp_path / "funder.json"), "--password-file", str(tmp_path / "pw"),
        "--readings-per-day", "24", "--days", "1", "--cap-eth", "1", "--json",
    ]  # fmt: skip
    return seen


@pytest.mark.parametrize(
    ("chain", "fmt"),
    [("sepolia", ETHEREUM), ("base", OP_STACK), ("optimism", OP_STACK), ("arbitrum", ARBITRUM),
     ("base-sepolia", OP_STACK), ("arbitrum-sepolia", ARBITRUM)],
)  # fmt: skip
def test_fleet_chain_uses_the_profiles_block_format(
    chain: str, fmt: BlockFormat, funder: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main([*funder["argv"], "--chain", chain, "--transfer-overhead-wei", "7"])
    assert rc == 0, capsys.readouterr().err
    assert funder["format"] == fmt and funder["overhead"] == 7


@pytest.mark.parametrize("chain", ["base", "optimism-sepolia", "arbitrum"])
def test_fleet_on_an_l2_no_longer_requires_the_transfer_overhead(
    chain: str, funder: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The L1 data fee is now asked of the endpoints (tests/operator/test_fleet_l1fee.py), so
    --transfer-overhead-wei is an optional extra (before: required on an L2)."""
    assert main([*funder["argv"], "--chain", chain]) == 0, capsys.readouterr().err
    assert funder["overhead"] == 0


def test_fleet_on_l1_needs_no_overhead(
    funder: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*funder["argv"], "--chain", "sepolia"]) == 0, capsys.readouterr().err
    assert funder["overhead"] == 0


def test_init_trust_without_channel_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keystore = tmp_path / "k.json"
    keystore.write_text('{"address": "f39fd6e51aad88f6f4ce6ab8827279cfffb92266"}')
    monkeypatch.setenv("LIGHTPOST_ENDPOINTS", URL)
    out = tmp_path / "d.toml"
    rc = main(["init", "--chain", "sepolia", "--keystore", str(keystore), "--out", str(out),
               "--trust", "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "--trust needs --channel" in err, err
    assert not out.exists()
