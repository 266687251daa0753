"""`lightpost inbox`: the proxy's one-time signer is funded only once the chain has shown it takes
an unprotected transaction; `verify` checks the config's inbox and says when nothing is there."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lightpost.cli.main import main
from lightpost.core.hashing import keccak256
from lightpost.core.inbox import INBOX_ADDRESS
from lightpost.core.keys import PrivateKey
from lightpost.core.tx import decode_transaction
from lightpost.errors import ChainProcessError, NodeError
from lightpost.node.chain import Chain
from lightpost_operator import inbox as inbox_mod
from lightpost_operator.inbox import PROXY_DEPLOYMENT_TX, PROXY_SIGNER, ensure_proxy
from tests.conftest import ANVIL_DEV_KEYS

GETH_UNPROTECTED = "only replay-protected (EIP-155) transactions allowed over RPC"
"""geth's refusal of a transaction without a chain id (--rpc.allow-unprotected-txs unset)."""


class NoUnprotected:
    """A chain without the proxy that refuses unprotected transactions (geth's default); every
    other raw transaction is recorded (and refused, so nothing waits on it)."""

    label = "rpc#0"

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def call(self, method: str, params: Sequence[Any]) -> Any:
        if method == "eth_getCode":
            return "0x"
        if method == "eth_getTransactionCount":
            return "0x0"
        if method == "eth_getBalance":
            return "0x0"
        if method == "eth_getBlockByNumber":
            return {"number": "0x10", "baseFeePerGas": "0x3b9aca00"}
        if method == "eth_sendRawTransaction":
            raw = bytes.fromhex(params[0][2:])
            if raw == PROXY_DEPLOYMENT_TX:
                raise NodeError(self.label, GETH_UNPROTECTED, -32000)
            self.sent.append(raw)
            raise NodeError(self.label, "recorded", -32000)
        raise AssertionError(f"unexpected {method}")

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        return [self.call(m, p) for m, p in calls]


def test_nothing_is_sent_to_the_proxy_signer_where_unprotected_txs_are_refused() -> None:
    ep = NoUnprotected()
    chain = Chain([ep], quorum=1)
    try:
        with pytest.raises(ChainProcessError) as err:
            ensure_proxy(chain, 1, PrivateKey.from_hex(ANVIL_DEV_KEYS[0]), 0, lambda _m: None)
    finally:
        chain.close()
    transfers = [decode_transaction(raw) for raw in ep.sent]
    assert not transfers, [getattr(t, "to", None) for t in transfers]
    text = str(err.value)
    assert "replay-protected" in text and "nothing was sent" in text and "\n" not in text
    assert PROXY_SIGNER.hex() not in text.lower()


@pytest.fixture
def device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, Any]]:
    """A config whose inbox is not the protocol address; verify_inbox scripted."""
    other = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    cfg = tmp_path / "device.toml"
    cfg.write_text(
        f'chain = "devnet"\nendpoints = ["http://127.0.0.1:9"]\nkeystore = "k.json"\n'
        f'data_dir = "d"\nmode = "channel"\ninbox = "{other}"\n'
    )
    asked: dict[str, Any] = {}

    class FakeChain:
        endpoints: tuple[()] = ()

        def chain_id(self) -> int:
            return 31337

        def close(self) -> None:
            pass

    def fake_verify(chain: Any, **kw: Any) -> dict[str, Any]:
        asked.update(kw)
        return {
            "address": other,
            "block": 7,
            "code_hash": "0x" + keccak256(b"").hex(),
            "ok": False,
            "proven_by": "rpc#0",
        }

    monkeypatch.setattr("lightpost.node.runtime.build_chain", lambda config: FakeChain())
    monkeypatch.setattr(inbox_mod, "verify_inbox", fake_verify)
    return cfg, asked


def test_verify_checks_the_configs_inbox_and_says_when_none_is_deployed(
    device: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, asked = device
    rc = main(["inbox", "verify", "--config", str(cfg)])
    out = capsys.readouterr().out
    assert rc == 1
    assert asked["address"] == bytes.fromhex("5FbDB2315678afecb367f032d93F642f64180aa3")
    assert asked["address"] != INBOX_ADDRESS
    assert "not deployed: run `lightpost inbox deploy`" in out and "WRONG CODE" not in out
