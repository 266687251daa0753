"""`doctor` and `status` follow the chain's profile: on an OP-stack chain the recorded block with
its deposit proves its receipts; on Arbitrum the header with Nitro's extra keys is accepted;
eth_getLogs is probed over the profile's logs_block_range (the range the receiver pages by)."""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.store import Store
from lightpost.core.diagnosis import Cap, Finding
from lightpost.core.fees import GWEI, Eip1559FeePolicy
from lightpost.core.l2 import OP_STACK
from lightpost.errors import LightpostError, MethodNotSupported
from lightpost.node.chain import Chain
from lightpost.node.config import parse_config
from lightpost.node.sender_settings import SenderSettings
from lightpost.node.status import collect_status
from lightpost_operator.doctor import examine
from tests.core.test_l2 import arb_block, op_block, op_receipts

INBOX = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
UNICHAIN_SEPOLIA = 1301
ARBITRUM_ONE = 42161
ADDRESS = bytes(range(20))


class Recorded:
    """One endpoint serving one recorded block at every tag and height (and its receipts)."""

    label = "rpc#0"

    def __init__(self, chain_id: int, block: dict[str, Any], receipts: Any = None) -> None:
        self.chain_id, self.block, self.receipts = chain_id, block, receipts
        self.log_ranges: list[int] = []

    def call(self, method: str, params: Sequence[Any]) -> Any:
        if method == "eth_chainId":
            return hex(self.chain_id)
        if method == "eth_getBlockByNumber":
            if params[1]:
                return self.block
            hashes = [t["hash"] for t in self.block["transactions"]]
            return dict(copy.deepcopy(self.block), transactions=hashes)
        if method == "eth_getBlockReceipts" and self.receipts is not None:
            return self.receipts
        if method == "eth_getLogs":
            flt = params[0]
            self.log_ranges.append(int(flt["toBlock"], 16) - int(flt["fromBlock"], 16) + 1)
            return []
        raise MethodNotSupported(self.label, f"the method {method} does not exist", -32601)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        return [self.call(m, p) for m, p in calls]


def config(chain_id: int, **profile: Any) -> Any:
    raw = {
        "chain_id": chain_id,
        "endpoints": ["http://127.0.0.1:8545"],
        "keystore": "k.json",
        "data_dir": "d",
        "inbox": INBOX,
        "mode": "channel",
    }
    if profile:
        raw["profile"] = profile
    return parse_config(raw, path=Path("/tmp/dev/device.toml"), env={})


def found(findings: Sequence[Finding], cap: Cap) -> Finding:
    return next(f for f in findings if f.cap is cap)


def test_doctor_on_an_op_stack_chain_proves_the_deposit_blocks_receipts() -> None:
    ep = Recorded(UNICHAIN_SEPOLIA, op_block(), op_receipts())
    cfg = config(UNICHAIN_SEPOLIA, tx_types=[0, 1, 2, 4, 0x7E])
    receipts = found(examine(ep, cfg, ADDRESS).findings, Cap.RECEIPTS)
    assert receipts.ok is True, receipts.detail
    assert receipts.detail.startswith("uses eth_getBlockReceipts")
    # the same endpoint judged as Ethereum: the deposit receipt is refused (what the fix avoids)
    eth = found(examine(ep, config(UNICHAIN_SEPOLIA), ADDRESS).findings, Cap.RECEIPTS)
    assert eth.ok is False and "126" in eth.detail


def test_doctor_on_arbitrum_accepts_nitros_header_keys() -> None:
    ep = Recorded(ARBITRUM_ONE, arb_block())
    probe = examine(ep, config(ARBITRUM_ONE), ADDRESS)  # chain_id 42161: the arbitrum profile
    details = " | ".join(f.detail for f in probe.findings)
    assert "unknown field" not in details, details
    # past the header: the receipts methods themselves were asked
    assert "eth_getBlockReceipts: " in found(probe.findings, Cap.RECEIPTS).detail
    # a block below final is asked by number: the recorded one's number is another (a claim
    # checked against what was asked)
    assert "answered 350791066" in found(probe.findings, Cap.STATE).detail
    # a chain without a profile refuses those keys (the failure the profile's format avoids)
    plain = examine(Recorded(7, arb_block()), config(7), ADDRESS)
    assert "unknown field" in found(plain.findings, Cap.RECEIPTS).detail


def test_doctor_probes_logs_over_the_profiles_range() -> None:
    ep = Recorded(UNICHAIN_SEPOLIA, op_block(), op_receipts())
    cfg = config(UNICHAIN_SEPOLIA, tx_types=[0, 1, 2, 4, 0x7E], logs_block_range=500)
    logs = found(examine(ep, cfg, ADDRESS).findings, Cap.LOGS)
    assert logs.detail.startswith("500-block range served")
    assert ep.log_ranges and set(ep.log_ranges) == {500}


def test_status_follows_the_chains_block_format_and_logs_range(tmp_path: Path) -> None:
    ep = Recorded(UNICHAIN_SEPOLIA, op_block(), op_receipts())
    cfg = config(UNICHAIN_SEPOLIA, tx_types=[0, 1, 2, 4, 0x7E], logs_block_range=500)
    settings = SenderSettings.from_config(
        cfg, policy=Eip1559FeePolicy(max_fee_cap=100 * GWEI, priority_fee=GWEI)
    )
    assert settings.logs_block_range == 500
    chain = Chain([ep], quorum=1, block_format=OP_STACK)
    try:
        with Store.open(tmp_path / "s.sqlite3") as store:
            st = collect_status(
                store=store,
                chain=chain,
                address=ADDRESS,
                settings=settings,
                now=0.0,
                level="included",
                receives=True,
            )
    finally:
        chain.close()
    (health,) = st["endpoints"]
    assert not any(c["capability"] == str(Cap.RECEIPTS) for c in health["cannot"]), health
    assert set(ep.log_ranges) == {500}


@pytest.mark.parametrize(
    ("chain_id", "name", "family"),
    [(84532, "base-sepolia", "op-stack"), (11155420, "optimism-sepolia", "op-stack"),
     (421614, "arbitrum-sepolia", "arbitrum")],
)  # fmt: skip
def test_l2_testnet_profiles_are_picked_by_chain_id(chain_id: int, name: str, family: str) -> None:
    cfg = config(chain_id)
    assert (cfg.profile.name, cfg.profile.family) == (name, family)
    assert 0x7E in cfg.profile.tx_types if family == "op-stack" else 0x6A in cfg.profile.tx_types


def test_console_proof_trail_hashes_an_arbitrum_header_with_the_chains_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lightpost.core.l2 import ARBITRUM
    from lightpost_operator import console_follow

    block = arb_block()
    assert console_follow._hash_of(block, ARBITRUM) == block["hash"]
    with pytest.raises(LightpostError):
        console_follow._hash_of(block)  # Ethereum's format refuses Nitro's keys
    # the follower's agreement asks with its chain's format
    chain = Chain([Recorded(ARBITRUM_ONE, block)], quorum=1, block_format=ARBITRUM)
    monkeypatch.setattr(console_follow, "build_chain", lambda _config: chain)
    follower = console_follow.Follower.__new__(console_follow.Follower)
    follower.config = config(ARBITRUM_ONE)
    follower._proof_lock = threading.Lock()
    follower._proof_cache = OrderedDict()
    follower._proof_chain = None
    try:
        got = follower.agreement(1, block["hash"])
        assert got == {"agreed": ["rpc#0"], "differ": [], "no_answer": []}
    finally:
        chain.close()
