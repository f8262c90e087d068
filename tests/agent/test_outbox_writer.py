"""The outbox writer at a store's rate: a trickle of events shares commits (linger), and the fsync is spent
per event class ([storage] synchronous = "by-class")."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent import outbox_db
from agent.events import Event
from agent.hub import Hub
from agent.outbox import Outbox
from tests.conftest import make_config, wait_for


async def trickle(ob: Outbox, n: int, every_s: float) -> None:
    hub = Hub()
    sub = hub.subscribe("outbox")
    writer = asyncio.create_task(ob.run_writer(sub))
    for i in range(n):
        hub.publish(Event("tag.seen", "r", {"n": i}))
        await asyncio.sleep(every_s)
    sub.close()
    await writer


async def test_a_trickle_shares_commits(tmp_path: Path) -> None:
    """Before: every serial chunk (~2 ms apart) was its own commit: ~1.3 ms of CPU and ~30 KB written each."""
    async with Outbox(tmp_path / "a.db", synchronous="normal", commit_linger_s=0.0) as eager:
        await trickle(eager, 100, 0.004)
    async with Outbox(tmp_path / "b.db", synchronous="normal", commit_linger_s=0.05) as lingering:
        await trickle(lingering, 100, 0.004)
    assert eager.committed == lingering.committed == 100
    assert eager.commits >= 60  # about one per event
    assert lingering.commits <= 15  # about one per 50 ms


@pytest.mark.parametrize(("kinds", "sync"), [(["tag.seen", "beacon.enter"], "NORMAL"),
                                             (["tag.seen", "reader.offline"], "FULL"),
                                             (["tag.seen", "gate.alarm"], "FULL")])
async def test_synchronous_by_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kinds: list[str],
                                    sync: str) -> None:
    seen: list[Any] = []
    real = outbox_db.commit

    def spy(conn, rows, budget, synchronous=None):  # type: ignore[no-untyped-def]
        seen.append(synchronous)
        return real(conn, rows, budget, synchronous)

    monkeypatch.setattr(outbox_db, "commit", spy)
    async with Outbox(tmp_path / "o.db", synchronous="by-class") as ob:
        await ob.write([Event(k, "r", {}) for k in kinds])
    assert seen == [sync]


@pytest.mark.parametrize("legacy", [False, True], ids=["new-file", "file-made-without-auto-vacuum"])
async def test_the_space_of_a_drained_backlog_goes_back(tmp_path: Path, legacy: bool) -> None:
    """Before: auto_vacuum was set after WAL mode had written the header, so it never took and incremental_vacuum
    freed nothing (and, run with execute(), one page per call): a 1.77 GB file stayed after its drain."""
    import sqlite3

    path = tmp_path / "o.db"
    if legacy:  # what the outbox made before: WAL first, auto_vacuum never taking
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE placeholder (x)")
        conn.close()
    async with Outbox(path, synchronous="normal", max_bytes=1 << 30) as ob:
        for i in range(5):
            await ob.write([Event("tag.seen", "r", {"n": j, "pad": "x" * 200}) for j in range(i * 20_000, (i + 1) * 20_000)])
        full = ob.disk_bytes()
        while rows := await ob.take(0, 10_000):
            await ob.ack_range(rows[0].seq, rows[-1].seq)
        await ob.reclaim()
        assert ob.disk_bytes() < full / 5, (full, ob.disk_bytes())
        assert await ob._w.run(lambda c: c.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2


async def test_a_writer_that_dies_says_why(tmp_path: Path, start_agent, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """It once stopped with no log line at all; /healthz said only "outbox writer stopped"."""
    ra = await start_agent(make_config(tmp_path, mqtt={"enabled": False}))

    async def broken(rows: Any) -> None:
        raise RuntimeError("boom")

    ra.agent.outbox._write_rows = broken
    ra.agent.hub.publish(Event("tag.seen", "r", {}))
    await wait_for(lambda: "outbox: the writer stopped (RuntimeError: boom)" in caplog.text, 5)
    async with aiohttp.ClientSession() as http, http.get(f"{ra.base_url}/healthz") as r:
        assert r.status == 503 and (await r.json())["reason"] == "outbox writer stopped (RuntimeError: boom)"


async def test_events_committed_since_the_last_look_have_an_age(tmp_path: Path, start_agent) -> None:  # type: ignore[no-untyped-def]
    """The staff page showed "5 events waiting, oldest —" for up to a second after the outbox was empty."""
    ra = await start_agent(make_config(tmp_path, mqtt={"enabled": False}))
    comp = ra.agent["outbox"]
    await wait_for(lambda: comp._stats is not None and comp._stats.depth == 0, 5)
    ra.agent.hub.publish(Event("tag.seen", "r", {}))
    await wait_for(lambda: ra.agent.outbox.depth == 1, 5)
    status = comp.status()
    assert status.depth == 1 and status.oldest_age_s is not None and status.oldest_age_s < 2
