"""The HTTP listeners' limits: what a phone, a kiosk or an attacker may hold open, how big, how long.

The captive portal faces every phone in the store and the staff page shares
the process with the gate alarm, so a listener must never take the daemon's
memory or file descriptors (systemd: MemoryMax=256M, LimitNOFILE=4096):

    request line        8,704 bytes   (openNDS FAS queries reach 8,192: src/common.h QUERYMAXLEN)
    one header field    4,096 bytes,  48 header fields at most
    headers             HEADER_TIMEOUT_S from the connection (or the previous answer) to the last header,
                        and the same idle time between keep-alive requests (aiohttp's keepalive timer)
    body                64 KiB (agent/web/app.py), read whole within BODY_TIMEOUT_S or 408; what is left of
                        a body after an early answer is read for LINGER_S at most, then the connection closes
    connections         PER_CLIENT per address and a total of a quarter of RLIMIT_NOFILE (at most
                        MAX_TOTAL); beyond, a new connection is reset at once (its descriptor freed)

Errors that can repeat thousands of times a second (a refused connection, a
malformed request, accept() out of descriptors) are counted and logged once
per LOG_EVERY_S with the count. Garbage left by malformed requests (aiohttp
keeps the 256 KiB read buffer in the parse error's traceback cycle) is
collected, and freed memory handed back to the system, a few seconds after a
burst of them: RSS returns to its baseline after a header flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

__all__ = ["STATS", "GuardedSite", "guard_app", "http_metrics", "server_limits"]

log = logging.getLogger(__name__)

MAX_LINE = 8704
MAX_FIELD = 4096
MAX_HEADERS = 48
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 10.0
# After an answer sent before the body was read (401, 408, 413), the rest of the body is read and dropped this long.
LINGER_S = 1.0
PER_CLIENT = 128  # a browser opens 6 per host, an HTTP client library 100 by default
MAX_TOTAL = 1024
LOG_EVERY_S = 60.0
# Bytes read from a client at a time: a request's head fits, and a malformed one leaves this much garbage, not 256 KiB.
READ_CHUNK = 16 * 1024
# After malformed requests or dropped connections, garbage is collected within this long (once per burst second).
HYGIENE_AFTER_S = 1.0

_ACCEPT_ERROR = "socket.accept() out of system resource"


@dataclass
class HttpStats:
    """Counters for /metrics and the chaos report; one per process (every listener adds to it)."""

    open: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # per_client, total
    bad_requests: int = 0
    body_timeouts: int = 0
    accept_errors: int = 0
    collections: int = 0
    _logged: dict[str, float] = field(default_factory=dict)
    _unlogged: Counter[str] = field(default_factory=Counter)

    def note(self, what: str, message: str, *args: object) -> None:
        """Log `message` at most once per LOG_EVERY_S per kind of trouble, with the count since the last line."""
        self._unlogged[what] += 1
        now = time.monotonic()
        if now - self._logged.get(what, -LOG_EVERY_S) < LOG_EVERY_S:
            return
        self._logged[what] = now
        log.warning(message + " (%d time(s) since the last such line; next one in %.0fs at most)",
                    *args, self._unlogged.pop(what), LOG_EVERY_S)


STATS = HttpStats()


def total_cap() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(MAX_TOTAL, soft // 4)) if soft != resource.RLIM_INFINITY else MAX_TOTAL


def server_limits() -> dict[str, Any]:
    """The request handler's limits, as web.AppRunner keyword arguments."""
    return {"max_line_size": MAX_LINE, "max_field_size": MAX_FIELD, "max_headers": MAX_HEADERS,
            "keepalive_timeout": HEADER_TIMEOUT_S, "lingering_time": LINGER_S}


@web.middleware
async def _read_body_in_time(request: web.Request,
                             handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    size = request.content_length
    if size is not None and size > request.client_max_size:
        # Refused before a byte is read: a handler reading what has arrived so far would parse a partial body.
        raise web.HTTPRequestEntityTooLarge(max_size=request.client_max_size, actual_size=size)
    if request.body_exists:
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                await request.content.wait_eof()  # the whole body in aiohttp's buffer, none of it consumed
        except TimeoutError:
            STATS.body_timeouts += 1
            STATS.note("body", "http: a request body from %s did not arrive within %.0fs (408)", request.remote,
                       BODY_TIMEOUT_S)
            raise web.HTTPRequestTimeout(text=f"the request body did not arrive within {BODY_TIMEOUT_S:.0f}s",
                                         headers={"Connection": "close"}) from None
    return await handler(request)


def guard_app(app: web.Application) -> web.Application:
    """Add the body deadline (innermost: after auth, before any handler reads the body). Before runner.setup()."""
    app.middlewares.append(_read_body_in_time)
    return app


class _ServerLogFilter(logging.Filter):
    """aiohttp logs each malformed request with a traceback: one counted line a minute instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Error handling request"):
            STATS.bad_requests += 1
            exc = record.exc_info[1] if record.exc_info else None
            detail = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}" if exc else "?"
            STATS.note("bad", "http: malformed request (400), e.g. %s", detail)
            _hygiene.soon()
            return False
        return True


class _Hygiene:
    """gc + malloc_trim once a burst of dropped connections or bad requests is over."""

    def __init__(self) -> None:
        self._handle: asyncio.TimerHandle | None = None
        try:
            self._trim: Callable[[int], int] | None = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            self._trim = None

    def soon(self) -> None:
        """Collect within HYGIENE_AFTER_S: once per that time during a burst, and once after it."""
        if self._handle is not None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to schedule on
            self._handle = asyncio.get_running_loop().call_later(HYGIENE_AFTER_S, self.run)

    def run(self) -> None:
        self._handle = None
        STATS.collections += 1
        gc.collect()
        if self._trim is not None:
            self._trim(0)


_hygiene = _Hygiene()
_filter = _ServerLogFilter()


class _Guarded(asyncio.Protocol):
    """Counts a connection against its client's and the total cap before aiohttp sees it."""

    def __init__(self, handler: RequestHandler, site: GuardedSite) -> None:
        self._handler = handler
        self._site = site
        self._peer: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        site = self._site
        refused = ("total" if site.open_total >= site.max_total
                   else "per_client" if site.per_client[host] >= PER_CLIENT else None)
        if refused is not None:
            STATS.refused[refused] += 1
            STATS.note(f"refused-{refused}", "http: connection from %s refused: %s (%d open)", host,
                       f"{PER_CLIENT} per client" if refused == "per_client" else f"{site.max_total} in total",
                       site.open_total)
            transport.abort()  # type: ignore[attr-defined]  # RST now: the descriptor is freed at once
            return
        if hasattr(transport, "max_size"):
            transport.max_size = READ_CHUNK  # asyncio reads 256 KiB at a time; a malformed request keeps its chunk
        self._peer = host
        site.per_client[host] += 1
        site.open_total += 1
        STATS.open += 1
        self._handler.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._peer is None:
            return
        site = self._site
        site.per_client[self._peer] -= 1
        if site.per_client[self._peer] <= 0:
            del site.per_client[self._peer]
        site.open_total -= 1
        STATS.open -= 1
        self._peer = None
        self._handler.connection_lost(exc)
        if exc is not None:
            _hygiene.soon()

    def data_received(self, data: bytes) -> None:
        self._handler.data_received(data)

    def eof_received(self) -> None:
        self._handler.eof_received()

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()


class GuardedSite(web.TCPSite):
    """web.TCPSite whose connections go through the caps, with accept() errors counted instead of a traceback."""

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.per_client: Counter[str] = Counter()
        self.open_total = 0
        self.max_total = total_cap()

    async def start(self) -> None:
        self._runner._reg_site(self)
        loop = asyncio.get_running_loop()
        _install_accept_handler(loop)
        server = self._runner.server
        assert server is not None
        logging.getLogger("aiohttp.server").addFilter(_filter)
        self._server = await loop.create_server(
            lambda: _Guarded(server(), self), self._host, self._port, ssl=self._ssl_context,
            backlog=self._backlog, reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def _install_accept_handler(loop: asyncio.AbstractEventLoop) -> None:
    previous = loop.get_exception_handler()
    if getattr(previous, "o2o_accept", False):
        return

    def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _ACCEPT_ERROR:
            STATS.accept_errors += 1
            exc = context.get("exception")
            STATS.note("accept", "http: cannot accept connections: %s (asyncio retries in 1s)",
                       getattr(exc, "strerror", None) or exc)
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    handler.o2o_accept = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)


def http_metrics() -> Iterator[Metric]:
    yield GaugeMetricFamily("o2o_http_connections", "Open HTTP connections", value=STATS.open)
    refused = CounterMetricFamily("o2o_http_refused_connections", "Connections refused by a cap", labels=["cap"])
    for cap in ("per_client", "total"):
        refused.add_metric([cap], STATS.refused[cap])
    yield refused
    yield CounterMetricFamily("o2o_http_bad_requests", "Malformed requests (400)", value=STATS.bad_requests)
    yield CounterMetricFamily("o2o_http_body_timeouts", "Bodies not received in time (408)", value=STATS.body_timeouts)
    yield CounterMetricFamily("o2o_http_accept_errors", "accept() failures (out of descriptors)",
                              value=STATS.accept_errors)
