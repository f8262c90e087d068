"""The durable outbox: every event lands here before anything else may send it.

SQLite in WAL mode. One writer task owns all writes and does group commits:
it takes whatever the hub queued since the last commit (up to `commit_max`)
and writes it in one transaction, so the fsync cost is shared by thousands
of events. Database work runs on two dedicated threads (one writer
connection, one reader connection) so the event loop never waits for the
SD card.

Rows leave only when the sync layer acknowledges them (after the broker's
PUBACK) or when the size cap forces a drop.

Over `max_bytes` (the bytes of the stored event JSON) the drop policy of
agent/drop_policy.py picks what goes: telemetry first, sales and alarms last,
the oldest first within a priority. Every drop is counted and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.drop_policy import LOW_WATER, DropCandidate, plan_drops
from agent.errors import StorageError
from agent.events import Event, Priority
from agent.hub import Subscription
from agent.storage import SqliteWorker, storage_errors, transaction
from drivers.backoff import Backoff

__all__ = ["SCHEMA", "Outbox", "OutboxRow", "OutboxStats", "row_of"]

log = logging.getLogger(__name__)

# Rows considered per priority per drop round; bounds the work of one commit.
_DROP_SCAN = 50_000
# After a failed commit, retry after this long (doubling up to the max); the hub queue buffers meanwhile.
_RETRY_MIN_S = 0.1
_RETRY_MAX_S = 5.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the uplink's order and cursor
    id       TEXT    NOT NULL,                   -- the event's ULID, for de-duplication downstream
    kind     TEXT    NOT NULL,
    priority INTEGER NOT NULL,
    created  REAL    NOT NULL,                   -- event wall time, seconds since the epoch
    size     INTEGER NOT NULL,                   -- len(body) in bytes; what the cap counts
    body     BLOB    NOT NULL                    -- the event's contract JSON, UTF-8
);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (priority, seq);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    id: str
    kind: str
    created: float
    body: bytes


@dataclass(slots=True)
class OutboxStats:
    depth: int
    bytes: int
    oldest_age_s: float | None
    dropped: int
    dropped_by_priority: dict[str, int]
    committed: int
    acked: int
    commits: int
    write_errors: int
    disk_bytes: int
    max_bytes: int


@dataclass(slots=True)
class _CommitResult:
    rows: int
    bytes: int
    last_seq: int
    dropped: list[DropCandidate] = field(default_factory=list)


def row_of(event: Event) -> tuple[str, str, int, float, int, bytes]:
    """The outbox row of an event: (id, kind, priority, created, size, body)."""
    body = event.to_json()
    return (event.id, event.kind, int(event.priority), event.ts, len(body), body)


class Outbox:
    """Durable, bounded event store. Use as `async with Outbox(...) as outbox:`."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 512 * 1024 * 1024,
        commit_max: int = 10_000,
        synchronous: str = "full",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.commit_max = commit_max
        self._synchronous = synchronous.upper()
        self._clock = clock
        self._w = SqliteWorker(self.path, name="outbox-writer", label="outbox")
        self._r = SqliteWorker(self.path, name="outbox-reader", label="outbox")
        self._depth = 0
        self._bytes = 0
        self._oldest: float | None = None
        self._last_seq = 0
        self._committed_event = asyncio.Event()
        self.committed = 0
        self.acked = 0
        self.commits = 0
        self.write_errors = 0
        self.dropped_by_priority: dict[str, int] = {p.name.lower(): 0 for p in Priority}
        self.last_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Outbox:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        await self._w.open(self._setup_writer)
        await self._r.open()
        log.info(
            "outbox: %s open, %d event(s) waiting (%d bytes, cap %d)",
            self.path, self._depth, self._bytes, self.max_bytes,
        )

    def _setup_writer(self, conn: sqlite3.Connection) -> None:
        # auto_vacuum must be set before the first table exists; lets us hand freed pages back.
        if conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] == 0:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.executescript(SCHEMA)
        depth, size, oldest = conn.execute(
            "SELECT count(*), coalesce(sum(size), 0), min(created) FROM outbox"
        ).fetchone()
        last = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
        self._depth, self._bytes, self._oldest = depth, size, oldest
        self._last_seq = last[0] if last else 0

    async def close(self) -> None:
        """Close both connections (after a checkpoint); idempotent."""
        await self._w.close(_checkpoint)
        await self._r.close()

    # -- writing -----------------------------------------------------------------------------

    async def run_writer(self, sub: Subscription) -> None:
        """Group-commit everything `sub` delivers until it is closed and drained."""
        backoff = Backoff(_RETRY_MIN_S, _RETRY_MAX_S)
        while True:
            batch = await sub.get_batch(self.commit_max)
            if not batch:
                return
            while True:
                try:
                    await self.write(batch)
                    backoff.reset()
                    break
                except StorageError as exc:
                    # Keep the batch and retry: the hub queue buffers new events meanwhile
                    # (and counts what it cannot hold). Giving up here would lose committed-to-be data.
                    self.write_errors += 1
                    self.last_error = str(exc)
                    delay = backoff.next()
                    log.error("outbox: commit of %d event(s) failed, retrying in %.1fs: %s", len(batch), delay, exc)
                    if exc.disk_full:
                        # The disk filled before our cap did: make room the way the cap would, by priority.
                        await self._make_room(max(self._bytes // 10, 1024 * 1024))
                    await asyncio.sleep(delay)

    async def write(self, events: Sequence[Event]) -> int:
        """Commit `events` in one transaction; returns the last seq. Counters move only after the commit."""
        if not events:
            return self._last_seq
        result = await self._w.run(self._commit, events)
        self._apply_commit(result)
        return result.last_seq

    def _commit(self, conn: sqlite3.Connection, events: Sequence[Event]) -> _CommitResult:
        rows = [row_of(e) for e in events]
        size = sum(r[4] for r in rows)
        with storage_errors("outbox write failed"), transaction(conn):
            conn.executemany(
                "INSERT INTO outbox (id, kind, priority, created, size, body) VALUES (?, ?, ?, ?, ?, ?)", rows
            )
            last_seq = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            dropped = self._enforce_cap(conn, self._bytes + size)
        return _CommitResult(len(rows), size, last_seq, dropped)

    def _enforce_cap(self, conn: sqlite3.Connection, total: int, *, excess: int | None = None) -> list[DropCandidate]:
        if excess is None:
            if total <= self.max_bytes:
                return []
            excess = total - int(self.max_bytes * LOW_WATER)
        candidates: list[DropCandidate] = []
        covered = 0
        for priority in sorted(Priority):
            after = 0
            while covered < excess:
                chunk = conn.execute(
                    "SELECT seq, size FROM outbox WHERE priority = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (int(priority), after, _DROP_SCAN),
                ).fetchall()
                if not chunk:
                    break
                for seq, size in chunk:
                    candidates.append(DropCandidate(seq, int(priority), size))
                    covered += size
                    after = seq
            if covered >= excess:
                break
        chosen = plan_drops(candidates, excess)
        conn.executemany("DELETE FROM outbox WHERE seq = ?", [(c.seq,) for c in chosen])
        return chosen

    async def _make_room(self, nbytes: int) -> None:
        try:
            dropped = await self._w.run(self._drop_bytes, nbytes)
        except StorageError as exc:
            log.error("outbox: could not make room on a full disk: %s", exc)
            return
        self._apply_commit(_CommitResult(0, 0, self._last_seq, dropped), reason="disk full")

    def _drop_bytes(self, conn: sqlite3.Connection, nbytes: int) -> list[DropCandidate]:
        with storage_errors("outbox drop failed"), transaction(conn):
            return self._enforce_cap(conn, self._bytes, excess=nbytes)

    def _apply_commit(self, result: _CommitResult, *, reason: str = "over its cap") -> None:
        was_empty = self._depth == 0
        self._depth += result.rows
        self._bytes += result.bytes
        self._last_seq = result.last_seq
        self.committed += result.rows
        self.commits += 1 if result.rows else 0
        if result.dropped:
            by_prio: dict[str, int] = {}
            freed = 0
            for c in result.dropped:
                name = Priority(c.priority).name.lower()
                by_prio[name] = by_prio.get(name, 0) + 1
                freed += c.size
            for name, n in by_prio.items():
                self.dropped_by_priority[name] += n
            self._depth -= len(result.dropped)
            self._bytes -= freed
            self._oldest = None  # recomputed lazily
            log.warning(
                "outbox: %s (cap %d bytes), dropped %d event(s) (%s), %d bytes; total dropped %d",
                reason, self.max_bytes, len(result.dropped),
                ", ".join(f"{k} {v}" for k, v in sorted(by_prio.items())), freed, self.dropped,
            )
        elif was_empty:
            self._oldest = None
        self._committed_event.set()
        self._committed_event = asyncio.Event()

    async def wait_committed(self, seq: int) -> None:
        """Wait until rows up to `seq` are committed (wrap in asyncio.timeout to bound it)."""
        while self._last_seq < seq:
            await self._committed_event.wait()

    # -- reading and acknowledging -----------------------------------------------------------

    async def take(self, after_seq: int = 0, limit: int = 1000, max_bytes: int | None = None) -> list[OutboxRow]:
        """The oldest rows with seq > `after_seq`, at most `limit` rows and about `max_bytes` (never fewer than one)."""
        return await self._r.run(_take, after_seq, limit, max_bytes)

    async def ack(self, seqs: Iterable[int]) -> int:
        """Delete acknowledged rows (the broker has them); returns how many were still there."""
        seq_list = sorted(set(seqs))
        if not seq_list:
            return 0
        removed, _ = await self._on_writer_applied(_ack, seq_list)
        return removed

    async def ack_range(self, first: int, last: int) -> int:
        """Delete rows first..last (a batch as `take` returned it: no other rows lie in between)."""
        removed, _ = await self._on_writer_applied(_ack_range, first, last)
        return removed

    def _apply_ack(self, removed: int, freed: int) -> None:
        self._depth -= removed
        self._bytes -= freed
        self.acked += removed
        self._oldest = None

    async def _on_writer_applied(self, fn: Callable[..., tuple[int, int]], *args: object) -> tuple[int, int]:
        """Run a delete on the writer thread; its counters move even if the caller is cancelled meanwhile."""
        fut = self._w.submit(fn, *args)

        def done(f: asyncio.Future[tuple[int, int]]) -> None:
            if not f.cancelled() and f.exception() is None:
                self._apply_ack(*f.result())

        fut.add_done_callback(done)
        return await asyncio.shield(fut)

    async def wait_for_rows(self, after_seq: int, within_s: float) -> bool:
        """Wait (at most `within_s`) until a row with seq > after_seq is committed; True if there is one."""
        if self._last_seq > after_seq:
            return True
        try:
            async with asyncio.timeout(within_s):
                while self._last_seq <= after_seq:
                    await self._committed_event.wait()
        except TimeoutError:
            return False
        return True

    async def vacuum(self, max_pages: int = 2048) -> None:
        """Hand freed pages back to the file system, a bounded amount at a time."""
        await self._w.run(_vacuum, max_pages)

    async def check_writable(self) -> None:
        """A cheap write round trip, for health checks; raises StorageError."""
        await self._w.run(_probe)

    # -- statistics --------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by_priority.values())

    async def oldest_age_s(self) -> float | None:
        if self._depth == 0:
            return None
        if self._oldest is None:
            self._oldest = await self._r.run(_oldest_created)
        return None if self._oldest is None else max(0.0, self._clock() - self._oldest)

    def disk_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(f"{self.path}{suffix}")
        return total

    async def stats(self) -> OutboxStats:
        return OutboxStats(
            depth=self._depth,
            bytes=self._bytes,
            oldest_age_s=await self.oldest_age_s(),
            dropped=self.dropped,
            dropped_by_priority=dict(self.dropped_by_priority),
            committed=self.committed,
            acked=self.acked,
            commits=self.commits,
            write_errors=self.write_errors,
            disk_bytes=self.disk_bytes(),
            max_bytes=self.max_bytes,
        )


# -- on the worker threads ---------------------------------------------------------------------


def _checkpoint(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:  # a reader holding a snapshot: the WAL stays, nothing is lost
        log.warning("outbox: checkpoint at close failed: %s", exc)


def _take(conn: sqlite3.Connection, after_seq: int, limit: int, max_bytes: int | None) -> list[OutboxRow]:
    out: list[OutboxRow] = []
    total = 0
    with storage_errors("outbox read failed"):
        cur = conn.execute(
            "SELECT seq, id, kind, created, body, size FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        for seq, id_, kind, created, body, size in cur:
            if max_bytes is not None and out and total + size > max_bytes:
                break
            out.append(OutboxRow(seq, id_, kind, created, body))
            total += size
    return out


def _ack(conn: sqlite3.Connection, seqs: list[int]) -> tuple[int, int]:
    removed = freed = 0
    with storage_errors("outbox ack failed"), transaction(conn):
        for start in range(0, len(seqs), 500):
            chunk = seqs[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for (size,) in conn.execute(f"DELETE FROM outbox WHERE seq IN ({marks}) RETURNING size", chunk):
                removed += 1
                freed += size
    return removed, freed


def _ack_range(conn: sqlite3.Connection, first: int, last: int) -> tuple[int, int]:
    with storage_errors("outbox ack failed"), transaction(conn):
        count, freed = conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM outbox WHERE seq BETWEEN ? AND ?", (first, last)
        ).fetchone()
        conn.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (first, last))
    return int(count), int(freed)


def _vacuum(conn: sqlite3.Connection, max_pages: int) -> None:
    try:
        conn.execute(f"PRAGMA incremental_vacuum({int(max_pages)})").fetchall()
    except sqlite3.Error as exc:
        log.warning("outbox: incremental vacuum failed: %s", exc)


def _probe(conn: sqlite3.Connection) -> None:
    with storage_errors("outbox not writable"), transaction(conn):
        pass


def _oldest_created(conn: sqlite3.Connection) -> float | None:
    row = conn.execute("SELECT created FROM outbox ORDER BY seq LIMIT 1").fetchone()
    return None if row is None else float(row[0])
