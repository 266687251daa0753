"""The durable SQLite store: life cycle, refusals, error translation, crash safety."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightpost.adapters.store import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, Store
from lightpost.core.fees import FeeQuote
from lightpost.core.hashing import keccak256
from lightpost.core.outbox import (
    TRANSITIONS,
    BlockRef,
    Broadcast,
    Finalized,
    IllegalTransition,
    Included,
    NonceConsumed,
    ReorgedOut,
    Replaced,
    Sighting,
    State,
    next_state,
)
from lightpost.errors import LightpostError, StoreError

FEES = FeeQuote(max_fee_per_gas=2 * 10**9, max_priority_fee_per_gas=10**9, gas_limit=80_000)
BUMPED = FeeQuote(max_fee_per_gas=3 * 10**9, max_priority_fee_per_gas=2 * 10**9, gas_limit=80_000)
ALICE = b"\xa1" * 20
BLOCK = BlockRef(hash=b"\xb1" * 32, number=12)


def raw_tx(tag: int) -> tuple[bytes, bytes]:
    """Opaque raw bytes and their hash (the store never decodes them)."""
    raw = b"\x02" + tag.to_bytes(8, "big") + b"\xee" * 40
    return raw, keccak256(raw)


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Store.open(tmp_path / "node.db") as s:
        yield s


def enqueue(store: Store, channel: str = "district-7", payload: bytes = b"m") -> int:
    return store.enqueue(
        channel=channel,
        recipient=ALICE,
        payload=payload,
        content_type="application/octet-stream",
        created_at=1000.0,
    )


def signed(store: Store, nonce: int, *mids: int, tag: int | None = None) -> int:
    raw, h = raw_tx(nonce if tag is None else tag)
    return store.record_signed(
        nonce=nonce, raw=raw, tx_hash=h, fees=FEES, message_ids=mids, signed_at=1001.0
    )


# --- opening, schema, pragmas --------------------------------------------------------


def test_open_sets_wal_full_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with Store.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        conn = s._conn
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with Store.open(path) as again:  # reopening migrates nothing, keeps version
        assert again.schema_version == SCHEMA_VERSION


def test_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with Store.open(path) as s:
        mid = enqueue(s, payload=b"hello")
        s.set_meta("cursor:district-7", "0x10")
    with Store.open(path) as s:
        assert s.message(mid).payload == b"hello"
        assert s.get_meta("cursor:district-7") == "0x10"
        assert s.get_meta("missing", "dflt") == "dflt"


def test_foreign_sqlite_db_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a lightpost store"):
        Store.open(path)


def test_non_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database at all, just some text" * 50)
    with pytest.raises(StoreError, match="not a lightpost store"):
        Store.open(path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store.open(path)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="missing"):
        Store.open(tmp_path / "nope" / "node.db")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a read-only /proc (Linux)")
def test_unwritable_directory() -> None:
    # /proc refuses new files even to root, unlike a chmod-ed directory.
    with pytest.raises(StoreError, match="not writable"):
        Store.open("/proc/lightpost-test.db")


def test_locked_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with Store.open(path, timeout=0.05) as s:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        try:
            with pytest.raises(StoreError, match="locked by another process"):
                enqueue(s)
            # An up-to-date store can still be opened for reading meanwhile.
            with Store.open(path, timeout=0.05) as reader:
                assert reader.counts_by_state()[State.QUEUED] == 0
        finally:
            other.execute("ROLLBACK")
            other.close()
        enqueue(s)  # lock released: works again


def test_migration_waits_for_a_locked_new_file(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="locked"):
            Store.open(path, timeout=0.05)
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_closed_store_refuses(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "node.db")
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        enqueue(s)


# --- messages -------------------------------------------------------------------


def test_seq_is_atomic_per_channel(store: Store) -> None:
    assert [store.next_seq("a") for _ in range(3)] == [0, 1, 2]
    assert store.next_seq("b") == 0
    mid = enqueue(store, "a")
    assert store.message(mid).seq == 3
    explicit = store.enqueue(
        channel="b",
        recipient=ALICE,
        payload=b"x",
        content_type="t",
        created_at=1.0,
        seq=store.next_seq("b"),
    )
    assert store.message(explicit).seq == 1


def test_duplicate_seq_is_refused(store: Store) -> None:
    store.enqueue(channel="a", recipient=ALICE, payload=b"x", content_type="t", created_at=1, seq=5)
    with pytest.raises(StoreError, match="duplicate"):
        store.enqueue(
            channel="a", recipient=ALICE, payload=b"y", content_type="t", created_at=1, seq=5
        )


def test_queued_messages_and_counts(store: Store) -> None:
    ids = [enqueue(store, payload=bytes([i])) for i in range(5)]
    assert [m.id for m in store.queued_messages(3)] == ids[:3]
    store.hold(ids[:2], "fee cap 200 gwei exceeded")
    assert [m.id for m in store.held_messages(10)] == ids[:2]
    assert store.message(ids[0]).hold_reason == "fee cap 200 gwei exceeded"
    counts = store.counts_by_state()
    assert counts[State.HELD] == 2 and counts[State.QUEUED] == 3 and counts[State.FINAL] == 0
    store.release(ids[:1])
    assert store.message(ids[0]).state is State.QUEUED
    assert store.message(ids[0]).hold_reason is None


# --- transactions -----------------------------------------------------------------


def test_full_life_cycle(store: Store) -> None:
    m1, m2 = enqueue(store), enqueue(store)
    tx_id = signed(store, 0, m1, m2)
    tx = store.transaction(tx_id)
    assert tx.state is State.SIGNED and tx.message_ids == (m1, m2)
    assert tx.candidate_hashes == (tx.tx_hash,)
    assert store.next_nonce() == 1
    assert store.message(m1).state is State.SIGNED and store.message(m1).tx_id == tx_id

    store.mark_broadcast(tx_id, at=1002.0)
    store.mark_broadcast(tx_id, at=1010.0)  # rebroadcast / "already known"
    assert store.transaction(tx_id).broadcast_at == 1010.0
    store.mark_included(tx_id, BLOCK.hash, BLOCK.number)
    tx = store.transaction(tx_id)
    assert tx.state is State.INCLUDED and tx.included == BLOCK and tx.mined_hash == tx.tx_hash
    assert [t.id for t in store.pending_transactions()] == [tx_id]
    store.mark_final(tx_id, at=2000.0)
    assert store.transaction(tx_id).state is State.FINAL
    assert store.message(m2).state is State.FINAL
    assert store.pending_transactions() == []
    assert store.nonce_inputs().final_next == 1


def test_record_signed_is_atomic_on_refusal(store: Store) -> None:
    ok, held = enqueue(store), enqueue(store)
    store.hold([held], "cap")
    with pytest.raises(IllegalTransition):
        signed(store, 0, ok, held)
    # Nothing of the failed transaction exists: no tx row, no link, nonce not advanced.
    assert store.pending_transactions() == []
    assert store.message(ok).state is State.QUEUED and store.message(ok).tx_id is None
    assert store.next_nonce() == 0


def test_unknown_message_and_duplicate_nonce(store: Store) -> None:
    with pytest.raises(StoreError, match="no message"):
        signed(store, 0, 999)
    signed(store, 0, enqueue(store))
    with pytest.raises(StoreError, match="duplicate"):
        signed(store, 0, enqueue(store), tag=77)


def test_gap_filler_has_no_messages(store: Store) -> None:
    tx_id = signed(store, 4)
    assert store.transaction(tx_id).message_ids == ()
    assert store.next_nonce() == 5


def test_replacement_keeps_nonce_and_all_candidates(store: Store) -> None:
    tx_id = signed(store, 3, enqueue(store))
    first = store.transaction(tx_id).tx_hash
    store.mark_broadcast(tx_id, at=1.0)
    raw2, h2 = raw_tx(1003)
    store.replace(tx_id, raw=raw2, tx_hash=h2, fees=BUMPED, signed_at=2.0)
    tx = store.transaction(tx_id)
    assert tx.state is State.SIGNED and tx.nonce == 3 and tx.raw == raw2 and tx.fees == BUMPED
    assert tx.candidate_hashes == (first, h2)
    assert store.find_by_hash(first) == tx == store.find_by_hash(h2)
    # The OLD version is the one that got mined: still recognised.
    store.mark_included(tx_id, BLOCK.hash, BLOCK.number, tx_hash=first)
    assert store.transaction(tx_id).mined_hash == first
    with pytest.raises(StoreError, match="not one of its candidates"):
        other = signed(store, 4, enqueue(store))
        store.mark_included(other, BLOCK.hash, BLOCK.number, tx_hash=b"\x99" * 32)


def test_replacing_with_the_same_hash_is_refused(store: Store) -> None:
    tx_id = signed(store, 0, enqueue(store))
    tx = store.transaction(tx_id)
    with pytest.raises(StoreError):
        store.replace(tx_id, raw=tx.raw, tx_hash=tx.tx_hash, fees=BUMPED, signed_at=2.0)
    assert store.transaction(tx_id).candidate_hashes == (tx.tx_hash,)


def test_reorg_goes_back_to_signed(store: Store) -> None:
    tx_id = signed(store, 0, enqueue(store))
    store.mark_broadcast(tx_id, at=1.0)
    store.mark_included(tx_id, BLOCK.hash, BLOCK.number)
    store.reorged(tx_id)
    tx = store.transaction(tx_id)
    assert tx.state is State.SIGNED and tx.included is None and tx.mined_hash is None


def test_nonce_consumed_requeues_messages(store: Store) -> None:
    m1, m2 = enqueue(store), enqueue(store)
    tx_id = signed(store, 0, m1, m2)
    store.mark_broadcast(tx_id, at=1.0)
    assert store.nonce_consumed(tx_id) == (m1, m2)
    assert [m.id for m in store.queued_messages(10)] == [m1, m2]
    assert store.message(m1).tx_id is None
    with pytest.raises(StoreError, match="no transaction"):
        store.transaction(tx_id)
    # Re-signed with a new nonce: never dropped.
    new = signed(store, 1, m1, m2)
    assert store.transaction(new).message_ids == (m1, m2)


@pytest.mark.parametrize(
    "call",
    [
        lambda s, t: s.mark_final(t, at=1.0),  # BROADCAST cannot become FINAL
        lambda s, t: s.reorged(t),  # not included
        lambda s, t: s.apply(t, Finalized(block=BLOCK), at=1.0),
    ],
)
def test_illegal_transitions_change_nothing(store: Store, call) -> None:  # type: ignore[no-untyped-def]
    tx_id = signed(store, 0, enqueue(store))
    store.mark_broadcast(tx_id, at=1.0)
    before = store.transaction(tx_id)
    with pytest.raises(IllegalTransition):
        call(store, tx_id)
    assert store.transaction(tx_id) == before


def test_final_is_terminal_in_the_store(store: Store) -> None:
    tx_id = signed(store, 0, enqueue(store))
    store.mark_included(tx_id, BLOCK.hash, BLOCK.number)  # SIGNED -> INCLUDED crash window
    store.mark_final(tx_id, at=5.0)
    for call in (
        lambda: store.mark_broadcast(tx_id, at=6.0),
        lambda: store.reorged(tx_id),
        lambda: store.nonce_consumed(tx_id),
    ):
        with pytest.raises(IllegalTransition):
            call()


def test_apply_dispatches_check_inclusion_events(store: Store) -> None:
    tx_id = signed(store, 0, enqueue(store))
    h = store.transaction(tx_id).tx_hash
    other = BlockRef(hash=b"\xc2" * 32, number=BLOCK.number)
    for event in (
        Broadcast(tx_hash=h),
        Included(sighting=Sighting(tx_hash=h, block=BLOCK)),
        ReorgedOut(block=BLOCK),
        Included(sighting=Sighting(tx_hash=h, block=other)),
        Finalized(block=other),
    ):
        store.apply(tx_id, event, at=9.0)
    tx = store.transaction(tx_id)
    assert tx.state is State.FINAL and tx.included == other


def test_nonce_counter_never_goes_down(store: Store) -> None:
    store.set_next_nonce(10)
    store.set_next_nonce(10)
    with pytest.raises(StoreError, match="lower"):
        store.set_next_nonce(9)
    signed(store, 4, enqueue(store))  # a gap filler below the counter keeps it at 10
    assert store.next_nonce() == 10


def test_nonce_inputs(store: Store) -> None:
    a = signed(store, 0, enqueue(store))
    signed(store, 1, enqueue(store))
    store.mark_included(a, BLOCK.hash, BLOCK.number)
    inputs = store.nonce_inputs()
    assert (inputs.local_next, inputs.in_flight, inputs.included) == (2, (1,), (0,))


def test_prune_final_keeps_everything_else(store: Store) -> None:
    old = signed(store, 0, enqueue(store))
    store.mark_included(old, BLOCK.hash, BLOCK.number)
    store.mark_final(old, at=100.0)
    recent = signed(store, 1, enqueue(store))
    store.mark_included(recent, BLOCK.hash, BLOCK.number)
    store.mark_final(recent, at=500.0)
    live = signed(store, 2, enqueue(store))
    queued = enqueue(store)
    assert store.prune_final(older_than_ts=200.0) == 1
    with pytest.raises(StoreError):
        store.transaction(old)
    assert store.transaction(recent).state is State.FINAL
    assert store.transaction(live).state is State.SIGNED
    assert store.message(queued).state is State.QUEUED
    assert store.counts_by_state()[State.FINAL] == 1
    assert store.nonce_inputs().final_next == 2  # survives pruning
    assert store.prune_final(older_than_ts=10_000.0) == 1


# --- migrations --------------------------------------------------------------------


def test_a_v1_store_of_the_landed_version_migrates_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "lightpost.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS[0](conn)  # the released v1 schema, as the landed version wrote it
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO meta (key, value) VALUES ('next_nonce', '7')")
    conn.execute(
        "INSERT INTO accumulators VALUES (?, 'c', ?, 3, 2, 1.0)", (b"\x01" * 20, b"\x02" * 32)
    )
    conn.close()
    with Store.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION == 2
        assert s.get_meta("next_nonce") == "7"
        mid = enqueue(s, payload=b"after the migration")
        assert s.message(mid).payload == b"after the migration"
        assert s._conn is not None
        tables = {r[0] for r in s._conn.execute("SELECT name FROM sqlite_master")}
    assert not tables & {"accumulators", "seen_commands", "seen_commands_seq"}
    assert {"meta", "transactions", "tx_candidates", "messages"} <= tables


# --- store vs. pure table -------------------------------------------------------------

_TX_EVENT_NAMES = ("broadcast", "included", "reorged", "final", "replace", "consumed")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(_TX_EVENT_NAMES), max_size=12))
def test_store_follows_the_table(tmp_path: Path, names: list[str]) -> None:
    path = tmp_path / f"prop-{random.getrandbits(64):x}.db"
    with Store.open(path) as s:
        mid = enqueue(s)
        tx_id = signed(s, 0, mid)
        state, version = State.SIGNED, 0
        for name in names:
            version += 1
            raw, h = raw_tx(10_000 + version)
            event = {
                "broadcast": Broadcast(tx_hash=h),
                "included": Included(sighting=Sighting(tx_hash=h, block=BLOCK)),
                "reorged": ReorgedOut(block=BLOCK),
                "final": Finalized(block=BLOCK),
                "replace": Replaced(tx_hash=h, raw=raw, fees=BUMPED),
                "consumed": NonceConsumed(nonce=0),
            }[name]
            legal = (state, type(event)) in TRANSITIONS
            if isinstance(event, Included):
                event = Included(
                    sighting=Sighting(tx_hash=s.transaction(tx_id).tx_hash, block=BLOCK)
                )
            try:
                s.apply(tx_id, event, at=float(version))
            except LightpostError as exc:
                assert isinstance(exc, IllegalTransition) and not legal
                continue
            assert legal
            state = next_state(state, event)
            assert s.message(mid).state is state
            if state is State.QUEUED:  # nonce consumed: the tx row is gone
                assert s.pending_transactions() == []
                break
            assert s.transaction(tx_id).state is state
    path.unlink()


# --- crash safety -----------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import sys
    from lightpost.adapters.store import Store
    from lightpost.core.hashing import keccak256
    from lightpost.core.fees import FeeQuote

    fees = FeeQuote(max_fee_per_gas=2, max_priority_fee_per_gas=1, gas_limit=21000)
    s = Store.open(sys.argv[1])
    start = int(sys.argv[2])
    out = sys.stdout
    for i in range(start, start + 100000):
        payload = i.to_bytes(4, "big") * 64
        mid = s.enqueue(channel="c", recipient=b"\\x01" * 20, payload=payload,
                        content_type="t", created_at=float(i))
        out.write(f"m {mid} {i}\\n"); out.flush()
        if i % 3 == 2:
            ids = [m.id for m in s.queued_messages(3)]
            nonce = s.next_nonce()
            raw = b"\\x02" + i.to_bytes(8, "big") * 8
            tx = s.record_signed(nonce=nonce, raw=raw, tx_hash=keccak256(raw), fees=fees,
                                 message_ids=ids, signed_at=float(i))
            out.write("t %d %d %s\\n" % (tx, nonce, ",".join(map(str, ids)))); out.flush()
            if i % 2:
                s.mark_broadcast(tx, at=float(i))
    """
)


def test_sigkill_never_loses_acknowledged_or_half_writes(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    rng = random.Random(20260509)
    acked_messages: dict[int, int] = {}
    acked_txs: dict[int, tuple[int, tuple[int, ...]]] = {}
    start = 0
    for _ in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        for _ in range(rng.randint(5, 80)):
            line = child.stdout.readline()
            if not line:
                break
            kind, *fields = line.split()
            if kind == "m":
                acked_messages[int(fields[0])] = int(fields[1])
                start = max(start, int(fields[1]) + 1)
            else:
                mids = tuple(int(x) for x in fields[2].split(",")) if len(fields) > 2 else ()
                acked_txs[int(fields[0])] = (int(fields[1]), mids)
        child.send_signal(signal.SIGKILL)  # at whatever point the child has reached
        child.wait()
        child.stdout.close()
        start += 1000  # later rounds use fresh payload numbers

        with Store.open(path) as s:
            conn = s._conn
            assert conn is not None
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            for mid, i in acked_messages.items():
                assert s.message(mid).payload == i.to_bytes(4, "big") * 64
            for tx_id, (nonce, mids) in acked_txs.items():
                tx = s.transaction(tx_id)
                assert tx.nonce == nonce and tx.message_ids == mids
            # No half-written transaction anywhere (acknowledged or not).
            for tx_id, nonce in conn.execute("SELECT id, nonce FROM transactions"):
                tx = s.transaction(tx_id)
                assert tx.message_ids, f"tx {tx_id} lost its message links"
                assert tx.tx_hash in tx.candidate_hashes
                assert all(s.message(m).state is tx.state for m in tx.message_ids)
                assert s.next_nonce() > nonce
            orphans = conn.execute(
                "SELECT count(*) FROM messages "
                "WHERE (tx_id IS NULL) != (state IN ('queued', 'held'))"
            ).fetchone()[0]
            assert orphans == 0
    assert acked_messages and acked_txs
