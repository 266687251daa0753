"""`lightpost doctor` and the shared probes against a real anvil, with proxies that behave as
other nodes do: Hardhat/Ganache (no eth_getBlockReceipts), EthereumJS (``finalized`` is null)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.diagnosis import Cap
from lightpost.node.probe import probe_endpoint
from lightpost_operator.anvil import AnvilProcess, free_port
from lightpost_operator.hardhat import HardhatProcess
from lightpost_operator.proxy import LyingProxy, NullTag, Unsupported
from tests.conftest import run_cli
from tests.integration.receive_chain import CHAIN_ID, InboxChain, text, write_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chain() -> Iterator[InboxChain]:
    proc = AnvilProcess(port=free_port()).start()
    try:
        c = InboxChain(proc.url)
        c.post(c.keys[1], "c1", [text(0, "a0")])
        c.mine()
        yield c
    finally:
        proc.stop()


def _findings(url: str, **kw: object) -> dict[Cap, object]:
    probe = probe_endpoint(
        HttpEndpoint(url, "rpc#0", retries=0),
        chain_id=CHAIN_ID,
        finality_depth=0,
        address=bytes(20),
        inbox=kw.pop("inbox", None),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    return {f.cap: f for f in probe.findings}


def test_anvil_serves_everything(chain: InboxChain) -> None:
    found = _findings(chain.url, inbox=chain.inbox)
    assert all(f.ok is not False for f in found.values()), found  # type: ignore[attr-defined]
    assert "uses eth_getBlockReceipts" in found[Cap.RECEIPTS].detail  # type: ignore[attr-defined]
    assert found[Cap.LOGS].ok is True  # type: ignore[attr-defined]


def test_missing_block_receipts_names_the_fallback_that_works(chain: InboxChain) -> None:
    with LyingProxy(chain.url, [Unsupported(["eth_getBlockReceipts"])]) as proxy:
        found = _findings(proxy.url)
    receipts = found[Cap.RECEIPTS]
    assert receipts.ok is True  # type: ignore[attr-defined]
    assert receipts.detail.startswith("uses eth_getTransactionReceipt")  # type: ignore[attr-defined]
    assert "eth_getBlockReceipts: Method eth_getBlockReceipts is not supported" in (
        receipts.detail  # type: ignore[attr-defined]
    )


def test_no_receipts_at_all_fails_with_a_fix(chain: InboxChain) -> None:
    methods = ["eth_getBlockReceipts", "eth_getTransactionReceipt", "debug_getRawReceipts"]
    with LyingProxy(chain.url, [Unsupported(methods)]) as proxy:
        found = _findings(proxy.url)
    assert found[Cap.RECEIPTS].ok is False  # type: ignore[attr-defined]
    assert "debug_getRawReceipts" in found[Cap.RECEIPTS].fix  # type: ignore[attr-defined]


def test_doctor_cli_table_verdict_and_fix(chain: InboxChain, tmp_path: Path) -> None:
    lies = [Unsupported(["eth_getBlockReceipts"]), NullTag("finalized")]
    with LyingProxy(chain.url, lies) as proxy:
        proxy_url = proxy.url
        config = write_config(
            tmp_path,
            endpoints=[proxy.url, chain.url],
            quorum=2,
            inbox=chain.inbox,
            me=chain.keys[0].address,
            trusted={"c1": [chain.keys[1].address]},
        )
        out = run_cli("doctor", "--config", str(config), timeout=120)
        as_json = run_cli("doctor", "--config", str(config), "--json", timeout=120)
    assert out.returncode == 1, out.stderr
    text_out = out.stdout
    assert "rpc#0" in text_out and "rpc#1" in text_out
    assert proxy_url not in text_out and chain.url not in text_out  # labels, never URLs
    assert "does not serve the finalized tag" in text_out
    assert "uses eth_getTransactionReceipt" in text_out
    assert "fix:  rpc#0 finalized tag: set finality_depth" in text_out
    assert "verdict: not ok: 1 of 2 endpoints" in text_out
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    by_label = {e["label"]: e for e in report["endpoints"]}
    assert by_label["rpc#0"]["failures"] == ["finalized tag"]
    assert by_label["rpc#1"]["failures"] == []


def test_a_real_hardhat_node_names_its_missing_method_and_the_fallback(tmp_path: Path) -> None:
    """Hardhat 2.29 (EDR), not a proxy: it serves no eth_getBlockReceipts; `lightpost doctor`
    says so in Hardhat's own words and names the per-transaction fallback that works."""
    proc = HardhatProcess(port=free_port()).start()
    try:
        c = InboxChain(proc.url)  # Hardhat's dev accounts are anvil's: the same keys work
        c.post(c.keys[1], "c1", [text(0, "a0")])
        found = _findings(proc.url, inbox=c.inbox)
        receipts = found[Cap.RECEIPTS]
        assert receipts.ok is True  # type: ignore[attr-defined]
        assert receipts.detail.startswith("uses eth_getTransactionReceipt")  # type: ignore[attr-defined]
        assert "eth_getBlockReceipts: Method eth_getBlockReceipts is not supported" in (
            receipts.detail  # type: ignore[attr-defined]
        )
        config = write_config(
            tmp_path,
            endpoints=[proc.url],
            quorum=1,
            inbox=c.inbox,
            me=c.keys[0].address,
            trusted={"c1": [c.keys[1].address]},
        )
        out = run_cli("doctor", "--config", str(config), timeout=120)
        assert "uses eth_getTransactionReceipt" in out.stdout, out.stdout + out.stderr
        assert "eth_getBlockReceipts" in out.stdout and proc.url not in out.stdout
    finally:
        proc.stop()
