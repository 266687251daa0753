"""The demo's MQTT devices, without sockets: a missing MicroPython or Mosquitto is said in one line
and the demo runs without them (or fails clearly with --require-mqtt); a reading counts as
delivered only at the levels the merging receivers delivered it, with the payload the device
sent."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from lightpost.errors import ConfigError
from lightpost_operator.demo import Demo
from lightpost_operator.demo_mqtt import MQTT_CHANNEL, MqttFleet
from lightpost_operator.gateway_check import GatewayReading

ADDRESS = "0x" + "ab" * 20
GATEWAY = {
    "anchor": "0x" + "cd" * 20,
    "address": "0x" + "ef" * 20,
    "db": "unused.sqlite",
    "device_script": "device.py",
    "mqtt_devices": [{"name": "mqtt-1", "address": ADDRESS, "config": "mqtt-1.json"}],
}


def _args(**kw: Any) -> argparse.Namespace:
    base = {"json": False, "mqtt_devices": 2, "require_mqtt": False}
    return argparse.Namespace(**{**base, **kw})


def test_missing_micropython_is_one_line_and_the_demo_runs_without(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(
        "lightpost_operator.demo.mqtt_unavailable", lambda: "MicroPython not installed"
    )
    out = io.StringIO()
    demo = Demo(_args(), tmp_path, out)
    assert demo._mqtt_devices() == 0
    assert out.getvalue() == "MQTT devices skipped: MicroPython not installed\n"
    assert demo._mqtt_report() == {"devices": 0, "skipped": "MicroPython not installed"}


def test_require_mqtt_fails_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("lightpost_operator.demo.mqtt_unavailable", lambda: "Mosquitto missing")
    with pytest.raises(ConfigError, match="--require-mqtt: Mosquitto missing"):
        Demo(_args(require_mqtt=True), tmp_path, io.StringIO())._mqtt_devices()


def test_zero_mqtt_devices_asks_for_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def boom() -> str:
        raise AssertionError("not asked when no MQTT device is wanted")

    monkeypatch.setattr("lightpost_operator.demo.mqtt_unavailable", boom)
    assert Demo(_args(mqtt_devices=0), tmp_path, io.StringIO())._mqtt_devices() == 0


def _sent(path: Path, seq: int, payload: str) -> None:
    with path.open("a") as fh:
        fh.write(
            json.dumps({"kind": "sent", "seq": seq, "payload": payload, "sent_ms": 1000}) + "\n"
        )


class _Receivers:
    """Stands in for GatewayReceivers: hands over scripted deliveries, once each."""

    def __init__(self) -> None:
        self.next: list[GatewayReading] = []
        self.closed = False

    def poll(self) -> tuple[list[GatewayReading], list[str]]:
        out, self.next = self.next, []
        return out, []

    def close(self) -> None:
        self.closed = True


def test_a_reading_counts_only_at_the_levels_a_receiver_delivered_with_the_payload_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    demo = Demo(_args(), tmp_path, io.StringIO())
    fleet = MqttFleet(
        GATEWAY,
        chain_id=31337,
        directory=tmp_path,
        stop_file=tmp_path / "stop",
        on_sent=demo.tally.sent.__setitem__,
        on_delivered=demo._delivered,
        on_problem=lambda _m: None,
    )
    demo.mqtt = fleet
    receivers = _Receivers()
    fleet.receivers = receivers  # type: ignore[assignment]
    monkeypatch.setattr(fleet, "gas", lambda _chain: (0, 0))
    events = fleet.devices[0].events
    for seq, text in ((1, '{"t": 20.1}'), (2, '{"t": 20.9}'), (3, '{"t": 21.7}')):
        _sent(events, seq, text)
    device = bytes.fromhex(ADDRESS[2:])

    def at(seq: int, payload: bytes, *levels: str) -> list[GatewayReading]:
        return [
            GatewayReading(seq=seq, payload=payload, block=None, level=lv, device=device)
            for lv in levels
        ]

    receivers.next = [
        *at(0, b"", "included", "final", "complete"),  # the birth: not a reading
        *at(1, b'{"t": 20.1}', "included", "final", "complete"),
        *at(2, b'{"t": 99.9}', "included", "final"),  # altered
        *at(4, b'{"t": 22.5}', "included"),  # delivered before its "sent" line was read
    ]  # seq 3: never delivered (withheld)
    fleet.collect(lambda d: list(demo._lines(d)))
    fleet.verify(object(), force=True)  # type: ignore[arg-type]
    _sent(events, 4, '{"t": 22.5}')
    fleet.collect(lambda d: list(demo._lines(d)))
    fleet.verify(object(), force=True)  # type: ignore[arg-type]

    keys = [(ADDRESS, MQTT_CHANNEL, s) for s in (1, 2, 3, 4)]
    assert set(demo.tally.sent) == set(keys)
    assert [k in demo.tally.delivered["complete"] for k in keys] == [True, False, False, False]
    assert [k in demo.tally.delivered["final"] for k in keys] == [True, True, False, False]
    assert [k in demo.tally.delivered["included"] for k in keys] == [True, True, False, True]
    assert [ev["seq"] for ev in demo.tally.forged_accepted] == [2, 2]  # included and final
    demo.started = 0.0
    report = demo.report()
    assert report["ok"] is False
    assert report["messages"]["lost"] == [list(keys[1]), list(keys[2]), list(keys[3])]
    assert report["mqtt"]["sent"] == 4
    assert report["mqtt"]["delivered"] == {"included": 3, "final": 2, "complete": 1}
    fleet.stop()
    assert receivers.closed
