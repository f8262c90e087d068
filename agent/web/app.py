"""aiohttp application: routes, auth for machine clients, JSON errors.

Handlers read snapshots of the agent and never write to its components.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware

from agent.rules.engine import RulesEngine
from agent.web.kiosk import add_kiosk_routes, kiosk_paths

KIOSK_PATHS = kiosk_paths()

__all__ = ["AgentView", "make_app"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Requests to this daemon are small; a big body is an attack or a bug.
MAX_REQUEST_BYTES = 64 * 1024

_INDEX = """<!doctype html>
<html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>o2o-edge</title>
<body style="font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem">
<h1>o2o-edge</h1>
<p>The store gateway agent is running.</p>
<ul>
<li><a href="/healthz">/healthz</a>: liveness for systemd and load balancers</li>
<li><code>GET /api/status</code>: readers, outbox, cloud link
(send <code>Authorization: Bearer &lt;api_token&gt;</code>)</li>
</ul>
</body></html>
"""


class AgentView(Protocol):
    api_token: str | None
    rules: RulesEngine | None

    async def status(self) -> dict[str, Any]: ...

    async def health(self) -> tuple[bool, str]: ...


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and request.path.startswith("/api/"):
            log.info("http: %s %s -> %d %s", request.method, request.path, exc.status, exc.reason)
            return _json_error(exc.status, exc.text or exc.reason)
        raise


def _auth(view: AgentView) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(KIOSK_PATHS):
            return await handler(request)  # the kiosk routes check their station token themselves
        if request.path.startswith("/api/") or request.path == "/metrics":
            token = view.api_token
            header = request.headers.get("Authorization", "")
            given = header[7:] if header.startswith("Bearer ") else None
            if token is None:
                log.warning("http: %s refused: no [http] api_token configured", request.path)
                return _json_error(401, "this gateway has no api_token configured")
            if given is None or not hmac.compare_digest(given.encode(), token.encode()):
                log.warning("http: %s %s refused from %s: %s", request.method, request.path, request.remote,
                            "wrong bearer token" if given is not None else "no bearer token")
                return web.json_response(
                    {"error": "missing or wrong bearer token"}, status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="o2o-edge"'},
                )
        return await handler(request)

    return middleware


def make_app(view: AgentView) -> web.Application:
    app = web.Application(middlewares=[_errors, _auth(view)], client_max_size=MAX_REQUEST_BYTES)

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=_INDEX, content_type="text/html")

    async def healthz(request: web.Request) -> web.Response:
        ok, reason = await view.health()
        return web.json_response({"ok": ok, "reason": reason}, status=200 if ok else 503)

    async def status(request: web.Request) -> web.Response:
        return web.json_response(await view.status())

    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/status", status)
    add_kiosk_routes(app, lambda: view.rules, view.api_token)
    return app
