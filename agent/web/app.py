"""The aiohttp application, built from route values: who may call what is declared per route.

    OPEN     /healthz, /login, the page's assets
    STAFF    the page, /api/*, /metrics: a staff login, or `Authorization: Bearer <api_token>`
    ADMIN    actions and the diagnostics bundle: an admin login, or the api token
    STATION  the kiosk routes check their station token themselves
    GUEST    the captive portal (and, later, QR codes and signage): anyone

The auth middleware reads the matched route's declaration, never a path
prefix, so an open route and a staff route cannot be confused. State-changing
requests made with a session cookie must carry the session's CSRF token in
`X-CSRF-Token`. A component's routes are bound to the running component at
request time; one that is not running answers 404 "not configured".
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from agent.component import Component, Context
from agent.config import split_host_port
from agent.startup import cannot_listen, server_tls
from agent.status import status_model
from agent.web.auth import FAILURE_WINDOW_S, MAX_FAILURES, SESSION_KEY, SessionStore
from agent.web.openapi import build_openapi
from agent.web.ratelimit import RateLimiter
from agent.web.routes import Access, Route, bearer_token
from agent.web.server import GuardedSite, guard_app, server_limits
from agent.web.staff import COOKIE, StaffSite, staff_routes

__all__ = ["all_routes", "make_app", "serve"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Requests to this daemon are small; a big body is an attack or a bug (413).
MAX_REQUEST_BYTES = 64 * 1024
ROUTES_KEY: web.AppKey[dict[Any, Route]] = web.AppKey("routes", dict)
# How long a stop waits for requests in progress (a staff page's live stream never ends by itself).
SHUTDOWN_S = 1.0
# Headers an error answer keeps when it is rewritten as JSON.
_KEEP_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


def _json_error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            log.info("http: %s %s from %s -> %d %s", request.method, request.path[:200], request.remote,
                     exc.status, exc.reason)
            if request.path.startswith("/api/") or exc.status == 413:
                kept = {k: exc.headers[k] for k in _KEEP_HEADERS if k in exc.headers}
                return _json_error(exc.status, exc.text or exc.reason or "error", **kept)
        raise
    if response.status >= 400:
        log.info("http: %s %s from %s -> %d", request.method, request.path[:200], request.remote, response.status)
    return response


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _auth(ctx: Context, sessions: SessionStore) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.app[ROUTES_KEY].get(request.match_info.route)
        if route is None or route.access in (Access.OPEN, Access.GUEST, Access.STATION):
            return await handler(request)  # no route: the router's own 404/405
        session = sessions.get(request.cookies.get(COOKIE))
        bearer = bearer_token(request)
        token = ctx.config.http.api_token
        token_ok = bool(bearer and token and hmac.compare_digest(bearer.encode(), token.get_secret_value().encode()))
        path = request.path
        is_api = path.startswith("/api/") or path == "/metrics"
        if session is None and not token_ok:
            if bearer is not None:
                log.warning("http: %s %s refused from %s: wrong bearer token", request.method, path, request.remote)
            if is_api:
                return _json_error(401, "log in or send Authorization: Bearer <api_token>",
                                   **{"WWW-Authenticate": 'Bearer realm="o2o-edge"'})
            raise web.HTTPFound("/login")
        if session is not None and not token_ok:
            request[SESSION_KEY] = session
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                given = request.headers.get("X-CSRF-Token", "")
                if not hmac.compare_digest(given.encode(), session.csrf.encode()):
                    log.warning("http: %s %s from %s refused: missing or wrong CSRF token (user %s)",
                                request.method, path, request.remote, session.user)
                    return _json_error(403, "missing or wrong CSRF token")
            if route.access is Access.ADMIN and session.role != "admin":
                log.warning("http: %s %s refused: user %s is not an admin", request.method, path, session.user)
                return _json_error(403, "this action needs an admin login")
        return await handler(request)

    return middleware


async def _call_component(ctx: Context, owner: type[Component], fn: Callable[..., Awaitable[web.StreamResponse]],
                          request: web.Request) -> web.StreamResponse:
    comp = ctx.components.get(owner.key)
    if comp is None:
        raise web.HTTPNotFound(text=f"{owner.key} is not configured on this gateway")
    return await fn(comp, request)


def all_routes(site: StaffSite, registry: Sequence[type[Component]]) -> list[tuple[Route, type[Component] | None]]:
    """The core routes, then every registered component's, each with the component class that owns it."""
    out: list[tuple[Route, type[Component] | None]] = [(r, None) for r in staff_routes(site, status_model(registry))]
    for cls in registry:
        out.extend((r, cls) for r in cls.routes())
    return out


def make_app(ctx: Context, registry: Sequence[type[Component]], *, users: dict[str, tuple[str, str]],
             secure_cookies: bool, recent_logs: Callable[[], list[str]], guest_only: bool = False,
             without_guest: bool = False) -> web.Application:
    """`users`: name -> (password hash, role). `guest_only`: the guest-facing listener (GUEST routes and
    /healthz); `without_guest`: the staff listener when guests have their own."""
    sessions = SessionStore()
    limiter = RateLimiter(MAX_FAILURES, FAILURE_WINDOW_S, max_keys=10_000)
    openapi: dict[str, Any] = {}
    site = StaffSite(ctx, registry, users, sessions, limiter, secure_cookies, recent_logs, lambda: openapi)
    app = web.Application(middlewares=[_errors, _security_headers, _auth(ctx, sessions)],
                          client_max_size=MAX_REQUEST_BYTES)
    table: dict[Any, Route] = {}
    routes = all_routes(site, registry)
    for route, owner in routes:
        if guest_only and not (route.access.guest_facing or route.path == "/healthz"):
            continue
        if without_guest and route.access.guest_facing and not route.staff_listener_too:
            continue
        handler: Any = route.handler if owner is None else partial(_call_component, ctx, owner, route.handler)
        table[app.router.add_route(route.method, route.path, handler)] = route
        if route.method == "GET" and route.content_type != "text/event-stream":
            # health probes and link checkers ask with HEAD: the same answer, no body (a stream has no end)
            table[app.router.add_route("HEAD", route.path, handler)] = route
    app[ROUTES_KEY] = table
    openapi.update(build_openapi([r for r, _ in routes]))
    return app


async def serve(app: web.Application, listen: str, tls_cert: Path | None, tls_key: Path | None
                ) -> tuple[web.AppRunner, int]:
    """Listen on "HOST:PORT" (HTTPS with a certificate and key); the runner and the port it got."""
    ssl_context = None
    if tls_cert is not None and tls_key is not None:
        ssl_context = server_tls(tls_cert, tls_key, f"the listener on {listen}")
    # Open pages hold server-sent event streams: at stop they are cut after a second, not waited for a minute.
    runner = web.AppRunner(guard_app(app), access_log=logging.getLogger("aiohttp.access"), handle_signals=False,
                           shutdown_timeout=SHUTDOWN_S, **server_limits())
    await runner.setup()
    host, port = split_host_port(listen)
    site = GuardedSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException as exc:
        await runner.cleanup()
        if isinstance(exc, OSError):
            raise cannot_listen(listen, exc) from exc
        raise
    sockets = getattr(site._server, "sockets", None) or []
    return runner, sockets[0].getsockname()[1] if sockets else port
