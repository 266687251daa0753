"""A malicious gateway, caught in every case (issue 14): one of two gateways sharing the device's
records tampers with what it publishes -- alters, withholds, replays, reorders -- and the merging
receiver reports it, never delivers a forged or altered record, never delivers one twice, and still
delivers what the honest gateway's proofs and the device's chain allow."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lightpost.core.levels import Level
from lightpost.device import Device
from lightpost_gateway.anchor import ANCHOR_ADDRESS
from lightpost_gateway.feed import Relayed, decode_feed, encode_notice, encode_relayed, feed_topic
from lightpost_gateway.follow import Delivery, Problem
from lightpost_gateway.publish import Publisher, batch_messages
from lightpost_operator.anvil import AnvilProcess
from tests.device.conftest import Mosquitto
from tests.device.test_receive_follow import SECRET, Net, _drain, _follower, _net

READINGS = 10

Tamper = Callable[[int, list[bytes], "Tampering"], list[bytes]]


class Tampering(Publisher):
    """A gateway's publisher that passes each batch's feed messages through ``tamper`` and answers
    no backfill."""

    def __init__(self, tamper: Tamper, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.tamper = tamper
        self.sent: dict[int, list[bytes]] = {}

    def step(self) -> int:
        upto = self.published()
        rows = self.store.db.execute(
            "SELECT id FROM batches WHERE id > ? AND block IS NOT NULL ORDER BY id", (upto,)
        ).fetchall()
        for (batch,) in rows:
            self.sent[batch] = batch_messages(self.store, batch)
            for msg in self.tamper(batch, self.sent[batch], self):
                self.client.send(feed_topic(self.gateway), msg)
            self.store.db.execute("INSERT OR REPLACE INTO feed (one, upto) VALUES (0, ?)", (batch,))
        return len(rows)

    def serve(self, timeout_ms: int = 0) -> int:
        self.client.read(timeout_ms)
        self.client.pending.clear()
        return 0


class ShortLive(Tampering):
    """Cuts batches short on the live feed, answers backfill honestly (a lost message)."""

    serve = Publisher.serve


def _run(
    node: AnvilProcess,
    broker: Mosquitto,
    tmp_path: Path,
    tamper: Tamper,
    level: Level,
    kind: type[Tampering] = Tampering,
) -> tuple[Net, list[int], list[Problem], set[int]]:
    """The device publishes READINGS through both gateways, gateway 1 tampering; returns the
    delivered seqs, the problems and the seqs gateway 1 held."""
    with _net(node, broker, tmp_path) as net:
        bad = net.publishers[1]
        net.publishers[1] = kind(tamper, store=bad.store, gateway=bad.gateway, client=bad.client)
        follower = _follower(net, tmp_path / "recv.sqlite", level)
        follower.start()
        dev = Device(SECRET, net.domain.chain_id, ANCHOR_ADDRESS, str(tmp_path / "flash"))
        dev.connect("127.0.0.1", broker.port)
        seqs: list[int] = []
        problems: list[Problem] = []
        for i in range(READINGS):
            dev.publish(b"temp", b"%d" % i)
            net.turn()
            _drain(dev)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            net.turn()
            net.mine(1)
            for item in follower.poll(100):
                if isinstance(item, Delivery):
                    seqs.append(item.seq)
                else:
                    problems.append(item)
        held = {s for (s,) in net.gateways[1].store.db.execute("SELECT seq FROM records")}
        dev.close()
        return net, seqs, problems, held


def _alter(batch: int, messages: list[bytes], _p: Tampering) -> list[bytes]:
    out = [messages[0]]
    for msg in messages[1:]:
        item = decode_feed(msg)
        assert isinstance(item, Relayed)
        wire = bytearray(item.wire)
        wire[-70] ^= 1  # a payload byte (the last 65 are the signature)
        out.append(encode_relayed(dataclasses.replace(item, wire=bytes(wire))))
    return out


def _withhold(batch: int, messages: list[bytes], _p: Tampering) -> list[bytes]:
    return []


def _reorder(batch: int, messages: list[bytes], _p: Tampering) -> list[bytes]:
    return [messages[0], *reversed(messages[1:])]


def _replay(batch: int, messages: list[bytes], p: Tampering) -> list[bytes]:
    """The first batch as sent; each later one replaced by the first again under its number (the
    first batch's transaction is real, so the notice proves; its records are replays)."""
    if batch == 1:
        return messages
    first = [decode_feed(m) for m in p.sent[1]]
    notice, *records = (dataclasses.replace(m, number=batch) for m in first)  # type: ignore[type-var]
    return [encode_notice(notice), *(encode_relayed(r) for r in records)]  # type: ignore[arg-type]


def _prefix(seqs: list[int]) -> bool:
    return seqs == list(range(len(seqs)))


def test_an_altered_record_is_reported_never_delivered(
    fresh_anvil: AnvilProcess, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    _, seqs, problems, held = _run(fresh_anvil, mosquitto, tmp_path, _alter, Level.INCLUDED)
    assert held, "the broker gave gateway 1 nothing"
    assert any(p.kind == "altered" for p in problems), problems
    assert _prefix(seqs) and min(held) not in seqs  # delivery stops before the first altered
    assert len(seqs) == min(held)


def test_withheld_batches_are_reported_and_nothing_is_complete(
    fresh_anvil: AnvilProcess, mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lightpost_gateway.follow.REQUEST_RETRY_S", 2.0)  # it never answers
    _, seqs, problems, held = _run(fresh_anvil, mosquitto, tmp_path, _withhold, Level.COMPLETE)
    assert held
    assert seqs == [], "nothing is complete while a followed gateway withholds its batches"
    assert any(p.kind == "withheld" for p in problems), problems


def test_withheld_records_at_included_stop_delivery_with_missing(
    fresh_anvil: AnvilProcess, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    net, seqs, problems, held = _run(fresh_anvil, mosquitto, tmp_path, _withhold, Level.INCLUDED)
    first = min(held)
    assert seqs == list(range(first))
    honest = {s for (s,) in net.gateways[0].store.db.execute("SELECT seq FROM records")}
    if max(honest) > first:  # an honest head above the hole: the hole is named
        assert any(p.kind == "missing" and f"seqs {first}.." in p.details for p in problems)


def test_reordered_records_are_delivered_in_order(
    fresh_anvil: AnvilProcess, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    _, seqs, problems, _ = _run(fresh_anvil, mosquitto, tmp_path, _reorder, Level.INCLUDED)
    assert seqs == list(range(READINGS + 1)) and not problems, problems


def test_replayed_records_are_reported_and_never_delivered_twice(
    fresh_anvil: AnvilProcess, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    _, seqs, problems, _ = _run(fresh_anvil, mosquitto, tmp_path, _replay, Level.INCLUDED)
    assert len(seqs) == len(set(seqs)) and _prefix(seqs)
    assert any(p.kind == "replay" for p in problems), problems


def _cut_short(batch: int, messages: list[bytes], _p: Tampering) -> list[bytes]:
    return messages[:-1]


def test_a_batch_cut_short_is_taken_again_from_backfill(
    fresh_anvil: AnvilProcess, mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose records stop coming is not waited for forever: the receiver asks the gateway
    again, and its store answers the whole batch."""
    monkeypatch.setattr("lightpost_gateway.follow.REQUEST_RETRY_S", 1.0)
    _, seqs, problems, held = _run(
        fresh_anvil, mosquitto, tmp_path, _cut_short, Level.INCLUDED, ShortLive
    )
    assert held and seqs == list(range(READINGS + 1)), problems
    assert {p.kind for p in problems} <= {"missing"}  # while the hole was open, it was named
