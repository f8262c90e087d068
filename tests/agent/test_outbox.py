"""Outbox: group commit, take/ack, statistics, the size cap and its drop policy, durability."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from agent.drop_policy import DropCandidate, plan_drops
from agent.errors import StorageError
from agent.events import Event, Priority
from agent.hub import Hub
from agent.outbox import Outbox


def ev(kind: str = "tag.seen", n: int = 0, pad: int = 0, ts: float | None = None) -> Event:
    data = {"n": n, "pad": "x" * pad}
    return Event(kind, "test", data) if ts is None else Event(kind, "test", data, ts=ts)


def rows_in(path: Path) -> list[tuple[int, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT seq, kind, body FROM outbox ORDER BY seq").fetchall()
    finally:
        conn.close()


# -- the drop policy as a table (pure) -------------------------------------------------------

T, OP, B = Priority.TELEMETRY, Priority.OPERATIONAL, Priority.BUSINESS


@pytest.mark.parametrize(
    ("rows", "excess", "dropped"),
    [
        pytest.param([(1, T, 10), (2, B, 10)], 0, [], id="nothing-to-free"),
        pytest.param([(1, B, 10), (2, T, 10), (3, T, 10)], 15, [2, 3], id="telemetry-before-business"),
        pytest.param([(5, T, 10), (2, T, 10), (9, T, 10)], 10, [2], id="oldest-first-within-priority"),
        pytest.param([(1, B, 10), (2, OP, 10), (3, T, 5)], 12, [3, 2], id="telemetry-then-operational"),
        pytest.param([(1, B, 10), (2, B, 10)], 15, [1, 2], id="business-only-when-nothing-else-left"),
        pytest.param([(1, T, 10)], 100, [1], id="cannot-free-enough-drops-all-it-can"),
        pytest.param([], 10, [], id="empty"),
    ],
)
def test_plan_drops(rows: list[tuple[int, int, int]], excess: int, dropped: list[int]) -> None:
    candidates = [DropCandidate(seq, int(p), size) for seq, p, size in rows]
    assert [c.seq for c in plan_drops(candidates, excess)] == dropped


# -- the outbox on a real SQLite file --------------------------------------------------------

async def test_write_take_ack(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db", synchronous="normal") as ob:
        events = [ev(n=i) for i in range(5)]
        last = await ob.write(events)
        assert ob.depth == 5 and ob.last_seq == last
        batch = await ob.take(limit=3)
        assert [json.loads(r.body)["data"]["n"] for r in batch] == [0, 1, 2]
        assert [r.id for r in batch] == [e.id for e in events[:3]]
        rest = await ob.take(after_seq=batch[-1].seq)
        assert [json.loads(r.body)["data"]["n"] for r in rest] == [3, 4]
        assert await ob.ack(r.seq for r in batch) == 3
        assert await ob.ack([batch[0].seq]) == 0  # acking twice is harmless
        assert ob.depth == 2 and ob.acked == 3
        assert [json.loads(r.body)["data"]["n"] for r in await ob.take()] == [3, 4]


async def test_take_respects_max_bytes_but_always_returns_one(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db", synchronous="normal") as ob:
        await ob.write([ev(n=i, pad=1000) for i in range(10)])
        assert len(await ob.take(limit=100, max_bytes=3500)) == 3
        assert len(await ob.take(limit=100, max_bytes=10)) == 1


async def test_stats_and_oldest_age(tmp_path: Path) -> None:
    now = [1000.0]
    async with Outbox(tmp_path / "o.db", synchronous="normal", clock=lambda: now[0]) as ob:
        assert (await ob.stats()).oldest_age_s is None
        await ob.write([ev(n=1, ts=990.0), ev(n=2, ts=995.0)])
        st = await ob.stats()
        assert st.depth == 2 and st.oldest_age_s == 10.0
        assert st.bytes == sum(len(r[2]) for r in rows_in(tmp_path / "o.db"))
        assert st.disk_bytes > 0
        first = (await ob.take(limit=1))[0]
        await ob.ack([first.seq])
        now[0] = 1001.0
        assert await ob.oldest_age_s() == 6.0


async def test_writer_group_commits_from_the_hub(tmp_path: Path) -> None:
    hub = Hub()
    async with Outbox(tmp_path / "o.db", synchronous="normal", commit_max=1000) as ob:
        sub = hub.subscribe("outbox", maxsize=100_000)
        for i in range(5000):
            hub.publish(ev(n=i))
        sub.close()
        await ob.run_writer(sub)
        assert ob.committed == 5000
        assert ob.commits <= 6  # thousands per transaction, not one per event
    rows = rows_in(tmp_path / "o.db")
    assert [json.loads(b)["data"]["n"] for _, _, b in rows] == list(range(5000))


async def test_seq_never_goes_back_after_everything_was_acked(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path, synchronous="normal") as ob:
        last = await ob.write([ev(n=1), ev(n=2)])
        await ob.ack([r.seq for r in await ob.take()])
    async with Outbox(path, synchronous="normal") as ob:
        assert ob.depth == 0
        assert await ob.write([ev(n=3)]) > last


async def test_reopen_keeps_rows_and_counters(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path, synchronous="normal") as ob:
        await ob.write([ev(n=i, ts=100.0 + i) for i in range(3)])
        size = ob.bytes
    async with Outbox(path, synchronous="normal") as ob:
        assert ob.depth == 3 and ob.bytes == size
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()


async def test_cap_drops_telemetry_first_and_counts_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cap = 1024 * 1024
    async with Outbox(tmp_path / "o.db", max_bytes=cap, synchronous="normal") as ob:
        sales = [ev("checkout.paid", n=i, pad=900) for i in range(100)]
        await ob.write(sales)
        with caplog.at_level(logging.WARNING):
            for chunk in range(12):
                await ob.write([ev("tag.seen", n=chunk * 100 + i, pad=900) for i in range(100)])
        st = await ob.stats()
        assert st.bytes <= cap
        assert st.dropped > 0
        assert st.dropped_by_priority["telemetry"] == st.dropped
        assert st.dropped_by_priority["business"] == 0
        assert ob.depth == st.depth == len(rows_in(tmp_path / "o.db"))
        kinds = [k for _, k, _ in rows_in(tmp_path / "o.db")]
        assert kinds.count("checkout.paid") == 100  # every sale kept
        # the oldest telemetry went first: what is left is the newest
        kept = [json.loads(b)["data"]["n"] for _, k, b in rows_in(tmp_path / "o.db") if k == "tag.seen"]
        assert kept == list(range(1200 - len(kept), 1200))
        assert "over its cap" in caplog.text and "telemetry" in caplog.text


async def test_cap_drops_business_only_when_nothing_else_is_left(tmp_path: Path) -> None:
    cap = 1024 * 1024
    async with Outbox(tmp_path / "o.db", max_bytes=cap, synchronous="normal") as ob:
        for chunk in range(12):
            await ob.write([ev("gate.alarm", n=chunk * 100 + i, pad=900) for i in range(100)])
        st = await ob.stats()
        assert st.bytes <= cap
        assert st.dropped_by_priority["business"] == st.dropped > 0


async def test_failed_commit_is_retried_not_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    hub = Hub()
    async with Outbox(tmp_path / "o.db", synchronous="normal") as ob:
        real = ob._commit
        failures = [2]

        def flaky(conn, events):  # type: ignore[no-untyped-def]
            if failures[0]:
                failures[0] -= 1
                raise StorageError("outbox write failed: disk I/O error")
            return real(conn, events)

        monkeypatch.setattr(ob, "_commit", flaky)
        sub = hub.subscribe("outbox")
        for i in range(10):
            hub.publish(ev(n=i))
        sub.close()
        with caplog.at_level(logging.ERROR):
            await ob.run_writer(sub)
        assert ob.write_errors == 2 and ob.committed == 10
        assert "retrying" in caplog.text
    assert len(rows_in(tmp_path / "o.db")) == 10


async def test_unopenable_database_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    ob = Outbox(tmp_path / "file" / "o.db")
    with pytest.raises(StorageError, match="cannot open outbox"):
        await ob.open()
    await ob.close()


async def test_corrupt_file_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not sqlite" * 100)
    ob = Outbox(path)
    with pytest.raises(StorageError):
        await ob.open()
    await ob.close()


async def test_health_probe(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db") as ob:
        await ob.check_writable()
        await ob.vacuum()
