"""lightpost.device under the real MicroPython (Unix port, hard 64 KiB heap) against a real
Mosquitto: a CPython subscriber verifies every record (signature, device, chain link); a gateway
stand-in sends a receipt; kill -9 of the device mid-run resumes seq and head with no seq reused."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from lightpost.device import mqtt
from lightpost.device.store import Store
from lightpost_gateway.record import (
    ChainEntry,
    DeviceReceipt,
    Domain,
    Kind,
    Link,
    classify_link,
    encode_device_receipt,
    open_record,
    parse_birth,
)
from tests.device.conftest import MICROPYTHON, Mosquitto

SECRET = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ADDRESS = bytes.fromhex("2c7536e3605d9c16a7a3d7b1898e529396a65c23")
ANCHOR = "5fbdb2315678afecb367f032d93f642f64180aa3"
DOMAIN = Domain(chain_id=31337, anchor=bytes.fromhex(ANCHOR))
SCRIPT = Path(__file__).with_name("mp_device.py")
HEAP = "heapsize=64K"
"""Issue 14's goal, a hard limit in MicroPython: over it, MemoryError."""


@dataclass
class Follower:
    """A CPython receiver: verifies each record and judges its chain link."""

    broker: Mosquitto
    known: dict[int, ChainEntry] = field(default_factory=dict)
    verdicts: list[tuple[int, Link]] = field(default_factory=list)
    births: dict[int, bytes] = field(default_factory=dict)
    declared: dict[int, tuple[int, int]] = field(default_factory=dict)
    deaths: list[tuple[int, bytes]] = field(default_factory=list)
    client: mqtt.Client | None = None

    def __post_init__(self) -> None:
        self.client = mqtt.Client(f"follower-{self.broker.port}", keepalive=60)
        self.client.connect("127.0.0.1", self.broker.port)
        self.client.subscribe("lp/1/d/#")

    def pump(self, seconds: float, until: object = None) -> None:
        assert self.client is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.client.poll(50)
            while self.client.inbox:
                self._take(*self.client.inbox.pop(0))
            if callable(until) and until():
                return

    def _take(self, topic: str, msg: bytes) -> None:
        signed, address, digest = open_record(msg, DOMAIN)
        assert address == ADDRESS and topic == f"lp/1/d/{ADDRESS.hex()}"
        r = signed.record
        if r.kind == Kind.DEATH:
            self.deaths.append((r.seq, r.prev))
            return
        if r.kind == Kind.BIRTH:
            self.births[r.seq] = digest
            birth = parse_birth(r)
            self.declared[r.seq] = (birth.cadence_s, birth.unanchored_from)
        entry = ChainEntry(seq=r.seq, hash=digest, prev=r.prev)
        verdict = classify_link(self.known, entry)
        self.verdicts.append((r.seq, verdict.link))
        if verdict.link not in (Link.REPLAY, Link.FORK):
            self.known[r.seq] = entry

    def data_seen(self) -> int:
        return sum(1 for s, link in self.verdicts if s not in self.births and link != Link.REPLAY)


def _device(
    bundle: Path, state: Path, port: int, count: int, delay_ms: int, wait_ms: int
) -> subprocess.Popen[str]:
    args = [SECRET, ANCHOR, str(port), str(state), str(count), str(delay_ms), str(wait_ms)]
    return subprocess.Popen(
        [str(MICROPYTHON), "-X", HEAP, str(SCRIPT), *args],
        env={**os.environ, "MICROPYPATH": str(bundle)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_micropython_device_publishes_verified_records_and_takes_a_receipt(
    mp_bundle: Path, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    follower = Follower(mosquitto)
    proc = _device(mp_bundle, tmp_path / "flash", mosquitto.port, 5, 20, 20_000)
    try:
        follower.pump(60, until=lambda: len(follower.known) >= 6)  # birth + 5 readings
        assert sorted(follower.known) == [0, 1, 2, 3, 4, 5]
        # a gateway stand-in: records 0..3 are anchored, one receipt each
        assert follower.client is not None
        for seq in range(4):
            receipt = DeviceReceipt(
                seq=seq, record_hash=follower.known[seq].hash, tx_hash=b"\x07" * 32, block=12
            )
            follower.client.publish(f"lp/1/r/{ADDRESS.hex()}", encode_device_receipt(receipt))
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "retained [4, 5]" in out, out
    assert [link for _, link in follower.verdicts] == [Link.FIRST] + [Link.NEXT] * 5
    birth = follower.births[0]
    assert follower.known[1].prev == birth
    follower.pump(1.0)
    assert follower.deaths == []  # a clean DISCONNECT: the broker drops the will
    print(out)


def test_kill_9_mid_run_resumes_seq_and_head_without_reusing_a_seq(
    mp_bundle: Path, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    rng = random.Random(14)
    follower = Follower(mosquitto)
    flash = tmp_path / "flash"
    for _ in range(3):
        seen = follower.data_seen()
        proc = _device(mp_bundle, flash, mosquitto.port, 40, 15, 0)
        try:
            follower.pump(60, until=lambda s=seen: follower.data_seen() >= s + rng.randint(2, 6))
            time.sleep(rng.uniform(0, 0.1))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            proc.kill()
        latest_birth = max(follower.births)
        # the broker publishes the will: a death notice naming the session's birth
        follower.pump(10, until=lambda b=latest_birth: (b, follower.births[b]) in follower.deaths)
        assert (latest_birth, follower.births[latest_birth]) in follower.deaths
    top_before = max(follower.known)
    proc = _device(mp_bundle, flash, mosquitto.port, 2, 0, 0)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    follower.pump(3, until=lambda: False)
    links = {link for _, link in follower.verdicts}
    assert Link.FORK not in links  # no seq was ever signed twice for two records
    top = max(follower.known)
    assert sorted(follower.known) == list(range(top + 1))  # no gap: retained records republished
    for seq, digest in follower.births.items():
        assert follower.known[seq].hash == digest
    assert all(d in [(s, h) for s, h in follower.births.items()] for d in follower.deaths)
    # the flash agrees with what the world saw: next seq and head
    seq, head = Store(str(flash)).boot()
    assert (seq, head) == (top + 1, follower.known[top].hash)
    # the last boot resumed past everything published before it, and its birth took that seq
    boot = int(out.split("boot ", 1)[1].split()[0])
    assert boot > top_before and boot in follower.births


def test_birth_declares_cadence_and_retained_backlog(
    mp_bundle: Path, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    follower = Follower(mosquitto)
    for _ in range(2):
        proc = _device(mp_bundle, tmp_path / "flash", mosquitto.port, 2, 0, 0)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
    follower.pump(5, until=lambda: len(follower.births) == 2)
    first, second = sorted(follower.births)
    assert (first, second) == (0, 3)
    assert [follower.verdicts[i][1] for i in range(3)] == [Link.FIRST, Link.NEXT, Link.NEXT]
    assert Link.REPLAY in {link for _, link in follower.verdicts}  # the backlog, republished
    assert Link.FORK not in {link for _, link in follower.verdicts}
    assert follower.known[3].prev == follower.known[2].hash
    # each birth declares cadence 5 s and, no receipt having come, everything from seq 0 retained
    assert follower.declared == {0: (5, 0), 3: (5, 0)}
