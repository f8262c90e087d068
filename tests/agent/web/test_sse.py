"""Server-sent events over real HTTP: id lines, resuming after Last-Event-ID, keep-alives, a client going away."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.web import sse
from tests.conftest import free_port

BACKLOG = [{"id": f"e{i}", "n": i} for i in range(5)]


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sse, "PING_S", 0.2)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    ended: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            return await sse.stream(request, queue, BACKLOG, event="tick")
        finally:
            ended.append("done")

    app = web.Application()
    app.router.add_get("/s", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/s", queue, ended
    await runner.cleanup()


async def messages(resp: aiohttp.ClientResponse, n: int) -> list[dict[str, Any]]:
    out = []
    while len(out) < n:
        block = (await resp.content.readuntil(b"\n\n")).decode()
        fields = dict(line.split(": ", 1) for line in block.strip().splitlines() if not line.startswith(":"))
        if "data" in fields:
            out.append({**fields, "data": json.loads(fields["data"])})
    return out


async def test_ids_backlog_and_live_events(server) -> None:  # type: ignore[no-untyped-def]
    url, queue, _ = server
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        first = await messages(r, 5)
        assert [m["id"] for m in first] == ["e0", "e1", "e2", "e3", "e4"] and first[0]["event"] == "tick"
        assert first[0]["retry"] == "2000"
        await queue.put({"id": "e5", "n": 5})
        (live,) = await messages(r, 1)
        assert live["id"] == "e5" and live["data"]["n"] == 5


async def test_resume_after_last_event_id(server) -> None:  # type: ignore[no-untyped-def]
    url, _, _ = server
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Last-Event-ID": "e2"}) as r:
            assert [m["id"] for m in await messages(r, 2)] == ["e3", "e4"]
        async with http.get(url, headers={"Last-Event-ID": "long-gone"}) as r:  # not in the backlog any more
            assert next(m["id"] for m in await messages(r, 5)) == "e0"


async def test_keepalive_and_a_client_going_away(server) -> None:  # type: ignore[no-untyped-def]
    url, _, ended = server
    async with aiohttp.ClientSession() as http, http.get(url, headers={"Last-Event-ID": "e4"}) as r:
        assert (await r.content.readuntil(b"\n\n")).startswith(b"retry: ")
        assert await r.content.readuntil(b"\n\n") == b": ping\n\n"
    for _ in range(50):
        if ended:
            break
        await asyncio.sleep(0.1)
    assert ended == ["done"]
