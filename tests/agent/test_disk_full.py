"""A full disk, for real: the outbox on an 8 MiB tmpfs, filled until SQLite says SQLITE_FULL.

Before: the drop policy's DELETE needed WAL room too, so nothing was dropped and every commit
and ack failed until a restart; /healthz said 200. Now: a spare file is released, the drop
policy frees pages by priority, the outbox keeps recording within what the disk holds, acks go
on, health is red and /healthz 503 with the reason; once space is back, so is the cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from agent.events import Event
from agent.hub import Hub
from agent.outbox import Outbox
from tests.conftest import make_config, wait_for

MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs (root only: mount needs CAP_SYS_ADMIN)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a size-limited tmpfs needs root (mount -t tmpfs -o size=8m): run the suite as root to test a full disk")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def ballast(path: Path, size: int) -> None:
    with path.open("wb") as f, contextlib.suppress(OSError):
        f.write(b"\0" * size)


def tags(n: int, start: int = 0) -> list[Event]:
    return [Event("tag.seen", "t", {"n": start + i, "pad": "x" * 200}) for i in range(n)]


async def test_full_disk_drops_by_priority_keeps_recording_and_recovers(small_disk: Path) -> None:
    hub = Hub()
    ballast(small_disk / "ballast", 3 * MiB)
    async with Outbox(small_disk / "o.db", max_bytes=64 * MiB, synchronous="normal") as ob:
        assert (small_disk / "o.db.reserve").exists()
        sub = hub.subscribe("outbox", maxsize=1_000_000)
        writer = asyncio.create_task(ob.run_writer(sub))
        sales = [Event("checkout.paid", "t", {"n": i}) for i in range(50)]
        hub.publish_many(sales)
        sent = 0
        while not ob.dropped and sent < 200_000:
            hub.publish_many(tags(2000, sent))
            sent += 2000
            await asyncio.sleep(0.02)
        await wait_for(lambda: ob.dropped > 0, 10)
        assert ob.disk_full
        assert ob.dropped_by_priority["business"] == 0 and ob.dropped_by_priority["telemetry"] > 0
        # it keeps recording: new events land (the oldest telemetry makes way), no commit stays failed
        before = ob.committed
        for i in range(10):
            hub.publish_many(tags(2000, sent + i * 2000))
            await asyncio.sleep(0.02)
        await wait_for(lambda: ob.committed >= before + 20_000, 20)
        assert not ob.last_error_disk_full
        # acks go on on a full disk (they too need WAL room)
        rows = await ob.take(50, 1000)  # after the sales
        assert await ob.ack_range(rows[0].seq, rows[-1].seq) > 0  # (the writer may have dropped some meanwhile)
        kept = await ob.take(0, 100_000, skip_business_upto=0)
        assert sum(1 for r in kept if r.kind == "checkout.paid") == 50  # every sale kept

        # space comes back: the spare file is rebuilt and the configured cap is in force again
        (small_disk / "ballast").unlink()
        hub.publish_many(tags(100, 10**6))
        await asyncio.sleep(2.5)
        hub.publish_many(tags(100, 10**6 + 100))
        await wait_for(lambda: not ob.disk_full, 10)
        assert (small_disk / "o.db.reserve").exists()
        assert ob.disk_limit is not None  # an 8 MiB disk cannot hold a 64 MiB cap: the outbox holds what fits
        # a 10,000-event burst and its acks do not fill the disk again: commits are bounded, the WAL capped
        errors = ob.write_errors
        hub.publish_many(tags(10_000, 2 * 10**6))
        await wait_for(lambda: len(sub) == 0 and ob.committed >= before + 30_200, 20)
        while rows := await ob.take(0, 5000):
            await ob.ack_range(rows[0].seq, rows[-1].seq)
        assert ob.write_errors == errors and not ob.disk_full
        assert (small_disk / "o.db-wal").stat().st_size <= 2 * ob.layout.wal_limit
        sub.close()
        await writer


async def test_full_disk_is_red_and_healthz_503(small_disk: Path, tmp_path: Path, start_agent) -> None:  # type: ignore[no-untyped-def]
    cfg = make_config(tmp_path, storage={"path": str(small_disk / "o.db"), "synchronous": "normal"},
                      mqtt={"enabled": False}, outbox={"max_bytes": 64 * MiB})
    ra = await start_agent(cfg)
    ballast(small_disk / "ballast", 4 * MiB)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{ra.base_url}/healthz") as r:
            assert r.status == 200
        ob = ra.agent.outbox
        n = 0
        while not ob.disk_full and n < 300_000:
            ra.agent.hub.publish_many(tags(2000, n))
            n += 2000
            await asyncio.sleep(0.05)
        assert ob.disk_full

        async def healthz() -> tuple[int, dict[str, object]]:
            async with http.get(f"{ra.base_url}/healthz") as r:
                return r.status, await r.json()

        status, body = await healthz()
        assert status == 503 and "disk full" in str(body["reason"])
        st = await ra.agent.status()
        assert st["health"]["level"] == "red" and "disk is full" in st["health"]["summary"]
        assert st["outbox"]["disk_full"] is True

        (small_disk / "ballast").unlink()
        for i in range(40):  # space is looked at as events keep coming
            ra.agent.hub.publish_many(tags(10, 10**6 + i * 10))
            await asyncio.sleep(0.1)
            if not ob.disk_full:
                break
        status, body = await healthz()
        assert status == 200, body


@pytest.mark.parametrize("cap_mib", [1, 8])
async def test_max_bytes_bounds_the_files_on_disk_wal_and_spare_file_included(tmp_path: Path, cap_mib: int) -> None:
    """Before: `max_bytes` counted the event JSON only; a 1 MiB cap gave a 6.47 MB file (WAL, pages, index)."""
    cap = cap_mib * MiB
    async with Outbox(tmp_path / "o.db", max_bytes=cap, synchronous="normal") as ob:
        peak = 0
        for i in range(6 * cap_mib):
            await ob.write(tags(4000, i * 4000))  # ~1 MB of JSON each time, well past the cap
            peak = max(peak, ob.disk_bytes())
        assert ob.dropped > 0
        assert peak <= cap, f"{peak:,} bytes on disk for a cap of {cap:,}"
