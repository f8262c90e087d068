"""The durable outbox: every event lands here before anything else may send it.

SQLite in WAL mode. One writer task owns all writes and does group commits:
it takes whatever the hub queued since the last commit (up to `commit_max`
events, and at most `commit_bytes` of JSON per transaction so that one
commit never outgrows the WAL's room), waits a few milliseconds after the
previous commit so that a trickle of events shares one transaction, and
writes it. Database work runs on two dedicated threads (one writer
connection, one reader connection) so the event loop never waits for the
SD card.

Rows leave only when the sync layer acknowledges them (after the broker's
PUBACK) or when the size cap forces a drop: over its share of `max_bytes`
(agent/outbox_db.py says how the files share it, the WAL and a spare file
included) the drop policy of agent/drop_policy.py picks what goes: telemetry
first, sales and alarms last, the oldest first within a priority. A full
disk is met the same way. Every drop is counted and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from agent import outbox_db as db
from agent.config import Config
from agent.drop_policy import DropCandidate
from agent.errors import StorageError
from agent.events import Event, Priority
from agent.hub import Subscription
from agent.outbox_batching import AckBuffer, gather
from agent.outbox_db import (
    SCHEMA,
    CommitResult,
    OutboxRow,
    OutboxStats,
    Row,
    chunks,
    layout_for,
    row_of,
)
from agent.outbox_space import Space
from agent.storage import SqliteWorker
from drivers.backoff import Backoff

__all__ = ["SCHEMA", "Outbox", "OutboxRow", "OutboxStats", "row_of"]

log = logging.getLogger(__name__)

# After a failed commit, retry after this long (doubling up to the max); the hub queue buffers meanwhile.
_RETRY_MIN_S = 0.1
_RETRY_MAX_S = 5.0
# Free pages handed back to the file system per step once the outbox has drained (16 MiB of 4 KiB pages).
_RECLAIM_PAGES = 4096
_TELEMETRY = int(Priority.TELEMETRY)
# Telemetry stops lingering once this many events are queued: a commit of that size shares its overhead well.
_ENOUGH = 500
# Drops are logged once per this many seconds at most (each with the counts since the last line).
_DROP_LOG_S = 10.0


class Outbox:
    """Durable, bounded event store. Use as `async with Outbox(...) as outbox:`."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 512 * 1024 * 1024,
        commit_max: int = 10_000,
        synchronous: str = "full",
        commit_linger_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.commit_max = commit_max
        self.commit_linger_s = commit_linger_s
        self.layout = layout_for(max_bytes)
        # "by-class": FULL (an fsync) for a commit holding an operational or business event, NORMAL otherwise.
        self._by_class = synchronous == "by-class"
        self._synchronous = "NORMAL" if self._by_class else synchronous.upper()
        self._clock = clock
        # WAL is set by setup, after auto_vacuum: a new file must know it may give pages back before it exists.
        self._w = SqliteWorker(self.path, name="outbox-writer", label="outbox", wal=False)
        self._r = SqliteWorker(self.path, name="outbox-reader", label="outbox")
        self._space = Space(self.path, self.layout)
        self._depth = 0
        self._bytes = 0
        self._oldest: float | None = None
        self._last_seq = 0
        self._committed_event = asyncio.Event()
        self._orphan_drops: list[DropCandidate] = []
        self._acks = AckBuffer(self._delete_ranges)
        self._drop_logged_at = -_DROP_LOG_S
        self._unlogged_drops: dict[str, int] = {}
        self._unlogged_freed = 0
        self.committed = 0
        self.acked = 0
        self.commits = 0
        self.write_errors = 0
        self.dropped_by_priority: dict[str, int] = {p.name.lower(): 0 for p in Priority}
        self.last_error: str | None = None
        self.last_error_disk_full = False

    @classmethod
    def from_config(cls, config: Config) -> Outbox:
        return cls(config.storage.path, max_bytes=config.outbox.max_bytes, commit_max=config.outbox.commit_max,
                   synchronous=config.storage.synchronous, commit_linger_s=config.outbox.commit_linger_ms / 1000)

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Outbox:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        await self._w.open(self._setup_writer)
        await self._r.open()
        log.info("outbox: %s open, %d event(s) waiting (%d bytes, cap %d)",
                 self.path, self._depth, self._bytes, self.max_bytes)

    def _setup_writer(self, conn: sqlite3.Connection) -> None:
        self._space.size_for(self.path.parent)
        self._depth, self._bytes, self._last_seq = db.setup(conn, self._synchronous, self.layout, self._space)
        self._space.ensure_reserve()

    @property
    def commit_bytes(self) -> int:
        return self._space.commit_bytes

    async def close(self) -> None:
        """Delete what was acked, close both connections (after a checkpoint); idempotent."""
        if self._w.is_open:
            with contextlib.suppress(StorageError):
                await self._acks.flush()
        await self._w.close(db.close)
        await self._r.close()

    # -- writing -----------------------------------------------------------------------------

    async def run_writer(self, sub: Subscription) -> None:
        """Group-commit everything `sub` delivers until it is closed and drained."""
        backoff = Backoff(_RETRY_MIN_S, _RETRY_MAX_S)
        while True:
            # Telemetry lingers for company; anything else is committed at once (agent/outbox_batching.py).
            batch = await gather(sub, self.commit_max, self.commit_linger_s, _ENOUGH)
            if not batch:
                return
            for rows in chunks([row_of(e) for e in batch], self.commit_bytes):
                while True:
                    try:
                        await self._write_rows(rows)
                        backoff.reset()
                        break
                    except StorageError as exc:
                        # Keep the batch and retry: the hub queue buffers new events meanwhile
                        # (and counts what it cannot hold). Giving up here would lose committed-to-be data.
                        self.write_errors += 1
                        self.last_error = str(exc)
                        self.last_error_disk_full = exc.disk_full
                        delay = backoff.next()
                        log.error("outbox: commit of %d event(s) failed, retrying in %.1fs: %s",
                                  len(rows), delay, exc)
                        await asyncio.sleep(delay)

    async def write(self, events: Sequence[Event]) -> int:
        """Commit `events` (one transaction per `commit_bytes`); returns the last seq. Counters move only
        after each commit."""
        for rows in chunks([row_of(e) for e in events], self.commit_bytes):
            await self._write_rows(rows)
        return self._last_seq

    async def _write_rows(self, rows: Sequence[Row]) -> None:
        try:
            result = await self._w.run(self._commit, rows)
        finally:
            if self._orphan_drops:
                orphans, self._orphan_drops = self._orphan_drops, []
                self._apply_commit(CommitResult(0, 0, self._last_seq, orphans))
        self.last_error_disk_full = False
        self._apply_commit(result)

    def _budget(self) -> int:
        full = self._space.full_budget
        return self.layout.table_budget if full is None else min(full, self.layout.table_budget)

    def _commit(self, conn: sqlite3.Connection, rows: Sequence[Row]) -> CommitResult:
        """On the writer thread: one transaction; on a full disk, room made by priority and one more try."""
        self._space.maybe_recover(time.monotonic(), db.used_bytes(conn))
        sync = None
        if self._by_class:
            sync = "FULL" if any(r[2] > _TELEMETRY for r in rows) else "NORMAL"
        try:
            result = db.commit(conn, rows, self._budget(), sync)
            if self._space.disk_limited:
                db.checkpoint(conn, "RESTART")  # the WAL is written from its start again: it needs no new room
            return result
        except StorageError as exc:
            if not exc.disk_full:
                raise
            self._space.last_full_error = str(exc)
            dropped = db.make_room(conn, self._space, sum(r[4] for r in rows))
            try:
                result = db.commit(conn, rows, self._budget(), sync)
            except StorageError:
                self._orphan_drops.extend(dropped)  # gone even though this commit failed: counted by the caller
                raise
            result.dropped[:0] = dropped
            return result

    def _apply_commit(self, result: CommitResult, reason: str = "over its cap") -> None:
        was_empty = self._depth == 0
        self._depth += result.rows
        self._bytes += result.bytes
        self._last_seq = max(self._last_seq, result.last_seq)
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
            self._log_drops("disk full" if self._space.disk_limited else reason, by_prio, freed)
        elif was_empty:
            self._oldest = None
        self._committed_event.set()
        self._committed_event = asyncio.Event()

    def _log_drops(self, reason: str, by_prio: dict[str, int], freed: int) -> None:
        """One line per `_DROP_LOG_S` at most, with what was dropped since the last line (bounded log volume)."""
        acc = self._unlogged_drops
        for name, n in by_prio.items():
            acc[name] = acc.get(name, 0) + n
        self._unlogged_freed += freed
        now = time.monotonic()
        if now - self._drop_logged_at < _DROP_LOG_S:
            return
        log.warning("outbox: %s (cap %d bytes), dropped %d event(s) (%s), %d bytes; total dropped %d",
                    reason, self.max_bytes, sum(acc.values()), ", ".join(f"{k} {v}" for k, v in sorted(acc.items())),
                    self._unlogged_freed, self.dropped)
        self._drop_logged_at, self._unlogged_drops, self._unlogged_freed = now, {}, 0

    async def wait_committed(self, seq: int) -> None:
        """Wait until rows up to `seq` are committed (wrap in asyncio.timeout to bound it)."""
        while self._last_seq < seq:
            await self._committed_event.wait()

    # -- reading and acknowledging -----------------------------------------------------------

    async def take(self, after_seq: int = 0, limit: int = 1000, max_bytes: int | None = None, *,
                   skip_business_upto: int = 0, before: int | None = None) -> list[OutboxRow]:
        """The oldest rows with seq > `after_seq` (and < `before`), at most `limit` rows and about `max_bytes` (never
        fewer than one); business rows with seq <= `skip_business_upto` are left out (another lane sends them)."""
        where = ""
        args: tuple[int, ...] = ()
        if before is not None:
            where, args = " AND seq < ?", (before,)
        if skip_business_upto > after_seq:
            where += " AND NOT (priority = ? AND seq <= ?)"
            args += (int(Priority.BUSINESS), skip_business_upto)
        return await self._r.run(db.take, after_seq, limit, max_bytes, where, args)

    async def take_business(self, after_seq: int, upto: int, limit: int = 1000) -> list[OutboxRow]:
        """Business rows (sales, alarms, consents) with after_seq < seq <= upto, oldest first, by the index."""
        return await self._r.run(db.take_business, after_seq, upto, limit)

    async def first_seq_since(self, since: float) -> int:
        """A seq from which every waiting row was created at or after `since` (wall time)."""
        return await self._r.run(db.first_seq_since, since, self._last_seq)

    async def ack(self, seqs: Iterable[int]) -> int:
        """Delete acknowledged rows (the broker has them); returns how many were still there."""
        seq_list = sorted(set(seqs))
        if not seq_list:
            return 0
        removed, _ = await self._on_writer_applied(db.ack_seqs, seq_list)
        return removed

    async def ack_range(self, first: int, last: int, *, skip_business_upto: int = 0) -> int:
        """Delete rows first..last (a batch as `take` returned it: no other rows lie in between)."""
        removed, _ = await self._on_writer_applied(db.ack_ranges, [(first, last, skip_business_upto)])
        return removed

    def ack_later(self, first: int, last: int, *, skip_business_upto: int = 0) -> None:
        """As ack_range, but deleted together with the next acks (a live trickle: one transaction, not many)."""
        self._acks.add(first, last, skip_business_upto)

    async def flush_acks(self) -> None:
        """Delete the acked rows waiting in ack_later now (before taking rows again from the oldest)."""
        await self._acks.flush()

    async def _delete_ranges(self, ranges: list[tuple[int, int, int]]) -> int:
        removed, _ = await self._on_writer_applied(db.ack_ranges, ranges)
        return removed

    def _apply_ack(self, removed: int, freed: int) -> None:
        self._depth -= removed
        self._bytes -= freed
        self.acked += removed
        self._oldest = None

    async def _on_writer_applied(self, fn: Callable[..., tuple[int, int]], *args: object) -> tuple[int, int]:
        """Run a delete on the writer thread; its counters move even if the caller is cancelled meanwhile."""
        fut = self._w.submit(self._with_room, fn, *args)

        def done(f: asyncio.Future[tuple[int, int]]) -> None:
            if not f.cancelled() and f.exception() is None:
                self._apply_ack(*f.result())

        fut.add_done_callback(done)
        return await asyncio.shield(fut)

    def _with_room(self, conn: sqlite3.Connection, fn: Callable[..., tuple[int, int]], *args: object) -> tuple[int, int]:
        """A delete needs WAL room too: on a full disk the spare file goes and the delete is tried again."""
        try:
            result = fn(conn, *args)
        except StorageError as exc:
            if not exc.disk_full:
                raise
            self._space.release_reserve()
            db.checkpoint(conn, "RESTART")
            self._space.full_budget = self._space.full_budget or db.used_bytes(conn)
            result = fn(conn, *args)
        if self._space.disk_limited:
            db.checkpoint(conn, "RESTART")
        return result

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

    async def vacuum(self, max_pages: int = 2048) -> int:
        """Hand freed pages back to the file system, a bounded amount at a time; the free pages left."""
        return await self._w.run(db.vacuum, max_pages)

    async def reclaim(self, steps: int = 16) -> None:
        """After a drain (a quarter of the file or more is free pages), give the file system its space back,
        `_RECLAIM_PAGES` at a time so that commits go on in between."""
        before = -1
        for step in range(steps):
            # Started only for a real amount (a drain), not the churn of a steady trickle; then to the end.
            left = await self._w.run(db.vacuum, _RECLAIM_PAGES, 0.25, _RECLAIM_PAGES if step == 0 else 0)
            if left in (0, before):  # all given back, or under a quarter of the file (left alone)
                return
            before = left

    async def check_writable(self) -> None:
        """A cheap write round trip, for health checks; raises StorageError."""
        await self._w.run(db.probe)

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

    @property
    def disk_full(self) -> bool:
        """The disk is full (new events replace the oldest telemetry), or the last commit failed on it."""
        return self._space.disk_full or self.last_error_disk_full

    @property
    def disk_limit(self) -> int | None:
        """The used bytes the disk allows the outbox when it cannot hold the configured cap, else None."""
        return self._space.full_budget

    def disk_free_bytes(self) -> int | None:
        try:
            return self._space.free_bytes()
        except OSError:
            return None

    async def oldest_age_s(self) -> float | None:
        if self._depth == 0:
            return None
        if self._oldest is None:
            self._oldest = await self._r.run(db.oldest_created)
        return None if self._oldest is None else max(0.0, self._clock() - self._oldest)

    def disk_bytes(self) -> int:
        """The outbox's files on disk: the database, its WAL and shared memory, and the spare file."""
        total = 0
        for suffix in ("", "-wal", "-shm", ".reserve"):
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
