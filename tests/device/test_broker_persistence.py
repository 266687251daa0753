"""The test broker keeps queued QoS 1 messages across a kill -9 (issue 14: persistence with a save
on every change). Run as root, Mosquitto drops to the user ``mosquitto``, which cannot write the
test's persistence directory: it then ran with no persistence at all, silently, and every device
test that relied on it proved nothing; the config now names the user running it."""

from __future__ import annotations

import time

from lightpost.device.mqtt import Client
from tests.device.conftest import Mosquitto


def test_a_queued_message_survives_kill_9_of_the_broker(mosquitto: Mosquitto) -> None:
    sub = Client("persistent-subscriber")
    sub.connect("127.0.0.1", mosquitto.port)  # clean_session=0: the broker keeps the session
    sub.subscribe("lp/1/test")
    sub.close()  # offline: what is published now is queued for it
    pub = Client("publisher")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.publish("lp/1/test", b"kept")  # PUBACK: the broker has it
    pub.close()
    time.sleep(0.5)  # autosave on every change
    assert mosquitto.proc is not None
    mosquitto.proc.kill()
    mosquitto.proc.wait()
    mosquitto.start()  # same port, same persistence directory
    again = Client("persistent-subscriber")
    assert again.connect("127.0.0.1", mosquitto.port)  # the session survived
    deadline = time.monotonic() + 10
    while not again.inbox:
        assert time.monotonic() < deadline, "the queued message was lost"
        again.poll(200)
    assert again.inbox == [("lp/1/test", b"kept")]
    again.close()
