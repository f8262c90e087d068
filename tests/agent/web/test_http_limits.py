"""The HTTP listeners under hostile clients: slow headers and bodies, connection floods, header floods,
accept() out of descriptors, and the 405 answer's Allow header (agent/web/server.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest

from agent.web import server
from tests.conftest import free_port, wait_for, write_config

EXE = str(Path(sys.executable).with_name("o2o-edge"))
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "HEADER_TIMEOUT_S", 1.0)
    monkeypatch.setattr(server, "BODY_TIMEOUT_S", 1.0)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    async with asyncio.timeout(seconds):
        return await reader.read()


async def test_405_keeps_its_allow_header(config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(config_factory(mqtt={"enabled": False}))
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{ra.base_url}/api/status", headers={"Authorization": "Bearer test-token"}) as r:
            assert r.status == 405
            assert "GET" in r.headers["Allow"]
            assert (await r.json())["error"]
        async with http.delete(f"{ra.base_url}/healthz") as r:
            assert r.status == 405 and "GET" in r.headers["Allow"]


async def test_slow_headers_are_cut(quick, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    """Before: a connection that never finished its headers was kept for ever (4,200 of them: EMFILE)."""
    ra = await start_agent(config_factory(mqtt={"enabled": False}))
    reader, writer = await asyncio.open_connection("127.0.0.1", ra.agent.http_port)
    t0 = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

    async def dribble() -> None:
        for _ in range(20):
            await asyncio.sleep(0.2)
            writer.write(b"X")
            await writer.drain()

    drip = asyncio.create_task(dribble())
    data = await closed_within(reader, 5)
    drip.cancel()
    await asyncio.gather(drip, return_exceptions=True)
    assert b"200" not in data
    assert time.monotonic() - t0 < 3
    writer.close()


async def test_slow_body_gets_408(quick, config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    ra = await start_agent(config_factory(mqtt={"enabled": False}))
    reader, writer = await asyncio.open_connection("127.0.0.1", ra.agent.http_port)
    writer.write(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    await writer.drain()
    async with asyncio.timeout(3):
        data = await reader.readline()
    assert data.startswith(b"HTTP/1.1 408"), data[:100]
    assert await closed_within(reader, 3) is not None  # and the connection goes
    assert server.STATS.body_timeouts >= 1
    writer.close()


FLOOD = 600
_HOLDER = textwrap.dedent("""
    import resource, socket, sys, time
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
    port, n = int(sys.argv[1]), int(sys.argv[2])
    held = []
    for i in range(n):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        try:
            s.connect(("127.0.0.1", port))
            s.send(b"GET / HTTP/1.1\\r\\n")  # and never the rest
        except OSError:
            pass
        held.append(s)
    print("holding", flush=True)
    time.sleep(60)
""")


async def test_a_connection_flood_leaves_http_reachable(config_factory, start_agent) -> None:  # type: ignore[no-untyped-def]
    """Idle sockets from one address (scripts/chaos opens 4,200): at most PER_CLIENT reach aiohttp, the others
    are reset at once, and another client is served meanwhile."""
    ra = await start_agent(config_factory(mqtt={"enabled": False}))
    before = server.STATS.refused["per_client"]
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(ra.agent.http_port), str(FLOOD)],
                              stdout=subprocess.PIPE, text=True)
    try:
        line = await asyncio.to_thread(holder.stdout.readline)  # type: ignore[union-attr]
        assert line.strip() == "holding"
        await wait_for(lambda: server.STATS.refused["per_client"] - before >= FLOOD - server.PER_CLIENT, 10)
        assert server.STATS.open <= server.PER_CLIENT + 2
        assert len(os.listdir("/proc/self/fd")) < 400  # the refused sockets were closed at once
        conn = aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))
        async with aiohttp.ClientSession(connector=conn) as http, http.get(f"{ra.base_url}/healthz") as r:
            assert r.status == 200
        async with aiohttp.ClientSession() as http, \
                http.get(f"{ra.base_url}/metrics", headers={"Authorization": "Bearer test-token"}) as r:
            text = await r.text()
        assert 'o2o_http_refused_connections_total{cap="per_client"}' in text
    finally:
        holder.kill()
        holder.wait()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _big_header(port: int, size: int) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(size // 65536):
            writer.write(b"a" * 65536)
            await writer.drain()
        writer.write(b"\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(5):
            await reader.read(1000)
        writer.close()
    except (OSError, TimeoutError):
        pass


async def test_header_floods_leave_memory_at_its_baseline(tmp_path: Path) -> None:
    """Before: 5 rounds of 200 parallel 1 MB headers took RSS from 102 to 301 MB, where it stayed."""
    port = free_port()
    cfg = write_config(tmp_path, http={"listen": f"127.0.0.1:{port}", "api_token": "t"}, mqtt={"enabled": False})
    proc = subprocess.Popen([EXE, "run", "--config", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        baseline = rss_mib(proc.pid)
        peak = 0.0
        for _ in range(5):
            await asyncio.gather(*(_big_header(port, 1 << 20) for _ in range(200)))
            peak = max(peak, rss_mib(proc.pid))
        await asyncio.sleep(server.HYGIENE_AFTER_S + 2)
        after = rss_mib(proc.pid)
        assert peak < baseline + 120, (baseline, peak)
        assert after < baseline + 10, (baseline, peak, after)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert err.count(b"Traceback") == 0
    assert err.count(b"malformed request") <= 1  # counted, logged once a minute


_EMFILE = textwrap.dedent("""
    import asyncio, logging, os, resource, sys
    from aiohttp import web
    from agent.web.server import STATS, GuardedSite, guard_app, server_limits
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    async def main():
        runner = web.AppRunner(guard_app(web.Application()), **server_limits())
        await runner.setup()
        site = GuardedSite(runner, "127.0.0.1", 0)
        await site.start()
        soft = len(os.listdir("/proc/self/fd")) + 4
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        print(site.port, flush=True)
        await asyncio.sleep(4)
        print("accept_errors", STATS.accept_errors, flush=True)
        await runner.cleanup()

    asyncio.run(main())
""")


async def test_accept_out_of_descriptors_is_counted_and_logged_once(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _EMFILE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    port = int(await asyncio.to_thread(proc.stdout.readline))  # type: ignore[union-attr]
    socks = []
    for _ in range(40):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        socks.append(s)
        await asyncio.sleep(0.05)
    out, err = await asyncio.to_thread(proc.communicate, timeout=20)
    for s in socks:
        s.close()
    assert int(out.split("accept_errors")[1]) >= 1
    assert err.count("cannot accept connections") == 1, err
    assert "Traceback" not in err
