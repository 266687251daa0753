"""Measure the gateway (issue 14).

Default (no broker, no chain: the gateway's own CPU work): records admitted per second on one core
(strict decode, signer recovery under the domain, chain link against SQLite, durable insert) and
batched (one leaf per device, Merkle root), and relayed records verified per second by a receiver
(lightpost_gateway.relay, anchor tx and receipt given). The keccak is the compiled one when
installed (`fast` extra), as on a gateway.

Gas per reading in ``posted`` mode (:func:`posted_gas`): one minute of 1,000 and 10,000 devices,
each sending one 100-byte JSON reading that varies per device and per minute
(:func:`reading_json`), cut into batches as the gateway cuts them and priced by the EIP-7623
rule (lightpost.core.gas.gas_used; tests/integration/test_anchor_anvil.py checks the model
against anvil's gasUsed).

``--broker``: the same records through a real Mosquitto (the issue's config: persistence, a save on
every change): a publisher process sends them at QoS 1, the gateway (in this process, its
anchoring a no-op) reads, admits, commits, acknowledges, batches and sends one receipt per record;
records per second of wall time and per CPU second of the gateway process.

``--latency``: device publish -> ``included`` on the devnet: anvil with 1 s blocks, the anchoring
contract, Mosquitto, one `lightpost gateway run --interval 1`, and simulated devices
(lightpost.device) each publishing a reading a second; a record's latency is from just before its
publish to its receipt at the device (the gateway sends it once the anchoring transaction is in a
block). p50 / p95.

Prints one JSON object; ``--write-docs`` puts the broker and latency figures in their generated
section of docs/benchmarks.md. Usage: python tools/bench_gateway.py [--devices N]
[--per-device K] [--broker] [--latency] [--write-docs]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lightpost.core import hashing
from lightpost.core.gas import gas_used
from lightpost.core.keys import PrivateKey
from lightpost.core.receipts import Log, Receipt
from lightpost.core.tx import DynamicFeeTx, sign_transaction
from lightpost_gateway.admit import Verdict
from lightpost_gateway.anchor import (
    EVENT_TOPIC,
    anchor_execution_gas,
    batch_digest,
    decode_posted,
    posted_calldata,
)
from lightpost_gateway.batch import Leaf, batch_root, prove_inclusion
from lightpost_gateway.record import (
    ZERO_HASH,
    Domain,
    Kind,
    Record,
    encode_record,
    record_hash,
    sign_record,
)
from lightpost_gateway.relay import verify_relayed
from lightpost_gateway.service import (
    MAX_BATCH_RECORDS,
    RECORDS_PER_POLL,
    Anchored,
    Gateway,
    GatewayClient,
    GatewayStore,
)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- BEGIN GENERATED BENCH-GATEWAY -->", "<!-- END GENERATED BENCH-GATEWAY -->"

DOMAIN = Domain(chain_id=31337, anchor=b"\xaa" * 20)
PAYLOAD = 100
"""Bytes per reading (the issue's 100-byte reading)."""


def _records(devices: int, per_device: int) -> tuple[list[tuple[str, bytes]], list[Leaf]]:
    out, leaves = [], []
    for d in range(devices):
        key = PrivateKey(hashlib.sha256(b"bench device %d" % d).digest())
        prev = ZERO_HASH
        for seq in range(per_device):
            rec = Record(
                kind=Kind.DATA,
                stream=b"temp",
                seq=seq,
                prev=prev,
                payload=hashlib.sha256(b"%d %d" % (d, seq)).digest() * 3 + b"\x00" * 4,
            )
            out.append(
                (f"lp/1/d/{key.address.hex()}", encode_record(sign_record(rec, DOMAIN, key)))
            )
            prev = record_hash(rec, DOMAIN)
        leaves.append(Leaf(device=key.address, first_seq=0, last_seq=per_device - 1, head=prev))
    return out, sorted(leaves, key=lambda leaf: leaf.device)


READING_BYTES = 100
"""The issue's reading: 100 bytes of JSON."""

MINUTE_MS = 60_000
EPOCH_MS = 1_790_000_000_000
"""A fixed start time (November 2026) so that runs compare."""

POSTED_DEVICES = (1_000, 10_000)
"""The issue's fleets, each device reporting every 60 s."""


def reading_json(device: int, minute: int, rng: random.Random) -> bytes:
    """A smart meter's reading, exactly READING_BYTES of JSON: its id, the minute's timestamp, a
    cumulative energy counter that grows per device, voltage, current, temperature and power
    factor drawn at random (measurement noise), padded with random digits of a serial field when
    shorter -- random digits are the pessimistic padding: they do not compress."""
    fields = {
        "id": f"meter-{device:05d}",
        "ts": (EPOCH_MS + minute * MINUTE_MS) // 1000,
        "kwh": round(1000 + device * 3.7 + minute * 0.0213 * (1 + device % 7), 3),
        "v": round(rng.gauss(230, 2), 1),
        "a": round(abs(rng.gauss(4, 1.5)), 2),
        "t": round(rng.gauss(21, 3), 1),
        "pf": round(rng.uniform(0.8, 1), 2),
    }
    text = json.dumps(fields, separators=(",", ":"))
    room = READING_BYTES - len(text) - len(',"n":""')
    text = text[:-1] + ',"n":"' + "".join(rng.choice("0123456789") for _ in range(room)) + '"}'
    data = text.encode()
    assert len(data) == READING_BYTES, len(data)
    return data


def posted_gas(devices: int, minute: int = 17, seed: int = 1) -> dict[str, float | int]:
    """One minute of ``devices`` readings as posted batches of MAX_BATCH_RECORDS, in arrival
    order; each device is somewhere in its life (a random seq, a random previous hash)."""
    rng = random.Random(seed)
    domain = Domain(chain_id=1, anchor=b"\xaa" * 20)
    wires = []
    for d in range(devices):
        key = PrivateKey(hashlib.sha256(b"bench device %d" % d).digest())
        record = Record(
            kind=Kind.DATA,
            stream=b"energy",
            seq=rng.randrange(1, 1_000_000),
            prev=rng.randbytes(32),
            time_ms=EPOCH_MS + minute * MINUTE_MS + rng.randrange(MINUTE_MS),
            content_type=2,  # JSON
            payload=reading_json(d, minute, rng),
        )
        wires.append((record.time_ms, encode_record(sign_record(record, domain, key))))
    wires.sort()
    gas = size = 0
    batches = [wires[i : i + MAX_BATCH_RECORDS] for i in range(0, devices, MAX_BATCH_RECORDS)]
    for batch in batches:
        records = [w for _, w in batch]
        data = posted_calldata(records)
        assert decode_posted(data) == records
        gas += gas_used(data, anchor_execution_gas(len(data)))
        size += len(data)
    return {
        "devices": devices,
        "batches": len(batches),
        "calldata_bytes_per_reading": round(size / devices, 1),
        "gas_per_reading": round(gas / devices),
    }


def cpu_figures(devices: int, per_device: int) -> dict[str, Any]:
    """The gateway's own work, no broker, no chain."""
    messages, leaves = _records(devices, per_device)
    with tempfile.TemporaryDirectory() as tmp:
        store = GatewayStore(Path(tmp) / "gw.sqlite")
        t0 = time.perf_counter()
        for i in range(0, len(messages), RECORDS_PER_POLL):  # as Gateway.receive: group commit
            chunk = messages[i : i + RECORDS_PER_POLL]
            got = store.admit_all(chunk, domain=DOMAIN, authorized=None, now=0.0)
            assert all(a.verdict == Verdict.ACCEPT for a in got)
        admitted = time.perf_counter() - t0
        t0 = time.perf_counter()
        root = batch_root(leaves)
        batched = time.perf_counter() - t0
        store.close()

    gateway = PrivateKey(b"\x33" * 32)
    tx = sign_transaction(
        DynamicFeeTx(
            chain_id=DOMAIN.chain_id,
            nonce=0,
            max_priority_fee_per_gas=1,
            max_fee_per_gas=2,
            gas=60_000,
            to=DOMAIN.anchor,
            data=root,
        ),
        gateway,
    )
    log = Log(
        address=DOMAIN.anchor,
        topics=(EVENT_TOPIC, bytes(12) + gateway.address),
        data=(1).to_bytes(32, "big") + batch_digest(root),
    )
    receipt = Receipt(
        tx_type=2, cumulative_gas_used=1, logs_bloom=bytes(256), logs=(log,), status=1
    )
    by_device: dict[str, list[bytes]] = {}
    for topic, wire in messages:
        by_device.setdefault(topic[-40:], []).append(wire)
    proofs = [prove_inclusion(leaves, i) for i in range(len(leaves))]  # the gateway's work
    t0 = time.perf_counter()
    for leaf, proof in zip(leaves, proofs, strict=True):
        verify_relayed(
            by_device[leaf.device.hex()],
            device=leaf.device,
            leaf=leaf,
            proof=proof,
            tx=tx,
            receipt=receipt,
            domain=DOMAIN,
        )
    verified = time.perf_counter() - t0
    n = len(messages)
    return {
        "records": n,
        "devices": devices,
        "keccak": hashing.KECCAK_BACKEND,
        "admitted_and_stored_per_s": round(n / admitted),
        "merkle_root_ms": round(batched * 1000, 1),
        "relayed_verified_per_s_incl_proofs": round(n / verified),
        "posted_gas": [posted_gas(d) for d in POSTED_DEVICES],
    }


# --- through a real broker ----------------------------------------------------------------------

QUEUE_UNBOUNDED = "max_queued_messages 0\n"
"""Mosquitto queues at most 1,000 messages per client by default and drops the rest, after it
acknowledged them to the publisher ("Outgoing messages are being dropped"): the gateway does
not read while it anchors and sends receipts, so a fast publisher overruns it (measured: 1,030
of 3,000 records arrived). Devices republish what got no receipt; the bench lifts the bound."""

SLOW_SAVE_CONF = (
    """\
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {dir}/
autosave_interval 1
log_dest file {dir}/mosquitto.log
user {user}
"""
    + QUEUE_UNBOUNDED
)
"""For comparison only: persistence saved once a second, not on every change (a kill -9 then
loses up to a second of acknowledged messages: not the issue's config)."""


def rg_conf() -> str:
    import reliability_gateway as rg

    return rg.BROKER_CONF


def _publish(path: Path, port: int) -> None:
    """The publisher process of --broker: every (topic, record) of ``path`` at QoS 1."""
    from lightpost.device.mqtt import Client

    client = Client("bench-publisher")
    client.connect("127.0.0.1", port)
    for line in path.read_text().splitlines():
        topic, wire = line.split(" ")
        client.publish(topic, bytes.fromhex(wire))
    client.disconnect()


def broker_figures(devices: int, per_device: int, conf: str | None = None) -> dict[str, Any]:
    """Records verified, stored, acknowledged, batched and receipted through a real broker."""
    import reliability_gateway as rg

    messages, _ = _records(devices, per_device)
    n = len(messages)
    with tempfile.TemporaryDirectory(prefix="lp-bench-gw-") as tmp:
        broker = rg.Broker(Path(tmp) / "broker", conf=conf)
        broker.start()
        sub, pub = GatewayClient("bench-gw"), GatewayClient("bench-gw-pub")
        try:
            sub.open("127.0.0.1", broker.port)
            sub.listen("$share/bench/lp/1/d/+")
            pub.open("127.0.0.1", broker.port)
            gateway = Gateway(
                store=GatewayStore(Path(tmp) / "gw.sqlite"),
                domain=DOMAIN,
                anchor=lambda c: Anchored(tx_hash=hashing.keccak256(c), block=1),
                sub=sub,
                pub=pub,
                batch_interval_s=1.0,
            )
            feed = Path(tmp) / "records.txt"
            feed.write_text("".join(f"{t} {w.hex()}\n" for t, w in messages))
            cpu0, wall0 = time.process_time(), time.perf_counter()
            publisher = subprocess.Popen(
                [sys.executable, __file__, "--publish", str(feed), "--port", str(broker.port)]
            )
            deadline = time.monotonic() + 300
            while True:
                gateway.receive(time.time(), 50)
                gateway.step(time.time())
                left = gateway.store.db.execute(
                    "SELECT COUNT(*) FROM records WHERE batch IS NULL"
                ).fetchone()[0]
                if gateway.counts["accept"] >= n and not left:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {gateway.counts} of {n} records in 300 s")
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            publisher.wait(60)
            batches = gateway.store.db.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
            gateway.store.close()
        finally:
            sub.shut()
            pub.shut()
            broker.stop()
    return {
        "records": n,
        "devices": devices,
        "batches": batches,
        "wall_s": round(wall, 1),
        "records_per_s_wall": round(n / wall),
        "gateway_cpu_s": round(cpu, 2),
        "records_per_gateway_cpu_s": round(n / cpu),
    }


# --- publish -> included latency on the devnet --------------------------------------------------


def latency_figures(devices: int, seconds: float, interval: float = 1.0) -> dict[str, Any]:
    """Device publish -> receipt (anchoring transaction in a block), anvil with 1 s blocks."""
    import select

    import reliability_gateway as rg

    from lightpost.adapters.rpc import HttpEndpoint
    from lightpost.device import Device, rlp_strings
    from lightpost.node.chain import Chain
    from lightpost.node.config import load_config
    from lightpost.node.runtime import load_key
    from lightpost_gateway.anchor import ANCHOR_ADDRESS
    from lightpost_operator.anvil import free_port
    from lightpost_operator.devnet import devnet_down, devnet_up
    from lightpost_operator.gateway_cmd import deploy_anchor

    received: dict[tuple[int, int], float] = {}

    class Timed(Device):  # type: ignore[misc]
        def on_receipt(self, msg: bytes) -> bool:
            ok = bool(super().on_receipt(msg))
            if ok:
                seq = int.from_bytes(rlp_strings(msg, 4)[0], "big")
                received[(id(self), seq)] = time.perf_counter()
            return ok

    sent: dict[tuple[int, int], float] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lp-bench-lat-")))
        desc = devnet_up(tmp / "net", port=free_port(), block_time=1, devices=1)
        stack.callback(devnet_down, tmp / "net")
        config = Path(desc["devices"][0]["config"])
        chain = Chain([HttpEndpoint(desc["rpc_url"], "rpc#0")], quorum=1)
        try:
            deploy_anchor(chain, int(desc["chain_id"]), load_key(load_config(config)))
        finally:
            chain.close()
        broker = rg.Broker(tmp / "broker")
        broker.start()
        stack.callback(broker.stop)
        gw = rg.GatewayProcess("gw", config, tmp / "gw.sqlite", broker.port, tmp / "gw.log")
        gw.interval = interval
        gw.start()
        stack.callback(gw.stop)
        deadline = time.monotonic() + 60
        while "subscribed" not in gw.log.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start: " + gw.log.read_text()[-500:])
            time.sleep(0.1)
        fleet = []
        for i in range(devices):
            secret = hashlib.sha256(b"latency device %d" % i).digest()
            dev = Timed(secret, int(desc["chain_id"]), ANCHOR_ADDRESS, str(tmp / f"flash{i}"))
            dev.connect("127.0.0.1", broker.port)
            fleet.append(dev)
        stack.callback(lambda: [d.close() for d in fleet])
        start = time.monotonic()
        tick = 0
        while time.monotonic() - start < seconds:
            for dev in fleet:
                t = time.perf_counter()
                seq = dev.publish(b"temp", os.urandom(PAYLOAD))
                sent[(id(dev), seq)] = t
            tick += 1
            while time.monotonic() - start < tick:
                for dev in fleet:
                    while select.select([dev.mqtt.sock], [], [], 0)[0]:
                        dev.poll(0)
                time.sleep(0.01)
        deadline = time.monotonic() + 60
        while not set(sent) <= set(received) and time.monotonic() < deadline:
            for dev in fleet:
                dev.poll(20)
    latencies = sorted(received[k] - t for k, t in sent.items() if k in received)
    cuts = statistics.quantiles(latencies, n=20)
    return {
        "devices": devices,
        "records": len(sent),
        "receipted": len(latencies),
        "block_time_s": 1,
        "gateway_interval_s": interval,
        "p50_s": round(statistics.median(latencies), 2),
        "p95_s": round(cuts[18], 2),
        "max_s": round(latencies[-1], 2),
    }


def render(figures: dict[str, Any]) -> str:
    import reports

    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    c, b, s = figures["cpu"], figures["broker"], figures.get("broker_slow_save")
    lat = figures["latency"]
    lines = [
        f"Generated by `tools/bench_gateway.py --write-docs` (`make bench`) on "
        f"{reports.cpu_model()} ({os.cpu_count()} cores, shared), {date}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| records admitted and stored, no broker (the table above, this run; {c['keccak']}) "
        f"| {c['admitted_and_stored_per_s']:,}/s on one core |",
        f"| records verified, stored, acknowledged, batched and receipted through Mosquitto "
        f"(the issue's config: a save on every change; max_queued_messages 0), "
        f"{b['records']:,} records of "
        f"{b['devices']:,} devices | {b['records_per_s_wall']:,}/s wall; "
        f"{b['records_per_gateway_cpu_s']:,} per CPU second of the gateway (its fsync waits "
        "are not CPU) |",
    ]
    if s:
        lines.append(
            f"| the same, Mosquitto saving once a second instead (a kill -9 loses up to a second)"
            f" | {s['records_per_s_wall']:,}/s wall; {s['records_per_gateway_cpu_s']:,} per CPU "
            "second of the gateway |"
        )
    lines.append(
        f"| device publish -> `included` (its receipt), anvil 1 s blocks, gateway --interval "
        f"{lat['gateway_interval_s']:g}, {lat['devices']} devices x 1 reading/s, "
        f"{lat['receipted']:,} of {lat['records']:,} records | p50 {lat['p50_s']} s, "
        f"p95 {lat['p95_s']} s (max {lat['max_s']} s) |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--per-device", type=int, default=3)
    parser.add_argument("--broker", action="store_true", help="also through a real Mosquitto")
    parser.add_argument("--latency", action="store_true", help="also publish -> included")
    parser.add_argument("--latency-s", type=float, default=60.0)
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--publish", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        _publish(args.publish, args.port)
        return
    figures: dict[str, Any] = {"cpu": cpu_figures(args.devices, args.per_device)}
    if args.broker or args.write_docs:
        figures["broker"] = broker_figures(
            args.devices, args.per_device, conf=rg_conf() + QUEUE_UNBOUNDED
        )
        figures["broker_slow_save"] = broker_figures(
            args.devices, args.per_device, conf=SLOW_SAVE_CONF
        )
    if args.latency or args.write_docs:
        figures["latency"] = latency_figures(10, args.latency_s)
    print(json.dumps(figures, indent=2))
    if args.write_docs:
        import reports

        reports.write_section(DOC, render(figures), BEGIN, END)
        print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
