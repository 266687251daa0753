"""Two device findings of the gateway chaos run (tools/reliability_gateway.py), each of which
kept devices from ever getting their receipts:

- a device that cannot connect (broker down) signed a new birth on every attempt; the flash
  filled with births, and then no birth fitted, so no connect could happen: stuck for good;
- receipts (one per record) arriving while the device waited for a PUBACK overflowed the MQTT
  client's bounded inbox: an error, a reconnect, every retained record republished, more
  receipts -- a reconnect storm. Receipts are now taken as they come, never queued."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lightpost.device import Device
from lightpost.device.mqtt import MAX_INBOX, Client
from lightpost.device.store import MAX_RETAINED
from lightpost_gateway.anchor import ANCHOR_ADDRESS
from lightpost_gateway.record import DeviceReceipt, encode_device_receipt
from tests.device.conftest import Mosquitto
from tests.device.test_gateway import SECRET

CLOSED_PORT = 1
"""Nothing listens on loopback port 1, and it is outside the ephemeral range (a free ephemeral
port can, tried often enough, connect to itself: TCP simultaneous open)."""


def test_failed_connects_in_a_row_sign_one_birth(tmp_path: Path) -> None:
    dev = Device(SECRET, 31337, ANCHOR_ADDRESS, str(tmp_path / "flash"))
    closed = CLOSED_PORT
    for _ in range(MAX_RETAINED + 5):
        with pytest.raises(OSError):
            dev.connect("127.0.0.1", closed)
    assert dev.seq == 1 and dev.store.retained() == [0]  # one birth, reused
    dev.record(0, b"temp", b"1")  # a reading while offline: signed and retained
    with pytest.raises(OSError):
        dev.connect("127.0.0.1", closed)
    assert dev.store.retained() == [0, 1, 2]  # data since the last birth: a new birth


def test_a_burst_of_receipts_during_a_publish_is_taken(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    dev = Device(SECRET, 31337, ANCHOR_ADDRESS, str(tmp_path / "flash"))
    dev.connect("127.0.0.1", mosquitto.port)
    count = 2 * MAX_INBOX
    for i in range(count):
        dev.publish(b"temp", b"%d" % i)
    gateway = Client("receipt-sender")
    gateway.connect("127.0.0.1", mosquitto.port)
    for seq in dev.store.retained():
        got = dev.store.get(seq)
        assert got is not None
        receipt = DeviceReceipt(seq=seq, record_hash=got[0], tx_hash=b"\x01" * 32, block=3)
        gateway.publish(dev.receipt_topic, encode_device_receipt(receipt))
    gateway.disconnect()
    time.sleep(0.5)  # all in the device's socket before its next PUBACK
    seq = dev.publish(b"temp", b"next")  # reads the receipts while it waits for its PUBACK
    assert seq == count + 1
    assert dev.store.retained() == [seq]
    dev.close()
