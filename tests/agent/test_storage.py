"""The SQLite worker and its transaction helper, against real files (and a real full disk where allowed)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from agent.errors import StorageError
from agent.storage import SqliteWorker, is_disk_full, storage_errors, transaction


async def test_runs_on_its_own_thread_and_commits(tmp_path: Path) -> None:
    db = SqliteWorker(tmp_path / "a.db", name="test-db")
    await db.open(lambda c: c.execute("CREATE TABLE t (x INTEGER)"))
    main = threading.get_ident()

    def insert(conn: sqlite3.Connection, n: int) -> int:
        assert threading.get_ident() != main
        with transaction(conn):
            conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(n)])
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])

    assert await db.run(insert, 5) == 5
    await db.close()
    await db.close()  # idempotent
    assert sqlite3.connect(tmp_path / "a.db").execute("SELECT count(*) FROM t").fetchone() == (5,)
    assert sqlite3.connect(tmp_path / "a.db").execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_a_failed_transaction_rolls_back_and_keeps_its_own_error(tmp_path: Path) -> None:
    db = SqliteWorker(tmp_path / "a.db", name="test-db")
    await db.open(lambda c: c.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)"))

    def twice(conn: sqlite3.Connection) -> None:
        with storage_errors("insert failed"), transaction(conn):
            conn.execute("INSERT INTO t VALUES (1)")
            conn.execute("INSERT INTO t VALUES (1)")

    with pytest.raises(StorageError, match="insert failed: UNIQUE constraint failed") as info:
        await db.run(twice)
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
    assert await db.run(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 0
    assert await db.run(lambda c: c.in_transaction) is False
    await db.close()


def test_rollback_after_sqlite_already_rolled_back_surfaces_the_real_error(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("ROLLBACK")  # what SQLite does by itself on SQLITE_FULL
        raise Boom  # the real error, not "cannot rollback - no transaction is active"
    assert not conn.in_transaction


async def test_unopenable_file_and_closed_worker_are_storage_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    db = SqliteWorker(tmp_path / "file" / "a.db", name="test-db", label="consent store")
    with pytest.raises(StorageError, match="cannot open consent store"):
        await db.open()
    closed = SqliteWorker(tmp_path / "b.db", name="test-db")
    with pytest.raises(StorageError, match="not open"):
        await closed.run(lambda c: None)


def test_disk_full_is_recognised() -> None:
    err = sqlite3.OperationalError("database or disk is full")
    assert is_disk_full(err) and not is_disk_full(sqlite3.OperationalError("locked"))
    with pytest.raises(StorageError) as info, storage_errors("write"):
        raise err
    assert info.value.disk_full
