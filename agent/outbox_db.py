"""The outbox's SQL, run on its worker threads, and the room it keeps on the disk.

`[outbox] max_bytes` bounds every file the outbox keeps on disk, split as:

    the database's used pages (rows, index, page overhead)   the rest
    the write-ahead log, held there by journal_size_limit,
      automatic checkpoints and commits bounded in bytes      2 x wal_limit (a sixteenth, at most 4 MiB)
    a spare file (`{db}.reserve`), released on a full disk    reserve (as much)
    the WAL's shared-memory index                             64 KiB

A full disk is handled like the cap: the spare file goes first (it gives the
drop policy's DELETE and the checkpoint their room), the drop policy frees
pages by priority, a checkpoint folds the WAL back, and the used pages are
capped at what the disk could hold until the file system has room again;
then the spare file is rebuilt and the cap lifted. The depth and the bytes
waiting are kept in `outbox_meta`, in the same transactions as the rows, so
opening never scans the table.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from agent.drop_policy import LOW_WATER, DropCandidate, plan_drops
from agent.events import Event, Priority
from agent.storage import storage_errors, transaction

if TYPE_CHECKING:
    from agent.outbox_space import Space

__all__ = ["SCHEMA", "CommitResult", "Layout", "OutboxRow", "OutboxStats", "layout_for", "row_of"]

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the uplink's order and cursor
    id       TEXT    NOT NULL,                   -- the event's ULID, for de-duplication downstream
    kind     TEXT    NOT NULL,
    priority INTEGER NOT NULL,
    created  REAL    NOT NULL,                   -- event wall time, seconds since the epoch
    size     INTEGER NOT NULL,                   -- len(body) in bytes
    body     BLOB    NOT NULL                    -- the event's contract JSON, UTF-8
);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (priority, seq);
CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_INSERT = "INSERT INTO outbox (id, kind, priority, created, size, body) VALUES (?, ?, ?, ?, ?, ?)"
_META = "UPDATE outbox_meta SET value = value + ? WHERE key = ?"
_BUMP = ("INSERT INTO outbox_meta (key, value) VALUES (?, ?) "
         "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value")
# Rows considered per priority per drop round; bounds the work of one commit.
_DROP_SCAN = 50_000
_BUSINESS = int(Priority.BUSINESS)
# A file without auto_vacuum is converted by one VACUUM, only when what it holds is this small (it is rewritten).
_VACUUM_WHOLE_MAX = 32 * 1024 * 1024

Row = tuple[str, str, int, float, int, bytes]


class OutboxRow(NamedTuple):
    """A row as the uplink takes it (a tuple: a batch of a thousand is built in C, not field by field)."""

    seq: int
    id: str
    kind: str
    created: float
    body: bytes
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Layout:
    """How `max_bytes` is shared between the table, the WAL and the spare file."""

    max_bytes: int
    wal_limit: int
    reserve: int
    table_budget: int
    commit_bytes: int  # event JSON per transaction at most: a transaction's WAL frames fit the WAL limit
    autocheckpoint_pages: int


def layout_for(max_bytes: int, page_size: int = 4096) -> Layout:
    share = min(4 * 1024 * 1024, max(64 * 1024, max_bytes // 16))
    # The WAL runs past its limit by a checkpoint's worth between resets; the shared-memory index takes 32 KiB.
    return Layout(max_bytes=max_bytes, wal_limit=share, reserve=share, table_budget=max_bytes - 3 * share - 64 * 1024,
                  commit_bytes=min(1024 * 1024, share // 4), autocheckpoint_pages=max(8, share // 2 // page_size))


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


def row_of(event: Event) -> Row:
    """The outbox row of an event: (id, kind, priority, created, size, body)."""
    body = event.to_json()
    return (event.id, event.kind, int(event.priority), event.ts, len(body), body)


def chunks(rows: Sequence[Row], max_bytes: int) -> Iterator[Sequence[Row]]:
    """Consecutive runs of `rows` of at most `max_bytes` of JSON each (never empty, at least one row)."""
    start = total = 0
    for i, row in enumerate(rows):
        if i > start and total + row[4] > max_bytes:
            yield rows[start:i]
            start, total = i, 0
        total += row[4]
    if start < len(rows):
        yield rows[start:]


@dataclass(slots=True)
class CommitResult:
    rows: int
    bytes: int
    last_seq: int
    dropped: list[DropCandidate] = field(default_factory=list)


# -- on the writer thread -----------------------------------------------------------------------


def setup(conn: sqlite3.Connection, synchronous: str, layout: Layout, space: Space) -> tuple[int, int, int]:
    """Pragmas and schema; (depth, bytes, last seq) from outbox_meta, never a scan of the table."""
    if conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] == 0:
        # Before the first table and before WAL mode (which writes the header): freed pages can go back.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA journal_size_limit={layout.wal_limit}")
    # New pages not yet checkpointed need room in the database file when they are: no more than the spare
    # file gives back on a full disk.
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    conn.execute(f"PRAGMA wal_autocheckpoint={max(8, min(layout.autocheckpoint_pages, space.reserve_size // 4 // page))}")
    conn.executescript(SCHEMA)
    meta = dict(conn.execute("SELECT key, value FROM outbox_meta").fetchall())
    if "depth" not in meta or "bytes" not in meta:  # a file from before outbox_meta: count once
        with transaction(conn):
            depth, size = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
            conn.executemany("INSERT OR REPLACE INTO outbox_meta (key, value) VALUES (?, ?)",
                             [("depth", depth), ("bytes", size)])
        meta = {"depth": depth, "bytes": size}
    last = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
    return int(meta["depth"]), int(meta["bytes"]), last[0] if last else 0


def used_bytes(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int(pages) * int(conn.execute("PRAGMA page_size").fetchone()[0])


def commit(conn: sqlite3.Connection, rows: Sequence[Row], budget: int, synchronous: str | None = None) -> CommitResult:
    """Insert `rows` in one transaction and keep the used pages within `budget` (the drop policy)."""
    size = sum(r[4] for r in rows)
    if synchronous is not None:
        conn.execute(f"PRAGMA synchronous={synchronous}")
    try:
        with storage_errors("outbox write failed"), transaction(conn):
            conn.executemany(_INSERT, rows)
            last_seq = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            conn.executemany(_META, [(len(rows), "depth"), (size, "bytes")])
            dropped = enforce_budget(conn, budget)
    finally:
        if synchronous == "FULL":  # by-class: acks and telemetry after it need no fsync of their own
            conn.execute("PRAGMA synchronous=NORMAL")
    return CommitResult(len(rows), size, last_seq, dropped)


def enforce_budget(conn: sqlite3.Connection, budget: int) -> list[DropCandidate]:
    """Over `budget` used bytes: drop by priority down to LOW_WATER of it; inside the caller's transaction."""
    used = used_bytes(conn)
    if used <= budget:
        return []
    total_bytes = int(conn.execute("SELECT value FROM outbox_meta WHERE key = 'bytes'").fetchone()[0])
    target = budget * LOW_WATER
    dropped: list[DropCandidate] = []
    for _ in range(4):  # rows free whole pages only: look again, a few times at most
        remaining = total_bytes - sum(c.size for c in dropped)
        if used <= target or remaining <= 0:
            break
        # The pages to free, as event bytes: rows take their share of the used pages.
        chosen = drop(conn, int((used - target) * remaining / used) + 1)
        if not chosen:
            break
        dropped.extend(chosen)
        used = used_bytes(conn)
    return dropped


def drop(conn: sqlite3.Connection, excess: int) -> list[DropCandidate]:
    """Delete at least `excess` bytes of events, lowest priority and oldest first; inside a transaction."""
    candidates: list[DropCandidate] = []
    covered = 0
    for priority in sorted(Priority):
        after = 0
        scan = 256  # doubles: a small excess reads a few rows, a large one reads big chunks
        while covered < excess:
            chunk = conn.execute(
                "SELECT seq, size FROM outbox WHERE priority = ? AND seq > ? ORDER BY seq LIMIT ?",
                (int(priority), after, scan),
            ).fetchall()
            scan = min(scan * 2, _DROP_SCAN)
            if not chunk:
                break
            for seq, size in chunk:
                candidates.append(DropCandidate(seq, int(priority), size))
                covered += size
                after = seq
        if covered >= excess:
            break
    chosen = plan_drops(candidates, excess)
    if chosen:
        conn.executemany("DELETE FROM outbox WHERE seq = ?", [(c.seq,) for c in chosen])
        conn.executemany(_META, [(-len(chosen), "depth"), (-sum(c.size for c in chosen), "bytes")])
        # Lifetime drop counts, in the same transaction: they survive restarts and kill -9 (scripts/chaos reads them).
        by_priority = Counter(Priority(c.priority).name.lower() for c in chosen)
        conn.executemany(_BUMP, [(f"dropped_{name}", n) for name, n in by_priority.items()])
    return chosen


def make_room(conn: sqlite3.Connection, space: Space, need: int) -> list[DropCandidate]:
    """The disk filled before the cap did: spare file out, drop by priority, checkpoint, cap lowered.

    RESTART, not TRUNCATE: the WAL keeps its file, so the next transactions write into room the
    disk already gave us; the deleted rows' pages are free pages in the database for the new rows.
    """
    space.release_reserve()
    checkpoint(conn, "RESTART")
    used = min(used_bytes(conn), space.layout.table_budget, space.full_budget or space.layout.table_budget)
    budget = max(0, used - 2 * need)
    with storage_errors("outbox drop failed"), transaction(conn):
        dropped = enforce_budget(conn, budget)
    checkpoint(conn, "RESTART")
    space.full_budget = budget
    return dropped


def checkpoint(conn: sqlite3.Connection, mode: str = "PASSIVE") -> None:
    try:
        conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
    except sqlite3.Error as exc:  # a reader holding a snapshot: the WAL stays, nothing is lost
        log.warning("outbox: checkpoint failed: %s", exc)


def ack_seqs(conn: sqlite3.Connection, seqs: list[int]) -> tuple[int, int]:
    removed = freed = 0
    with storage_errors("outbox ack failed"), transaction(conn):
        for start in range(0, len(seqs), 500):
            chunk = seqs[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for (size,) in conn.execute(f"DELETE FROM outbox WHERE seq IN ({marks}) RETURNING size", chunk):
                removed += 1
                freed += size
        conn.executemany(_META, [(-removed, "depth"), (-freed, "bytes")])
    return removed, freed


def ack_ranges(conn: sqlite3.Connection, ranges: list[tuple[int, int, int]]) -> tuple[int, int]:
    """Delete rows first..last for each (first, last, skip_business_upto), in one transaction; business rows with
    seq <= skip_business_upto are left (another lane sends them)."""
    count = freed = 0
    with storage_errors("outbox ack failed"), transaction(conn):
        for first, last, skip in ranges:
            where = "seq BETWEEN ? AND ?" + (" AND NOT (priority = ? AND seq <= ?)" if skip else "")
            args: tuple[int, ...] = (first, last, _BUSINESS, skip) if skip else (first, last)
            n, size = conn.execute(f"SELECT count(*), coalesce(sum(size), 0) FROM outbox WHERE {where}",
                                   args).fetchone()
            conn.execute(f"DELETE FROM outbox WHERE {where}", args)
            count, freed = count + n, freed + size
        conn.executemany(_META, [(-count, "depth"), (-freed, "bytes")])
    return int(count), int(freed)


def vacuum(conn: sqlite3.Connection, max_pages: int, min_free_share: float = 0.0, min_free_pages: int = 0) -> int:
    """Hand up to `max_pages` free pages back to the file system when at least `min_free_share` of the file and
    `min_free_pages` are free pages; the free pages left."""
    try:
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        if free < max(min_free_pages, min_free_share * pages):
            return free
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0:
            # A file made without auto_vacuum (WAL set first, as before): one VACUUM converts it, once what is
            # left in it is small (a drained outbox), and gives the space back at the same time.
            if (pages - free) * int(conn.execute("PRAGMA page_size").fetchone()[0]) > _VACUUM_WHOLE_MAX:
                return free
            log.info("outbox: converting the file to incremental vacuum (%d free pages of %d)", free, pages)
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("VACUUM")
            checkpoint(conn, "TRUNCATE")
            return int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        if free:
            # executescript steps it to the end: execute() would free one page (one step per page)
            conn.executescript(f"PRAGMA incremental_vacuum({int(max_pages)});")
            checkpoint(conn, "TRUNCATE")
        return int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    except sqlite3.Error as exc:
        log.warning("outbox: incremental vacuum failed: %s", exc)
        return 0


def probe(conn: sqlite3.Connection) -> None:
    with storage_errors("outbox not writable"), transaction(conn):
        pass


def close(conn: sqlite3.Connection) -> None:
    checkpoint(conn, "TRUNCATE")


# -- on the reader thread -----------------------------------------------------------------------


def take(conn: sqlite3.Connection, after_seq: int, limit: int, max_bytes: int | None,
         where: str = "", args: tuple[object, ...] = ()) -> list[OutboxRow]:
    with storage_errors("outbox read failed"):
        rows = conn.execute(
            f"SELECT seq, id, kind, created, body, priority, size FROM outbox WHERE seq > ? {where} "
            "ORDER BY seq LIMIT ?", (after_seq, *args, limit),
        ).fetchall()
    n = len(rows)
    if max_bytes is not None:
        total = 0
        for i, row in enumerate(rows):
            total += row[6]
            if i and total > max_bytes:
                n = i
                break
    make = OutboxRow._make
    return [make(r[:6]) for r in rows[:n]]


def take_business(conn: sqlite3.Connection, after_seq: int, upto: int, limit: int) -> list[OutboxRow]:
    """Business rows with after_seq < seq <= upto, through the (priority, seq) index."""
    with storage_errors("outbox read failed"):
        rows = conn.execute(
            "SELECT seq, id, kind, created, body, priority FROM outbox WHERE priority = ? AND seq > ? AND seq <= ? "
            "ORDER BY priority, seq LIMIT ?", (_BUSINESS, after_seq, upto, limit)).fetchall()
    return [OutboxRow(*r) for r in rows]


def oldest_created(conn: sqlite3.Connection) -> float | None:
    row = conn.execute("SELECT created FROM outbox ORDER BY seq LIMIT 1").fetchone()
    return None if row is None else float(row[0])


def first_seq_since(conn: sqlite3.Connection, since: float, hi: int) -> int:
    """A seq from which every row was created at or after `since` (rows are in time order): a binary search on
    the primary key, a few dozen lookups whatever the depth; `hi + 1` when every row is older."""
    first = conn.execute("SELECT seq FROM outbox ORDER BY seq LIMIT 1").fetchone()
    lo, top = (int(first[0]) if first else hi + 1), hi + 1
    while lo < top:
        mid = (lo + top) // 2
        row = conn.execute("SELECT seq, created FROM outbox WHERE seq >= ? ORDER BY seq LIMIT 1", (mid,)).fetchone()
        if row is None or row[1] >= since:
            top = mid
        else:
            lo = int(row[0]) + 1
    return lo
