"""What a power cut leaves: 200 copies of the outbox's files taken at arbitrary moments while the writer runs
(group commits of every class, checkpoints every few commits), each with a torn end of WAL. Every copy must open,
pass `PRAGMA integrity_check`, agree with its own counters, and hold every event whose commit had returned.

The model: a copy starts under a read transaction on another connection, as the disk's state at one instant
would be seen. That transaction stops the WAL from being reset while the database file and then the WAL are
copied, so a checkpoint that writes the database meanwhile finds its frames in the copied WAL, as it would after
a real cut. What the writer appends during the copy is the "in flight" part: the copy of the WAL is cut at a
random byte after the instant (a torn frame), and SQLite must drop it by its checksums. The shared-memory
index is not copied (it does not survive a reboot). A copy reads the page cache, so it cannot tell a commit
that was fsynced from one that was not: what `synchronous` buys on a real cut is measured and explained in
docs/durability.md, not here.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
import struct
import time
from pathlib import Path

from agent.events import Event
from agent.outbox import Outbox

SNAPSHOTS = 200
KINDS = ["tag.seen", "tag.gone", "beacon.enter", "reader.online", "checkout.paid", "gate.alarm"]


def frames_end(wal: bytes) -> int:
    """Where this generation of the WAL ends: after the last whole frame carrying the header's salts (frames of an
    older generation, left behind a reset by journal_size_limit, carry other salts)."""
    if len(wal) < 32:
        return 0
    page = struct.unpack(">I", wal[8:12])[0]
    salts = wal[16:24]
    end = 32
    while end + 24 + page <= len(wal) and wal[end + 8 : end + 16] == salts:
        end += 24 + page
    return end


def snapshot(db: Path, dest: Path, rng: random.Random) -> bool:
    """Copy the outbox as a power cut would leave it; True when the copy's WAL ends in a torn append."""
    hold = sqlite3.connect(db, isolation_level=None)
    wal, copy = Path(f"{db}-wal"), Path(f"{dest}-wal")
    torn = False
    try:
        hold.execute("BEGIN")
        hold.execute("SELECT value FROM outbox_meta").fetchall()  # the instant: a read mark in the WAL
        at_instant = frames_end(wal.read_bytes()) if wal.exists() else 0
        shutil.copyfile(db, dest)
        time.sleep(rng.uniform(0, 0.005))  # the writer goes on appending (and checkpointing) meanwhile
        if wal.exists():
            data = wal.read_bytes()
            later = frames_end(data)
            if later > at_instant:  # the cut came somewhere in what was being appended: a torn frame
                data, torn = data[: rng.randint(at_instant, later - 1)], True
            copy.write_bytes(data)
    finally:
        hold.execute("ROLLBACK")
        hold.close()
    return torn


def check(copy: Path, durable: set[str]) -> None:
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = {i for (i,) in conn.execute("SELECT id FROM outbox")}
        missing = durable - ids
        assert not missing, f"{len(missing)} committed event(s) lost, e.g. {sorted(missing)[:3]}"
        depth, size = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
        meta = dict(conn.execute("SELECT key, value FROM outbox_meta"))
        assert (meta["depth"], meta["bytes"]) == (depth, size)
    finally:
        conn.close()


def remove(copy: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)


async def test_two_hundred_power_cuts_while_the_writer_runs(tmp_path: Path) -> None:
    rng = random.Random(1717)
    db = tmp_path / "o.db"
    committed: list[str] = []
    stop = asyncio.Event()
    async with Outbox(db, synchronous="by-class") as ob:
        # Checkpoints every few commits: the database file itself is written while copies are taken.
        await ob._w.run(lambda conn: conn.execute("PRAGMA wal_autocheckpoint=16").fetchall())

        async def writer() -> None:
            n = 0
            while not stop.is_set():
                batch = [Event(rng.choice(KINDS), "r", {"n": n + i, "pad": "x" * rng.randint(0, 200)})
                         for i in range(rng.choice((1, 1, 5, 20, 200)))]
                await ob.write(batch)
                committed.extend(e.id for e in batch)  # the writer was told: durable
                n += len(batch)
                await asyncio.sleep(rng.choice((0.001, 0.003, 0.01)))  # a busy store, not a benchmark

        task = asyncio.create_task(writer())
        torn = 0
        try:
            for i in range(SNAPSHOTS):
                await asyncio.sleep(rng.uniform(0, 0.01))
                durable = set(committed)  # taken before the instant: all of it must be in the copy
                dest = tmp_path / f"cut-{i}.db"
                torn += await asyncio.to_thread(snapshot, db, dest, rng)
                await asyncio.to_thread(check, dest, durable)
                await asyncio.to_thread(remove, dest)
        finally:
            stop.set()
            await task
    assert len(committed) > 5_000  # the writer was busy all along
    assert torn >= 20, torn  # and many cuts fell in the middle of an append
