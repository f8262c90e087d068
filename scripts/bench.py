"""o2o-edge benchmarks: every figure next to this machine's own limit, measured in the same run.

    scripts/bench                     all of them, and the report (var/bench/report.md unless --report PATH)
    scripts/bench outbox drain        only those whose name contains one of the words

Each figure is the median of 3 runs. A figure whose input was not all processed (a read dropped, an event
missing) fails loudly: the report says FAILED with the reason and the exit status is 1. The report also lists
the machine (CPU, cores, memory, disk write speed and fsync rate, measured now), the last scripts/chaos table
and the soak's plots when they exist (var/chaos/report.md, var/soak/*.png).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import (
    ROOT,
    BenchError,
    Broker,
    Figure,
    cpu_limit,
    disk_limits,
    median_of,
    report,
    require,
)

from agent.events import Event
from agent.hub import Hub
from agent.outbox import SCHEMA, Outbox, row_of
from drivers.rfid import emulator_class, session_class
from drivers.rfid.base import NEED_DATA, ReaderEmulator, TagReport
from drivers.rfid.simulator import converse, demo_epc

# -- codecs ------------------------------------------------------------------------------------

def tag_frames(protocol: str, count: int) -> bytes:
    """`count` tag reports as the device sends them, produced by the protocol's own emulator."""
    emulator: ReaderEmulator = emulator_class(protocol)()
    session = session_class(protocol)(mode="active")
    session.start()
    converse(session, emulator)  # the start sequence brings the emulator into its streaming state
    reports = [TagReport(demo_epc(i % 6, i), 1 + i % 2, -40 - i % 30) for i in range(100)]
    blob = bytearray()
    for _ in range(count // len(reports)):
        emulator.tick(reports)
        blob += emulator.data_to_send()
    return bytes(blob)


def bench_codec(protocol: str) -> Figure:
    frames = 50_000
    blob = tag_frames(protocol, frames)
    chunks = [blob[i : i + 4096] for i in range(0, len(blob), 4096)]

    def run() -> float:
        session = session_class(protocol)()
        t0 = time.perf_counter()
        n = 0
        for chunk in chunks:
            session.receive_data(chunk)
            while (ev := session.next_event()) is not NEED_DATA:
                n += isinstance(ev, TagReport)
        require(n == frames, f"{protocol}: decoded {n} of {frames} frames")
        return n / (time.perf_counter() - t0)

    rate, runs = median_of(run)
    return Figure(f"codec {protocol}: tag frames decoded", rate, "frames/s", runs=runs)


# -- outbox ------------------------------------------------------------------------------------

def sample_events(n: int) -> list[Event]:
    epcs = [demo_epc(i % 6, i).hex().upper() for i in range(1000)]
    return [Event("tag.seen", "checkout-1", {"epc": epcs[i % 1000], "gtin": "03012345000116", "serial": str(i),
                                             "reader": "checkout-1", "antenna": 1, "zone": "checkout-1", "rssi": -52})
            for i in range(n)]


def raw_sqlite_rate(path: Path, rows: list[tuple], batch: int) -> float:  # type: ignore[type-arg]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(SCHEMA)
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO outbox (id, kind, priority, created, size, body) VALUES (?, ?, ?, ?, ?, ?)",
                         rows[i : i + batch])
        conn.execute("COMMIT")
    rate = len(rows) / (time.perf_counter() - t0)
    conn.close()
    return rate


async def outbox_rate(path: Path, events: list[Event], commit_max: int) -> float:
    hub = Hub()
    async with Outbox(path, commit_max=commit_max, synchronous="full") as ob:
        sub = hub.subscribe("outbox", maxsize=len(events))
        writer = asyncio.create_task(ob.run_writer(sub))
        t0 = time.perf_counter()
        for e in events:
            hub.publish(e)
        sub.close()
        await writer
        rate = len(events) / (time.perf_counter() - t0)
        require(ob.committed == len(events), f"committed {ob.committed} of {len(events)}")
    return rate


def bench_outbox() -> list[Figure]:
    n = 300_000
    events = sample_events(n)
    rows = [row_of(e) for e in events]
    raws, agents = [], []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as d:
            raws.append(raw_sqlite_rate(Path(d) / "raw.db", rows, 10_000))
        with tempfile.TemporaryDirectory() as d:
            agents.append(asyncio.run(outbox_rate(Path(d) / "o.db", events, 10_000)))
    raw, agent = sorted(raws)[1], sorted(agents)[1]
    return [Figure("outbox: events absorbed from the hub", agent, "events/s", raw,
                   "raw sqlite3 executemany, same rows, batches of 10k", ">= 50% and >= 50,000/s",
                   ok=agent >= 0.5 * raw and agent >= 50_000, runs=agents)]


# -- pty reader into the outbox ----------------------------------------------------------------

async def pty_into_outbox(protocol: str, frames: int) -> tuple[float, float]:
    """Events/s from a reader on a pty into the outbox (raw reads kept), and the pty's bare byte rate."""
    from agent.config import ReaderConfig
    from agent.readers import ReaderRunner

    blob = tag_frames(protocol, frames)
    with tempfile.TemporaryDirectory() as d:
        master, slave = os.openpty()
        import tty

        tty.setraw(slave)
        tty.setraw(master)
        link = Path(d) / "tty"
        link.symlink_to(os.ttyname(slave))
        hub = Hub()
        async with Outbox(Path(d) / "o.db", synchronous="full") as ob:
            sub = hub.subscribe("outbox", maxsize=frames * 2)
            writer = asyncio.create_task(ob.run_writer(sub))
            rc = ReaderConfig(id="bench", port=str(link), protocol=protocol, baudrate=921600, mode="active")
            runner = ReaderRunner(rc, hub, gone_after_s=3.0, keep_raw_reads=True)
            task = asyncio.create_task(runner.run())
            while runner.transport is None or runner.transport.opens == 0:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            start_reads = runner.reads
            t0 = time.perf_counter()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, _write_all, master, blob)
            while runner.reads - start_reads < frames and time.perf_counter() - t0 < 60:
                await asyncio.sleep(0.005)
            while ob.committed < runner.reads - start_reads and time.perf_counter() - t0 < 60:
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - t0
            got, dropped = runner.reads - start_reads, runner.transport.overruns if runner.transport else 0
            require(got == frames and dropped == 0 and ob.committed >= got,
                    f"{protocol}: {got:,} of {frames:,} reads decoded, {dropped:,} bytes dropped, "
                    f"{ob.committed:,} committed")
            rate = got / elapsed
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            sub.close()
            await writer
        os.close(master)
        os.close(slave)
    # bare pty: the same bytes through a pty to a pyserial reader, no decoding
    bare = await asyncio.get_running_loop().run_in_executor(None, _bare_pty_rate, blob)
    return rate, bare * frames / len(blob)


STEADY_READS_PER_S = 10_000


def _write_paced(fd: int, blob: bytes, frames: int) -> None:
    per_frame = len(blob) / frames
    t0 = time.perf_counter()
    sent = 0
    while sent < len(blob):
        due = min(len(blob), int((time.perf_counter() - t0) * STEADY_READS_PER_S * per_frame))
        if due > sent:
            _write_all(fd, blob[sent:due])
            sent = due
        time.sleep(0.002)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view[:4096])
        view = view[n:]


def _bare_pty_rate(blob: bytes) -> float:
    import threading

    import serial

    master, slave = os.openpty()
    import tty

    tty.setraw(slave)
    tty.setraw(master)
    port = serial.Serial(os.ttyname(slave), 921600, timeout=0.05)
    got = 0
    t0 = time.perf_counter()
    writer = threading.Thread(target=_write_all, args=(master, blob))
    writer.start()
    while got < len(blob) and time.perf_counter() - t0 < 60:
        got += len(port.read(max(1, port.in_waiting)))
    rate = got / (time.perf_counter() - t0)
    require(got == len(blob), f"bare pty: {got:,} of {len(blob):,} bytes read")
    writer.join()
    port.close()
    os.close(master)
    os.close(slave)
    return rate


def bench_pty() -> list[Figure]:
    out = []
    for protocol in ("mercury", "uhfreader18"):
        try:
            session_class(protocol)
        except (ImportError, AttributeError):
            continue
        (rate, bare), runs = median_of(lambda: asyncio.run(pty_into_outbox(protocol, 50_000)))  # noqa: B023
        out.append(Figure(f"pty {protocol} reader -> outbox (raw reads)", rate, "events/s", bare,
                          "bare pty+pyserial, same bytes", runs=[r[0] for r in runs]))
    return out


# -- resident memory ---------------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bench_memory() -> list[Figure]:
    (rss, bare), runs = median_of(_memory_once)
    return [Figure("daemon RSS, 3 simulated readers", rss, "MiB", bare, "bare python interpreter", "< 60 MiB",
                   ok=rss < 60, runs=[r[0] for r in runs])]


def _memory_once() -> tuple[float, float]:
    exe = str(Path(sys.executable).with_name("o2o-edge"))
    with tempfile.TemporaryDirectory() as d:
        cfg = (ROOT / "config" / "demo.toml").read_text()
        cfg = cfg.replace('path = "../var/demo/o2o-edge.db"', f'path = "{d}/o2o.db"')
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg = cfg.replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"')
        path = Path(d) / "demo.toml"
        path.write_text(cfg)
        proc = subprocess.Popen([exe, "run", "--config", str(path), "--demo"], stderr=subprocess.DEVNULL)
        try:
            time.sleep(8)
            rss = rss_kib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
        time.sleep(1)
        bare_rss = rss_kib(bare.pid)
        bare.wait()
    return rss / 1024, bare_rss / 1024


BENCHES: dict[str, Callable[[], list[Figure]]] = {
    "codec": lambda: [bench_codec(p) for p in ("mercury", "uhfreader18", "em4100", "r2000")
                      if _available(p)],
    "outbox": bench_outbox,
    "pty": bench_pty,
    "memory": bench_memory,
}


def _available(protocol: str) -> bool:
    try:
        session_class(protocol)
        return True
    except (ImportError, AttributeError):
        return False


# -- MQTT drain and live-first: scripts/bench_sync.py; CPU, disk and wire: scripts/bench_cpu.py ----------------

async def _steady(port: int, frames: int) -> tuple[float, int, int]:
    """A mercury reader on a pty streaming raw reads as fast as the pty goes, while the uplink forwards."""
    import tty

    from agent.config import ReaderConfig, parse_config
    from agent.readers import ReaderRunner
    from agent.sync.uplink import Uplink

    blob = tag_frames("mercury", frames)
    with tempfile.TemporaryDirectory() as d:
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        link = Path(d) / "tty"
        link.symlink_to(os.ttyname(slave))
        config = parse_config({"store": {"id": "bench", "gateway": "gw-1"},
                               "mqtt": {"host": "127.0.0.1", "port": port}})
        hub = Hub()
        async with Outbox(Path(d) / "o.db", synchronous="full") as ob:
            sub = hub.subscribe("outbox", maxsize=frames * 2)
            writer = asyncio.create_task(ob.run_writer(sub))
            uplink = Uplink(config, ob, birth=lambda: {"online": True})
            up = asyncio.create_task(uplink.run())
            rc = ReaderConfig(id="bench", port=str(link), protocol="mercury", baudrate=921600)
            runner = ReaderRunner(rc, hub, gone_after_s=3.0, keep_raw_reads=True)
            task = asyncio.create_task(runner.run())
            while not uplink.connected or runner.transport is None or runner.transport.opens == 0:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            base = uplink.events_acked
            t0 = time.perf_counter()
            # Paced at STEADY_READS_PER_S, a chunk every 2 ms as a UART delivers: a rate the daemon must keep up
            # with whole (the pty itself goes ~50x faster, and a blast only measures the transport's overflow).
            feeder = asyncio.get_running_loop().run_in_executor(None, _write_paced, master, blob, frames)
            max_depth = 0
            while uplink.events_acked - base < runner.reads or not feeder.done():
                max_depth = max(max_depth, ob.depth)
                await asyncio.sleep(0.01)
                if time.perf_counter() - t0 > 120:
                    break
            elapsed = time.perf_counter() - t0
            forwarded = uplink.events_acked - base
            require(runner.reads == frames and forwarded >= frames,
                    f"{runner.reads:,} of {frames:,} reads decoded, {forwarded:,} forwarded")
            for t in (task, up):
                t.cancel()
            await asyncio.gather(task, up, return_exceptions=True)
            sub.close()
            await writer
        os.close(master)
        os.close(slave)
    return forwarded / elapsed, max_depth, forwarded


def bench_steady() -> list[Figure]:
    with tempfile.TemporaryDirectory() as d:
        broker = Broker(Path(d))
        try:
            (rate, depth, forwarded), runs = median_of(lambda: asyncio.run(_steady(broker.port, 50_000)))
        finally:
            broker.stop()
    return [Figure(f"steady state: pty reads forwarded to the broker (fed at {STEADY_READS_PER_S:,}/s)", rate,
                   "events/s", STEADY_READS_PER_S, "the feed rate", "all of it, keeping up", ok=rate > 0.95 * STEADY_READS_PER_S,
                   runs=[r[0] for r in runs]),
            Figure(f"steady state: max outbox depth ({forwarded:,} events)", depth, "events")]


# -- self-checkout and gate --------------------------------------------------------------------

@contextlib.asynccontextmanager
async def _rules_only(config: Any) -> AsyncIterator[Any]:
    """The daemon with only the catalog and the checkout/gate rules running (no readers, outbox or sync)."""
    from agent.app import Agent
    from agent.components.catalog import Catalog
    from agent.rules.engine import RulesEngine
    from agent.rules.exit_gate import ExitGate
    from agent.rules.selfcheckout import SelfCheckout

    agent = Agent(config, registry=[Catalog, ExitGate, SelfCheckout, RulesEngine])
    await agent.start()
    try:
        yield agent
    finally:
        await agent.shutdown()


async def _gate_latency(load_reads_per_s: int, trials: int) -> list[float]:
    import threading
    import tty

    from agent.config import ReaderConfig, parse_config
    from agent.readers import ReaderRunner
    from drivers.rfid.mercury import stream_frames

    with tempfile.TemporaryDirectory() as d:
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        link = Path(d) / "tty"
        link.symlink_to(os.ttyname(slave))
        config = parse_config({"store": {"id": "bench", "gateway": "gw-1"},
                               "storage": {"path": f"{d}/o2o.db"}, "http": {"listen": "127.0.0.1:0"},
                               "mqtt": {"enabled": False},
                               "rfid": {"readers": [{"id": "r", "port": str(link), "protocol": "mercury",
                                                     "zones": {1: "floor", 2: "exit"}}]},
                               "checkout": {"gates": [{"id": "exit-1", "zones": ["exit"]}]}})
        async with _rules_only(config) as agent:
            hub = agent.hub
            alarms = hub.subscribe("bench-alarms", kinds={"gate.alarm"})
            runner = ReaderRunner(ReaderConfig(id="r", port=str(link), protocol="mercury", zones={1: "floor", 2: "exit"}),
                                  hub, gone_after_s=60.0)
            task = asyncio.create_task(runner.run())
            while runner.transport is None or runner.transport.opens == 0:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)
            lock = threading.Lock()
            stop = threading.Event()

            def load() -> None:
                floor = stream_frames([TagReport(demo_epc(i % 6, 90_000 + i % 500), 1, -50) for i in range(50)])
                while not stop.is_set():
                    with lock:
                        _write_all(master, floor)
                    time.sleep(50 / load_reads_per_s)

            loader = threading.Thread(target=load, daemon=True)
            if load_reads_per_s:
                loader.start()
                await asyncio.sleep(0.5)
            latencies = []
            for i in range(trials):
                frame = stream_frames([TagReport(demo_epc(i % 6, 10_000 + i), 2, -40)])
                with lock:
                    _write_all(master, frame)
                    t0 = time.perf_counter()
                await alarms.get()
                latencies.append(time.perf_counter() - t0)
                await asyncio.sleep(0.005)
            stop.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        os.close(master)
        os.close(slave)
    return latencies


async def _basket_200() -> float:
    from agent.catalog import CatalogDoc
    from agent.config import parse_config

    with tempfile.TemporaryDirectory() as d:
        config = parse_config({"store": {"id": "bench", "gateway": "gw-1"},
                               "storage": {"path": f"{d}/o2o.db"}, "http": {"listen": "127.0.0.1:0"},
                               "mqtt": {"enabled": False},
                               "rfid": {"readers": [{"id": "r", "port": "/dev/null", "protocol": "mercury",
                                                     "zones": {1: "sco"}}]},
                               "checkout": {"stations": [{"id": "sco-1", "zones": ["sco"], "token": "t",
                                                          "settle_s": 0}]}})
        async with _rules_only(config) as agent:
            from drivers.rfid.epc import decode_sgtin

            hub, data, engine = agent.hub, agent["catalog"].data, agent["checkout"]

            epcs = [demo_epc(i % 6, 20_000 + i) for i in range(200)]
            gtins = sorted({decode_sgtin(e).gtin for e in epcs})  # type: ignore[union-attr]
            await data.replace_catalog(CatalogDoc.model_validate(
                {"version": 1, "currency": "EUR", "products": [{"gtin": g, "name": g, "price": "9.99"} for g in gtins]}))
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            for e in epcs:
                sg = decode_sgtin(e)
                hub.publish(Event("tag.seen", "r", {"epc": e.hex().upper(), "gtin": sg.gtin if sg else None,
                                                    "zone": "sco", "rssi": -50, "reader": "r", "antenna": 1}))
            while len(engine.basket("sco-1").epcs) < 200:
                await asyncio.sleep(0)
            basket = engine.basket("sco-1")
            elapsed = time.perf_counter() - t0
            assert basket.total == Decimal("9.99") * 200
    return elapsed


def bench_gate() -> list[Figure]:
    out = []
    for load in (0, 5000):
        def percentiles(load: int = load) -> tuple[float, float]:
            lat = sorted(asyncio.run(_gate_latency(load, 300)))
            return lat[int(len(lat) * 0.99)], lat[len(lat) // 2]

        (p99, _), runs = median_of(percentiles)
        p50 = sorted(r[1] for r in runs)[1]
        label = "idle" if not load else f"{load:,} reads/s"
        out.append(Figure(f"gate: pty last byte -> gate.alarm p50 ({label})", p50 * 1e6, "us"))
        out.append(Figure(f"gate: pty last byte -> gate.alarm p99 ({label})", p99 * 1e6, "us", target="< 10,000 us",
                          ok=p99 < 0.01))
    basket, _ = median_of(lambda: asyncio.run(_basket_200()))
    out.append(Figure("basket of 200 items priced (tags in -> basket)", basket * 1e6, "us"))
    return out


# -- web -----------------------------------------------------------------------------------------

_HELLO = """
import sys
from aiohttp import web
async def hello(request):
    return web.json_response({"hello": "world"})
app = web.Application()
app.router.add_get("/", hello)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _hammer(url: str, headers: dict[str, str], seconds: float = 4.0, concurrency: int = 16) -> float:
    import aiohttp

    count = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession() as http:

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                async with http.get(url, headers=headers) as r:
                    await r.read()
                    if r.status == 200:
                        count += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - t0)


async def _wait_http(url: str) -> None:
    import aiohttp

    for _ in range(200):
        try:
            async with aiohttp.ClientSession() as http, http.get(url) as r:
                if r.status < 500:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


async def _page_weight(base: str) -> int:
    import aiohttp

    from agent.web.auth import hash_password  # noqa: F401  (the demo users are in the config)

    total = 0
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{base}/login", json={"username": "admin", "password": "demo-admin"}) as r:
            assert r.status == 200, r.status
        for path in ("/", "/static/app.css", "/static/app.js", "/api/me", "/api/status", "/api/history", "/api/alarms"):
            async with http.get(f"{base}{path}") as r:
                body = await r.read()
                total += len(body) + sum(len(k) + len(v) + 4 for k, v in r.raw_headers)
    return total


def bench_web() -> list[Figure]:
    exe = str(Path(sys.executable).with_name("o2o-edge"))
    with tempfile.TemporaryDirectory() as d:
        broker = Broker(Path(d))
        port = _free_port()
        cfg = (ROOT / "config" / "demo.toml").read_text()
        cfg = cfg.replace('path = "../var/demo/o2o-edge.db"', f'path = "{d}/o2o.db"')
        cfg = cfg.replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"')
        cfg = cfg.replace("port = 18830", f"port = {broker.port}")
        cfg = cfg.replace("gone_after_s = 3.0", "gone_after_s = 3.0\nkeep_raw_reads = true")
        (Path(d) / "demo.toml").write_text(cfg)
        agent = subprocess.Popen([exe, "run", "--config", f"{d}/demo.toml", "--demo"], stderr=subprocess.DEVNULL)
        hello_port = _free_port()
        hello = subprocess.Popen([sys.executable, "-c", _HELLO, str(hello_port)], stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            asyncio.run(_wait_http(f"{base}/healthz"))
            asyncio.run(_wait_http(f"http://127.0.0.1:{hello_port}/"))
            time.sleep(2)  # readers feeding, sync running
            agent_rate, _ = median_of(lambda: asyncio.run(_hammer(f"{base}/api/status",
                                                                  {"Authorization": "Bearer demo-api-token"})))
            bare_rate, _ = median_of(lambda: asyncio.run(_hammer(f"http://127.0.0.1:{hello_port}/", {})))
            weight = asyncio.run(_page_weight(base))
        finally:
            for p in (agent, hello):
                p.send_signal(signal.SIGTERM)
                p.wait(10)
            broker.stop()
    return [Figure("web: GET /api/status, loaded agent (3 readers, sync)", agent_rate, "req/s", bare_rate,
                   "bare aiohttp hello-world"),
            Figure("web: staff page first load (HTML, CSS, JS, API calls)", weight / 1024, "KiB", target="< 100 KB")]


# -- BLE -----------------------------------------------------------------------------------------

def bench_ble() -> list[Figure]:
    from agent.beacons import BeaconTracker
    from agent.config import BleConfig
    from drivers.ble.beacons import encode_eddystone_uid, encode_ibeacon
    from drivers.ble.hci import encode_adv_report, parse_event

    packets = []
    for i in range(20_000):
        if i % 3 == 0:
            ad = encode_eddystone_uid("edd1ebeac04e5defa017", f"{i % 50:012x}", -20)
        else:
            ad = encode_ibeacon("f7826da6-4fa2-4e98-8024-bc5b71e0893e", 1, i % 200, -59)
        packets.append(encode_adv_report(f"C0:00:00:00:{i % 200:02X}:01", ad, -60 - i % 30))
    config = BleConfig.model_validate({"beacons": [
        {"id": f"b{m}", "ibeacon": {"uuid": "f7826da6-4fa2-4e98-8024-bc5b71e0893e", "major": 1, "minor": m}}
        for m in range(100)]})

    def run() -> float:
        tracker = BeaconTracker(config)
        t0 = time.perf_counter()
        for n, p in enumerate(packets):
            for r in parse_event(p):
                tracker.on_report(r, 1000.0 + n * 0.001)
        return len(packets) / (time.perf_counter() - t0)

    rate, _ = median_of(run)
    exe = str(Path(sys.executable).with_name("o2o-edge"))
    rss: dict[str, float] = {}
    for label, ble in (("without BLE", ""), ("with BLE (hci0, scapy loaded)", '[ble]\nsource = "hci0"\n')):
        with tempfile.TemporaryDirectory() as d:
            cfg = Path(d) / "c.toml"
            cfg.write_text(f'[store]\nid = "s"\ngateway = "g"\n[storage]\npath = "{d}/o.db"\n'
                           f'[http]\nlisten = "127.0.0.1:{_free_port()}"\n[mqtt]\nenabled = false\n{ble}')
            proc = subprocess.Popen([exe, "run", "--config", str(cfg)], stderr=subprocess.DEVNULL)
            try:
                time.sleep(5)
                rss[label] = rss_kib(proc.pid) / 1024
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
    return [Figure("ble: advertising reports decoded and tracked", rate, "reports/s",
                   target="a busy store hears a few thousand/s"),
            Figure("ble: daemon RSS with BLE (scapy's Bluetooth layer)", rss["with BLE (hci0, scapy loaded)"], "MiB",
                   rss["without BLE"], "the same daemon without [ble]")]


# -- stock ---------------------------------------------------------------------------------------

def _stock_store(epcs: int, gtins: int, zones: int) -> tuple[Any, list[Event]]:
    """A StockCounts holding `epcs` items of `gtins` GTINs spread over `zones` zones (a stockroom holds more),
    and the tag.seen events that built it."""
    import random

    from agent.o2o.stock_counts import StockCounts
    from drivers.rfid.epc import encode_sgtin96, gtin_check_digit

    rng = random.Random(7)
    names = ["stockroom", "floor-1", "floor-2", "floor-3", "window", "fitting", "checkout", "exit"][:zones]
    roles = {z: "stockroom" if z == "stockroom" else "fitting" if z == "fitting" else "floor" for z in names}
    weights = [4] + [1] * (zones - 1)
    bodies = [f"03012345{i:05d}" for i in range(gtins)]  # one company prefix, item references in a row
    gtin_list = [b + str(gtin_check_digit(b)) for b in bodies]
    counts = StockCounts(roles, gone_after_s=3.0, missing_rounds=3, max_epcs=epcs * 2, is_sold=lambda e: False)
    events = []
    for n in range(epcs):
        gtin = gtin_list[n % gtins]
        epc = encode_sgtin96(gtin, 10_000 + n, company_prefix_digits=7).hex().upper()
        zone = rng.choices(names, weights)[0]
        events.append(Event("tag.seen", "r", {"epc": epc, "gtin": gtin, "zone": zone, "reader": "r"}))
        counts.seen(epc, gtin, zone, "r")
    return counts, events


def _hub_rate(events: list[Event]) -> float:
    """The hub's own rate: publish to one subscriber that takes batches, as the rules engine does."""
    hub = Hub()
    sub = hub.subscribe("bench", maxsize=len(events) + 1)
    t0 = time.perf_counter()
    for e in events:
        hub.publish(e)
    while sub.get_nowait_batch(1000):
        pass
    return len(events) / (time.perf_counter() - t0)


def bench_stock() -> list[Figure]:
    import orjson
    import zstandard

    from agent.events import format_ts
    from agent.o2o.stock_counts import StockCounts

    counts, events = _stock_store(50_000, 5_000, 8)
    require(len(counts) == 50_000 and len(counts.counts) == 5_000, "the stock store is not the one asked for")

    def build() -> bytes:
        return orjson.dumps({"as_of": format_ts(time.time()), "gtins": counts.snapshot()})

    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        payload = build()
        times.append(time.perf_counter() - t0)
    compressed = zstandard.ZstdCompressor(level=3).compress(payload)

    # Update cost: the rule's work per tag event (an item seen in another zone, then gone from the old one),
    # next to what the hub itself moves in the same run.
    moves: list[tuple[str, str | None, str, str]] = []
    zone_names = sorted(counts.roles)
    for i, e in enumerate(events[:20_000]):
        d = e.data
        new = zone_names[(zone_names.index(d["zone"]) + 1 + i % 3) % len(zone_names)]
        moves.append((d["epc"], d["gtin"], new, d["zone"]))

    def update_rate() -> float:
        c: StockCounts = _stock_store(50_000, 5_000, 8)[0]
        t0 = time.perf_counter()
        for epc, gtin, new, old in moves:
            c.seen(epc, gtin, new, "r")
            c.gone(epc, old, "r", "timeout")
        c.take_changes()
        return 2 * len(moves) / (time.perf_counter() - t0)

    rate, _ = median_of(update_rate)
    hub, _ = median_of(lambda: _hub_rate(events))
    return [Figure("stock: snapshot build, 50k EPCs / 5k GTINs / 8 zones", sorted(times)[len(times) // 2] * 1e6, "us",
                   target="< 100,000 us"),
            Figure("stock: snapshot size, plain JSON", len(payload) / 1024, "KiB"),
            Figure("stock: snapshot size, zstd level 3", len(compressed) / 1024, "KiB", target="< 64 KB"),
            Figure("stock: tag events counted (seen/gone, 50k items)", rate, "events/s", hub,
                   "hub publish to one subscriber")]


def bench_offers() -> list[Figure]:
    from bench_offers import offers_figures  # scripts/ is on sys.path when this runs as a script

    return [Figure(name, value, unit, ref, ref_name, target) for name, value, unit, ref, ref_name, target
            in offers_figures()]


def bench_drain() -> list[Figure]:
    from bench_sync import bench_drain as drain

    return drain()


def bench_cpu() -> list[Figure]:
    from bench_cpu import bench_cpu_per_event

    return bench_cpu_per_event()


def bench_disk() -> list[Figure]:
    from bench_cpu import bench_disk as disk
    from bench_cpu import bench_presence, bench_wire

    return bench_presence() + disk() + bench_wire()


BENCHES["drain"] = bench_drain
BENCHES["cpu"] = bench_cpu
BENCHES["disk"] = bench_disk
BENCHES["offers"] = bench_offers
BENCHES["stock"] = bench_stock
BENCHES["ble"] = bench_ble
BENCHES["web"] = bench_web
BENCHES["steady"] = bench_steady
BENCHES["gate"] = bench_gate


def run(names: list[str]) -> tuple[list[tuple[str, Figure]], bool]:
    results: list[tuple[str, Figure]] = []
    ok = True
    for name, bench in BENCHES.items():
        if names and not any(n in name for n in names):
            continue
        try:
            figures = bench()
        except BenchError as exc:
            figures = [Figure(f"{name}: (every figure)", 0.0, "", error=str(exc))]
            ok = False
        for fig in figures:
            print(f"[{name}] {fig.line()}", flush=True)
            results.append((name, fig))
    return results, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="run only the benchmarks whose name contains one of these")
    parser.add_argument("--report", type=Path, default=ROOT / "var" / "bench" / "report.md")
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)  # the gate bench raises hundreds of (expected) alarms
    limits = {**disk_limits(), "py_ops_s": cpu_limit()}
    print(f"o2o-edge bench: {os.cpu_count()} cores, SQLite {sqlite3.sqlite_version}, "
          f"{limits['write_mb_s']:,.0f} MB/s, {limits['fsync_per_s']:,.0f} fsync/s", flush=True)
    results, ok = run(args.names)
    reports = [p for p in (ROOT / "var" / "chaos" / "report.md", ROOT / "var" / "soak" / "report.md") if p.exists()]
    report(results, args.report, limits, [], reports)
    print(f"report: {args.report}")
    return 0 if ok and all(f.error is None for _, f in results) else 1


if __name__ == "__main__":
    sys.exit(main())
