"""The gateway's I/O side: its SQLite store, its MQTT connections, its loop (issue 14).

Theory of operation. Records arrive on ``$share/<group>/lp/1/d/+`` (a shared subscription:
Mosquitto grants it to MQTT 3.1.1 clients too, so any number of gateways share one broker's
load). Each message is judged by :func:`lightpost_gateway.admit.admit`, stored and committed,
and only then acknowledged (PUBACK): a kill -9 before the commit leaves the message unacknowledged
in the broker's persistent session, which delivers it again; after it, the record is on disk.
:meth:`Gateway.step` cuts a batch when MAX_BATCH_RECORDS wait or the oldest has waited
``batch_interval_s``: one leaf per device (:mod:`lightpost_gateway.batch`), the batch row and its
records' batch id committed in one transaction, THEN anchored by the injected ``anchor`` callable
(one transaction the gateway pays for), its transaction and block committed, THEN one receipt
per record published on ``lp/1/r/<address>`` (the device releases exactly the record a receipt
names). ``anchor`` never blocks the loop: it answers None until the transaction is proven mined
(a fee hold, a stuck transaction being bumped: lightpost_operator.anchoring), and no new batch is
cut while one waits (its records wait, durable, for the next). A crash at any point is resumed by
the next start: a batch without a block is anchored again -- through the anchoring outbox the
same stored transaction, at the same nonce -- and a batch whose receipts were not all sent sends
them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lightpost.adapters.sqlite import Schema, connect, script

from .admit import Admission, Verdict, admit, reject_topic
from .anchor import anchored_calldata, posted_calldata
from .batch import InclusionProof, Leaf, batch_root, prove_inclusion
from .mqtt import PUBACK, PUBLISH, Client, packet, parse_publish
from .record import ChainEntry, DeviceReceipt, Domain, encode_device_receipt, receipt_topic

__all__ = [
    "BATCH_INTERVAL_S",
    "MAX_BATCH_RECORDS",
    "MAX_UNREAD",
    "Anchored",
    "Gateway",
    "GatewayClient",
    "GatewayStore",
]

MAX_BATCH_RECORDS = 200
"""Records per batch at most: a posted batch of 200 100-byte readings is ~44 KB of calldata,
under the common 128 KiB transaction-size limits of mempools."""

BATCH_INTERVAL_S = 60.0
"""Longest wait of a record for its batch: the issue's devices report every 60 s, so one batch
per minute carries one reading of each (33 gas per reading at 1,000 devices, anchored mode)."""

MAX_UNREAD = 1024
"""Incoming PUBLISH packets a gateway holds unacknowledged at most (the broker's in-flight
window is smaller; beyond it the broker is misbehaving)."""

RECORDS_PER_POLL = 256
"""Messages handled per step before batching gets its turn."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Anchored:
    """A batch transaction proven mined: its hash and block (lightpost_operator.anchoring)."""

    tx_hash: bytes
    block: int


class GatewayClient(Client):
    """The device's MQTT client (untyped: it runs on MicroPython) behind a typed face, with
    acknowledgement deferred until the record is committed (:meth:`ack`)."""

    def __init__(self, client_id: str, keepalive: int = 60) -> None:
        super().__init__(client_id, keepalive)  # type: ignore[no-untyped-call]
        self.pending: list[tuple[str, int | None, bytes]] = []

    def _handle(self, first: int, body: bytes) -> None:
        if first & 0xF0 == PUBLISH:
            topic, pid, msg = parse_publish(first & 0x0F, body)  # type: ignore[no-untyped-call]
            if len(self.pending) >= MAX_UNREAD:
                raise ValueError("the broker sent more unacknowledged messages than the bound")
            self.pending.append((topic, pid, msg))
            return
        super()._handle(first, body)  # type: ignore[no-untyped-call]

    def ack(self, pid: int | None) -> None:
        if pid is not None:
            self._send(packet(PUBACK, pid.to_bytes(2, "big")))  # type: ignore[no-untyped-call]

    def open(self, host: str, port: int) -> None:
        self.connect(host, port)  # type: ignore[no-untyped-call]

    def listen(self, topic: str) -> None:
        self.subscribe(topic)  # type: ignore[no-untyped-call]

    def send(self, topic: str, msg: bytes) -> None:
        """QoS 1, waits for the PUBACK."""
        self.publish(topic, msg)  # type: ignore[no-untyped-call]

    def read(self, timeout_ms: int) -> None:
        self.poll(timeout_ms)  # type: ignore[no-untyped-call]

    def shut(self) -> None:
        self.close()  # type: ignore[no-untyped-call]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    device BLOB NOT NULL, seq INTEGER NOT NULL, hash BLOB NOT NULL, prev BLOB NOT NULL,
    wire BLOB NOT NULL, received REAL NOT NULL, batch INTEGER,
    PRIMARY KEY (device, seq));
CREATE INDEX IF NOT EXISTS records_batch ON records (batch);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY, mode TEXT NOT NULL, root BLOB, calldata BLOB NOT NULL,
    tx_hash BLOB, block INTEGER, receipts_sent INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS rejects (device BLOB, reason TEXT NOT NULL, received REAL NOT NULL);
"""


SCHEMA = Schema(
    "gateway store",
    0x4C504757,  # ASCII "LPGW"
    (script(_SCHEMA),),
    legacy_tables=frozenset({"records", "batches", "feed", "rejects"}),
)
"""The gateway store's kind for lightpost.adapters.sqlite (0600 file, WAL, FULL sync, versioned);
files of the first release, unversioned, are adopted."""


class GatewayStore:
    """Records, batches and rejects in one SQLite file (WAL, synchronous=FULL: a commit
    survives power loss before the PUBACK goes out)."""

    def __init__(self, path: Path) -> None:
        self.db = connect(path, SCHEMA, name=f"gateway store {path.name}")

    def close(self) -> None:
        self.db.close()

    def known(self, device: bytes, seq: int) -> Mapping[int, ChainEntry]:
        rows = self.db.execute(
            "SELECT seq, hash, prev FROM records WHERE device = ? AND seq BETWEEN ? AND ? "
            "UNION SELECT seq, hash, prev FROM records WHERE device = ? "
            "AND seq = (SELECT MAX(seq) FROM records WHERE device = ?)",
            (device, max(seq - 1, 0), seq + 1, device, device),
        ).fetchall()
        return {s: ChainEntry(seq=s, hash=bytes(h), prev=bytes(p)) for s, h, p in rows}

    def put(
        self, device: bytes, seq: int, digest: bytes, prev: bytes, wire: bytes, now: float
    ) -> None:
        self.db.execute(
            "INSERT INTO records (device, seq, hash, prev, wire, received) VALUES (?,?,?,?,?,?)",
            (device, seq, digest, prev, wire, now),
        )

    def admit_all(
        self,
        messages: Sequence[tuple[str, bytes]],
        *,
        domain: Domain,
        authorized: Collection[bytes] | None,
        now: float,
    ) -> list[Admission]:
        """Judge (topic, message) pairs in order and store the accepted records and the
        rejects, all in one transaction: durable when this returns."""
        out = []
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for topic, msg in messages:
                a = admit(topic, msg, domain=domain, known=self.known, authorized=authorized)
                if a.verdict == Verdict.ACCEPT:
                    assert a.device is not None and a.record is not None and a.hash is not None
                    self.put(a.device, a.record.record.seq, a.hash, a.record.record.prev, msg, now)
                elif a.verdict == Verdict.REJECT:
                    self.reject(a.device, a.reason, now)
                out.append(a)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return out

    def reject(self, device: bytes | None, reason: str, now: float) -> None:
        self.db.execute("INSERT INTO rejects VALUES (?, ?, ?)", (device, reason, now))

    def unbatched(self, limit: int) -> list[tuple[bytes, int, bytes, bytes, float]]:
        rows = self.db.execute(
            "SELECT device, seq, hash, wire, received FROM records WHERE batch IS NULL "
            "ORDER BY received LIMIT ?",
            (limit,),
        ).fetchall()
        return [(bytes(d), s, bytes(h), bytes(w), r) for d, s, h, w, r in rows]

    def record_batch(self, device: bytes, seq: int) -> int | None:
        row = self.db.execute(
            "SELECT batch FROM records WHERE device = ? AND seq = ?", (device, seq)
        ).fetchone()
        return None if row is None else row[0]

    def leaves(self, batch: int) -> list[Leaf]:
        """The leaves of a stored batch: one per device, sorted, ending at its highest seq there
        (what the gateway anchored, and what it relays and publishes)."""
        rows = self.db.execute(
            "SELECT g.device, g.first, g.last, h.hash FROM (SELECT device, MIN(seq) AS first, "
            "MAX(seq) AS last FROM records WHERE batch = ? GROUP BY device) g "
            "JOIN records h ON h.device = g.device AND h.seq = g.last ORDER BY g.device",
            (batch,),
        ).fetchall()
        return [
            Leaf(device=bytes(d), first_seq=f, last_seq=n, head=bytes(h)) for d, f, n, h in rows
        ]

    def wire(self, device: bytes, seq: int) -> bytes | None:
        """A held record, for backfill."""
        row = self.db.execute(
            "SELECT wire FROM records WHERE device = ? AND seq = ?", (device, seq)
        ).fetchone()
        return None if row is None else bytes(row[0])


class Gateway:
    """One gateway process: ``sub`` reads records, ``pub`` sends receipts and rejects (two
    connections, so a receipt's PUBACK wait never interleaves with incoming records)."""

    def __init__(
        self,
        *,
        store: GatewayStore,
        domain: Domain,
        anchor: Callable[[bytes], Anchored | None],
        sub: GatewayClient,
        pub: GatewayClient,
        mode: str = "anchored",
        authorized: Collection[bytes] | None = None,
        batch_interval_s: float = BATCH_INTERVAL_S,
        max_batch: int = MAX_BATCH_RECORDS,
        log: Callable[[str], None] = lambda _m: None,
    ) -> None:
        if mode not in ("anchored", "posted"):
            raise ValueError("mode is anchored or posted")
        self.store, self.domain, self._anchor = store, domain, anchor
        self.sub, self.pub, self.mode = sub, pub, mode
        self.authorized = authorized
        self.batch_interval_s, self.max_batch = batch_interval_s, max_batch
        self._log = log
        self.counts = {v.value: 0 for v in Verdict}

    def receive(self, now: float, timeout_ms: int = 0) -> int:
        """Read what the broker sent (up to RECORDS_PER_POLL messages), admit and commit them in
        one transaction (group commit), THEN acknowledge each. Returns messages handled."""
        self.sub.read(timeout_ms)
        while 0 < len(self.sub.pending) < RECORDS_PER_POLL:
            before = len(self.sub.pending)
            self.sub.read(0)
            if len(self.sub.pending) == before:
                break
        taken = self.sub.pending[:RECORDS_PER_POLL]
        del self.sub.pending[:RECORDS_PER_POLL]
        if not taken:
            return 0
        admissions = self.store.admit_all(
            [(t, m) for t, _, m in taken], domain=self.domain, authorized=self.authorized, now=now
        )
        for _, pid, _ in taken:
            self.sub.ack(pid)
        for (topic, _, _), a in zip(taken, admissions, strict=True):
            self.counts[a.verdict.value] += 1
            if a.verdict == Verdict.REJECT:
                self._log(f"rejected a record on {topic}: {a.reason}")
                if a.device is not None:
                    self.pub.send(reject_topic(a.device), a.reason.encode())
            elif a.verdict == Verdict.DUPLICATE and a.device is not None and a.record is not None:
                seq = a.record.record.seq
                batch = self.store.record_batch(a.device, seq)
                if batch is not None:  # already anchored: the device missed its receipt
                    self._send_receipts(batch, only=(a.device, seq))
        return len(taken)

    def step(self, now: float) -> int | None:
        """Resume unfinished batches, then cut and anchor one if it is due (none while a batch
        waits for its anchoring). Returns its id."""
        if not self.resume():
            return None
        rows = self.store.unbatched(self.max_batch)
        if not rows or (len(rows) < self.max_batch and now - rows[0][4] < self.batch_interval_s):
            return None
        heads: dict[bytes, tuple[int, int, bytes]] = {}
        for device, seq, digest, _, _ in rows:
            first, last, head = heads.get(device, (seq, seq, digest))
            heads[device] = (min(first, seq), max(last, seq), digest if seq >= last else head)
        leaves = [
            Leaf(device=d, first_seq=f, last_seq=last, head=h)
            for d, (f, last, h) in sorted(heads.items())
        ]
        root = batch_root(leaves) if self.mode == "anchored" else None
        calldata = (
            anchored_calldata(root) if root is not None else posted_calldata([r[3] for r in rows])
        )
        db = self.store.db
        db.execute("BEGIN IMMEDIATE")
        cur = db.execute(
            "INSERT INTO batches (mode, root, calldata) VALUES (?, ?, ?)",
            (self.mode, root, calldata),
        )
        batch = cur.lastrowid
        assert batch is not None
        db.executemany(
            "UPDATE records SET batch = ? WHERE device = ? AND seq = ?",
            [(batch, r[0], r[1]) for r in rows],
        )
        db.execute("COMMIT")
        self._finish(batch, calldata)
        return batch

    def resume(self) -> bool:
        """Anchor batches left without a block (in order; stops at the first still waiting);
        send receipts left unsent. True when no batch waits for its anchoring."""
        for batch, calldata, block in self.store.db.execute(
            "SELECT id, calldata, block FROM batches WHERE receipts_sent = 0 ORDER BY id"
        ).fetchall():
            if block is None:
                if not self._finish(batch, bytes(calldata)):
                    return False
            else:
                self._send_receipts(batch)
        return True

    def _finish(self, batch: int, calldata: bytes) -> bool:
        done = self._anchor(calldata)
        if done is None:
            return False
        self.store.db.execute(
            "UPDATE batches SET tx_hash = ?, block = ? WHERE id = ?",
            (done.tx_hash, done.block, batch),
        )
        self._log(f"batch {batch} anchored in block {done.block}")
        self._send_receipts(batch)
        return True

    def _send_receipts(self, batch: int, only: tuple[bytes, int] | None = None) -> None:
        """One receipt per record of the batch this gateway holds (or only the record ``only``,
        (device, seq)): the device releases exactly the record a receipt names. A receipt for a
        device's last record of the batch released everything below it too, records this
        gateway never held: ones the broker dropped (acknowledged to the device while no
        gateway was subscribed, or lost by a broker crash before its save), which the device
        then deleted -- lost (found by tools/reliability_gateway.py)."""
        tx_hash, block = self.store.db.execute(
            "SELECT tx_hash, block FROM batches WHERE id = ?", (batch,)
        ).fetchone()
        if only is None:
            rows = self.store.db.execute(
                "SELECT device, seq, hash FROM records WHERE batch = ? ORDER BY device, seq",
                (batch,),
            ).fetchall()
        else:
            rows = self.store.db.execute(
                "SELECT device, seq, hash FROM records WHERE device = ? AND seq = ? AND batch = ?",
                (*only, batch),
            ).fetchall()
        for device, seq, digest in rows:
            receipt = DeviceReceipt(
                seq=seq, record_hash=bytes(digest), tx_hash=bytes(tx_hash), block=block
            )
            self.pub.send(receipt_topic(bytes(device)), encode_device_receipt(receipt))
        if only is None:
            self.store.db.execute("UPDATE batches SET receipts_sent = 1 WHERE id = ?", (batch,))

    def relay(
        self, device: bytes, batch: int
    ) -> tuple[list[bytes], Leaf, InclusionProof, bytes, int]:
        """What the gateway serves a receiver (backfill): the device's records of an anchored
        batch, from its first seq there to its head, its leaf, the leaf's proof, the batch's
        transaction and block. The receiver trusts none of it (lightpost_gateway.relay)."""
        leaves = self.store.leaves(batch)
        index = next(i for i, leaf in enumerate(leaves) if leaf.device == device)
        leaf = leaves[index]
        wires = [
            bytes(w)
            for (w,) in self.store.db.execute(
                "SELECT wire FROM records WHERE device = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                (device, leaf.first_seq, leaf.last_seq),
            )
        ]
        tx_hash, block = self.store.db.execute(
            "SELECT tx_hash, block FROM batches WHERE id = ?", (batch,)
        ).fetchone()
        return wires, leaf, prove_inclusion(leaves, index), bytes(tx_hash), block

    def run(
        self, *, stop: Callable[[], bool], poll_ms: int = 200, tick: Callable[[], object] = bool
    ) -> None:
        """receive and step until ``stop()``; ``tick`` after each step (the publisher's turn:
        lightpost_gateway.publish)."""
        while not stop():
            self.receive(time.time(), poll_ms)
            self.step(time.time())
            tick()
