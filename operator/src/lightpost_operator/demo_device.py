"""One device of the demo city, as its own process (``python -m lightpost_operator.demo_device``).

It runs the ordinary node runtime (sender + receiver + agent services, lightpost.node)
from its own config, plus a role: produce readings (meter, air), camera digests
(camera), execute commands (valve: the agent), or watch and react (controller). What it
does is written as JSON lines to ``--events`` for the demo's live view and report.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lightpost.core.envelope import ContentType, channel_id
from lightpost.core.gas import gas_used
from lightpost.core.keys import to_checksum_address
from lightpost.core.levels import Delivered, Level
from lightpost.core.verify import Problem
from lightpost.errors import LightpostError
from lightpost.node.chain import parse_quantity
from lightpost.node.config import load_config
from lightpost.node.receiver import Receiver
from lightpost.node.runtime import Node, build_chain, load_key, make_sender, open_store
from lightpost.node.services import ReceiveService
from lightpost_agent.command import (
    COMMANDS_CHANNEL,
    CONTENT_TYPE_COMMAND,
    CONTENT_TYPE_RESULT,
    RESULTS_CHANNEL,
    CommandResult,
    decode_result,
    encode_command,
)
from lightpost_agent.service import (
    AgentService,
    build_agent,
    next_command_seq,
    with_command_channel,
)
from lightpost_operator.command_cmd import build_command

__all__ = ["CAMERA_CHANNEL", "CITY_CHANNEL", "main"]

CITY_CHANNEL = "district-1"
"""Readings of meters and air sensors."""

CAMERA_CHANNEL = "cameras"
"""Event digests of cameras (large: chunked)."""

READING_INTERVAL_S = 1.0
"""A sensor publishes a reading about this often (with jitter)."""

CAMERA_INTERVAL_S = 8.0
"""The camera publishes an event digest this often."""

CAMERA_DIGEST_FRAMES = 90
"""Frame hashes per camera digest: ~6 KB of JSON, more than one 2 KB post -> chunked."""

BAD_AIR_AFTER_S = 10.0
"""An air sensor starts reporting bad air (PM2.5 above the threshold) after this long."""

PM25_THRESHOLD = 50.0
"""The controller opens the valve further when PM2.5 exceeds this (ug/m3)."""

COMMAND_COOLDOWN_S = 20.0
"""The controller sends at most one command per this many seconds."""

COMMAND_VALIDITY_S = 600
"""A command is valid for this long after its not-before time (block time)."""

GAS_SCAN_INTERVAL_S = 2.0
"""How often a device looks up the gas used by its mined transactions."""


class Events:
    """Append-only JSON lines, flushed per line (the demo tails the file)."""

    def __init__(self, path: Path, device: str) -> None:
        self.fh = path.open("a", encoding="utf-8")
        self.device = device

    def emit(self, kind: str, **fields: Any) -> None:
        self.fh.write(
            json.dumps({"kind": kind, "device": self.device, "t": time.time(), **fields}) + "\n"
        )
        self.fh.flush()


def _sha(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class Device:
    """A node plus one role's behaviour."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.role = args.role
        self.config = load_config(args.config)
        self.events = Events(Path(args.events), self.config.name)
        self.key = load_key(self.config)
        self.me = to_checksum_address(self.key.address)
        self.store = open_store(self.config)
        self.chain = build_chain(self.config)
        self.sender = make_sender(self.config, self.key, self.store, self.chain)
        self.services: list[Any] = []
        self.started = time.time()
        self.next_produce = self.started + random.uniform(0.5, READING_INTERVAL_S)
        self.produced = 0
        self.next_tx_id = 1
        self.last_gas_scan = 0.0
        self.last_command = 0.0
        self.valve = bytes(20)
        self.receiver: Receiver | None = None
        self._setup_role()

    # -- roles ----------------------------------------------------------------------------

    def _setup_role(self) -> None:
        if self.role == "valve":
            built = build_agent(self.config, self.sender, address=self.key.address)
            if built is None:
                raise SystemExit("valve config has no [agent] table")
            agent, policy = built
            self.receiver = Receiver(with_command_channel(self.config, policy), me=self.key.address)
            self.services.append(
                AgentService(
                    agent,
                    self.receiver,
                    level=policy.min_level,
                    on_result=self._decision,
                    on_problem=self._problem,
                )
            )
        elif self.role == "controller":
            self.receiver = Receiver(self.config, me=self.key.address)
            valve = next(c for c in self.config.channels if c.name == RESULTS_CHANNEL)
            self.valve = valve.trusted[0]
            for level in (Level.INCLUDED, Level.FINAL, Level.COMPLETE):
                self.services.append(
                    ReceiveService(self.receiver, level=level, on_item=self._controller_item)
                )

    def produce(self, now: float) -> None:
        if self.role not in ("meter", "air", "camera") or now < self.next_produce:
            return
        if Path(self.args.stop_file).exists() or now - self.started > self.args.duration:
            return
        self.produced += 1
        if self.role == "camera":
            channel = CAMERA_CHANNEL
            frames = [
                hashlib.sha256(f"{self.me}/{self.produced}/{i}".encode()).hexdigest()
                for i in range(CAMERA_DIGEST_FRAMES)
            ]
            payload = json.dumps(
                {"camera": self.config.name, "event": "motion", "frames": frames}
            ).encode()
            self.next_produce = now + CAMERA_INTERVAL_S
        else:
            channel = CITY_CHANNEL
            reading: dict[str, Any] = {"id": self.config.name, "n": self.produced}
            if self.role == "meter":
                reading |= {
                    "kWh": round(1200 + self.produced * 0.37, 3),
                    "V": round(random.uniform(228, 232), 1),
                }
            else:
                bad = now - self.started > BAD_AIR_AFTER_S
                reading |= {
                    "pm25": round(random.uniform(60, 80) if bad else random.uniform(8, 20), 1)
                }
            payload = json.dumps(reading, separators=(",", ":")).encode()
            self.next_produce = now + READING_INTERVAL_S * random.uniform(0.7, 1.3)
        msg_id = self.sender.enqueue(
            payload=payload, channel=channel, content_type=ContentType.JSON, now=now
        )
        seq = self.store.message(msg_id).seq
        # what the paper would pay: this payload alone in its own transaction (EIP-7623)
        paper_gas = gas_used(payload)
        self.events.emit(
            "sent",
            sender=self.me,
            channel=channel,
            seq=seq,
            role=self.role,
            sha256=_sha(payload),
            bytes=len(payload),
            paper_gas=paper_gas,
        )

    def _controller_item(self, item: Delivered | Problem) -> None:
        if isinstance(item, Problem):
            self._problem(item)
            return
        channel = self._channel_name(item.channel)
        if channel in (CITY_CHANNEL, CAMERA_CHANNEL, RESULTS_CHANNEL):
            self.events.emit(
                "delivered",
                sender=to_checksum_address(item.sender),
                channel=channel,
                seq=item.seq,
                level=str(item.level),
                sha256=_sha(item.payload),
                block=item.block_number,
            )
        if item.content_type == CONTENT_TYPE_RESULT and item.level == Level.FINAL:
            result = decode_result(item.payload)
            self.events.emit(
                "result-received",
                status=str(result.status),
                reason=str(result.reason),
                seq=result.command_seq,
            )
        if (
            channel == CITY_CHANNEL
            and item.level == Level.FINAL
            and item.content_type == ContentType.JSON
        ):
            self._react(item)

    def _channel_name(self, cid: bytes) -> str:
        for c in self.config.channels:
            if channel_id(c.name) == cid:
                return c.name
        return "0x" + cid.hex()

    def _react(self, item: Delivered) -> None:
        try:
            reading = json.loads(item.payload)
        except ValueError:
            return
        pm25 = reading.get("pm25") if isinstance(reading, dict) else None
        now = time.time()
        if not isinstance(pm25, (int, float)) or pm25 <= PM25_THRESHOLD:
            return
        if now - self.last_command < COMMAND_COOLDOWN_S or Path(self.args.stop_file).exists():
            return
        self.last_command = now
        # the same construction as `lightpost command` (validity judged by block time)
        command, _ = build_command(
            "set",
            ["valve=60"],
            to_checksum_address(self.valve),
            seq=next_command_seq(self.store),
            block_time=item.block_timestamp,
            expires_in=COMMAND_VALIDITY_S,
        )
        self.sender.enqueue(
            payload=encode_command(command),
            channel=COMMANDS_CHANNEL,
            recipient=self.valve,
            content_type=CONTENT_TYPE_COMMAND,
        )
        self.events.emit(
            "command-sent",
            command="set valve=60",
            reason=f"{reading.get('id')} reports PM2.5 {pm25}",
        )

    def _decision(self, delivered: Delivered, result: CommandResult) -> None:
        self.events.emit(
            "command-decision",
            status=str(result.status),
            reason=str(result.reason),
            command=f"seq {result.command_seq}",
            level=str(delivered.level),
        )

    def _problem(self, problem: Problem) -> None:
        self.events.emit(
            "problem",
            problem=problem.kind,
            details=problem.details,
            endpoints=list(problem.endpoints),
            seq=problem.seq,
            tx_hash=None if problem.tx_hash is None else "0x" + problem.tx_hash.hex(),
        )

    # -- gas accounting -------------------------------------------------------------------------

    def scan_gas(self, now: float) -> None:
        if now - self.last_gas_scan < GAS_SCAN_INTERVAL_S:
            return
        self.last_gas_scan = now
        while True:
            try:
                tx = self.store.transaction(self.next_tx_id)
            except LightpostError:
                return  # not signed yet
            if tx.included is None and str(tx.state) not in ("final", "FINAL"):
                return
            tx_hash = tx.mined_hash or tx.tx_hash
            receipt = self.chain.receipt_hint(tx_hash)
            if receipt is None:
                return
            self.events.emit(
                "tx",
                tx_hash="0x" + tx_hash.hex(),
                role=self.role,
                messages=len(tx.message_ids),
                gas_used=parse_quantity(receipt["gasUsed"], "gasUsed"),
            )
            self.next_tx_id += 1

    # -- loop ------------------------------------------------------------------------------------

    def run(self) -> None:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        node = Node(
            sender=self.sender,
            services=self.services,
            log=lambda line: self.events.emit("log", message=line),
        )
        while not stop.is_set():
            now = time.time()
            try:
                self.produce(now)
                busy = node.step(now)
                self.scan_gas(now)
            except LightpostError as exc:
                self.events.emit("log", message=str(exc))
                busy = False
            if not busy:
                stop.wait(0.2)
        self.sender.close()
        if self.receiver is not None:
            self.receiver.close()
        self.chain.close()
        self.store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lightpost_operator.demo_device")
    parser.add_argument(
        "--role", required=True, choices=["meter", "air", "camera", "valve", "controller"]
    )
    parser.add_argument("--config", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--stop-file", required=True)
    args = parser.parse_args(argv)
    try:
        Device(args).run()
    except LightpostError as exc:
        Events(Path(args.events), Path(args.config).stem).emit("error", message=str(exc))
        print(f"lightpost demo device: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
