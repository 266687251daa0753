"""anvil's blocks wrapped as the execution payloads of a generated beacon chain
(lightpost_operator.beacon_chain) reach the real light client through the spec path: the proven
optimistic and finalized execution headers are anvil's blocks, hash and state root included."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from lightpost.core.header import verify_header
from lightpost_beacon import lightclient
from lightpost_operator.anvil import AnvilProcess
from tests.operator.test_beacon_chain import Node

pytest.importorskip("py_arkworks_bls12381", reason="the lightpost[beacon] extra")
from lightpost_beacon.bls import load_bls
from lightpost_beacon.sources import BeaconLightClient, HttpBeaconEndpoint
from lightpost_operator.beacon_chain import GeneratedChain, devnet_config, execution_header
from lightpost_operator.beacon_server import ROUTE, BeaconDevnet

pytestmark = pytest.mark.integration

EMPTY_TRANSACTIONS_ROOT = "7ffe241ea60187fdb0187bfa22de35d1f9bed7ab061d9401fd47e34a54fbede1"
EMPTY_WITHDRAWALS_ROOT = "792930bbd5baac43bcc798ee49aa8185ef76bb3b44ba62b91d86ae569e4bb535"
"""SSZ roots of an empty Transactions / Withdrawals list as seen on mainnet's beacon chain."""


def _call(url: str, method: str, params: list[object]) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, body, {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["result"]


def test_anvil_blocks_are_proven_through_the_light_client(fresh_anvil: AnvilProcess) -> None:
    url = fresh_anvil.url
    sender = _call(url, "eth_accounts", [])[0]
    _call(url, "eth_sendTransaction", [{"from": sender, "to": sender, "value": "0x1"}])
    _call(url, "anvil_mine", [hex(150)])
    latest = int(_call(url, "eth_blockNumber", []), 16)
    genesis = int(_call(url, "eth_getBlockByNumber", ["0x0", False])["timestamp"], 16)
    config = devnet_config(genesis_time=genesis)
    chain = GeneratedChain(config)
    blocks = {}
    for number in range(1, latest + 1):
        block = _call(url, "eth_getBlockByNumber", [hex(number), False])
        raws = [
            bytes.fromhex(_call(url, "eth_getRawTransactionByHash", [h])[2:])
            for h in block["transactions"]
        ]
        blocks[number] = block
        finalized = number - 2 * config.slots_per_epoch
        chain.add_block(
            number, execution_header(block, raws), finalized if finalized >= 1 else None
        )
    first = chain.blocks[1].header.execution
    empty = chain.blocks[latest].header.execution
    assert first is not None and empty is not None
    assert first.transactions_root.hex() != EMPTY_TRANSACTIONS_ROOT  # the transfer is in block 1
    assert empty.transactions_root.hex() == EMPTY_TRANSACTIONS_ROOT
    assert empty.withdrawals_root.hex() == EMPTY_WITHDRAWALS_ROOT

    class AnvilNode(Node):
        def get(self, path: str, cap: int) -> Any:
            route = path.rsplit("/", 1)[1]
            if route in ("finality_update", "optimistic_update"):
                return self.chain.update(latest - 1, latest, kind=route)
            return super().get(path, cap)

    lc = BeaconLightClient(
        [AnvilNode(chain)],
        config,
        load_bls(),
        clock=lambda: genesis + (latest + 1) * config.seconds_per_slot,
        blame=pytest.fail,
    )
    lc.start(chain.blocks[5].header.beacon.root())
    store = lc.sync()
    proven = store.optimistic_header.execution
    final = store.finalized_header.execution
    assert proven is not None and final is not None
    assert "0x" + proven.block_hash.hex() == blocks[latest - 1]["hash"]
    assert "0x" + proven.state_root.hex() == blocks[latest - 1]["stateRoot"]
    assert "0x" + final.block_hash.hex() == blocks[latest - 1 - 16]["hash"]


def test_the_devnet_beacon_api_serves_anvil_to_the_light_client(fresh_anvil: AnvilProcess) -> None:
    url = fresh_anvil.url
    _call(url, "anvil_mine", [hex(150)])
    latest = int(_call(url, "eth_blockNumber", []), 16)
    genesis = int(_call(url, "eth_getBlockByNumber", ["0x0", False])["timestamp"], 16)
    now = genesis + latest + 2  # the clock has reached the head's signature slot
    devnet = BeaconDevnet(url, clock=lambda: now)
    base = devnet.serve()
    try:
        lc = BeaconLightClient(
            [HttpBeaconEndpoint(url=base, label="beacon#0")],
            devnet.config,
            load_bls(),
            clock=lambda: now,
            blame=pytest.fail,
        )
        lc.start(devnet.root_of(5))
        store = lc.sync()
    finally:
        devnet.stop()
    proven = store.optimistic_header.execution
    final = store.finalized_header.execution
    assert proven is not None and final is not None
    head = _call(url, "eth_getBlockByNumber", [hex(latest), False])
    assert "0x" + proven.block_hash.hex() == head["hash"]
    finalized = _call(url, "eth_getBlockByNumber", [hex(latest - 16), False])
    assert "0x" + final.block_hash.hex() == finalized["hash"]
    # an older block is proven by walking parent hashes back from the proven head
    older = [
        verify_header(_call(url, "eth_getBlockByNumber", [hex(n), False]))
        for n in range(latest, latest - 21, -1)
    ]
    assert lightclient.walk_back(proven.block_hash, older).number == latest - 20
    # a head the clock has not reached is held back (its signature would be from the future)
    devnet.clock = lambda: genesis + 10
    held = devnet.answer(ROUTE + "optimistic_update")
    assert held["data"]["attested_header"]["beacon"]["slot"] == "9"
