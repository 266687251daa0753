"""The command agent under ``trust = "beacon"`` (issue 15, "Agents and time"): a device judges a
command's expiry by the time of a header Ethereum's sync committee signed, so neither a frozen or
lagging device clock nor RPC endpoints that lie about time (a majority of them) make an expired
command valid.

The devnet is agent_world's (controller, valve-1, valve-2, stranger on a real anvil) plus the
devnet's beacon light-client API (lightpost_operator.beacon_server, in-process, its slot following
anvil's head as in test_beacon_trust). valve-1 runs ``trust = "beacon"``; its receiver asks two
lying RPC proxies and one honest endpoint with quorum 2: the liars agree on every block's
``timestamp`` moved back by LIE_BACK_S, so they ARE the quorum for anything RPC-dated. The device
clock is frozen at a time before the expiry (Uptane's freeze attack). Execution time moves on with
``evm_increaseTime``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.receiver_store import ReceiverStore
from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.levels import Level
from lightpost.node.config import DeviceConfig
from lightpost.node.receiver import Receiver
from lightpost_agent.command import Reason, Status, encode_command
from lightpost_operator.anvil import free_port
from lightpost_operator.devnet import devnet_down, devnet_up
from lightpost_operator.proxy import Lie, LyingProxy, Upstream
from tests.integration.agent_world import (
    CRASH_VALVE,
    VALVE,
    FromBlock,
    Party,
    ValveHarness,
    World,
    _customize,
    command,
)

pytest.importorskip("py_arkworks_bls12381", reason="the lightpost[beacon] extra")
from lightpost_beacon.anchor import FINALIZED, OPTIMISTIC, Anchor
from lightpost_operator.beacon_server import BeaconDevnet

pytestmark = pytest.mark.integration

BEACON_FINALITY_BLOCKS = 24
"""Blocks mined after a post: the devnet's finalized block trails its head by 16 slots."""

TIME_JUMP_S = 3600
"""evm_increaseTime between a command's signing and its posting: it is posted expired."""

LIE_BACK_S = TIME_JUMP_S
"""How far back the lying RPC endpoints date every block: as if the jump never happened, so the
expired command looks fresh to them."""


class OldTime(Lie):
    """eth_getBlockByNumber answers dated LIE_BACK_S earlier (hash kept, as colluders would)."""

    methods = frozenset({"eth_getBlockByNumber"})

    def rewrite(self, method: str, params: Sequence[Any], result: Any, upstream: Upstream) -> Any:
        if isinstance(result, dict) and "timestamp" in result:
            result = dict(result, timestamp=hex(int(result["timestamp"], 16) - LIE_BACK_S))
            self.fired += 1
        return result


class BeaconWorld(World):
    """agent_world's World with the beacon API and lying RPC proxies beside it."""

    beacon: BeaconDevnet
    liars: list[LyingProxy]
    started: int = 0
    """The head's timestamp when the world was made: the frozen device clock."""

    def clock(self) -> float:
        """The light client's (and the beacon API's) wall clock: the head's signature slot."""
        genesis: int = self.beacon.config.genesis_time
        return float(genesis + self.head()[0] + 1)

    def frozen(self) -> float:
        """The device clock, frozen at the moment the world was made."""
        return float(self.started)

    def party(self, name: str) -> Party:
        """``name`` in-process; a sender on beacon trust reads the beacon API's clock too."""
        party = super().party(name)
        anchor = getattr(party.chain, "anchor", None)
        if anchor is not None:
            anchor.client.clock = self.clock
        return party

    def receiver_factory(
        self, *, since: int | None = None, tmp: Path | None = None
    ) -> Callable[[DeviceConfig, bytes], Receiver]:
        """valve-1's receiver: rpc#0, rpc#1 lie about time, rpc#2 is honest; quorum 2."""

        def make(config: DeviceConfig, me: bytes) -> Receiver:
            urls = [p.url for p in self.liars] + [self.url]
            eps = [HttpEndpoint(u, f"rpc#{i}", retries=0) for i, u in enumerate(urls)]
            config = dataclasses.replace(config, quorum=2)
            anchor = Anchor(config, eps, clock=self.clock)
            store = ReceiverStore.open(tmp) if tmp is not None else None
            if since is None:
                return Receiver(config, me=me, endpoints=eps, anchor=anchor, store=store)
            return FromBlock(config, since=since, me=me, endpoints=eps, anchor=anchor, store=store)

        return make

    def lied(self) -> int:
        return sum(lie.fired for p in self.liars for lie in p.lies)


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BeaconWorld]:
    directory = tmp_path_factory.mktemp("agent-beacon")
    images = directory / "images"
    images.mkdir()
    net = directory / "net"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    base = _customize(images)
    state: dict[str, Any] = {}

    def customize(name: str, addresses: dict[str, str]) -> dict[str, Any]:
        options = base(name, addresses)
        if name != VALVE:
            return options
        if "beacon" not in state:  # the inbox is deployed by now: block 1 exists
            state["beacon"] = BeaconDevnet(url, clock=lambda: state["clock"]())
            state["beacon_url"] = state["beacon"].serve()
        beacon: BeaconDevnet = state["beacon"]
        options["trust"] = "beacon"
        options["extra"] = options.get("extra", "") + (
            f'\n[beacon]\nendpoints = ["{state["beacon_url"]}"]\n'
            f'trusted_root = "0x{beacon.root_of(1).hex()}"\nnetwork = "devnet"\n'
            f'genesis_time = {beacon.config.genesis_time}\nmax_age = "7d"\n'
        )
        return options

    # until the world exists, the beacon API's clock follows anvil's head directly
    state["clock"] = lambda: state["beacon"].config.genesis_time + state["beacon"].head + 2
    desc = devnet_up(
        net,
        port=port,
        block_time=0,
        names=["controller", VALVE, CRASH_VALVE, "stranger"],
        customize=customize,
    )
    world = BeaconWorld(net, desc, images)
    world.beacon = state["beacon"]
    state["clock"] = world.clock
    world.liars = [LyingProxy(url, [OldTime()], label=f"liar{i}").start() for i in range(2)]
    world.started = world.head()[1]
    try:
        yield world
    finally:
        world.close()
        for proxy in world.liars:
            proxy.stop()
        world.beacon.stop()
        devnet_down(net)


@pytest.fixture
def controller(w: BeaconWorld) -> Iterator[Party]:
    party = w.party("controller")
    try:
        yield party
    finally:
        party.close()


def _valve(w: BeaconWorld, level: Level | None = None, **factory: Any) -> ValveHarness:
    """valve-1's agent over :meth:`BeaconWorld.receiver_factory`, its clock frozen."""
    harness = ValveHarness(w, level=level, receiver=w.receiver_factory(**factory))
    harness.agent._clock = w.frozen  # the device clock is stuck before every expiry
    return harness


def send_set(
    w: BeaconWorld, controller: Party, value: str, *, expired: bool = False
) -> tuple[int, int]:
    """Post ``set valve=VALUE`` to valve-1 (valid for 600 s from the head's time; ``expired``:
    execution time jumps TIME_JUMP_S first, so it lands after its expiry); (seq, expiry)."""
    seq = controller.next_seq()
    _, block_time = w.head()
    cmd = command(
        "set", target=w.address(VALVE), seq=seq, block_time=block_time, args=(("valve", value),)
    )
    if expired:
        w.rpc("evm_increaseTime", [TIME_JUMP_S])
    controller.post(encode_command(cmd), recipient=w.address(VALVE))
    return seq, cmd.expiry


def test_a_command_round_trip_under_beacon_trust_with_lying_rpc_and_a_frozen_clock(
    w: BeaconWorld, controller: Party
) -> None:
    assert w.config(VALVE).trust == "beacon"
    me = controller.address
    valve = _valve(w)
    try:
        seq, _ = send_set(w, controller, "21")
        w.mine(BEACON_FINALITY_BLOCKS)
        valve.pump_until_audited(me, seq, 2)
        assert valve.audit_of(me, seq) == [("accepted", "ok"), ("executed", "ok")]
        assert valve.actuators()["valve"] == "21"
        delivered, result = valve.results[-1]
        assert delivered.level is Level.FINAL and delivered.root == FINALIZED
        assert (result.status, result.reason) == (Status.EXECUTED, Reason.OK)
        assert w.lied() > 0  # the liars were asked and lied; the proven header won
        (back,) = w.results_for(controller, seq)
        assert (back.status, back.reason) == (Status.EXECUTED, Reason.OK)
    finally:
        valve.close()


def test_an_expired_command_is_refused_at_final_whatever_the_clock_and_the_rpc_majority_say(
    w: BeaconWorld, controller: Party
) -> None:
    me = controller.address
    valve = _valve(w)
    try:
        before = valve.actuators()
        seq, expiry = send_set(w, controller, "66", expired=True)
        assert w.frozen() < expiry  # the device clock alone would let it run
        w.mine(BEACON_FINALITY_BLOCKS)
        valve.pump_until_audited(me, seq)
        assert valve.audit_of(me, seq) == [("refused", "expired")]
        assert valve.actuators() == before
        delivered, result = valve.results[-1]
        assert delivered.block_timestamp >= expiry and delivered.root == FINALIZED
        assert "block time" in result.output
    finally:
        valve.close()


def test_an_agent_at_signed_dates_commands_by_the_committee_signed_head_not_the_rpc_quorum(
    w: BeaconWorld, controller: Party, tmp_path: Path
) -> None:
    # at `signed` no block is proven yet: the landed agent dated the command by the RPC quorum's
    # latest block time, which the two lying endpoints set LIE_BACK_S back -- an expired command
    # ran. Under trust = beacon the time is the committee-signed head's (beacon-optimistic).
    me = controller.address
    block, _ = w.head()
    valve = _valve(w, Level.SIGNED, since=block + 1, tmp=tmp_path)
    try:
        valve.agent.policy = dataclasses.replace(valve.policy, min_level=Level.SIGNED)
        before = valve.actuators()
        seq, expiry = send_set(w, controller, "77", expired=True)
        w.mine(1)
        valve.pump_until_audited(me, seq)
        assert valve.audit_of(me, seq) == [("refused", "expired")]
        assert valve.actuators() == before
        delivered, result = valve.results[-1]
        assert delivered.level is Level.SIGNED
        assert "chain time" in result.output
        assert w.lied() > 0
        # ... and a fresh command still runs at `signed`, dated by the same proven head
        fresh, _ = send_set(w, controller, "78")
        w.mine(1)
        valve.pump_until_audited(me, fresh, 2)
        assert valve.audit_of(me, fresh) == [("accepted", "ok"), ("executed", "ok")]
        assert valve.actuators()["valve"] == "78"
        head = valve.service._receive.receiver.anchor.head(final=False)
        assert head.root == OPTIMISTIC and head.timestamp >= expiry
    finally:
        valve.close()
