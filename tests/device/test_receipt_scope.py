"""A receipt releases exactly the record it names (found by the chaos run,
tools/reliability_gateway.py): the broker acknowledges a record to the device and can still
drop it -- no gateway subscribed yet, or a crash before its save -- so a gateway that anchored
the device's later records cannot vouch for the earlier ones. With a receipt that released
every record up to its seq, the device deleted records no gateway ever held: lost."""

from __future__ import annotations

import time
from pathlib import Path

from lightpost.core.hashing import keccak256
from lightpost.device import Device
from lightpost_gateway.anchor import ANCHOR_ADDRESS
from lightpost_gateway.record import Domain
from lightpost_gateway.service import Anchored
from tests.device.conftest import Mosquitto
from tests.device.test_gateway import SECRET, _gateway, _receive_until

DOMAIN = Domain(chain_id=31337, anchor=ANCHOR_ADDRESS)


def _poll_until(dev: Device, done: object) -> None:
    deadline = time.monotonic() + 20
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, dev.store.retained()
        dev.poll(100)


def test_records_the_broker_dropped_stay_retained_and_are_republished(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    anchored: list[bytes] = []

    def anchor(calldata: bytes) -> Anchored:
        anchored.append(calldata)
        return Anchored(tx_hash=keccak256(calldata), block=len(anchored))

    dev = Device(SECRET, DOMAIN.chain_id, ANCHOR_ADDRESS, str(tmp_path / "flash"))
    dev.connect("127.0.0.1", mosquitto.port)  # birth 0: acknowledged, no subscriber: dropped
    for i in range(3):
        dev.publish(b"temp", b"%d" % i)  # 1..3: the same
    gateway = _gateway(mosquitto, tmp_path / "gw.sqlite", DOMAIN, anchor)
    for i in range(3, 5):
        dev.publish(b"temp", b"%d" % i)  # 4, 5: to the gateway
    _receive_until(gateway, "accept", 2)
    assert gateway.step(time.time()) is not None
    _poll_until(dev, lambda: not {4, 5} & set(dev.store.retained()))
    dev.poll(500)  # anything else the gateway sent
    assert dev.store.retained() == [0, 1, 2, 3]  # held by no gateway: still retained

    dev.republish()  # receipts overdue
    _receive_until(gateway, "accept", 6)
    assert gateway.step(time.time()) is not None
    _poll_until(dev, lambda: not dev.store.retained())
    held = {s for (s,) in gateway.store.db.execute("SELECT seq FROM records")}
    assert held == set(range(6))
    dev.close()
