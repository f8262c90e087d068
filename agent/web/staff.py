"""The staff page and its API: login, live status and events, actions, diagnostics, metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from agent.web import sse
from agent.web.auth import Session, SessionStore, verify_password
from agent.web.metrics import CONTENT_TYPE, render
from agent.web.openapi import OPENAPI
from agent.web.ratelimit import RateLimiter

__all__ = ["add_staff_routes"]

log = logging.getLogger(__name__)

# The page's assets ship inside the package; nothing else is served from disk.
STATIC = {"app.js": "application/javascript", "app.css": "text/css", "login.html": "text/html"}
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'")


def _asset(name: str) -> bytes:
    return resources.files("agent.web").joinpath(f"static/{name}").read_bytes()


def add_staff_routes(app: web.Application, view: Any, *, sessions: SessionStore, limiter: RateLimiter,
                     users: dict[str, tuple[str, str]], cookie: str, secure_cookies: bool,
                     session_of: Callable[[web.Request], Session | None]) -> None:

    def user_of(request: web.Request) -> str:
        session = session_of(request)
        return session.user if session else "api-token"

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=_asset("index.html"), content_type="text/html",
                            headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"})

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:  # a whitelist: "../config.toml" and friends are simply unknown names
            log.warning("http: static %r refused from %s", name[:100], request.remote)
            raise web.HTTPNotFound()
        return web.Response(body=_asset(name), content_type=STATIC[name],
                            headers={"Cache-Control": "max-age=300", "Content-Security-Policy": _CSP})

    async def login_page(request: web.Request) -> web.Response:
        return web.Response(body=_asset("login.html"), content_type="text/html",
                            headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"})

    async def login(request: web.Request) -> web.Response:
        address = request.remote or "?"
        if limiter.blocked(address):
            log.warning("login: too many failures from %s, refused", address)
            return web.json_response({"error": "too many failed logins; wait a few minutes"}, status=429,
                                     headers={"Retry-After": "300"})
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except json.JSONDecodeError:
                return web.json_response({"error": "body is not JSON"}, status=400)
        else:
            body = dict(await request.post())
        name, password = str(body.get("username", ""))[:64], str(body.get("password", ""))[:256]
        known = users.get(name)
        ok = known is not None and await asyncio.to_thread(verify_password, password, known[0])
        if not ok or known is None:
            limiter.record(address)
            log.warning("login: failed for user %r from %s", name, address)
            return web.json_response({"error": "wrong user name or password"}, status=401)
        limiter.forget(address)
        session = sessions.create(name, known[1])
        log.info("login: %s (%s) from %s", name, known[1], address)
        resp = web.json_response({"user": name, "role": known[1], "csrf": session.csrf})
        resp.set_cookie(cookie, session.id, httponly=True, samesite="Strict", secure=secure_cookies, path="/")
        return resp

    async def logout(request: web.Request) -> web.Response:
        sessions.drop(request.cookies.get(cookie))
        resp = web.json_response({"ok": True})
        resp.del_cookie(cookie, path="/")
        return resp

    async def me(request: web.Request) -> web.Response:
        session = session_of(request)
        if session is None:
            return web.json_response({"user": "api-token", "role": "admin", "csrf": None})
        return web.json_response({"user": session.user, "role": session.role, "csrf": session.csrf})

    async def history(request: web.Request) -> web.Response:
        return web.json_response({"every_s": 10, "samples": list(view.activity.history)})

    async def alarms(request: web.Request) -> web.Response:
        return web.json_response({"alarms": list(reversed(view.activity.alarms))})

    async def events(request: web.Request) -> web.StreamResponse:
        queue = view.activity.listen()
        try:
            return await sse.stream(request, queue, list(view.activity.recent)[-50:])
        finally:
            view.activity.unlisten(queue)

    def reader_or_404(request: web.Request) -> str:
        rid = request.match_info["reader"]
        if rid not in view.readers:
            raise web.HTTPNotFound(text=f"no reader {rid!r}")
        return rid

    async def reader_action(request: web.Request) -> web.Response:
        rid = reader_or_404(request)
        action = request.match_info["action"]
        if action == "restart":
            await view.restart_reader(rid)
        elif action == "pause":
            view.readers[rid].pause()
        elif action == "resume":
            view.readers[rid].resume()
        else:
            raise web.HTTPNotFound(text=f"no action {action!r}")
        log.info("staff: %s did %s on reader %s", user_of(request), action, rid)
        return web.json_response({"reader": rid, "state": view.readers[rid].state})

    async def sync_now(request: web.Request) -> web.Response:
        if view.uplink is None:
            return web.json_response({"error": "cloud sync is disabled in the config"}, status=409)
        view.uplink.resync()
        log.info("staff: %s forced a sync (%d waiting)", user_of(request), view.outbox.depth)
        return web.json_response({"backlog": view.outbox.depth, "connected": view.uplink.connected})

    async def ack_alarm(request: web.Request) -> web.Response:
        alarm = view.activity.acknowledge(request.match_info["alarm"], user_of(request))
        if alarm is None:
            raise web.HTTPNotFound(text="no such alarm (only the last 100 are kept)")
        log.info("staff: %s acknowledged alarm %s", user_of(request), alarm["id"])
        return web.json_response(alarm)

    async def diagnostics(request: web.Request) -> web.Response:
        bundle = {
            "generated_at": time.time(),
            "status": await view.status(),
            "config": view.config_without_secrets(),
            "recent_logs": view.recent_logs(),
            "recent_events": list(view.activity.recent),
            "history": list(view.activity.history),
        }
        name = f"o2o-edge-diagnostics-{view.config.store.id}-{view.config.store.gateway}-{int(time.time())}.json"
        log.info("staff: %s downloaded a diagnostics bundle", user_of(request))
        return web.Response(body=json.dumps(bundle, indent=1, default=str).encode(), content_type="application/json",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})

    async def metrics(request: web.Request) -> web.Response:
        body = render(await view.status(), dict(view.hub.published_by_kind))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    r = app.router
    r.add_get("/", index)
    r.add_get("/static/{name}", static)
    r.add_get("/login", login_page)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/api/me", me)
    r.add_get("/api/history", history)
    r.add_get("/api/alarms", alarms)
    r.add_get("/api/events", events)
    r.add_post("/api/actions/readers/{reader}/{action}", reader_action)
    r.add_post("/api/actions/sync", sync_now)
    r.add_post("/api/actions/alarms/{alarm}/ack", ack_alarm)
    r.add_get("/api/diagnostics", diagnostics)
    r.add_get("/api/openapi.json", openapi)
    r.add_get("/metrics", metrics)
