"""The shared SQLite bootstrap: private files, schema versions, legacy files, errors."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightpost.adapters.receiver_store import RECEIVER_DB, ReceiverStore, StreamRow
from lightpost.adapters.store import Store
from lightpost.core.keys import PrivateKey
from lightpost.errors import StoreError
from lightpost.node.config import DeviceConfig
from lightpost.node.runtime import open_store
from lightpost_agent.store import STATE_FILE, AgentStore, read_audit

SIDES = ("", "-wal", "-shm")


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common default: without care, files come out 0644 and directories 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private(db: Path) -> None:
    assert mode(db.parent) == 0o700
    for suffix in SIDES:
        side = Path(f"{db}{suffix}")
        assert side.exists(), side
        assert mode(side) == 0o600, (side.name, oct(mode(side)))


def device_config(tmp_path: Path) -> DeviceConfig:
    return DeviceConfig(
        path=tmp_path / "d.toml",
        chain_id=31337,
        endpoints=("http://127.0.0.1:1",),
        quorum=1,
        keystore=tmp_path / "k.json",
        password_file=None,
        data_dir=tmp_path / "data" / "meter-1",
        mode="direct",
    )


# --- permissions --------------------------------------------------------------------


def test_the_outbox_store_and_its_data_dir_are_private(tmp_path: Path) -> None:
    config = device_config(tmp_path)
    with open_store(config) as store:
        store.set_meta("k", "v")  # the WAL and shm exist while the store is open
        assert_private(config.data_dir / "lightpost.sqlite3")


def test_the_receiver_state_is_private(tmp_path: Path) -> None:
    store = ReceiverStore.open(tmp_path / "recv")
    try:
        store.set_cursor("s", 5)
        assert_private(tmp_path / "recv" / RECEIVER_DB)
    finally:
        store.close()


def test_the_agent_state_is_private(tmp_path: Path) -> None:
    from lightpost_agent.agent import Agent
    from tests.node.test_agent import Outbox, make_policy

    with Agent(make_policy(), tmp_path / "agent", Outbox()) as agent:
        assert agent.highest_seq(b"\xaa" * 20) == 0
        assert_private(tmp_path / "agent" / STATE_FILE)


def test_files_of_the_landed_version_are_tightened_on_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    db = data / "lightpost.sqlite3"
    Store.open(db).close()
    for suffix in SIDES:
        side = Path(f"{db}{suffix}")
        side.touch()
        side.chmod(0o644)
    data.chmod(0o755)
    with Store.open(db):
        assert all(mode(Path(f"{db}{suffix}")) == 0o600 for suffix in SIDES)
    ReceiverStore.open(data).close()  # a data dir is made 0700 when a store creates it
    assert mode(data) == 0o700


def test_device_configs_written_by_the_devnet_are_private(tmp_path: Path) -> None:
    from lightpost_operator.devnet import write_device

    devices = tmp_path / "devices"
    devices.mkdir()
    (devices / "meter-1.toml").write_text("old")
    (devices / "meter-1.toml").chmod(0o644)
    key = PrivateKey(b"\x01" * 32)
    path = write_device(
        devices,
        "meter-1",
        key=key,
        chain_id=31337,
        endpoints=["http://127.0.0.1:8545/v3/KEY123SECRET"],
        quorum=1,
        inbox=b"\x02" * 20,
        trusted={},
        randbytes=lambda n: b"\x03" * n,
    )
    for name in (path.name, "meter-1.keystore.json", "meter-1.password"):
        assert mode(devices / name) == 0o600, name


# --- schema versions and files of the landed version ----------------------------------

LANDED_RECEIVER_SQL = (
    "CREATE TABLE IF NOT EXISTS recv_cursor (sub TEXT PRIMARY KEY, next_block INTEGER NOT NULL)"
    " WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS recv_stream (sub TEXT NOT NULL, sender BLOB NOT NULL, channel"
    " BLOB NOT NULL, next_seq INTEGER, acc BLOB NOT NULL, count INTEGER NOT NULL, proven_at"
    " INTEGER, PRIMARY KEY (sub, sender, channel)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS recv_unfinal (sub TEXT NOT NULL, block_number INTEGER NOT NULL,"
    " block_hash BLOB NOT NULL, sender BLOB NOT NULL, channel BLOB NOT NULL, seq INTEGER NOT"
    " NULL, tx_hash BLOB NOT NULL, PRIMARY KEY (sub, sender, channel, seq)) WITHOUT ROWID",
)
"""The receiver state as the landed version wrote it: no application id, no version."""

LANDED_AGENT_SQL = """
CREATE TABLE IF NOT EXISTS seen (controller BLOB PRIMARY KEY, highest_seq BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS software (id INTEGER PRIMARY KEY CHECK (id = 1), version TEXT
    NOT NULL, digest BLOB NOT NULL, size INTEGER NOT NULL, installed_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,
    controller BLOB NOT NULL, seq BLOB NOT NULL, name TEXT NOT NULL, decision TEXT NOT NULL,
    reason TEXT NOT NULL, tx_hash BLOB NOT NULL, detail TEXT NOT NULL);
"""
"""The agent state as the landed version wrote it: no application id, no version."""


def pragmas(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        return (
            conn.execute("PRAGMA application_id").fetchone()[0],
            conn.execute("PRAGMA user_version").fetchone()[0],
        )
    finally:
        conn.close()


def test_a_receiver_state_of_the_landed_version_is_adopted(tmp_path: Path) -> None:
    db = tmp_path / RECEIVER_DB
    conn = sqlite3.connect(db, isolation_level=None)
    for statement in LANDED_RECEIVER_SQL:
        conn.execute(statement)
    conn.execute("INSERT INTO recv_cursor VALUES ('sub', 42)")
    conn.execute(
        "INSERT INTO recv_stream VALUES ('sub', ?, ?, 3, ?, 2, 40)",
        (b"\x01" * 20, b"\x02" * 32, b"\x03" * 32),
    )
    conn.close()
    assert pragmas(db) == (0, 0)
    store = ReceiverStore.open(tmp_path)
    try:
        assert store.cursor("sub") == 42
        assert store.streams("sub") == [
            StreamRow(b"\x01" * 20, b"\x02" * 32, 3, b"\x03" * 32, 2, 40, last_block=None)
        ]
    finally:
        store.close()
    assert pragmas(db) == (0x4C505243, 2)  # migrated on: 2 adds recv_stream.last_block


def test_an_agent_state_of_the_landed_version_is_adopted(tmp_path: Path) -> None:
    db = tmp_path / STATE_FILE
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(LANDED_AGENT_SQL)
    conn.execute("INSERT INTO seen VALUES (?, ?)", (b"\xaa" * 20, (9).to_bytes(8, "big")))
    conn.execute(
        "INSERT INTO audit (at, controller, seq, name, decision, reason, tx_hash, detail)"
        " VALUES (1, ?, ?, 'set', 'executed', 'ok', ?, '')",
        (b"\xaa" * 20, (9).to_bytes(8, "big"), b"\x00" * 32),
    )
    conn.close()
    store = AgentStore(db)
    try:
        assert store.highest_seq(b"\xaa" * 20) == 9
    finally:
        store.close()
    assert pragmas(db) == (0x4C504147, 1)
    assert [e.command_seq for e in read_audit(tmp_path)] == [9]


def test_a_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path / RECEIVER_DB).close()  # an outbox store where receiver state goes
    with pytest.raises(StoreError, match="not a lightpost receiver state"):
        ReceiverStore.open(tmp_path)
    foreign = tmp_path / "x" / STATE_FILE
    foreign.parent.mkdir()
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (t)")
    conn.close()
    with pytest.raises(StoreError, match="not a lightpost agent state"):
        AgentStore(foreign)


def test_newer_receiver_state_is_refused(tmp_path: Path) -> None:
    ReceiverStore.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / RECEIVER_DB)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer than this lightpost"):
        ReceiverStore.open(tmp_path)


def test_receiver_errors_go_through_the_one_translator(tmp_path: Path) -> None:
    store = ReceiverStore.open(tmp_path)
    try:
        other = sqlite3.connect(tmp_path / RECEIVER_DB, isolation_level=None, timeout=0)
        other.execute("BEGIN IMMEDIATE")
        try:
            store._conn.execute("PRAGMA busy_timeout = 0")  # type: ignore[union-attr]
            with pytest.raises(StoreError, match="receiver state is locked by another"):
                store.set_cursor("s", 1)
        finally:
            other.execute("ROLLBACK")
            other.close()
    finally:
        store.close()
