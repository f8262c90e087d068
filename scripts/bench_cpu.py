"""What a store's steady load costs the daemon: CPU and disk writes per event at 100, 1,000 and 5,000 reads/s
arriving as a UART delivers them (a few reads every ~2 ms), next to the reads-only cost (the same reads,
presence only) measured in the same run; the per-read cost against the tags in view; the disk given back
after a drain; opening a deep outbox; the uplink's bytes per event."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path
from typing import Any

from benchkit import Broker, Figure, cpu_seconds, free_port, median_of, require, written_bytes

from agent.events import Event
from agent.outbox import Outbox
from drivers.rfid.base import TagReport
from drivers.rfid.mercury import stream_frames
from drivers.rfid.simulator import demo_epc

EXE = str(Path(sys.executable).with_name("o2o-edge"))
READERS = 3
CHUNK_S = 0.002  # a UART hands the host a few bytes every couple of milliseconds
WINDOW_S = 8.0


class Feeder(threading.Thread):
    """Writes mercury tag frames into a pty at `rate` reads/s, a chunk every CHUNK_S."""

    def __init__(self, master: int, rate: float, tags: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.master, self.rate = master, rate
        self.frames = [stream_frames([TagReport(demo_epc(seed % 6, 50_000 + seed * 100_000 + i), 1 + i % 2,
                                                -50 - i % 20)]) for i in range(tags)]
        self.sent = 0
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        i = 0
        while not self.stop.is_set():
            due = int((time.perf_counter() - t0) * self.rate)
            if due > self.sent:
                chunk = b"".join(self.frames[(i + k) % len(self.frames)] for k in range(due - self.sent))
                i += due - self.sent
                view = memoryview(chunk)
                while view:
                    view = view[os.write(self.master, view):]
                self.sent = due
            time.sleep(CHUNK_S)


def _status(port: int) -> dict[str, Any]:
    import json
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/status", headers={"Authorization": "Bearer b"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return dict(json.loads(r.read()))


def daemon_cost(rate: int, raw_reads: bool, broker_port: int) -> tuple[float, float, float, float]:
    """(CPU us per read, bytes written per event stored, events per read, an event's JSON bytes) at `rate` reads/s."""
    import tomli_w

    with tempfile.TemporaryDirectory() as d:  # on a real disk (not tmpfs): write_bytes counts what wears it
        work = Path(d)
        ptys = []
        readers = []
        for r in range(READERS):
            master, slave = os.openpty()
            tty.setraw(master)
            tty.setraw(slave)
            link = work / f"r{r}"
            link.symlink_to(os.ttyname(slave))
            ptys.append((master, slave))
            readers.append({"id": f"r{r}", "port": str(link), "protocol": "mercury", "baudrate": 921600,
                            "zones": {"1": "floor", "2": "back"}})
        port = free_port()
        cfg = {"store": {"id": "bench", "gateway": "gw-1"}, "storage": {"path": str(work / "o.db")},
               "http": {"listen": f"127.0.0.1:{port}", "api_token": "b"},
               "mqtt": {"host": "127.0.0.1", "port": broker_port},
               "rfid": {"gone_after_s": 3.0, "keep_raw_reads": raw_reads, "readers": readers}}
        (work / "c.toml").write_text(tomli_w.dumps(cfg))
        proc = subprocess.Popen([EXE, "run", "--config", str(work / "c.toml")], stderr=subprocess.DEVNULL)
        feeders = [Feeder(m, rate / READERS, 100, r) for r, (m, _) in enumerate(ptys)]
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    st = _status(port)
                    if st["mqtt"]["connected"]:
                        break
                except OSError:
                    pass
                require(time.monotonic() < deadline and proc.poll() is None, "the daemon did not start")
                time.sleep(0.1)
            for f in feeders:
                f.start()
            time.sleep(2.0)  # warm up: tags in view, batches flowing
            st0, cpu0, w0 = _status(port), cpu_seconds(proc.pid), written_bytes(proc.pid)
            time.sleep(WINDOW_S)
            st1, cpu1, w1 = _status(port), cpu_seconds(proc.pid), written_bytes(proc.pid)
            for f in feeders:
                f.stop.set()
                f.join()
            sent = sum(f.sent for f in feeders)
            deadline = time.monotonic() + 30
            while sum(r["reads"] for r in _status(port)["readers"]) < sent and time.monotonic() < deadline:
                time.sleep(0.1)
            final = _status(port)
            got = sum(r["reads"] for r in final["readers"])
            overruns = sum(r["overruns"] for r in final["readers"])
            require(got == sent and overruns == 0 and not any(r["frame_errors"] for r in final["readers"]),
                    f"{rate}/s: {got:,} of {sent:,} reads processed ({overruns:,} bytes dropped)")
            reads = sum(r["reads"] for r in st1["readers"]) - sum(r["reads"] for r in st0["readers"])
            events = st1["outbox"]["committed"] - st0["outbox"]["committed"]
            require(reads > 0.9 * rate * WINDOW_S, f"{rate}/s: only {reads / WINDOW_S:,.0f} reads/s processed")
            sample = Event("tag.read", "r0", {"epc": "3034257BF400B7800000C350", "reader": "r0", "antenna": 1,
                                               "zone": "floor", "rssi": -55})
            return (cpu1 - cpu0) / reads * 1e6, (w1 - w0) / max(events, 1), events / reads, len(sample.to_json())
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
            for m, s in ptys:
                os.close(m)
                os.close(s)


def bench_cpu_per_event() -> list[Figure]:
    out = []
    with tempfile.TemporaryDirectory() as d:
        broker = Broker(Path(d))
        try:
            for rate in (100, 1000, 5000):
                (full, full_runs) = median_of(lambda: daemon_cost(rate, True, broker.port))  # noqa: B023
                (bare, _) = median_of(lambda: daemon_cost(rate, False, broker.port))  # noqa: B023
                cpu, wrote, per_read, size = full
                out += [
                    Figure(f"CPU per event at {rate:,} reads/s (every read stored and sent)", cpu, "us",
                           bare[0], "reads-only (presence), same reads", "<= 2x reads-only", ok=cpu <= 2 * bare[0],
                           runs=[r[0] for r in full_runs]),
                    Figure(f"disk written per event at {rate:,} reads/s", wrote, "bytes", size,
                           "the event's own JSON", "<= 10x its size", ok=wrote <= 10 * size),
                ]
                require(per_read > 0.95, f"{rate}/s: {per_read:.2f} events per read stored")
        finally:
            broker.stop()
    return out


def bench_presence() -> list[Figure]:
    from drivers.rfid.presence import ZonePresence

    def per_read(tags: int) -> float:
        p = ZonePresence(3.0)
        epcs = [f"{i:024X}" for i in range(tags)]
        now = 0.0
        for e in epcs:
            p.observe(e, "z", 1, -50, now)
        t0 = time.perf_counter()
        for i in range(100_000):
            now += 0.00002
            p.observe(epcs[i % tags], "z", 1, -50, now)
            p.expire(now)
            p.next_deadline()
        return (time.perf_counter() - t0) / 100_000 * 1e6

    small, _ = median_of(lambda: per_read(100))
    large, runs = median_of(lambda: per_read(10_000))
    return [Figure("presence: per-read work with 10,000 tags in view", large, "us", small,
                   "the same with 100 tags in view", "independent of the tags in view (< 2x)", ok=large < 2 * small,
                   runs=runs)]


async def _space_back(n: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as d:
        async with Outbox(Path(d) / "o.db", synchronous="normal", max_bytes=4 << 30) as ob:
            for _ in range(0, n, 20_000):
                await ob.write([Event("tag.seen", "r", {"epc": f"{j:024X}", "rssi": -50, "zone": "floor"})
                                for j in range(20_000)])
            full = ob.disk_bytes()
            while rows := await ob.take(0, 10_000):
                await ob.ack_range(rows[0].seq, rows[-1].seq)
            require(ob.depth == 0, "the drain left events")
            t0 = time.perf_counter()
            while ob.disk_bytes() > full * 0.1 and time.perf_counter() - t0 < 120:
                await ob.reclaim()
            return full / 1e6, ob.disk_bytes() / 1e6, time.perf_counter() - t0


async def _open_time(n: int) -> tuple[float, float]:
    import sqlite3

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "o.db"
        async with Outbox(path, synchronous="normal", max_bytes=4 << 30) as ob:
            for _ in range(0, n, 20_000):
                await ob.write([Event("tag.seen", "r", {"n": j}) for j in range(20_000)])
        t0 = time.perf_counter()
        async with Outbox(path, synchronous="normal", max_bytes=4 << 30) as ob:
            opened = time.perf_counter() - t0
            require(ob.depth == n, f"opened with depth {ob.depth} of {n}")
        conn = sqlite3.connect(path)
        t0 = time.perf_counter()
        conn.execute("SELECT count(*), sum(size), min(created) FROM outbox").fetchone()
        scan = time.perf_counter() - t0
        conn.close()
        return opened, scan


def bench_disk() -> list[Figure]:
    (full, left, took), _ = median_of(lambda: asyncio.run(_space_back(1_000_000)))
    (opened, scan), runs = median_of(lambda: asyncio.run(_open_time(1_000_000)))
    return [
        Figure("disk after a 1M-event drain, once space is given back", left, "MB", full, "the file full",
               "back soon after a drain", ok=left < 0.1 * full),
        Figure("time to give the space of a 1M-event drain back", took, "s", target="minutes, not hours", ok=took < 300),
        Figure("outbox open with 1M events waiting", opened * 1000, "ms", scan * 1000,
               "one scan of the table (what open did before)", "no full-table scan", ok=opened < scan,
               runs=[r[0] * 1000 for r in runs]),
    ]


def bench_wire() -> list[Figure]:
    from bench_sync import backlog_events

    from agent.outbox import row_of
    from agent.outbox_db import OutboxRow
    from agent.sync.uplink import encode_batch

    events = backlog_events(1000)
    rows = [OutboxRow(i, e.id, e.kind, e.ts, row_of(e)[5]) for i, e in enumerate(events, 1)]
    plain = len(encode_batch("gw-1", rows, "none")) / len(rows)
    packed = len(encode_batch("gw-1", rows, "zstd")) / len(rows)
    minutes = 1_000_000 * packed * 8 / 1e6 / 60
    return [Figure("uplink bytes per event ([mqtt] compression = \"zstd\")", packed, "bytes", plain,
                   "plain JSON (the default)", "under half of plain", ok=packed < plain / 2),
            Figure("1M events over a 1 Mbit/s uplink (zstd)", minutes, "min", 1_000_000 * plain * 8 / 1e6 / 60,
                   "plain JSON")]
