"""The aiohttp application: who may see what, and the routes of the staff page, API and metrics.

    open            /healthz, /login, /static/*, the kiosk routes (their own station tokens)
    staff login     /  (the page), /api/*, /metrics           (or `Authorization: Bearer <api_token>`)
    admin           POST /api/actions/*, GET /api/diagnostics (an admin login, or the api_token)

State-changing requests made with a session cookie must carry the session's
CSRF token in `X-CSRF-Token`. Handlers read snapshots of the agent; the only
writes are the staff actions, which go through the agent's own methods.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware

from agent.rules.engine import RulesEngine
from agent.web.auth import FAILURE_WINDOW_S, MAX_FAILURES, Session, SessionStore
from agent.web.kiosk import add_kiosk_routes, kiosk_paths
from agent.web.portal import add_portal_routes
from agent.web.ratelimit import RateLimiter
from agent.web.staff import add_staff_routes

__all__ = ["AgentView", "make_app"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Requests to this daemon are small; a big body is an attack or a bug (413).
MAX_REQUEST_BYTES = 64 * 1024
KIOSK_PATHS = kiosk_paths()
OPEN_PATHS = ("/healthz", "/login", "/static/", "/portal/")
COOKIE = "o2o_session"
SESSION_KEY: web.RequestKey[Session] = web.RequestKey("session", Session)


class AgentView(Protocol):
    api_token: str | None
    rules: RulesEngine | None

    async def status(self) -> dict[str, Any]: ...

    async def health(self) -> tuple[bool, str]: ...


def _json_error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            log.info("http: %s %s from %s -> %d %s", request.method, request.path_qs[:200], request.remote,
                     exc.status, exc.reason)
            if request.path.startswith("/api/") or exc.status == 413:
                return _json_error(exc.status, exc.text or exc.reason or "error")
        raise
    if response.status >= 400:
        log.info("http: %s %s from %s -> %d", request.method, request.path_qs[:200], request.remote, response.status)
    return response


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def session_of(request: web.Request) -> Session | None:
    return request.get(SESSION_KEY)


def _auth(view: AgentView, sessions: SessionStore) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith(KIOSK_PATHS) or path.startswith(OPEN_PATHS):
            return await handler(request)
        session = sessions.get(request.cookies.get(COOKIE))
        header = request.headers.get("Authorization", "")
        bearer = header[7:] if header.startswith("Bearer ") else None
        token_ok = bool(bearer and view.api_token and hmac.compare_digest(bearer.encode(), view.api_token.encode()))
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
            if (path.startswith("/api/actions/") or path == "/api/diagnostics") and session.role != "admin":
                log.warning("http: %s %s refused: user %s is not an admin", request.method, path, session.user)
                return _json_error(403, "this action needs an admin login")
        return await handler(request)

    return middleware


def make_app(view: Any, *, users: dict[str, tuple[str, str]] | None = None, secure_cookies: bool = False) -> web.Application:
    """`users`: name -> (password hash, role)."""
    sessions = SessionStore()
    limiter = RateLimiter(MAX_FAILURES, FAILURE_WINDOW_S, max_keys=10_000)
    app = web.Application(middlewares=[_errors, _security_headers, _auth(view, sessions)],
                          client_max_size=MAX_REQUEST_BYTES)

    async def healthz(request: web.Request) -> web.Response:
        ok, reason = await view.health()
        return web.json_response({"ok": ok, "reason": reason}, status=200 if ok else 503)

    async def status(request: web.Request) -> web.Response:
        return web.json_response(await view.status())

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/status", status)
    add_kiosk_routes(app, lambda: view.rules, view.api_token)
    add_portal_routes(app, lambda: getattr(view, "guest_wifi", None))
    add_staff_routes(app, view, sessions=sessions, limiter=limiter, users=users or {}, cookie=COOKIE,
                     secure_cookies=secure_cookies, session_of=session_of)
    return app
