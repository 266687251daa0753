"""`lightpost status` (node.status.collect_status) over scripted fake endpoints: an endpoint is
healthy only when it serves what the configured level needs; finality_depth is honoured."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.store import Store
from lightpost.core.fees import GWEI, Eip1559FeePolicy
from lightpost.core.tx import DynamicFeeTx, sign_transaction
from lightpost.errors import MethodNotSupported
from lightpost.node.chain import Chain
from lightpost.node.sender import SenderSettings
from lightpost.node.status import collect_status
from tests.node.fakechain import CHAIN_ID, FakeEndpoint, FakeNet
from tests.node.test_sender import KEY

T0 = 1_767_225_600.0

RECEIPT_METHODS = ("eth_getBlockReceipts", "eth_getTransactionReceipt", "debug_getRawReceipts")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store.sqlite3") as s:
        yield s


def no_receipts(method: str, params: Sequence[Any], answer: Any) -> Any:
    """Serves no receipts at all (worse than Hardhat, which has per-tx receipts)."""
    if method in RECEIPT_METHODS:
        raise MethodNotSupported("rpc#x", f"Method {method} is not supported", -32004)
    return answer


def null_finalized(method: str, params: Sequence[Any], answer: Any) -> Any:
    """EthereumJS with a clique genesis: the finalized tag is null."""
    return None if method == "eth_getBlockByNumber" and params[0] == "finalized" else answer


def status(store: Store, eps: list[FakeEndpoint], **kw: Any) -> dict[str, Any]:
    settings = SenderSettings(
        chain_id=CHAIN_ID,
        mode="direct",
        inbox=None,
        policy=Eip1559FeePolicy(max_fee_cap=100 * GWEI, priority_fee=GWEI),
        batch_bytes=4096,
        batch_delay_s=0.0,
        finality_depth=kw.pop("finality_depth", 0),
    )
    chain = Chain(eps, quorum=kw.pop("quorum", len(eps) // 2 + 1))
    try:
        return collect_status(
            store=store, chain=chain, address=KEY.address, settings=settings, now=T0, **kw
        )
    finally:
        chain.close()


def mined_net() -> FakeNet:
    """A fake chain with a transaction below its finalized block (receipts can be proven)."""
    net = FakeNet()
    tx = DynamicFeeTx(
        chain_id=CHAIN_ID,
        nonce=0,
        max_priority_fee_per_gas=GWEI,
        max_fee_per_gas=100 * GWEI,
        gas=21_000,
        to=bytes(20),
        value=0,
        data=b"",
        access_list=(),
    )
    net.mine_foreign(sign_transaction(tx, KEY))
    net.mine(6)
    return net


def test_endpoints_without_receipts_are_not_healthy(store: Store) -> None:
    net = mined_net()
    eps = [FakeEndpoint(f"rpc#{i}", net, hook=no_receipts) for i in range(2)]
    st = status(store, eps)
    assert not st["healthy"]
    assert [e["serves"] for e in st["endpoints"]] == [False, False]
    assert "only 0 of 2 endpoints serve what final needs" in st["verdict"]
    assert "rpc#0 cannot serve final: block receipts" in st["verdict"]
    assert "eth_getBlockReceipts: Method eth_getBlockReceipts is not supported" in st["verdict"]


def test_a_minority_without_receipts_is_a_warning_with_the_fix(store: Store) -> None:
    net = mined_net()
    eps = [FakeEndpoint("rpc#0", net, hook=no_receipts), FakeEndpoint("rpc#1", net)]
    eps.append(FakeEndpoint("rpc#2", net))
    st = status(store, eps)
    assert st["healthy"], st["reasons"]
    (warning,) = st["warnings"]
    assert warning.startswith("rpc#0 cannot serve final: block receipts")
    assert "fix: use an endpoint that serves eth_getBlockReceipts" in warning


def test_a_null_finalized_tag_is_named_never_block_0(store: Store) -> None:
    net = mined_net()
    eps = [FakeEndpoint(f"rpc#{i}", net, hook=null_finalized) for i in range(2)]
    st = status(store, eps)
    assert not st["healthy"] and st["finalized"] is None
    assert (
        "rpc#0 cannot serve final: finalized tag (does not serve the finalized tag)"
        in (st["verdict"])
    )
    assert "fix: set finality_depth" in st["verdict"]
    assert any("does not serve the finalized tag" in r for r in st["reasons"])


def test_finality_depth_stands_in_for_the_finalized_tag(store: Store) -> None:
    net = mined_net()
    eps = [FakeEndpoint(f"rpc#{i}", net, hook=null_finalized) for i in range(2)]
    st = status(store, eps, finality_depth=3)
    assert st["healthy"], st["reasons"]
    assert st["finalized"]["number"] == net.head - 3


def test_complete_needs_eth_get_proof(store: Store) -> None:
    net = mined_net()
    eps = [FakeEndpoint(f"rpc#{i}", net) for i in range(2)]  # the fake has no eth_getProof
    assert status(store, eps, level="final")["healthy"]
    st = status(store, eps, level="complete")
    assert not st["healthy"]
    assert "cannot serve complete: eth_getProof at final" in st["verdict"]


def test_a_sender_with_an_empty_data_directory_but_a_used_key_warns(store: Store) -> None:
    """The key sent before (nonce 1 on chain), this store has no record: before it signs, the
    sender warns with the remedy; status is unhealthy and says why."""
    from tests.node.test_sender import enqueue, make

    net = mined_net()  # KEY's nonce 0 is on chain
    sender = make(store, net, n=2)
    lines: list[str] = []
    sender._log = lines.append
    enqueue(sender, 1)
    sender.step(T0)
    assert "sequence" in sender.problems
    assert any(line.startswith("warning: this key has sent 1 transaction(s)") for line in lines)
    st = sender.status(T0)
    assert not st["healthy"]
    assert any("sequence: this key has sent 1" in r and "Remedy" in r for r in st["reasons"])
    sender.close()


def test_a_new_key_or_a_known_store_does_not_warn(store: Store) -> None:
    from tests.node.test_sender import enqueue, make

    net = FakeNet()
    net.mine(3)
    sender = make(store, net, n=2)
    enqueue(sender, 1)
    for i in range(4):
        sender.step(T0 + i)
        net.mine()
    assert "sequence" not in sender.problems
    sender.close()
    again = make(store, net, n=2)  # restart on the same store: it has the record
    again.step(T0 + 10)
    assert "sequence" not in again.problems
    again.close()


# --- trust = beacon/both: the light client's endpoints and state (lightpost_beacon.probe) ---


class BeaconNode:
    """A beacon API over a generated chain whose head is ``head`` (signed at ``head + 1``);
    ``lie`` alters each finality update, ``down`` answers nothing."""

    def __init__(
        self, label: str, chain: Any, head: int, *, lie: Any = None, down: bool = False
    ) -> None:
        self.label, self.chain, self.head, self.lie, self.down = label, chain, head, lie, down

    def get(self, path: str, cap: int) -> Any:
        from lightpost.errors import EndpointUnavailable

        if self.down:
            raise EndpointUnavailable(self.label, "connection refused")
        route = path.rsplit("/", 1)[1]
        if route.startswith("0x"):
            roots = {b.header.beacon.root().hex(): s for s, b in self.chain.blocks.items()}
            return self.chain.bootstrap(roots[route[2:]])
        if route.startswith("updates?"):
            return []  # one period: nothing to catch up
        answer = self.chain.update(self.head - 1, self.head, kind=route)
        if self.lie is not None and route == "finality_update":
            self.lie(answer["data"])
        return answer


BEACON_GENESIS = 1_700_000_000
BEACON_HEAD = 40
"""The generated chain's last slot (one period of the devnet's minimal preset: 64 slots)."""


@pytest.fixture(scope="module")
def beacon_chain() -> Any:
    pytest.importorskip("py_arkworks_bls12381", reason="the lightpost[beacon] extra")
    from hashlib import sha256

    from lightpost_beacon.anchor import devnet_config
    from lightpost_beacon.containers import ExecutionPayloadHeader
    from lightpost_operator.beacon_chain import GeneratedChain

    chain = GeneratedChain(devnet_config(genesis_time=int(BEACON_GENESIS)))
    for slot in range(1, BEACON_HEAD + 1):
        execution = ExecutionPayloadHeader(
            block_number=slot, block_hash=sha256(bytes([slot])).digest(), timestamp=slot
        )
        chain.add_block(slot, execution, slot - 16 if slot > 16 else None)
    return chain


def beacon_report(
    chain: Any, state_file: Path, sources: list[BeaconNode], urls: tuple[str, ...] = ()
) -> Any:
    from lightpost_beacon.anchor import BeaconSettings
    from lightpost_beacon.bls import load_bls
    from lightpost_beacon.probe import beacon_status

    settings = BeaconSettings(
        endpoints=urls or tuple(f"http://127.0.0.1:1/{s.label}" for s in sources),
        trusted_root=chain.blocks[10].header.beacon.root(),
        max_age_slots=10**6,
        config=chain.config,
        state_file=state_file,
    )

    def probe() -> dict[str, Any]:
        return beacon_status(
            settings,
            sources=sources or None,
            clock=lambda: BEACON_GENESIS + BEACON_HEAD + 1,
            bls=load_bls(),
        )

    return probe


def bad_signature(data: dict[str, Any]) -> None:
    from lightpost_operator.proxy import flip_hex

    agg = data["sync_aggregate"]
    agg["sync_committee_signature"] = flip_hex(agg["sync_committee_signature"], 40)


def test_status_names_a_lying_beacon_endpoint_and_rests_on_the_one_that_verifies(
    store: Store, beacon_chain: Any, tmp_path: Path
) -> None:
    liar = BeaconNode("beacon#0", beacon_chain, BEACON_HEAD, lie=bad_signature)
    honest = BeaconNode("beacon#1", beacon_chain, BEACON_HEAD)
    probe = beacon_report(beacon_chain, tmp_path / "beacon-state.bin", [liar, honest])
    st = status(store, [FakeEndpoint("rpc#0", mined_net())], beacon=probe)
    rows = st["beacon"]["endpoints"]
    assert [(r["label"], r["reachable"], r["verifies"]) for r in rows] == [
        ("beacon#0", True, False),
        ("beacon#1", True, True),
    ]
    assert rows[1]["fork"] == "fulu" and rows[1]["slot"] == BEACON_HEAD - 1
    assert rows[1]["finalized_slot"] == BEACON_HEAD - 17
    assert "signature" in rows[0]["detail"]
    assert not [r for r in st["reasons"] if "beacon" in r]
    assert any(w.startswith("beacon#0 cannot serve the light client") for w in st["warnings"])
    assert st["beacon"]["state"]["finalized_slot"] is None  # nothing stored: bootstrapped to probe
    assert not (tmp_path / "beacon-state.bin").exists()  # read-only


def test_status_is_unhealthy_when_no_beacon_endpoint_serves_a_verifiable_update(
    store: Store, beacon_chain: Any, tmp_path: Path
) -> None:
    liar = BeaconNode("beacon#0", beacon_chain, BEACON_HEAD, lie=bad_signature)
    down = BeaconNode("beacon#1", beacon_chain, BEACON_HEAD, down=True)
    probe = beacon_report(beacon_chain, tmp_path / "beacon-state.bin", [liar, down])
    st = status(store, [FakeEndpoint("rpc#0", mined_net())], beacon=probe)
    assert not st["healthy"]
    (reason,) = [r for r in st["reasons"] if "beacon" in r]
    assert reason.startswith("no beacon endpoint serves a verifiable finality update")
    assert "beacon#0: " in reason and "beacon#1: finality update:" in reason
    assert [r["reachable"] for r in st["beacon"]["endpoints"]] == [True, False]


def test_status_reports_the_stored_light_client_state_and_verifies_against_it(
    store: Store, beacon_chain: Any, tmp_path: Path
) -> None:
    from lightpost_beacon.bls import load_bls
    from lightpost_beacon.probe import render_rows
    from lightpost_beacon.sources import BeaconLightClient, save_state

    state_file = tmp_path / "beacon-state.bin"
    synced_at = BEACON_HEAD - 10  # the node last synced 10 slots ago
    client = BeaconLightClient(
        [BeaconNode("beacon#0", beacon_chain, synced_at)],
        beacon_chain.config,
        load_bls(),
        clock=lambda: BEACON_GENESIS + synced_at + 1,
    )
    client.start(beacon_chain.blocks[10].header.beacon.root())
    save_state(state_file, client.sync())
    lagging = BeaconNode("beacon#0", beacon_chain, synced_at - 16)  # behind what is stored
    honest = BeaconNode("beacon#1", beacon_chain, BEACON_HEAD)
    report = beacon_report(beacon_chain, state_file, [lagging, honest])()
    state = report["state"]
    final_slot = synced_at - 17
    assert state["finalized_slot"] == final_slot and state["block"] == final_slot
    assert state["age_s"] == BEACON_HEAD + 1 - final_slot
    assert state["bytes"] == state_file.stat().st_size and state["file"] == str(state_file)
    lag, ok = report["endpoints"]
    assert ok["verifies"] and not lag["verifies"] and lag["detail"].startswith("behind")
    text = "\n".join(render_rows(report))
    assert f"finalized slot {final_slot} (block {final_slot})" in text
    assert "beacon#1 fulu, slot 39, finalized slot 23: verifies" in text
    assert "beacon#0 fulu" in text and "DOES NOT VERIFY: behind" in text


def test_a_beacon_state_file_that_does_not_decode_is_a_reason(
    store: Store, beacon_chain: Any, tmp_path: Path
) -> None:
    state_file = tmp_path / "beacon-state.bin"
    state_file.write_bytes(b"not a state\n")
    honest = BeaconNode("beacon#0", beacon_chain, BEACON_HEAD)
    report = beacon_report(beacon_chain, state_file, [honest])()
    assert report["reasons"][0].startswith("beacon state file: beacon light-client state")
    assert report["endpoints"][0]["verifies"]  # judged against a bootstrap instead


def test_a_down_beacon_endpoint_is_named_by_label_never_by_url(
    beacon_chain: Any, tmp_path: Path
) -> None:
    secret = "http://127.0.0.1:1/v1/KEY123SECRET"  # port 1: refused at once
    report = beacon_report(beacon_chain, tmp_path / "s.bin", [], urls=(secret,))()
    (row,) = report["endpoints"]
    assert row["label"] == "beacon#0" and not row["reachable"]
    assert "KEY123SECRET" not in repr(report) and "127.0.0.1:1" not in repr(report)
