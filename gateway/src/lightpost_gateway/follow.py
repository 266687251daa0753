"""The merging receiver: follows several gateways, merges each device's chain across them and
delivers every record exactly once, in order, at the requested level (issue 14).

Theory of operation. The receiver subscribes to each followed gateway's feed
(:mod:`lightpost_gateway.feed`) and to its own reply topic, and asks each gateway for the
batches past its cursor (backfill; again whenever a batch number is skipped, a backfill ends
short, or the chain proves more batches than it saw). A gateway's batches are taken strictly in
their numbers' order: batch ``n``'s NOTICE is proven on chain (the transaction in the quorum-agreed
block, sent by the gateway, its receipt and event: :mod:`lightpost_gateway.receiver`,
:mod:`lightpost_gateway.relay`), its records are opened under the domain (signed by the device
they name) and each head's leaf is proven in the batch root; when all of its records are in, the
batch, its heads and its records (judged by :func:`lightpost_gateway.merge.judge`) are committed
to the receiver's SQLite file in one transaction, with the gateway's next number. Delivery
(:func:`lightpost_gateway.merge.deliverable`) then hands each record to the caller, and the
device's cursor is committed when the caller asks for the next one: nothing is delivered twice
across restarts, and nothing is skipped (a record anchored but relayed by nobody stops delivery
and is reported as MISSING). ``complete``: the heads usable are those at or below the finalized
height at which every followed gateway's anchorings -- each (count, digest) taken from the
contract's event in a proven receipt: the notices' own, and those only the chain shows (a batch
re-anchored after a gateway's crash, one withheld), :mod:`lightpost_gateway.anchorings` -- fold
to its accumulator proven by eth_getProof, and the contents of every digest among them were taken
(:func:`lightpost_gateway.merge.completeness`).

Everything a gateway sends is a claim: a message that fails a check is a Problem naming the
gateway, never a delivery. A batch whose proof cannot be had yet (endpoints down) is asked for
again later.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field

from lightpost.core.levels import Level
from lightpost.errors import LightpostError, ProofError
from lightpost.node.chain import Chain

from . import anchorings
from .anchor import ROOT_BYTES, decode_posted
from .anchorings import Anchoring, anchoring_event
from .batch import verify_inclusion
from .feed import (
    MAX_BACKFILL_BATCHES,
    End,
    Notice,
    Relayed,
    Request,
    decode_feed,
    encode_request,
    feed_topic,
    reply_topic,
    request_topic,
)
from .follow_live import MAX_WATCHED, Watcher
from .follow_store import ReceiverStore
from .merge import (
    Completeness,
    Head,
    Held,
    Judgement,
    completeness,
    deliverable,
    judge,
    usable,
)
from .receiver import prove_anchor_tx, prove_gateway_accumulator
from .record import SILENCE_GRACE, Domain, Kind, Liveness, Record, open_record, parse_birth
from .relay import anchored_root, posted_records
from .service import GatewayClient

__all__ = ["REQUEST_RETRY_S", "Delivery", "Follower", "Problem", "ReceiverStore"]

REQUEST_RETRY_S = 10.0
"""A backfill request unanswered this long (or ended short of the proven count) is sent again."""

CHAIN_CHECK_S = 2.0
"""How often the finalized height and (``complete``) the gateways' accumulators are proven."""

MAX_POOL_PER_DEVICE = 1 << 16
"""Records of one device held undelivered at most (above a hole, or waiting for a level): past it
a record is dropped and reported -- the gateways relay, the receiver's memory and disk are bounded.
"""

MAX_REPORTED = 4096
"""Findings remembered so each is reported once (past it, forgotten: reported again if seen)."""

MAX_SCAN_RANGES = 64
"""Missing batch counts of one gateway looked for on chain per scan (the rest at the next)."""

MAX_RECHECKS = 64
"""Batches taken at ``included`` checked again per chain check once final (the rest next time)."""

MAX_RECORDS_PER_BATCH = 1 << 16
"""Most records a NOTICE may announce (a peer's bound on what is held in memory per batch)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Delivery:
    """One device record, delivered once, in seq order, at ``level``."""

    device: bytes
    seq: int
    hash: bytes
    record: Record
    level: Level
    gateway: bytes
    """The gateway that relayed it (a claim; the proofs are what count)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    """What a gateway (or the chain's answers) did that the receiver refused or must report:
    ``kind``: altered, unproven, replay, fork, missing, withheld, bound, chain; silent, dead
    (a device); retracted (records delivered at ``included`` whose anchoring a reorg dropped)."""

    kind: str
    details: str
    gateway: bytes | None = None
    device: bytes | None = None


@dataclass
class _Open:
    """A gateway's batch whose notice is proven, while its records come in."""

    notice: Notice
    root: bytes | None
    digest: bytes
    count: int
    """The gateway's batch count after this anchoring (the contract's event)."""
    since: float
    heads: list[tuple[bytes, Head]] = field(default_factory=list)
    records: dict[tuple[bytes, int], Held] = field(default_factory=dict)
    births: dict[tuple[bytes, int], int] = field(default_factory=dict)
    """(device, seq) -> the declared cadence of each birth among the records."""
    seen: set[tuple[bytes, int]] = field(default_factory=set)


@dataclass
class _Asked:
    """The last backfill request to a gateway: when, from which number; whether an END said
    nothing is left past what was taken."""

    at: float = -1e18
    first: int = 0
    caught_up: bool = False
    unanswered_since: float | None = None
    """When the first request the gateway has not answered (no END since) was sent."""


class Follower:
    """Follow ``gateways`` (payer addresses) over ``client``, prove over ``chain``, merge and
    deliver at ``level``. ``devices``: the authorized devices (None: every device that signs)."""

    def __init__(
        self,
        *,
        chain: Chain,
        domain: Domain,
        gateways: Sequence[bytes],
        client: GatewayClient,
        store: ReceiverStore,
        level: Level,
        reply_id: str,
        devices: Collection[bytes] | None = None,
        finality_depth: int = 0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not gateways:
            raise ValueError("follow at least one gateway")
        self.chain, self.domain, self.gateways = chain, domain, list(gateways)
        self.client, self.store, self.level = client, store, level
        self.reply_id, self.devices = reply_id, devices
        self.finality_depth, self._clock = finality_depth, clock
        self._open: dict[bytes, _Open] = {}
        self._asked = {g: _Asked() for g in self.gateways}
        self._final = -1
        self._complete: dict[bytes, int] = {}
        self._checked = -1e18
        self._scanned: dict[bytes, float] = {}
        self._reported: set[tuple[str, bytes | None, str]] = set()
        self._touched: set[bytes] = set()
        self._changed = clock()
        self._watcher = Watcher(store=store, client=client, domain=domain, wall=wall)

    # --- wiring ---

    def start(self) -> None:
        """Subscribe to each gateway's feed and the reply topics; ask for what was missed."""
        for g in self.gateways:
            self.client.listen(feed_topic(g))
        self.client.listen(reply_topic(self.reply_id, None))
        for g in self.gateways:
            self._request(g)
        self._touched.update(self.store.devices())
        self._watcher.start()

    def _request(self, gateway: bytes) -> None:
        first = self.store.next_number(gateway)
        req = Request(reply_id=self.reply_id, first=first, count=MAX_BACKFILL_BATCHES)
        self.client.send(request_topic(gateway), encode_request(req))
        since = self._asked[gateway].unanswered_since
        now = self._clock()
        self._asked[gateway] = _Asked(
            at=now, first=first, unanswered_since=now if since is None else since
        )

    def _gateway_of(self, topic: str) -> bytes | None:
        for g in self.gateways:
            if topic in (feed_topic(g), reply_topic(self.reply_id, g)):
                return g
        return None

    # --- the loop ---

    def poll(self, timeout_ms: int = 200) -> Iterator[Delivery | Problem]:
        """Handle what arrived, check the chain when due, deliver what may be delivered."""
        self.client.read(timeout_ms)
        while self.client.pending:
            topic, pid, msg = self.client.pending.pop(0)
            gateway = self._gateway_of(topic)
            if gateway is not None:
                yield from self._message(gateway, msg)
            else:
                self._watcher.message(topic, msg)
            self.client.ack(pid)
            if not self.client.pending:
                self.client.read(0)
        now = self._clock()
        for g, opened in list(self._open.items()):
            if now - opened.since > REQUEST_RETRY_S:  # its records stopped coming: ask again
                del self._open[g]
                self._request(g)
        for g, asked in self._asked.items():
            if not asked.caught_up and now - asked.at > REQUEST_RETRY_S:
                self._request(g)
        if self.level >= Level.INCLUDED and now - self._checked > CHAIN_CHECK_S:
            self._checked = now
            yield from self._check_chain()
        for device, state, w in self._watcher.check(now):
            why = (
                f"no record past seq {w.last_seq} for over {SILENCE_GRACE} x its declared "
                f"cadence of {w.cadence_s} s, and no death notice: withheld or lost"
                if state == Liveness.SILENT
                else f"the death notice of its birth at seq {w.birth_seq} (it disconnected)"
            )
            yield Problem(kind=state.value, details=why, device=device)
        yield from self._deliver()

    def caught_up(self) -> bool:
        """Every gateway's backfill taken, no batch half-read, and (from ``final`` up) the chain
        checked since the last change: what a one-shot receive waits for."""
        if self._open or not all(a.caught_up for a in self._asked.values()):
            return False
        return self.level < Level.FINAL or self._checked > self._changed

    def follow(
        self, *, stop: Callable[[], bool], poll_ms: int = 200
    ) -> Iterator[Delivery | Problem]:
        self.start()
        while not stop():
            yield from self.poll(poll_ms)

    # --- messages ---

    def _problem(
        self, kind: str, details: str, gateway: bytes | None = None, device: bytes | None = None
    ) -> Iterator[Problem]:
        key = (kind, device or gateway, details)
        if len(self._reported) > MAX_REPORTED:
            self._reported.clear()  # bounded memory: an old finding may be reported again
        if key not in self._reported:
            self._reported.add(key)
            yield Problem(kind=kind, details=details, gateway=gateway, device=device)

    def _message(self, gateway: bytes, msg: bytes) -> Iterator[Problem]:
        try:
            item = decode_feed(msg)
        except LightpostError as exc:
            yield from self._problem("altered", f"undecodable feed message: {exc}", gateway)
            return
        expected = self.store.next_number(gateway)
        self._changed = self._clock()
        if isinstance(item, End):
            asked = self._asked[gateway]
            asked.caught_up, asked.unanswered_since = expected > item.last, None
            if not asked.caught_up and expected > asked.first:  # progress: ask for the rest now
                asked.at = -1e18
            return
        if item.number < expected:
            return  # a batch already taken (a backfill and the live feed overlap)
        if item.number > expected and gateway not in self._open:
            if self._asked[gateway].caught_up:  # a hole in the numbers: ask for it
                self._asked[gateway] = _Asked()
            return
        if isinstance(item, Notice):
            if gateway not in self._open:
                yield from self._notice(gateway, item)
        elif gateway in self._open and self._open[gateway].notice.number == item.number:
            yield from self._record(gateway, item)
        opened = self._open.get(gateway)
        if opened is not None and len(opened.seen) >= opened.notice.records:
            yield from self._commit(gateway, opened)

    def _notice(self, gateway: bytes, notice: Notice) -> Iterator[Problem]:
        what = f"batch {notice.number} (tx 0x{notice.tx_hash.hex()}, block {notice.block})"
        if notice.records > MAX_RECORDS_PER_BATCH:
            yield from self._problem("altered", f"{what} announces too many records", gateway)
            return
        try:
            tx, receipt = prove_anchor_tx(
                self.chain,
                chain_id=self.domain.chain_id,
                tx_hash=notice.tx_hash,
                block=notice.block,
            )
        except LightpostError as exc:  # not provable now: asked again later
            yield from self._problem("unproven", f"{what}: {exc}", gateway)
            self._asked[gateway] = _Asked(at=self._clock(), first=notice.number)
            return
        try:
            count, digest = anchoring_event(tx, receipt, gateway=gateway, domain=self.domain)
            opened = _Open(
                notice=notice, root=None, digest=digest, count=count, since=self._clock()
            )
            if len(tx.tx.data) == ROOT_BYTES:
                opened.root = anchored_root(tx, receipt, domain=self.domain)
            else:
                posted = posted_records(tx, receipt, domain=self.domain)
                wires = decode_posted(bytes(tx.tx.data))
                for (signed, device, digest), wire in zip(posted, wires, strict=True):
                    if signed.record.kind == Kind.DEATH or not self._authorized(device):
                        continue
                    r = signed.record
                    held = Held(seq=r.seq, hash=digest, prev=r.prev, wire=wire, gateway=gateway)
                    opened.records[(device, r.seq)] = held
                    self._birth(opened, device, r)
                    head = Head(seq=r.seq, hash=digest, block=notice.block, gateway=gateway)
                    opened.heads.append((device, head))
        except ProofError as exc:  # the claim is false: the batch is skipped, and reported
            yield from self._problem("unproven", f"{what}: {exc}", gateway)
            self._skip(gateway, notice.number)
            return
        self._open[gateway] = opened

    def _authorized(self, device: bytes) -> bool:
        return self.devices is None or device in self.devices

    def _record(self, gateway: bytes, r: Relayed) -> Iterator[Problem]:
        opened = self._open[gateway]
        what = f"batch {r.number}: a record of 0x{r.device.hex()}"
        try:
            signed, signer, digest = open_record(r.wire, self.domain)
        except LightpostError as exc:
            yield from self._problem("altered", f"{what} does not decode: {exc}", gateway)
            return
        seq = signed.record.seq
        if (r.device, seq) in opened.seen:
            return
        opened.seen.add((r.device, seq))
        if signer != r.device:
            yield from self._problem(
                "altered", f"{what} at seq {seq} is not signed by it", gateway, r.device
            )
            return
        if not self._authorized(signer) or signed.record.kind == Kind.DEATH:
            return
        self._birth(opened, signer, signed.record)
        if opened.root is None:  # posted: the records are the transaction's own
            return
        held = Held(seq=seq, hash=digest, prev=signed.record.prev, wire=r.wire, gateway=gateway)
        if r.leaf is not None and r.proof is not None:
            leaf = r.leaf
            try:
                if leaf.device != signer or leaf.head != digest or leaf.last_seq != seq:
                    raise ProofError("batch", "the leaf is not this record's")
                verify_inclusion(opened.root, leaf, r.proof)
            except ProofError as exc:
                yield from self._problem("altered", f"{what} at seq {seq}: {exc}", gateway, signer)
                return
            opened.heads.append(
                (signer, Head(seq=seq, hash=digest, block=opened.notice.block, gateway=gateway))
            )
        opened.records[(signer, seq)] = held

    @staticmethod
    def _birth(opened: _Open, device: bytes, r: Record) -> None:
        if r.kind == Kind.BIRTH:
            with contextlib.suppress(LightpostError):  # no cadence: not watched by it
                opened.births[(device, r.seq)] = parse_birth(r).cadence_s

    def _skip(self, gateway: bytes, number: int) -> None:
        self.store.db.execute(
            "INSERT OR REPLACE INTO gateways VALUES (?, ?)", (gateway, number + 1)
        )

    def _commit(self, gateway: bytes, opened: _Open) -> Iterator[Problem]:
        """The batch, its heads and its records, judged, in one transaction."""
        del self._open[gateway]
        notice, db = opened.notice, self.store.db
        findings: list[tuple[str, str, bytes]] = []
        taken: list[tuple[bytes, Held]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?, ?)",
                (gateway, notice.number, notice.tx_hash, notice.block, opened.digest),
            )
            anchoring = Anchoring(
                count=opened.count, digest=opened.digest, block=notice.block, tx_hash=notice.tx_hash
            )
            self.store.put_anchoring(gateway, anchoring)
            for device, head in opened.heads:
                db.execute(
                    "INSERT INTO heads VALUES (?, ?, ?, ?, ?)",
                    (device, head.seq, head.hash, head.block, gateway),
                )
                self._touched.add(device)
            for (device, seq), held in sorted(opened.records.items()):
                verdict = judge(
                    held,
                    cursor=self.store.cursor(device),
                    delivered_hash=self.store.delivered_hash(device, seq),
                    pool=self.store.pool(device),
                )
                if verdict == Judgement.HOLD and self._pooled(device) >= MAX_POOL_PER_DEVICE:
                    findings.append(("bound", f"seq {seq}: {MAX_POOL_PER_DEVICE} held", device))
                elif verdict == Judgement.HOLD:
                    taken.append((device, held))
                    db.execute(
                        "INSERT INTO pool VALUES (?, ?, ?, ?, ?, ?)",
                        (device, seq, held.hash, held.prev, held.wire, gateway),
                    )
                    self._touched.add(device)
                else:
                    findings.append((verdict.value, f"seq {seq} (batch {notice.number})", device))
            if self.level == Level.INCLUDED:  # checked again once final: a reorg may drop it
                spans: dict[bytes, tuple[int, int]] = {}
                for device, seq in opened.records:
                    lo, hi = spans.get(device, (seq, seq))
                    spans[device] = (min(lo, seq), max(hi, seq))
                db.executemany(
                    "INSERT INTO unfinal VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (gateway, notice.number, notice.block, notice.tx_hash, d, lo, hi)
                        for d, (lo, hi) in spans.items()
                    ],
                )
            db.execute(
                "INSERT OR REPLACE INTO gateways VALUES (?, ?)", (gateway, notice.number + 1)
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        for device, held in taken:
            cadence = opened.births.get((device, held.seq))
            if not self._watcher.record(device, held.seq, held.hash, cadence):
                findings.append(("bound", f"not watched: {MAX_WATCHED} devices are", device))
        for kind, details, device in findings:
            yield from self._problem(kind, details, gateway, device)

    def _pooled(self, device: bytes) -> int:
        return int(
            self.store.db.execute(
                "SELECT COUNT(*) FROM pool WHERE device = ?", (device,)
            ).fetchone()[0]
        )

    # --- the chain ---

    def _check_chain(self) -> Iterator[Problem]:
        try:
            final = self.chain.final_height(self.finality_depth)
        except LightpostError as exc:
            yield from self._problem("chain", f"no finalized height: {exc}")
            return
        if final > self._final:
            self._final = final
            self._touched.update(self.store.devices())
        if self.level == Level.INCLUDED:
            yield from self._recheck()
        if self.level < Level.COMPLETE:
            return
        for g in self.gateways:
            try:
                acc, count = prove_gateway_accumulator(
                    self.chain, gateway=g, block=self._final, anchor=self.domain.anchor
                )
            except LightpostError as exc:
                yield from self._problem("chain", f"accumulator not proven: {exc}", g)
                continue
            verdict = self._completeness(g, acc, count)
            if verdict.kind == "unknown" and self._waiting(g):
                yield from self._scan(g, verdict.counts)
                verdict = self._completeness(g, acc, count)
            if verdict.kind == "complete":
                self._complete[g] = self._final
                self._touched.update(self.store.devices())
            elif verdict.kind == "mismatch":  # rows proven in blocks a reorg replaced
                yield from self._problem("chain", "anchorings do not fold to the accumulator", g)
                self.store.forget_anchorings(g, self._complete.get(g, -1))
            elif self._waiting(g):
                shown = ", ".join(map(str, verdict.counts[:8]))
                why = f"the chain proves {count} anchorings; not served: {verdict.kind} {shown}"
                yield from self._problem("withheld", why, g)
                self._request(g)

    def _waiting(self, gateway: bytes) -> bool:
        """Nothing of the gateway is half-read and it served what it had (or stopped answering)."""
        return gateway not in self._open and (
            self._asked[gateway].caught_up or self._silent(gateway)
        )

    def _completeness(self, gateway: bytes, acc: int, count: int) -> Completeness:
        found = self.store.anchorings(gateway, self._final)
        digests = {c: a.digest for c, a in found.items() if c <= count}
        return completeness(digests, count=count, acc=acc, have=self.store.taken(gateway))

    def _scan(self, gateway: bytes, missing: Sequence[int]) -> Iterator[Problem]:
        """Learn the gateway's anchorings at the ``missing`` counts from the contract's events,
        each proven by its receipt (:mod:`lightpost_gateway.anchorings`), at most once per
        REQUEST_RETRY_S: in the blocks between the known anchorings around each missing count."""
        now = self._clock()
        if now - self._scanned.get(gateway, -1e18) <= REQUEST_RETRY_S:
            return
        self._scanned[gateway] = now
        known = sorted(self.store.anchorings(gateway, self._final).values(), key=lambda a: a.count)
        ranges: set[tuple[int, int]] = set()
        for c in missing[:MAX_SCAN_RANGES]:
            lo = max((a.block for a in known if a.count < c), default=0)
            hi = min((a.block for a in known if a.count > c), default=self._final)
            ranges.add((lo, hi))
        for lo, hi in sorted(ranges):
            try:
                found, why = anchorings.find(
                    self.chain, gateway=gateway, domain=self.domain, lo=lo, hi=hi
                )
            except LightpostError as exc:
                yield from self._problem("chain", f"anchorings not found: {exc}", gateway)
                continue
            for a in found:
                self.store.put_anchoring(gateway, a)
            for w in why:
                yield from self._problem("chain", f"an anchoring not proven: {w}", gateway)

    def _recheck(self) -> Iterator[Problem]:
        """``included``: each batch taken, once its block is final, is checked to be still there
        (its transaction in the agreed block); one a reorg dropped is reported ``retracted`` with
        the seqs delivered on its strength (they are not taken back: the caller has them)."""
        for gateway, number, block, tx_hash in self.store.unfinal(self._final, MAX_RECHECKS):
            try:
                proven = self.chain.proven_block(block, full=True)
            except LightpostError:
                return  # not provable now: again at the next check
            if all(tx.hash != tx_hash for tx in proven.transactions):
                for device, first, last in self.store.unfinal_devices(gateway, number):
                    upto = min(last, self.store.cursor(device).next_seq - 1)
                    if upto >= first:
                        why = (
                            f"seqs {first}..{upto} were delivered at included; batch {number}'s "
                            f"transaction 0x{tx_hash.hex()} is no longer in block {block} (reorg)"
                        )
                        yield Problem(kind="retracted", details=why, gateway=gateway, device=device)
            self.store.drop_unfinal(gateway, number)

    def _silent(self, gateway: bytes) -> bool:
        """The gateway left a backfill request unanswered for over REQUEST_RETRY_S."""
        since = self._asked[gateway].unanswered_since
        return since is not None and self._clock() - since > REQUEST_RETRY_S

    # --- delivery ---

    def _deliver(self) -> Iterator[Delivery | Problem]:
        complete = min((self._complete.get(g, -1) for g in self.gateways), default=-1)
        touched, self._touched = self._touched, set()
        for device in sorted(touched):
            heads = usable(
                self.store.heads(device), level=self.level, final=self._final, complete=complete
            )
            run, stop = deliverable(
                self.store.cursor(device), self.store.pool(device), heads, level=self.level
            )
            for held in run:
                signed, _, _ = open_record(held.wire, self.domain)
                yield Delivery(
                    device=device,
                    seq=held.seq,
                    hash=held.hash,
                    record=signed.record,
                    level=self.level,
                    gateway=held.gateway,
                )
                self.store.advance(device, held)  # after the caller took it
            if stop is not None:
                what = f"seqs {stop.first}..{stop.last}"
                if stop.kind == "missing":
                    what += " are anchored but no followed gateway relayed them"
                yield from self._problem(stop.kind, what, device=device)
