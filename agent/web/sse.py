"""Server-sent events: one bounded queue per open page, ids to resume from, a keep-alive while idle.

Each message carries an `id:` line; a browser that reconnects sends the last
one it saw as `Last-Event-ID`, and `stream` replays only what came after it
from `first` (the caller's bounded backlog), so a page that lost its
connection for a moment neither misses nor repeats entries.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web

__all__ = ["PING_S", "stream"]

# A comment this often keeps proxies and browsers from closing an idle stream.
PING_S = 15.0
# The browser waits this long before reconnecting a dropped stream.
RETRY_MS = 2000


def _message(doc: dict[str, Any], event: str | None, id_key: str) -> bytes:
    out = f"event: {event}\n" if event else ""
    ident = doc.get(id_key)
    if ident is not None:
        out += f"id: {ident}\n"
    return (out + f"data: {json.dumps(doc)}\n\n").encode()


def _after(first: Iterable[dict[str, Any]], last_id: str | None, id_key: str) -> list[dict[str, Any]]:
    docs = list(first)
    if not last_id:
        return docs
    for i, doc in enumerate(docs):
        if str(doc.get(id_key)) == last_id:
            return docs[i + 1:]
    return docs  # the id left the backlog: send all of it rather than nothing


async def stream(request: web.Request, queue: asyncio.Queue[dict[str, Any]], first: Iterable[dict[str, Any]],
                 *, event: str | None = None, id_key: str = "id") -> web.StreamResponse:
    """Send `first` (after the client's Last-Event-ID), then whatever arrives on `queue`, until the client goes."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    try:
        retry = f"retry: {RETRY_MS}\n".encode()  # rides on the first message
        for doc in _after(first, request.headers.get("Last-Event-ID"), id_key):
            await resp.write(retry + _message(doc, event, id_key))
            retry = b""
        if retry:
            await resp.write(retry + b"\n")
        while True:
            try:
                async with asyncio.timeout(PING_S):
                    doc = await queue.get()
            except TimeoutError:
                await resp.write(b": ping\n\n")
                continue
            await resp.write(_message(doc, event, id_key))
    except ConnectionResetError:
        pass  # the page went away; a cancellation (server stopping) propagates
    return resp
