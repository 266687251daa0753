"""Receiving end to end: a device -> a real Mosquitto -> two gateways sharing one subscription
(so ONE device's chain is split across them) -> a real anvil; the gateways publish each anchored
batch with its proofs and serve backfill; a merging receiver follows both, merges the device's
chain across them and delivers each record exactly once, in order, at ``complete`` -- also across
a restart, also after it missed the live feed (backfill). ``lightpost receive`` does the same on
a config with a ``[gateways]`` table, for a MicroPython device under a 64 KiB heap."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lightpost.adapters.rpc import HttpEndpoint
from lightpost.core.keys import PrivateKey
from lightpost.core.levels import Level
from lightpost.device import Device
from lightpost.node.chain import Chain
from lightpost_gateway import anchorings
from lightpost_gateway.anchor import ANCHOR_ADDRESS
from lightpost_gateway.follow import Delivery, Follower, Problem, ReceiverStore
from lightpost_gateway.merge import completeness
from lightpost_gateway.publish import Publisher
from lightpost_gateway.receiver import prove_gateway_accumulator
from lightpost_gateway.record import Domain
from lightpost_gateway.service import Anchored, Gateway, GatewayClient, GatewayStore
from lightpost_operator.anvil import AnvilProcess
from lightpost_operator.gateway_cmd import chain_anchor, deploy_anchor, shared_topic
from tests.conftest import ANVIL_DEV_KEYS
from tests.device.conftest import Mosquitto

SECRET = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
READINGS = 8
FINALITY_DEPTH = 2


@dataclass
class Net:
    chain: Chain
    domain: Domain
    gateways: list[Gateway]
    publishers: list[Publisher]
    payers: list[bytes]
    broker: Mosquitto
    node: AnvilProcess

    def turn(self) -> None:
        """One turn of each gateway: receive, batch and anchor, publish, serve backfill."""
        for g, p in zip(self.gateways, self.publishers, strict=True):
            g.receive(time.time(), 50)
            g.step(time.time())
            p.tick()

    def mine(self, blocks: int) -> None:
        self.chain.endpoints[0].call("anvil_mine", [hex(blocks)])


@contextmanager
def _net(
    node: AnvilProcess, broker: Mosquitto, tmp_path: Path, publish: bool = True
) -> Iterator[Net]:
    chain = Chain([HttpEndpoint(node.url, "rpc#0")], quorum=1)
    funder = PrivateKey.from_hex(ANVIL_DEV_KEYS[0])
    payers = [PrivateKey.from_hex(k) for k in ANVIL_DEV_KEYS[1:3]]
    try:
        chain_id = chain.chain_id()
        deploy_anchor(chain, chain_id, funder)
        domain = Domain(chain_id=chain_id, anchor=ANCHOR_ADDRESS)
        gateways, publishers = [], []
        for i, payer in enumerate(payers):
            sub, pub = GatewayClient(f"gw{i}"), GatewayClient(f"gw{i}-pub")
            sub.open("127.0.0.1", broker.port)
            sub.listen(shared_topic("test"))
            pub.open("127.0.0.1", broker.port)
            store = GatewayStore(tmp_path / f"gw{i}.sqlite")
            gateways.append(
                Gateway(
                    store=store,
                    domain=domain,
                    anchor=chain_anchor(chain, chain_id, payer),
                    sub=sub,
                    pub=pub,
                    batch_interval_s=0,
                )
            )
            publishers.append(Publisher(store=store, gateway=payer.address, client=pub))
        yield Net(chain, domain, gateways, publishers, [p.address for p in payers], broker, node)
    finally:
        chain.close()


def _drain(dev: Device) -> None:
    """Take the receipts that came (the device's inbox is bounded, as on a board)."""
    for _ in range(16):
        dev.poll(0)


def _follower(
    net: Net, db: Path, level: Level = Level.COMPLETE, wall: Callable[[], float] = time.time
) -> Follower:
    client = GatewayClient("receiver-1")
    client.open("127.0.0.1", net.broker.port)
    return Follower(
        chain=net.chain,
        domain=net.domain,
        gateways=net.payers,
        client=client,
        store=ReceiverStore(db),
        level=level,
        reply_id="receiver-1",
        finality_depth=FINALITY_DEPTH,
        wall=wall,
    )


def _collect(
    net: Net, follower: Follower, want: int, seconds: float = 30
) -> tuple[list[Delivery], list[Problem]]:
    got: list[Delivery] = []
    problems: list[Problem] = []
    deadline = time.monotonic() + seconds
    while len(got) < want and time.monotonic() < deadline:
        net.turn()
        net.mine(1)
        for item in follower.poll(100):
            (got if isinstance(item, Delivery) else problems).append(item)  # type: ignore[arg-type]
    return got, problems


def test_two_gateways_one_device_delivered_once_in_order_at_complete(
    fresh_anvil: AnvilProcess, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with _net(fresh_anvil, mosquitto, tmp_path) as net:
        follower = _follower(net, tmp_path / "recv.sqlite")
        follower.start()
        dev = Device(SECRET, net.domain.chain_id, ANCHOR_ADDRESS, str(tmp_path / "flash"))
        dev.connect("127.0.0.1", mosquitto.port)
        for i in range(READINGS):
            dev.publish(b"temp", b"%d" % i)
            net.turn()
            _drain(dev)
        got, problems = _collect(net, follower, READINGS + 1)
        assert [d.seq for d in got] == list(range(READINGS + 1)), problems
        assert {d.level for d in got} == {Level.COMPLETE}
        assert not problems, problems
        relayed_by = {d.gateway for d in got}
        assert relayed_by == set(net.payers), "the broker did not split the chain"
        assert got[-1].hash == dev.head
        for a, b in itertools.pairwise(got):
            assert b.record.prev == a.hash

        # a restart: nothing again; then only the new records
        follower.client.shut()
        follower.store.close()
        again = _follower(net, tmp_path / "recv.sqlite")
        again.start()
        dev.publish(b"temp", b"late")
        got2, problems2 = _collect(net, again, 1)
        assert [d.seq for d in got2] == [READINGS + 1], problems2
        quiet, _ = _collect(net, again, 1, seconds=3)
        assert quiet == []
        dev.close()


def test_a_receiver_that_missed_the_feed_backfills(
    fresh_anvil: AnvilProcess, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The receiver starts after every batch was published (no session held them): it asks each
    gateway from its cursor and gets them from the gateways' stores."""
    with _net(fresh_anvil, mosquitto, tmp_path) as net:
        dev = Device(SECRET, net.domain.chain_id, ANCHOR_ADDRESS, str(tmp_path / "flash"))
        dev.connect("127.0.0.1", mosquitto.port)
        for i in range(READINGS):
            dev.publish(b"temp", b"%d" % i)
            net.turn()
            _drain(dev)
        for _ in range(10):
            net.turn()
        assert sum(p.published() for p in net.publishers) >= 2
        follower = _follower(net, tmp_path / "recv.sqlite")
        follower.start()
        got, problems = _collect(net, follower, READINGS + 1)
        assert [d.seq for d in got] == list(range(READINGS + 1)), problems
        dev.close()


def _receive_cli(net: Net, config: Path) -> list[dict[str, object]]:
    """`lightpost receive --level complete --json` (one shot) while the gateways run."""
    args = ["receive", "--config", str(config), "--level", "complete", "--json", "--timeout", "40"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightpost.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None:
            assert time.monotonic() < deadline
            net.turn()
            net.mine(1)
        out, err = proc.communicate()
    finally:
        proc.kill()
    assert proc.returncode == 0, err + out
    return [json.loads(line) for line in out.splitlines()]


def test_micropython_device_to_lightpost_receive_at_complete(
    mp_bundle: Path,
    fresh_anvil: AnvilProcess,
    mosquitto: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 14's first 'done when': a MicroPython device (64 KiB heap, no ETH, no RPC endpoint)
    -> Mosquitto -> two gateways -> anvil; `lightpost receive` on a [gateways] config delivers
    every reading at `complete`, once, in order; run again, it delivers nothing twice."""
    import tests.device.test_micropython as mp

    monkeypatch.setattr(mp, "ANCHOR", ANCHOR_ADDRESS.hex())
    readings = 6
    with _net(fresh_anvil, mosquitto, tmp_path) as net:
        proc = mp._device(mp_bundle, tmp_path / "flash", mosquitto.port, readings, 50, 30_000)
        try:
            deadline = time.monotonic() + 60
            while proc.poll() is None:
                assert time.monotonic() < deadline
                net.turn()
            out = proc.stdout.read() if proc.stdout else ""
        finally:
            proc.kill()
        assert proc.returncode == 0, out
        net.mine(FINALITY_DEPTH + 1)
        follow = ", ".join(f'"0x{p.hex()}"' for p in net.payers)
        config = tmp_path / "receiver.toml"
        config.write_text(
            f'chain_id = {net.domain.chain_id}\nendpoints = ["{fresh_anvil.url}"]\nquorum = 1\n'
            f'finality_depth = {FINALITY_DEPTH}\ndata_dir = "{tmp_path / "recv"}"\n\n[gateways]\n'
            f'broker = "127.0.0.1:{mosquitto.port}"\nfollow = [{follow}]\n'
            f'devices = ["0x{mp.ADDRESS.hex()}"]\n'
        )
        lines = _receive_cli(net, config)
        assert [x["seq"] for x in lines] == list(range(readings + 1)), lines
        assert {x["level"] for x in lines} == {"complete"}
        assert lines[0]["kind"] == "birth" and lines[1]["payload"] == "reading 0"
        assert len({x["gateway"] for x in lines}) == 2, "the chain was not split across gateways"
        assert _receive_cli(net, config) == []  # nothing twice


def test_records_held_per_device_are_bounded(
    fresh_anvil: AnvilProcess, mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer cannot make the receiver hold unbounded records: past the bound a record is dropped
    and reported, and delivery never skips it."""
    monkeypatch.setattr("lightpost_gateway.follow.MAX_POOL_PER_DEVICE", 1)
    with _net(fresh_anvil, mosquitto, tmp_path) as net:
        follower = _follower(net, tmp_path / "recv.sqlite", Level.INCLUDED)
        follower.start()
        dev = Device(SECRET, net.domain.chain_id, ANCHOR_ADDRESS, str(tmp_path / "flash"))
        dev.connect("127.0.0.1", mosquitto.port)
        for i in range(READINGS):
            dev.publish(b"temp", b"%d" % i)
        _drain(dev)
        got, problems = _collect(net, follower, READINGS + 1, seconds=6)
        seqs = [d.seq for d in got]
        assert any(p.kind == "bound" for p in problems), problems
        assert seqs == list(range(len(seqs))) and len(seqs) < READINGS + 1
        dev.close()


def test_a_batch_anchored_twice_after_a_crash_is_complete(
    fresh_anvil: AnvilProcess, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Re-anchoring is harmless (issue 14): a batch anchored twice (a gateway restored from a
    backup; before the anchoring outbox, a crash between mining and saving the block) makes the
    chain count one more batch of that gateway than it publishes. The receiver learns the extra
    anchoring from the contract's event, proven by its receipt in an agreed block, sees it carries
    a batch it already has, and still delivers everything at ``complete`` -- no ``withheld``."""
    with _net(fresh_anvil, mosquitto, tmp_path) as net:
        gw = net.gateways[0]
        real = gw._anchor
        # another outbox for the same key: a gateway restored from a backup (its outbox would
        # otherwise find the calldata already anchored and not sign it again)
        restored = chain_anchor(
            net.chain, net.domain.chain_id, PrivateKey.from_hex(ANVIL_DEV_KEYS[1])
        )
        crashes: list[bytes] = []

        def anchor_twice(calldata: bytes) -> Anchored:
            # The first batch goes on chain twice: what the pre-outbox gateway did after a crash
            # between its anchoring being mined and saving the block (the anchoring outbox now
            # prevents that path), and what a gateway restored from a backup still does.
            done = real(calldata)
            if not crashes:
                crashes.append(calldata)
                restored(calldata)
            return done

        gw._anchor = anchor_twice

        follower = _follower(net, tmp_path / "recv.sqlite")
        follower.start()
        dev = Device(SECRET, net.domain.chain_id, ANCHOR_ADDRESS, str(tmp_path / "flash"))
        dev.connect("127.0.0.1", mosquitto.port)
        for i in range(READINGS):
            dev.publish(b"temp", b"%d" % i)
            net.turn()
            _drain(dev)
        got, problems = _collect(net, follower, READINGS + 1)
        assert crashes, "the broker gave gateway 0 nothing: nothing was anchored twice"
        head = net.chain.final_height(0)
        _, count = prove_gateway_accumulator(
            net.chain, gateway=net.payers[0], block=head, anchor=ANCHOR_ADDRESS
        )
        assert count == net.publishers[0].published() + 1, "the batch was not anchored twice"
        assert [d.seq for d in got] == list(range(READINGS + 1)), problems
        assert {d.level for d in got} == {Level.COMPLETE}
        assert not [p for p in problems if p.kind == "withheld"], problems
        dev.close()


def test_a_silent_device_and_a_dead_one_are_reported_once(
    fresh_anvil: AnvilProcess, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Withholding shows as a silent device past its declared cadence (issue 14): no record taken
    from any gateway for two cadences and no death notice is reported ``silent``, once per
    silence; a record makes it alive again; its death notice (the MQTT will the broker publishes
    on an unclean disconnect) is reported ``dead``, once, and not as a silence."""
    wall = [1_000_000.0]
    with _net(fresh_anvil, mosquitto, tmp_path) as net:
        follower = _follower(net, tmp_path / "recv.sqlite", Level.INCLUDED, lambda: wall[0])
        follower.start()
        dev = Device(
            SECRET, net.domain.chain_id, ANCHOR_ADDRESS, str(tmp_path / "flash"), cadence_s=60
        )
        dev.connect("127.0.0.1", mosquitto.port)
        for i in range(3):
            dev.publish(b"temp", b"%d" % i)
            net.turn()
            _drain(dev)
        got, problems = _collect(net, follower, 4)
        assert [d.seq for d in got] == [0, 1, 2, 3], problems
        wall[0] += 119  # within two cadences: alive
        _, problems = _collect(net, follower, 1, seconds=2)
        assert not [p for p in problems if p.kind in ("silent", "dead")], problems
        wall[0] += 2  # past two cadences, no death notice: withheld or lost
        _, problems = _collect(net, follower, 1, seconds=3)
        silent = [p for p in problems if p.kind == "silent"]
        assert [p.device for p in silent] == [dev.address], problems

        dev.publish(b"temp", b"back")  # alive again
        got, problems = _collect(net, follower, 1)
        assert [d.seq for d in got] == [4], problems
        dev.mqtt.sock.close()  # an unclean disconnect: the broker publishes the death notice
        dev.mqtt = None
        _, problems = _collect(net, follower, 1, seconds=3)
        wall[0] += 500
        _, later = _collect(net, follower, 1, seconds=2)
        kinds = [p.kind for p in problems + later if p.kind in ("silent", "dead")]
        assert kinds == ["dead"], problems + later

        # the watch survives a restart: silence after it is still found
        follower.client.shut()
        follower.store.close()
        again = _follower(net, tmp_path / "recv.sqlite", Level.INCLUDED, lambda: wall[0])
        again.start()
        dev.connect("127.0.0.1", mosquitto.port)  # a new birth, alive
        got, problems = _collect(net, again, 1)
        assert [d.seq for d in got] == [5], problems
        wall[0] += 121
        _, problems = _collect(net, again, 1, seconds=3)
        assert [p.kind for p in problems if p.kind in ("silent", "dead")] == ["silent"], problems
        dev.close()


def test_a_reorg_that_drops_an_anchoring_after_included_is_reported_retracted(
    fresh_anvil: AnvilProcess, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Records delivered at ``included`` rest on an anchoring transaction a reorg can drop: once
    its block is final the receiver checks the transaction is still there, and reports each
    device's delivered seqs ``retracted`` when it is not (they are not taken back)."""
    with _net(fresh_anvil, mosquitto, tmp_path) as net:
        snapshot = net.chain.endpoints[0].call("evm_snapshot", [])
        follower = _follower(net, tmp_path / "recv.sqlite", Level.INCLUDED)
        follower.start()
        dev = Device(SECRET, net.domain.chain_id, ANCHOR_ADDRESS, str(tmp_path / "flash"))
        dev.connect("127.0.0.1", mosquitto.port)
        for i in range(3):
            dev.publish(b"temp", b"%d" % i)
            net.turn()
            _drain(dev)
        got, problems = _collect(net, follower, 4)
        assert [d.seq for d in got] == [0, 1, 2, 3], problems
        assert not [p for p in problems if p.kind == "retracted"], problems
        assert net.chain.endpoints[0].call("evm_revert", [snapshot]) is True
        net.mine(FINALITY_DEPTH + 8)  # the same heights again, without the anchorings
        problems = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(p.kind == "retracted" for p in problems):
            problems += [p for p in follower.poll(100) if isinstance(p, Problem)]
        retracted = [p for p in problems if p.kind == "retracted"]
        assert retracted and {p.device for p in retracted} == {dev.address}, problems
        dev.close()


class _LyingLogs(HttpEndpoint):
    """An endpoint whose eth_getLogs answer is ``logs`` (what it invents, or [] to hide)."""

    logs: list[dict[str, str]] | None = None

    def call(self, method: str, params: Sequence[Any]) -> Any:
        if method == "eth_getLogs" and self.logs is not None:
            return self.logs
        return super().call(method, params)


def test_anchorings_from_logs_are_proven_not_believed(
    fresh_anvil: AnvilProcess, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The anchorings the receiver learns from eth_getLogs (anchorings.find) are hints: each is
    proven by its transaction and receipt in the agreed block; an invented one (another
    gateway's transaction, a hash in no block) is refused with its reason; a hidden one is
    simply not found, so `complete` waits (merge.completeness: `unknown`), never passes."""
    with _net(fresh_anvil, mosquitto, tmp_path) as net:
        dev = Device(SECRET, net.domain.chain_id, ANCHOR_ADDRESS, str(tmp_path / "flash"))
        dev.connect("127.0.0.1", mosquitto.port)
        for i in range(4):
            dev.publish(b"temp", b"%d" % i)
            net.turn()
            _drain(dev)
        for _ in range(5):
            net.turn()
        assert all(p.published() for p in net.publishers), "a gateway anchored nothing"
        head = net.chain.tag_height("latest")
        honest = {}
        for payer in net.payers:
            found, why = anchorings.find(net.chain, gateway=payer, domain=net.domain, lo=0, hi=head)
            acc, count = prove_gateway_accumulator(
                net.chain, gateway=payer, block=head, anchor=ANCHOR_ADDRESS
            )
            digests = {a.count: a.digest for a in found}
            assert count >= 1 and not why and sorted(digests) == list(range(1, count + 1))
            verdict = completeness(digests, count=count, acc=acc, have=set(digests.values()))
            assert verdict.kind == "complete"
            honest[payer] = found
        other = honest[net.payers[1]][0]
        liar = _LyingLogs(fresh_anvil.url, "rpc#0")
        liar.logs = [
            {"blockNumber": hex(other.block), "transactionHash": "0x" + other.tx_hash.hex()},
            {"blockNumber": hex(other.block), "transactionHash": "0x" + "ab" * 32},
        ]
        lying = Chain([liar], quorum=1)
        try:
            found, why = anchorings.find(
                lying, gateway=net.payers[0], domain=net.domain, lo=0, hi=head
            )
            assert found == [] and len(why) == 2, why
            liar.logs = []  # hiding: nothing found, nothing complete
            found, why = anchorings.find(
                lying, gateway=net.payers[0], domain=net.domain, lo=0, hi=head
            )
            acc, count = prove_gateway_accumulator(
                lying, gateway=net.payers[0], block=head, anchor=ANCHOR_ADDRESS
            )
            assert found == [] and count >= 1
            verdict = completeness({}, count=count, acc=acc, have=set())
            assert verdict.kind == "unknown"
        finally:
            lying.close()
        dev.close()
