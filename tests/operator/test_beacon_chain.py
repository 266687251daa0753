"""The generated beacon chain (lightpost_operator.beacon_chain) is accepted by the real light
client through the real spec path: bootstrap, a committee hand-over per period, finality and
optimistic updates carrying the execution headers given; and what a lying beacon endpoint could
make of it is refused."""

from __future__ import annotations

import copy
from hashlib import sha256
from typing import Any

import pytest

from lightpost.errors import BeaconRefused
from lightpost_beacon import containers as beacon
from lightpost_beacon import lightclient
from lightpost_beacon.containers import ExecutionPayloadHeader

pytest.importorskip("py_arkworks_bls12381", reason="the lightpost[beacon] extra")
from lightpost_beacon.bls import load_bls
from lightpost_beacon.sources import BeaconLightClient
from lightpost_operator.beacon_chain import GeneratedChain, devnet_config

GENESIS = 1_700_000_000
CONFIG = devnet_config(genesis_time=GENESIS)
PERIOD = CONFIG.slots_per_epoch * CONFIG.epochs_per_period
LAST = 3 * PERIOD + 20
BLS = load_bls()


def execution(slot: int) -> ExecutionPayloadHeader:
    return ExecutionPayloadHeader(
        block_number=slot, block_hash=sha256(slot.to_bytes(8, "big")).digest(), timestamp=slot
    )


@pytest.fixture(scope="module")
def chain() -> GeneratedChain:
    chain = GeneratedChain(CONFIG)
    for slot in range(1, LAST + 1):
        finalized = slot - 2 * CONFIG.slots_per_epoch
        chain.add_block(slot, execution(slot), finalized if finalized >= 1 else None)
    return chain


class Node:
    """The beacon API over the generated chain, at ``LAST + 1``."""

    label = "beacon#0"

    def __init__(self, chain: GeneratedChain) -> None:
        self.chain = chain

    def get(self, path: str, cap: int) -> Any:
        route = path.rsplit("/", 1)[1]
        if route.startswith("0x"):
            slot = next(
                s for s, b in self.chain.blocks.items() if b.header.beacon.root().hex() == route[2:]
            )
            return self.chain.bootstrap(slot)
        if route.startswith("updates?"):
            args = dict(p.split("=") for p in route.split("?")[1].split("&"))
            start, count = int(args["start_period"]), int(args["count"])
            # the best update of each period: its last block, signed in the same period
            return [
                self.chain.update((p + 1) * PERIOD - 2, (p + 1) * PERIOD - 1)
                for p in range(start, start + count)
            ]
        return self.chain.update(LAST - 1, LAST, kind=route)


def test_the_light_client_follows_the_generated_chain(chain: GeneratedChain) -> None:
    trusted = chain.blocks[10].header.beacon.root()
    lc = BeaconLightClient(
        [Node(chain)], CONFIG, BLS, clock=lambda: GENESIS + LAST + 1, blame=pytest.fail
    )
    lc.start(trusted)
    store = lc.sync()
    assert store.optimistic_header.execution == execution(LAST - 1)
    assert store.finalized_header.execution == execution(LAST - 1 - 2 * CONFIG.slots_per_epoch)
    assert store.current_sync_committee == chain.committee(3)  # handed over period by period


def _refusal(chain: GeneratedChain, answer: dict[str, Any], now: int) -> str:
    boot = beacon.bootstrap_from_json(chain.bootstrap(10), CONFIG)
    store = lightclient.bootstrap(CONFIG, boot.header.beacon.root(), boot, current_slot=10)
    (update,) = beacon.updates_from_json(answer, CONFIG)
    with pytest.raises(BeaconRefused) as err:
        lightclient.process_update(CONFIG, store, update, current_slot=now, bls=BLS)
    return err.value.rule


def test_what_a_lying_endpoint_could_serve_is_refused(chain: GeneratedChain) -> None:
    good = chain.update(40, 41)
    boot = beacon.bootstrap_from_json(chain.bootstrap(10), CONFIG)
    store = lightclient.bootstrap(CONFIG, boot.header.beacon.root(), boot, current_slot=10)
    (untampered,) = beacon.updates_from_json(good, CONFIG)
    lightclient.process_update(CONFIG, store, untampered, current_slot=41, bls=BLS)  # accepted

    wrong_committee = GeneratedChain(CONFIG, seed=b"another committee")
    for slot in range(1, 42):
        wrong_committee.add_block(slot, execution(slot))
    forged = copy.deepcopy(good)
    forged["data"]["sync_aggregate"] = wrong_committee.update(40, 41)["data"]["sync_aggregate"]
    assert _refusal(chain, forged, 41) == "signature"
    assert _refusal(chain, chain.update(40, 41, signers=0), 41) == "participants"
    assert _refusal(chain, good, 40) == "future_slot"
    other_block = copy.deepcopy(good)
    other_block["data"]["attested_header"]["execution"]["block_hash"] = "0x" + "00" * 32
    assert _refusal(chain, other_block, 41) == "execution_branch"
    # a minority of signers verifies but does not finalize (2/3 needed)
    weak = beacon.updates_from_json(chain.update(40, 41, signers=10), CONFIG)[0]
    after = lightclient.process_update(CONFIG, store, weak, current_slot=41, bls=BLS)
    assert after.finalized_header == store.finalized_header
