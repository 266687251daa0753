"""From a key and an RPC URL to a verified message, on a real anvil, with the commands a new user
types: `key import` / `key new`, `init`, `send`, `receive --level final`; and `fleet provision`
funding N devices within a hard cap, refusing a plan above it, idempotent when re-run."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.inbox import INBOX_ADDRESS
from lightpost.core.keys import PrivateKey, to_checksum_address
from lightpost.node.chain import Chain
from lightpost.node.config import load_config
from lightpost.node.runtime import load_key
from lightpost_operator.anvil import AnvilProcess
from lightpost_operator.contracts import inbox_initcode
from lightpost_operator.ganache import GanacheProcess
from lightpost_operator.wallet import send_operator_tx
from tests.conftest import ANVIL_DEV_KEYS, run_cli
from tests.integration.receive_chain import mine_blocks

pytestmark = pytest.mark.integration

PASSWORD = "a long operator password"


def lp(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``lightpost ARGS`` as a user runs it, with the password in the environment."""
    return run_cli(*args, env={"LIGHTPOST_PASSWORD": PASSWORD, **(env or {})}, timeout=180,
                   stdin=stdin)  # fmt: skip


def deploy_inbox(url: str) -> bytes:
    chain = Chain([HttpEndpoint(url, "rpc#0")], quorum=1)
    try:
        funder = PrivateKey.from_hex(ANVIL_DEV_KEYS[0])
        nonce = chain.nonce(funder.address, "pending")
        _, receipt = send_operator_tx(
            chain, 31337, funder, nonce=nonce, to=None, data=inbox_initcode(), execution_gas=200_000
        )
        assert receipt is not None
        return bytes.fromhex(str(receipt["contractAddress"])[2:])
    finally:
        chain.close()


def balance(url: str, address: str) -> int:
    return int(HttpEndpoint(url, "t").call("eth_getBalance", [address, "latest"]), 16)


def test_the_readme_walkthrough_reaches_final(fresh_node: AnvilProcess, tmp_path: Path) -> None:
    """README "On a real network", on anvil and on Ganache (a node that is not anvil, has no
    eth_getBlockReceipts and no deployment proxy): key import / new / address, init, doctor,
    inbox deploy + verify (the protocol address, no --inbox anywhere), send, receive at final."""
    url = fresh_node.url
    ganache = isinstance(fresh_node, GanacheProcess)
    chain = ("--chain-id", "1337") if ganache else ("--chain", "devnet")
    device_ks, receiver_ks = tmp_path / "device.json", tmp_path / "receiver.json"
    imported = lp(
        "key", "import", "--out", str(device_ks), "--devnet", stdin=ANVIL_DEV_KEYS[1] + "\n"
    )
    assert imported.returncode == 0, imported.stderr
    device_address = imported.stdout.strip()
    assert device_address == PrivateKey.from_hex(ANVIL_DEV_KEYS[1]).checksum_address
    assert lp("key", "new", "--out", str(receiver_ks), "--devnet").returncode == 0
    assert lp("key", "address", str(device_ks), "--verify").stdout.strip() == device_address

    endpoints = tmp_path / "endpoints.txt"
    endpoints.write_text(f"# my provider\n{url}\n")
    common = (*chain, "--endpoints-file", str(endpoints))
    made = lp("init", *common, "--keystore", str(device_ks), "--out", str(tmp_path / "device.toml"))
    assert made.returncode == 0, made.stderr
    assert url not in made.stdout + made.stderr  # endpoint URLs are secrets
    made = lp(
        "init", *common, "--keystore", str(receiver_ks), "--out", str(tmp_path / "receiver.toml"),
        "--channel", "meters", "--trust", device_address,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    for name in ("device.toml", "receiver.toml"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    config = load_config(tmp_path / "device.toml", env={})
    assert (config.chain_id, config.endpoints, config.inbox) == (
        1337 if ganache else 31337, (url,), INBOX_ADDRESS
    )  # fmt: skip
    device = ("--config", str(tmp_path / "device.toml"))

    doctor = lp("doctor", *device, "--json")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert url not in doctor.stdout + doctor.stderr
    if ganache:  # the missing method is named, with the fallback that works
        assert "eth_getBlockReceipts" in doctor.stdout
        assert "eth_getTransactionReceipt" in doctor.stdout
    mine_blocks(HttpEndpoint(url, "t"), 1)  # anvil's eth_getProof at block 0 misses its stateRoot
    deployed = lp("inbox", "deploy", *device)
    assert deployed.returncode == 0, deployed.stderr
    assert lp("inbox", "deploy", *device).returncode == 0  # idempotent
    verified = lp("inbox", "verify", *device, "--latest")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    sent = lp("send", *device, "--channel", "meters", "--data", "21.5 C", "--json")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["reached"] is True
    mine_blocks(HttpEndpoint(url, "t"), 8)  # finality is 4 blocks deep on this anvil
    got = lp("receive", "--config", str(tmp_path / "receiver.toml"), "--channel", "meters",
             "--level", "final", "--json")  # fmt: skip
    assert got.returncode == 0, got.stderr
    messages = [json.loads(line) for line in got.stdout.splitlines()]
    assert len(messages) == 1, got.stdout
    text = json.dumps(messages[0])
    assert "21.5 C" in text and device_address.lower() in text.lower()
    assert messages[0]["level"] == "final"


def provision(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return lp(
        "fleet", "provision", "--chain", "devnet", "--dir", str(tmp_path / "fleet"),
        "--devices", "3", "--funder-keystore", str(tmp_path / "funder.json"),
        "--readings-per-day", "1440", "--days", "30", "--gas-price-gwei", "3", "--devnet",
        "--inbox", "0x5FbDB2315678afecb367f032d93F642f64180aa3", *extra,
        env={"LIGHTPOST_ENDPOINTS": url},
    )  # fmt: skip


def test_fleet_provision_funds_within_the_cap_and_refuses_above_it(
    fresh_anvil: AnvilProcess, tmp_path: Path
) -> None:
    url = fresh_anvil.url
    made = lp("key", "import", "--out", str(tmp_path / "funder.json"), "--devnet",
              stdin=ANVIL_DEV_KEYS[0])  # fmt: skip
    funder = made.stdout.strip()
    # per device: (1440 x 30 x 37,454 + 33,792) gas x 3 gwei, from docs/benchmarks.md's figures
    target = (1440 * 30 * 37_454 + 33_792) * 3 * 10**9

    wrong = lp("fleet", "provision", "--chain", "base", "--dir", str(tmp_path / "fleet"),
               "--devices", "1", "--funder-keystore", str(tmp_path / "funder.json"),
               "--readings-per-day", "1", "--days", "1", "--cap-eth", "1", "--yes",
               env={"LIGHTPOST_ENDPOINTS": url})  # fmt: skip
    assert wrong.returncode == 1
    assert "endpoints serve chain id 31337, not 'base' (8453)" in wrong.stderr
    assert not (tmp_path / "fleet").exists()  # refused before any file or transfer

    over = provision(tmp_path, url, "--cap-eth", "10", "--yes")  # 3 x ~4.85 ETH > 10
    assert over.returncode == 1
    assert over.stderr.count("\n") == 1 and "refused (fleet-cap)" in over.stderr, over.stderr
    devices = [
        load_config(tmp_path / "fleet" / f"device-{i}.toml", env={}) for i in (1, 2, 3)
    ]  # keys and configs exist, nothing was spent
    addresses = [to_checksum_address(load_key(c, env={}).address) for c in devices]
    assert [balance(url, a) for a in addresses] == [0, 0, 0]

    dry = provision(tmp_path, url, "--cap-eth", "15", "--json")
    assert dry.returncode == 0, dry.stderr
    plan: dict[str, Any] = json.loads(dry.stdout)
    assert plan["target_wei"] == target and plan["sent"] == []
    assert plan["l1_fee_per_reading_wei"] == plan["l1_fee_per_transfer_wei"] == 0  # an L1
    assert plan["transfer_gas_limit"] == 21_000
    assert [d["address"] for d in plan["devices"]] == addresses
    assert plan["total_wei"] <= 15 * 10**18
    assert [balance(url, a) for a in addresses] == [0, 0, 0]  # without --yes: nothing sent

    before = balance(url, funder)
    done = provision(tmp_path, url, "--cap-eth", "15", "--json", "--yes")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert len(report["sent"]) == 3
    assert [balance(url, a) for a in addresses] == [target] * 3
    spent = before - balance(url, funder)
    assert 3 * target < spent <= report["total_wei"] <= 15 * 10**18

    again = provision(tmp_path, url, "--cap-eth", "15", "--json", "--yes")  # idempotent
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["sent"] == []
    assert balance(url, funder) == before - spent
    assert [balance(url, a) for a in addresses] == [target] * 3
