"""Server-sent events: one bounded queue per open page, a keep-alive comment while idle."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web

__all__ = ["stream"]

# A comment this often keeps proxies and browsers from closing an idle stream.
PING_S = 15.0


async def stream(request: web.Request, queue: asyncio.Queue[dict[str, Any]], first: Iterable[dict[str, Any]],
                 *, event: str | None = None) -> web.StreamResponse:
    """Send `first`, then whatever arrives on `queue`, until the client goes away."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    prefix = f"event: {event}\n".encode() if event else b""
    try:
        for doc in first:
            await resp.write(prefix + f"data: {json.dumps(doc)}\n\n".encode())
        while True:
            try:
                async with asyncio.timeout(PING_S):
                    doc = await queue.get()
            except TimeoutError:
                await resp.write(b": ping\n\n")
                continue
            await resp.write(prefix + f"data: {json.dumps(doc)}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return resp
