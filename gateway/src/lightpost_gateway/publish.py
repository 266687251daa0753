"""The gateway's publishing side (issue 14; the messages: :mod:`lightpost_gateway.feed`).

:meth:`Publisher.step` publishes every anchored batch not yet published, in batch order, on the
gateway's feed topic -- its NOTICE, then each record with, for each device's head, its leaf and
Merkle proof -- and records in the gateway's SQLite file (table ``feed``) how far it got, after
the broker acknowledged each message: a crash republishes at most one batch (receivers drop it as
a replay). It stops at the first batch not yet anchored, so the feed is in anchoring order.
:meth:`Publisher.serve` answers backfill requests from the same durable store, bounded by
MAX_BACKFILL_BATCHES and MAX_BACKFILL_BYTES per answer, and never past the last published batch.
"""

from __future__ import annotations

from lightpost.errors import LightpostError

from .batch import prove_inclusion
from .feed import (
    MAX_BACKFILL_BATCHES,
    MAX_BACKFILL_BYTES,
    End,
    Notice,
    Relayed,
    decode_request,
    encode_end,
    encode_notice,
    encode_relayed,
    feed_topic,
    reply_topic,
    request_topic,
)
from .service import GatewayClient, GatewayStore

__all__ = ["Publisher", "batch_messages"]

_FEED_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS feed (one INTEGER PRIMARY KEY CHECK (one = 0), upto INTEGER)"
)


def batch_messages(store: GatewayStore, batch: int) -> list[bytes]:
    """A stored, anchored batch as feed messages: its NOTICE, then its records by device and
    seq, each device's head carrying its leaf and proof (anchored mode)."""
    db = store.db
    mode, tx_hash, block = db.execute(
        "SELECT mode, tx_hash, block FROM batches WHERE id = ?", (batch,)
    ).fetchone()
    leaves = store.leaves(batch) if mode == "anchored" else []
    index = {leaf.device: i for i, leaf in enumerate(leaves)}
    rows = db.execute(
        "SELECT device, seq, wire FROM records WHERE batch = ? ORDER BY device, seq", (batch,)
    ).fetchall()
    notice = Notice(number=batch, tx_hash=bytes(tx_hash), block=block, records=len(rows))
    out = [encode_notice(notice)]
    for device, seq, wire in rows:
        i = index.get(bytes(device))
        head = i is not None and leaves[i].last_seq == seq
        relayed = Relayed(number=batch, device=bytes(device), wire=bytes(wire))
        if head and i is not None:
            relayed = Relayed(
                number=batch,
                device=bytes(device),
                wire=bytes(wire),
                leaf=leaves[i],
                proof=prove_inclusion(leaves, i),
            )
        out.append(encode_relayed(relayed))
    return out


class Publisher:
    """Publishes a gateway's anchored batches and serves backfill. ``client`` is a connected
    :class:`GatewayClient` (its own, or the gateway's ``pub`` connection); ``gateway`` the payer's
    address that names the topics."""

    def __init__(self, *, store: GatewayStore, gateway: bytes, client: GatewayClient) -> None:
        self.store, self.gateway, self.client = store, gateway, client
        store.db.execute(_FEED_SCHEMA)
        client.listen(request_topic(gateway))

    def published(self) -> int:
        """The last batch published (0: none)."""
        row = self.store.db.execute("SELECT upto FROM feed").fetchone()
        return 0 if row is None else int(row[0])

    def step(self) -> int:
        """Publish the anchored batches past the last published one, in order. Returns how many."""
        done = 0
        upto = self.published()
        for (batch,) in self.store.db.execute(
            "SELECT id FROM batches WHERE id > ? AND block IS NOT NULL ORDER BY id", (upto,)
        ).fetchall():
            if batch != upto + 1:  # a batch below it is not anchored yet: keep the order
                break
            for msg in batch_messages(self.store, batch):
                self.client.send(feed_topic(self.gateway), msg)
            self.store.db.execute("INSERT OR REPLACE INTO feed (one, upto) VALUES (0, ?)", (batch,))
            upto, done = batch, done + 1
        return done

    def tick(self) -> None:
        """One turn in the gateway's loop: publish what was anchored, answer what was asked."""
        self.step()
        self.serve(0)

    def serve(self, timeout_ms: int = 0) -> int:
        """Answer the backfill requests that arrived. Returns how many were answered."""
        self.client.read(timeout_ms)
        taken = [p for p in self.client.pending if p[0] == request_topic(self.gateway)]
        self.client.pending[:] = [p for p in self.client.pending if p not in taken]
        for _, pid, msg in taken:
            try:
                request = decode_request(msg)
            except LightpostError:
                self.client.ack(pid)
                continue
            self._answer(request.reply_id, request.first, request.count)
            self.client.ack(pid)
        return len(taken)

    def _answer(self, reply_id: str, first: int, count: int) -> None:
        last = self.published()
        topic, sent_bytes, batch = reply_topic(reply_id, self.gateway), 0, max(first, 1)
        while batch <= last and batch < first + min(count, MAX_BACKFILL_BATCHES):
            messages = batch_messages(self.store, batch)
            size = sum(len(m) for m in messages)
            if sent_bytes and sent_bytes + size > MAX_BACKFILL_BYTES:
                break
            for msg in messages:
                self.client.send(topic, msg)
            sent_bytes, batch = sent_bytes + size, batch + 1
        self.client.send(topic, encode_end(End(next_number=batch, last=last)))
