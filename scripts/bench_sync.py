"""Draining a backlog to mosquitto: the daemon's uplink against a bare store-and-forward script doing the same
SELECT, batches, QoS 1 window and DELETE per PUBACK at the config's default batching; and the latency of a gate
alarm, hub to broker, while a 1,000,000-event backlog drains, live-first against oldest-first."""

from __future__ import annotations

import asyncio
import queue
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchkit import Broker, Figure, require

from agent.config import MqttConfig, parse_config
from agent.events import Event
from agent.hub import Hub
from agent.outbox import Outbox

BACKLOG = 1_000_000
DEFAULTS = MqttConfig()  # the batching a gateway runs with unless told otherwise


def backlog_events(n: int, age_s: float = 3600.0) -> list[Event]:
    old = time.time() - age_s
    return [Event("tag.seen", "checkout-1", {"epc": f"3034257BF400B7800000{i % 10_000:04X}", "gtin": "03012345000116",
                                            "serial": str(i), "reader": "checkout-1", "antenna": 1,
                                            "zone": "checkout-1", "rssi": -52}, ts=old + i * 1e-4) for i in range(n)]


async def _fill(path: Path, n: int) -> None:
    async with Outbox(path, synchronous="normal", max_bytes=4 << 30) as ob:
        for i in range(0, n, 20_000):
            await ob.write(backlog_events(min(20_000, n - i)))
        require(ob.depth == n, f"the backlog holds {ob.depth} of {n} events")


def fresh_copy(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / "o.db"
    for suffix in ("", "-wal"):
        if Path(f"{src}{suffix}").exists():
            shutil.copyfile(f"{src}{suffix}", f"{dst}{suffix}")
    return dst


def config(port: int, **mqtt: Any) -> Any:
    return parse_config({"store": {"id": "bench", "gateway": "gw-1"},
                         "mqtt": {"host": "127.0.0.1", "port": port, "compression": "none", **mqtt}})


async def _uplink_drain(db: Path, port: int, n: int, live_age_s: float, alarms_every_s: float | None
                        ) -> tuple[float, list[float]]:
    """Drain `db` with the daemon's uplink; with `alarms_every_s`, gate alarms published on the hub meanwhile.
    Returns (events/s, alarm latencies hub -> broker in s)."""
    from agent.sync.uplink import Uplink

    watcher = _AlarmWatcher(port) if alarms_every_s else None
    hub = Hub()
    async with Outbox(db, synchronous="by-class", max_bytes=4 << 30, commit_linger_s=0.02) as ob:
        require(ob.depth == n, f"the copy holds {ob.depth} of {n} events")
        sub = hub.subscribe("outbox", maxsize=100_000)
        writer = asyncio.create_task(ob.run_writer(sub))
        uplink = Uplink(config(port, live_age_s=live_age_s), ob, birth=lambda: {"online": True})
        t0 = time.perf_counter()
        task = asyncio.create_task(uplink.run())
        sent: dict[str, float] = {}
        while uplink.events_acked < n + len(sent) and time.perf_counter() - t0 < 600:
            if watcher is not None and uplink.events_acked > 0 and ob.depth > n * 0.1:
                e = Event("gate.alarm", "gate", {"gate": "exit-1", "epc": f"E{len(sent)}"})
                sent[e.id] = time.monotonic()
                hub.publish(e)
                await asyncio.sleep(alarms_every_s or 0)
            else:
                await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sub.close()
        await writer
        await ob.flush_acks()  # the small live batches' acks, coalesced (agent/outbox_batching.py)
        require(ob.depth == 0, f"{ob.depth} events left after the drain")
    latencies: list[float] = []
    if watcher is not None:
        got = watcher.close()
        require(set(got) >= set(sent), f"{len(set(sent) - set(got))} of {len(sent)} alarms never reached the broker")
        latencies = [got[i] - sent[i] for i in sent]
    return n / elapsed, latencies


class _AlarmWatcher:
    """A subscriber noting when each gate alarm reaches the broker (backlog batches are skimmed, not parsed)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.seen: dict[str, float] = {}
        ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-watch")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("o2o/v1/bench/gw-1/events", qos=0)
        self.client.on_subscribe = lambda c, u, m, rc, p: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        require(ready.wait(10), "the watcher could not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now = time.monotonic()
        payload = bytes(msg.payload)
        if b'"gate.alarm"' not in payload:
            return
        import orjson

        for e in orjson.loads(payload)["events"]:
            if e["kind"] == "gate.alarm":
                self.seen.setdefault(e["id"], now)

    def close(self) -> dict[str, float]:
        time.sleep(0.5)
        self.client.loop_stop()
        self.client.disconnect()
        return self.seen


def bare_store_and_forward(db: Path, port: int, n: int) -> float:
    """The honest reference: SELECT a batch at the default batching, publish QoS 1 within the same window,
    DELETE it when its PUBACK comes; a plain paho client and one SQLite connection, nothing else."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    # on_publish (paho's thread) only queues the mid: taking a lock there that the main thread holds while in
    # publish() deadlocks, since paho calls on_publish holding its own lock that publish() needs.
    acked: queue.Queue[int] = queue.Queue()
    window = threading.Semaphore(DEFAULTS.inflight)
    ranges: dict[int, tuple[int, int]] = {}  # the main thread's alone
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(DEFAULTS.inflight)

    def on_publish(c: Any, u: Any, mid: int, rc: Any, p: Any) -> None:
        acked.put(mid)
        window.release()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    t0 = time.perf_counter()
    cursor = done = 0
    while done < n:
        while not acked.empty():
            first, last = ranges.pop(acked.get())
            conn.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (first, last))
            done += last - first + 1
        rows = conn.execute("SELECT seq, body, size FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                            (cursor, DEFAULTS.batch_max_events)).fetchall()
        if not rows:
            if done >= n:
                break
            first, last = ranges.pop(acked.get(timeout=30))
            conn.execute("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (first, last))
            done += last - first + 1
            continue
        batch: list[tuple[int, bytes]] = []
        size = 0
        for seq, body, sz in rows:
            if batch and size + sz > DEFAULTS.batch_max_bytes:
                break
            batch.append((seq, body))
            size += sz
        cursor = batch[-1][0]
        payload = b'{"gateway":"gw-1","seq":' + str(cursor).encode() + b',"events":[' + b",".join(b for _, b in batch) + b"]}"
        window.acquire()
        info = client.publish("o2o/v1/bench/gw-1/events", payload, qos=1)
        ranges[info.mid] = (batch[0][0], cursor)  # before this thread looks at `acked` again
    elapsed = time.perf_counter() - t0
    client.loop_stop()
    client.disconnect()
    left = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    conn.close()
    require(left == 0, f"the bare script left {left} events")
    return n / elapsed


def bench_drain() -> list[Figure]:
    """Median of 3 of each, on copies of one 1,000,000-event backlog, side by side."""
    rates: dict[str, list[float]] = {"bare": [], "oldest": [], "live": []}
    latencies: dict[str, list[float]] = {"oldest": [], "live": []}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        src_dir = work / "src"
        src_dir.mkdir()
        src = src_dir / "o.db"
        asyncio.run(_fill(src, BACKLOG))
        broker = Broker(work)
        try:
            for _ in range(3):
                for kind in ("bare", "oldest", "live"):
                    run_dir = work / kind
                    shutil.rmtree(run_dir, ignore_errors=True)
                    run_dir.mkdir()
                    db = fresh_copy(src, run_dir)
                    if kind == "bare":
                        rates[kind].append(bare_store_and_forward(db, broker.port, BACKLOG))
                        continue
                    rate, lat = asyncio.run(_uplink_drain(db, broker.port, BACKLOG, 5.0 if kind == "live" else 0.0,
                                                          0.02))
                    rates[kind].append(rate)
                    latencies[kind].extend(lat)
        finally:
            broker.stop()
    med = {k: statistics.median(v) for k, v in rates.items()}
    p99 = {k: sorted(v)[int(len(v) * 0.99)] for k, v in latencies.items()}
    p50 = {k: statistics.median(v) for k, v in latencies.items()}
    return [
        Figure("uplink: 1M-event backlog drained (live-first, default batching)", med["live"], "events/s", med["bare"],
               "bare store-and-forward script, same batching and window", ">= 80% of oldest-first",
               ok=med["live"] >= 0.8 * med["oldest"], runs=rates["live"]),
        Figure("uplink: same backlog drained oldest-first (live_age_s = 0, before)", med["oldest"], "events/s",
               med["bare"], "bare store-and-forward script", runs=rates["oldest"]),
        Figure("uplink: live-first drain rate / oldest-first drain rate", 100 * med["live"] / med["oldest"], "%",
               target=">= 80 %", ok=med["live"] >= 0.8 * med["oldest"]),
        Figure("gate.alarm hub -> broker while 1M drain, live-first, p99", p99["live"] * 1000, "ms",
               p50["live"] * 1000, "its p50", "< 500 ms", ok=p99["live"] < 0.5),
        Figure("gate.alarm hub -> broker while 1M drain, oldest-first, p99", p99["oldest"] * 1000, "ms",
               p50["oldest"] * 1000, "its p50"),
    ]
