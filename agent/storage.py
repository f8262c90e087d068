"""One SQLite connection on its own thread, and the transaction helper every store uses.

The event loop never waits for the SD card: each database file is owned by a
`SqliteWorker` whose single thread holds the connection and runs the
functions handed to it (`await worker.run(fn, *args)`, where `fn(conn, …)`
runs on the thread). `transaction(conn)` is BEGIN IMMEDIATE … COMMIT with a
guarded ROLLBACK: when SQLite has already rolled back (a full disk does
that), the original error is what surfaces, never "cannot rollback - no
transaction is active". `storage_errors(what)` maps sqlite3 errors to
`StorageError` at the boundary, keeping the cause and the disk-full flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from agent.errors import StorageError

__all__ = ["SqliteWorker", "is_disk_full", "storage_errors", "transaction"]

T = TypeVar("T")
P = ParamSpec("P")

# SQLITE_FULL; its message is "database or disk is full".
_SQLITE_FULL = 13
# Another connection holding the write lock: wait this long before failing.
BUSY_TIMEOUT_S = 30


def is_disk_full(exc: BaseException) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(exc)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT; on any error a guarded ROLLBACK, then the original error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """sqlite3.Error (and OSError while opening) -> StorageError("{what}: …"), cause kept."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StorageError(f"{what}: {exc}", disk_full=is_disk_full(exc)) from exc
    except OSError as exc:
        raise StorageError(f"{what}: {exc.strerror or exc}") from exc


class SqliteWorker:
    """A database file, its connection and the thread that owns it."""

    def __init__(self, path: Path, *, name: str, label: str = "database", wal: bool = True) -> None:
        self.path = path
        self.name = name
        self.label = label  # what the file is, for error messages: "cannot open outbox /var/lib/…"
        self._wal = wal
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    async def open(self, setup: Callable[[sqlite3.Connection], T] | None = None) -> T | None:
        """Connect on the worker's thread and run `setup(conn)` there (schema, pragmas, loading)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=self.name)
        return await self._submit(self._open, setup)

    def _open(self, setup: Callable[[sqlite3.Connection], T] | None) -> T | None:
        with storage_errors(f"cannot open {self.label} {self.path}"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_S)
            try:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
                if self._wal:
                    conn.execute("PRAGMA journal_mode=WAL")
                result = setup(conn) if setup is not None else None
            except BaseException:
                conn.close()
                raise
        self._conn = conn
        return result

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._executor is None:
            raise StorageError(f"{self.path} is not open")
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _with_conn(self, fn: Callable[..., T], *args: Any) -> T:
        if self._conn is None:
            raise StorageError(f"{self.path} is not open")
        return fn(self._conn, *args)

    def submit(self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: Any) -> asyncio.Future[T]:
        """Queue `fn(conn, *args)` on the thread; the future may be shielded by callers that must see it end."""
        return self._submit(self._with_conn, fn, *args)

    async def run(self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: Any) -> T:
        return await self.submit(fn, *args)

    async def close(self, before: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Run `before(conn)` (a checkpoint, say), close the connection and end the thread; idempotent."""
        if self._executor is None:
            return
        if self._conn is not None:
            await self._submit(self._close, before)
        self._executor.shutdown(wait=True)
        self._executor = None

    def _close(self, before: Callable[[sqlite3.Connection], None] | None) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if before is not None:
                before(conn)
        finally:
            conn.close()
