"""o2o-edge benchmarks. Every figure is printed next to a reference measured in the same run.

Run through `scripts/bench [FILTER]`. Figures, not pass/fail: the issues name targets
and the closing notes report what this prints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from decimal import Decimal  # noqa: E402

from agent.events import Event  # noqa: E402
from agent.hub import Hub  # noqa: E402
from agent.outbox import SCHEMA, Outbox, row_of  # noqa: E402
from drivers.rfid import emulator_class, session_class  # noqa: E402
from drivers.rfid.base import NEED_DATA, ReaderEmulator, TagReport  # noqa: E402
from drivers.rfid.simulator import converse, demo_epc  # noqa: E402


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    reference: float | None = None
    reference_name: str = ""
    target: str = ""

    def line(self) -> str:
        ref = ""
        if self.reference:
            ref = f"  | {self.reference_name}: {self.reference:,.0f} {self.unit} -> {self.value / self.reference:.0%}"
        tgt = f"  | target {self.target}" if self.target else ""
        return f"{self.name:<46} {self.value:>14,.0f} {self.unit}{ref}{tgt}"


def best_of(n: int, fn: Callable[[], float]) -> float:
    return max(fn() for _ in range(n))


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
        assert n >= frames * 0.99, f"{protocol}: decoded {n} of {frames}"
        return n / (time.perf_counter() - t0)

    rate = best_of(3, run)
    return Figure(f"codec {protocol}: tag frames decoded", rate, "frames/s")


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
        assert ob.committed == len(events)
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
    raw, agent = statistics.median(raws), statistics.median(agents)
    return [Figure("outbox: events absorbed from the hub", agent, "events/s", raw,
                   "raw sqlite3 executemany, same rows, batches of 10k", ">= 50% and >= 50,000/s")]


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
            while runner.reads - start_reads < frames * 0.99 and time.perf_counter() - t0 < 60:
                await asyncio.sleep(0.005)
            while ob.committed < runner.reads - start_reads and time.perf_counter() - t0 < 60:
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - t0
            rate = (runner.reads - start_reads) / elapsed
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            sub.close()
            await writer
        os.close(master)
        os.close(slave)
    # bare pty: the same bytes through a pty to a pyserial reader, no decoding
    bare = await asyncio.get_running_loop().run_in_executor(None, _bare_pty_rate, blob)
    return rate, bare * frames / len(blob)


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
        rate, bare = asyncio.run(pty_into_outbox(protocol, 50_000))
        out.append(Figure(f"pty {protocol} reader -> outbox (raw reads)", rate, "events/s", bare,
                          "bare pty+pyserial, same bytes"))
    return out


# -- resident memory ---------------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bench_memory() -> list[Figure]:
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
    return [Figure("daemon RSS, 3 simulated readers", rss / 1024, "MiB", bare_rss / 1024,
                   "bare python interpreter", "< 60 MiB")]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("filter", nargs="?", default="", help="run only benchmarks whose name contains this")
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)  # the gate bench raises hundreds of (expected) alarms
    print(f"o2o-edge bench on {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}")
    for name, bench in BENCHES.items():
        if args.filter in name:
            for fig in bench():
                print(fig.line(), flush=True)


# -- MQTT drain --------------------------------------------------------------------------------

class _Broker:
    def __init__(self, workdir: Path) -> None:
        import shutil
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_inflight_messages 0\nmax_queued_messages 0\n"
                        + ("user root\n" if os.geteuid() == 0 else ""))
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import socket as sk

        for _ in range(200):
            try:
                with sk.create_connection(("127.0.0.1", self.port), timeout=0.1):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


async def _fill(path: Path, n: int) -> None:
    async with Outbox(path, synchronous="normal") as ob:
        chunk = sample_events(10_000)
        for _ in range(0, n, 10_000):
            await ob.write([Event(e.kind, e.source, e.data) for e in chunk])


async def _drain(path: Path, port: int, n: int, inflight: int, batch: int) -> float:
    from agent.config import parse_config
    from agent.sync.uplink import Uplink

    config = parse_config({"store": {"id": "bench", "gateway": "gw-1"},
                           "mqtt": {"host": "127.0.0.1", "port": port, "inflight": inflight,
                                    "batch_max_events": batch, "batch_max_bytes": 4 * 1024 * 1024}})
    async with Outbox(path, synchronous="normal") as ob:
        assert ob.depth == n
        uplink = Uplink(config, ob, birth=lambda: {"online": True})
        t0 = time.perf_counter()
        task = asyncio.create_task(uplink.run())
        while ob.depth > 0 and time.perf_counter() - t0 < 300:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - t0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert ob.depth == 0, f"{ob.depth} left"
    return n / elapsed


def _bare_paho(port: int, payloads: list[bytes], inflight: int) -> float:
    """A bare paho client (its own network thread) publishing the same payloads at QoS 1, same window."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    done = threading.Semaphore(0)
    window = threading.Semaphore(inflight)
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-bare",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(inflight)

    def on_publish(c: object, u: object, mid: int, rc: object, p: object) -> None:
        window.release()
        done.release()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    t0 = time.perf_counter()
    for p in payloads:
        window.acquire()
        client.publish("bench/events", p, qos=1)
    for _ in payloads:
        done.acquire()
    elapsed = time.perf_counter() - t0
    client.loop_stop()
    client.disconnect()
    return elapsed


def bench_mqtt() -> list[Figure]:
    from agent.outbox import OutboxRow
    from agent.sync.uplink import encode_batch

    n, batch, inflight = 1_000_000, 2000, 16
    with tempfile.TemporaryDirectory() as d:
        broker = _Broker(Path(d))
        try:
            db = Path(d) / "o.db"
            asyncio.run(_fill(db, n))
            rate = asyncio.run(_drain(db, broker.port, n, inflight, batch))
            rows = [OutboxRow(i, e.id, e.kind, e.ts, e.to_json()) for i, e in enumerate(sample_events(batch), 1)]
            payload = encode_batch("gw-1", rows)
            elapsed = _bare_paho(broker.port, [payload] * (n // batch), inflight)
            bare = n / elapsed
        finally:
            broker.stop()
    return [Figure("mqtt: 1M-event backlog drained to mosquitto", rate, "events/s", bare,
                   "bare paho QoS 1, same payloads and window", ">= 100,000/s (under 10 s)")]


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
            feeder = asyncio.get_running_loop().run_in_executor(None, _write_all, master, blob)
            max_depth = 0
            while uplink.events_acked - base < runner.reads * 0.999 or not feeder.done():
                max_depth = max(max_depth, ob.depth)
                await asyncio.sleep(0.01)
                if time.perf_counter() - t0 > 120:
                    break
            elapsed = time.perf_counter() - t0
            forwarded = uplink.events_acked - base
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
        broker = _Broker(Path(d))
        try:
            rate, depth, forwarded = asyncio.run(_steady(broker.port, 50_000))
        finally:
            broker.stop()
    return [Figure("steady state: pty reads forwarded to the broker", rate, "events/s"),
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
        lat = sorted(asyncio.run(_gate_latency(load, 300)))
        p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
        label = "idle" if not load else f"{load:,} reads/s"
        out.append(Figure(f"gate: pty last byte -> gate.alarm p50 ({label})", p50 * 1e6, "us"))
        out.append(Figure(f"gate: pty last byte -> gate.alarm p99 ({label})", p99 * 1e6, "us", target="< 10,000 us"))
    out.append(Figure("basket of 200 items priced (tags in -> basket)", asyncio.run(_basket_200()) * 1e6, "us"))
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
        broker = _Broker(Path(d))
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
            agent_rate = asyncio.run(_hammer(f"{base}/api/status", {"Authorization": "Bearer demo-api-token"}))
            bare_rate = asyncio.run(_hammer(f"http://127.0.0.1:{hello_port}/", {}))
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

    rate = best_of(3, run)
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
    assert len(counts) == 50_000 and len(counts.counts) == 5_000

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

    rate = best_of(3, update_rate)
    hub = best_of(3, lambda: _hub_rate(events))
    return [Figure("stock: snapshot build, 50k EPCs / 5k GTINs / 8 zones", statistics.median(times) * 1e6, "us",
                   target="< 100,000 us"),
            Figure("stock: snapshot size, plain JSON", len(payload) / 1024, "KiB"),
            Figure("stock: snapshot size, zstd level 3", len(compressed) / 1024, "KiB", target="< 64 KB"),
            Figure("stock: tag events counted (seen/gone, 50k items)", rate, "events/s", hub,
                   "hub publish to one subscriber")]


def bench_offers() -> list[Figure]:
    from bench_offers import offers_figures  # scripts/ is on sys.path when this runs as a script

    return [Figure(name, value, unit, ref, ref_name, target) for name, value, unit, ref, ref_name, target
            in offers_figures()]


BENCHES["offers"] = bench_offers
BENCHES["stock"] = bench_stock
BENCHES["ble"] = bench_ble
BENCHES["mqtt"] = bench_mqtt
BENCHES["web"] = bench_web
BENCHES["steady"] = bench_steady
BENCHES["gate"] = bench_gate


if __name__ == "__main__":
    main()
